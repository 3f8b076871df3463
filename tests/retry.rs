//! Retry waits through the real binary against the fake OMS: every wait stays within
//! `api.retry_max_delay` (jitter included), all of them within the bound the first retry
//! announces, and the server saw the attempts no sooner than the waits said.

mod common;

use std::process::Command;
use std::time::Duration;

use fake_oms::Fault;

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// The value of `key=` in a log line (values here are bare numbers).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split(' ').next()
}

/// 24.9: with min = max = 200 ms, a wait jittered on top of its step (what the client did)
/// lies in [200, 400) ms; capped, every one is at most 200 ms, and the announced bound
/// (4 x 200 ms) holds for their sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_waits_never_exceed_retry_max_delay_and_sum_within_the_announced_bound() {
    let oms = common::fake(common::distinct(20)).await;
    oms.push_faults((0..10).map(|_| Fault::html(503)));
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\nmax_retries = 4\nretry_min_delay = \"200ms\"\nretry_max_delay = \"200ms\"\n[warehouse]\npath = \"{}\"\n",
            oms.base_url(),
            oms.token(),
            dir.path().join("w.db").display()
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG")
        .arg("--config")
        .arg(&cfg)
        .arg("--once");
    // Blocking wait off the runtime: the fake OMS serves from its workers meanwhile.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run oms-sync");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");

    let announced: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("retrying up to 4 time(s), waiting at most 800ms in all"))
        .collect();
    assert_eq!(announced.len(), 1, "{stderr}");
    assert_eq!(
        field(announced[0], "waits_at_most_ms"),
        Some("800"),
        "{stderr}"
    );

    let waits: Vec<u64> = stderr
        .lines()
        .filter(|l| l.contains("request failed, retrying"))
        .map(|l| {
            field(l, "retry_in_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no retry_in_ms in {l}"))
        })
        .collect();
    eprintln!("waits (ms): {waits:?}");
    assert_eq!(waits.len(), 4, "{stderr}");
    for w in &waits {
        assert!(
            *w <= 200,
            "a wait of {w} ms exceeds retry_max_delay = 200ms: {waits:?}"
        );
        assert!(
            *w >= 100,
            "a wait of {w} ms is below half its step: {waits:?}"
        );
    }
    assert!(waits.iter().sum::<u64>() <= 800, "{waits:?}");

    // The logged waits are the ones taken: the server saw each retry no sooner.
    let reqs = oms.requests();
    assert_eq!(reqs.len(), 5, "1 attempt + 4 retries");
    for (i, w) in waits.iter().enumerate() {
        let gap = reqs[i + 1].received_at - reqs[i].received_at;
        assert!(
            gap >= Duration::from_millis(*w),
            "retry {} came {gap:?} after the attempt before it, logged wait {w} ms",
            i + 1
        );
    }
}
