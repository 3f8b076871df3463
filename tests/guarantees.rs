//! The foundation's sync guarantees, each against the fake OMS over loopback HTTP and a real
//! SQLite file. Test names carry the guarantee number they guard.

mod common;

use std::time::Duration;

use chrono::{FixedOffset, TimeDelta};
use common::*;
use fake_oms::{FakeCustomer, bulk_update};
use oms_sync::api::ApiError;
use oms_sync::resource::Customers;
use oms_sync::sync::SyncError;
use oms_sync::warehouse::{Confirmed, Mark, Warehouse};

/// 1. Keyset, never page numbers or `next`: data changes during the pass (rows the pass
/// already read are updated, rows ahead move behind) and nothing is skipped; the `next` link
/// points at another server that must never hear from us.
#[tokio::test]
async fn g1_keyset_pagination_survives_changes_and_ignores_next_links() {
    each_backend(g1_keyset_pagination_survives_changes_and_ignores_next_links_on).await;
}

async fn g1_keyset_pagination_survives_changes_and_ignores_next_links_on() {
    let decoy = fake(vec![]).await;
    let oms = fake(distinct(300)).await;
    oms.knobs(|k| k.next_link_base = Some(decoy.base_url()));
    oms.set_before_request(Box::new(change_during_pass));
    let h = Harness::new(&oms, 25);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);

    let reqs = oms.requests();
    assert!(reqs.len() > 12, "expected many pages, got {}", reqs.len());
    for r in &reqs {
        assert!(
            r.param("page").is_none(),
            "page number sent: {:?}",
            r.raw_query
        );
        assert!(
            matches!(r.param("sort"), Some("modified_date") | Some("id")),
            "{:?}",
            r.raw_query
        );
    }
    assert!(
        reqs.iter().skip(1).all(|r| {
            r.param("modified_date__gte").is_some()
                || r.param("modified_date__gt").is_some()
                || r.param("modified_date").is_some()
        }),
        "every request after the first filters past the last row received"
    );
    assert_eq!(
        decoy.requests().len(),
        0,
        "a request followed the next link"
    );
}

/// During a pass, on requests 2..=6: update one row already read and one not yet read, and
/// add a customer. With page numbers, each update shifts rows across page boundaries.
fn change_during_pass(n: u64, s: &mut fake_oms::Store) {
    if (2..=6).contains(&n) {
        let newest = s.max_modified_date().unwrap();
        let k = n as i64;
        s.touch(k, newest + TimeDelta::microseconds(1));
        s.touch(200 + k, newest + TimeDelta::microseconds(2));
        s.upsert(FakeCustomer::new(
            1000 + k,
            newest + TimeDelta::microseconds(3),
        ));
    }
}

/// Control for g1: the same changes make a plain page-number walk miss customers, so the
/// scenario above really is one that loses rows.
#[tokio::test]
async fn g1_control_page_numbers_lose_rows_under_the_same_changes() {
    each_backend(g1_control_page_numbers_lose_rows_under_the_same_changes_on).await;
}

async fn g1_control_page_numbers_lose_rows_under_the_same_changes_on() {
    let oms = fake(distinct(300)).await;
    oms.set_before_request(Box::new(change_during_pass));
    let http = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    for page in 1.. {
        let resp = http
            .get(oms.customers_url())
            .query(&[
                ("sort", "modified_date"),
                ("limit", "25"),
                ("page", &page.to_string()),
            ])
            .header("Authorization", format!("Token {}", oms.token()))
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            break;
        }
        let body: serde_json::Value = resp.json().await.unwrap();
        for r in body["results"].as_array().unwrap() {
            seen.insert(r["id"].as_i64().unwrap());
        }
    }
    let missed = oms.with_store(|s| s.ids().filter(|id| !seen.contains(id)).count());
    assert!(missed > 0, "the page-number walk happened to see every row");
}

/// 2. Ties: thousands of rows share one `modified_date` (bulk updates), more than several
/// pages hold; the server returns ties in an order that is not by id. All arrive, across page
/// boundaries and across runs, and the number of requests stays bounded.
#[tokio::test]
async fn g2_ties_across_pages_and_runs_are_all_fetched() {
    each_backend(g2_ties_across_pages_and_runs_are_all_fetched_on).await;
}

