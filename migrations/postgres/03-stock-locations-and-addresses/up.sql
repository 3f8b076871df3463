-- Two more OMS list resources, each its own stream (sync.streams): the same tables as
-- migrations/sqlite/04-stock-locations-and-addresses, with comments for BI tools (see
-- 02-comments). Instants are timestamptz, booleans boolean, extra jsonb.

-- Stock locations (stores, warehouses and other supply points) as the OMS lists them. The
-- vendor documents these 16 fields (booleans as booleans); anything else lands in extra.
-- address is stored as sent: which address resource it points to is not documented.
CREATE TABLE stock_locations (
    id                         bigint PRIMARY KEY,
    created_date               timestamptz,
    modified_date              timestamptz NOT NULL,
    omnitron_id                bigint,
    name                       text,
    stock_location_type        text,
    fax_number                 text,
    erp_code                   text,
    address                    bigint,
    is_fulfillment_center      boolean,
    is_pickup_location         boolean,
    is_delivery_location       boolean,
    is_fast_delivery_available boolean,
    is_return_available        boolean,
    is_active                  boolean,
    priority                   bigint,
    extra                      jsonb,
    deleted_at                 timestamptz,
    synced_at                  timestamptz NOT NULL,
    first_synced_at            timestamptz NOT NULL
);
CREATE INDEX stock_locations_modified_date ON stock_locations (modified_date);
-- The stock locations the OMS still lists: what most BI questions want.
CREATE VIEW live_stock_locations AS
    SELECT * FROM stock_locations WHERE deleted_at IS NULL;

COMMENT ON TABLE stock_locations IS 'One row per stock location (store, warehouse) the OMS has ever listed (oms-sync). For BI, prefer the view live_stock_locations.';
COMMENT ON COLUMN stock_locations.id IS 'The OMS stock location id.';
COMMENT ON COLUMN stock_locations.created_date IS 'When the location was created in the OMS (UTC, microseconds).';
COMMENT ON COLUMN stock_locations.modified_date IS 'When the location last changed in the OMS (UTC, microseconds); the sync follows it.';
COMMENT ON COLUMN stock_locations.omnitron_id IS 'The id of the location in Omnitron (locations are set up from Omnitron stores).';
COMMENT ON COLUMN stock_locations.name IS 'Display name, e.g. Kadıköy Mağaza.';
COMMENT ON COLUMN stock_locations.stock_location_type IS 'Kind of location; store or warehouse (values inferred, not listed by the vendor).';
COMMENT ON COLUMN stock_locations.fax_number IS 'As the API sends it; usually NULL.';
COMMENT ON COLUMN stock_locations.erp_code IS 'The partner''s (ERP) code for the location.';
COMMENT ON COLUMN stock_locations.address IS 'An address id as the API sends it; whether it is a customer_addresses id (type retail_store) or a stock location address is not documented.';
COMMENT ON COLUMN stock_locations.is_fulfillment_center IS 'Can pack orders (packaging center).';
COMMENT ON COLUMN stock_locations.is_pickup_location IS 'As the API sends it (customer collection or carrier pickup: not documented).';
COMMENT ON COLUMN stock_locations.is_delivery_location IS 'Delivery point for customers who collect in store.';
COMMENT ON COLUMN stock_locations.is_fast_delivery_available IS 'Offers fast delivery.';
COMMENT ON COLUMN stock_locations.is_return_available IS 'Accepts returned goods.';
COMMENT ON COLUMN stock_locations.is_active IS 'Whether the location is in use.';
COMMENT ON COLUMN stock_locations.priority IS 'Priority, a criterion of the fulfilment scenarios.';
COMMENT ON COLUMN stock_locations.extra IS 'API fields without a column of their own, as a JSON object (never dropped); NULL when there are none.';
COMMENT ON COLUMN stock_locations.deleted_at IS 'Set by a backfill when the API no longer lists the stock location; NULL while it does.';
COMMENT ON COLUMN stock_locations.synced_at IS 'When oms-sync last wrote this row.';
COMMENT ON COLUMN stock_locations.first_synced_at IS 'When oms-sync first wrote this row.';
COMMENT ON VIEW live_stock_locations IS 'The stock locations the OMS still lists: what most BI questions want. (stock_locations without deleted_at).';

