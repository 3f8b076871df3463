-- Two more OMS list resources, each its own stream (sync.streams). Instants are canonical
-- ISO-8601 UTC text in DATETIME columns and booleans 0/1 in BOOLEAN columns, so BI tools
-- type them (see 03-datetime-types). extra keeps every field the server sends that is not a
-- column, as a JSON object (NULL when there are none); deleted_at is set by a backfill when
-- the API no longer lists the row; synced_at / first_synced_at: when oms-sync last / first
-- wrote it.

-- Stock locations (stores, warehouses and other supply points) as the OMS lists them. The
-- vendor documents these 16 fields (booleans as booleans); anything else lands in extra.
-- address is stored as sent: which address resource it points to is not documented.
CREATE TABLE stock_locations (
    id                         INTEGER PRIMARY KEY,
    created_date               DATETIME,
    modified_date              DATETIME NOT NULL,
    omnitron_id                INTEGER,
    name                       TEXT,
    stock_location_type        TEXT,
    fax_number                 TEXT,
    erp_code                   TEXT,
    address                    INTEGER,
    is_fulfillment_center      BOOLEAN,
    is_pickup_location         BOOLEAN,
    is_delivery_location       BOOLEAN,
    is_fast_delivery_available BOOLEAN,
    is_return_available        BOOLEAN,
    is_active                  BOOLEAN,
    priority                   INTEGER,
    extra                      TEXT,
    deleted_at                 DATETIME,
    synced_at                  DATETIME NOT NULL,
    first_synced_at            DATETIME NOT NULL
);
CREATE INDEX stock_locations_modified_date ON stock_locations (modified_date);
-- The stock locations the OMS still lists: what most BI questions want.
CREATE VIEW live_stock_locations AS
    SELECT * FROM stock_locations WHERE deleted_at IS NULL;

-- Customer addresses as the OMS lists them. Only id, address_type and created_date are
-- documented; the other typed columns are inferred, all nullable. Fields of uncertain shape
-- (country, city, township, district) and anything else the server sends land in extra.
-- customer refers to customers.id (inferred; no foreign key: an address may arrive first).
CREATE TABLE customer_addresses (
    id                         INTEGER PRIMARY KEY,
    address_type               TEXT,
    created_date               DATETIME,
    modified_date              DATETIME NOT NULL,
    omnitron_id                INTEGER,
    customer                   INTEGER,
    first_name                 TEXT,
    last_name                  TEXT,
    email                      TEXT,
    phone_number               TEXT,
    line                       TEXT,
    postcode                   TEXT,
    title                      TEXT,
    notes                      TEXT,
    company_name               TEXT,
    tax_office                 TEXT,
    tax_no                     TEXT,
    e_bill_taxpayer            BOOLEAN,
    is_corporate               BOOLEAN,
    extra                      TEXT,
    deleted_at                 DATETIME,
    synced_at                  DATETIME NOT NULL,
    first_synced_at            DATETIME NOT NULL
);
CREATE INDEX customer_addresses_modified_date ON customer_addresses (modified_date);
CREATE INDEX customer_addresses_customer ON customer_addresses (customer);
-- The addresses the OMS still lists: what most BI questions want.
CREATE VIEW live_customer_addresses AS
    SELECT * FROM customer_addresses WHERE deleted_at IS NULL;
