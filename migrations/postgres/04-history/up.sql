-- History mode (`[sync] history = true`): the same table as migrations/sqlite/05-history,
-- instants as timestamptz.
CREATE TABLE customers_history (
    id              bigint NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz,
    created_date    timestamptz,
    modified_date   timestamptz NOT NULL,
    omnitron_id     bigint,
    email           text,
    first_name      text,
    last_name       text,
    phone_number    text,
    erp_code        text,
    channel         bigint,
    extra           jsonb,
    PRIMARY KEY (id, valid_from)
);
CREATE INDEX customers_history_valid_from ON customers_history (valid_from);
CREATE INDEX customers_history_valid_to ON customers_history (valid_to);

CREATE TABLE history_state (
    stream     text PRIMARY KEY,
    enabled    boolean NOT NULL,
    changed_at timestamptz NOT NULL
);

ALTER TABLE sync_runs ADD COLUMN versions_written bigint NOT NULL DEFAULT 0;

-- The customers as they were at an instant: the version of each id current then (deleted
-- customers are absent after their deleted_at). SELECT * FROM customers_as_of('2024-03-31 23:59:59+00').
CREATE FUNCTION customers_as_of(at timestamptz) RETURNS SETOF customers_history
    LANGUAGE sql STABLE
    AS $$ SELECT * FROM customers_history
          WHERE valid_from <= at AND (valid_to IS NULL OR valid_to > at) $$;

COMMENT ON TABLE customers_history IS 'History mode (sync.history): one row per version of a customer the warehouse stored, current from valid_from until valid_to. Query a moment with customers_as_of(timestamptz).';
COMMENT ON COLUMN customers_history.id IS 'The OMS customer id.';
COMMENT ON COLUMN customers_history.valid_from IS 'When this version began: its modified_date in the OMS.';
COMMENT ON COLUMN customers_history.valid_to IS 'When it ended: the modified_date of the next stored version, or the deleted_at of the backfill that found the customer gone; NULL for the version customers holds now.';
COMMENT ON COLUMN customers_history.created_date IS 'When the customer was created in the OMS (UTC, microseconds).';
COMMENT ON COLUMN customers_history.modified_date IS 'This version''s modified_date in the OMS (equal to valid_from).';
COMMENT ON COLUMN customers_history.omnitron_id IS 'As the API sent it in this version.';
COMMENT ON COLUMN customers_history.email IS 'As the API sent it in this version.';
COMMENT ON COLUMN customers_history.first_name IS 'As the API sent it in this version.';
COMMENT ON COLUMN customers_history.last_name IS 'As the API sent it in this version.';
COMMENT ON COLUMN customers_history.phone_number IS 'As the API sent it in this version.';
COMMENT ON COLUMN customers_history.erp_code IS 'As the API sent it in this version.';
COMMENT ON COLUMN customers_history.channel IS 'As the API sent it in this version.';
COMMENT ON COLUMN customers_history.extra IS 'API fields not modelled as columns, as a JSON object; NULL when there are none.';
COMMENT ON FUNCTION customers_as_of(timestamptz) IS 'The customers as they were at an instant: the version of each id current then (history mode).';

COMMENT ON TABLE history_state IS 'oms-sync bookkeeping: whether history is kept per stream, and since when. Internal: never write it.';
COMMENT ON COLUMN history_state.stream IS 'The OMS resource, e.g. customers.';
COMMENT ON COLUMN history_state.enabled IS 'Whether passes write history.';
COMMENT ON COLUMN history_state.changed_at IS 'When history was last turned on or off.';

COMMENT ON COLUMN sync_runs.versions_written IS 'History versions the pass wrote (opened, reopened or corrected in place); 0 while history is off.';
