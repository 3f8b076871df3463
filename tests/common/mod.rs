//! Shared helpers for the integration tests: a fake OMS on loopback, a warehouse in a temp dir,
//! and comparisons of the warehouse against the server's data.
#![allow(dead_code)]

pub mod history;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fake_oms::{FakeCustomer, FakeOms, FakeOmsConfig};
use oms_sync::api::ApiClient;
use oms_sync::config::{ApiConfig, Secret, WarehouseConfig, parse_base_url};
use oms_sync::resource::{Customer, CustomerFields, Customers};
use oms_sync::stream::{Stream, StreamWarehouse};
use oms_sync::sync::{self, NoProgress, PassReport, SyncError, SyncOptions};
use oms_sync::warehouse::{AnyWarehouse, Mark, PgConfig, Reader, Snapshot};
use tokio_util::sync::CancellationToken;

pub mod kill;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap()
}

/// `t0` plus `ms` milliseconds plus `us` microseconds.
pub fn at(ms: i64, us: i64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(ms) + TimeDelta::microseconds(us)
}

/// `n` customers with ids 1..=n, one distinct microsecond each.
pub fn distinct(n: i64) -> Vec<FakeCustomer> {
    (1..=n)
        .map(|i| FakeCustomer::new(i, at(0, i * 7)))
        .collect()
}

pub async fn fake(customers: Vec<FakeCustomer>) -> FakeOms {
    FakeOms::start(FakeOmsConfig::default(), customers)
        .await
        .expect("fake OMS starts")
}

/// A client config for the fake, every key the tests do not set at its default.
pub fn fake_api_config(oms: &FakeOms) -> ApiConfig {
    fake_api_config_at(&oms.base_url(), &oms.token())
}

fn fake_api_config_at(base_url: &str, token: &str) -> ApiConfig {
    ApiConfig::new(
        parse_base_url(base_url, false).expect("the fake listens on a loopback http URL"),
        Secret::new(token.to_owned()),
    )
}

pub fn api_config(oms: &FakeOms, page_size: u32) -> ApiConfig {
    api_config_at(&oms.base_url(), &oms.token(), page_size)
}

/// [`api_config`] for a fake known by its URL and token (a child process of the test).
pub fn api_config_at(base_url: &str, token: &str, page_size: u32) -> ApiConfig {
    ApiConfig {
        page_size,
        timeout: Duration::from_secs(10),
        max_retries: 6,
        retry_min_delay: Duration::from_millis(1),
        retry_max_delay: Duration::from_millis(20),
        ..fake_api_config_at(base_url, token)
    }
}

pub fn options(page_size: u32) -> SyncOptions {
    SyncOptions {
        page_size,
        lookback: Duration::ZERO,
        concurrency: 1,
        history: false,
    }
}

/// The warehouse under test, whichever backend: the suites take one from [`backends`] and
/// open it for each pass (like separate runs would), read its rows and its mark back.
pub enum TestWarehouse {
    /// A SQLite file in a temp dir.
    Sqlite { dir: tempfile::TempDir },
    /// A schema of its own on the server in `OMS_SYNC_TEST_PG_URL`, dropped at the end.
    Postgres(PgSchema),
}

/// The PostgreSQL server the suites also run against, when set (`.ci/pg-start` prints one).
pub const PG_ENV: &str = "OMS_SYNC_TEST_PG_URL";

/// A unique schema on the test server; dropped with it.
pub struct PgSchema {
    pub url: String,
    pub cfg: PgConfig,
}

impl PgSchema {
    fn new() -> PgSchema {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let url = std::env::var(PG_ENV).expect("OMS_SYNC_TEST_PG_URL");
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schema = format!("h_{}_{n}", std::process::id());
        let cfg = PgConfig::parse(&url, None, Some(&schema), false).expect("test URL");
        PgSchema { url, cfg }
    }

    /// Runs `f` on a plain connection with `search_path` on the schema, on a thread of its
    /// own: the blocking client panics on a thread that runs async tasks (the tests' own).
    pub fn with_client<T: Send>(&self, f: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut c = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
                c.batch_execute(&format!("SET search_path TO {}", self.cfg.schema))
                    .unwrap();
                f(&mut c)
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (&self.url, &self.cfg.schema);
        std::thread::scope(|s| {
            s.spawn(|| {
                if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) {
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            });
        });
    }
}

