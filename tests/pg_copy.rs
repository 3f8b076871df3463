//! The PostgreSQL backfill's COPY path (binary COPY straight into the table for a page whose id
//! interval holds no row): taken by a backfill into an empty table, storing exactly what the
//! API listed; never taken where a row (live or deleted) exists, so a newer stored row is
//! never replaced by an older one; a page the server refuses mid-COPY keeps nothing of
//! itself nor of its checkpoint; consumers still see one `Inserted` per row. Needs
//! `OMS_SYNC_TEST_PG_URL` (skipped without it, failing under `CI`).

mod common;

use std::sync::Arc;

use common::*;
use fake_oms::FakeCustomer;
use oms_sync::resource::{Customer, CustomerFields, Customers};
use oms_sync::sync::{self, NoProgress, SyncOptions};
use oms_sync::warehouse::write::{Change, Recorder};
use oms_sync::warehouse::{
    Advance, BackfillRange, BackfillState, Batch, Confirmed, Mark, PgWarehouse, RowStats, RunKind,
    Warehouse,
};
use serde_json::json;

/// A schema of its own, or `None` (skipped) without a server.
fn pg() -> Option<PgSchema> {
    let mut b = backends();
    if b.pop() != Some(Backend::Postgres) {
        return None;
    }
    match TestWarehouse::of(Backend::Postgres) {
        TestWarehouse::Postgres(pg) => Some(pg),
        TestWarehouse::Sqlite { .. } => None,
    }
}

const T1: &str = "2023-01-01T00:00:01.000000Z";
const T2: &str = "2023-01-01T00:00:02.000000Z";

fn customer(id: i64, md: &str, name: &str) -> Customer {
    Customer::new(CustomerFields {
        id,
        created_date: Some("2023-01-01T00:00:00.000001Z"),
        modified_date: md,
        omnitron_id: Some(id * 10),
        email: None,
        first_name: Some(name),
        last_name: None,
        phone_number: None,
        erp_code: None,
        channel: Some(1),
        extra: None,
    })
}

fn page(range_no: i64, from: i64, to: Option<i64>, records: Vec<Customer>) -> Batch<Customer> {
    Batch {
        records,
        bad: vec![],
        advance: Advance::Backfill { range_no, from, to },
    }
}

fn one_range(hi: Option<i64>) -> BackfillState {
    BackfillState {
        run_id: None,
        started_at: T1.into(),
        high_water_date: Some(T2.into()),
        ranges: vec![BackfillRange {
            range_no: 0,
            lo: 0,
            hi,
            cursor: 0,
            done: false,
        }],
    }
}

fn query(pg: &PgSchema, sql: &str) -> Vec<String> {
    let sql = sql.to_string();
    pg.with_client(move |c| {
        c.simple_query(&sql)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect()
    })
}

/// Customers with every kind of value: nulls in each nullable column, non-Latin and astral
/// text, nested extra JSON, microsecond instants, and instants the API wrote with an offset or
/// without a fraction (the raw record the server sends for those).
fn varied() -> Vec<FakeCustomer> {
    let mut all = distinct(2_345);
    for c in all.iter_mut() {
        match c.id % 7 {
            0 => {
                c.email = None;
                c.first_name = None;
                c.last_name = None;
                c.phone_number = None;
                c.omnitron_id = None;
                c.channel = None;
            }
            1 => {
                c.first_name = Some("Ğüşıöç İpek 日本語 😀 \"quoted\" \\ back".into());
                c.erp_code = Some("ERP-\u{00e9}\u{0301}".into());
            }
            2 => {
                c.extra.insert(
                    "segment".into(),
                    json!({"tier": "gold", "tags": ["a", "ş"], "n": 1.5, "none": null}),
                );
                c.extra.insert("emoji".into(), json!("😀"));
            }
            _ => {}
        }
    }
    // The API may write an instant with an offset, or without a fraction.
    for (id, created, modified) in [
        (
            3_i64,
            "2024-03-01T12:00:00.123456+03:00",
            "2024-03-01T09:00:00.000021Z",
        ),
        (
            4,
            "2024-02-29T23:59:59-05:30",
            "2024-03-01T09:00:00.000028+00:00",
        ),
    ] {
        let c = &mut all[(id - 1) as usize];
        let created_at = oms_sync::timefmt::parse_api(created).unwrap();
        let modified_at = oms_sync::timefmt::parse_api(modified).unwrap();
        c.created_date = created_at;
        c.modified_date = modified_at;
        let raw = json!({
            "id": c.id, "created_date": created, "modified_date": modified,
            "omnitron_id": c.omnitron_id, "email": c.email, "first_name": c.first_name,
            "last_name": c.last_name, "phone_number": c.phone_number, "erp_code": c.erp_code,
            "channel": c.channel,
        });
        *c = c.clone().with_raw(raw);
    }
    all
}

