//! The SQLite dialect's own cases: outcomes from the connection, batches in one transaction,
//! indexed columns left alone.

use super::super::SqliteWarehouse;
use super::super::testutil::{apply, customer};
use crate::resource::{Customer, CustomerFields, Customers};
use crate::warehouse::{Confirmed, Mark, RunKind, Warehouse};

#[test]
fn upsert_outcome_from_the_last_inserted_rowid() {
    use super::{Outcome, classify_upsert};
    assert_eq!(classify_upsert(7, 0, 3, 3), Some(Outcome::Unchanged));
    assert_eq!(classify_upsert(7, 1, 3, 7), Some(Outcome::Inserted));
    assert_eq!(classify_upsert(7, 1, 3, 3), Some(Outcome::Updated));
    assert_eq!(classify_upsert(7, 1, 7, 7), None, "ambiguous: ask the row");
}

/// Several pages in one transaction are applied as they would be one by one: a record
/// quarantined by a page and stored by a later one leaves the quarantine; each backfill
/// range's cursor and deletions follow its own pages; the run counts every page.
#[test]
fn batches_in_one_transaction_apply_as_one_by_one() {
    use crate::resource::BadRecord;
    use crate::warehouse::{Advance, BackfillRange, BackfillState, Batch};
    let dir = tempfile::tempdir().unwrap();
    let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
    let t = "2023-01-01T00:00:01.000000Z";
    let t2 = "2023-01-01T00:00:02.000000Z";
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Backfill, &Mark::Start)
        .unwrap();
    // Two ranges: ids (.., 100] and (100, ..); rows 5 and 150 exist and are not listed
    // again, so each range's page marks its own one deleted.
    apply(
        &mut wh,
        run,
        vec![customer(5, t, "old"), customer(150, t, "old")],
        Mark::at(t, Confirmed::Nothing),
    );
    let range = |range_no: i64, lo: i64, hi: Option<i64>| BackfillRange {
        range_no,
        lo,
        hi,
        cursor: lo,
        done: false,
    };
    wh.start_backfill(
        Customers::SPEC,
        &BackfillState {
            run_id: Some(run),
            started_at: t2.into(),
            high_water_date: Some(t2.into()),
            ranges: vec![range(0, i64::MIN, Some(100)), range(1, 100, None)],
        },
    )
    .unwrap();
    let bad = BadRecord {
        id: Some(7),
        modified_date: Some(t.into()),
        raw: "{\"id\": 7}".into(),
        error: "a bad record".into(),
    };
    let batches = [
        Batch {
            records: vec![customer(1, t2, "a")],
            bad: vec![bad],
            advance: Advance::Backfill {
                range_no: 0,
                from: i64::MIN,
                to: Some(7),
            },
        },
        Batch {
            records: vec![customer(120, t2, "b")],
            bad: vec![],
            advance: Advance::Backfill {
                range_no: 1,
                from: 100,
                to: Some(160),
            },
        },
        Batch {
            records: vec![customer(7, t2, "fixed")],
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
    let conn = wh.connection();
    let q: i64 = conn
        .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
        .unwrap();
    assert_eq!(q, 0, "the third page stored what the first quarantined");
    assert_eq!(wh.quarantined, 0);
    let cursors: Vec<(i64, i64)> = conn
        .prepare("SELECT range_no, cursor_id FROM backfill_ranges ORDER BY range_no")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(cursors, [(0, 10), (1, 160)]);
    let deleted: Vec<i64> = conn
        .prepare("SELECT id FROM customers WHERE deleted_at IS NOT NULL ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(deleted, [5, 150]);
    let pages: i64 = conn
        .query_row("SELECT pages FROM sync_runs WHERE id = ?1", [run], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(pages, 1 + 3);
}

/// Ids equal to another table's last inserted rowid (here sync_runs' run id) take the
/// slow path and are still counted right.
#[test]
fn counts_hold_when_an_id_equals_the_last_rowid_of_another_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Incremental, &Mark::Start)
        .unwrap();
    let t = "2023-01-01T00:00:01.000000Z";
    let t2 = "2023-01-01T00:00:02.000000Z";
    let s = apply(
        &mut wh,
        run,
        vec![customer(run, t, "a"), customer(run + 1, t, "b")],
        Mark::at(t, Confirmed::Nothing),
    );
    assert_eq!((s.inserted, s.updated, s.unchanged), (2, 0, 0));
    // The last insert was run + 1: its update is the ambiguous case.
    let s = apply(
        &mut wh,
        run,
        vec![customer(run + 1, t2, "b2"), customer(run, t2, "a2")],
        Mark::at(t2, Confirmed::Nothing),
    );
    assert_eq!((s.inserted, s.updated, s.unchanged), (0, 2, 0));
}

/// The upsert leaves `email` (indexed) alone, so an unchanged email costs no index write;
/// a changed one is still stored, by the full update, under the same rules.
#[test]
fn indexed_columns_are_set_only_when_they_change() {
    let sql = super::super::UpsertSql::new(&crate::resource::customers::SPEC);
    assert!(
        !sql.upsert.contains("email = excluded.email"),
        "{}",
        sql.upsert
    );
    assert!(
        sql.upsert
            .contains("modified_date = excluded.modified_date")
    );
    assert!(sql.update.contains("email = ?5"), "{}", sql.update);

    let dir = tempfile::tempdir().unwrap();
    let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Incremental, &Mark::Start)
        .unwrap();
    let (t1, t2, t3) = (
        "2023-01-01T00:00:01.000000Z",
        "2023-01-01T00:00:02.000000Z",
        "2023-01-01T00:00:03.000000Z",
    );
    let with_email = |md: &str, email: &str| {
        Customer::new(CustomerFields {
            email: Some(email),
            ..customer(9, md, "n").fields()
        })
    };
    let mut step = |c: Customer| {
        let s = apply(&mut wh, run, vec![c], Mark::at(t3, Confirmed::Nothing));
        (s.inserted, s.updated, s.unchanged)
    };
    assert_eq!(step(with_email(t2, "a@x")), (1, 0, 0));
    assert_eq!(step(with_email(t3, "b@x")), (0, 1, 0), "newer, new email");
    assert_eq!(
        step(with_email(t3, "c@x")),
        (0, 1, 0),
        "same time, new email"
    );
    assert_eq!(step(with_email(t1, "d@x")), (0, 0, 1), "older: never");
    assert_eq!(step(with_email(t3, "c@x")), (0, 0, 1), "same content");
    let email: String = wh
        .connection()
        .query_row("SELECT email FROM customers WHERE id = 9", [], |r| r.get(0))
        .unwrap();
    assert_eq!(email, "c@x");
}

