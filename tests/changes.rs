//! The write core's change events: every row a batch touches is reported inside its
//! transaction, with what happened to it, on every backend.

mod common;

use common::*;
use oms_sync::resource::{Customer, CustomerFields, Customers};
use oms_sync::warehouse::write::{Change, Recorder};
use oms_sync::warehouse::{
    Advance, BackfillRange, BackfillState, Batch, Confirmed, Mark, RunKind, Warehouse,
};

const T1: &str = "2023-01-01T00:00:01.000000Z";
const T2: &str = "2023-01-01T00:00:02.000000Z";
const T3: &str = "2023-01-01T00:00:03.000000Z";

fn rec(id: i64, md: &str, name: &str) -> Customer {
    Customer::new(CustomerFields {
        id,
        modified_date: md,
        first_name: Some(name),
        ..CustomerFields::default()
    })
}

/// Inserted, updated (with the version it replaced, also within one batch), unchanged (same
/// content, or older) and deleted by a backfill page: each row's change, in order.
#[tokio::test]
async fn each_row_reports_what_happened_to_it() {
    each_backend(each_row_reports_what_happened_to_it_on).await;
}

async fn each_row_reports_what_happened_to_it_on() {
    let tw = TestWarehouse::fresh();
    let mut wh = tw.open();
    let run = wh
        .begin_run(Customers::SPEC, RunKind::Backfill, &Mark::Start)
        .unwrap();
    let mark = |md: &str| Advance::Mark(Mark::at(md, Confirmed::Nothing));
    let mut rec1 = Recorder {
        previous: true,
        ..Recorder::default()
    };
    let first = Batch {
        records: vec![rec(1, T1, "a"), rec(2, T1, "b"), rec(3, T1, "c")],
        bad: vec![],
        advance: mark(T1),
    };
    let s = wh
        .apply_recording::<Customers>(run, &[first], &mut rec1)
        .unwrap();
    assert_eq!(s.inserted, 3);
    assert_eq!(
        rec1.changes,
        [
            Change::Inserted { id: 1 },
            Change::Inserted { id: 2 },
            Change::Inserted { id: 3 }
        ]
    );

    // 1 newer, then newer again in the same batch; 2 the same; 3 older; 4 new.
    let mut rec2 = Recorder {
        previous: true,
        ..Recorder::default()
    };
    let second = Batch {
        records: vec![
            rec(1, T2, "a2"),
            rec(2, T1, "b"),
            rec(3, "2022-01-01T00:00:00.000000Z", "old"),
            rec(1, T3, "a3"),
            rec(4, T2, "d"),
        ],
        bad: vec![],
        advance: mark(T3),
    };
    let s = wh
        .apply_recording::<Customers>(run, &[second], &mut rec2)
        .unwrap();
    assert_eq!((s.inserted, s.updated, s.unchanged), (1, 2, 2), "{s:?}");
    assert_eq!(
        rec2.changes,
        [
            Change::Updated {
                id: 1,
                previous: Some(T1.into())
            },
            Change::Unchanged { id: 2 },
            Change::Unchanged { id: 3 },
            Change::Updated {
                id: 1,
                previous: Some(T2.into())
            },
            Change::Inserted { id: 4 },
        ]
    );

    // A backfill page listing 1 and 4 only: 2 and 3 are gone, reported before the rows.
    let state = BackfillState {
        run_id: Some(run),
        started_at: T3.into(),
        high_water_date: Some(T3.into()),
        ranges: vec![BackfillRange {
            range_no: 0,
            lo: i64::MIN,
            hi: None,
            cursor: i64::MIN,
            done: false,
        }],
    };
    wh.start_backfill(Customers::SPEC, &state).unwrap();
    let mut rec3 = Recorder::default();
    let page = Batch {
        records: vec![rec(1, T3, "a3"), rec(4, T3, "d2")],
        bad: vec![],
        advance: Advance::Backfill {
            range_no: 0,
            from: i64::MIN,
            to: None,
        },
    };
    let s = wh
        .apply_recording::<Customers>(run, &[page], &mut rec3)
        .unwrap();
    assert_eq!(s.deleted, 2, "{s:?}");
    assert_eq!(
        rec3.changes,
        [
            Change::Deleted { id: 2 },
            Change::Deleted { id: 3 },
            Change::Unchanged { id: 1 },
            // Not asked for: no read of the replaced version.
            Change::Updated {
                id: 4,
                previous: None
            },
        ]
    );
}