async fn g2_ties_across_pages_and_runs_are_all_fetched_on() {
    let mut customers = distinct(100);
    for id in 101..=1300 {
        customers.push(FakeCustomer::new(id, at(5_000, 0)));
    }
    for id in 1301..=1400 {
        customers.push(FakeCustomer::new(id, at(6_000, id)));
    }
    let oms = fake(customers).await;
    let h = Harness::new(&oms, 50);
    let r = h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    // 1400 rows at 50 a page is 28 pages; re-reading the tie group once more is allowed.
    assert!(
        r.requests <= 60,
        "{} requests: re-reading ties?",
        r.requests
    );

    // A second bulk update ties 700 existing customers (some read long ago) at a new instant.
    let later = at(9_000, 0);
    let ids: Vec<i64> = (1..=1400).step_by(2).collect();
    oms.with_store(|s| bulk_update(s, &ids, later));
    oms.with_store(|s| {
        for id in ids.iter().step_by(3) {
            s.update(*id, |c| c.first_name = Some(format!("Bulk {id}")));
        }
    });
    let r = h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    assert_eq!(r.stats.updated, ids.len() as u64);
    assert!(r.requests <= 40, "{} requests", r.requests);
    // A quiet pass after a drained tie group at the newest instant costs two requests: ids
    // above the highest one stored at that instant, then anything later.
    assert_eq!(h.once().await.unwrap().requests, 2);
    // Once a later row moves the mark past the group, a quiet pass costs one request.
    oms.with_store(|s| s.upsert(FakeCustomer::new(5_000, at(9_500, 0))));
    h.once().await.unwrap();
    assert_eq!(h.once().await.unwrap().requests, 1);
}

/// 2 (across runs): a pass stopped in the middle of draining a tie group resumes from its
/// checkpoint and finds every row of the group.
#[tokio::test]
async fn g2_pass_stopped_inside_a_tie_group_resumes() {
    each_backend(g2_pass_stopped_inside_a_tie_group_resumes_on).await;
}

async fn g2_pass_stopped_inside_a_tie_group_resumes_on() {
    let mut customers = distinct(20);
    for id in 21..=500 {
        customers.push(FakeCustomer::new(id, at(5_000, 0)));
    }
    let oms = fake(customers).await;
    let h = Harness::new(&oms, 30);
    h.stop_at_request(&oms, 6);
    assert!(matches!(h.once().await, Err(SyncError::Cancelled)));
    let mark = h.open().mark(Customers::SPEC).unwrap();
    assert!(
        matches!(
            &mark,
            Mark::At {
                confirmed: Confirmed::UpToId(_),
                ..
            }
        ),
        "stopped inside the tie group, mark {mark}"
    );
    let partial = h.rows().len();
    assert!(partial < 500, "{partial}");
    oms.clear_before_request();
    let h2 = h.resumed();
    h2.once().await.unwrap();
    assert_in_step(&oms, &h2.rows(), true);
}

/// 3. Each page and its checkpoint commit together: after a stop at any request, every row
/// the checkpoint claims is stored; the rerun loses nothing and duplicates nothing.
#[tokio::test]
async fn g3_checkpoint_never_runs_ahead_of_the_rows() {
    each_backend(g3_checkpoint_never_runs_ahead_of_the_rows_on).await;
}

async fn g3_checkpoint_never_runs_ahead_of_the_rows_on() {
    let mut customers = distinct(150);
    for id in 151..=260 {
        customers.push(FakeCustomer::new(id, at(3_000, 0)));
    }
    let oms = fake(customers).await;
    let server = oms.with_store(|s| s.snapshot());
    for stop_at in 1..=14u64 {
        oms.clear_requests();
        let h = Harness::new(&oms, 20);
        h.stop_at_request(&oms, oms.total_requests() + stop_at);
        let _ = h.once().await;
        let mark = h.open().mark(Customers::SPEC).unwrap();
        let rows = h.rows();
        for c in &server {
            let md = oms_sync::timefmt::canonical(&c.modified_date);
            let claimed = mark.covers(&md, c.id);
            if claimed {
                assert!(
                    rows.contains_key(&c.id),
                    "stop at {stop_at}: mark {mark} claims {} but it is missing",
                    c.id
                );
            }
        }
        oms.clear_before_request();
        let h2 = h.resumed();
        h2.once().await.unwrap();
        assert_in_step(&oms, &h2.rows(), true);
        let n = h2.wh.query_i64("SELECT count(*) FROM customers");
        assert_eq!(n as usize, server.len());
    }
}

