//! A parallel backfill's id ranges hold about as many customers each, whatever the spread of
//! the ids, so every range has work and `api.concurrency` pays off.

mod common;

use std::collections::BTreeMap;

use common::*;
use fake_oms::FakeCustomer;
use oms_sync::resource::{Customer, CustomerFields, Customers};
use oms_sync::warehouse::{
    Advance, BackfillRange, BackfillState, Batch, Confirmed, Mark, RunKind, Warehouse,
};

/// 99% of the ids dense, the newest 1% a billion higher (a later block of ids). An even split
/// of the id span gave the first of 4 ranges 99% of the pages; the planned ranges, counted by
/// the API, share them about evenly, and the backfill is complete and in step.
#[tokio::test]
async fn ranges_share_the_rows_when_ids_have_a_gap() {
    each_backend(ranges_share_the_rows_when_ids_have_a_gap_on).await;
}

async fn ranges_share_the_rows_when_ids_have_a_gap_on() {
    const PAGE: u32 = 50;
    let mut customers: Vec<FakeCustomer> = (1..=19_800)
        .map(|i| FakeCustomer::new(i, at(0, i * 7)))
        .collect();
    customers.extend((1..=200).map(|i| FakeCustomer::new(1_000_000_000 + i * 1_000, at(1, i))));
    let oms = fake(customers).await;
    let mut h = Harness::new(&oms, PAGE);
    h.opts.concurrency = 4;
    let r = h.backfill().await.unwrap();
    assert_eq!(r.stats.inserted, 20_000);
    assert_in_step(&oms, &h.rows(), true);

    // Data pages per range: a range's requests carry its upper end (`id__lte`), the last
    // range none. Count requests ask for one row.
    let mut pages: BTreeMap<Option<String>, usize> = BTreeMap::new();
    let mut counts = 0;
    for q in oms.requests() {
        if q.param("sort") != Some("id") || q.param("limit") == Some("1") {
            counts += usize::from(q.param("limit") == Some("1"));
            continue;
        }
        *pages
            .entry(q.param("id__lte").map(str::to_owned))
            .or_default() += 1;
    }
    eprintln!("pages per range: {pages:?}; {counts} count requests");
    assert_eq!(pages.len(), 4, "four ranges walked: {pages:?}");
    let total: usize = pages.values().sum();
    // A quarter each, give or take half a quarter (and each range's closing pages).
    let most = *pages.values().max().unwrap();
    assert!(
        most <= total * 3 / 8 + 2,
        "uneven ranges: {pages:?} ({total} pages)"
    );
    // The plan's count requests stay a small part of the pass.
    assert!(
        counts <= total / 8,
        "{counts} count requests for {total} pages"
    );
}

/// A range's last page (`to` None) marks deleted only the unlisted ids up to the range's own
/// upper end: the rows of the range above it stay live, whether or not it walked them yet.
#[tokio::test]
async fn a_ranges_last_page_marks_only_its_own_ids_deleted() {
    each_backend(a_ranges_last_page_marks_only_its_own_ids_deleted_on).await;
}

async fn a_ranges_last_page_marks_only_its_own_ids_deleted_on() {
    let t = "2023-01-01T00:00:01.000000Z";
    let tw = TestWarehouse::fresh();
    let mut wh = tw.open();
    let stored = |id| {
        Customer::new(CustomerFields {
            id,
            modified_date: t,
            ..CustomerFields::default()
        })
    };
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Backfill, &Mark::Start)
        .unwrap();
    let rows = Batch {
        records: vec![stored(50), stored(150)],
        bad: vec![],
        advance: Advance::Mark(Mark::at(t, Confirmed::Nothing)),
    };
    wh.apply::<Customers>(run, &[rows]).unwrap();
    let range = |range_no: i64, lo: i64, hi: Option<i64>| BackfillRange {
        range_no,
        lo,
        hi,
        cursor: lo,
        done: false,
    };
    let state = BackfillState {
        run_id: Some(run),
        started_at: t.into(),
        high_water_date: Some(t.into()),
        ranges: vec![range(0, i64::MIN, Some(100)), range(1, 100, None)],
    };
    wh.start_backfill(Customers::SPEC, &state).unwrap();
    // Range 0 ends on an empty page after id 10; range 1 has not listed 150 yet.
    let last = Batch::<Customer> {
        records: vec![],
        bad: vec![],
        advance: Advance::Backfill {
            range_no: 0,
            from: 10,
            to: None,
        },
    };
    let s = wh.apply::<Customers>(run, &[last]).unwrap();
    assert_eq!(s.deleted, 1, "{s:?}");
    drop(wh);
    let deleted: Vec<(i64, bool)> = tw.rows().iter().map(|(id, r)| (*id, r.deleted)).collect();
    assert_eq!(deleted, [(50, true), (150, false)]);
}
