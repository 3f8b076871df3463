//! A second resource that exists only in the tests proves the seam: `widgets` (an integer, a
//! text, a nullable timestamp and a boolean) costs one declaration (below), one migration per
//! backend (tests/widgets/*.sql) and one fake description (`WIDGETS`), and the guarantees hold
//! for it on both backends: ties at page boundaries, rows moving while a pass pages, a pass
//! stopped mid-way and resumed, backfill deletions, quarantine of a bad record.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use fake_oms::{FakeOms, Field, FieldValue, Record, Resource, Store};
use oms_sync::api::ApiClient;
use oms_sync::sync::{self, NoProgress, PassReport, SyncError};
use oms_sync::timefmt::canonical;
use oms_sync::warehouse::shape::TableShape;
use oms_sync::warehouse::{AnyWarehouse, Mark};
use tokio_util::sync::CancellationToken;

mod widgets {
    oms_sync::declare_resource! {
        /// Widgets: a resource of the tests only.
        resource Widgets {
            record: Widget,
            fields: WidgetFields,
            name: "widgets",
            path: "/api/v1/test/widgets/",
            table: "widgets",
            cursor: modified_date,
            filters: { modified_date: true, id_gt: true, sort: true },
            indexes: [widgets_modified_date(modified_date), widgets_label(label)],
            columns: {
                id: BigInt,
                modified_date: Timestamp,
                size: BigInt,
                label: Option<Text>,
                checked_at: Option<Timestamp>,
                active: Bool,
            }
        }
    }
}
use widgets::Widgets;

/// The fake's own description of the endpoint (independent of the declaration above).
static WIDGETS: Resource = Resource::new(
    "/api/v1/test/widgets/",
    &[
        Field::integer("id"),
        Field::timestamp("modified_date"),
        Field::integer("size"),
        Field::text("label").nullable(),
        Field::timestamp("checked_at").nullable(),
        Field::boolean("active"),
    ],
);

/// A widget as the warehouse must hold it: (modified_date, size, label, checked_at, active,
/// deleted).
type Row = (String, i64, Option<String>, Option<String>, bool, bool);

fn widget(id: i64, ms: i64) -> Record {
    let mut w = Record::new(&WIDGETS, id, at(ms, id))
        .with("size", id * 3)
        .with("active", id % 2 == 0);
    if id % 3 != 0 {
        w = w.with("label", format!("gear {id}"));
    }
    if id % 4 == 0 {
        w = w.with("checked_at", at(-1000, id));
    }
    w
}

fn expected(w: &Record) -> Row {
    let text = |v| match v {
        Some(FieldValue::Text(s)) => Some(s),
        _ => None,
    };
    let time = |v| match v {
        Some(FieldValue::Timestamp(t)) => Some(canonical(&t)),
        _ => None,
    };
    (
        canonical(&w.modified_date),
        match w.get("size") {
            Some(FieldValue::Integer(n)) => n,
            _ => -1,
        },
        text(w.get("label")),
        time(w.get("checked_at")),
        matches!(w.get("active"), Some(FieldValue::Boolean(true))),
        false,
    )
}

/// The test's warehouse with the widgets table migrated in.
fn warehouse() -> TestWarehouse {
    let tw = TestWarehouse::fresh();
    drop(tw.open());
    match &tw {
        TestWarehouse::Sqlite { .. } => {
            let c = rusqlite::Connection::open(tw.sqlite_path()).unwrap();
            c.execute_batch(include_str!("widgets/sqlite.sql")).unwrap();
        }
        TestWarehouse::Postgres(pg) => pg.with_client(|c| {
            c.batch_execute(include_str!("widgets/postgres.sql"))
                .unwrap()
        }),
    }
    tw
}

/// The widgets table, comparable with [`expected`].
fn stored(tw: &TestWarehouse) -> BTreeMap<i64, Row> {
    let sql = "SELECT id, modified_date, size, label, checked_at, active, deleted_at IS NOT NULL \
               FROM widgets ORDER BY id";
    match tw {
        TestWarehouse::Sqlite { .. } => {
            let c = rusqlite::Connection::open(tw.sqlite_path()).unwrap();
            let mut stmt = c.prepare(sql).unwrap();
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    (
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ),
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        }
        TestWarehouse::Postgres(pg) => pg.with_client(|c| {
            let canon = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| canonical(&t));
            c.query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        (
                            canon(r.get(1)).unwrap(),
                            r.get(2),
                            r.get(3),
                            canon(r.get(4)),
                            r.get(5),
                            r.get(6),
                        ),
                    )
                })
                .collect()
        }),
    }
}

