//! History mode (`[sync] history = true`) through the real binary and the fake OMS, on both
//! backends: versions after updates, two changes between passes, lookback and backfill
//! re-reads, deletions ending versions at `deleted_at`, comebacks (a new version, or the old
//! one reopened), history turned on late and off again, and what `status` says.

mod common;

use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};
use common::history::{Version, assert_history_is_the_stored_versions, deleted_at, versions};
use common::*;
use fake_oms::{FakeCustomer, FakeOms};

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// The real binary on a config of its own, pointed at the fake and the warehouse under test.
struct Bin {
    wh: TestWarehouse,
    _dir: tempfile::TempDir,
    config: PathBuf,
    base: String,
}

impl Bin {
    fn new(oms: &FakeOms, backend: Backend) -> Bin {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("oms-sync.toml");
        let wh = TestWarehouse::of(backend);
        let base = format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\npage_size = 2\n{}[log]\nlevel = \"error\"\n",
            oms.base_url(),
            oms.token(),
            wh.config_toml()
        );
        Bin {
            wh,
            _dir: dir,
            config,
            base,
        }
    }

    /// Runs `mode` (`--once`, `--backfill`, `status`…) with `history` set; its stdout.
    fn run(&self, history: bool, args: &[&str]) -> String {
        std::fs::write(
            &self.config,
            format!("{}[sync]\nhistory = {history}\n", self.base),
        )
        .unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("the binary starts");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn once(&self) {
        self.run(true, &["--once"]);
    }

    fn backfill(&self) {
        self.run(true, &["--backfill"]);
    }

    /// `versions_written` of the last run.
    fn last_versions_written(&self) -> i64 {
        self.wh
            .query_i64("SELECT versions_written FROM sync_runs ORDER BY id DESC LIMIT 1")
    }

    fn versions_of(&self, id: i64) -> Vec<Version> {
        versions(&self.wh)
            .into_iter()
            .filter(|v| v.id == id)
            .collect()
    }
}

fn canon(t: DateTime<Utc>) -> String {
    oms_sync::timefmt::canonical(&t)
}

/// The version `c` is stored as, from `valid_from` = its `modified_date` until `valid_to`.
fn version(c: &FakeCustomer, valid_to: Option<String>) -> Version {
    Version {
        id: c.id,
        valid_from: canon(c.modified_date),
        valid_to,
        row: expected(c),
    }
}

fn changed(oms: &FakeOms, id: i64, name: &str, at: DateTime<Utc>) -> FakeCustomer {
    oms.with_store(|s| {
        s.update(id, |c| {
            c.first_name = Some(name.into());
            c.modified_date = at;
        });
        s.get(id).unwrap().clone()
    })
}

/// Each update a pass stores opens a version and ends the one before at its `modified_date`;
/// two changes between passes give one new version (the last); a re-read (the default
/// lookback, a second pass, a backfill) adds none; the open version is the `customers` row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_open_versions_and_rereads_add_none() {
    for backend in backends() {
        eprintln!("-- backend: {backend:?}");
        let oms = fake(distinct(3)).await;
        let bin = Bin::new(&oms, backend);
        let first: Vec<FakeCustomer> = oms.with_store(|s| s.snapshot());
        bin.once();
        assert_eq!(bin.last_versions_written(), 3);
        assert_eq!(
            versions(&bin.wh),
            first.iter().map(|c| version(c, None)).collect::<Vec<_>>()
        );

        let c1 = changed(&oms, 1, "Ayşe", at(5_000, 0));
        bin.once();
        assert_eq!(bin.last_versions_written(), 1);
        assert_eq!(
            bin.versions_of(1),
            [
                version(&first[0], Some(canon(c1.modified_date))),
                version(&c1, None)
            ]
        );

        // Two changes of customer 2 between passes: only the last was listed, so stored.
        changed(&oms, 2, "first change", at(6_000, 0));
        let c2 = changed(&oms, 2, "second change", at(7_000, 0));
        bin.once();
        assert_eq!(
            bin.versions_of(2),
            [
                version(&first[1], Some(canon(c2.modified_date))),
                version(&c2, None)
            ]
        );

        // Re-reads: the default lookback re-reads every row, a backfill lists them all.
        let before = versions(&bin.wh);
        bin.once();
        assert_eq!(bin.last_versions_written(), 0);
        bin.backfill();
        assert_eq!(bin.last_versions_written(), 0);
        assert_eq!(versions(&bin.wh), before);
        common::history::assert_open_versions_are_the_rows(&bin.wh, &before);
    }
}

