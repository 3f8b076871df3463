//! The PostgreSQL [`Reader`]: its own connection, no advisory lock, read-only transactions
//! (MVCC: it never blocks the writer, and one snapshot is consistent across its queries).

use postgres::{Client, GenericClient};

use super::config::PgConfig;
use super::connect::{blocking, classify, connect};
use super::state::{canon, read_backfill, read_mark};
use crate::warehouse::history::history_table_name;
use crate::warehouse::{HistoryStatus, Mark, Reader, RunRow, Snapshot, WarehouseError};

pub struct PgReader {
    cfg: PgConfig,
    client: Option<Client>,
}

impl Drop for PgReader {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            blocking(|| drop(client));
        }
    }
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader")
            .field("location", &self.cfg.location())
            .finish_non_exhaustive()
    }
}

impl PgReader {
    /// Connects to an existing warehouse schema (a reader never creates one).
    pub fn open(cfg: &PgConfig) -> Result<Self, WarehouseError> {
        Ok(PgReader {
            cfg: cfg.clone(),
            client: Some(blocking(|| connect(cfg, false))?),
        })
    }
}

impl Reader for PgReader {
    fn location(&self) -> String {
        self.cfg.location()
    }

    fn snapshot(
        &mut self,
        stream: &str,
        table: &str,
        recent_runs: usize,
    ) -> Result<Snapshot, WarehouseError> {
        let read = |c: &mut Client| -> Result<Snapshot, postgres::Error> {
            let mut tx = c
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()?;
            let (mark, mark_updated_at) = match tx.query_opt(
                "SELECT updated_at FROM sync_state WHERE stream = $1",
                &[&stream],
            )? {
                Some(r) => (read_mark(&mut tx, stream)?, canon(r.try_get(0)?)),
                None => (Mark::Start, None),
            };
            let backfill = read_backfill(&mut tx, stream)?;
            let counts = tx.query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE deleted_at IS NULL),
                            count(*) FILTER (WHERE deleted_at IS NOT NULL),
                            (SELECT max(modified_date) FROM {table})
                     FROM {table}"
                ),
                &[],
            )?;
            let quarantined: i64 = tx
                .query_one(
                    "SELECT count(*) FROM quarantine WHERE stream = $1",
                    &[&stream],
                )?
                .try_get(0)?;
            let last_success_at = canon(
                tx.query_one(
                    "SELECT max(finished_at) FROM sync_runs WHERE stream = $1 AND status = 'succeeded'",
                    &[&stream],
                )?
                .try_get(0)?,
            );
            let runs = tx.query_one(
                "SELECT max(finished_at) FILTER (WHERE kind = 'backfill' AND status = 'succeeded'), min(started_at)
                 FROM sync_runs WHERE stream = $1",
                &[&stream],
            )?;
            let last_backfill_at = canon(runs.try_get(0)?);
            let first_run_at = canon(runs.try_get(1)?);
            let recent_runs = read_runs(&mut tx, stream, recent_runs)?;
            let history = match history_table_name(table) {
                None => None,
                Some(h) => {
                    let state = tx.query_opt(
                        "SELECT enabled, changed_at FROM history_state WHERE stream = $1",
                        &[&stream],
                    )?;
                    let (on, changed_at) = match state {
                        Some(r) => (r.try_get(0)?, canon(r.try_get(1)?)),
                        None => (false, None),
                    };
                    let versions: i64 = tx
                        .query_one(&format!("SELECT count(*) FROM {h}"), &[])?
                        .try_get(0)?;
                    Some(HistoryStatus {
                        table: h.to_string(),
                        on,
                        changed_at,
                        versions,
                    })
                }
            };
            tx.commit()?;
            Ok(Snapshot {
                mark,
                mark_updated_at,
                backfill,
                live: counts.try_get(0)?,
                deleted: counts.try_get(1)?,
                quarantined,
                newest_modified_date: canon(counts.try_get(2)?),
                last_success_at,
                last_backfill_at,
                first_run_at,
                recent_runs,
                history,
            })
        };
        let cfg = &self.cfg;
        blocking(|| {
            // A reader kept across passes (metrics) connects again after a loss.
            let client = match self.client.take() {
                Some(c) if !c.is_closed() => c,
                _ => connect(cfg, false)?,
            };
            let client = self.client.insert(client);
            read(client).map_err(|e| {
                // A schema without our tables: say what to run rather than which relation.
                if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) {
                    WarehouseError::NotAWarehouse {
                        at: cfg.at(),
                        reason: format!("schema {} holds no oms-sync warehouse", cfg.schema),
                        fix: "run oms-sync --once or --backfill first, or check warehouse.schema",
                    }
                } else {
                    classify(cfg, "reading a snapshot", e)
                }
            })
        })
    }
}

fn read_runs<C: GenericClient>(
    c: &mut C,
    stream: &str,
    n: usize,
) -> Result<Vec<RunRow>, postgres::Error> {
    c.query(
        "SELECT id, kind, started_at, finished_at, status, error, pages, rows_fetched,
                rows_inserted, rows_updated, rows_unchanged, rows_deleted, rows_quarantined,
                mark_before, mark_after, versions_written
         FROM sync_runs WHERE stream = $1 ORDER BY id DESC LIMIT $2",
        &[&stream, &(n as i64)],
    )?
    .iter()
    .map(|r| {
        Ok(RunRow {
            id: r.try_get(0)?,
            kind: r.try_get(1)?,
            started_at: canon(r.try_get(2)?).unwrap_or_default(),
            finished_at: canon(r.try_get(3)?),
            status: r.try_get(4)?,
            error: r.try_get(5)?,
            pages: r.try_get(6)?,
            rows_fetched: r.try_get(7)?,
            rows_inserted: r.try_get(8)?,
            rows_updated: r.try_get(9)?,
            rows_unchanged: r.try_get(10)?,
            rows_deleted: r.try_get(11)?,
            rows_quarantined: r.try_get(12)?,
            mark_before: r.try_get(13)?,
            mark_after: r.try_get(14)?,
            versions_written: r.try_get(15)?,
        })
    })
    .collect()
}
