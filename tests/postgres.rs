//! The PostgreSQL warehouse against a REAL server (start one with `.ci/pg-start`, pass its URL
//! in `OMS_SYNC_TEST_PG_URL`). Without the variable each test prints a "skipped" line and
//! passes, except under `CI`, where it fails. Each test works in its own schema, so the tests
//! run in parallel on one server.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use oms_sync::resource::{BadRecord, Customer, CustomerFields, Customers};
use oms_sync::warehouse::postgres::BulkPath;
use oms_sync::warehouse::secondary_indexes;
use oms_sync::warehouse::{
    Advance, BackfillRange, BackfillState, Batch, Confirmed, Location, Mark, PgConfig, PgReader,
    PgWarehouse, Reader, RowStats, RunKind, RunStatus, Warehouse, WarehouseError,
};

const ENV: &str = "OMS_SYNC_TEST_PG_URL";

/// A schema of its own on the test server, dropped at the end.
struct TestDb {
    url: String,
    cfg: PgConfig,
}

impl TestDb {
    fn new(name: &str) -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let Ok(url) = std::env::var(ENV) else {
            if std::env::var_os("CI").is_some() {
                panic!("{ENV} is not set under CI: start a server with .ci/pg-start");
            }
            // Straight to stderr: the harness captures eprintln!, and this line must show.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set {ENV} (e.g. export {ENV}=\"$(.ci/pg-start)\") to run the PostgreSQL test {name}"
            );
            return None;
        };
        let schema = format!(
            "t_{name}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let cfg = PgConfig::parse(&url, None, Some(&schema), false).expect("test URL");
        Some(TestDb { url, cfg })
    }

    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("admin connection")
    }

    /// Runs SQL in the test schema and returns the first column of each row as text.
    fn sql(&self, q: &str) -> Vec<Option<String>> {
        let mut c = self.admin();
        c.batch_execute(&format!("SET search_path TO {}", self.cfg.schema))
            .unwrap();
        c.simple_query(q)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                _ => None,
            })
            .collect()
    }

    fn one(&self, q: &str) -> String {
        self.sql(q)[0].clone().unwrap_or_default()
    }

    fn open(&self) -> PgWarehouse {
        PgWarehouse::open(&self.cfg).expect("open")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // On a thread of its own: the blocking client panics inside an async test's runtime.
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

fn customer(id: i64, md: &str, name: &str) -> Customer {
    let email = format!("c{id}@example.com");
    Customer::new(CustomerFields {
        id,
        created_date: Some("2023-01-01T00:00:00.000001Z"),
        modified_date: md,
        omnitron_id: Some(id * 10),
        email: Some(&email),
        first_name: Some(name),
        last_name: None,
        phone_number: None,
        erp_code: None,
        channel: Some(1),
        extra: None,
    })
}

/// `c` with `extra` set.
fn with_extra(c: &Customer, extra: &str) -> Customer {
    Customer::new(CustomerFields {
        extra: Some(extra),
        ..c.fields()
    })
}

fn apply(wh: &mut PgWarehouse, run: i64, recs: Vec<Customer>, advance: Advance) -> RowStats {
    try_apply(wh, run, recs, vec![], advance).expect("apply")
}

fn try_apply(
    wh: &mut PgWarehouse,
    run: i64,
    records: Vec<Customer>,
    bad: Vec<BadRecord>,
    advance: Advance,
) -> Result<RowStats, WarehouseError> {
    wh.apply::<Customers>(
        run,
        &[Batch {
            records,
            bad,
            advance,
        }],
    )
}

fn mark(md: &str, c: Confirmed) -> Advance {
    Advance::Mark(Mark::at(md, c))
}

fn begin(wh: &mut PgWarehouse) -> i64 {
    wh.begin_run(Customers::SPEC, RunKind::Incremental, &Mark::Start)
        .unwrap()
}

/// A new run that stores customer 1 at `T1` with the mark at `T1` (`confirmed`); its id.
fn store_first(wh: &mut PgWarehouse, confirmed: Confirmed) -> i64 {
    let run = begin(wh);
    apply(wh, run, vec![customer(1, T1, "a")], mark(T1, confirmed));
    run
}

/// The pid of the warehouse's session, asked of the server (not the warehouse's own record of
/// it), connecting again first if the session was lost.
fn server_pid(wh: &mut PgWarehouse) -> i32 {
    wh.client()
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

const T1: &str = "2023-01-01T00:00:01.000000Z";
const T2: &str = "2023-01-01T00:00:02.000000Z";

#[test]
fn upsert_never_goes_back_skips_unchanged_and_counts() {
    upsert_semantics("upsert", BulkPath::Unnest);
}

#[test]
fn the_copy_path_has_the_same_upsert_semantics() {
    upsert_semantics("upsert_copy", BulkPath::Copy);
}

fn upsert_semantics(name: &str, bulk: BulkPath) {
    let Some(db) = TestDb::new(name) else {
        return;
    };
    let mut wh = db.open();
    wh.set_bulk_path(bulk);
    let run = begin(&mut wh);
    let n = |s: RowStats| (s.inserted, s.updated, s.unchanged);
    let at_t2 = || mark(T2, Confirmed::Nothing);
    assert_eq!(
        n(apply(&mut wh, run, vec![customer(1, T2, "new")], at_t2())),
        (1, 0, 0)
    );
    assert_eq!(
        n(apply(&mut wh, run, vec![customer(1, T1, "old")], at_t2())),
        (0, 0, 1)
    );
    assert_eq!(
        n(apply(&mut wh, run, vec![customer(1, T2, "new")], at_t2())),
        (0, 0, 1)
    );
    let synced = db.one("SELECT synced_at FROM customers WHERE id = 1");
    let s = apply(
        &mut wh,
        run,
        vec![customer(1, T2, "same time, new content")],
        at_t2(),
    );
    assert_eq!(n(s), (0, 1, 0));
    assert_eq!(
        db.one("SELECT first_name FROM customers WHERE id = 1"),
        "same time, new content"
    );
    assert_ne!(
        db.one("SELECT synced_at FROM customers WHERE id = 1"),
        synced
    );
    // A batch carrying one id twice (re-read across pages) applies both, in order.
    let s = apply(
        &mut wh,
        run,
        vec![
            customer(2, T1, "a"),
            customer(1, T2, "same time, new content"),
            customer(2, T2, "b"),
        ],
        at_t2(),
    );
    assert_eq!(n(s), (1, 1, 1));
    assert_eq!(db.one("SELECT first_name FROM customers WHERE id = 2"), "b");
    // jsonb: the same object in another key order is not a change.
    let c = customer(3, T1, "j");
    let c = with_extra(&c, r#"{"a": 1, "b": [true]}"#);
    apply(&mut wh, run, vec![c.clone()], at_t2());
    let c = with_extra(&c, r#"{"b": [true], "a": 1}"#);
    assert_eq!(n(apply(&mut wh, run, vec![c], at_t2())), (0, 0, 1));
    assert_eq!(
        db.one("SELECT extra->>'a' FROM customers WHERE id = 3"),
        "1"
    );
    // The mark never moves backward.
    apply(&mut wh, run, vec![], mark(T1, Confirmed::Nothing));
    assert_eq!(
        wh.mark(Customers::SPEC).unwrap(),
        Mark::at(T2, Confirmed::Nothing)
    );
    let figures = db.one("SELECT concat_ws(',', pages, rows_fetched, rows_inserted, rows_updated, rows_unchanged) FROM sync_runs");
    assert_eq!(figures, "8,9,3,2,4");
}

#[test]
fn marks_and_rows_round_trip_to_the_microsecond() {
    let Some(db) = TestDb::new("micros") else {
        return;
    };
    let mut wh = db.open();
    let run = begin(&mut wh);
    for (md, c) in [
        ("1999-12-31T23:59:59.999999Z", Confirmed::Nothing),
        ("2023-10-06T08:42:53.427050Z", Confirmed::UpToId(7)),
        ("2023-10-06T08:42:53.427051Z", Confirmed::Nothing),
        (
            "2023-10-06T08:42:53.427051Z",
            Confirmed::UpToId(i64::MAX - 1),
        ),
    ] {
        let rec = Customer::new(CustomerFields {
            created_date: Some("2001-02-03T04:05:06.000007Z"),
            ..customer(1, md, "x").fields()
        });
        apply(&mut wh, run, vec![rec], mark(md, c));
        assert_eq!(wh.mark(Customers::SPEC).unwrap(), Mark::at(md, c));
        let snap = PgReader::open(&db.cfg)
            .unwrap()
            .snapshot("customers", "customers", 1)
            .unwrap();
        assert_eq!(snap.mark, Mark::at(md, c));
        assert_eq!(snap.newest_modified_date.as_deref(), Some(md));
        assert_eq!(
            db.one(
                "SELECT to_char(modified_date AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM customers"
            ),
            md
        );
    }
    assert_eq!(
        db.one("SELECT to_char(created_date AT TIME ZONE 'UTC', 'SS.US') FROM customers"),
        "06.000007"
    );
    // One microsecond earlier is older: nothing rewritten, the mark stays.
    let s = apply(
        &mut wh,
        run,
        vec![customer(1, "2023-10-06T08:42:53.427050Z", "older")],
        mark("2023-10-06T08:42:53.427050Z", Confirmed::UpToId(9)),
    );
    assert_eq!(s.unchanged, 1);
    assert_eq!(
        wh.mark(Customers::SPEC).unwrap(),
        Mark::at(
            "2023-10-06T08:42:53.427051Z",
            Confirmed::UpToId(i64::MAX - 1)
        )
    );
}

fn state(ranges: Vec<BackfillRange>) -> BackfillState {
    BackfillState {
        run_id: None,
        started_at: "2024-01-01T00:00:00.123456Z".into(),
        high_water_date: Some("2024-01-01T00:00:00.654321Z".into()),
        ranges,
    }
}

/// A backfill range not yet started.
fn range(range_no: i64, lo: i64, hi: Option<i64>) -> BackfillRange {
    BackfillRange {
        range_no,
        lo,
        hi,
        cursor: lo,
        done: false,
    }
}

/// Every shipped resource's table, as the PostgreSQL migrations create it, is what its
/// declaration says (columns, types, nullability, primary key, indexes).
#[test]
fn migrations_create_what_the_declarations_say() {
    use oms_sync::warehouse::postgres::schema::{declared_type, read_shape};
    use oms_sync::warehouse::shape::TableShape;
    let Some(db) = TestDb::new("shape") else {
        return;
    };
    let mut wh = db.open();
    for spec in oms_sync::resource::ALL {
        let got = read_shape(wh.client().unwrap(), spec.table).unwrap();
        assert_eq!(
            got,
            TableShape::expected(spec, declared_type),
            "{}",
            spec.table
        );
    }
    // The comparison sees a change: a column dropped from the table.
    wh.client()
        .unwrap()
        .batch_execute("ALTER TABLE customers DROP COLUMN erp_code CASCADE")
        .unwrap();
    let spec = &oms_sync::resource::customers::SPEC;
    let got = read_shape(wh.client().unwrap(), spec.table).unwrap();
    assert_ne!(got, TableShape::expected(spec, declared_type));
}

fn index_names(db: &TestDb) -> Vec<Option<String>> {
    index_names_of(db, &["customers"])
}

/// The secondary indexes (no primary keys) of `tables`.
fn index_names_of(db: &TestDb, tables: &[&str]) -> Vec<Option<String>> {
    let tables: Vec<String> = tables.iter().map(|t| format!("'{t}'")).collect();
    db.sql(&format!(
        "SELECT indexname FROM pg_indexes WHERE schemaname = '{}' AND tablename IN ({})
           AND indexname NOT LIKE '%\\_pkey' ORDER BY 1",
        db.cfg.schema,
        tables.join(", ")
    ))
}

#[test]
fn backfill_marks_unlisted_ids_deleted_and_moves_its_cursor() {
    let Some(db) = TestDb::new("backfill") else {
        return;
    };
    let mut wh = db.open();
    let run = begin(&mut wh);
    apply(
        &mut wh,
        run,
        (1..=5).map(|i| customer(i, T1, "a")).collect(),
        mark(T1, Confirmed::Nothing),
    );
    let st = state(vec![range(0, 0, Some(100)), range(1, 100, None)]);
    wh.start_backfill(Customers::SPEC, &st).unwrap();
    assert_eq!(wh.backfill_state(Customers::SPEC).unwrap(), Some(st));
    let bad2 = BadRecord {
        id: Some(2),
        modified_date: None,
        raw: "{\"id\":2}".into(),
        error: "bad".into(),
    };
    // Page (0, 3]: 1 listed, 2 quarantined (still listed), 3 gone.
    let s = try_apply(
        &mut wh,
        run,
        vec![customer(1, T1, "a")],
        vec![bad2],
        Advance::Backfill {
            range_no: 0,
            from: 0,
            to: Some(3),
        },
    )
    .unwrap();
    assert_eq!((s.deleted, s.quarantined, s.unchanged), (1, 1, 1));
    // Last page of range 0: ids above 3 up to its hi (100) not listed are gone, 5 comes back.
    let s = apply(
        &mut wh,
        run,
        vec![customer(5, T1, "a")],
        Advance::Backfill {
            range_no: 0,
            from: 3,
            to: None,
        },
    );
    assert_eq!(s.deleted, 1);
    let bf = wh.backfill_state(Customers::SPEC).unwrap().unwrap();
    assert_eq!(
        (bf.ranges[0].cursor, bf.ranges[0].done, bf.ranges[1].done),
        (3, true, false)
    );
    assert_eq!(
        db.sql("SELECT id::text FROM customers WHERE deleted_at IS NOT NULL ORDER BY id"),
        [Some("3".into()), Some("4".into())]
    );
    assert_eq!(db.one("SELECT count(*) FROM live_customers"), "3");
    // A deleted row listed again comes back (same content, but deleted_at is cleared).
    let s = apply(
        &mut wh,
        run,
        vec![customer(4, T1, "a")],
        mark(T1, Confirmed::Nothing),
    );
    assert_eq!(s.updated, 1);
    assert_eq!(db.one("SELECT count(*) FROM live_customers"), "4");
    wh.finish_backfill(Customers::SPEC, Mark::at(T2, Confirmed::Nothing))
        .unwrap();
    assert_eq!(wh.backfill_state(Customers::SPEC).unwrap(), None);
    assert_eq!(
        wh.mark(Customers::SPEC).unwrap(),
        Mark::at(T2, Confirmed::Nothing)
    );
}

#[test]
fn bulk_load_drops_indexes_only_when_empty_and_open_restores_them() {
    let Some(db) = TestDb::new("indexes") else {
        return;
    };
    let mut wh = db.open();
    let full = index_names(&db);
    let tables: Vec<&str> = oms_sync::resource::ALL.iter().map(|s| s.table).collect();
    let mut listed: Vec<Option<String>> = secondary_indexes()
        .iter()
        .map(|(_, n, _)| Some(n.to_string()))
        .collect();
    listed.sort();
    assert_eq!(
        index_names_of(&db, &tables),
        listed,
        "secondary_indexes() matches the migrations"
    );
    wh.start_backfill(Customers::SPEC, &state(vec![])).unwrap();
    assert!(index_names(&db).is_empty(), "empty table: dropped");
    // Killed mid-backfill: the next open builds them again.
    drop(wh);
    let mut wh = db.open();
    assert_eq!(index_names(&db), full);
    wh.start_backfill(Customers::SPEC, &state(vec![])).unwrap();
    wh.finish_backfill(Customers::SPEC, Mark::Start).unwrap();
    assert_eq!(index_names(&db), full);
    store_first(&mut wh, Confirmed::Nothing);
    wh.start_backfill(Customers::SPEC, &state(vec![])).unwrap();
    assert_eq!(
        index_names(&db),
        full,
        "a table with rows keeps its indexes"
    );
}

/// Several pages in one transaction are applied as they would be one by one (as in SQLite's
/// `batches_in_one_transaction_apply_as_one_by_one`): a record quarantined by a page and stored
/// by a later one leaves the quarantine; each range's cursor and deletions follow its own pages.
#[test]
fn batches_in_one_transaction_apply_as_one_by_one() {
    let Some(db) = TestDb::new("batches") else {
        return;
    };
    let mut wh = db.open();
    let run = begin(&mut wh);
    apply(
        &mut wh,
        run,
        vec![customer(5, T1, "old"), customer(150, T1, "old")],
        mark(T1, Confirmed::Nothing),
    );
    let st = state(vec![range(0, i64::MIN, Some(100)), range(1, 100, None)]);
    wh.start_backfill(Customers::SPEC, &st).unwrap();
    let bad = BadRecord {
        id: Some(7),
        modified_date: Some(T1.into()),
        raw: "{\"id\": 7}".into(),
        error: "a bad record".into(),
    };
    let batches = [
        Batch {
            records: vec![customer(1, T2, "a")],
            bad: vec![bad],
            advance: Advance::Backfill {
                range_no: 0,
                from: i64::MIN,
                to: Some(7),
            },
        },
        Batch {
            records: vec![customer(120, T2, "b")],
            bad: vec![],
            advance: Advance::Backfill {
                range_no: 1,
                from: 100,
                to: Some(160),
            },
        },
        Batch {
            records: vec![customer(7, T2, "fixed")],
            bad: vec![],
            advance: Advance::Backfill {
                range_no: 0,
                from: 7,
                to: Some(10),
            },
        },
    ];
    let s = wh.apply::<Customers>(run, &batches).unwrap();
    assert_eq!(
        (s.fetched, s.inserted, s.quarantined, s.deleted),
        (4, 3, 1, 2),
        "{s:?}"
    );
    assert_eq!(db.one("SELECT count(*) FROM quarantine"), "0");
    let bf = wh.backfill_state(Customers::SPEC).unwrap().unwrap();
    assert_eq!((bf.ranges[0].cursor, bf.ranges[1].cursor), (10, 160));
    assert_eq!(
        db.sql("SELECT id::text AS i FROM customers WHERE deleted_at IS NOT NULL ORDER BY id"),
        [Some("5".into()), Some("150".into())]
    );
    assert_eq!(
        db.one(&format!("SELECT pages FROM sync_runs WHERE id = {run}")),
        "4"
    );
}

#[test]
fn quarantine_upserts_and_clears_like_sqlite() {
    let Some(db) = TestDb::new("quarantine") else {
        return;
    };
    let mut wh = db.open();
    let run = begin(&mut wh);
    let bad = |id: Option<i64>, md: Option<&str>| BadRecord {
        id,
        modified_date: md.map(str::to_owned),
        raw: format!("{{\"id\": {id:?}, \"junk\": \"{}\"}}", "x".repeat(5000)),
        error: "email: not a string".into(),
    };
    for _ in 0..2 {
        let s = try_apply(
            &mut wh,
            run,
            vec![],
            vec![bad(Some(7), Some(T2)), bad(None, None)],
            mark(T1, Confirmed::Nothing),
        )
        .unwrap();
        assert_eq!(s.quarantined, 2);
    }
    assert_eq!(
        db.sql("SELECT times_seen::text FROM quarantine ORDER BY id"),
        [Some("2".into()), Some("2".into())]
    );
    let mut reader = PgReader::open(&db.cfg).unwrap();
    assert_eq!(quarantined(&mut reader), 2);
    // An older good version does not clear it; the same or a newer one does.
    apply(
        &mut wh,
        run,
        vec![customer(7, T1, "ok")],
        mark(T1, Confirmed::Nothing),
    );
    assert_eq!(quarantined(&mut reader), 2);
    apply(
        &mut wh,
        run,
        vec![customer(7, T2, "ok")],
        mark(T2, Confirmed::Nothing),
    );
    assert_eq!(quarantined(&mut reader), 1);
    assert_eq!(
        db.one("SELECT count(*) FROM quarantine WHERE record_id IS NULL"),
        "1"
    );
}

#[test]
fn runs_are_recorded_and_a_killed_writers_runs_become_interrupted() {
    let Some(db) = TestDb::new("runs") else {
        return;
    };
    let mut wh = db.open();
    let run = begin(&mut wh);
    apply(
        &mut wh,
        run,
        vec![customer(1, T1, "a"), customer(2, T1, "b")],
        mark(T1, Confirmed::UpToId(2)),
    );
    wh.finish_run(Customers::SPEC, run, RunStatus::Succeeded, None)
        .unwrap();
    let second = begin(&mut wh);
    drop(wh); // as if killed: the run stays 'running'
    let mut reader = PgReader::open(&db.cfg).unwrap();
    assert_eq!(
        reader
            .snapshot("customers", "customers", 5)
            .unwrap()
            .recent_runs[0]
            .status,
        "running"
    );
    let _wh = db.open();
    let snap = reader.snapshot("customers", "customers", 5).unwrap();
    assert_eq!(snap.recent_runs.len(), 2);
    let (r2, r1) = (&snap.recent_runs[0], &snap.recent_runs[1]);
    assert_eq!((r2.id, r2.status.as_str()), (second, "interrupted"));
    assert!(r2.finished_at.is_some());
    assert_eq!(
        (r1.id, r1.status.as_str(), r1.rows_inserted, r1.pages),
        (run, "succeeded", 2, 1)
    );
    assert_eq!(snap.last_success_at, r1.finished_at);
    assert_eq!((snap.live, snap.deleted), (2, 0));
    assert!(snap.mark_updated_at.is_some());
    assert_eq!(
        db.one("SELECT mark_after FROM sync_runs ORDER BY id LIMIT 1"),
        Mark::at(T1, Confirmed::UpToId(2)).to_string()
    );
}

#[test]
fn a_second_writer_is_refused_with_one_clear_line_and_readers_are_not() {
    let Some(db) = TestDb::new("lock") else {
        return;
    };
    let _first = db.open();
    let err = PgWarehouse::open(&db.cfg).unwrap_err();
    assert!(
        matches!(
            err,
            WarehouseError::Locked {
                at: Location::Server(_),
                ..
            }
        ),
        "{err}"
    );
    let line = err.to_string();
    assert!(
        !line.contains('\n') && line.contains("another oms-sync process") && line.contains("fix:"),
        "{line}"
    );
    assert!(line.contains(&db.cfg.schema), "{line}");
    PgReader::open(&db.cfg)
        .unwrap()
        .snapshot("customers", "customers", 1)
        .unwrap();
    // Released with the connection.
    drop(_first);
    db.open();
}

#[test]
fn errors_name_the_server_never_the_password() {
    let Some(db) = TestDb::new("errors") else {
        return;
    };
    // Nothing listens on port 1.
    let cfg = PgConfig::parse(
        "postgresql://postgres:s3cr3t@127.0.0.1:1/postgres",
        None,
        None,
        false,
    )
    .unwrap();
    let err = PgWarehouse::open(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("127.0.0.1:1/postgres") && err.contains(":***@") && err.contains("fix:"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    // A reader never creates the schema.
    let missing = PgConfig::parse(&db.url, None, Some("t_no_such_schema"), false).unwrap();
    let e = PgReader::open(&missing).unwrap_err().to_string();
    assert!(e.contains("does not exist") && e.contains("fix:"), "{e}");
}

/// The writer's backend is terminated while it waits inside `apply`'s transaction: a clear
/// error, nothing of the batch kept, the checkpoint unchanged, and the next call reconnects.
#[test]
fn connection_killed_mid_transaction_rolls_back_and_the_next_call_reconnects() {
    let Some(db) = TestDb::new("killed") else {
        return;
    };
    let mut wh = db.open();
    let run = store_first(&mut wh, Confirmed::UpToId(1));
    let pid = server_pid(&mut wh);
    // Hold the run's row so apply blocks at its last statement, after the mark and upserts.
    let mut blocker = db.admin();
    let mut tx = blocker.transaction().unwrap();
    tx.batch_execute(&format!(
        "SELECT 1 FROM {}.sync_runs WHERE id = {run} FOR UPDATE",
        db.cfg.schema
    ))
    .unwrap();
    let writer = std::thread::spawn(move || {
        let r = try_apply(
            &mut wh,
            run,
            vec![customer(2, T2, "b")],
            vec![],
            mark(T2, Confirmed::UpToId(2)),
        );
        (wh, r)
    });
    let mut admin = db.admin();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: bool = admin
            .query_one("SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        assert!(Instant::now() < deadline, "the writer never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let (mut wh, r) = writer.join().unwrap();
    tx.rollback().unwrap();
    let err = r.unwrap_err();
    assert!(
        matches!(
            err,
            WarehouseError::ConnectionLost {
                at: Location::Server(_),
                ..
            }
        ),
        "{err}"
    );
    let line = err.to_string();
    assert!(
        line.contains("127.0.0.1") && line.contains("fix:") && line.contains("rolled back"),
        "{line}"
    );
    // Nothing of the failed batch was kept; the next call reconnects (and re-takes the lock).
    assert_eq!(
        wh.mark(Customers::SPEC).unwrap(),
        Mark::at(T1, Confirmed::UpToId(1))
    );
    assert_eq!(db.one("SELECT count(*) FROM customers"), "1");
    assert!(matches!(
        PgWarehouse::open(&db.cfg),
        Err(WarehouseError::Locked {
            at: Location::Server(_),
            ..
        })
    ));
    let s = apply(
        &mut wh,
        run,
        vec![customer(2, T2, "b")],
        mark(T2, Confirmed::UpToId(2)),
    );
    assert_eq!(s.inserted, 1);
    wh.finish_run(Customers::SPEC, run, RunStatus::Failed, Some("x"))
        .unwrap();
    assert_eq!(db.one("SELECT status FROM sync_runs"), "failed");
}

/// COPY + merge against one unnest upsert, 1000-row pages with their checkpoint, on the test
/// server: `cargo test --release --test postgres -- --ignored --nocapture bulk_paths`.
#[test]
#[ignore = "measurement"]
fn bulk_paths_measured() {
    const PAGES: i64 = 100;
    const ROWS: i64 = 1000;
    for bulk in [
        BulkPath::Unnest,
        BulkPath::Copy,
        BulkPath::Unnest,
        BulkPath::Copy,
    ] {
        let Some(db) = TestDb::new("measure") else {
            return;
        };
        let mut wh = db.open();
        wh.set_bulk_path(bulk);
        let run = begin(&mut wh);
        let page = |p: i64, name: &str| -> Vec<Customer> {
            (1..=ROWS)
                .map(|i| {
                    with_extra(
                        &customer(p * ROWS + i, T1, name),
                        &format!(r#"{{"segment": "s{i}", "tags": [1, 2]}}"#),
                    )
                })
                .collect()
        };
        let mut line = format!("{bulk:?}:");
        for (what, name) in [("insert", "a"), ("unchanged", "a"), ("update", "b")] {
            let t = Instant::now();
            for p in 0..PAGES {
                apply(
                    &mut wh,
                    run,
                    page(p, name),
                    mark(T1, Confirmed::UpToId((p + 1) * ROWS)),
                );
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0 / PAGES as f64;
            line.push_str(&format!(" {what} {ms:.1} ms/page,"));
        }
        let _ = writeln!(std::io::stderr(), "{line} ({PAGES} pages of {ROWS} rows)");
    }
}

/// A loopback TCP relay to the test server whose `cut` closes the client side only: the
/// client sees its connection drop while the server still holds an idle session (as after a
/// network cut, until TCP keepalive notices).
struct Relay {
    port: u16,
    server_sides: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    client_sides: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server_sides = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let client_sides = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ss, cs) = (server_sides.clone(), client_sides.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server.try_clone().unwrap(), client.try_clone().unwrap());
                ss.lock().unwrap().push(server);
                cs.lock().unwrap().push(client);
            }
        });
        Relay {
            port,
            server_sides,
            client_sides,
        }
    }

    fn cut(&self) {
        for c in self.client_sides.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn after_a_network_cut_the_reconnect_ends_the_stale_session_holding_the_lock() {
    let Some(db) = TestDb::new("netcut") else {
        return;
    };
    let (oms_sync::warehouse::postgres::PgHost::Tcp(host), port) = &db.cfg.hosts[0] else {
        panic!("the test server must be reached over TCP");
    };
    let relay = Relay::start(format!("{host}:{port}"));
    let url = format!(
        "postgresql://{}@127.0.0.1:{}/{}?sslmode=disable",
        db.cfg.user, relay.port, db.cfg.dbname
    );
    let cfg = PgConfig::parse(&url, None, Some(&db.cfg.schema), false).unwrap();
    let mut wh = PgWarehouse::open(&cfg).unwrap();
    store_first(&mut wh, Confirmed::UpToId(1));
    let old_pid = server_pid(&mut wh);
    relay.cut();
    let err = wh.mark(Customers::SPEC).unwrap_err();
    assert!(
        matches!(
            err,
            WarehouseError::ConnectionLost {
                at: Location::Server(_),
                ..
            }
        ),
        "{err}"
    );
    // The server still has the old session, holding the lock.
    let alive = |pid: i32| -> bool {
        db.admin()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    };
    assert!(alive(old_pid));
    assert_eq!(
        wh.mark(Customers::SPEC).unwrap(),
        Mark::at(T1, Confirmed::UpToId(1))
    );
    let new_pid = server_pid(&mut wh);
    assert_ne!(new_pid, old_pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(old_pid) {
        assert!(Instant::now() < deadline, "the stale session was not ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(relay.server_sides.lock().unwrap().drain(..));
}

#[test]
fn probe_writes_nothing_and_names_the_schema_version() {
    let Some(db) = TestDb::new("probe") else {
        return;
    };
    let mut wh = oms_sync::warehouse::AnyWarehouse::open(
        &oms_sync::config::WarehouseConfig::Postgres(db.cfg.clone()),
    )
    .unwrap();
    // The newest migration's number (so a new migration does not need this test edited).
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter_map(|d| {
            let name = d.unwrap().file_name().into_string().unwrap();
            name.split_once('-')?.0.parse::<u32>().ok()
        })
        .max()
        .unwrap();
    assert_eq!(
        wh.probe_writable().unwrap(),
        format!("schema version {newest}, writable")
    );
    assert_eq!(
        db.one("SELECT count(*) FROM pg_tables WHERE tablename = 'oms_sync_check_probe'"),
        "0"
    );
}

/// The blocking client runs its own runtime: opening, using and dropping the warehouse and a
/// reader from async code must not panic (the test harness and async callers do).
#[tokio::test]
async fn usable_from_async_code() {
    let Some(db) = TestDb::new("async") else {
        return;
    };
    let mut wh = db.open();
    store_first(&mut wh, Confirmed::Nothing);
    let snap = PgReader::open(&db.cfg)
        .unwrap()
        .snapshot("customers", "customers", 1)
        .unwrap();
    assert_eq!(snap.live, 1);
    drop(wh);
}

/// sslmode against the real server: with TLS on it (`.ci/pg-start` sets it up with a
/// throwaway CA), `require` and `prefer` encrypt, `verify-full` connects with the right CA
/// and refuses an unknown issuer, `disable` stays plain; without TLS, `require` fails clearly.
#[test]
fn sslmodes_against_the_server() {
    let Some(db) = TestDb::new("tls") else {
        return;
    };
    let ssl_on = db.one("SHOW ssl") == "on";
    let ca = db.one("SHOW ssl_ca_file");
    let base = db.cfg.redacted_url().replace("sslmode=prefer", "");
    let open = |q: &str| {
        PgWarehouse::open(
            &PgConfig::parse(&format!("{base}{q}"), None, Some(&db.cfg.schema), false).unwrap(),
        )
    };
    let encrypted = |wh: &mut PgWarehouse| -> bool {
        wh.client()
            .unwrap()
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert!(!encrypted(&mut open("sslmode=disable").unwrap()));
    if !ssl_on {
        let e = open("sslmode=require").unwrap_err();
        assert!(
            matches!(
                e,
                WarehouseError::Unusable {
                    at: Location::Server(_),
                    ..
                }
            ) && e.to_string().contains("TLS"),
            "{e}"
        );
        assert!(!encrypted(&mut open("sslmode=prefer").unwrap()));
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the TLS half of sslmodes_against_the_server (the server has ssl off; .ci/pg-start turns it on)"
        );
        return;
    }
    assert!(encrypted(&mut open("sslmode=prefer").unwrap()));
    assert!(encrypted(&mut open("sslmode=require").unwrap()));
    assert!(encrypted(
        &mut open(&format!("sslmode=verify-full&sslrootcert={ca}")).unwrap()
    ));
    // The bundled web roots do not know the test CA.
    let e = open("sslmode=verify-full").unwrap_err();
    assert!(
        matches!(
            e,
            WarehouseError::Unusable {
                at: Location::Server(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("certificate") || e.to_string().contains("UnknownIssuer"),
        "{e}"
    );
    assert!(!e.to_string().contains('\n'), "{e}");
}

/// The quarantine count a reader sees for the customers stream.
fn quarantined(reader: &mut PgReader) -> i64 {
    reader
        .snapshot("customers", "customers", 5)
        .unwrap()
        .quarantined
}

/// A failure between a migration's SQL and its history row (what a kill there does) leaves
/// nothing half-applied, the server's reason reaches the user, and the next open migrates and
/// succeeds. Applied in two transactions (refinery's default), the tables stayed without
/// their row and every later open failed re-creating them.
#[test]
fn a_migration_is_applied_with_its_history_row_or_not_at_all() {
    let Some(db) = TestDb::new("migration_atomic") else {
        return;
    };
    // The history table exists already (as refinery makes it) and refuses its first row.
    db.admin()
        .batch_execute(&format!(
            "CREATE SCHEMA {s};
             SET search_path TO {s};
             CREATE TABLE refinery_schema_history (version INT4 PRIMARY KEY,
                 name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255));
             CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'history row refused'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON refinery_schema_history
                 FOR EACH ROW EXECUTE FUNCTION refuse();",
            s = db.cfg.schema
        ))
        .unwrap();
    let err = PgWarehouse::open(&db.cfg).expect_err("the history row was refused");
    assert!(
        matches!(
            err,
            WarehouseError::Migration {
                at: Location::Server(_),
                ..
            }
        ) && err.to_string().contains("history row refused"),
        "{err}"
    );
    assert_eq!(
        db.one("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'customers'"),
        "0",
        "a migration was applied without its history row"
    );
    db.sql("DROP TRIGGER refuse ON refinery_schema_history");
    let mut wh = db.open();
    assert_eq!(wh.mark(Customers::SPEC).unwrap(), Mark::Start);
    assert_ne!(db.one("SELECT count(*) FROM refinery_schema_history"), "0");
}
