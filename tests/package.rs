//! The Debian package's inputs, without cargo-deb: the man page and completions the real binary
//! generates, every asset `Cargo.toml` hands to cargo-deb, the maintainer scripts, that the
//! packaged units run the packaged binary as the packaged user, and that the packaged
//! configuration syncs against the fake OMS with the token given only as a systemd credential.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use fake_oms::{FakeOms, FakeOmsConfig, synthetic_customers};

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> toml::Table {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("read Cargo.toml");
    text.parse().expect("Cargo.toml parses")
}

fn deb_metadata() -> toml::Table {
    manifest()["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// `(source, destination, mode)` of every cargo-deb asset.
fn assets() -> Vec<(String, String, String)> {
    deb_metadata()["assets"]
        .as_array()
        .expect("assets array")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("asset is [src, dest, mode]");
            assert_eq!(a.len(), 3, "{a:?}");
            let s = |i: usize| a[i].as_str().expect("asset field is a string").to_owned();
            (s(0), s(1), s(2))
        })
        .collect()
}

/// Where cargo-deb puts a source: a destination ending in `/` is a directory.
fn installed_path(src: &str, dest: &str) -> String {
    let dest = format!("/{dest}");
    match dest.strip_suffix('/') {
        Some(dir) => format!("{dir}/{}", src.rsplit('/').next().expect("file name")),
        None => dest,
    }
}

/// Runs `oms-sync generate-assets` into a temp dir; the files by name.
fn generated_assets() -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .arg("generate-assets")
        .arg(dir.path().join("assets"))
        .output()
        .expect("run oms-sync generate-assets");
    assert!(out.status.success(), "{out:?}");
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir.path().join("assets")).expect("assets dir") {
        let e = e.expect("dir entry");
        let text = std::fs::read_to_string(e.path()).expect("asset is text");
        files.insert(e.file_name().to_string_lossy().into_owned(), text);
    }
    (dir, files)
}

#[test]
fn man_page_and_completions_generate_and_mention_backfill() {
    let (dir, files) = generated_assets();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "_oms-sync",
            "oms-sync-check.1",
            "oms-sync-demo.1",
            "oms-sync-status.1",
            "oms-sync.1",
            "oms-sync.bash",
            "oms-sync.fish"
        ]
    );
    // Each format spells the flag its own way: roff escapes '-', fish names long flags `-l`.
    for (name, needle) in [
        ("oms-sync.1", r"\-\-backfill"),
        ("oms-sync.bash", "--backfill"),
        ("_oms-sync", "--backfill"),
        ("oms-sync.fish", "-l backfill"),
    ] {
        let text = &files[name];
        assert!(!text.trim().is_empty(), "{name} is empty");
        assert!(text.contains(needle), "{name} lacks {needle:?}");
        for command in ["status", "demo"] {
            assert!(text.contains(command), "{name} lacks the {command} command");
        }
        if name == "oms-sync.bash" {
            let check = Command::new("bash")
                .arg("-n")
                .arg(dir.path().join("assets").join(name))
                .output()
                .expect("bash -n");
            assert!(check.status.success(), "{check:?}");
        }
        // The packaging helper is not for users.
        assert!(
            !text.contains("generate-assets"),
            "{name} shows generate-assets"
        );
    }
    assert!(files["oms-sync.1"].contains("EXIT STATUS"));
    assert!(files["oms-sync-status.1"].contains(r"\-\-json"));
}

/// The README links its depth into `docs/` and says the package ships it beside the README:
/// a page added there must not be left out of the package.
#[test]
fn every_docs_page_is_packaged_beside_the_readme() {
    let assets = assets();
    let mut pages = 0;
    for e in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let name = e.expect("docs entry").file_name();
        let name = name.to_str().expect("UTF-8 file name");
        if !name.ends_with(".md") {
            continue;
        }
        pages += 1;
        let src = format!("docs/{name}");
        let want = format!("/usr/share/doc/oms-sync/docs/{name}");
        assert!(
            assets
                .iter()
                .any(|(s, d, _)| s == &src && installed_path(s, d) == want),
            "{src} is not packaged as {want}"
        );
    }
    assert!(pages > 0, "docs/ holds no page");
    assert!(
        assets.iter().any(|(s, d, _)| s == "README.md"
            && installed_path(s, d) == "/usr/share/doc/oms-sync/README.md"),
        "README.md is not packaged"
    );
}

