-- Instants are declared DATETIME, so BI tools type them as date-times (Metabase's SQLite
-- driver maps a declared type containing DATETIME to a date-time; one containing TEXT to
-- text, and older versions of it read TIMESTAMP as a time of day). The values do not change:
-- ISO-8601 UTC text with six fractional digits ("2023-10-06T08:42:53.427050Z"), so text order
-- is time order. DATETIME has NUMERIC affinity, which converts only text that reads as a
-- number: these values stay text (typeof() = 'text') and compare as text.
--
-- SQLite cannot change a column's declared type in place: each table with instants is built
-- again under its name, rows copied as they are, its indexes and the view made again.
DROP VIEW live_customers;

CREATE TABLE customers_new (
    id              INTEGER PRIMARY KEY,
    created_date    DATETIME,
    modified_date   DATETIME NOT NULL,
    omnitron_id     INTEGER,
    email           TEXT,
    first_name      TEXT,
    last_name       TEXT,
    phone_number    TEXT,
    erp_code        TEXT,
    channel         INTEGER,
    -- API fields not modelled as columns yet, as a JSON object (NULL when there are none).
    extra           TEXT,
    -- Set by a backfill when the API no longer lists the customer; NULL while it does.
    deleted_at      DATETIME,
    -- When oms-sync last wrote this row, and when it first wrote it.
    synced_at       DATETIME NOT NULL,
    first_synced_at DATETIME NOT NULL
);
INSERT INTO customers_new SELECT * FROM customers;
DROP TABLE customers;
ALTER TABLE customers_new RENAME TO customers;
-- Also when a killed backfill had dropped them: the writer's open would build them anyway.
CREATE INDEX customers_modified_date ON customers (modified_date);
CREATE INDEX customers_email ON customers (email);

-- Customers the API still lists: what most BI questions want.
CREATE VIEW live_customers AS
    SELECT * FROM customers WHERE deleted_at IS NULL;

-- Incremental high-water mark per stream (see 01-initial and 02-mark-never-all-ids).
CREATE TABLE sync_state_new (
    stream             TEXT PRIMARY KEY,
    mark_modified_date DATETIME,
    mark_after_id      INTEGER,
    updated_at         DATETIME NOT NULL
);
INSERT INTO sync_state_new SELECT * FROM sync_state;
DROP TABLE sync_state;
ALTER TABLE sync_state_new RENAME TO sync_state;

-- The backfill as a whole: the incremental mark it will leave, taken before it began.
CREATE TABLE backfill_state_new (
    stream          TEXT PRIMARY KEY,
    run_id          INTEGER,
    started_at      DATETIME NOT NULL,
    high_water_date DATETIME
);
INSERT INTO backfill_state_new SELECT * FROM backfill_state;
DROP TABLE backfill_state;
ALTER TABLE backfill_state_new RENAME TO backfill_state;

-- One row per pass, written as the pass goes, for freshness and volume charts.
CREATE TABLE sync_runs_new (
    id               INTEGER PRIMARY KEY,
    stream           TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('incremental', 'backfill')),
    started_at       DATETIME NOT NULL,
    finished_at      DATETIME,
    status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    error            TEXT,
    pages            INTEGER NOT NULL DEFAULT 0,
    rows_fetched     INTEGER NOT NULL DEFAULT 0,
    rows_inserted    INTEGER NOT NULL DEFAULT 0,
    rows_updated     INTEGER NOT NULL DEFAULT 0,
    rows_unchanged   INTEGER NOT NULL DEFAULT 0,
    rows_deleted     INTEGER NOT NULL DEFAULT 0,
    rows_quarantined INTEGER NOT NULL DEFAULT 0,
    mark_before      TEXT,
    mark_after       TEXT
);
INSERT INTO sync_runs_new SELECT * FROM sync_runs;
DROP TABLE sync_runs;
ALTER TABLE sync_runs_new RENAME TO sync_runs;
CREATE INDEX sync_runs_started ON sync_runs (stream, started_at);

-- Records the API sent that could not be stored, kept whole with the reason.
CREATE TABLE quarantine_new (
    id            INTEGER PRIMARY KEY,
    stream        TEXT NOT NULL,
    record_id     INTEGER,
    modified_date DATETIME,
    raw           TEXT NOT NULL,
    error         TEXT NOT NULL,
    first_seen_at DATETIME NOT NULL,
    last_seen_at  DATETIME NOT NULL,
    times_seen    INTEGER NOT NULL DEFAULT 1
);
INSERT INTO quarantine_new SELECT * FROM quarantine;
DROP TABLE quarantine;
ALTER TABLE quarantine_new RENAME TO quarantine;
CREATE UNIQUE INDEX quarantine_by_record ON quarantine (stream, record_id) WHERE record_id IS NOT NULL;
CREATE UNIQUE INDEX quarantine_by_raw ON quarantine (stream, raw) WHERE record_id IS NULL;