impl TestWarehouse {
    pub fn sqlite() -> TestWarehouse {
        TestWarehouse::Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The backend's name, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            TestWarehouse::Sqlite { .. } => "sqlite",
            TestWarehouse::Postgres(_) => "postgres",
        }
    }

    /// The SQLite file (SQLite-only tests).
    pub fn sqlite_path(&self) -> PathBuf {
        match self {
            TestWarehouse::Sqlite { dir } => dir.path().join("warehouse.db"),
            TestWarehouse::Postgres(_) => panic!("not a SQLite warehouse"),
        }
    }

    pub fn config(&self) -> WarehouseConfig {
        match self {
            TestWarehouse::Sqlite { dir } => WarehouseConfig::Sqlite {
                path: dir.path().join("warehouse.db"),
            },
            TestWarehouse::Postgres(pg) => WarehouseConfig::Postgres(pg.cfg.clone()),
        }
    }

    /// The `[warehouse]` section of a config file that points the real binary at it.
    pub fn config_toml(&self) -> String {
        match self {
            TestWarehouse::Sqlite { dir } => {
                format!(
                    "[warehouse]\npath = {:?}\n",
                    dir.path().join("warehouse.db")
                )
            }
            TestWarehouse::Postgres(pg) => format!(
                "[warehouse]\nurl = {:?}\nschema = {:?}\n",
                pg.url, pg.cfg.schema
            ),
        }
    }

    pub fn open(&self) -> AnyWarehouse {
        AnyWarehouse::open(&self.config()).unwrap()
    }

    fn reader(&self) -> Result<Box<dyn Reader>, oms_sync::warehouse::WarehouseError> {
        oms_sync::warehouse::open_reader(&self.config())
    }

    /// The stream's snapshot, read as `status` reads it (no writer lock).
    pub fn snapshot(&self) -> Snapshot {
        self.reader()
            .unwrap()
            .snapshot(Stream::Customers.name(), Stream::Customers.table(), 100)
            .unwrap()
    }

    pub fn mark(&self) -> Mark {
        self.snapshot().mark
    }

    /// The snapshot, or None while the warehouse does not exist yet or has no schema (a
    /// process killed before its first commit).
    pub fn try_snapshot(&self) -> Option<Snapshot> {
        self.try_snapshot_of(Stream::Customers.name(), Stream::Customers.table())
    }

    /// [`TestWarehouse::try_snapshot`] of any stream and its table.
    pub fn try_snapshot_of(&self, stream: &str, table: &str) -> Option<Snapshot> {
        self.reader().ok()?.snapshot(stream, table, 100).ok()
    }

    /// The backend's own check that its storage is intact (SQLite: `PRAGMA integrity_check`).
    pub fn assert_intact(&self) {
        match self {
            TestWarehouse::Sqlite { .. } => {
                let ok: String = rusqlite::Connection::open(self.sqlite_path())
                    .unwrap()
                    .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(ok, "ok");
            }
            // PostgreSQL keeps its own storage intact; what can go wrong here is an index
            // left invalid (e.g. a build interrupted), so check those.
            TestWarehouse::Postgres(pg) => {
                let invalid: i64 = pg.with_client(|c| {
                    c.query_one(
                        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND NOT i.indisvalid",
                        &[&pg.cfg.schema],
                    )
                    .unwrap()
                    .get(0)
                });
                assert_eq!(invalid, 0, "invalid indexes");
            }
        }
    }

    pub fn rows(&self) -> BTreeMap<i64, Row> {
        match self {
            TestWarehouse::Sqlite { .. } => rows(&self.sqlite_path()),
            TestWarehouse::Postgres(pg) => pg_rows(pg),
        }
    }

    /// One integer from a query both backends understand (e.g. `SELECT count(*) FROM customers`).
    pub fn query_i64(&self, sql: &str) -> i64 {
        match self {
            TestWarehouse::Sqlite { .. } => rusqlite::Connection::open(self.sqlite_path())
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            TestWarehouse::Postgres(pg) => pg.with_client(|c| {
                c.simple_query(sql)
                    .unwrap()
                    .into_iter()
                    .find_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(r) => {
                            r.get(0).map(|v| v.parse().unwrap())
                        }
                        _ => None,
                    })
                    .unwrap()
            }),
        }
    }
}

/// A kind of backend the suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends every suite runs against: SQLite always, PostgreSQL when
/// `OMS_SYNC_TEST_PG_URL` is set (`.ci/pg-start` prints one). Under CI the server is required.
pub fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Sqlite];
    if std::env::var_os(PG_ENV).is_some() {
        b.push(Backend::Postgres);
    } else if std::env::var_os("CI").is_some() {
        panic!("CI is set but {PG_ENV} is not: start a server with .ci/pg-start (see .ci/run)");
    } else {
        eprintln!("-- PostgreSQL runs skipped: set {PG_ENV} (see .ci/pg-start)");
    }
    b
}