/// A customer a backfill finds gone: its open version ends at its `deleted_at`. Back with a
/// newer `modified_date`, it opens a new version (an old end later than that is cut to it, so
/// versions of an id never overlap); back with the same `modified_date` (an OMS restore), the
/// version it had is reopened, not duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_end_versions_and_comebacks_open_or_reopen() {
    for backend in backends() {
        eprintln!("-- backend: {backend:?}");
        let oms = fake(distinct(4)).await;
        let bin = Bin::new(&oms, backend);
        bin.once();
        let gone: Vec<FakeCustomer> = oms.with_store(|s| {
            [2, 3, 4]
                .map(|id| {
                    let c = s.get(id).unwrap().clone();
                    s.remove(id);
                    c
                })
                .to_vec()
        });
        bin.backfill();
        let deleted = deleted_at(&bin.wh);
        for c in &gone {
            let at = deleted[&c.id].clone().expect("marked deleted");
            assert_eq!(bin.versions_of(c.id), [version(c, Some(at))]);
        }

        // 2 comes back changed, dated after the deletion was found; 3 changed, dated before
        // it (the OMS's clock and ours disagree); 4 restored as it was.
        let later = Utc::now() + TimeDelta::hours(1);
        let mut back2 = gone[0].clone();
        back2.modified_date = later;
        back2.first_name = Some("Back".into());
        let mut back3 = gone[1].clone();
        back3.modified_date = at(9_000, 0);
        back3.first_name = Some("Back too".into());
        oms.with_store(|s| {
            s.upsert(back2.clone());
            s.upsert(back3.clone());
            s.upsert(gone[2].clone());
        });
        bin.backfill();
        let back2 = oms.with_store(|s| s.get(2).unwrap().clone());
        let back3 = oms.with_store(|s| s.get(3).unwrap().clone());
        assert_eq!(
            bin.versions_of(2),
            [
                version(&gone[0], deleted[&2].clone()),
                version(&back2, None)
            ]
        );
        assert_eq!(
            bin.versions_of(3),
            [
                version(&gone[1], Some(canon(back3.modified_date))),
                version(&back3, None)
            ]
        );
        assert_eq!(bin.versions_of(4), [version(&gone[2], None)]);
        common::history::assert_open_versions_are_the_rows(&bin.wh, &versions(&bin.wh));
    }
}

/// History turned on for a warehouse that already holds customers: the next pass seeds one
/// open version per live customer and one ended at `deleted_at` per deleted one, in one
/// transaction (counted in its run). Turned off: nothing more is written, the table is kept,
/// and `status` says which. On again: brought up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_turned_on_late_is_seeded_and_off_keeps_the_table() {
    for backend in backends() {
        eprintln!("-- backend: {backend:?}");
        let oms = fake(distinct(5)).await;
        let bin = Bin::new(&oms, backend);
        bin.run(false, &["--once"]);
        let gone = oms.with_store(|s| {
            let c = s.get(5).unwrap().clone();
            s.remove(5);
            c
        });
        bin.run(false, &["--backfill"]);
        assert_eq!(
            bin.wh.query_i64("SELECT count(*) FROM customers_history"),
            0
        );
        let status = bin.run(false, &["status"]);
        assert!(status.contains("history     off (sync.history"), "{status}");

        bin.once();
        assert_eq!(bin.last_versions_written(), 5);
        let live: Vec<FakeCustomer> = oms.with_store(|s| s.snapshot());
        let mut want: Vec<Version> = live.iter().map(|c| version(c, None)).collect();
        want.push(version(&gone, deleted_at(&bin.wh)[&5].clone()));
        assert_eq!(versions(&bin.wh), want);
        let status = bin.run(true, &["status"]);
        assert!(status.contains("history     on since "), "{status}");
        assert!(
            status.contains(": 5 versions in customers_history"),
            "{status}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&bin.run(true, &["status", "--json"])).unwrap();
        let h = &json["streams"]["customers"]["history"];
        assert_eq!(h["on"], true, "{json}");
        assert_eq!(h["versions"], 5, "{json}");
        assert_eq!(
            json["streams"]["customers"]["recent_runs"][0]["versions_written"],
            5
        );

        // Off: a change is stored in customers only; the table is kept.
        let off = changed(&oms, 1, "while off", at(8_000, 0));
        bin.run(false, &["--once"]);
        assert_eq!(versions(&bin.wh), want);
        let status = bin.run(false, &["status"]);
        assert!(
            status.contains("history     off since ") && status.contains("5 versions kept"),
            "{status}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&bin.run(false, &["status", "--json"])).unwrap();
        assert_eq!(json["streams"]["customers"]["history"]["on"], false);

        // On again: the seed brings in the version stored while it was off (the one before
        // ends at it), then the pass stores the next.
        let c1 = changed(&oms, 1, "on again", at(9_000, 0));
        bin.once();
        assert_eq!(
            bin.versions_of(1),
            [
                version(&live[0], Some(canon(off.modified_date))),
                version(&off, Some(canon(c1.modified_date))),
                version(&c1, None)
            ]
        );
        common::history::assert_open_versions_are_the_rows(&bin.wh, &versions(&bin.wh));
    }
}

/// The oracle agrees on a run of random-ish passes: the history equals the versions stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_the_sequence_of_stored_versions() {
    for backend in backends() {
        eprintln!("-- backend: {backend:?}");
        let oms = fake(distinct(40)).await;
        let bin = Bin::new(&oms, backend);
        // The schema first, then the oracle's triggers, then the passes.
        drop(bin.wh.open());
        common::history::install_version_log(&bin.wh);
        for round in 0..6i64 {
            oms.with_store(|s| {
                let newest = s.max_modified_date().unwrap();
                for k in 0..5 {
                    let id = (round * 7 + k * 3) % 40 + 1;
                    s.update(id, |c| {
                        c.modified_date = newest + TimeDelta::milliseconds(k + 1);
                        c.email = Some(format!("r{round}@example.com"));
                    });
                }
                if round % 2 == 1 {
                    s.remove(round * 5 + 1);
                }
            });
            if round % 2 == 0 {
                bin.once();
            } else {
                bin.backfill();
            }
        }
        assert_history_is_the_stored_versions(&bin.wh);
    }
}