/// A backfill into an empty table takes the COPY path for every page and stores exactly what
/// the API listed (the same comparison every suite makes), to the microsecond; at concurrency
/// 3, too, each range's pages are copied.
#[tokio::test]
async fn a_backfill_into_an_empty_table_copies_every_page_and_stores_what_was_listed() {
    for concurrency in [1, 3] {
        let Some(pg) = pg() else {
            return;
        };
        let oms = fake(varied()).await;
        let client = oms_sync::api::ApiClient::new(&api_config(&oms, 500)).unwrap();
        let opts = SyncOptions {
            concurrency,
            ..options(500)
        };
        let wh = PgWarehouse::open(&pg.cfg).unwrap();
        let (wh, r) = sync::backfill_pass::<Customers, _>(
            &client,
            wh,
            &opts,
            &Default::default(),
            Arc::new(NoProgress),
        )
        .await;
        let r = r.unwrap();
        assert_eq!(r.stats.inserted, 2_345, "{:?}", r.stats);
        // Every page with records (each range's last page is empty).
        let expected_pages = r.pages - r.backfill.map_or(1, |b| b.ranges as u64);
        assert!(expected_pages >= 5, "{} pages", r.pages);
        assert_eq!(
            wh.pages_copied(),
            expected_pages,
            "concurrency {concurrency}"
        );
        drop(wh);
        let wh = TestWarehouse::Postgres(pg);
        assert_in_step(&oms, &wh.rows(), true);
        let TestWarehouse::Postgres(pg) = &wh else {
            unreachable!()
        };
        // The bookkeeping columns are what an upsert writes, and instants are exact.
        assert_eq!(
            query(
                pg,
                "SELECT count(*) FROM customers WHERE deleted_at IS NULL
                     AND synced_at = first_synced_at AND synced_at > now() - interval '1 hour'"
            ),
            ["2345"]
        );
        assert_eq!(
            query(
                pg,
                "SELECT created_date = '2024-03-01T09:00:00.123456Z'::timestamptz
                     AND modified_date = '2024-03-01T09:00:00.000021Z'::timestamptz
                 FROM customers WHERE id = 3"
            ),
            ["t"]
        );
        assert_eq!(
            query(
                pg,
                "SELECT extra->'segment'->'tags'->>1 || (extra->>'emoji') FROM customers WHERE id = 2"
            ),
            ["ş😀"]
        );
        oms.shutdown().await;
    }
}

