//! Fault injection (issue 4): what the API and the disk can do to a pass, each against the
//! fake OMS over loopback HTTP and a real SQLite file. A faulty pass either completes with the
//! warehouse in step, or fails with a clear error and a checkpoint that claims only stored rows.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use fake_oms::{FakeCustomer, FakeOms, Fault, RecordedRequest};
use oms_sync::api::{ApiClient, ApiError, parse_page, parse_page_by_element};
use oms_sync::resource::Customers;
use oms_sync::sync::SyncError;
use oms_sync::timefmt;
use oms_sync::warehouse::{AnyWarehouse, Mark, SqliteWarehouse};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};

/// Every server customer the checkpoint claims is stored with at least its server version.
fn assert_mark_claims_only_stored_rows(oms: &FakeOms, db: &Path, mark: &Mark) {
    let rows = rows(db);
    for c in oms.with_store(|s| s.snapshot()) {
        let md = timefmt::canonical(&c.modified_date);
        let claimed = mark.covers(&md, c.id);
        if claimed {
            let row = rows
                .get(&c.id)
                .unwrap_or_else(|| panic!("mark {mark} claims {} but it is missing", c.id));
            assert!(
                row.modified_date >= md,
                "mark {mark} claims {} at {md}, stored {}",
                c.id,
                row.modified_date
            );
        }
    }
}

/// Requests that were answered with an error or a cut/invalid body: the ones retried.
fn faulted(reqs: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    reqs.iter()
        .filter(|r| r.status != 200 || r.fault.is_some())
        .collect()
}

/// Every faulted request is followed by a retry of the very same query.
fn assert_each_fault_retried(reqs: &[RecordedRequest]) {
    for (i, r) in reqs.iter().enumerate() {
        let short = r.fault.as_deref().is_some_and(|f| f.contains("ShortPage"));
        if (r.status != 200 || r.fault.is_some()) && !short {
            let next = reqs.get(i + 1).unwrap_or_else(|| {
                panic!("fault {:?} at the last request was not retried", r.fault)
            });
            assert_eq!(
                next.raw_query, r.raw_query,
                "after fault {:?} the next request is not a retry",
                r.fault
            );
        }
    }
}

/// A storm of scripted faults of every kind plus random ones: every pass completes in step,
/// and every fault is answered by a retry of the same request.
#[tokio::test]
async fn retry_storm_of_every_transient_fault_completes_in_step() {
    each_backend(retry_storm_of_every_transient_fault_completes_in_step_on).await;
}

