//! The guarantee scenarios for any resource, on every backend: ties larger than a page, rows
//! moving while a pass pages, a stopped pass that claims only what it stored, backfill
//! deletions, quarantine then release. A [`Suite`] names the resource (its declaration `R`),
//! the fake's own description of its endpoint and how to make, edit and spoil a record; the
//! rows are compared column by column from the declaration (the warehouse) against the fake's
//! values (the server), whatever their types.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use super::common::*;
use fake_oms::{FakeOms, FieldValue, Record, Store};
use oms_sync::api::ApiClient;
use oms_sync::resource::{ColumnType, Resource};
use oms_sync::sync::{self, NoProgress, PassReport, SyncError};
use oms_sync::timefmt::canonical;
use oms_sync::warehouse::{AnyWarehouse, Mark, Warehouse};
use tokio_util::sync::CancellationToken;

/// One value, the same whatever the backend stores (instants as canonical text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

/// A row: its declared columns but `id` and `extra`, then whether it is marked deleted.
pub type Row = (Vec<V>, bool);

/// What the scenarios need of one resource.
pub struct Suite<R> {
    /// The fake's own description of the endpoint.
    pub fake: &'static fake_oms::Resource,
    /// A record with this id at `at(ms, id)`.
    pub make: fn(i64, i64) -> Record,
    /// Changes a field other than the keys (the `n`th change).
    pub edit: fn(&mut Record, i64),
    /// A record as the API might send it with one field of a wrong type.
    pub spoil: fn(&Record) -> serde_json::Value,
    /// SQL that creates the table on each backend (SQLite, PostgreSQL) when the shipped
    /// migrations do not.
    pub setup: Option<(&'static str, &'static str)>,
    pub _r: PhantomData<R>,
}

/// The declared columns the rows compare (not `id`, `extra`).
fn columns<R: Resource>() -> Vec<(&'static str, ColumnType)> {
    R::SPEC
        .columns
        .iter()
        .filter(|c| c.name != "id" && c.name != "extra")
        .map(|c| (c.name, c.ty))
        .collect()
}

/// A record as the warehouse must hold it.
pub fn expected<R: Resource>(r: &Record) -> Row {
    let values = columns::<R>()
        .into_iter()
        .map(|(name, _)| match name {
            "modified_date" => V::Text(canonical(&r.modified_date)),
            _ => match r.get(name) {
                Some(FieldValue::Integer(n)) => V::Int(n),
                Some(FieldValue::Text(s)) => V::Text(s),
                Some(FieldValue::Boolean(b)) => V::Bool(b),
                Some(FieldValue::Timestamp(t)) => V::Text(canonical(&t)),
                Some(FieldValue::Null) | None => V::Null,
            },
        })
        .collect();
    (values, false)
}