-- Customer addresses as the OMS lists them. Only id, address_type and created_date are
-- documented; the other typed columns are inferred, all nullable. Fields of uncertain shape
-- (country, city, township, district) and anything else the server sends land in extra.
-- customer refers to customers.id (inferred; no foreign key: an address may arrive first).
CREATE TABLE customer_addresses (
    id                         bigint PRIMARY KEY,
    address_type               text,
    created_date               timestamptz,
    modified_date              timestamptz NOT NULL,
    omnitron_id                bigint,
    customer                   bigint,
    first_name                 text,
    last_name                  text,
    email                      text,
    phone_number               text,
    line                       text,
    postcode                   text,
    title                      text,
    notes                      text,
    company_name               text,
    tax_office                 text,
    tax_no                     text,
    e_bill_taxpayer            boolean,
    is_corporate               boolean,
    extra                      jsonb,
    deleted_at                 timestamptz,
    synced_at                  timestamptz NOT NULL,
    first_synced_at            timestamptz NOT NULL
);
CREATE INDEX customer_addresses_modified_date ON customer_addresses (modified_date);
CREATE INDEX customer_addresses_customer ON customer_addresses (customer);
-- The addresses the OMS still lists: what most BI questions want.
CREATE VIEW live_customer_addresses AS
    SELECT * FROM customer_addresses WHERE deleted_at IS NULL;

COMMENT ON TABLE customer_addresses IS 'One row per customer address the OMS has ever listed (oms-sync); address_type tells customer, store and provider addresses apart. For BI, prefer the view live_customer_addresses.';
COMMENT ON COLUMN customer_addresses.id IS 'The OMS address id.';
COMMENT ON COLUMN customer_addresses.address_type IS 'customer, retail_store or checkout_provider (documented).';
COMMENT ON COLUMN customer_addresses.created_date IS 'When the address was created in the OMS (UTC, microseconds).';
COMMENT ON COLUMN customer_addresses.modified_date IS 'When the address last changed in the OMS (UTC, microseconds); the sync follows it.';
COMMENT ON COLUMN customer_addresses.omnitron_id IS 'The id of the same address in Omnitron (inferred).';
COMMENT ON COLUMN customer_addresses.customer IS 'The customer the address belongs to: customers.id (inferred; no foreign key, an address may arrive before its customer; NULL for store and provider addresses).';
COMMENT ON COLUMN customer_addresses.first_name IS 'Recipient first name (inferred field).';
COMMENT ON COLUMN customer_addresses.last_name IS 'Recipient last name (inferred field).';
COMMENT ON COLUMN customer_addresses.email IS 'Contact e-mail for this address (inferred field).';
COMMENT ON COLUMN customer_addresses.phone_number IS 'Contact phone for this address (inferred field).';
COMMENT ON COLUMN customer_addresses.line IS 'Street line: neighbourhood, street, number (inferred field).';
COMMENT ON COLUMN customer_addresses.postcode IS 'Postcode, as text (leading zeros; inferred field).';
COMMENT ON COLUMN customer_addresses.title IS 'The address label, e.g. Ev or İş (inferred field).';
COMMENT ON COLUMN customer_addresses.notes IS 'Delivery note (inferred field).';
COMMENT ON COLUMN customer_addresses.company_name IS 'Corporate invoicing: company (inferred field).';
COMMENT ON COLUMN customer_addresses.tax_office IS 'Corporate invoicing: tax office (inferred field).';
COMMENT ON COLUMN customer_addresses.tax_no IS 'Corporate invoicing: tax number (inferred field).';
COMMENT ON COLUMN customer_addresses.e_bill_taxpayer IS 'E-invoice taxpayer (inferred field).';
COMMENT ON COLUMN customer_addresses.is_corporate IS 'A corporate address (inferred field).';
COMMENT ON COLUMN customer_addresses.extra IS 'API fields without a column of their own, as a JSON object (never dropped); NULL when there are none.';
COMMENT ON COLUMN customer_addresses.deleted_at IS 'Set by a backfill when the API no longer lists the address; NULL while it does.';
COMMENT ON COLUMN customer_addresses.synced_at IS 'When oms-sync last wrote this row.';
COMMENT ON COLUMN customer_addresses.first_synced_at IS 'When oms-sync first wrote this row.';
COMMENT ON VIEW live_customer_addresses IS 'The addresses the OMS still lists: what most BI questions want. (customer_addresses without deleted_at).';
