//! History mode in the tests: `customers_history` read back, and an oracle to hold it against:
//! triggers on `customers` that log every version a statement stores, in the same transaction
//! (so a rolled-back or killed transaction logs nothing), from which the history the rules
//! call for is rebuilt.

use std::collections::BTreeMap;

use super::{Row, TestWarehouse};

/// One row of `customers_history`, instants as canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub id: i64,
    pub valid_from: String,
    pub valid_to: Option<String>,
    /// The values (`deleted` is always false).
    pub row: Row,
}

const COLS: &str = "created_date, modified_date, omnitron_id, email, first_name, last_name, \
                    phone_number, erp_code, channel, extra";
const CANON: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";

/// An instant column as canonical text (a `…_text` column is already text).
fn pg_canon(col: &str) -> String {
    if col.ends_with("_text") {
        return col.to_string();
    }
    format!("to_char({col} AT TIME ZONE 'UTC', {CANON})")
}

/// `SELECT` of `id, a, b, <the value columns>` from `from` on either backend, instants as
/// canonical text; `a` and `b` are instants.
fn query(
    wh: &TestWarehouse,
    a: &str,
    b: &str,
    from: &str,
) -> Vec<(i64, String, Option<String>, Row)> {
    let row = |id, a, b, r: [Option<String>; 7], ints: [Option<i64>; 2], md: String| {
        (
            id,
            a,
            b,
            Row {
                created_date: r[0].clone(),
                modified_date: md,
                omnitron_id: ints[0],
                email: r[1].clone(),
                first_name: r[2].clone(),
                last_name: r[3].clone(),
                phone_number: r[4].clone(),
                erp_code: r[5].clone(),
                channel: ints[1],
                extra: r[6].as_deref().map(|e| serde_json::from_str(e).unwrap()),
                deleted: false,
            },
        )
    };
    match wh {
        TestWarehouse::Sqlite { .. } => {
            let c = rusqlite::Connection::open(wh.sqlite_path()).unwrap();
            let mut s = c
                .prepare(&format!("SELECT id, {a}, {b}, {COLS} FROM {from}"))
                .unwrap();
            s.query_map([], |r| {
                Ok(row(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    [
                        r.get(3)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(12)?,
                    ],
                    [r.get(5)?, r.get(11)?],
                    r.get(4)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        }
        TestWarehouse::Postgres(pg) => {
            let sql = format!(
                "SELECT id, {}, {}, {}, {}, omnitron_id, email, first_name, last_name,
                        phone_number, erp_code, channel, extra::text FROM {from}",
                pg_canon(a),
                pg_canon(b),
                pg_canon("created_date"),
                pg_canon("modified_date"),
            );
            pg.with_client(|c| c.query(&sql, &[]).unwrap())
                .iter()
                .map(|r| {
                    row(
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        [
                            r.get(3),
                            r.get(6),
                            r.get(7),
                            r.get(8),
                            r.get(9),
                            r.get(10),
                            r.get(12),
                        ],
                        [r.get(5), r.get(11)],
                        r.get(4),
                    )
                })
                .collect()
        }
    }
}

/// `customers_history`, ordered by id and `valid_from`.
pub fn versions(wh: &TestWarehouse) -> Vec<Version> {
    let mut v: Vec<Version> = query(wh, "valid_from", "valid_to", "customers_history")
        .into_iter()
        .map(|(id, valid_from, valid_to, row)| Version {
            id,
            valid_from,
            valid_to,
            row,
        })
        .collect();
    v.sort_by(|a, b| (a.id, &a.valid_from).cmp(&(b.id, &b.valid_from)));
    v
}

/// Each customer's `deleted_at` (canonical text), None while live.
pub fn deleted_at(wh: &TestWarehouse) -> BTreeMap<i64, Option<String>> {
    query(wh, "modified_date", "deleted_at", "customers")
        .into_iter()
        .map(|(id, _, d, _)| (id, d))
        .collect()
}

/// Installs the oracle: every row a statement writes into `customers` is logged, in order.
pub fn install_version_log(wh: &TestWarehouse) {
    match wh {
        TestWarehouse::Sqlite { .. } => {
            let new: Vec<String> = COLS.split(", ").map(|c| format!("NEW.{c}")).collect();
            let insert = format!(
                "INSERT INTO test_version_log (id, deleted_at, {COLS}) VALUES (NEW.id, NEW.deleted_at, {});",
                new.join(", ")
            );
            rusqlite::Connection::open(wh.sqlite_path())
                .unwrap()
                .execute_batch(&format!(
                    "CREATE TABLE test_version_log (seq INTEGER PRIMARY KEY, id INTEGER, deleted_at TEXT,
                         created_date TEXT, modified_date TEXT, omnitron_id INTEGER, email TEXT,
                         first_name TEXT, last_name TEXT, phone_number TEXT, erp_code TEXT,
                         channel INTEGER, extra TEXT);
                     CREATE TRIGGER test_log_insert AFTER INSERT ON customers BEGIN {insert} END;
                     CREATE TRIGGER test_log_update AFTER UPDATE ON customers BEGIN {insert} END;"
                ))
                .unwrap();
        }
        TestWarehouse::Postgres(pg) => {
            let new: Vec<String> = COLS.split(", ").map(|c| format!("NEW.{c}")).collect();
            pg.with_client(|c| {
                c.batch_execute(&format!(
                    "CREATE TABLE test_version_log (seq bigserial PRIMARY KEY, id bigint,
                         deleted_at timestamptz, created_date timestamptz,
                         modified_date timestamptz, omnitron_id bigint, email text,
                         first_name text, last_name text, phone_number text, erp_code text,
                         channel bigint, extra jsonb);
                     CREATE FUNCTION test_log_version() RETURNS trigger LANGUAGE plpgsql AS $f$
                     BEGIN
                         INSERT INTO test_version_log (id, deleted_at, {COLS})
                         VALUES (NEW.id, NEW.deleted_at, {});
                         RETURN NULL;
                     END $f$;
                     CREATE TRIGGER test_log AFTER INSERT OR UPDATE ON customers
                         FOR EACH ROW EXECUTE FUNCTION test_log_version();",
                    new.join(", ")
                ))
                .unwrap()
            });
        }
    }
}

/// The history the rules call for, rebuilt from the oracle's log: per id, each stored row
/// with a new `modified_date` opens a version and ends the one before at that instant (or
/// earlier, at the `deleted_at` that ended it); a row with the same `modified_date` replaces
/// that version's values and end (a restore, a deletion, a change without a new date).
pub fn expected_from_log(wh: &TestWarehouse) -> Vec<Version> {
    let mut log = query(wh, "seq_text", "deleted_at", "test_version_log_view");
    // Rebuilt per id in log order.
    log.sort_by_key(|(id, seq, _, _)| (*id, seq.parse::<i64>().unwrap()));
    let mut out: Vec<Version> = vec![];
    for (id, _, deleted_at, row) in log {
        match out.last_mut() {
            Some(v) if v.id == id && v.valid_from == row.modified_date => {
                v.valid_to = deleted_at;
                v.row = row;
            }
            Some(v) if v.id == id => {
                assert!(
                    row.modified_date > v.valid_from,
                    "customer {id}: stored {} after {}",
                    row.modified_date,
                    v.valid_from
                );
                if v.valid_to.as_ref().is_none_or(|t| *t > row.modified_date) {
                    v.valid_to = Some(row.modified_date.clone());
                }
                out.push(Version {
                    id,
                    valid_from: row.modified_date.clone(),
                    valid_to: deleted_at,
                    row,
                });
            }
            _ => out.push(Version {
                id,
                valid_from: row.modified_date.clone(),
                valid_to: deleted_at,
                row,
            }),
        }
    }
    out
}

/// A view of the log that [`query`] can read (the sequence number as text in the first
/// instant's place), made on first use.
fn ensure_log_view(wh: &TestWarehouse) {
    match wh {
        TestWarehouse::Sqlite { .. } => rusqlite::Connection::open(wh.sqlite_path())
            .unwrap()
            .execute_batch(
                "CREATE VIEW IF NOT EXISTS test_version_log_view AS
                 SELECT CAST(seq AS TEXT) AS seq_text, * FROM test_version_log",
            )
            .unwrap(),
        TestWarehouse::Postgres(pg) => pg.with_client(|c| {
            c.batch_execute(
                "CREATE OR REPLACE VIEW test_version_log_view AS
                 SELECT l.*, seq::text AS seq_text FROM test_version_log l",
            )
            .unwrap()
        }),
    }
}

/// `customers_history` holds exactly the versions the warehouse stored (the oracle's), and the
/// open version of each id is its `customers` row, live; a deleted customer has none open.
pub fn assert_history_is_the_stored_versions(wh: &TestWarehouse) {
    ensure_log_view(wh);
    let got = versions(wh);
    let want = expected_from_log(wh);
    if got != want {
        let first = got
            .iter()
            .zip(&want)
            .find(|(g, w)| g != w)
            .map(|(g, w)| format!("got {g:?}\nwant {w:?}"))
            .unwrap_or_else(|| format!("{} versions, {} expected", got.len(), want.len()));
        panic!("customers_history differs from the stored versions: {first}");
    }
    assert_open_versions_are_the_rows(wh, &got);
}

/// The open version of each id equals its `customers` row; deleted ones have none open.
pub fn assert_open_versions_are_the_rows(wh: &TestWarehouse, versions: &[Version]) {
    let rows = wh.rows();
    let mut open: BTreeMap<i64, &Version> = BTreeMap::new();
    for v in versions.iter().filter(|v| v.valid_to.is_none()) {
        assert!(
            open.insert(v.id, v).is_none(),
            "customer {}: two open versions",
            v.id
        );
    }
    for (id, row) in &rows {
        match open.get(id) {
            Some(v) => {
                assert!(
                    !row.deleted,
                    "customer {id} is deleted but has an open version"
                );
                assert_eq!(&v.row, row, "customer {id}: open version vs row");
                assert_eq!(v.valid_from, row.modified_date);
            }
            None => assert!(row.deleted, "customer {id} is live but has no open version"),
        }
    }
    assert!(
        open.keys().all(|id| rows.contains_key(id)),
        "a version of an unknown id"
    );
}
