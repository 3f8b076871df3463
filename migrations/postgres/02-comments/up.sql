-- What each table and column means, for BI tools that show the catalog's comments (Metabase
-- takes them as descriptions, psql's \d+ lists them). The SQLite warehouse keeps the same
-- words as `--` comments in its migrations.
COMMENT ON TABLE customers IS 'One row per customer the OMS has ever listed (oms-sync). For BI, prefer the view live_customers.';
COMMENT ON COLUMN customers.id IS 'The OMS customer id.';
COMMENT ON COLUMN customers.created_date IS 'When the customer was created in the OMS (UTC, microseconds).';
COMMENT ON COLUMN customers.modified_date IS 'When the customer last changed in the OMS (UTC, microseconds); the sync follows it.';
COMMENT ON COLUMN customers.omnitron_id IS 'As the API sends it.';
COMMENT ON COLUMN customers.email IS 'As the API sends it.';
COMMENT ON COLUMN customers.first_name IS 'As the API sends it.';
COMMENT ON COLUMN customers.last_name IS 'As the API sends it.';
COMMENT ON COLUMN customers.phone_number IS 'As the API sends it.';
COMMENT ON COLUMN customers.erp_code IS 'As the API sends it.';
COMMENT ON COLUMN customers.channel IS 'As the API sends it.';
COMMENT ON COLUMN customers.extra IS 'API fields not modelled as columns yet, as a JSON object; NULL when there are none.';
COMMENT ON COLUMN customers.deleted_at IS 'Set by a backfill when the API no longer lists the customer; NULL while it does.';
COMMENT ON COLUMN customers.synced_at IS 'When oms-sync last wrote this row.';
COMMENT ON COLUMN customers.first_synced_at IS 'When oms-sync first wrote this row.';
COMMENT ON VIEW live_customers IS 'The customers the OMS still lists (customers without deleted_at): what most BI questions want.';

COMMENT ON TABLE sync_runs IS 'oms-sync bookkeeping: one row per pass (incremental or backfill), for freshness and volume charts. Read only.';
COMMENT ON COLUMN sync_runs.id IS 'The run number, in the order passes started.';
COMMENT ON COLUMN sync_runs.stream IS 'The OMS resource the pass synced, e.g. customers.';
COMMENT ON COLUMN sync_runs.kind IS 'incremental or backfill.';
COMMENT ON COLUMN sync_runs.started_at IS 'When the pass started.';
COMMENT ON COLUMN sync_runs.finished_at IS 'When it ended; NULL while it runs.';
COMMENT ON COLUMN sync_runs.status IS 'running, succeeded, failed, cancelled or interrupted (the process was killed).';
COMMENT ON COLUMN sync_runs.error IS 'Why it failed, when it did.';
COMMENT ON COLUMN sync_runs.pages IS 'Pages fetched.';
COMMENT ON COLUMN sync_runs.rows_fetched IS 'Records the API sent.';
COMMENT ON COLUMN sync_runs.rows_inserted IS 'Rows new to the warehouse.';
COMMENT ON COLUMN sync_runs.rows_updated IS 'Rows whose values changed.';
COMMENT ON COLUMN sync_runs.rows_unchanged IS 'Rows sent again unchanged.';
COMMENT ON COLUMN sync_runs.rows_deleted IS 'Rows a backfill marked deleted.';
COMMENT ON COLUMN sync_runs.rows_quarantined IS 'Records that could not be stored (see quarantine).';
COMMENT ON COLUMN sync_runs.mark_before IS 'The checkpoint when the pass started, in words.';
COMMENT ON COLUMN sync_runs.mark_after IS 'The checkpoint when it ended, in words.';

COMMENT ON TABLE quarantine IS 'oms-sync bookkeeping: records the API sent that could not be stored, kept whole with the reason. Read only.';
COMMENT ON COLUMN quarantine.id IS 'The quarantine row number.';
COMMENT ON COLUMN quarantine.stream IS 'The OMS resource the record came from.';
COMMENT ON COLUMN quarantine.record_id IS 'The record id, when it could be read.';
COMMENT ON COLUMN quarantine.modified_date IS 'Its modified_date, when it could be read.';
COMMENT ON COLUMN quarantine.raw IS 'The record JSON exactly as received.';
COMMENT ON COLUMN quarantine.error IS 'Why it could not be stored, naming the field.';
COMMENT ON COLUMN quarantine.first_seen_at IS 'When a pass first saw it.';
COMMENT ON COLUMN quarantine.last_seen_at IS 'When a pass last saw it.';
COMMENT ON COLUMN quarantine.times_seen IS 'How many times passes saw it.';

COMMENT ON TABLE sync_state IS 'oms-sync bookkeeping: the incremental checkpoint per stream. Internal: never write it.';
COMMENT ON COLUMN sync_state.stream IS 'The OMS resource, e.g. customers.';
COMMENT ON COLUMN sync_state.mark_modified_date IS 'Every row dated before it is stored.';
COMMENT ON COLUMN sync_state.mark_after_id IS 'Of the rows at mark_modified_date, every id up to this one is stored (NULL: none confirmed yet).';
COMMENT ON COLUMN sync_state.updated_at IS 'When the mark last moved.';

COMMENT ON TABLE backfill_state IS 'oms-sync bookkeeping: an unfinished backfill, so the next one resumes it. Internal: never write it.';
COMMENT ON COLUMN backfill_state.stream IS 'The OMS resource, e.g. customers.';
COMMENT ON COLUMN backfill_state.run_id IS 'The sync_runs row of the backfill.';
COMMENT ON COLUMN backfill_state.started_at IS 'When the backfill began.';
COMMENT ON COLUMN backfill_state.high_water_date IS 'The newest modified_date when it began: the mark it leaves.';

COMMENT ON TABLE backfill_ranges IS 'oms-sync bookkeeping: the id ranges of an unfinished backfill with their cursors. Internal: never write it.';
COMMENT ON COLUMN backfill_ranges.stream IS 'The OMS resource, e.g. customers.';
COMMENT ON COLUMN backfill_ranges.range_no IS 'The range number.';
COMMENT ON COLUMN backfill_ranges.lo IS 'Lower id bound (exclusive).';
COMMENT ON COLUMN backfill_ranges.hi IS 'Upper id bound (inclusive); NULL: none.';
COMMENT ON COLUMN backfill_ranges.cursor_id IS 'Every id in (lo, cursor_id] is done.';
COMMENT ON COLUMN backfill_ranges.done IS 'Whether the range is finished.';
