//! `oms-sync demo`: the whole job with no Akinon account. Starts the fake OMS in-process with
//! synthetic customers (Turkish names, nulls, bulk-update ties), their addresses and the
//! stores and warehouses, syncs all three streams into a SQLite file (or a PostgreSQL schema,
//! `oms_sync_demo`, with `--db postgresql://…`), changes some customers (updates, a bulk
//! update, new customers, deletions), syncs again, reconciles deletions with a backfill, and
//! prints what happened and queries to try (a join of customers and their addresses among
//! them).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::{ApiConfig, Secret, WarehouseConfig, parse_base_url};
use crate::stream::Stream;
use crate::sync::{NoProgress, PassReport, SyncOptions};
use crate::warehouse::postgres::{PgConfig, drop_previous_demo};
use crate::warehouse::{AnyWarehouse, RunKind, describe as describe_warehouse, open_reader};
use fake_oms::{FakeOms, FakeOmsConfig, Store};

/// The schema a PostgreSQL demo writes, so it never touches the database's own tables.
pub const DEMO_SCHEMA: &str = "oms_sync_demo";

const SEED: u64 = 2026;
/// Stores and warehouses the demo's fake OMS lists.
const STOCK_LOCATIONS: usize = 60;

fn describe(out: &mut impl Write, label: &str, r: &PassReport) -> std::io::Result<()> {
    writeln!(
        out,
        "{label:<34} {:>6} requests {:>7} fetched {:>7} inserted {:>6} updated {:>6} unchanged {:>5} deleted  ({:.2}s)",
        r.requests,
        r.stats.fetched,
        r.stats.inserted,
        r.stats.updated,
        r.stats.unchanged,
        r.stats.deleted,
        r.elapsed.as_secs_f64()
    )
}

/// A file from an earlier demo run is replaced; any other existing file is left alone.
fn replace_previous_demo(db: &Path) -> anyhow::Result<()> {
    if !db.exists() {
        return Ok(());
    }
    let is_demo =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'oms_sync_demo'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .map(|n| n > 0)
            .unwrap_or(false);
    if !is_demo {
        anyhow::bail!(
            "{} exists and was not made by the demo; fix: pass --db with a new file name",
            db.display()
        );
    }
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::Error::new(e)
                    .context(format!("removing the previous demo file {}", db.display())));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The demo's story on stdout. A closed stdout (`demo | head -3`) must not stop the demo half
/// way, leaving a half-built warehouse: writes after the first failure are dropped, the demo
/// finishes, and [`Story::finish`] then reports the failure (a `BrokenPipe` is a quiet end).
struct Story {
    out: std::io::Stdout,
    failed: Option<std::io::Error>,
}

impl Write for Story {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed.is_none()
            && let Err(e) = self.out.write_all(buf)
        {
            self.failed = Some(e);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed.is_none()
            && let Err(e) = self.out.flush()
        {
            self.failed = Some(e);
        }
        Ok(())
    }
}