thread_local! {
    /// The backend [`Harness::new`] opens, set by [`each_backend`] (tests run on a
    /// current-thread runtime, so the body sees its wrapper's value).
    static CURRENT: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// Runs a test body once per backend in [`backends`]; its harnesses open that backend.
pub async fn each_backend<F, Fut>(body: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        CURRENT.with(|c| c.set(backend));
        eprintln!("-- backend: {backend:?}");
        body().await;
    }
    CURRENT.with(|c| c.set(Backend::Sqlite));
}

impl TestWarehouse {
    /// A fresh, empty warehouse of the backend the running suite is on.
    pub fn fresh() -> TestWarehouse {
        TestWarehouse::of(CURRENT.with(Cell::get))
    }

    /// A fresh, empty warehouse of `backend`.
    pub fn of(backend: Backend) -> TestWarehouse {
        match backend {
            Backend::Sqlite => TestWarehouse::sqlite(),
            Backend::Postgres => TestWarehouse::Postgres(PgSchema::new()),
        }
    }
}

/// A client, options and a warehouse under test.
pub struct Harness {
    pub wh: TestWarehouse,
    pub client: ApiClient,
    pub opts: SyncOptions,
    pub cancel: CancellationToken,
}

impl Harness {
    /// A harness on a fresh warehouse of the backend under test (see [`each_backend`]).
    pub fn new(oms: &FakeOms, page_size: u32) -> Harness {
        Harness::on(TestWarehouse::fresh(), oms, page_size)
    }

    /// A harness on the given warehouse.
    pub fn on(wh: TestWarehouse, oms: &FakeOms, page_size: u32) -> Harness {
        Harness {
            wh,
            client: ApiClient::new(&api_config(oms, page_size)).unwrap(),
            opts: options(page_size),
            cancel: CancellationToken::new(),
        }
    }

    /// Cancels this harness's passes when the server sees its `n`-th request since start.
    pub fn stop_at_request(&self, oms: &FakeOms, n: u64) {
        let cancel = self.cancel.clone();
        oms.set_before_request(Box::new(move |seen, _| {
            if seen == n {
                cancel.cancel();
            }
        }));
    }

    /// The same warehouse with a fresh cancel token: the "run it again" after a stop.
    pub fn resumed(self) -> Harness {
        Harness {
            cancel: CancellationToken::new(),
            ..self
        }
    }

    /// The SQLite file, for the tests that are about SQLite itself.
    pub fn db(&self) -> PathBuf {
        self.wh.sqlite_path()
    }

    pub fn open(&self) -> AnyWarehouse {
        self.wh.open()
    }

    pub fn mark(&self) -> Mark {
        self.wh.mark()
    }

    pub async fn once(&self) -> Result<PassReport, SyncError> {
        self.once_on(self.open()).await.1
    }

    /// One incremental pass on a warehouse the test opened (and perhaps constrained) itself.
    pub async fn once_on<W: StreamWarehouse>(&self, wh: W) -> (W, Result<PassReport, SyncError>) {
        sync::incremental_pass::<Customers, _>(
            &self.client,
            wh,
            &self.opts,
            &self.cancel,
            Arc::new(NoProgress),
        )
        .await
    }

    pub async fn backfill(&self) -> Result<PassReport, SyncError> {
        self.backfill_on(self.open()).await.1
    }

    /// One backfill on a warehouse the test opened itself (and keeps, as the daemon does).
    pub async fn backfill_on<W: StreamWarehouse>(
        &self,
        wh: W,
    ) -> (W, Result<PassReport, SyncError>) {
        sync::backfill_pass::<Customers, _>(
            &self.client,
            wh,
            &self.opts,
            &self.cancel,
            Arc::new(NoProgress),
        )
        .await
    }

    pub fn rows(&self) -> BTreeMap<i64, Row> {
        self.wh.rows()
    }
}

/// A warehouse row in comparable form.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub created_date: Option<String>,
    pub modified_date: String,
    pub omnitron_id: Option<i64>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
    pub erp_code: Option<String>,
    pub channel: Option<i64>,
    pub extra: Option<serde_json::Value>,
    pub deleted: bool,
}