/// 4. An upsert never replaces a row with an older version, even when the API serves one
/// (a lookback re-read from a lagging replica).
#[tokio::test]
async fn g4_older_version_never_replaces_newer() {
    each_backend(g4_older_version_never_replaces_newer_on).await;
}

async fn g4_older_version_never_replaces_newer_on() {
    let oms = fake(distinct(10)).await;
    let mut h = Harness::new(&oms, 100);
    h.opts.lookback = Duration::from_secs(3600);
    h.once().await.unwrap();
    oms.with_store(|s| {
        s.update(5, |c| {
            c.modified_date = at(-60_000, 0);
            c.first_name = Some("Stale".into());
        })
    });
    let r = h.once().await.unwrap();
    assert!(r.stats.fetched >= 1, "the older version was served");
    let rows = h.rows();
    assert_ne!(rows[&5].first_name.as_deref(), Some("Stale"));
    assert_eq!(
        rows[&5].modified_date,
        oms_sync::timefmt::canonical(&at(0, 35))
    );
}

/// 5. `sync.lookback` re-reads the window behind the mark: a row committed late, with a date
/// the mark already passed, arrives on the next pass with lookback and never without it.
#[tokio::test]
async fn g5_lookback_catches_rows_committed_late() {
    each_backend(g5_lookback_catches_rows_committed_late_on).await;
}

async fn g5_lookback_catches_rows_committed_late_on() {
    let oms = fake(distinct(50)).await;
    let mut h = Harness::new(&oms, 20);
    h.once().await.unwrap();
    // Committed late: dated 1 ms before the newest row the mark has passed.
    oms.with_store(|s| s.upsert(FakeCustomer::new(999, at(0, 50 * 7 - 1_000))));
    h.once().await.unwrap();
    assert!(
        !h.rows().contains_key(&999),
        "without lookback the late row is not re-read"
    );
    h.opts.lookback = Duration::from_secs(60);
    let r = h.once().await.unwrap();
    assert!(h.rows().contains_key(&999));
    assert_eq!(r.stats.inserted, 1);
    assert_in_step(&oms, &h.rows(), true);
}

/// 6. Backfill: marks customers the API no longer lists, clears the mark when one comes back,
/// and is resumable from its own checkpoint.
#[tokio::test]
async fn g6_backfill_marks_deletions_and_clears_them() {
    each_backend(g6_backfill_marks_deletions_and_clears_them_on).await;
}

async fn g6_backfill_marks_deletions_and_clears_them_on() {
    let oms = fake(distinct(120)).await;
    let h = Harness::new(&oms, 25);
    h.backfill().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let gone = [1i64, 26, 50, 51, 120];
    let removed: Vec<FakeCustomer> = oms.with_store(|s| {
        gone.iter()
            .map(|id| {
                let c = s.get(*id).unwrap().clone();
                s.remove(*id);
                c
            })
            .collect()
    });
    let r = h.backfill().await.unwrap();
    assert_eq!(r.stats.deleted, gone.len() as u64);
    let rows = h.rows();
    for id in gone {
        assert!(rows[&id].deleted, "{id} not marked deleted");
    }
    assert_in_step(&oms, &h.rows(), true);
    // One comes back unchanged: the next backfill clears its deleted_at.
    oms.with_store(|s| s.upsert(removed[2].clone()));
    h.backfill().await.unwrap();
    assert!(!h.rows()[&50].deleted);
    assert_in_step(&oms, &h.rows(), true);
}

#[tokio::test]
async fn g6_backfill_resumes_after_a_stop() {
    each_backend(g6_backfill_resumes_after_a_stop_on).await;
}

async fn g6_backfill_resumes_after_a_stop_on() {
    let oms = fake(distinct(300)).await;
    let h = Harness::new(&oms, 20);
    h.stop_at_request(&oms, 8);
    assert!(matches!(h.backfill().await, Err(SyncError::Cancelled)));
    let partial = h.rows().len();
    assert!(partial > 0 && partial < 300, "{partial}");
    oms.clear_before_request();
    oms.clear_requests();
    let h2 = h.resumed();
    let r = h2.backfill().await.unwrap();
    let first = &oms.requests()[0];
    let resumed_from: i64 = first
        .param("id__gt")
        .expect("the resumed backfill starts after its checkpoint")
        .parse()
        .unwrap();
    assert!(resumed_from >= 20, "resumed from {resumed_from}");
    assert_eq!(r.stats.deleted, 0);
    assert_in_step(&oms, &h2.rows(), true);
}

