use super::*;
use crate::warehouse::postgres::password::LibpqEnv;

fn parse(url: &str) -> Result<PgConfig, WarehouseError> {
    PgConfig::parse_in(url, None, None, false, None)
}

#[test]
fn tcp_and_unix_socket_forms() {
    let c = parse("postgresql://oms@127.0.0.1:5433/wh?sslmode=disable").unwrap();
    assert_eq!(
        (c.user.as_str(), &c.hosts[..], c.dbname.as_str()),
        ("oms", &[(PgHost::Tcp("127.0.0.1".into()), 5433)][..], "wh")
    );
    assert_eq!((c.sslmode, c.schema.as_str()), (SslMode::Disable, "public"));
    let c = parse("postgresql://oms@/warehouse?host=/run/postgresql").unwrap();
    assert_eq!(c.hosts, [(PgHost::Unix("/run/postgresql".into()), 5432)]);
    assert_eq!(c.dbname, "warehouse");
    let c = parse("postgres://oms@[::1]/wh").unwrap();
    assert_eq!(
        (c.hosts, c.sslmode),
        (vec![(PgHost::Tcp("::1".into()), 5432)], SslMode::Prefer)
    );
    for bad in [
        "mysql://oms@h/wh",
        "postgresql://h/wh",
        "postgresql://oms@h",
        "postgresql://oms@/wh",
        "postgresql://oms@h/wh?host=/tmp",
        "postgresql://oms@h/wh?sslmode=verify-ca",
        "postgresql://oms@h/wh?sslmode=require&sslrootcert=/ca.pem",
        "postgresql://oms@localhost/wh?sslmod=disable",
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(
            e.starts_with("warehouse.url ") && e.contains("fix: "),
            "{bad}: {e}"
        );
    }
}

#[test]
fn sslmodes_and_the_remote_plaintext_rule() {
    for (m, want) in [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-full", SslMode::VerifyFull),
    ] {
        let c = parse(&format!("postgresql://u@localhost/d?sslmode={m}")).unwrap();
        assert_eq!(c.sslmode, want);
    }
    for m in ["require", "verify-full"] {
        parse(&format!("postgresql://u@db.example.com/d?sslmode={m}")).unwrap();
    }
    for url in [
        "postgresql://u@db.example.com/d?sslmode=disable",
        "postgresql://u@db.example.com/d?sslmode=prefer",
        "postgresql://u@10.0.0.5/d",
    ] {
        let e = parse(url).unwrap_err().to_string();
        assert!(
            e.contains("unencrypted") && e.contains("allow_insecure"),
            "{e}"
        );
        PgConfig::parse_in(url, None, None, true, None).unwrap();
    }
    let c = parse("postgresql://u@db.example.com/d?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        .unwrap();
    assert_eq!(c.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
}

#[test]
fn passwords_never_show() {
    let c = parse("postgresql://oms:s3cr%40t@127.0.0.1/wh").unwrap();
    assert_eq!(c.password.as_deref(), Some("s3cr@t"));
    for shown in [format!("{c:?}"), c.to_string(), c.location()] {
        assert!(
            !shown.contains("s3cr") && shown.contains(":***@"),
            "{shown}"
        );
    }
    assert_eq!(
        c.redacted_url(),
        "postgresql://oms:***@127.0.0.1:5432/wh?sslmode=prefer"
    );
    // The driver's own Debug must not leak it either.
    assert!(!format!("{:?}", c.driver_config_in(&LibpqEnv::default())).contains("s3cr"));
    // Errors about a URL with a password do not echo it.
    let e = parse("postgresql://oms:s3cr%40t@db.example.com/wh?sslmode=disable")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("s3cr"), "{e}");
}

#[test]
fn password_file_with_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg"), "hunter2\n").unwrap();
    let c = PgConfig::parse_in(
        "postgresql://oms@/wh?host=/run/postgresql",
        Some("$CREDENTIALS_DIRECTORY/pg"),
        Some("oms"),
        false,
        Some(dir.path()),
    )
    .unwrap();
    assert_eq!(
        (c.password.as_deref(), c.schema.as_str()),
        (Some("hunter2"), "oms")
    );
    assert!(!format!("{c:?} {c}").contains("hunter2"));
    let e = PgConfig::parse_in(
        "postgresql://oms:x@/wh?host=/tmp",
        Some("$CREDENTIALS_DIRECTORY/pg"),
        None,
        false,
        Some(dir.path()),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("warehouse.password_file "), "{e}");
    let e = PgConfig::parse_in(
        "postgresql://oms@/wh?host=/tmp",
        Some("$CREDENTIALS_DIRECTORY/pg"),
        None,
        false,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("$CREDENTIALS_DIRECTORY"), "{e}");
    for bad in ["Oms", "a-b", "", "1x", "x; drop table y"] {
        let e = PgConfig::parse_in("postgresql://u@/d?host=/tmp", None, Some(bad), false, None)
            .unwrap_err();
        assert!(e.to_string().starts_with("warehouse.schema "), "{e}");
    }
}