async fn retry_storm_of_every_transient_fault_completes_in_step_on() {
    let mut customers = distinct(200);
    for id in 201..=320 {
        customers.push(FakeCustomer::new(id, at(4_000, 0)));
    }
    let oms = fake(customers).await;
    let scripted = vec![
        Fault::TooManyRequests {
            retry_after: "0".into(),
        },
        Fault::html(502),
        Fault::TruncatedBody,
        Fault::InvalidJson,
        Fault::ServiceUnavailable { retry_after: None },
        Fault::json(500, r#"{"detail": "oops"}"#),
        Fault::html(504),
        Fault::Status {
            status: 408,
            body: String::new(),
            content_type: "text/plain".into(),
        },
        Fault::TruncatedBody,
        Fault::html(502),
    ];
    let n_scripted = scripted.len();
    oms.push_faults(scripted);
    oms.knobs(|k| k.random_fault_rate = 0.15);
    // The scripted faults all hit the first request: a budget that outlasts them.
    let mut cfg = api_config(&oms, 20);
    cfg.max_retries = 16;
    let h = Harness {
        client: ApiClient::new(&cfg).unwrap(),
        ..Harness::new(&oms, 20)
    };
    let started = Instant::now();
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    assert_eq!(oms.pending_faults(), 0, "every scripted fault was served");
    let reqs = oms.requests();
    let retries = faulted(&reqs).len();
    let random = reqs
        .iter()
        .filter(|r| r.fault.as_deref().is_some_and(|f| f.starts_with("random")))
        .count();
    assert!(
        retries > n_scripted,
        "{retries} faulted requests, {random} random"
    );
    assert!(random > 0, "the random fault rate produced no fault");
    assert_each_fault_retried(&reqs);
    eprintln!(
        "storm: incremental pass {} requests, {retries} faulted and retried ({random} random), {:?}",
        reqs.len(),
        started.elapsed()
    );

    // The same storm under a backfill with three parallel id ranges, data changed meanwhile.
    oms.with_store(|s| {
        s.remove(7);
        s.update(11, |c| {
            c.modified_date = at(9_000, 0);
            c.first_name = Some("Storm".into());
        });
    });
    oms.clear_requests();
    oms.push_faults([Fault::html(502), Fault::TruncatedBody, Fault::InvalidJson]);
    let mut h = h;
    h.opts.concurrency = 3;
    h.backfill().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    assert!(h.rows()[&7].deleted);
    let reqs = oms.requests();
    assert!(faulted(&reqs).len() >= 3);
    eprintln!(
        "storm: backfill (3 ranges) {} requests, {} faulted and retried",
        reqs.len(),
        faulted(&reqs).len()
    );
}

/// `Retry-After` in both forms is obeyed: the retry comes no sooner than asked, although the
/// client's own backoff is milliseconds.
#[tokio::test]
async fn retry_after_seconds_and_http_date_are_honoured() {
    each_backend(retry_after_seconds_and_http_date_are_honoured_on).await;
}

async fn retry_after_seconds_and_http_date_are_honoured_on() {
    let oms = fake(distinct(5)).await;
    // HTTP-date has whole seconds, so it is rounded up: at least 3 s ahead when pushed, at
    // least ~2 s ahead when the second request reads it ~1 s later (less the set-up time).
    // Rounded down, it could be only 2 s ahead, and a slow set-up left less than the 900 ms
    // asserted below (seen: 882 ms).
    let in_3s = (chrono::Utc::now() + chrono::TimeDelta::seconds(3)).timestamp();
    let date = chrono::DateTime::from_timestamp(in_3s + 1, 0)
        .expect("a near date is in range")
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    oms.push_faults([
        Fault::TooManyRequests {
            retry_after: "1".into(),
        },
        Fault::ServiceUnavailable {
            retry_after: Some(date.clone()),
        },
        Fault::html(502),
    ]);
    let h = Harness::new(&oms, 10);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let reqs = oms.requests();
    assert_eq!(reqs.len(), 4, "three faults, then the page");
    let gap = |i: usize| reqs[i + 1].received_at - reqs[i].received_at;
    eprintln!(
        "retry-after: gaps {:?} {:?} {:?} (HTTP-date {date})",
        gap(0),
        gap(1),
        gap(2)
    );
    assert!(
        gap(0) >= Duration::from_millis(950),
        "Retry-After: 1 not honoured: {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= Duration::from_millis(900),
        "Retry-After: {date} not honoured: {:?}",
        gap(1)
    );
    assert!(
        // Well under the 1 s a Retry-After would impose, with room for a loaded machine.
        gap(2) < Duration::from_millis(800),
        "without Retry-After the client's short backoff applies: {:?}",
        gap(2)
    );
}

/// A 429 that lost its `Retry-After` on the way (a gateway) but kept DRF's body: the wait the
/// body names is obeyed as the header's would be, although the client's own backoff is
/// milliseconds.
#[tokio::test]
async fn drf_throttled_body_without_retry_after_is_obeyed() {
    let oms = fake(distinct(5)).await;
    oms.push_faults([Fault::json(
        429,
        r#"{"detail": "Request was throttled. Expected available in 2 seconds."}"#,
    )]);
    let h = Harness::new(&oms, 10);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let reqs = oms.requests();
    assert_eq!(reqs.len(), 2, "the 429, then the page");
    let gap = reqs[1].received_at - reqs[0].received_at;
    assert!(
        gap >= Duration::from_millis(1900),
        "the body's 2 s not obeyed: {gap:?}"
    );
}

/// A synced warehouse with `max_retries = 3`, one change waiting on the server, and the
/// server's request log cleared: the next pass has work to do, and every attempt is counted.
async fn budget_setup() -> (FakeOms, Harness, Mark) {
    let oms = fake(distinct(30)).await;
    let mut cfg = api_config(&oms, 10);
    cfg.max_retries = 3;
    let h = Harness {
        client: ApiClient::new(&cfg).unwrap(),
        ..Harness::new(&oms, 10)
    };
    h.once().await.unwrap();
    let before = h.mark();
    oms.with_store(|s| s.touch(3, at(100_000, 0)));
    oms.clear_requests();
    (oms, h, before)
}

/// A server that keeps failing costs `max_retries + 1` attempts, then a clear error; the
/// checkpoint does not move.
#[tokio::test]
async fn retry_budget_is_bounded_on_5xx() {
    each_backend(retry_budget_is_bounded_on_5xx_on).await;
}

async fn retry_budget_is_bounded_on_5xx_on() {
    let (oms, h, before) = budget_setup().await;
    oms.push_faults((0..20).map(|_| Fault::html(503)));
    let err = h.once().await.unwrap_err();
    assert!(
        matches!(&err, SyncError::Api(ApiError::GaveUp { attempts: 4, .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("after 4 attempts"), "{msg}");
    assert!(msg.contains("503"), "the last error is named: {msg}");
    assert!(msg.contains("checkpoint did not move"), "{msg}");
    assert_eq!(oms.requests().len(), 4, "attempts seen by the server");
    assert_eq!(h.mark(), before);
    oms.clear_faults();
}

/// The same budget holds when every failure is a 429 carrying `Retry-After`: the header sets
/// how long to wait, never how many times to try.
#[tokio::test]
async fn retry_budget_is_bounded_on_429_with_retry_after() {
    each_backend(retry_budget_is_bounded_on_429_with_retry_after_on).await;
}

async fn retry_budget_is_bounded_on_429_with_retry_after_on() {
    let (oms, h, before) = budget_setup().await;
    oms.push_faults((0..20).map(|_| Fault::TooManyRequests {
        retry_after: "0".into(),
    }));
    let r = tokio::time::timeout(Duration::from_secs(20), h.once())
        .await
        .expect("the pass ends");
    let seen = oms.requests().len();
    assert_eq!(
        seen, 4,
        "a 429 storm with Retry-After took {seen} attempts with max_retries = 3 (pass: {r:?})"
    );
    let err = r.unwrap_err();
    assert!(
        matches!(&err, SyncError::Api(ApiError::GaveUp { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(h.mark(), before);
    oms.clear_faults();
}

/// The token goes to the configured origin only: a 302 to another host fails the pass with an
/// error naming the redirect, and `next` links to another host are ignored.
#[tokio::test]
async fn redirects_and_next_links_to_another_host_are_never_followed() {
    each_backend(redirects_and_next_links_to_another_host_are_never_followed_on).await;
}

async fn redirects_and_next_links_to_another_host_are_never_followed_on() {
    let decoy = fake(distinct(3)).await;
    let oms = fake(distinct(40)).await;
    oms.knobs(|k| k.next_link_base = Some(decoy.base_url()));
    let h = Harness::new(&oms, 10);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    assert!(
        oms.requests()
            .iter()
            .any(|r| r.status == 200 && r.results == 10),
        "pages with a next link were served"
    );

    oms.with_store(|s| s.touch(5, at(50_000, 0)));
    let before = h.mark();
    let location = format!("{}?limit=10", decoy.customers_url());
    oms.push_fault(Fault::Redirect {
        location: location.clone(),
    });
    let err = h.once().await.unwrap_err();
    assert!(
        matches!(&err, SyncError::Api(ApiError::Redirect { status: 302, .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("redirect") && msg.contains(&location), "{msg}");
    assert!(!msg.contains(&oms.token()), "token in the message: {msg}");
    assert_eq!(h.mark(), before);
    assert!(
        decoy.requests().is_empty(),
        "the decoy was contacted: {:?}",
        decoy.requests()
    );
    // The next pass (no redirect) completes.
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    assert!(decoy.requests().is_empty());
}

/// A BI reader holding a read transaction open for the whole time blocks neither a pass nor
/// the next one (WAL), and keeps its consistent snapshot meanwhile.
#[tokio::test]
async fn long_reader_does_not_block_passes() {
    let oms = fake(distinct(120)).await;
    let h = Harness::new(&oms, 25);
    h.once().await.unwrap();
    let reader = rusqlite::Connection::open(h.db()).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&reader), 120);

    for round in 0..2i64 {
        oms.with_store(|s| {
            for k in 0..30 {
                s.upsert(FakeCustomer::new(
                    1000 + round * 100 + k,
                    at(60_000 * (round + 1), k),
                ));
            }
            s.update(round + 1, |c| {
                c.modified_date = at(60_000 * (round + 1) + 1, 0);
                c.first_name = Some(format!("Reader round {round}"));
            });
        });
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(20), h.once())
            .await
            .expect("the pass is not blocked by the reader")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_in_step(&oms, &h.rows(), true);
        assert_eq!(count(&reader), 120, "the reader keeps its snapshot");
    }
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&reader), 180);
}

/// Records that cannot be stored go to quarantine whole, with the reason; the pass goes on;
/// a later good version clears the quarantine row; unknown fields are kept; Turkish text is
/// stored exactly.
#[tokio::test]
async fn malformed_records_are_quarantined_and_cleared_by_a_good_version() {
    let d = |ms| timefmt::canonical(&at(ms, 0));
    let mut customers: Vec<FakeCustomer> = (1..=30)
        .map(|i| FakeCustomer::new(i, at(i * 10, 0)))
        .collect();
    let raws: BTreeMap<i64, Value> = [
        (
            4,
            json!({"id": 4, "modified_date": "yesterday", "email": "a@b.c"}),
        ),
        (
            8,
            json!({"modified_date": d(80), "email": "noid@example.com"}),
        ),
        (12, json!({"id": "12", "modified_date": d(120)})),
        (
            16,
            json!({"id": 16, "modified_date": d(160), "channel": {"web": true}}),
        ),
        (20, json!(["not", "an", "object", 20])),
        (
            24,
            json!({"id": 24, "modified_date": d(240), "created_date": 17}),
        ),
    ]
    .into();
    for c in customers.iter_mut() {
        if let Some(raw) = raws.get(&c.id) {
            c.raw_override = Some(raw.clone());
        }
    }
    customers[26] = customers[26]
        .clone()
        .with_extra("loyalty_tier", json!("altın"))
        .with_extra(
            "addresses",
            json!([{"city": "İstanbul"}, {"city": "Muğla"}]),
        );
    customers[27].first_name = Some("İpek ığüşöç İĞÜŞÖÇ".into());
    customers[27].last_name = Some("Çağlayan Şükrüoğlu".into());
    let oms = fake(customers).await;
    let h = Harness::new(&oms, 7);
    let r = h.once().await.unwrap();
    assert_eq!(r.stats.quarantined, raws.len() as u64, "{:?}", r.stats);

    let good: Vec<FakeCustomer> = oms
        .with_store(|s| s.snapshot())
        .into_iter()
        .filter(|c| c.raw_override.is_none())
        .collect();
    let rows = h.rows();
    assert_eq!(rows.len(), good.len(), "only the good rows are stored");
    for c in &good {
        assert_eq!(rows.get(&c.id), Some(&expected(c)), "customer {}", c.id);
    }
    assert_eq!(rows[&27].extra.as_ref().unwrap()["loyalty_tier"], "altın");
    assert_eq!(
        rows[&27].extra.as_ref().unwrap()["addresses"][0]["city"],
        "İstanbul"
    );
    assert_eq!(rows[&28].first_name.as_deref(), Some("İpek ığüşöç İĞÜŞÖÇ"));
    assert_eq!(rows[&28].last_name.as_deref(), Some("Çağlayan Şükrüoğlu"));

    let quarantine = |db: &Path| -> Vec<(Option<i64>, String, String)> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut st = conn
            .prepare("SELECT record_id, raw, error FROM quarantine ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let q = quarantine(&h.db());
    assert_eq!(q.len(), raws.len(), "{q:#?}");
    for raw in raws.values() {
        let hit = q
            .iter()
            .find(|(_, r, _)| serde_json::from_str::<Value>(r).ok().as_ref() == Some(raw))
            .unwrap_or_else(|| panic!("{raw} not quarantined whole: {q:#?}"));
        assert!(!hit.2.trim().is_empty(), "no reason for {raw}");
    }
    let ids: Vec<Option<i64>> = q.iter().map(|x| x.0).collect();
    for id in [4, 16, 24] {
        assert!(ids.contains(&Some(id)), "{id} quarantined by id: {ids:?}");
    }
    let reason = |id: i64| q.iter().find(|x| x.0 == Some(id)).unwrap().2.clone();
    assert!(reason(4).contains("modified_date"), "{}", reason(4));
    // The serde message names the type, not always the field ("invalid type: integer `17`,
    // expected a borrowed string"); the raw record beside it shows which one.
    assert!(reason(24).contains("17"), "{}", reason(24));

    // The source is fixed: good versions of 4, 16 and 24 with newer dates clear their rows.
    oms.with_store(|s| {
        for id in [4, 16, 24] {
            s.update(id, |c| {
                c.raw_override = None;
                c.modified_date = at(90_000 + id, 0);
            });
        }
    });
    let r = h.once().await.unwrap();
    assert_eq!(r.stats.quarantined, 0);
    let q = quarantine(&h.db());
    let ids: Vec<Option<i64>> = q.iter().map(|x| x.0).collect();
    for id in [4, 16, 24] {
        assert!(!ids.contains(&Some(id)), "{id} still quarantined: {q:#?}");
    }
    assert_eq!(q.len(), raws.len() - 3, "{q:#?}");
    let rows = h.rows();
    for id in [4, 16, 24] {
        let c = oms.with_store(|s| s.get(id).unwrap().clone());
        assert_eq!(rows.get(&id), Some(&expected(&c)), "customer {id}");
    }
}

/// Arbitrary JSON, recursively built.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("2023-09-13T11:20:37.500200Z")),
        Just(json!("2023-09-13T14:20:37+03:00")),
        Just(json!("9999-99-99T99:99:99Z")),
        Just(json!("")),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("modified_date".to_string()),
                    Just("created_date".to_string()),
                    Just("channel".to_string()),
                    Just("email".to_string()),
                    Just("omnitron_id".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Record-shaped JSON: mostly the right keys with arbitrary values.
fn arb_record() -> impl Strategy<Value = Value> {
    (
        prop_oneof![any::<i64>().prop_map(|n| json!(n)), arb_json()],
        prop_oneof![Just(json!("2024-03-01T09:00:00.000001Z")), arb_json()],
        prop::option::of(arb_json()),
        prop::option::of(arb_json()),
    )
        .prop_map(|(id, md, channel, other)| {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), id);
            m.insert("modified_date".into(), md);
            if let Some(c) = channel {
                m.insert("channel".into(), c);
            }
            if let Some(o) = other {
                m.insert("whatever".into(), o);
            }
            Value::Object(m)
        })
}

fn check_page(body: &[u8]) -> Result<(), TestCaseError> {
    // The one-pass parse gives exactly what parsing element by element gives (the same
    // records, the same quarantined elements and messages, the same envelope errors).
    let parsed = parse_page::<Customers>(body);
    prop_assert_eq!(&parsed, &parse_page_by_element::<Customers>(body));
    if let Ok(p) = parsed {
        prop_assert_eq!(p.len, p.records.len() + p.bad.len());
        if let Some(max) = p.max_id {
            for r in &p.records {
                prop_assert!(r.id <= max);
            }
        }
        for r in &p.records {
            prop_assert!(timefmt::parse_api(r.modified_date()).is_some());
        }
    }
    Ok(())
}

/// A value of one kind a customer field holds, in the forms the API writes (datetimes with
/// an offset or without a fraction, text with escapes and non-ASCII letters), and now and then
/// (1 in 100) any JSON at all, which the field may not accept.
fn arb_field(kind: usize) -> impl Strategy<Value = Value> {
    let good = match kind {
        0 => prop_oneof![
            Just(json!("2024-03-01T09:00:00.000001Z")),
            Just(json!("2024-03-01T12:00:00+03:00")),
            Just(json!("2024-02-29T23:59:59.5Z")),
            Just(json!("2023-02-28T00:00:00-01:30")),
        ]
        .boxed(),
        1 => (0i64..100_000).prop_map(|n| json!(n)).boxed(),
        _ => r#"[a-zA-Z0-9 .@çğıİöşüÇĞÖŞÜ\\"\n\u{2028}]{0,16}"#.prop_map(Value::String).boxed(),
    };
    prop_oneof![
        90 => good,
        9 => Just(Value::Null),
        1 => arb_json(),
    ]
}

/// A page as the API writes it: customers with their documented fields in order, sometimes
/// an extra field; most pages all good, some with an element that must be quarantined.
fn arb_real_page() -> impl Strategy<Value = Value> {
    // Each documented field after `id`, with the kind of value it holds.
    const FIELDS: [(&str, usize); 8] = [
        ("created_date", 0),
        ("modified_date", 0),
        ("omnitron_id", 1),
        ("email", 2),
        ("first_name", 2),
        ("last_name", 2),
        ("phone_number", 2),
        ("channel", 1),
    ];
    let fields: Vec<_> = FIELDS.iter().map(|&(_, kind)| arb_field(kind)).collect();
    let record = (
        prop_oneof![99 => (1i64..1_000_000).prop_map(|n| json!(n)), 1 => arb_json()],
        fields,
        prop::option::of(("[a-z_]{1,8}", arb_json())),
    )
        .prop_map(|(id, values, extra)| {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), id);
            for ((name, _), v) in FIELDS.iter().zip(values) {
                m.insert((*name).into(), v);
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        });
    prop::collection::vec(record, 0..8)
        .prop_map(|results| json!({"count": results.len(), "next": null, "results": results}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Realistic pages, good and bad: the one-pass parse agrees with the element-by-element one.
    #[test]
    fn one_pass_parse_matches_element_by_element(page in arb_real_page()) {
        check_page(&serde_json::to_vec(&page).unwrap())?;
    }

    /// The page parser never panics, whatever the body; a parsed page accounts for every
    /// element, and stored records always have a canonical date.
    #[test]
    fn page_parser_never_panics_on_arbitrary_json(
        count in prop_oneof![any::<u64>().prop_map(|n| json!(n)), arb_json()],
        results in prop::collection::vec(prop_oneof![arb_record(), arb_json()], 0..8),
        whole in arb_json(),
        wrap in any::<bool>(),
    ) {
        let body = if wrap {
            json!({"count": count, "next": null, "previous": null, "results": results})
        } else {
            whole
        };
        check_page(&serde_json::to_vec(&body).unwrap())?;
    }

    #[test]
    fn page_parser_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        check_page(&bytes)?;
        // A real page cut short or with bytes flipped.
        let page = json!({"count": 2, "next": null, "previous": null, "results": [
            {"id": 1, "modified_date": "2024-03-01T09:00:00.000001Z", "first_name": "İpek"},
            {"id": 2, "modified_date": "2024-03-01T12:00:00+03:00", "extra": {"a": [1]}}]});
        let mut good = serde_json::to_vec(&page).unwrap();
        check_page(&good[..cut.index(good.len())])?;
        for (i, b) in flips {
            let at = i.index(good.len());
            good[at] = b;
        }
        check_page(&good)?;
    }
}

/// The generator of `one_pass_parse_matches_element_by_element` makes both kinds of page:
/// all good (parsed in one pass) and with bad elements (parsed element by element).
#[test]
fn realistic_pages_come_good_and_bad() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut good, mut bad) = (0, 0);
    for _ in 0..200 {
        let page = arb_real_page().new_tree(&mut runner).unwrap().current();
        let p = parse_page::<Customers>(&serde_json::to_vec(&page).unwrap()).unwrap();
        good += usize::from(p.bad.is_empty() && !p.records.is_empty());
        bad += usize::from(!p.bad.is_empty());
    }
    assert!(
        good > 50 && bad > 20,
        "{good} good pages, {bad} with bad elements"
    );
}

/// Big rows, so a few pages fill a small database.
fn fat_customers(n: i64) -> Vec<FakeCustomer> {
    (1..=n)
        .map(|i| {
            FakeCustomer::new(i, at(0, i * 3))
                .with_extra("notes", json!("ş".repeat(600 + (i as usize % 7) * 50)))
        })
        .collect()
}

/// Disk full mid-pass: a clear "disk full" error, a checkpoint that claims only stored rows,
/// and a later pass with space completes and matches.
#[tokio::test]
async fn disk_full_mid_pass_is_reported_and_recoverable() {
    let oms = fake(fat_customers(300)).await;
    let h = Harness::new(&oms, 20);
    let wh = SqliteWarehouse::open(&h.db()).unwrap();
    let pages: i64 = wh
        .connection()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let limit: i64 = wh
        .connection()
        .query_row(
            &format!("PRAGMA max_page_count = {}", pages + 60),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(limit, pages + 60);
    let (wh, r) = h.once_on(wh).await;
    drop(wh);
    let err = r.expect_err("the pass hits the page limit");
    let msg = err.to_string();
    eprintln!("disk full: {msg}");
    assert!(matches!(err, SyncError::Warehouse(_)), "{err:?}");
    assert!(msg.contains("disk full"), "{msg}");
    assert!(msg.contains("free disk space"), "{msg}");
    let stored = h.rows().len();
    assert!(
        stored > 0 && stored < 300,
        "the limit was hit mid-pass ({stored} rows stored)"
    );
    let mark = h.mark();
    assert_mark_claims_only_stored_rows(&oms, &h.db(), &mark);
    let ok: String = rusqlite::Connection::open(h.db())
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");

    // Space again (the limit belongs to that connection): the next pass completes.
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
}

/// A warehouse that refuses writes mid-run: a clear read-only error, no panic, nothing claimed
/// that is not stored. (`PRAGMA query_only` makes SQLite refuse writes with SQLITE_READONLY
/// even for root, who bypasses file permissions.)
#[tokio::test]
async fn read_only_connection_gives_a_clear_error() {
    let oms = fake(distinct(50)).await;
    let h = Harness::new(&oms, 10);
    h.once().await.unwrap();
    oms.with_store(|s| s.touch(2, at(40_000, 0)));
    let wh = SqliteWarehouse::open(&h.db()).unwrap();
    wh.connection()
        .execute_batch("PRAGMA query_only = 1")
        .unwrap();
    let (wh, r) = h.once_on(wh).await;
    drop(wh);
    let msg = r.unwrap_err().to_string();
    eprintln!("read-only (query_only): {msg}");
    assert!(msg.contains("read-only"), "{msg}");
    assert!(msg.contains("writable"), "the fix is named: {msg}");
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
}

/// The real binary as an unprivileged user (uid 65534) on a warehouse it may not write: exit
/// code 5 and one clear line naming the problem. Root bypasses file permissions, so only a
/// child process that dropped root can show this honestly; skipped (with a note) when the
/// tests do not run as root.
#[tokio::test]
async fn read_only_files_for_an_unprivileged_process_give_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let euid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    if euid.ok() != Some(0) {
        eprintln!("not root: cannot switch to an unprivileged user; skipped");
        return;
    }
    let oms = fake(distinct(20)).await;
    let h = Harness::new(&oms, 10);
    h.once().await.unwrap();
    let before = h.rows();
    let db = h.db();
    let dir = db.parent().unwrap();
    let config = dir.join("oms-sync.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\n[warehouse]\npath = \"{}\"\n[log]\nlevel = \"warn\"\n",
            oms.base_url(),
            oms.token(),
            h.db().display()
        ),
    )
    .unwrap();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(&config, 0o444);
    // Case 1: directory read-only to the user (the lock file cannot be created).
    // Case 2: directory writable, database file read-only (0444).
    for (dir_mode, file_mode, lock) in [(0o755, 0o644, false), (0o777, 0o444, true)] {
        chmod(dir, dir_mode);
        for f in ["warehouse.db", "warehouse.db-wal", "warehouse.db-shm"] {
            let p = dir.join(f);
            if p.exists() {
                chmod(&p, file_mode);
            }
        }
        let lockfile = dir.join("warehouse.db.lock");
        if lock {
            chmod(&lockfile, 0o666);
        }
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oms-sync"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--once")
            .uid(65534)
            .gid(65534);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "unprivileged, dir {dir_mode:o} file {file_mode:o}: exit {:?}: {}",
            out.status.code(),
            stderr.trim()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        assert!(
            stderr.contains("read-only")
                || stderr.contains("Permission denied")
                || stderr.contains("writable"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("WAL") && !stderr.contains("local file system"),
            "misleading diagnosis: {stderr}"
        );
    }
    chmod(dir, 0o700);
    assert_eq!(h.rows(), before, "nothing changed");
}

/// `api.max_requests_per_second` spaces requests: N requests take at least (N-1)/rate.
#[tokio::test]
async fn rate_limit_spaces_requests() {
    each_backend(rate_limit_spaces_requests_on).await;
}

async fn rate_limit_spaces_requests_on() {
    let oms = fake(distinct(30)).await;
    let mut cfg = api_config(&oms, 3);
    cfg.max_requests_per_second = Some(20.0);
    let h = Harness {
        client: ApiClient::new(&cfg).unwrap(),
        ..Harness::new(&oms, 3)
    };
    let r = h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let reqs = oms.requests();
    let n = reqs.len();
    assert!(n >= 10, "{n} requests");
    assert_eq!(r.requests as usize, n);
    let span = reqs[n - 1].received_at - reqs[0].received_at;
    let interval = Duration::from_millis(50);
    eprintln!(
        "rate limit: {n} requests in {span:?} (at 20/s: {:?})",
        interval * (n as u32 - 1)
    );
    // The client starts request k+m at least m intervals after request k; the server sees it
    // so, less however late request k arrived. One interval of slack for that (a busy machine
    // delays single requests); without the limit all of them arrive within a few ms.
    for i in 0..n {
        for j in i + 1..n {
            let seen = reqs[j].received_at - reqs[i].received_at;
            let least = interval * (j - i - 1) as u32;
            assert!(
                seen >= least,
                "requests {i} and {j}: {seen:?} apart, at least {least:?}"
            );
        }
    }
}

/// The client asks for gzip and reads a gzip-coded page; the data matches.
#[tokio::test]
async fn gzip_pages_are_asked_for_and_decoded() {
    each_backend(gzip_pages_are_asked_for_and_decoded_on).await;
}

async fn gzip_pages_are_asked_for_and_decoded_on() {
    let mut customers = distinct(80);
    customers[3].first_name = Some("Gökçe Ilıcaoğlu".into());
    let oms = fake(customers).await;
    oms.knobs(|k| k.gzip = true);
    let h = Harness::new(&oms, 25);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let reqs = oms.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert!(
            r.accept_encoding
                .as_deref()
                .is_some_and(|a| a.contains("gzip")),
            "Accept-Encoding: {:?}",
            r.accept_encoding
        );
        assert!(r.gzipped, "served uncoded: {r:?}");
    }
    // A cut gzip-coded body is retried like any cut body.
    oms.with_store(|s| s.touch(9, at(20_000, 0)));
    oms.clear_requests();
    oms.push_fault(Fault::TruncatedBody);
    h.once().await.unwrap();
    assert_in_step(&oms, &h.rows(), true);
    let reqs = oms.requests();
    assert!(reqs[0].gzipped && reqs[0].fault.is_some());
    assert_eq!(reqs[1].raw_query, reqs[0].raw_query);
    // With the knob off nothing is coded (the flag is not constant).
    oms.knobs(|k| k.gzip = false);
    oms.clear_requests();
    h.once().await.unwrap();
    assert!(oms.requests().iter().all(|r| !r.gzipped));
}

/// A server that lets N requests a second through (the fake's DRF `SimpleRateThrottle`: 429
/// for the rest, with and without `Retry-After`) against an 8-range backfill whose retries
/// come back within milliseconds: the shared limiter learns the server's limit from its 429s
/// and spaces every range under it, so the 429s stay few, no request's retry budget runs out,
/// and the backfill finishes in step. With `change`, the server halves its limit a second
/// into the backfill and restores it a second and a half later: the backfill still completes
/// with every row, and the 429s stay bounded. (How fast it settles, and how close to the
/// server's rate it runs, is measured with a controlled clock in the limiter's unit tests and
/// by `cargo bench --bench remote -- --throttle 20,40`; nothing here depends on the machine's
/// speed.)
async fn throttled_backfill(change: bool) {
    const N: u32 = 40;
    for retry_after in [true, false] {
        let oms = std::sync::Arc::new(fake(distinct(2_000)).await);
        oms.knobs(|k| {
            k.max_limit = 10;
            k.latency = Duration::from_millis(20);
            k.throttle_per_second = Some(N);
            k.throttle_retry_after = retry_after;
            k.record_requests = false;
        });
        let mut h = Harness::new(&oms, 10);
        h.opts.concurrency = 8;
        let changer = change.then(|| {
            let oms = oms.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                oms.knobs(|k| k.throttle_per_second = Some(N / 2));
                tokio::time::sleep(Duration::from_millis(1500)).await;
                oms.knobs(|k| k.throttle_per_second = Some(N));
            })
        });
        let started = Instant::now();
        let r = h.backfill().await;
        let wall = started.elapsed().as_secs_f64();
        if let Some(c) = changer {
            c.abort();
        }
        let (served, throttled) = (oms.served_count(), oms.throttled_count());
        eprintln!(
            "throttle {N}/s, change {change}, Retry-After {retry_after}: {served} served, \
             {throttled} refused in {wall:.1} s = {:.1} requests/s",
            served as f64 / wall
        );
        let r = r.unwrap_or_else(|e| panic!("Retry-After {retry_after}: the backfill failed: {e}"));
        assert_eq!(r.stats.inserted, 2_000);
        assert_in_step(&oms, &h.rows(), true);
        // Unthrottled, 8 ranges at 20 ms would send ~400 requests a second, ten times N: one
        // in ten refused at most (the limiter's own tests see under one in twenty).
        let bound = if change { served / 5 } else { served / 10 };
        assert!(
            throttled <= bound,
            "change {change}, Retry-After {retry_after}: {throttled} refused for {served} served"
        );
    }
}