/// 6 (mark): a customer modified while the backfill runs, after the backfill passed its id,
/// is found by the next incremental pass, even when a later-dated change was seen by the
/// backfill itself (so "the largest modified_date seen" would skip it).
#[tokio::test]
async fn g6_backfill_leaves_a_mark_that_misses_nothing() {
    each_backend(g6_backfill_leaves_a_mark_that_misses_nothing_on).await;
}

async fn g6_backfill_leaves_a_mark_that_misses_nothing_on() {
    let oms = fake(distinct(200)).await;
    oms.set_before_request(Box::new(|n, s| {
        if n == 5 {
            let newest = s.max_modified_date().unwrap();
            // id 3 was read already; id 190 is ahead of the backfill and dated later.
            s.update(3, |c| {
                c.modified_date = newest + TimeDelta::seconds(1);
                c.first_name = Some("Changed during backfill".into());
            });
            s.touch(190, newest + TimeDelta::seconds(2));
        }
    }));
    let h = Harness::new(&oms, 20);
    h.backfill().await.unwrap();
    assert_ne!(
        h.rows()[&3].first_name.as_deref(),
        Some("Changed during backfill")
    );
    h.once().await.unwrap();
    assert_eq!(
        h.rows()[&3].first_name.as_deref(),
        Some("Changed during backfill")
    );
    assert_in_step(&oms, &h.rows(), true);
}

/// 7. Datetimes in query strings are percent-encoded (`+` arrives as `+`, not a space), and
/// datetimes the API sends with an offset are stored as the same instant in UTC.
#[tokio::test]
async fn g7_dates_are_encoded_and_offsets_normalised() {
    each_backend(g7_dates_are_encoded_and_offsets_normalised_on).await;
}

async fn g7_dates_are_encoded_and_offsets_normalised_on() {
    let oms = fake(distinct(60)).await;
    oms.knobs(|k| k.output_offset = Some(FixedOffset::east_opt(3 * 3600).unwrap()));
    let h = Harness::new(&oms, 25);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let stored = &h.rows()[&1].modified_date;
    assert!(stored.ends_with('Z'), "{stored}");
    let reqs = oms.requests();
    let filtered: Vec<_> = reqs
        .iter()
        .filter_map(|r| {
            r.param("modified_date__gte")
                .or(r.param("modified_date__gt"))
        })
        .collect();
    assert!(!filtered.is_empty());
    for r in &reqs {
        assert_eq!(r.status, 200, "{:?}", r.raw_query);
        if let Some(q) = &r.raw_query
            && (q.contains("modified_date__") || q.contains("&modified_date="))
        {
            assert!(q.contains("%2B00%3A00"), "offset not percent-encoded: {q}");
        }
    }
}

/// 8. 401/403 stop at once: one request, no retry, a clear error, the checkpoint unmoved.
#[tokio::test]
async fn g8_auth_failure_stops_without_retry_or_checkpoint_move() {
    each_backend(g8_auth_failure_stops_without_retry_or_checkpoint_move_on).await;
}

async fn g8_auth_failure_stops_without_retry_or_checkpoint_move_on() {
    let oms = fake(distinct(30)).await;
    let h = Harness::new(&oms, 10);
    h.once().await.unwrap();
    let before = h.open().mark(Customers::SPEC).unwrap();
    oms.with_store(|s| s.touch(3, at(100_000, 0)));

    let token = oms.token();
    for forbidden in [false, true] {
        oms.clear_requests();
        oms.knobs(|k| {
            k.forbidden = forbidden;
            k.token = if forbidden {
                token.clone()
            } else {
                "rotated".into()
            };
        });
        let err = h.once().await.unwrap_err();
        let expected = if forbidden { 403 } else { 401 };
        assert!(
            matches!(&err, SyncError::Api(ApiError::Auth { status, .. }) if *status == expected),
            "{err}"
        );
        assert!(err.to_string().contains("authentication failed"), "{err}");
        assert!(!err.to_string().contains(&token));
        assert_eq!(oms.requests().len(), 1, "retried an auth failure");
        assert_eq!(h.open().mark(Customers::SPEC).unwrap(), before);
    }
    let status = h.wh.snapshot().recent_runs[0].status.clone();
    assert_eq!(status, "failed");
}