#[test]
fn several_hosts_with_their_ports_and_session_attrs() {
    let c = parse("postgresql://u@h1.lan:5432,h2.lan:5433,[::1]/db?target_session_attrs=read-write&sslmode=require").unwrap();
    assert_eq!(
        c.hosts,
        [
            (PgHost::Tcp("h1.lan".into()), 5432),
            (PgHost::Tcp("h2.lan".into()), 5433),
            (PgHost::Tcp("::1".into()), 5432)
        ]
    );
    assert_eq!(c.target_session_attrs, SessionAttrs::ReadWrite);
    assert_eq!(
        c.redacted_url(),
        "postgresql://u@h1.lan:5432,h2.lan:5433,[::1]:5432/db?sslmode=require&target_session_attrs=read-write"
    );
    // The driver gets every host with its own port, and the session requirement.
    let d = c.driver_config_in(&LibpqEnv::default());
    assert_eq!(d.get_hosts().len(), 3);
    assert_eq!(d.get_ports(), [5432, 5433, 5432]);
    assert_eq!(
        d.get_target_session_attrs(),
        postgres::config::TargetSessionAttrs::ReadWrite
    );
    for (v, want) in [
        ("any", SessionAttrs::Any),
        ("read-only", SessionAttrs::ReadOnly),
    ] {
        let c = parse(&format!(
            "postgresql://u@localhost/d?target_session_attrs={v}"
        ))
        .unwrap();
        assert_eq!(c.target_session_attrs, want);
    }
    for v in ["primary", "standby", "prefer-standby", "rw"] {
        let e = parse(&format!(
            "postgresql://u@localhost/d?target_session_attrs={v}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("warehouse.url ")
                && e.contains(v)
                && e.contains("fix: use target_session_attrs=read-write"),
            "{e}"
        );
    }
    // One non-loopback host among loopback ones still needs TLS.
    let e = parse("postgresql://u@127.0.0.1:5432,db.example.com:5432/d")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unencrypted"), "{e}");
}

#[test]
fn libpq_query_parameters() {
    // The unix-socket form with a port (refused before as "unsupported parameter port").
    let c = parse("postgresql://u@/db?host=/run/postgresql&port=5433").unwrap();
    assert_eq!(c.hosts, [(PgHost::Unix("/run/postgresql".into()), 5433)]);
    assert_eq!(
        c.redacted_url(),
        "postgresql://u@/db?host=/run/postgresql&port=5433&sslmode=prefer"
    );
    // host, port, dbname and user all as parameters; lists pair up in order.
    let c = parse("postgresql:///?host=127.0.0.1,/tmp&port=5001,5002&dbname=wh&user=oms").unwrap();
    assert_eq!(
        (c.user.as_str(), c.dbname.as_str(), &c.hosts[..]),
        (
            "oms",
            "wh",
            &[
                (PgHost::Tcp("127.0.0.1".into()), 5001),
                (PgHost::Unix("/tmp".into()), 5002)
            ][..]
        )
    );
    // A socket directory percent-encoded in the authority, as libpq allows.
    let c = parse("postgresql://u@%2Fvar%2Frun%2Fpostgresql:5434/db").unwrap();
    assert_eq!(
        c.hosts,
        [(PgHost::Unix("/var/run/postgresql".into()), 5434)]
    );
    // One port for every host.
    let c = parse("postgresql://u@/db?host=/a,/b&port=6000").unwrap();
    assert_eq!(
        c.hosts.iter().map(|h| h.1).collect::<Vec<_>>(),
        [6000, 6000]
    );
    // connect_timeout and application_name reach the driver; their defaults otherwise.
    let c = parse("postgresql://u@localhost/d").unwrap();
    assert_eq!(
        (c.connect_timeout, c.application_name.as_str()),
        (CONNECT_TIMEOUT, "oms-sync")
    );
    let c = parse("postgresql://u@localhost/d?connect_timeout=3&application_name=etl%20a").unwrap();
    let d = c.driver_config_in(&LibpqEnv::default());
    assert_eq!(d.get_connect_timeout(), Some(&Duration::from_secs(3)));
    assert_eq!(d.get_application_name(), Some("etl a"));
    for (bad, names) in [
        ("postgresql://u@h1:5432,h2:x/d", "port"),
        ("postgresql://u@h1:70000/d", "port"),
        ("postgresql://u@h1,,h2/d", "empty host"),
        ("postgresql://u@/d?host=/a,/b,/c&port=1,2", "3 hosts"),
        ("postgresql://u@h:5432/d?port=5433", "ports"),
        ("postgresql://u@localhost/d?dbname=e", "dbname"),
        ("postgresql://u@localhost/d?user=v", "user"),
        (
            "postgresql://u@localhost/d?connect_timeout=0",
            "connect_timeout",
        ),
        (
            "postgresql://u@localhost/d?connect_timeout=soon",
            "connect_timeout",
        ),
        ("postgresql://u@localhost/d?sslmode", "without a value"),
        ("postgresql://u@localhost/d?passfile=/x", "passfile"),
        ("postgresql://u@[::1/d", "IPv6"),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(
            e.starts_with("warehouse.url ") && e.contains(names) && e.contains("fix: "),
            "{bad}: {e}"
        );
    }
    // A password in a multi-host URL is decoded, and never shown.
    let c = parse("postgresql://u:p%40ss@127.0.0.1:1,127.0.0.1:2/d").unwrap();
    assert_eq!(c.password.as_deref(), Some("p@ss"));
    assert!(!c.to_string().contains("p@ss") && c.to_string().contains(":***@"));
}

fn pass_env(dir: &Path, pgpassword: Option<&str>) -> LibpqEnv {
    LibpqEnv {
        pgpassword: pgpassword.map(str::to_string),
        pgpassfile: None,
        home: Some(dir.to_path_buf()),
    }
}

fn password_sent(c: &PgConfig, env: &LibpqEnv) -> Option<String> {
    c.driver_config_in(env)
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

#[test]
fn pgpassword_and_pgpass_come_after_the_configured_password() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        "# comment\n\
         other:5432:*:oms:wrong\n\
         h2.lan:5433:wh:oms:from\\:pgpass\\\\2\n\
         /srv/pg:5432:wh:oms:socket-dir\n\
         *:*:*:oms:fallback\n",
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = "postgresql://oms@h2.lan:5433/wh?sslmode=require";
    let c = parse(url).unwrap();
    // Nothing configured: PGPASSWORD first, then the file's first matching line.
    assert_eq!(
        password_sent(&c, &pass_env(home.path(), Some("env-pw"))).as_deref(),
        Some("env-pw")
    );
    assert_eq!(
        password_sent(&c, &pass_env(home.path(), None)).as_deref(),
        Some("from:pgpass\\2")
    );
    assert_eq!(
        password_sent(&c, &pass_env(home.path(), Some(""))).as_deref(),
        Some("from:pgpass\\2"),
        "an empty PGPASSWORD counts as unset, as in libpq"
    );
    // Wildcards, and a socket directory matched by its path.
    let c2 = parse("postgresql://oms@db.lan:6000/x?sslmode=require").unwrap();
    assert_eq!(
        password_sent(&c2, &pass_env(home.path(), None)).as_deref(),
        Some("fallback")
    );
    let c3 = parse("postgresql://oms@/wh?host=/srv/pg").unwrap();
    assert_eq!(
        password_sent(&c3, &pass_env(home.path(), None)).as_deref(),
        Some("socket-dir")
    );
    // No match for another user.
    let c4 = parse("postgresql://bob@h2.lan:5433/wh?sslmode=require").unwrap();
    assert_eq!(password_sent(&c4, &pass_env(home.path(), None)), None);
    // password_file and the URL's password win over both.
    let pwfile = home.path().join("pw");
    std::fs::write(&pwfile, "from-file\n").unwrap();
    let c5 = PgConfig::parse_in(url, pwfile.to_str(), None, false, None).unwrap();
    assert_eq!(
        password_sent(&c5, &pass_env(home.path(), Some("env-pw"))).as_deref(),
        Some("from-file")
    );
    let c6 = parse("postgresql://oms:in-url@h2.lan:5433/wh?sslmode=require").unwrap();
    assert_eq!(
        password_sent(&c6, &pass_env(home.path(), Some("env-pw"))).as_deref(),
        Some("in-url")
    );
    // PGPASSFILE names another file.
    let other = home.path().join("elsewhere");
    std::fs::write(&other, "*:*:*:*:named\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o400)).unwrap();
    let env = LibpqEnv {
        pgpassfile: Some(other.clone()),
        ..pass_env(home.path(), None)
    };
    assert_eq!(password_sent(&c, &env).as_deref(), Some("named"));
    // Readable by group or world: ignored (libpq warns and skips it).
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            password_sent(&c, &pass_env(home.path(), None)),
            None,
            "mode {mode:o}"
        );
    }
    // A directory in its place, or no file at all: no password, no failure.
    assert_eq!(
        password_sent(
            &c,
            &LibpqEnv {
                pgpassfile: Some(home.path().to_path_buf()),
                ..LibpqEnv::default()
            }
        ),
        None
    );
    assert_eq!(password_sent(&c, &LibpqEnv::default()), None);
    // Whatever the source, the config never shows the password.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = c.driver_config_in(&pass_env(home.path(), None));
    assert!(!format!("{d:?} {c:?} {c}").contains("pgpass"), "{d:?}");
}

#[test]
fn pgpass_lines_as_libpq_reads_them() {
    use crate::warehouse::postgres::password::pgpass_lookup;
    let text =
        "h:1:d:u:first\nh:1:d:u:second\n\n#h:1:d:v:commented\nh:1:d:v:pw:extra\r\nshort:line\n";
    assert_eq!(
        pgpass_lookup(text, "h", "1", "d", "u").as_deref(),
        Some("first")
    );
    assert_eq!(
        pgpass_lookup(text, "h", "1", "d", "v").as_deref(),
        Some("pw")
    );
    assert_eq!(pgpass_lookup(text, "h", "2", "d", "u"), None);
    assert_eq!(pgpass_lookup(text, "short", "line", "d", "u"), None);
}