impl Story {
    fn finish(mut self) -> anyhow::Result<()> {
        let _ = self.flush();
        match self.failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Runs the demo, writing its story to stdout. A closed stdout does not stop it (see
/// [`Story`]); it ends with a `BrokenPipe` error then (the caller treats that as a quiet end).
/// Where the demo writes: a SQLite file, or a `postgresql://` URL (schema [`DEMO_SCHEMA`]).
pub fn target(db: &str) -> anyhow::Result<WarehouseConfig> {
    if db.starts_with("postgresql://") || db.starts_with("postgres://") {
        Ok(WarehouseConfig::Postgres(PgConfig::parse(
            db,
            None,
            Some(DEMO_SCHEMA),
            false,
        )?))
    } else {
        Ok(WarehouseConfig::Sqlite {
            path: Path::new(db).to_path_buf(),
        })
    }
}

/// Clears an earlier demo's warehouse (never anything else), then opens it marked as the demo's.
fn open_fresh(target: &WarehouseConfig) -> anyhow::Result<AnyWarehouse> {
    match target {
        WarehouseConfig::Sqlite { path } => replace_previous_demo(path)?,
        WarehouseConfig::Postgres(pg) => drop_previous_demo(pg)?,
    }
    let mut wh = AnyWarehouse::open(target)?;
    // Marks it as the demo's own, so the next demo run may replace it.
    match &mut wh {
        AnyWarehouse::Sqlite(w) => w
            .connection()
            .execute_batch("CREATE TABLE IF NOT EXISTS oms_sync_demo (note TEXT)")?,
        AnyWarehouse::Postgres(w) => w.mark_as_demo()?,
    }
    Ok(wh)
}

pub async fn run(target: &WarehouseConfig, customers: usize) -> anyhow::Result<()> {
    let mut out = Story {
        out: std::io::stdout(),
        failed: None,
    };
    let people = fake_oms::synthetic_customers(customers, SEED);
    let ids: Vec<i64> = people.iter().map(|c| c.id).collect();
    let oms = FakeOms::start(FakeOmsConfig::default(), people)
        .await
        .context("starting the built-in fake OMS on 127.0.0.1")?;
    let addresses = fake_oms::synthetic_customer_addresses(&ids, 2, SEED);
    let locations = fake_oms::synthetic_stock_locations(STOCK_LOCATIONS, SEED);
    writeln!(
        out,
        "fake OMS with {customers} synthetic customers, {} addresses and {STOCK_LOCATIONS} stores and warehouses at {}",
        addresses.len(),
        oms.base_url()
    )?;
    oms.add_resource(Store::from_records(&fake_oms::STOCK_LOCATIONS, locations));
    oms.add_resource(Store::from_records(
        &fake_oms::CUSTOMER_ADDRESSES,
        addresses,
    ));
    let base_url = parse_base_url(&oms.base_url(), false).context("the fake OMS's address")?;
    let api = ApiConfig {
        page_size: 500,
        retry_min_delay: Duration::from_millis(100),
        retry_max_delay: Duration::from_secs(2),
        concurrency: 2,
        ..ApiConfig::new(base_url, Secret::new(oms.token()))
    };
    let client = ApiClient::new(&api)?;
    let opts = SyncOptions {
        history: false,
        page_size: api.page_size,
        lookback: Duration::ZERO,
        concurrency: api.concurrency,
    };
    let cancel = CancellationToken::new();
    // The warehouse stays off the async workers, like the writer.
    let t = target.clone();
    let mut wh = tokio::task::spawn_blocking(move || open_fresh(&t)).await??;
    let place = describe_warehouse(target);
    writeln!(out, "warehouse {place}\n")?;

    let (back, r) = pass(RunKind::Incremental, &client, wh, &opts, &cancel).await;
    wh = back;
    describe_all(&mut out, "1. first incremental pass", r)?;

    let (changed, added, removed) = oms.with_store(|s| {
        let touched = fake_oms::touch_random(s, 0.02, SEED + 1);
        let added = fake_oms::insert_new(s, 100, SEED + 2).len();
        let victims: Vec<i64> = s.ids().step_by(500).take(20).collect();
        let removed = victims.iter().filter(|id| s.remove(**id)).count();
        // An updated customer that is then deleted is not listed again: not counted updated.
        let changed = touched.iter().filter(|id| !victims.contains(id)).count();
        (changed, added, removed)
    });
    writeln!(
        out,
        "\n   the OMS changes: {changed} customers updated, {added} created, {removed} deleted\n"
    )?;

    let (back, r) = pass(RunKind::Incremental, &client, wh, &opts, &cancel).await;
    wh = back;
    describe_all(&mut out, "2. incremental pass", r)?;
    let (back, r) = pass(RunKind::Incremental, &client, wh, &opts, &cancel).await;
    wh = back;
    describe_all(&mut out, "3. incremental pass, no changes", r)?;
    let (back, r) = pass(RunKind::Backfill, &client, wh, &opts, &cancel).await;
    wh = back;
    describe_all(&mut out, "4. backfill (finds deletions)", r)?;
    writeln!(
        out,
        "\n   requests count every call to the OMS: also the empty page that ends a walk or a\n   \
         bulk-update tie group, and a backfill's count requests that plan its id ranges, so\n   \
         they exceed the pages `status` lists. unchanged: rows read again at page boundaries\n   \
         (the keyset re-reads a page's last instant, never skipping a row), stored as they were."
    )?;

    drop(wh);
    let t = target.clone();
    let status = tokio::task::spawn_blocking(move || {
        open_reader(&t).and_then(|mut r| crate::status::read(r.as_mut()))
    })
    .await??;
    let server = oms.with_store(|s| s.len());
    let (live, deleted) = status
        .stream(Stream::Customers.name())
        .map_or((0, 0), |c| (c.live, c.deleted));
    writeln!(
        out,
        "\nwarehouse: {live} live customers (the OMS lists {server}), {deleted} marked deleted"
    )?;
    oms.shutdown().await;
    match target {
        WarehouseConfig::Sqlite { path } => {
            writeln!(out, "\n$ oms-sync status --db {}", path.display())?;
            write!(out, "{}", crate::status::render(&status))?;
            writeln!(
                out,
                "\nTry:\n  sqlite3 -readonly {db} \"SELECT id, first_name, last_name, email, modified_date FROM live_customers ORDER BY modified_date DESC LIMIT 5;\"\n  sqlite3 -readonly {db} \"{JOIN_SQLITE}\"\n  sqlite3 -readonly {db} \"SELECT stream, kind, status, rows_fetched, rows_inserted, rows_updated, rows_deleted FROM sync_runs;\"",
                db = path.display()
            )?;
        }
        WarehouseConfig::Postgres(_) => {
            write!(out, "\n{}", crate::status::render(&status))?;
            writeln!(
                out,
                "\nTry (psql on the same database):\n  SELECT id, first_name, last_name, email, modified_date FROM {DEMO_SCHEMA}.live_customers ORDER BY modified_date DESC LIMIT 5;\n  SET search_path = {DEMO_SCHEMA}; {JOIN_PG}\n  SELECT stream, kind, status, rows_fetched, rows_inserted, rows_updated, rows_deleted FROM {DEMO_SCHEMA}.sync_runs;"
            )?;
        }
    }
    out.finish()
}

/// The customers ↔ addresses join the demo suggests (`customer_addresses.customer` refers to
/// `customers.id`, inferred: see docs/resources.md).
pub const JOIN_SQLITE: &str = "SELECT c.id, c.first_name, c.last_name, a.address_type, a.title, a.line, json_extract(a.extra, '$.city') AS city FROM live_customers c JOIN live_customer_addresses a ON a.customer = c.id ORDER BY c.id, a.id LIMIT 10;";
/// [`JOIN_SQLITE`] for PostgreSQL (`extra` is jsonb).
pub const JOIN_PG: &str = "SELECT c.id, c.first_name, c.last_name, a.address_type, a.title, a.line, a.extra->>'city' AS city FROM live_customers c JOIN live_customer_addresses a ON a.customer = c.id ORDER BY c.id, a.id LIMIT 10;";

/// One line per stream: the step's label on customers' (the story's figures), the stream's
/// name on the others'. The first failure fails the demo.
fn describe_all(
    out: &mut impl Write,
    label: &str,
    outcomes: Vec<crate::tick::Outcome>,
) -> anyhow::Result<()> {
    for (stream, r) in outcomes {
        let r = r.with_context(|| format!("{label}: stream {}", stream.name()))?;
        match stream {
            Stream::Customers => describe(out, label, &r)?,
            other => describe(out, &format!("   {}", other.name()), &r)?,
        }
    }
    Ok(())
}

/// One pass of every stream.
async fn pass(
    kind: RunKind,
    client: &ApiClient,
    wh: AnyWarehouse,
    opts: &SyncOptions,
    cancel: &CancellationToken,
) -> (AnyWarehouse, Vec<crate::tick::Outcome>) {
    crate::tick::run_all(
        Stream::ALL,
        kind,
        client,
        wh,
        opts,
        cancel,
        &|_| Arc::new(NoProgress),
        &mut |_, _| {},
    )
    .await
}