/// The resource's table, comparable with [`expected`].
pub fn stored<R: Resource>(tw: &TestWarehouse) -> BTreeMap<i64, Row> {
    let cols = columns::<R>();
    let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let sql = format!(
        "SELECT id, {}, deleted_at IS NOT NULL FROM {} ORDER BY id",
        names.join(", "),
        R::TABLE
    );
    match tw {
        TestWarehouse::Sqlite { .. } => {
            use rusqlite::types::ValueRef;
            let c = rusqlite::Connection::open(tw.sqlite_path()).unwrap();
            let mut stmt = c.prepare(&sql).unwrap();
            stmt.query_map([], |r| {
                let mut values = Vec::new();
                for (i, (_, ty)) in cols.iter().enumerate() {
                    values.push(match (r.get_ref(i + 1)?, ty) {
                        (ValueRef::Null, _) => V::Null,
                        (ValueRef::Integer(n), ColumnType::Bool) => V::Bool(n != 0),
                        (ValueRef::Integer(n), _) => V::Int(n),
                        (ValueRef::Text(t), _) => V::Text(String::from_utf8_lossy(t).into()),
                        (other, _) => panic!("{:?} in {}", other, R::TABLE),
                    });
                }
                Ok((r.get(0)?, (values, r.get(cols.len() + 1)?)))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        }
        TestWarehouse::Postgres(pg) => pg.with_client(|c| {
            c.query(&sql, &[])
                .unwrap()
                .iter()
                .map(|r| {
                    let values = cols
                        .iter()
                        .enumerate()
                        .map(|(i, (_, ty))| {
                            let i = i + 1;
                            let v = match ty {
                                ColumnType::BigInt => r.get::<_, Option<i64>>(i).map(V::Int),
                                ColumnType::Text | ColumnType::Json => {
                                    r.get::<_, Option<String>>(i).map(V::Text)
                                }
                                ColumnType::Bool => r.get::<_, Option<bool>>(i).map(V::Bool),
                                ColumnType::Timestamp => r
                                    .get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
                                    .map(|t| V::Text(canonical(&t))),
                            };
                            v.unwrap_or(V::Null)
                        })
                        .collect();
                    (r.get(0), (values, r.get(cols.len() + 1)))
                })
                .collect()
        }),
    }
}

/// A suite's run on one backend: the fake, the warehouse, the client.
pub struct Run<'s, R> {
    suite: &'s Suite<R>,
    pub oms: FakeOms,
    pub tw: TestWarehouse,
    client: ApiClient,
    cancel: CancellationToken,
    page: u32,
}

impl<R: Resource> Suite<R> {
    async fn start(&self, records: Vec<Record>, page: u32) -> Run<'_, R> {
        let oms = fake(vec![]).await;
        oms.add_resource(Store::from_records(self.fake, records));
        let client = ApiClient::new(&api_config(&oms, page)).unwrap();
        let tw = TestWarehouse::fresh();
        drop(tw.open());
        if let Some((sqlite, postgres)) = self.setup {
            match &tw {
                TestWarehouse::Sqlite { .. } => {
                    let c = rusqlite::Connection::open(tw.sqlite_path()).unwrap();
                    c.execute_batch(sqlite).unwrap();
                }
                TestWarehouse::Postgres(pg) => {
                    pg.with_client(|c| c.batch_execute(postgres).unwrap())
                }
            }
        }
        Run {
            suite: self,
            oms,
            tw,
            client,
            cancel: CancellationToken::new(),
            page,
        }
    }

    fn with<T>(&self, oms: &FakeOms, f: impl FnOnce(&mut Store<Record>) -> T) -> T {
        oms.with_resource::<Record, _>(self.fake.path, f)
            .expect("the resource is served")
    }

    /// Ties at page boundaries: a bulk update of 120 records at one instant, pages of 25;
    /// then a second bulk update at one newer instant.
    pub async fn ties(&self) {
        let mut records: Vec<Record> = (1..=200).map(|i| (self.make)(i, 0)).collect();
        for w in records.iter_mut().filter(|w| w.id % 5 < 3) {
            w.modified_date = at(5_000, 0);
        }
        let h = self.start(records, 25).await;
        let r = h.pass(false).await.unwrap();
        assert_eq!(r.stats.inserted, 200);
        h.assert_in_step(true);
        self.with(&h.oms, |s| {
            for id in (1..=200).filter(|i| i % 3 == 0) {
                s.update(id, |w| {
                    w.modified_date = at(9_000, 0);
                    (self.edit)(w, 7);
                });
            }
        });
        let r = h.pass(false).await.unwrap();
        assert_eq!(r.stats.updated, 66, "{:?}", r.stats);
        h.assert_in_step(true);
    }

    /// Rows move while a pass pages (each request updates a few already-read records to a
    /// newer instant): none is skipped; the next pass has them all.
    pub async fn drift(&self) {
        let h = self
            .start((1..=300).map(|i| (self.make)(i, i)).collect(), 20)
            .await;
        let mut n = 0i64;
        let edit = self.edit;
        h.oms.set_before_request_on::<Record>(
            self.fake.path,
            Box::new(move |_, s: &mut Store<Record>| {
                n += 1;
                for k in 0..3 {
                    let id = (n * 7 + k) % 300 + 1;
                    s.update(id, |w| {
                        w.modified_date = at(10_000 + n, k);
                        edit(w, n);
                    });
                }
            }),
        );
        h.pass(false).await.unwrap();
        h.oms.clear_before_request();
        h.pass(false).await.unwrap();
        h.assert_in_step(true);
    }

    /// A pass stopped mid-way claims only what it stored, and the next pass completes it.
    pub async fn stop(&self) {
        let h = self
            .start((1..=400).map(|i| (self.make)(i, i % 50)).collect(), 25)
            .await;
        let cancel = h.cancel.clone();
        let mut seen = 0;
        h.oms.set_before_request_on::<Record>(
            self.fake.path,
            Box::new(move |_, _: &mut Store<Record>| {
                seen += 1;
                if seen == 6 {
                    cancel.cancel();
                }
            }),
        );
        assert!(matches!(h.pass(false).await, Err(SyncError::Cancelled)));
        h.oms.clear_before_request();
        let mark: Mark = h.tw.open().mark(R::SPEC).unwrap();
        let got = stored::<R>(&h.tw);
        self.with(&h.oms, |s| {
            for w in s.all() {
                if mark.covers(&canonical(&w.modified_date), w.id) {
                    assert_eq!(got.get(&w.id), Some(&expected::<R>(w)), "claimed {}", w.id);
                }
            }
        });
        assert!(got.len() < 400, "stopped before the end: {}", got.len());
        let h = Run {
            cancel: CancellationToken::new(),
            ..h
        };
        h.pass(false).await.unwrap();
        h.assert_in_step(true);
    }

    /// A backfill marks deleted the records the API no longer lists, and only those.
    pub async fn deletions(&self) {
        let h = self
            .start((1..=150).map(|i| (self.make)(i, i)).collect(), 20)
            .await;
        h.pass(true).await.unwrap();
        h.assert_in_step(true);
        let gone: Vec<i64> = (1..=150).filter(|i| i % 13 == 0).collect();
        self.with(&h.oms, |s| {
            for id in &gone {
                s.remove(*id);
            }
        });
        let r = h.pass(true).await.unwrap();
        assert_eq!(r.stats.deleted, gone.len() as u64);
        h.assert_in_step(true);
        let deleted: Vec<i64> = stored::<R>(&h.tw)
            .into_iter()
            .filter(|(_, r)| r.1)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(deleted, gone);
    }

    /// A record the API sends with a wrong type is quarantined (the rest stored); once the API
    /// sends it right, it is stored and leaves the quarantine.
    pub async fn quarantine(&self) {
        let mut records: Vec<Record> = (1..=60).map(|i| (self.make)(i, i)).collect();
        let bad = records[29].clone();
        records[29] = bad.clone().with_raw((self.spoil)(&bad));
        let h = self.start(records, 20).await;
        let r = h.pass(false).await.unwrap();
        assert_eq!(
            (r.stats.inserted, r.stats.quarantined),
            (59, 1),
            "{:?}",
            r.stats
        );
        let count = format!(
            "SELECT count(*) FROM quarantine WHERE stream = '{}'",
            R::NAME
        );
        assert_eq!(h.tw.query_i64(&count), 1);
        self.with(&h.oms, |s| {
            s.upsert((self.make)(30, 100_000));
        });
        h.pass(false).await.unwrap();
        h.assert_in_step(true);
        assert_eq!(h.tw.query_i64(&count), 0);
    }
}