/// 9. The page size asked for is never assumed: a server that caps `limit` lower, and one
/// that returns short pages mid-stream, still yield every row (incremental and backfill).
#[tokio::test]
async fn g9_capped_and_short_pages_lose_nothing() {
    each_backend(g9_capped_and_short_pages_lose_nothing_on).await;
}

async fn g9_capped_and_short_pages_lose_nothing_on() {
    let mut customers = distinct(150);
    for id in 151..=230 {
        customers.push(FakeCustomer::new(id, at(2_000, 0)));
    }
    let oms = fake(customers).await;
    oms.knobs(|k| {
        k.max_limit = 7;
        k.random_short_page_rate = 0.3;
    });
    let h = Harness::new(&oms, 100);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let served: Vec<usize> = oms.requests().iter().map(|r| r.results).collect();
    assert!(served.iter().all(|n| *n <= 7), "{served:?}");
    assert!(
        served.iter().any(|n| *n > 0 && *n < 7),
        "no short page was served: {served:?}"
    );

    let h2 = Harness::new(&oms, 100);
    h2.backfill().await.unwrap();
    assert_in_step(&oms, &h2.rows(), true);
}

/// Nothing the API sends is dropped: unknown fields are kept as JSON, Turkish text exactly.
#[tokio::test]
async fn new_fields_and_unicode_are_kept() {
    each_backend(new_fields_and_unicode_are_kept_on).await;
}

async fn new_fields_and_unicode_are_kept_on() {
    let mut c =
        FakeCustomer::new(1, at(0, 0)).with_extra("loyalty_tier", serde_json::json!("altın"));
    c.first_name = Some("İpek Şükrü Çağla Ğ ı".into());
    let oms = fake(vec![c]).await;
    let h = Harness::new(&oms, 10);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let row = &h.rows()[&1];
    assert_eq!(row.first_name.as_deref(), Some("İpek Şükrü Çağla Ğ ı"));
    assert_eq!(row.extra.as_ref().unwrap()["loyalty_tier"], "altın");
}

/// Run history carries the pass's figures.
#[tokio::test]
async fn sync_runs_record_the_figures() {
    each_backend(sync_runs_record_the_figures_on).await;
}

async fn sync_runs_record_the_figures_on() {
    let oms = fake(distinct(45)).await;
    let h = Harness::new(&oms, 20);
    h.once().await.unwrap();
    oms.with_store(|s| {
        s.touch(1, at(50_000, 0));
        s.upsert(FakeCustomer::new(46, at(50_000, 1)));
    });
    h.once().await.unwrap();
    let mut recent = h.wh.snapshot().recent_runs;
    recent.reverse();
    let runs: Vec<(String, String, i64, i64, i64, i64)> = recent
        .iter()
        .map(|r| {
            (
                r.kind.clone(),
                r.status.clone(),
                r.rows_fetched,
                r.rows_inserted,
                r.rows_updated,
                r.pages,
            )
        })
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].0, "incremental");
    assert_eq!(runs[0].1, "succeeded");
    // Fetched counts rows received, including the row at each page boundary read twice.
    assert!(runs[0].2 >= 45 && runs[0].2 <= 50, "{runs:?}");
    assert_eq!((runs[0].3, runs[0].4), (45, 0));
    // The second pass re-reads the row at the first pass's last instant, plus the two changes.
    assert_eq!((runs[1].2, runs[1].3, runs[1].4), (3, 1, 1));
    let mark_after = recent[1].mark_after.clone().unwrap();
    assert!(
        mark_after.starts_with("2024-03-01T09:00:50.000001Z"),
        "{mark_after}"
    );
}

/// 2/9: `count` and `results` come from two queries; a bulk update committing between them
/// makes `count` stale. A page that seems to hold "everything" may then end inside a tie
/// group: the rows at its last instant stay unconfirmed, and the next pass finds the rest.
#[tokio::test]
async fn g2_stale_count_inside_a_tie_group_loses_nothing() {
    each_backend(g2_stale_count_inside_a_tie_group_loses_nothing_on).await;
}