/// Pages over stored rows are merged, never copied: a newer stored row keeps its version, a
/// deleted row in the interval comes back, a page with an id twice keeps its later version;
/// the next page over an empty interval is copied again.
#[test]
fn a_page_over_stored_rows_is_merged_and_never_rewrites_a_newer_one() {
    let Some(pg) = pg() else {
        return;
    };
    let mut wh = PgWarehouse::open(&pg.cfg).unwrap();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Incremental, &Mark::Start)
        .unwrap();
    // Stored before the backfill: 5 at the newer T2, 25 (deleted below).
    let first = Batch {
        records: vec![customer(5, T2, "newer"), customer(25, T1, "gone")],
        bad: vec![],
        advance: Advance::Mark(Mark::at(T2, Confirmed::Nothing)),
    };
    wh.apply::<Customers>(run, &[first]).unwrap();
    wh.start_backfill(Customers::SPEC, &one_range(Some(100)))
        .unwrap();
    let ids = |r: std::ops::RangeInclusive<i64>| -> Vec<Customer> {
        r.map(|i| customer(i, T1, "older")).collect()
    };
    let s = wh
        .apply::<Customers>(run, &[page(0, 0, Some(10), ids(1..=10))])
        .unwrap();
    assert_eq!((s.inserted, s.unchanged), (9, 1), "{s:?}");
    assert_eq!(wh.pages_copied(), 0, "a page over a stored row is merged");
    assert_eq!(
        query(
            &pg,
            "SELECT first_name || ' ' || modified_date::text FROM customers WHERE id = 5"
        ),
        ["newer 2023-01-01 00:00:02+00"]
    );
    let s = wh
        .apply::<Customers>(run, &[page(0, 10, Some(20), ids(11..=20))])
        .unwrap();
    assert_eq!(s.inserted, 10);
    assert_eq!(wh.pages_copied(), 1, "an empty interval is copied");
    // A page without 25 marks it deleted; the next page lists it again: merged (a deleted
    // row still holds its id), back live.
    wh.apply::<Customers>(run, &[page(0, 20, Some(30), ids(21..=24))])
        .unwrap();
    assert_eq!(
        query(
            &pg,
            "SELECT count(*) FROM customers WHERE id = 25 AND deleted_at IS NOT NULL"
        ),
        ["1"]
    );
    assert_eq!(wh.pages_copied(), 1, "a live row in the interval: merged");
    let s = wh
        .apply::<Customers>(run, &[page(0, 24, Some(30), ids(25..=30))])
        .unwrap();
    assert_eq!((s.inserted, s.updated), (5, 1), "{s:?}");
    assert_eq!(
        wh.pages_copied(),
        1,
        "a deleted row in the interval: merged"
    );
    // An id twice in one page (a server that repeats itself): merged, the later version kept.
    let twice = vec![
        customer(31, T1, "first"),
        customer(32, T1, "a"),
        customer(32, T2, "second"),
    ];
    let s = wh
        .apply::<Customers>(run, &[page(0, 30, Some(40), twice)])
        .unwrap();
    assert_eq!((s.inserted, s.updated), (2, 1), "{s:?}");
    assert_eq!(wh.pages_copied(), 1, "an id twice: merged");
    assert_eq!(
        query(&pg, "SELECT first_name FROM customers WHERE id = 32"),
        ["second"]
    );
}

/// A fresh page's consumers see one `Inserted` per row, in order (what a history table
/// builds on), and the run's counters count them.
#[test]
fn a_copied_page_reports_each_row_inserted() {
    let Some(pg) = pg() else {
        return;
    };
    let mut wh = PgWarehouse::open(&pg.cfg).unwrap();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Backfill, &Mark::Start)
        .unwrap();
    wh.start_backfill(Customers::SPEC, &one_range(None))
        .unwrap();
    let mut rec = Recorder {
        previous: true,
        ..Recorder::default()
    };
    let records = (1..=4).map(|i| customer(i * 3, T1, "n")).collect();
    let s = wh
        .apply_recording::<Customers>(run, &[page(0, 0, Some(12), records)], &mut rec)
        .unwrap();
    assert_eq!(wh.pages_copied(), 1);
    assert_eq!(
        s,
        RowStats {
            fetched: 4,
            inserted: 4,
            ..RowStats::default()
        }
    );
    assert_eq!(
        rec.changes,
        [3, 6, 9, 12].map(|id| Change::Inserted { id }).to_vec()
    );
    assert_eq!(
        query(
            &pg,
            &format!("SELECT rows_inserted FROM sync_runs WHERE id = {run}")
        ),
        ["4"]
    );
}

