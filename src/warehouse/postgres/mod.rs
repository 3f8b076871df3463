//! The PostgreSQL warehouse: the same tables and semantics as the SQLite one, in a schema of
//! the operator's database. One blocking connection (the writer runs on its own thread)
//! holds a session advisory lock, so a second writer of the same schema is refused; readers
//! never take it. The schema comes from `migrations/postgres/` through refinery.
//!
//! The daemon keeps one warehouse across passes, so a connection lost mid-pass (server
//! restart, failover, terminated backend) fails that call with
//! [`WarehouseError::ConnectionLost`] (its transaction rolled back server-side) and the next
//! call connects again, re-taking the lock.
//!
//! - [`config`]: the URL, password, sslmode and schema; `password`: the password file;
//! - [`tls`]: rustls per sslmode;
//! - [`connect`]: connecting, lock, migrations, error kinds;
//! - [`state`]: the mark, backfill ranges, secondary indexes;
//! - [`apply`]: one batch with its checkpoint, in one transaction; `load`: binary COPY
//!   straight into the table for a backfill page proved new; `copy`: the measured
//!   alternative bulk path for the others (COPY into staging, then merge);
//! - [`reader`]: the read-only [`Reader`](crate::warehouse::Reader).

mod apply;
pub mod config;
mod connect;
mod copy;
mod history;
mod load;
mod password;
mod reader;
pub mod schema;
mod state;
mod tls;

use postgres::Client;

pub use crate::warehouse::secondary_indexes;
pub use apply::{BulkPath, upsert_sql};
pub use config::{PgConfig, PgHost, SslMode};
pub use reader::PgReader;

use super::{BackfillState, Batch, Mark, RowStats, RunKind, RunStatus, Warehouse, WarehouseError};
use crate::resource::{Resource, Spec};
use crate::timefmt;
use crate::warehouse::history::{HistoryWriter, Switch, switch, table_of};
use crate::warehouse::write::{Consumer, Recorder};
use connect::classify;
use state::{
    build_secondary_indexes, drop_secondary_indexes_if_empty, read_backfill, read_mark,
    write_backfill, write_mark_if_greater,
};
use std::collections::HashSet;

pub struct PgWarehouse {
    /// Boxed: keeps `AnyWarehouse`'s variants of similar size.
    cfg: Box<PgConfig>,
    /// None after the connection was lost: the next call connects again.
    client: Option<Client>,
    /// Rows in quarantine, so clearing it costs nothing while it is empty.
    quarantined: i64,
    bulk: BulkPath,
    /// Pages committed by binary COPY straight into the table since open.
    copied: u64,
    /// The server process of the current (or lost) connection, to end it if it lingers.
    backend_pid: Option<i32>,
    /// The streams whose history is on (as `history_state` says).
    history: HashSet<String>,
}

impl std::fmt::Debug for PgWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWarehouse")
            .field("location", &self.cfg.location())
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// The demo's marker table: a schema holding it was made by `oms-sync demo`.
pub const DEMO_MARKER: &str = "oms_sync_demo";

/// For `oms-sync demo`: drops the configured schema when an earlier demo made it (it holds
/// [`DEMO_MARKER`]); refuses a schema that holds anything else; a missing one is fine.
pub fn drop_previous_demo(cfg: &PgConfig) -> Result<(), WarehouseError> {
    connect::blocking(|| {
        // Not into the schema, which may not exist; errors still name it.
        let mut c = connect::connect_server(cfg)?;
        let (exists, marked, tables): (bool, bool, i64) = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                        to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL,
                        (SELECT count(*) FROM pg_tables WHERE schemaname = $1)",
                &[&cfg.schema, &DEMO_MARKER],
            )
            .and_then(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .map_err(|e| classify(cfg, "looking for an earlier demo", e))?;
        if !exists || (tables == 0 && !marked) {
            return Ok(());
        }
        if !marked {
            return Err(WarehouseError::Config {
                key: "--db",
                reason: format!("schema {} exists and was not made by the demo", cfg.schema),
                fix: "point the demo at another database, or drop that schema yourself",
            });
        }
        c.batch_execute(&format!(
            "DROP SCHEMA {} CASCADE",
            connect::quoted(&cfg.schema)
        ))
        .map_err(|e| classify(cfg, "dropping the earlier demo's schema", e))
    })
}

/// Whether the configured schema exists (`check` drops one only it created).
pub fn schema_exists(cfg: &PgConfig) -> Result<bool, WarehouseError> {
    connect::blocking(|| {
        connect::connect_server(cfg)?
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&cfg.schema],
            )
            .map(|r| r.is_some())
            .map_err(|e| classify(cfg, "looking up the schema", e))
    })
}

