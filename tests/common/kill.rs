//! kill -9 rounds, shared by the suites that SIGKILL a sync mid-pass (tests/kill.rs: the
//! binary on customers; tests/widgets.rs: its own executable on widgets): the adaptive kill
//! window, the kill itself, the tally of where kills landed, and the check that a checkpoint
//! claims only rows that are stored.

use std::collections::BTreeMap;
use std::process::{Child, ExitStatus};
use std::time::Duration;

use oms_sync::warehouse::{BackfillState, Mark};
use rand::Rng;

/// When kills land, in ms after the start, following the machine: a kill that landed before
/// the first commit (a loaded machine, a slow server connect) moves the start later, a run
/// that finished first moves the end earlier. Which rounds land mid-pass is what the tests are
/// about, not the delay. One per mode: a backfill takes longer to its first commit.
#[derive(Debug, Clone, Copy)]
pub struct KillWindow {
    start: f64,
    len: f64,
}

impl KillWindow {
    pub fn new(start_ms: f64, len_ms: f64) -> Self {
        KillWindow {
            start: start_ms,
            len: len_ms,
        }
    }

    /// A delay drawn from the window, in ms.
    pub fn draw(&self, rng: &mut impl Rng) -> f64 {
        self.start + self.len * rng.random_range(0.0..=1.0)
    }
}

/// How a round's child ended.
#[derive(Debug, Clone, Copy)]
pub enum Ended {
    /// Before the kill, with this status.
    OnItsOwn(ExitStatus),
    Killed,
}

/// Sleeps `wait_ms`, then SIGKILLs `child` unless it exited first. A child that finished
/// between the check and the signal exited on its own (a SIGKILLed one never exits 0).
pub async fn kill_after(child: &mut Child, wait_ms: f64) -> Ended {
    tokio::time::sleep(Duration::from_secs_f64(wait_ms / 1000.0)).await;
    if let Some(s) = child.try_wait().expect("the child's status") {
        return Ended::OnItsOwn(s);
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("the child's status");
    if status.success() {
        Ended::OnItsOwn(status)
    } else {
        Ended::Killed
    }
}

/// Where the kills of a suite landed.
#[derive(Debug, Default)]
pub struct Tally {
    /// Killed after committing progress (the mark, or the backfill's ranges, moved).
    pub mid_pass: usize,
    pub mid_backfill: usize,
    /// Killed before its first commit.
    pub before_commit: usize,
    pub finished_first: usize,
}

impl Tally {
    /// Counts the next round, which waited `wait_ms`, and moves its mode's `window`. `moved`:
    /// the checkpoint changed; `stderr`: the child's, for the message if it exited with an
    /// error.
    pub fn record(
        &mut self,
        window: &mut KillWindow,
        wait_ms: f64,
        ended: Ended,
        moved: bool,
        backfill: bool,
        stderr: impl Fn() -> String,
    ) {
        let round = self.mid_pass + self.before_commit + self.finished_first;
        match ended {
            Ended::OnItsOwn(s) => {
                assert!(
                    s.success(),
                    "round {round}: exited early with {s}: {}",
                    stderr()
                );
                self.finished_first += 1;
                // It ends before `wait_ms`.
                window.len = ((wait_ms - window.start) * 0.8).max(20.0);
            }
            Ended::Killed if moved => {
                self.mid_pass += 1;
                if backfill {
                    self.mid_backfill += 1;
                }
            }
            Ended::Killed => {
                self.before_commit += 1;
                // Its first commit comes after `wait_ms`.
                let end = window.start + window.len;
                window.start = window.start.max(wait_ms);
                window.len = (end - window.start).max(40.0);
            }
        }
    }

    /// The kills must have landed mid-pass often enough for the suite to test something.
    pub fn assert_enough_mid_pass(&self, rounds: usize) {
        assert!(
            self.mid_pass >= rounds / 3,
            "only {} of {rounds} kills landed mid-pass: the test does not test much ({self:?})",
            self.mid_pass
        );
    }
}

/// `(ranges, sum of cursors, ranges done)` of an unfinished backfill: it moved when this did.
pub fn backfill_progress(state: Option<BackfillState>) -> Option<(i64, i128, i64)> {
    let ranges = state?.ranges;
    Some((
        ranges.len() as i64,
        ranges.iter().map(|r| i128::from(r.cursor)).sum(),
        ranges.iter().filter(|r| r.done).count() as i64,
    ))
}

/// g3 after a kill: every server row the checkpoint claims (`server`: id and canonical
/// `modified_date`) is stored (`stored`: id to canonical `modified_date`) with at least that
/// version.
pub fn assert_claims_stored(
    mark: &Mark,
    server: impl IntoIterator<Item = (i64, String)>,
    stored: &BTreeMap<i64, String>,
    round: usize,
) {
    if *mark == Mark::Start {
        return;
    }
    let mut claimed = 0;
    for (id, md) in server {
        if mark.covers(&md, id) {
            claimed += 1;
            let have = stored.get(&id).unwrap_or_else(|| {
                panic!("round {round}: mark {mark} claims {id} but it is missing")
            });
            assert!(
                *have >= md,
                "round {round}: mark {mark} claims {id} at {md}, stored {have}"
            );
        }
    }
    assert!(claimed <= stored.len());
}