fn assert_in_step(oms: &FakeOms, tw: &TestWarehouse, exact: bool) {
    let want: BTreeMap<i64, Row> = oms
        .with_resource::<Record, _>(WIDGETS.path, |s| {
            s.all().map(|w| (w.id, expected(w))).collect()
        })
        .expect("widgets are served");
    let got = stored(tw);
    let live: BTreeMap<i64, Row> = got
        .iter()
        .filter(|(_, r)| !r.5)
        .map(|(id, r)| (*id, r.clone()))
        .collect();
    if exact {
        assert_eq!(live, want, "{}: live widgets equal the API", tw.name());
    } else {
        for (id, w) in &want {
            assert_eq!(got.get(id), Some(w), "{}: widget {id}", tw.name());
        }
    }
}

struct Widgety {
    tw: TestWarehouse,
    client: ApiClient,
    cancel: CancellationToken,
    page: u32,
}

impl Widgety {
    async fn start(records: Vec<Record>, page: u32) -> (FakeOms, Widgety) {
        let oms = fake(vec![]).await;
        oms.add_resource(Store::from_records(&WIDGETS, records));
        let client = ApiClient::new(&api_config(&oms, page)).unwrap();
        let w = Widgety {
            tw: warehouse(),
            client,
            cancel: CancellationToken::new(),
            page,
        };
        (oms, w)
    }

    async fn pass(&self, backfill: bool) -> Result<PassReport, SyncError> {
        let wh: AnyWarehouse = self.tw.open();
        let opts = options(self.page);
        let progress = Arc::new(NoProgress);
        let (_, r) = if backfill {
            sync::backfill_pass::<Widgets, _>(&self.client, wh, &opts, &self.cancel, progress).await
        } else {
            sync::incremental_pass::<Widgets, _>(&self.client, wh, &opts, &self.cancel, progress)
                .await
        };
        r
    }

    fn mark(&self) -> Mark {
        use oms_sync::warehouse::Warehouse;
        self.tw.open().mark(Widgets::SPEC).unwrap()
    }
}

#[test]
fn the_migrations_create_what_the_declaration_says() {
    for backend in backends() {
        let tw = match backend {
            Backend::Sqlite => {
                let tw = TestWarehouse::sqlite();
                drop(tw.open());
                let c = rusqlite::Connection::open(tw.sqlite_path()).unwrap();
                c.execute_batch(include_str!("widgets/sqlite.sql")).unwrap();
                let got = oms_sync::warehouse::sqlite::schema::read_shape(&c, "widgets").unwrap();
                let want = TableShape::expected(
                    Widgets::SPEC,
                    oms_sync::warehouse::sqlite::schema::declared_type,
                );
                assert_eq!(got, want);
                continue;
            }
            Backend::Postgres => TestWarehouse::of(Backend::Postgres),
        };
        drop(tw.open());
        let TestWarehouse::Postgres(pg) = &tw else {
            unreachable!()
        };
        pg.with_client(|c| {
            c.batch_execute(include_str!("widgets/postgres.sql"))
                .unwrap();
            let got = oms_sync::warehouse::postgres::schema::read_shape(c, "widgets").unwrap();
            let want = TableShape::expected(
                Widgets::SPEC,
                oms_sync::warehouse::postgres::schema::declared_type,
            );
            assert_eq!(got, want);
        });
    }
}

/// Ties at page boundaries: a bulk update of 120 widgets at one instant, pages of 25.
#[tokio::test]
async fn ties_larger_than_a_page_are_all_stored() {
    each_backend(ties_on).await;
}

async fn ties_on() {
    let mut records: Vec<Record> = (1..=200).map(|i| widget(i, 0)).collect();
    for w in records.iter_mut().filter(|w| w.id % 5 < 3) {
        w.modified_date = at(5_000, 0);
    }
    let (oms, h) = Widgety::start(records, 25).await;
    let r = h.pass(false).await.unwrap();
    assert_eq!(r.stats.inserted, 200);
    assert_in_step(&oms, &h.tw, true);
    // A second bulk update at one newer instant, then one more pass.
    oms.with_resource::<Record, _>(WIDGETS.path, |s| {
        for id in (1..=200).filter(|i| i % 3 == 0) {
            s.update(id, |w| {
                w.modified_date = at(9_000, 0);
                w.set("size", 7).unwrap();
            });
        }
    })
    .expect("widgets are served");
    let r = h.pass(false).await.unwrap();
    assert_eq!(r.stats.updated, 66, "{:?}", r.stats);
    assert_in_step(&oms, &h.tw, true);
}

/// Rows move while a pass pages (each request updates a few already-read widgets to a newer
/// instant): none is skipped; the next pass has them all.
#[tokio::test]
async fn rows_that_move_while_paging_are_not_lost() {
    each_backend(drift_on).await;
}

