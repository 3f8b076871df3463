-- History mode (`[sync] history = true`): every version of every customer the warehouse
-- stored, one row each, with the interval it was current in. Written in the same transaction
-- as the customers rows and the checkpoint; kept (not written) while history is off.
-- valid_from: the version's modified_date; valid_to: the modified_date of the next stored
-- version of the id, or the deleted_at of the backfill that marked it deleted; NULL for the
-- version customers holds now. Instants as in customers: canonical ISO-8601 UTC text with six
-- fractional digits, so text order is time order.
-- WITHOUT ROWID: one B-tree ordered by (id, valid_from) instead of a table plus its key index.
CREATE TABLE customers_history (
    id              INTEGER NOT NULL,
    valid_from      DATETIME NOT NULL,
    valid_to        DATETIME,
    created_date    DATETIME,
    modified_date   DATETIME NOT NULL,
    omnitron_id     INTEGER,
    email           TEXT,
    first_name      TEXT,
    last_name       TEXT,
    phone_number    TEXT,
    erp_code        TEXT,
    channel         INTEGER,
    -- API fields not modelled as columns, as a JSON object (NULL when there are none).
    extra           TEXT,
    PRIMARY KEY (id, valid_from)
) WITHOUT ROWID;
-- "As of" queries: versions that began before an instant and had not ended by it.
CREATE INDEX customers_history_valid_from ON customers_history (valid_from);
CREATE INDEX customers_history_valid_to ON customers_history (valid_to);

-- Whether history is kept per stream, and since when (changed_at: when it was last turned
-- on or off). No row: never turned on.
CREATE TABLE history_state (
    stream     TEXT PRIMARY KEY,
    enabled    INTEGER NOT NULL,
    changed_at DATETIME NOT NULL
);

-- History versions each pass wrote (opened, reopened or corrected in place).
ALTER TABLE sync_runs ADD COLUMN versions_written INTEGER NOT NULL DEFAULT 0;