pub fn rows(db: &Path) -> BTreeMap<i64, Row> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id, created_date, modified_date, omnitron_id, email, first_name, last_name,
                    phone_number, erp_code, channel, extra, deleted_at FROM customers",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let extra: Option<String> = r.get(10)?;
        Ok((
            r.get(0)?,
            Row {
                created_date: r.get(1)?,
                modified_date: r.get(2)?,
                omnitron_id: r.get(3)?,
                email: r.get(4)?,
                first_name: r.get(5)?,
                last_name: r.get(6)?,
                phone_number: r.get(7)?,
                erp_code: r.get(8)?,
                channel: r.get(9)?,
                extra: extra.map(|e| serde_json::from_str(&e).unwrap()),
                deleted: r.get::<_, Option<String>>(11)?.is_some(),
            },
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The rows of a PostgreSQL warehouse, instants as canonical text.
fn pg_rows(pg: &PgSchema) -> BTreeMap<i64, Row> {
    const CANON: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";
    let sql = format!(
        "SELECT id, to_char(created_date AT TIME ZONE 'UTC', {CANON}),
                to_char(modified_date AT TIME ZONE 'UTC', {CANON}), omnitron_id, email,
                first_name, last_name, phone_number, erp_code, channel, extra::text,
                deleted_at IS NOT NULL FROM customers"
    );
    pg.with_client(|c| c.query(&sql, &[]).unwrap())
        .iter()
        .map(|r| {
            let extra: Option<String> = r.get(10);
            (
                r.get(0),
                Row {
                    created_date: r.get(1),
                    modified_date: r.get(2),
                    omnitron_id: r.get(3),
                    email: r.get(4),
                    first_name: r.get(5),
                    last_name: r.get(6),
                    phone_number: r.get(7),
                    erp_code: r.get(8),
                    channel: r.get(9),
                    extra: extra.map(|e| serde_json::from_str(&e).unwrap()),
                    deleted: r.get(11),
                },
            )
        })
        .collect()
}

/// The record the warehouse must hold for a server customer after a sync: the same instants in
/// canonical UTC text, extra fields as one JSON object.
pub fn stored(c: &FakeCustomer) -> Customer {
    use oms_sync::timefmt::canonical;
    let extra =
        (!c.extra.is_empty()).then(|| serde_json::Value::Object(c.extra.clone()).to_string());
    Customer::new(CustomerFields {
        id: c.id,
        created_date: Some(&canonical(&c.created_date)),
        modified_date: &canonical(&c.modified_date),
        omnitron_id: c.omnitron_id,
        email: c.email.as_deref(),
        first_name: c.first_name.as_deref(),
        last_name: c.last_name.as_deref(),
        phone_number: c.phone_number.as_deref(),
        erp_code: c.erp_code.as_deref(),
        channel: c.channel,
        extra: extra.as_deref(),
    })
}

/// What the warehouse should hold for a server customer.
pub fn expected(c: &FakeCustomer) -> Row {
    let s = stored(c);
    let text = |v: Option<&str>| v.map(str::to_owned);
    Row {
        created_date: text(s.created_date()),
        modified_date: s.modified_date().to_owned(),
        omnitron_id: s.omnitron_id(),
        email: text(s.email()),
        first_name: text(s.first_name()),
        last_name: text(s.last_name()),
        phone_number: text(s.phone_number()),
        erp_code: text(s.erp_code()),
        channel: s.channel(),
        // Compared as JSON values: key order in the text is not part of the promise.
        extra: s.extra().map(|e| serde_json::from_str(e).unwrap()),
        deleted: false,
    }
}

/// Every customer the server lists is in the warehouse rows `got`, live, with the server's
/// values. With `exact`, the warehouse also has no other live row (true after a backfill).
pub fn assert_in_step(oms: &FakeOms, got: &BTreeMap<i64, Row>, exact: bool) {
    let server = oms.with_store(|s| s.snapshot());
    let mut missing = Vec::new();
    let mut stale = Vec::new();
    for c in &server {
        match got.get(&c.id) {
            None => missing.push(c.id),
            Some(row) if *row != expected(c) => stale.push((c.id, row.clone(), expected(c))),
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "{} customers missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        stale.is_empty(),
        "{} customers stale, first: {:?}",
        stale.len(),
        stale.first()
    );
    if exact {
        let live = got.values().filter(|r| !r.deleted).count();
        assert_eq!(
            live,
            server.len(),
            "live rows in the warehouse vs customers on the server"
        );
    }
}

/// Runs incremental passes until one fetches nothing new (bounded).
pub async fn settle(h: &Harness) {
    for _ in 0..5 {
        let r = h.once().await.unwrap();
        if r.stats.inserted + r.stats.updated == 0 {
            return;
        }
    }
    panic!("did not settle in 5 passes");
}