async fn drift_on() {
    let (oms, h) = Widgety::start((1..=300).map(|i| widget(i, i)).collect(), 20).await;
    let mut n = 0i64;
    oms.set_before_request_on::<Record>(
        WIDGETS.path,
        Box::new(move |_, s: &mut Store<Record>| {
            n += 1;
            for k in 0..3 {
                let id = (n * 7 + k) % 300 + 1;
                s.update(id, |w| {
                    w.modified_date = at(10_000 + n, k);
                    w.set("label", format!("moved {n}")).unwrap();
                });
            }
        }),
    );
    h.pass(false).await.unwrap();
    oms.clear_before_request();
    h.pass(false).await.unwrap();
    assert_in_step(&oms, &h.tw, true);
}

/// A pass stopped mid-way claims only what it stored, and the next pass completes it.
#[tokio::test]
async fn a_stopped_pass_claims_only_what_it_stored() {
    each_backend(stop_on).await;
}

async fn stop_on() {
    let (oms, h) = Widgety::start((1..=400).map(|i| widget(i, i % 50)).collect(), 25).await;
    let cancel = h.cancel.clone();
    let mut seen = 0;
    oms.set_before_request_on::<Record>(
        WIDGETS.path,
        Box::new(move |_, _: &mut Store<Record>| {
            seen += 1;
            if seen == 6 {
                cancel.cancel();
            }
        }),
    );
    assert!(matches!(h.pass(false).await, Err(SyncError::Cancelled)));
    oms.clear_before_request();
    let mark = h.mark();
    let got = stored(&h.tw);
    oms.with_resource::<Record, _>(WIDGETS.path, |s| {
        for w in s.all() {
            if mark.covers(&canonical(&w.modified_date), w.id) {
                assert_eq!(
                    got.get(&w.id),
                    Some(&expected(w)),
                    "claimed {} not stored",
                    w.id
                );
            }
        }
    })
    .expect("widgets are served");
    assert!(
        got.len() < 400,
        "stopped before the end: {} stored",
        got.len()
    );
    let h = Widgety {
        cancel: CancellationToken::new(),
        ..h
    };
    h.pass(false).await.unwrap();
    assert_in_step(&oms, &h.tw, true);
}

/// A backfill marks deleted the widgets the API no longer lists, and only those.
#[tokio::test]
async fn a_backfill_marks_the_removed_widgets_deleted() {
    each_backend(deletions_on).await;
}

async fn deletions_on() {
    let (oms, h) = Widgety::start((1..=150).map(|i| widget(i, i)).collect(), 20).await;
    h.pass(true).await.unwrap();
    assert_in_step(&oms, &h.tw, true);
    let gone: Vec<i64> = (1..=150).filter(|i| i % 13 == 0).collect();
    oms.with_resource::<Record, _>(WIDGETS.path, |s| {
        for id in &gone {
            s.remove(*id);
        }
    })
    .expect("widgets are served");
    let r = h.pass(true).await.unwrap();
    assert_eq!(r.stats.deleted, gone.len() as u64);
    assert_in_step(&oms, &h.tw, true);
    let deleted: Vec<i64> = stored(&h.tw)
        .into_iter()
        .filter(|(_, r)| r.5)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(deleted, gone);
}

/// A widget the API sends with a wrong type is quarantined (the rest stored); once the API
/// sends it right, it is stored and leaves the quarantine.
#[tokio::test]
async fn a_bad_widget_is_quarantined_then_released() {
    each_backend(quarantine_on).await;
}

async fn quarantine_on() {
    let mut records: Vec<Record> = (1..=60).map(|i| widget(i, i)).collect();
    let bad = records[29].clone();
    records[29] = bad.clone().with_raw(serde_json::json!({
        "id": 30, "modified_date": canonical(&bad.modified_date), "size": "large",
        "label": null, "checked_at": null, "active": true
    }));
    let (oms, h) = Widgety::start(records, 20).await;
    let r = h.pass(false).await.unwrap();
    assert_eq!(
        (r.stats.inserted, r.stats.quarantined),
        (59, 1),
        "{:?}",
        r.stats
    );
    let quarantined =
        h.tw.query_i64("SELECT count(*) FROM quarantine WHERE stream = 'widgets'");
    assert_eq!(quarantined, 1);
    oms.with_resource::<Record, _>(WIDGETS.path, |s| {
        s.upsert(widget(30, 100_000));
    })
    .expect("widgets are served");
    h.pass(false).await.unwrap();
    assert_in_step(&oms, &h.tw, true);
    assert_eq!(
        h.tw.query_i64("SELECT count(*) FROM quarantine WHERE stream = 'widgets'"),
        0
    );
}