impl PgWarehouse {
    /// Drops the whole schema, on the writer's own session (so while holding its lock): for
    /// `check`, which created it only to prove it could.
    pub fn drop_schema(&mut self) -> Result<(), WarehouseError> {
        let sql = format!("DROP SCHEMA {} CASCADE", connect::quoted(&self.cfg.schema));
        self.run("dropping the schema the check created", |c| {
            c.batch_execute(&sql)
        })
    }

    /// Marks the schema as the demo's own, so the next demo run may replace it.
    pub fn mark_as_demo(&mut self) -> Result<(), WarehouseError> {
        self.run("marking the demo schema", |c| {
            c.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {DEMO_MARKER} (note text)"
            ))
        })
    }

    /// Connects for writing: creates the schema if needed, takes the writer lock, applies
    /// pending migrations, builds missing secondary indexes, and marks runs a killed process
    /// left `running` as `interrupted`.
    pub fn open(cfg: &PgConfig) -> Result<Self, WarehouseError> {
        let (client, pid) = connect::blocking(|| Self::connect_writer(cfg, None))?;
        let mut wh = PgWarehouse {
            cfg: Box::new(cfg.clone()),
            client: Some(client),
            quarantined: 0,
            bulk: BulkPath::default(),
            copied: 0,
            backend_pid: Some(pid),
            history: HashSet::new(),
        };
        let now = timefmt::now_canonical();
        wh.run(
            "marking the runs of an earlier process that was killed as interrupted",
            |c| {
                c.execute(
                "UPDATE sync_runs SET status = 'interrupted', finished_at = $1::text::timestamptz
                 WHERE status = 'running'",
                &[&now],
            )?;
                Ok(())
            },
        )?;
        wh.quarantined = wh.run("counting quarantine", |c| {
            c.query_one("SELECT count(*) FROM quarantine", &[])?
                .try_get(0)
        })?;
        wh.history = wh.run("reading the history state", |c| {
            c.query("SELECT stream FROM history_state WHERE enabled", &[])?
                .iter()
                .map(|r| r.try_get(0))
                .collect()
        })?;
        Ok(wh)
    }

    /// A locked, migrated connection with the secondary indexes in place.
    /// Returns it with its backend's pid.
    fn connect_writer(cfg: &PgConfig, stale: Option<i32>) -> Result<(Client, i32), WarehouseError> {
        let mut client = connect::connect(cfg, true)?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| classify(cfg, "reading the session id", e))?;
        connect::take_lock(cfg, &mut client, stale)?;
        connect::migrate(cfg, &mut client)?;
        // A backfill into an empty table drops them until its end; if it was killed, they
        // come back here.
        for spec in crate::resource::ALL {
            build_secondary_indexes(&mut client, spec)
                .map_err(|e| classify(cfg, "building the secondary indexes", e))?;
        }
        Ok((client, pid))
    }

    /// Proves the warehouse takes a write (rolled back) and names its schema version.
    pub fn probe_writable(&mut self) -> Result<String, WarehouseError> {
        self.run("writing a probe (rolled back)", |c| {
            let mut tx = c.transaction()?;
            tx.batch_execute("CREATE TABLE oms_sync_check_probe (x int)")?;
            let v: Option<i32> = tx
                .query_one("SELECT max(version) FROM refinery_schema_history", &[])?
                .try_get(0)?;
            tx.rollback()?;
            Ok(format!("schema version {}, writable", v.unwrap_or(0)))
        })
    }

    /// Chooses how records are loaded (the default is the measured faster one).
    pub fn set_bulk_path(&mut self, bulk: BulkPath) {
        self.bulk = bulk;
    }

    /// Pages committed by binary COPY straight into the table (backfill pages whose id
    /// interval held no row) since the warehouse was opened; the others were upserted.
    pub fn pages_copied(&self) -> u64 {
        self.copied
    }

    /// The server process of the writer's current session (what an operator would
    /// `pg_terminate_backend`), if connected.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    pub fn config(&self) -> &PgConfig {
        &self.cfg
    }

    /// The live connection, connecting again (and re-taking the lock) after a loss.
    pub fn client(&mut self) -> Result<&mut Client, WarehouseError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        let client = match self.client.take() {
            Some(c) => c,
            None => {
                tracing::info!(warehouse = %self.cfg, "connecting to the PostgreSQL warehouse again");
                let (client, pid) = Self::connect_writer(&self.cfg, self.backend_pid)?;
                self.backend_pid = Some(pid);
                client
            }
        };
        Ok(self.client.insert(client))
    }

    fn apply_with<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
        consumer: Option<&mut (dyn for<'a, 'b> Consumer<apply::PgTx<'a, 'b>> + Send)>,
    ) -> Result<RowStats, WarehouseError> {
        let mut quarantined = self.quarantined;
        let mut copied = self.copied;
        let bulk = self.bulk;
        let mut history = HistoryWriter::default();
        let consumer: Option<&mut (dyn for<'a, 'b> Consumer<apply::PgTx<'a, 'b>> + Send)> =
            match consumer {
                Some(c) => Some(c),
                None if self.history.contains(R::NAME) => Some(&mut history),
                None => None,
            };
        let stats = self.run("writing a page", |c| {
            apply::apply_batches::<R>(
                c,
                bulk,
                &mut quarantined,
                &mut copied,
                run,
                batches,
                consumer,
            )
        })?;
        self.quarantined = quarantined;
        self.copied = copied;
        Ok(stats)
    }

    /// Runs `f` on the connection; a lost connection is dropped so the next call reconnects.
    fn run<T: Send>(
        &mut self,
        context: &str,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, WarehouseError> {
        connect::blocking(|| {
            let client = self.client()?;
            f(client).map_err(|e| {
                if connect::is_connection_lost(&e) || connect::is_read_only(&e) {
                    self.client = None;
                }
                classify(&self.cfg, context, e)
            })
        })
    }
}

