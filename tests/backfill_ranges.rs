//! A parallel backfill's id ranges hold about as many customers each, whatever the spread of
//! the ids, so every range has work and `api.concurrency` pays off.

mod common;

use std::collections::BTreeMap;

use common::*;
use oms_sync::fake_oms::FakeCustomer;

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
