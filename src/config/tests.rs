//! Unit tests of loading and validation.

use super::validate::Origin;
use super::*;

mod basics {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    const MINIMAL: &str = r#"
        [api]
        base_url = "https://oms.example.com"
        token = "abc123"
        [warehouse]
        path = "/tmp/x.db"
    "#;

    /// The example config and the packaged one show the defaults they document: a value
    /// left over from an older default (both said `concurrency = 1` after the default became
    /// 8) would change every install started from them.
    #[test]
    fn shipped_configs_state_the_defaults() {
        for (name, text) in [
            (
                "config/oms-sync.example.toml",
                include_str!("../../config/oms-sync.example.toml"),
            ),
            (
                "packaging/oms-sync.toml",
                include_str!("../../packaging/oms-sync.toml"),
            ),
        ] {
            // The token files they name exist only on a configured host.
            let text: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("token_file"))
                .map(|l| format!("{l}\n"))
                .collect();
            let c = load(&text, &[("OMS_SYNC__API__TOKEN", "abc123")])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = (
                c.api.page_size,
                c.api.timeout,
                c.api.max_retries,
                c.api.retry_min_delay,
                c.api.retry_max_delay,
                c.api.concurrency,
                c.sync.interval,
                c.sync.lookback,
                c.sync.reconcile_every,
                c.sync.keep_runs,
                c.sync.streams,
            );
            let want = (
                DEFAULT_PAGE_SIZE,
                DEFAULT_TIMEOUT,
                DEFAULT_MAX_RETRIES,
                DEFAULT_RETRY_MIN_DELAY,
                DEFAULT_RETRY_MAX_DELAY,
                DEFAULT_CONCURRENCY,
                DEFAULT_INTERVAL,
                DEFAULT_LOOKBACK,
                DEFAULT_RECONCILE_EVERY,
                DEFAULT_KEEP_RUNS,
                crate::stream::Stream::DEFAULT.to_vec(),
            );
            assert_eq!(got, want, "{name}");
        }
    }

    /// `sync.keep_runs`: days from the file or the environment, `"0s"` keeps every run, and a
    /// word that is no duration is refused naming the key.
    #[test]
    fn keep_runs_takes_days_and_zero() {
        assert_eq!(
            load(MINIMAL, &[]).unwrap().sync.keep_runs,
            DEFAULT_KEEP_RUNS
        );
        let c = load(MINIMAL, &[("OMS_SYNC__SYNC__KEEP_RUNS", "0s")]).unwrap();
        assert!(c.sync.keep_runs.is_zero());
        let c = load(MINIMAL, &[("OMS_SYNC__SYNC__KEEP_RUNS", "30d")]).unwrap();
        assert_eq!(c.sync.keep_runs, Duration::from_secs(30 * 86400));
        let text = format!("{MINIMAL}\n[sync]\nkeep_runs = \"12h\"\n");
        assert_eq!(
            load(&text, &[]).unwrap().sync.keep_runs,
            Duration::from_secs(12 * 3600)
        );
        let e = load(MINIMAL, &[("OMS_SYNC__SYNC__KEEP_RUNS", "forever")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sync.keep_runs"), "{e}");
    }

    #[test]
    fn defaults_apply() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.api.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(c.api.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(c.sync.interval, Duration::from_secs(60));
        assert_eq!(c.sync.lookback, DEFAULT_LOOKBACK);
        assert!(!DEFAULT_LOOKBACK.is_zero());
        assert_eq!(c.sync.reconcile_every, DEFAULT_RECONCILE_EVERY);
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.metrics.listen.is_none());
    }

    /// History mode is off unless asked for, in the file or the environment.
    #[test]
    fn history_is_opt_in() {
        assert!(!load(MINIMAL, &[]).unwrap().sync.history);
        assert!(
            load(MINIMAL, &[("OMS_SYNC__SYNC__HISTORY", "true")])
                .unwrap()
                .sync
                .history
        );
        let e = load(MINIMAL, &[("OMS_SYNC__SYNC__HISTORY", "yes please")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("history"), "{e}");
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            MINIMAL,
            &[
                ("OMS_SYNC__API__TOKEN", "from-env"),
                ("OMS_SYNC__API__PAGE_SIZE", "250"),
                ("OMS_SYNC__SYNC__LOOKBACK", "7m"),
            ],
        )
        .unwrap();
        assert_eq!(c.api.token.expose(), "from-env");
        assert_eq!(c.api.page_size, 250);
        assert_eq!(c.sync.lookback, Duration::from_secs(420));
    }

    /// `"0s"` turns the daemon's scheduled reconciliation off; days are accepted.
    #[test]
    fn reconcile_every_takes_days_and_zero() {
        let c = load(MINIMAL, &[("OMS_SYNC__SYNC__RECONCILE_EVERY", "0s")]).unwrap();
        assert!(c.sync.reconcile_every.is_zero());
        let c = load(MINIMAL, &[("OMS_SYNC__SYNC__RECONCILE_EVERY", "3d")]).unwrap();
        assert_eq!(c.sync.reconcile_every, Duration::from_secs(3 * 86400));
        let e = load(MINIMAL, &[("OMS_SYNC__SYNC__RECONCILE_EVERY", "weekly")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sync.reconcile_every"), "{e}");
    }

    /// `sync.streams`: customers alone by default; a list from the file or from one variable
    /// (comma-separated, in order); an unknown or repeated name or an empty list is an error
    /// naming the key, the value and the valid names.
    #[test]
    fn streams_are_chosen_by_name() {
        use crate::stream::Stream;
        assert_eq!(
            load(MINIMAL, &[]).unwrap().sync.streams,
            [Stream::Customers]
        );
        let file =
            format!("{MINIMAL}\n[sync]\nstreams = [\"customer_addresses\", \"customers\"]\n");
        assert_eq!(
            load(&file, &[]).unwrap().sync.streams,
            [Stream::CustomerAddresses, Stream::Customers]
        );
        let c = load(
            MINIMAL,
            &[(
                "OMS_SYNC__SYNC__STREAMS",
                "customers,stock_locations, customer_addresses",
            )],
        )
        .unwrap();
        assert_eq!(c.sync.streams, Stream::ALL);
        // The token is not split on its comma.
        let c = load(MINIMAL, &[("OMS_SYNC__API__TOKEN", "a,b")]).unwrap();
        assert_eq!(c.api.token.expose(), "a,b");
        let e = load(MINIMAL, &[("OMS_SYNC__SYNC__STREAMS", "customers,orders")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sync.streams"), "{e}");
        assert!(e.contains("\"orders\""), "{e}");
        assert!(
            e.contains("customers, stock_locations, customer_addresses"),
            "{e}"
        );
        let twice = format!("{MINIMAL}\n[sync]\nstreams = [\"customers\", \"customers\"]\n");
        assert!(load(&twice, &[]).unwrap_err().to_string().contains("twice"));
        let empty = format!("{MINIMAL}\n[sync]\nstreams = []\n");
        let e = load(&empty, &[]).unwrap_err().to_string();
        assert!(e.contains("sync.streams") && e.contains("empty"), "{e}");
    }

    #[test]
    fn numeric_token_from_env_stays_a_string() {
        let c = load(MINIMAL, &[("OMS_SYNC__API__TOKEN", "12345")]).unwrap();
        assert_eq!(c.api.token.expose(), "12345");
    }

    #[test]
    fn token_is_never_in_debug() {
        let c = load(MINIMAL, &[]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("abc123"), "{dbg}");
        assert!(dbg.contains("***"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("[warehouse]\npath=\"x\"", "api.base_url"),
            (
                "[api]\nbase_url=\"https://h\"\n[warehouse]\npath=\"x\"",
                "api.token",
            ),
            (
                "[api]\nbase_url=\"oms.example.com\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"",
                "api.base_url",
            ),
            (
                "[api]\nbase_url=\"http://oms.example.com\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"",
                "api.base_url",
            ),
            (
                "[api]\nbase_url=\"https://h/api/v1\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"",
                "api.base_url",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\npage_size=0\n[warehouse]\npath=\"x\"",
                "api.page_size",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"\n[sync]\ninterval=\"soon\"",
                "sync.interval",
            ),
            ("[api]\nbase_url=\"https://h\"\ntoken=\"t\"\n[api]", "api"),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\npagesize=3\n[warehouse]\npath=\"x\"",
                "pagesize",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"\n[log]\nformat=\"xml\"",
                "log.format",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken_file=\"/nonexistent/token\"\n[warehouse]\npath=\"x\"",
                "api.token_file",
            ),
        ];
        for (text, key) in cases {
            let err = load(text, &[]).expect_err(text).to_string();
            assert!(
                err.contains(key),
                "{text:?} gave {err:?}, expected it to name {key}"
            );
            assert!(err.contains("fix"), "{err}");
        }
    }

    #[test]
    fn loopback_http_is_allowed_and_insecure_needs_opt_in() {
        assert!(parse_base_url("http://127.0.0.1:8080", false).is_ok());
        assert!(parse_base_url("http://localhost:8080/", false).is_ok());
        assert!(parse_base_url("http://[::1]:8080", false).is_ok());
        assert!(parse_base_url("http://oms.internal", false).is_err());
        assert!(parse_base_url("http://oms.internal", true).is_ok());
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "secret-from-file\n").unwrap();
        let text = format!(
            "[api]\nbase_url=\"https://h\"\ntoken_file={:?}\n[warehouse]\npath=\"x\"",
            f.display().to_string()
        );
        let c = load(&text, &[]).unwrap();
        assert_eq!(c.api.token.expose(), "secret-from-file");
    }

    #[test]
    fn credentials_directory_is_expanded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oms-token"), "cred-token").unwrap();
        let raw = super::raw::RawApi {
            base_url: Some("https://h".into()),
            token_file: Some("$CREDENTIALS_DIRECTORY/oms-token".into()),
            ..super::raw::RawApi::default()
        };
        let origin = Origin {
            has_file: true,
            credentials_dir: Some(dir.path()),
        };
        let api = super::validate::validate_api(raw, origin).unwrap();
        assert_eq!(api.token.expose(), "cred-token");
    }
}

mod type_errors {
    use super::*;

    #[test]
    fn wrong_types_name_the_key_and_never_echo_a_token() {
        let base = "[api]\nbase_url=\"https://h\"\n[warehouse]\npath=\"x\"\n";
        for (extra_api, key) in [
            ("token = \"t\"\npage_size = \"many\"", "page_size"),
            (
                "token = \"t\"\nallow_insecure_http = \"maybe\"",
                "allow_insecure_http",
            ),
            ("token = \"t\"\ntimeout = 30", "timeout"),
            ("token = [\"secret-in-list\"]", "token"),
        ] {
            let text = base.replace("[api]\n", &format!("[api]\n{extra_api}\n"));
            let err = Config::from_toml_with_env(&text, std::iter::empty())
                .map(|_| ())
                .expect_err(extra_api)
                .to_string();
            assert!(err.contains(key), "{extra_api}: {err}");
            assert!(!err.contains("secret-in-list"), "{err}");
        }
    }
}

mod operator_defects {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    const BASE: &str = "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"\n";

    /// Issue 11.1: a bare word parses as a tracing target and silences every event.
    #[test]
    fn misspelt_log_level_is_rejected_naming_the_key() {
        for bad in ["eror", "verbose", "oms_sync=loud", "info,chatty"] {
            let err = load(&format!("{BASE}[log]\nlevel=\"{bad}\""), &[])
                .map(|_| ())
                .expect_err(bad)
                .to_string();
            assert!(err.contains("log.level") && err.contains("fix:"), "{err}");
        }
        for good in [
            "error",
            "WARN",
            "oms_sync=debug,info",
            "hyper=off,trace",
            "off",
        ] {
            let c = load(&format!("{BASE}[log]\nlevel=\"{good}\""), &[]);
            assert!(c.is_ok(), "{good}: {:?}", c.err());
        }
    }

    /// Issue 11.7: the key named is the one the token came from.
    #[test]
    fn an_empty_token_file_names_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "\n").unwrap();
        let text = format!(
            "[api]\nbase_url=\"https://h\"\ntoken_file={:?}\n[warehouse]\npath=\"x\"",
            f.display().to_string()
        );
        let err = load(&text, &[]).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("`api.token_file`"), "{err}");
        assert!(!err.contains("`api.token`"), "{err}");
    }

    #[test]
    fn a_missing_token_names_both_keys_and_both_variables() {
        let err = load(
            "[api]\nbase_url=\"https://h\"\n[warehouse]\npath=\"x\"",
            &[],
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        for needle in [
            "api.token_file",
            "OMS_SYNC__API__TOKEN ",
            "OMS_SYNC__API__TOKEN_FILE",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    /// Issue 11.3: every key may come from the environment.
    #[test]
    fn no_file_is_needed_when_the_environment_has_the_keys() {
        let env = [
            ("OMS_SYNC__API__BASE_URL", "https://h"),
            ("OMS_SYNC__API__TOKEN", "t"),
            ("OMS_SYNC__WAREHOUSE__PATH", "/tmp/w.db"),
        ];
        let c = Config::load_with_env(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        assert!(
            matches!(&c.warehouse, WarehouseConfig::Sqlite { path } if path.as_path() == std::path::Path::new("/tmp/w.db"))
        );
        let err = Config::load_with_env(None, std::iter::empty())
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--config") && err.contains("fix:"), "{err}");
        // Without a file, a missing key's fix does not send the user to a file they lack.
        let err = Config::load_with_env(
            None,
            [("OMS_SYNC__API__TOKEN".to_string(), "t".to_string())],
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(err.contains("OMS_SYNC__API__BASE_URL"), "{err}");
        assert!(!err.contains("in the config file"), "{err}");
    }

    #[test]
    fn db_argument_names_a_file_or_a_postgresql_schema() {
        assert!(matches!(
            WarehouseConfig::from_db_arg("demo.db").unwrap(),
            WarehouseConfig::Sqlite { path } if path == std::path::Path::new("demo.db")
        ));
        let WarehouseConfig::Postgres(pg) =
            WarehouseConfig::from_db_arg("postgresql://u@127.0.0.1/db?sslmode=disable&schema=oms")
                .unwrap()
        else {
            panic!("a PostgreSQL location")
        };
        assert_eq!(pg.schema, "oms");
        assert_eq!(pg.dbname, "db");
        let WarehouseConfig::Postgres(pg) =
            WarehouseConfig::from_db_arg("postgresql://u@127.0.0.1/db").unwrap()
        else {
            panic!("a PostgreSQL location")
        };
        assert_eq!(pg.schema, "public");
    }
}
