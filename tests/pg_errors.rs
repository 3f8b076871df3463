//! PostgreSQL failures through the real binary against the real server in
//! `OMS_SYNC_TEST_PG_URL`: each names the fix that applies (a role without CREATE rights, a
//! schema without a warehouse, the demo's own schema), and `check` leaves no schema behind.

mod common;

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

async fn run(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG").envs(env).args(args);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run oms-sync")
}

/// Runs SQL as the test server's superuser, off the runtime's workers.
fn admin(url: &str, sql: &str) -> Result<(), postgres::Error> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
        c.batch_execute(&sql)
    })
    .join()
    .expect("admin thread")
}

fn schema_exists(url: &str, schema: &str) -> bool {
    let (url, schema) = (url.to_string(), schema.to_string());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .expect("query")
            .is_some()
    })
    .join()
    .expect("thread")
}

/// `url` with another user in it.
fn as_user(url: &str, user: &str) -> String {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    format!("postgresql://{user}@{rest}")
}

fn pg_url() -> Option<String> {
    let url = std::env::var(common::PG_ENV).ok();
    if url.is_none() {
        eprintln!("skipped: {} is not set", common::PG_ENV);
    }
    url
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 24.10: a role that may not create the schema is told the GRANT that fixes it, and with
/// that grant the same run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_create_rights_is_told_the_grant() {
    let Some(url) = pg_url() else { return };
    let role = format!("nocreate_{}", std::process::id());
    let schema = format!("denied_{}", std::process::id());
    admin(
        &url,
        &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"),
    )
    .expect("role");
    let oms = common::fake(common::distinct(5)).await;
    let env = vec![
        ("OMS_SYNC__API__BASE_URL", oms.base_url()),
        ("OMS_SYNC__API__TOKEN", oms.token()),
        ("OMS_SYNC__WAREHOUSE__URL", as_user(&url, &role)),
        ("OMS_SYNC__WAREHOUSE__SCHEMA", schema.clone()),
    ];
    let out = run(vec!["--once".into()], env.clone()).await;
    let err = stderr(&out);
    let dbname = url
        .rsplit('/')
        .next()
        .and_then(|d| d.split('?').next())
        .unwrap_or("postgres");
    let grant = format!("GRANT CREATE ON DATABASE {dbname} TO {role}");
    let first = (
        out.status.code(),
        err.contains("permission denied"),
        err.contains(&grant),
    );
    // The fix as the error words it.
    admin(&url, &format!("{grant};")).expect("grant");
    let after = run(vec!["--once".into()], env).await;
    let _ = admin(
        &url,
        &format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; REVOKE CREATE ON DATABASE {dbname} FROM {role}; DROP ROLE {role}"
        ),
    );
    assert_eq!(first, (Some(5), true, true), "{err}");
    assert!(!err.contains("server is running"), "{err}");
    assert_eq!(after.status.code(), Some(0), "{}", stderr(&after));
}

/// 24.10: `status --db` on a schema without a warehouse, or no schema at all, says so and
/// what to run, not "cannot connect".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_on_a_schema_without_a_warehouse_says_so_not_cannot_connect() {
    let Some(url) = pg_url() else { return };
    let empty = format!("empty_{}", std::process::id());
    admin(&url, &format!("CREATE SCHEMA IF NOT EXISTS {empty}")).expect("schema");
    let missing = format!("missing_{}", std::process::id());
    let mut seen = Vec::new();
    for (schema, says) in [
        (&empty, "holds no oms-sync warehouse"),
        (&missing, "does not exist"),
    ] {
        let db = format!("{url}?schema={schema}");
        let out = run(vec!["status".into(), "--db".into(), db], vec![]).await;
        seen.push((out.status.code(), stderr(&out), says));
    }
    let _ = admin(&url, &format!("DROP SCHEMA IF EXISTS {empty}"));
    for (code, err, says) in seen {
        assert_eq!(code, Some(5), "{err}");
        assert!(
            err.contains(says) && err.contains("fix: run oms-sync --once"),
            "{err}"
        );
        assert!(!err.contains("cannot connect"), "{err}");
    }
}

/// 24.8: `check` on PostgreSQL proves it could create the warehouse, then drops the schema it
/// created; an existing warehouse's schema is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_leaves_no_schema_behind_but_keeps_an_existing_one() {
    let Some(url) = pg_url() else { return };
    let schema = format!("checked_{}", std::process::id());
    let oms = common::fake(common::distinct(5)).await;
    let env = vec![
        ("OMS_SYNC__API__BASE_URL", oms.base_url()),
        ("OMS_SYNC__API__TOKEN", oms.token()),
        ("OMS_SYNC__WAREHOUSE__URL", url.clone()),
        ("OMS_SYNC__WAREHOUSE__SCHEMA", schema.clone()),
    ];
    let out = run(vec!["check".into()], env.clone()).await;
    let fresh = (out.status.code(), schema_exists(&url, &schema));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let once = run(vec!["--once".into()], env.clone()).await;
    let again = run(vec!["check".into()], env).await;
    let kept = schema_exists(&url, &schema);
    let _ = admin(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    assert_eq!(fresh, (Some(0), false), "{stdout}{}", stderr(&out));
    assert!(stdout.contains("dropped again"), "{stdout}");
    assert_eq!(once.status.code(), Some(0), "{}", stderr(&once));
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(kept, "check dropped the warehouse --once made");
}

/// 24.10: the demo's errors name the schema it writes (oms_sync_demo), not `public`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_errors_name_the_demo_schema() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let db = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let out = run(vec!["demo".into(), "--db".into(), db], vec![]).await;
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("schema oms_sync_demo"), "{err}");
    assert!(!err.contains("schema public"), "{err}");
}