#[test]
fn upsert_never_goes_back_and_skips_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Incremental, &Mark::Start)
        .unwrap();
    let t1 = "2023-01-01T00:00:01.000000Z";
    let t2 = "2023-01-01T00:00:02.000000Z";
    let s = apply(
        &mut wh,
        run,
        vec![customer(1, t2, "new")],
        Mark::at(t2, Confirmed::Nothing),
    );
    assert_eq!((s.inserted, s.updated, s.unchanged), (1, 0, 0));
    let s = apply(
        &mut wh,
        run,
        vec![customer(1, t1, "old")],
        Mark::at(t2, Confirmed::Nothing),
    );
    assert_eq!((s.inserted, s.updated, s.unchanged), (0, 0, 1));
    let s = apply(
        &mut wh,
        run,
        vec![customer(1, t2, "new")],
        Mark::at(t2, Confirmed::Nothing),
    );
    assert_eq!((s.inserted, s.updated, s.unchanged), (0, 0, 1));
    let s = apply(
        &mut wh,
        run,
        vec![customer(1, t2, "same time, new content")],
        Mark::at(t2, Confirmed::Nothing),
    );
    assert_eq!((s.inserted, s.updated, s.unchanged), (0, 1, 0));
    let name: String = wh
        .connection()
        .query_row("SELECT first_name FROM customers WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(name, "same time, new content");
    // The mark never moves backward.
    apply(&mut wh, run, vec![], Mark::at(t1, Confirmed::Nothing));
    assert_eq!(
        wh.mark(Customers::SPEC).unwrap(),
        Mark::at(t2, Confirmed::Nothing)
    );
}