impl<R: Resource> Run<'_, R> {
    pub async fn pass(&self, backfill: bool) -> Result<PassReport, SyncError> {
        let wh: AnyWarehouse = self.tw.open();
        let opts = options(self.page);
        let progress = Arc::new(NoProgress);
        let (_, r) = if backfill {
            sync::backfill_pass::<R, _>(&self.client, wh, &opts, &self.cancel, progress).await
        } else {
            sync::incremental_pass::<R, _>(&self.client, wh, &opts, &self.cancel, progress).await
        };
        r
    }

    /// The live rows equal the server's (`exact`), or at least every served one is stored.
    pub fn assert_in_step(&self, exact: bool) {
        let want: BTreeMap<i64, Row> = self.suite.with(&self.oms, |s| {
            s.all().map(|w| (w.id, expected::<R>(w))).collect()
        });
        let got = stored::<R>(&self.tw);
        if exact {
            let live: BTreeMap<i64, Row> = got.into_iter().filter(|(_, r)| !r.1).collect();
            assert_eq!(
                live,
                want,
                "{}: live {} equal the API",
                self.tw.name(),
                R::TABLE
            );
        } else {
            for (id, w) in &want {
                assert_eq!(
                    got.get(id),
                    Some(w),
                    "{}: {} {id}",
                    self.tw.name(),
                    R::TABLE
                );
            }
        }
    }
}