#[test]
fn deb_assets_point_at_files_that_exist() {
    let m = manifest();
    let bins: Vec<&str> = m["bin"]
        .as_array()
        .expect("[[bin]]")
        .iter()
        .map(|b| b["name"].as_str().expect("bin name"))
        .collect();
    let (_dir, generated) = generated_assets();
    let assets = assets();
    assert!(!assets.is_empty());
    for (src, dest, mode) in &assets {
        assert!(
            !dest.starts_with('/'),
            "{dest}: cargo-deb wants it relative"
        );
        assert!(
            u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o755),
            "{src}: mode {mode}"
        );
        if let Some(bin) = src.strip_prefix("target/release/") {
            assert!(bins.contains(&bin), "{src} is not a [[bin]] of this crate");
        } else if let Some(name) = src.strip_prefix("target/assets/") {
            assert!(
                generated.contains_key(name),
                "{src} is not written by generate-assets"
            );
        } else {
            assert!(root().join(src).is_file(), "{src} does not exist");
        }
    }
    // Everything generate-assets writes is shipped.
    for name in generated.keys() {
        assert!(
            assets
                .iter()
                .any(|(s, _, _)| s == &format!("target/assets/{name}")),
            "{name} is generated but not packaged"
        );
    }
    let deb = deb_metadata();
    let scripts = root().join(
        deb["maintainer-scripts"]
            .as_str()
            .expect("maintainer-scripts"),
    );
    for s in ["postinst", "prerm", "postrm"] {
        let p = scripts.join(s);
        let mode = std::fs::metadata(&p).expect(s).permissions();
        assert!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111 != 0,
            "{s} not executable"
        );
        let check = Command::new("sh")
            .arg("-n")
            .arg(&p)
            .output()
            .expect("sh -n");
        assert!(check.status.success(), "{s}: {check:?}");
    }
    let license = deb["license-file"].as_array().expect("license-file")[0]
        .as_str()
        .expect("license path");
    assert!(root().join(license).is_file());
}

#[test]
fn packaged_units_config_and_user_agree() {
    let assets = assets();
    let installed: Vec<String> = assets
        .iter()
        .map(|(s, d, _)| installed_path(s, d))
        .collect();
    let binary = installed_path("target/release/oms-sync", &{
        let (_, d, _) = assets
            .iter()
            .find(|(s, _, _)| s == "target/release/oms-sync")
            .expect("the binary is packaged");
        d.clone()
    });
    assert_eq!(binary, "/usr/bin/oms-sync");
    let conf = "/etc/oms-sync/oms-sync.toml";
    // cargo-deb marks everything under /etc as a conffile: only the config may be there.
    let under_etc: Vec<&String> = installed
        .iter()
        .filter(|p| p.starts_with("/etc/"))
        .collect();
    assert_eq!(under_etc, [conf]);
    let (conf_src, _, conf_mode) = assets
        .iter()
        .find(|(s, d, _)| installed_path(s, d) == conf)
        .expect("the conffile is packaged");
    assert_eq!(
        conf_mode, "640",
        "the config is readable by group oms-sync only"
    );
    let sysusers = std::fs::read_to_string(root().join("packaging/sysusers.d/oms-sync.conf"))
        .expect("sysusers.d file");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u oms-sync ")),
        "{sysusers}"
    );
    assert!(installed.contains(&"/usr/lib/sysusers.d/oms-sync.conf".to_owned()));
    for unit in [
        "oms-sync.service",
        "oms-sync-backfill.service",
        "oms-sync-backfill.timer",
    ] {
        assert!(
            installed.contains(&format!("/lib/systemd/system/{unit}")),
            "{unit} is not packaged"
        );
        if !unit.ends_with(".service") {
            continue;
        }
        let text = std::fs::read_to_string(root().join("systemd").join(unit)).expect("unit");
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        assert!(
            exec.starts_with(&format!("{binary} --config {conf}")),
            "{unit}: {exec}"
        );
        assert!(text.lines().any(|l| l == "User=oms-sync"), "{unit}");
        // The conffile reads the token from this credential.
        assert!(
            text.lines()
                .any(|l| l == "LoadCredential=oms-token:/etc/oms-sync/token"),
            "{unit}"
        );
    }
    let conf_text = std::fs::read_to_string(root().join(conf_src)).expect("conffile");
    assert!(conf_text.contains("token_file = \"$CREDENTIALS_DIRECTORY/oms-token\""));
}