impl Drop for PgWarehouse {
    fn drop(&mut self) {
        // Closing ends the session, which releases the advisory lock.
        if let Some(client) = self.client.take() {
            connect::blocking(|| drop(client));
        }
    }
}

impl Warehouse for PgWarehouse {
    fn mark(&mut self, stream: &Spec) -> Result<Mark, WarehouseError> {
        self.run("reading the checkpoint", |c| read_mark(c, stream.name))
    }

    fn backfill_state(&mut self, stream: &Spec) -> Result<Option<BackfillState>, WarehouseError> {
        self.run("reading the backfill state", |c| {
            read_backfill(c, stream.name)
        })
    }

    fn start_backfill(
        &mut self,
        stream: &Spec,
        state: &BackfillState,
    ) -> Result<(), WarehouseError> {
        self.run("starting the backfill", |c| {
            let mut tx = c.transaction()?;
            drop_secondary_indexes_if_empty(&mut tx, stream)?;
            write_backfill(&mut tx, stream.name, state)?;
            tx.commit()
        })
    }

    fn finish_backfill(&mut self, stream: &Spec, mark: Mark) -> Result<(), WarehouseError> {
        self.run("finishing the backfill", |c| {
            let mut tx = c.transaction()?;
            build_secondary_indexes(&mut tx, stream)?;
            write_mark_if_greater(&mut tx, stream.name, &mark)?;
            tx.execute(
                "DELETE FROM backfill_ranges WHERE stream = $1",
                &[&stream.name],
            )?;
            tx.execute(
                "DELETE FROM backfill_state WHERE stream = $1",
                &[&stream.name],
            )?;
            tx.commit()
        })
    }

    fn begin_run(
        &mut self,
        stream: &Spec,
        kind: RunKind,
        mark_before: &Mark,
    ) -> Result<i64, WarehouseError> {
        let now = timefmt::now_canonical();
        self.run("recording the run", |c| {
            c.query_one(
                "INSERT INTO sync_runs (stream, kind, started_at, status, mark_before)
                 VALUES ($1, $2, $3::text::timestamptz, 'running', $4) RETURNING id",
                &[&stream.name, &kind.as_str(), &now, &mark_before.to_string()],
            )?
            .try_get(0)
        })
    }

    fn apply<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
    ) -> Result<RowStats, WarehouseError> {
        self.apply_with::<R>(run, batches, None)
    }

    fn apply_recording<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
        recorder: &mut Recorder,
    ) -> Result<RowStats, WarehouseError> {
        self.apply_with::<R>(run, batches, Some(recorder))
    }

    fn finish_run(
        &mut self,
        stream: &Spec,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), WarehouseError> {
        let now = timefmt::now_canonical();
        self.run("recording the end of the run", |c| {
            let mark = read_mark(c, stream.name)?;
            c.execute(
                "UPDATE sync_runs SET status = $2, error = $3, finished_at = $4::text::timestamptz,
                     mark_after = $5 WHERE id = $1",
                &[&run, &status.as_str(), &error, &now, &mark.to_string()],
            )?;
            Ok(())
        })
    }

    fn prune_runs(&mut self, older_than: &str) -> Result<u64, WarehouseError> {
        let sql = super::retention::prune_statement("$1::text::timestamptz");
        self.run("forgetting old runs (sync.keep_runs)", |c| {
            c.execute(&sql, &[&older_than])
        })
    }

    fn set_history(&mut self, stream: &Spec, on: bool, run: i64) -> Result<Switch, WarehouseError> {
        let now = timefmt::now_canonical();
        let bulk = self.bulk;
        let switched = self.run("turning history on or off", |c| {
            let mut tx = c.transaction()?;
            let mut d = apply::PgTx::new(&mut tx, bulk);
            let s = switch(&mut d, stream, on, &now, run)?;
            tx.commit()?;
            Ok(s)
        })?;
        if on && table_of(stream).is_some() {
            self.history.insert(stream.name.to_string());
        } else {
            self.history.remove(stream.name);
        }
        Ok(switched)
    }
}
