//! `sync.keep_runs`: the run history (`sync_runs`) is bounded by age, but never loses a row
//! that `status` or the scheduler reads. One statement for both backends; each binds the
//! cutoff its own way.

/// Deletes the runs that started before the cutoff (the statement's only parameter, given as
/// `cutoff`, e.g. `?1` or `$1::text::timestamptz`), except:
/// - runs still `running` (a pass under way, or one a crash left for the next open to mark);
/// - the newest run per stream, kind and status: `status`'s last success and last failure,
///   and the newest finished backfill, from which the scheduled reconciliation counts;
/// - the first run per stream: until a backfill has finished, reconciliation counts from it;
/// - the run an unfinished backfill belongs to (`backfill_state.run_id`).
///
/// The kept sets are read once per statement (a scan of `sync_runs`, which this keeps short).
pub(crate) fn prune_statement(cutoff: &str) -> String {
    format!(
        "DELETE FROM sync_runs
         WHERE started_at < {cutoff}
           AND status <> 'running'
           AND id NOT IN (SELECT max(id) FROM sync_runs GROUP BY stream, kind, status)
           AND id NOT IN (SELECT min(id) FROM sync_runs GROUP BY stream)
           AND id NOT IN (SELECT run_id FROM backfill_state WHERE run_id IS NOT NULL)"
    )
}
