-- Customers as the OMS lists them. Timestamps are ISO-8601 UTC text with six fractional
-- digits ("2023-10-06T08:42:53.427050Z"), so text order is time order.
CREATE TABLE customers (
    id              INTEGER PRIMARY KEY,
    created_date    TEXT,
    modified_date   TEXT NOT NULL,
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
    deleted_at      TEXT,
    -- When oms-sync last wrote this row, and when it first wrote it.
    synced_at       TEXT NOT NULL,
    first_synced_at TEXT NOT NULL
);
CREATE INDEX customers_modified_date ON customers (modified_date);
CREATE INDEX customers_email ON customers (email);

-- Customers the API still lists: what most BI questions want.
CREATE VIEW live_customers AS
    SELECT * FROM customers WHERE deleted_at IS NULL;

-- Incremental high-water mark per stream: every row with modified_date < mark_modified_date
-- is stored, and so is every row at mark_modified_date with id <= mark_after_id
-- (NULL: none confirmed yet). No row at all: start from the beginning.
CREATE TABLE sync_state (
    stream             TEXT PRIMARY KEY,
    mark_modified_date TEXT,
    mark_after_id      INTEGER,
    updated_at         TEXT NOT NULL
);

-- A backfill in progress, resumable: one row per id range walked by id keyset.
-- cursor_id: every id in (lo, cursor_id] is done; hi NULL means no upper bound.
CREATE TABLE backfill_ranges (
    stream     TEXT NOT NULL,
    range_no   INTEGER NOT NULL,
    lo         INTEGER NOT NULL,
    hi         INTEGER,
    cursor_id  INTEGER NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, range_no)
);
-- The backfill as a whole: the incremental mark it will leave, taken before it began.
CREATE TABLE backfill_state (
    stream          TEXT PRIMARY KEY,
    run_id          INTEGER,
    started_at      TEXT NOT NULL,
    high_water_date TEXT
);

-- One row per pass, written as the pass goes, for freshness and volume charts.
CREATE TABLE sync_runs (
    id               INTEGER PRIMARY KEY,
    stream           TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('incremental', 'backfill')),
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
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
CREATE INDEX sync_runs_started ON sync_runs (stream, started_at);

-- Records the API sent that could not be stored, kept whole with the reason.
CREATE TABLE quarantine (
    id            INTEGER PRIMARY KEY,
    stream        TEXT NOT NULL,
    record_id     INTEGER,
    modified_date TEXT,
    raw           TEXT NOT NULL,
    error         TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    times_seen    INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX quarantine_by_record ON quarantine (stream, record_id) WHERE record_id IS NOT NULL;
CREATE UNIQUE INDEX quarantine_by_raw ON quarantine (stream, raw) WHERE record_id IS NULL;