/// A value the server refuses half-way through a COPY (a NUL character, which `text` cannot
/// hold) fails the page: nothing of it is stored, its range's cursor and the run's counters
/// stay where the last committed page left them, and the same warehouse then writes the
/// corrected page.
#[test]
fn a_page_failing_mid_copy_keeps_neither_its_rows_nor_its_checkpoint() {
    let Some(pg) = pg() else {
        return;
    };
    let mut wh = PgWarehouse::open(&pg.cfg).unwrap();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Backfill, &Mark::Start)
        .unwrap();
    wh.start_backfill(Customers::SPEC, &one_range(None))
        .unwrap();
    let ids = |r: std::ops::RangeInclusive<i64>, bad: Option<i64>| -> Vec<Customer> {
        r.map(|i| customer(i, T1, if Some(i) == bad { "nul\0here" } else { "ok" }))
            .collect()
    };
    wh.apply::<Customers>(run, &[page(0, 0, Some(1000), ids(1..=1000, None))])
        .unwrap();
    let err = wh
        .apply::<Customers>(
            run,
            &[page(0, 1000, Some(2000), ids(1001..=2000, Some(1700)))],
        )
        .unwrap_err();
    assert!(err.to_string().contains("writing a page"), "{err}");
    assert_eq!(wh.pages_copied(), 1);
    let state = wh.backfill_state(Customers::SPEC).unwrap().unwrap();
    assert_eq!(state.ranges[0].cursor, 1000);
    assert_eq!(
        query(
            &pg,
            &format!(
                "SELECT count(*)::text || ' ' || max(id)::text || ' ' ||
                        (SELECT rows_inserted FROM sync_runs WHERE id = {run})::text
                 FROM customers"
            )
        ),
        ["1000 1000 1000"]
    );
    let s = wh
        .apply::<Customers>(run, &[page(0, 1000, Some(2000), ids(1001..=2000, None))])
        .unwrap();
    assert_eq!(s.inserted, 1000);
    assert_eq!(wh.pages_copied(), 2);
    let state = wh.backfill_state(Customers::SPEC).unwrap().unwrap();
    assert_eq!(state.ranges[0].cursor, 2000);
}

/// New pages of one transaction go in together (two ranges' pages interleaved, as the writer
/// queues them), and a later page of the same transaction whose interval meets theirs sees
/// their rows: merged, its repeated ids unchanged, the rest inserted, nothing marked deleted.
#[test]
fn new_pages_of_one_transaction_are_copied_together_and_seen_by_the_next() {
    let Some(pg) = pg() else {
        return;
    };
    let mut wh = PgWarehouse::open(&pg.cfg).unwrap();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Backfill, &Mark::Start)
        .unwrap();
    let mut state = one_range(Some(1000));
    state.ranges.push(BackfillRange {
        range_no: 1,
        lo: 1000,
        hi: None,
        cursor: 1000,
        done: false,
    });
    wh.start_backfill(Customers::SPEC, &state).unwrap();
    let ids = |r: std::ops::RangeInclusive<i64>| -> Vec<Customer> {
        r.map(|i| customer(i, T1, "n")).collect()
    };
    let s = wh
        .apply::<Customers>(
            run,
            &[
                page(0, 0, Some(100), ids(1..=100)),
                page(1, 1000, Some(1100), ids(1001..=1100)),
                page(0, 100, Some(200), ids(101..=200)),
                // Meets the first page's interval: sees its rows.
                page(0, 50, Some(300), ids(51..=300)),
            ],
        )
        .unwrap();
    assert_eq!((s.inserted, s.unchanged, s.deleted), (400, 150, 0), "{s:?}");
    assert_eq!(wh.pages_copied(), 3);
    assert_eq!(
        query(
            &pg,
            "SELECT count(*)::text || ' ' || count(DISTINCT id)::text FROM customers"
        ),
        ["400 400"]
    );
    let state = wh.backfill_state(Customers::SPEC).unwrap().unwrap();
    assert_eq!(
        (state.ranges[0].cursor, state.ranges[1].cursor),
        (300, 1100)
    );
}