#[tokio::test]
async fn throttled_backfill_learns_the_servers_limit_and_completes_with_few_429s() {
    throttled_backfill(false).await;
}

#[tokio::test]
async fn throttled_backfill_completes_when_the_server_halves_its_limit_and_restores_it() {
    throttled_backfill(true).await;
}

/// PostgreSQL: the server drops the writer's session in the middle of a backfill, as a
/// restart or a failover does. The page being written rolls back with its cursor, the writer
/// writes it again on a new session, and the same backfill ends in step, with no live
/// customer marked deleted. (tests/failover.rs restarts a real server mid-backfill.)
#[tokio::test]
async fn postgres_session_dropped_mid_backfill_and_the_backfill_reconnects_and_completes() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let oms = fake(distinct(600)).await;
    let mut h = Harness::on(TestWarehouse::of(Backend::Postgres), &oms, 20);
    h.opts.concurrency = 3;
    let wh = h.open();
    let pid = match &wh {
        AnyWarehouse::Postgres(p) => p.backend_pid().expect("connected"),
        AnyWarehouse::Sqlite(_) => unreachable!("a PostgreSQL harness"),
    };
    let url = std::env::var(PG_ENV).unwrap();
    let at_request = oms.total_requests() + 12;
    oms.set_before_request(Box::new(move |seen, _| {
        if seen == at_request {
            // The blocking client needs a thread of its own (not one running async tasks).
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                c.execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .unwrap();
            })
            .join()
            .unwrap();
        }
    }));
    let (wh, r) = h.backfill_on(wh).await;
    oms.clear_before_request();
    r.expect("the writer reconnects and the backfill completes");
    let new_pid = match &wh {
        AnyWarehouse::Postgres(p) => p.backend_pid().expect("connected"),
        AnyWarehouse::Sqlite(_) => unreachable!("a PostgreSQL harness"),
    };
    assert_ne!(new_pid, pid, "the session was dropped and a new one opened");
    let rows = h.rows();
    assert!(
        rows.values().all(|r| !r.deleted),
        "nothing may be marked deleted"
    );
    assert_in_step(&oms, &rows, true);
}