fn run_with_env(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("OMS_SYNC__") || k == "CREDENTIALS_DIRECTORY" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run oms-sync")
}

/// What the package promises: the conffile plus the token as the `oms-token` credential is
/// a working setup (the URL is the one thing the operator must also set, here by environment).
#[tokio::test(flavor = "multi_thread")]
async fn packaged_config_syncs_with_the_token_as_a_credential_only() {
    let customers = synthetic_customers(250, 7);
    let oms = FakeOms::start(FakeOmsConfig::default(), customers)
        .await
        .expect("fake OMS starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("credentials dir");
    std::fs::write(creds.join("oms-token"), format!("{}\n", oms.token())).expect("token");
    let db = dir.path().join("warehouse.db");
    let conf = root().join("packaging/oms-sync.toml");
    let env = vec![
        ("CREDENTIALS_DIRECTORY", creds.display().to_string()),
        ("OMS_SYNC__API__BASE_URL", oms.base_url()),
        ("OMS_SYNC__WAREHOUSE__PATH", db.display().to_string()),
    ];
    let conf_arg = conf.display().to_string();
    let out =
        tokio::task::spawn_blocking(move || run_with_env(&["--config", &conf_arg, "--once"], &env))
            .await
            .expect("join");
    assert!(out.status.success(), "{out:?}");
    let n: i64 = rusqlite::Connection::open(&db)
        .expect("open warehouse")
        .query_row("SELECT count(*) FROM live_customers", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 250);

    // Without the credential the same file fails as a configuration error (exit 2), which
    // the unit does not restart in a loop.
    let (conf_arg, db_s, url) = (
        conf.display().to_string(),
        db.display().to_string(),
        oms.base_url(),
    );
    let out = tokio::task::spawn_blocking(move || {
        run_with_env(
            &["--config", &conf_arg, "--once"],
            &[
                ("OMS_SYNC__API__BASE_URL", url),
                ("OMS_SYNC__WAREHOUSE__PATH", db_s),
            ],
        )
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CREDENTIALS_DIRECTORY"),
        "{out:?}"
    );

    // 24.8: `check` by hand with the packaged config names both ways to run it, and the
    // environment one works: the token file given directly, every check passing.
    let conf_arg = conf.display().to_string();
    let (db_s, url) = (db.display().to_string(), oms.base_url());
    let out = tokio::task::spawn_blocking(move || {
        run_with_env(
            &["--config", &conf_arg, "check"],
            &[
                ("OMS_SYNC__API__BASE_URL", url),
                ("OMS_SYNC__WAREHOUSE__PATH", db_s),
            ],
        )
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    for fix in [
        "systemd-run --pipe --wait -p User=oms-sync -p LoadCredential=oms-token:/etc/oms-sync/token",
        "OMS_SYNC__API__TOKEN_FILE=",
    ] {
        assert!(stdout.contains(fix), "{fix} not named: {stdout}");
    }
    let conf_arg = conf.display().to_string();
    let (db_s, url) = (db.display().to_string(), oms.base_url());
    let token = creds.join("oms-token").display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_with_env(
            &["--config", &conf_arg, "check"],
            &[
                ("OMS_SYNC__API__BASE_URL", url),
                ("OMS_SYNC__WAREHOUSE__PATH", db_s),
                ("OMS_SYNC__API__TOKEN_FILE", token),
            ],
        )
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("checks passed"), "{stdout}");
}

#[test]
fn installed_path_follows_cargo_deb_directory_rule() {
    assert_eq!(
        installed_path("target/release/oms-sync", "usr/bin/"),
        "/usr/bin/oms-sync"
    );
    assert_eq!(installed_path("a/b.conf", "etc/x/c.conf"), "/etc/x/c.conf");
}

/// The dashboard and the alert rules (with their promtool tests) ship under
/// /usr/share/oms-sync, where the README says to import them from.
#[test]
fn dashboard_and_alert_rules_are_packaged() {
    let assets = assets();
    for dir in ["packaging/grafana", "packaging/prometheus"] {
        let mut n = 0;
        for e in std::fs::read_dir(root().join(dir)).expect(dir) {
            let name = e.expect("dir entry").file_name();
            let src = format!("{dir}/{}", name.to_string_lossy());
            let (_, dest, mode) = assets
                .iter()
                .find(|(s, _, _)| s == &src)
                .unwrap_or_else(|| panic!("{src} is not packaged"));
            let installed = installed_path(&src, dest);
            let sub = dir.trim_start_matches("packaging/");
            assert_eq!(
                installed,
                format!("/usr/share/oms-sync/{sub}/{}", name.to_string_lossy())
            );
            assert_eq!(mode, "644", "{src}");
            n += 1;
        }
        assert!(n > 0, "{dir} is empty");
    }
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    for path in [
        "/usr/share/oms-sync/grafana/oms-sync-dashboard.json",
        "/usr/share/oms-sync/prometheus/oms-sync-alerts.yml",
    ] {
        assert!(
            readme.contains(path),
            "the README does not say where {path} is"
        );
    }
}

/// `oms-sync --help` (the real binary) names where the config lives, as the package installs
/// it, and the main keys with their defaults; a config that sets each of those keys to the
/// default the help prints passes validation (`check` gets past its config step).
#[test]
fn long_help_names_config_locations_and_main_keys() {
    let out = run_with_env(&["--help"], &[]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let installed: Vec<String> = assets()
        .iter()
        .map(|(s, d, _)| installed_path(s, d))
        .collect();
    for path in [
        "/etc/oms-sync/oms-sync.toml",
        "/usr/share/doc/oms-sync/oms-sync.example.toml",
    ] {
        assert!(help.contains(path), "--help does not name {path}:\n{help}");
        assert!(
            installed.contains(&path.to_owned()),
            "{path} is not packaged"
        );
    }
    let unit = std::fs::read_to_string(root().join("systemd/oms-sync.service")).expect("unit");
    assert!(unit.contains("--config /etc/oms-sync/oms-sync.toml"));

    // "  section.key   meaning (default)": the keys, and the defaults that are values.
    let mut keys = Vec::new();
    let mut defaults = Vec::new();
    for line in help
        .lines()
        .skip_while(|l| !l.starts_with("Main keys"))
        .skip(1)
    {
        let Some(rest) = line.strip_prefix("  ") else {
            break;
        };
        let key = rest.split_whitespace().next().expect("a key");
        keys.push(key.to_owned());
        if let Some(open) = rest.rfind(" (") {
            let value = rest[open + 2..].trim_end_matches(')');
            if value.starts_with('"') || value.parse::<u64>().is_ok() {
                defaults.push((key.to_owned(), value.to_owned()));
            }
        }
    }
    for key in [
        "api.base_url",
        "api.token_file",
        "warehouse.path",
        "sync.interval",
        "sync.lookback",
        "api.concurrency",
        "log.level",
        "metrics.listen",
    ] {
        assert!(keys.iter().any(|k| k == key), "--help lacks {key}:\n{help}");
    }
    assert!(defaults.len() >= 5, "too few defaults parsed: {defaults:?}");

    // Every printed default is a valid value of its key.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in &defaults {
        let (section, name) = key.split_once('.').expect("section.key");
        sections
            .entry(section.to_owned())
            .or_default()
            .push(format!("{name} = {value}"));
    }
    let api = sections.entry("api".into()).or_default();
    // Nothing listens on port 9 of loopback: the API steps fail, after the config step.
    api.push("base_url = \"http://127.0.0.1:9\"".into());
    api.push("token = \"not-a-real-key\"".into());
    sections
        .entry("warehouse".into())
        .or_default()
        .push(format!(
            "path = {:?}",
            dir.path().join("wh.db").to_str().expect("UTF-8 path")
        ));
    let text: String = sections
        .iter()
        .map(|(s, lines)| format!("[{s}]\n{}\n", lines.join("\n")))
        .collect();
    let conf = dir.path().join("help-defaults.toml");
    std::fs::write(&conf, &text).expect("write config");
    let out = run_with_env(&["--config", conf.to_str().expect("UTF-8"), "check"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("config")),
        "the help's defaults do not validate:\n{text}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