async fn g2_stale_count_inside_a_tie_group_loses_nothing_on() {
    let oms = fake(distinct(10)).await;
    let h = Harness::new(&oms, 20);
    h.once().await.unwrap();
    // A bulk update of 30 new customers at one instant lands, but the server's count still
    // says only the one row at the mark's instant exists.
    oms.with_store(|s| {
        for id in 100..130 {
            s.upsert(FakeCustomer::new(id, at(9_000, 0)));
        }
    });
    oms.knobs(|k| k.stale_count = Some(1));
    h.once().await.unwrap();
    oms.knobs(|k| k.stale_count = None);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
}

/// Guarantee 10: a bulk update that commits in chunks with one computed `modified_date`: rows at the
/// instant of a drained tie group, with ids above every stored one, arrive after the group was
/// drained. The checkpoint claims only the ids it stored, so the next pass finds them, whatever
/// the group's size and with or without a server cap below it.
async fn late_rows_at_a_drained_instant(page_size: u32, max_limit: usize) {
    let t = at(5_000, 0);
    let mut customers = distinct(50);
    for id in 51..=300 {
        customers.push(FakeCustomer::new(id, t));
    }
    let oms = fake(customers).await;
    oms.knobs(|k| k.max_limit = max_limit);
    let h = Harness::new(&oms, page_size);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let mark = h.open().mark(Customers::SPEC).unwrap();
    assert_eq!(
        mark,
        Mark::at(oms_sync::timefmt::canonical(&t), Confirmed::UpToId(300))
    );
    // The rest of the bulk update commits: 50 new customers at the same instant, higher ids.
    oms.with_store(|s| {
        for id in 301..=350 {
            s.upsert(FakeCustomer::new(id, t));
        }
    });
    let r = h.once().await.unwrap();
    assert_eq!(r.stats.inserted, 50, "{:?}", r.stats);
    assert_in_step(&oms, &h.rows(), true);
    assert_eq!(
        h.open().mark(Customers::SPEC).unwrap(),
        Mark::at(oms_sync::timefmt::canonical(&t), Confirmed::UpToId(350))
    );
}

#[tokio::test]
async fn g10_rows_committed_late_at_a_drained_instant_are_fetched() {
    each_backend(g10_rows_committed_late_at_a_drained_instant_are_fetched_on).await;
}

async fn g10_rows_committed_late_at_a_drained_instant_are_fetched_on() {
    late_rows_at_a_drained_instant(100, 0).await;
}

#[tokio::test]
async fn g10_same_with_a_server_cap_below_the_tie_group() {
    each_backend(g10_same_with_a_server_cap_below_the_tie_group_on).await;
}

async fn g10_same_with_a_server_cap_below_the_tie_group_on() {
    late_rows_at_a_drained_instant(100, 40).await;
}

/// Guarantee 11: a backfill marks deleted only ids it read past: capped and short pages, a stale `count`
/// and parallel ranges end no range early (only an empty page does), and a stop between pages
/// resumes without marking a live customer deleted.
#[tokio::test]
async fn g11_backfill_deletes_only_what_it_read_past() {
    each_backend(g11_backfill_deletes_only_what_it_read_past_on).await;
}

async fn g11_backfill_deletes_only_what_it_read_past_on() {
    let oms = fake(distinct(400)).await;
    let mut h = Harness::new(&oms, 100);
    h.backfill().await.unwrap();
    let gone: Vec<i64> = (3..=400).step_by(37).collect();
    oms.with_store(|s| {
        for id in &gone {
            s.remove(*id);
        }
    });
    oms.knobs(|k| {
        k.max_limit = 9;
        k.random_short_page_rate = 0.3;
        k.stale_count = Some(1);
    });
    h.opts.concurrency = 3;
    h.stop_at_request(&oms, oms.total_requests() + 12);
    assert!(matches!(h.backfill().await, Err(SyncError::Cancelled)));
    oms.clear_before_request();
    let h = h.resumed();
    let r = h.backfill().await.unwrap();
    let rows = h.rows();
    let deleted: Vec<i64> = rows
        .iter()
        .filter(|(_, r)| r.deleted)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        deleted, gone,
        "deleted_at set on exactly the removed customers"
    );
    assert!(r.stats.deleted <= gone.len() as u64, "{:?}", r.stats);
    assert_in_step(&oms, &h.rows(), true);
}
