//! Endpoints that ignore what they are sent, through the real binary and the fake OMS:
//! django-filter drops a parameter an endpoint does not declare without an error, so the fake
//! plays such an endpoint with `Knobs::ignore`. Every page is checked against its request: a
//! page with rows outside the filter or out of the order asked fails the pass with one line
//! naming the stream, the request and the ids, and nothing of it is stored.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::TimeDelta;
use fake_oms::{CUSTOMERS_PATH, FakeCustomer, FakeOms, ID_FILTERS, MODIFIED_DATE_FILTERS, SORT};
use oms_sync::warehouse::Mark;

use common::TestWarehouse;

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `error:` lines of stderr.
    fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect()
    }
}

/// Runs the binary on a blocking thread (the fake serves from this runtime meanwhile).
async fn oms_sync(config: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    for k in ["RUST_LOG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        cmd.env_remove(k);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run oms-sync"))
        .await
        .expect("join");
    let r = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "panic:\n{}", r.stderr);
    r
}

/// A config for `oms` and `wh`: 50 rows a page, one range, fast retries.
fn config(dir: &Path, oms: &FakeOms, wh: &TestWarehouse) -> PathBuf {
    let text = format!(
        "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\npage_size = 50\nconcurrency = 1\nretry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\n\n{}\n",
        oms.base_url(),
        oms.token(),
        wh.config_toml()
    );
    let p = dir.join("oms-sync.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// `n` customers a minute apart, the newest `newest_first` way round: by id ascending the
/// dates go up (false) or down (true).
fn customers(n: i64, newest_first: bool) -> Vec<FakeCustomer> {
    (1..=n)
        .map(|i| {
            let minute = if newest_first { n + 1 - i } else { i };
            FakeCustomer::new(i, common::t0() + TimeDelta::minutes(minute))
        })
        .collect()
}

/// 120 customers a minute apart, synced once by the binary into a fresh SQLite warehouse.
async fn synced() -> (FakeOms, TestWarehouse, tempfile::TempDir, PathBuf) {
    let oms = common::fake(customers(120, false)).await;
    let wh = TestWarehouse::sqlite();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms, &wh);
    let r = oms_sync(&cfg, &["--once"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    (oms, wh, dir, cfg)
}

fn assert_unchanged(wh: &TestWarehouse, before: (Mark, BTreeMap<i64, common::Row>)) {
    assert_eq!(wh.mark(), before.0, "the checkpoint moved");
    assert_eq!(wh.rows(), before.1, "something of the page was stored");
}

fn assert_one_line(r: &Run, oms: &FakeOms, wants: &[&str]) {
    assert_eq!(r.code, Some(4), "exit code\n{}", r.stderr);
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "one error line:\n{}", r.stderr);
    for want in wants {
        assert!(errors[0].contains(want), "{want:?} in {:?}", errors[0]);
    }
    assert!(!r.stderr.contains(&oms.token()), "the token leaked");
    assert!(!r.stdout.contains(&oms.token()), "the token leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_outside_the_date_filter_fails_the_pass_and_stores_nothing_of_it() {
    let (oms, wh, _dir, cfg) = synced().await;
    let before = (wh.mark(), wh.rows());
    assert!(matches!(before.0, Mark::At { .. }));

    // The endpoint stops honouring the date filter: it now answers with every row.
    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, MODIFIED_DATE_FILTERS));
    let later = common::t0() + TimeDelta::hours(5);
    oms.with_store(|s| fake_oms::bulk_update(s, &[5, 6], later));
    let r = oms_sync(&cfg, &["--once"]).await;
    assert_one_line(
        &r,
        &oms,
        &[
            "stream customers",
            "GET /api/v1/oms/customers/list-simple/?sort=modified_date&modified_date__gte=",
            "outside the filter",
            "id 1 (modified_date 2024-03-01T09:01:00.000000Z)",
            "the checkpoint did not move",
        ],
    );
    assert_unchanged(&wh, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_out_of_the_order_asked_fails_the_pass_and_stores_nothing_of_it() {
    let (oms, wh, _dir, cfg) = synced().await;
    let before = (wh.mark(), wh.rows());

    // The endpoint stops honouring `sort` (it answers by id), and two rows change so that
    // id order is not date order: id 3 is now newer than id 10.
    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, SORT));
    let newest = common::t0() + TimeDelta::minutes(120);
    oms.with_store(|s| {
        s.touch(3, newest + TimeDelta::minutes(2));
        s.touch(10, newest + TimeDelta::minutes(1));
    });
    let r = oms_sync(&cfg, &["--once"]).await;
    assert_one_line(
        &r,
        &oms,
        &[
            "stream customers",
            "?sort=modified_date&modified_date__gte=",
            "out of the order asked (sort=modified_date): id 10",
            "came after id 3",
        ],
    );
    assert_unchanged(&wh, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_page_outside_its_id_range_fails_and_the_range_cursor_stays() {
    let oms = common::fake(customers(120, true)).await;
    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, ID_FILTERS));
    let wh = TestWarehouse::sqlite();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms, &wh);
    let r = oms_sync(&cfg, &["--backfill"]).await;
    assert_one_line(
        &r,
        &oms,
        &[
            "stream customers",
            "?sort=id&id__gt=50&limit=50",
            "50 row(s) outside the filter (id >= 51): id 1, 2, 3, 4, 5 and 45 more",
        ],
    );
    // The first page (ids 1..=50) was stored with its cursor; the second stored nothing.
    let snap = wh.snapshot();
    let ranges = snap.backfill.expect("the backfill stays unfinished").ranges;
    assert_eq!(ranges.len(), 1);
    assert_eq!((ranges[0].cursor, ranges[0].done), (50, false));
    assert_eq!(
        wh.rows().keys().copied().collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    assert_eq!(snap.mark, Mark::Start, "a failed backfill moved the mark");
}

/// One `check` case: the parameter groups the endpoint ignores, the exit code, what its
/// `endpoint` line says.
type Case = (
    &'static [&'static [&'static str]],
    Option<i32>,
    &'static [&'static str],
);

/// `check` verifies every endpoint (its `OPTIONS` and probes of the filters and sort a pass
/// relies on) and fails the `endpoint` step, naming what is ignored, for each way an endpoint
/// can ignore them; a healthy one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_verifies_what_each_endpoint_honours() {
    let cases: [Case; 5] = [
        (
            &[],
            Some(0),
            &[
                "ok",
                "customers: allows keyset",
                "honours modified_date__gt, id__gt and sort",
            ],
        ),
        (
            &[MODIFIED_DATE_FILTERS],
            Some(4),
            &[
                "FAILED",
                "allows by_id",
                "ignores modified_date__gt:",
                "fix: ask the OMS vendor",
            ],
        ),
        (
            &[SORT],
            Some(4),
            &["FAILED", "allows by_id", "ignores sort:"],
        ),
        (
            &[ID_FILTERS],
            Some(4),
            &["FAILED", "allows keyset", "ignores id__gt:", "a backfill"],
        ),
        (
            &[MODIFIED_DATE_FILTERS, ID_FILTERS],
            Some(4),
            &[
                "FAILED",
                "allows refused",
                "ignores modified_date__gt, id__gt:",
            ],
        ),
    ];
    for (ignored, code, wants) in cases {
        // Dates fall as ids rise: an endpoint that ignores `sort` cannot hide it.
        let oms = common::fake(customers(120, true)).await;
        oms.knobs(|k| ignored.iter().for_each(|p| k.ignore(CUSTOMERS_PATH, p)));
        let wh = TestWarehouse::sqlite();
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = config(dir.path(), &oms, &wh);
        let r = oms_sync(&cfg, &["check"]).await;
        assert_eq!(r.code, code, "{ignored:?}\n{}\n{}", r.stdout, r.stderr);
        let line = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("endpoint"))
            .unwrap_or_else(|| panic!("no endpoint step:\n{}", r.stdout));
        for want in wants {
            assert!(line.contains(want), "{ignored:?}: {want:?} in {line:?}");
        }
        assert!(
            !line.contains("not declared") && !line.contains("WARNING"),
            "{line}"
        );
        assert_eq!(
            oms.requests()
                .iter()
                .filter(|q| q.method == "OPTIONS")
                .count(),
            1,
            "one OPTIONS per stream"
        );
    }
}
