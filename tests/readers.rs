//! The SQLite warehouse as its readers and its one writer see it, through the real binary (and
//! the real `sqlite3` CLI where installed): one writer per file whatever path names it, files
//! that are not a warehouse left untouched, and read access for an unprivileged BI user.

mod common;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// Longest a run may take before the test fails (and the process is killed).
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// What to run: the program, its arguments and environment, and the (uid, gid) to run it as
/// (with no supplementary group: std drops them when the parent is root; the tests run as
/// root, a BI reader is not).
struct Cmd<'a> {
    program: &'a str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    ids: Option<(u32, u32)>,
}

impl<'a> Cmd<'a> {
    fn oms_sync(args: &[&str]) -> Cmd<'a> {
        Cmd {
            program: BIN,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            ids: None,
        }
    }

    fn env(mut self, env: Vec<(&'static str, String)>) -> Self {
        self.env.extend(env);
        self
    }

    fn spawn(&self, out: &Path, err: &Path) -> Child {
        let mut cmd = Command::new(self.program);
        for k in ["RUST_LOG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            cmd.env_remove(k);
        }
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().cloned())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(File::create(out).expect("stdout file"))
            .stderr(File::create(err).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.program))
    }

    /// Runs to completion; output goes to files. Async waits: the fake OMS serves from this
    /// runtime meanwhile.
    async fn run(&self) -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let mut child = self.spawn(&out, &err);
        let started = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if started.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} {:?} still running after {RUN_LIMIT:?}",
                    self.program, self.args
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let r = Run {
            code: status.code(),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        };
        assert!(!r.stderr.contains("panicked"), "panic:\n{}", r.stderr);
        r
    }
}

/// The environment that points the binary at `oms` and the warehouse `db` (no config file).
fn env(oms: &fake_oms::FakeOms, db: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("OMS_SYNC__API__BASE_URL", oms.base_url()),
        ("OMS_SYNC__API__TOKEN", oms.token()),
        ("OMS_SYNC__API__RETRY_MIN_DELAY", "10ms".into()),
        ("OMS_SYNC__API__RETRY_MAX_DELAY", "50ms".into()),
        ("OMS_SYNC__WAREHOUSE__PATH", db.display().to_string()),
    ]
}

/// The error lines (`error: ...`) of stderr.
fn errors(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error")).collect()
}

/// A daemon of the real binary, stopped with SIGTERM when dropped.
struct Daemon(Child, tempfile::TempDir);

impl Daemon {
    fn start(env: Vec<(&'static str, String)>) -> Daemon {
        Daemon::start_as(env, None)
    }

    fn start_as(env: Vec<(&'static str, String)>, ids: Option<(u32, u32)>) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Cmd::oms_sync(&[]).env(env).env(vec![
            ("OMS_SYNC__SYNC__INTERVAL", "1h".into()),
            ("OMS_SYNC__LOG__LEVEL", "info".into()),
        ]);
        cmd.ids = ids;
        let child = cmd.spawn(&dir.path().join("out"), &dir.path().join("err"));
        Daemon(child, dir)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.1.path().join("err")).unwrap_or_default()
    }

    /// Waits until `check` holds (bounded); the daemon must still run meanwhile.
    async fn wait_for(&mut self, what: &str, check: impl Fn() -> bool) {
        let started = Instant::now();
        while !check() {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                panic!("daemon exited ({st}) before {what}:\n{}", self.stderr());
            }
            assert!(
                started.elapsed() < RUN_LIMIT,
                "no {what} after {RUN_LIMIT:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the exit (bounded).
    async fn stop(mut self) {
        self.terminate().await;
    }

    async fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        while self.0.try_wait().expect("try_wait").is_none() {
            if started.elapsed() > RUN_LIMIT {
                let _ = self.0.kill();
                let _ = self.0.wait();
                panic!("daemon ignored SIGTERM:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn lock_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Issue 24.4: with the daemon on wh.db, `--once` on a symlink to it used to run beside it
/// (its lock was link.db.lock). The lock is the file's; the error names the daemon's PID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_on_a_symlink_to_a_running_daemons_file_is_refused_naming_its_pid() {
    let oms = common::fake(common::distinct(50)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let wh = dir.path().join("wh.db");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink("wh.db", &link).expect("symlink");
    let mut daemon = Daemon::start(env(&oms, &wh));
    let pid = daemon.pid().to_string();
    let lock = lock_of(&wh);
    daemon
        .wait_for("lock file with the daemon's PID", || {
            std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid)
        })
        .await;

    let r = Cmd::oms_sync(&["--once"]).env(env(&oms, &link)).run().await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(
        errs[0].contains("in use by another oms-sync process"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains(&format!("PID {pid}")), "{}", errs[0]);
    assert!(!lock_of(&link).exists(), "a lock of the symlink's own name");
    // Through a path with `..` in it too.
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let dotted = dir.path().join("sub/../wh.db");
    let r = Cmd::oms_sync(&["--once"])
        .env(env(&oms, &dotted))
        .run()
        .await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("PID {pid}")), "{}", r.stderr);

    daemon.stop().await;
    let r = Cmd::oms_sync(&["--once"]).env(env(&oms, &link)).run().await;
    assert_eq!(
        r.code,
        Some(0),
        "the lock is free once the daemon stopped: {}",
        r.stderr
    );
}

/// A file's bytes and whether SQLite's side files or our lock file appeared beside it.
fn fingerprint(db: &Path) -> (Vec<u8>, Vec<String>) {
    let bytes = std::fs::read(db).expect("read file");
    let name = db.file_name().unwrap().to_string_lossy().into_owned();
    let mut beside: Vec<String> = std::fs::read_dir(db.parent().unwrap())
        .expect("read dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&name) && *n != name)
        .collect();
    beside.sort();
    (bytes, beside)
}

/// Issue 24.3: a database of another application used to be taken over (our tables added,
/// switched to WAL) or, with a `customers` table of its own, to fail with a line of 3,335
/// characters of migration SQL. Both are refused in one short line and left byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_applications_database_is_refused_in_one_line_and_left_unchanged() {
    let oms = common::fake(common::distinct(20)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "shop.db",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);
             INSERT INTO orders VALUES (1, 9.5), (2, 12.0);",
        ),
        (
            "crm.db",
            "CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, score REAL);
             INSERT INTO customers VALUES ('a', 'Ada', 1.5);
             PRAGMA user_version = 3;",
        ),
    ];
    for (name, sql) in cases {
        let db = dir.path().join(name);
        rusqlite::Connection::open(&db)
            .expect("create")
            .execute_batch(sql)
            .expect("fill");
        let before = fingerprint(&db);
        assert!(before.1.is_empty(), "{:?}", before.1);
        for cmd in [
            Cmd::oms_sync(&["--once"]).env(env(&oms, &db)),
            Cmd::oms_sync(&["--backfill"]).env(env(&oms, &db)),
            Cmd::oms_sync(&["status", "--db", &db.display().to_string()]),
        ] {
            let r = cmd.run().await;
            assert_eq!(r.code, Some(5), "{name} {:?}: {}", cmd.args, r.stderr);
            let errs = errors(&r.stderr);
            assert_eq!(errs.len(), 1, "{}", r.stderr);
            let line = errs[0];
            assert!(line.contains(&db.display().to_string()), "{line}");
            assert!(line.contains("is not an oms-sync warehouse"), "{line}");
            assert!(line.contains("fix: point warehouse.path"), "{line}");
            assert!(line.len() < 400, "{} characters: {line}", line.len());
            assert_eq!(fingerprint(&db), before, "{name} changed by {:?}", cmd.args);
        }
    }
}

/// A 0-byte file (e.g. made by `touch` or an installer) becomes a warehouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_becomes_a_warehouse() {
    let oms = common::fake(common::distinct(20)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("warehouse.db");
    File::create(&db).expect("touch");
    let status = Cmd::oms_sync(&["status", "--db", &db.display().to_string()]);
    let r = status.run().await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(r.stderr.contains("holds no warehouse yet"), "{}", r.stderr);
    let r = Cmd::oms_sync(&["--once"]).env(env(&oms, &db)).run().await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = status.run().await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("20 live"), "{}", r.stdout);
}

/// The writer's user and group (the units' `oms-sync`), and a BI tool's user in that group.
const WRITER: (u32, u32) = (64_201, 64_200);
const READER: (u32, u32) = (64_202, 64_200);

/// A directory for the warehouse owned by the writer, 0750: the README's read-access recipe.
/// The binary is linked (or copied) into it: the build's own directory may not be open to
/// other users.
fn shared_dir() -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("oms-sync");
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).expect("copy the binary");
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(dir.path(), Some(WRITER.0), Some(WRITER.1)).expect("chown");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).expect("chmod");
    (dir, bin.display().to_string())
}

/// What a BI reader gets from the real `sqlite3 -readonly` (None when the CLI is not
/// installed; `.ci/run` installs it) and from `oms-sync status --db`, as the reader's user.
async fn read_as_bi_user(bin: &str, db: &Path) -> (Option<Run>, Run) {
    let db_arg = db.display().to_string();
    let cli = if Command::new("sqlite3").arg("-version").output().is_ok() {
        let cmd = Cmd {
            program: "sqlite3",
            args: vec![
                "-readonly".into(),
                db_arg.clone(),
                "SELECT count(*) FROM live_customers".into(),
            ],
            env: vec![],
            ids: Some(READER),
        };
        Some(cmd.run().await)
    } else {
        eprintln!("sqlite3 not installed: only oms-sync status reads as the BI user");
        None
    };
    let status = Cmd {
        program: bin,
        args: vec!["status".into(), "--db".into(), db_arg],
        env: vec![],
        ids: Some(READER),
    }
    .run()
    .await;
    (cli, status)
}

async fn assert_bi_user_reads(bin: &str, db: &Path, live: u64, when: &str) {
    let (cli, status) = read_as_bi_user(bin, db).await;
    if let Some(r) = cli {
        assert_eq!(r.code, Some(0), "sqlite3 {when}: {}", r.stderr);
        assert_eq!(r.stdout.trim(), live.to_string(), "sqlite3 {when}");
    }
    assert_eq!(status.code, Some(0), "status {when}: {}", status.stderr);
    assert!(
        status.stdout.contains(&format!("{live} live")),
        "status {when}: {}",
        status.stdout
    );
}

/// Issue 24.1: with the directory 0750 and the file 0640 for the BI group, a reader could query
/// only while a writer ran: SQLite deleted the -wal and -shm files when the writer exited, and
/// a reader that may not create them failed with "attempt to write a readonly database". They
/// are kept now, with the database's mode and group, so the reader (a uid of its own, only
/// in the group) reads after `--once`, while the daemon runs, after it stopped, and after it
/// was killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bi_user_with_group_read_access_reads_with_and_without_a_writer() {
    use std::os::unix::fs::MetadataExt;
    let oms = common::fake(common::distinct(40)).await;
    let (dir, bin) = shared_dir();
    let db = dir.path().join("warehouse.db");
    let once = |oms: &fake_oms::FakeOms| Cmd {
        program: &bin,
        args: vec!["--once".into()],
        env: env(oms, &db),
        ids: Some(WRITER),
    };

    // First run: the file is private (0600) as the units make it; the reader is refused, by
    // the operating system, with the file named.
    let r = once(&oms).run().await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (_, status) = read_as_bi_user(&bin, &db).await;
    assert_eq!(status.code, Some(5), "a private warehouse is not readable");

    // The README's recipe: the file 0640, then the writer starts again. The -wal and -shm
    // files, kept since the first run with 0600, take the database's mode at that start.
    std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");
    let r = once(&oms).run().await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for suffix in ["-wal", "-shm"] {
        let side = dir.path().join(format!("warehouse.db{suffix}"));
        let meta = std::fs::metadata(&side)
            .unwrap_or_else(|e| panic!("{} kept after the writer exited: {e}", side.display()));
        assert_eq!(meta.mode() & 0o777, 0o640, "{suffix}");
        assert_eq!((meta.uid(), meta.gid()), WRITER, "{suffix}");
    }
    assert_eq!(
        std::fs::metadata(dir.path().join("warehouse.db-wal"))
            .unwrap()
            .len(),
        0,
        "a clean exit checkpoints and empties the WAL"
    );
    assert_bi_user_reads(&bin, &db, 40, "after --once exited").await;

    // While the daemon runs (connection open, WAL in use), and after changes it wrote.
    oms.with_store(|s| {
        for id in 41..=45 {
            s.upsert(fake_oms::FakeCustomer::new(id, common::at(1, id)));
        }
    });
    let mut daemon = Daemon::start_as(env(&oms, &db), Some(WRITER));
    let probe = db.clone();
    daemon
        .wait_for("the daemon's first pass", move || {
            rusqlite::Connection::open_with_flags(
                &probe,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|c| c.query_row("SELECT count(*) FROM customers", [], |r| r.get(0)))
            .is_ok_and(|n: i64| n == 45)
        })
        .await;
    assert_bi_user_reads(&bin, &db, 45, "while the daemon runs").await;
    daemon.terminate().await;
    assert_bi_user_reads(&bin, &db, 45, "after the daemon stopped").await;

    // Killed mid-life: the WAL may hold frames no checkpoint copied; readers still read them.
    oms.with_store(|s| {
        for id in 46..=50 {
            s.upsert(fake_oms::FakeCustomer::new(id, common::at(2, id)));
        }
    });
    let mut daemon = Daemon::start_as(env(&oms, &db), Some(WRITER));
    let probe = db.clone();
    daemon
        .wait_for("the daemon's pass", move || {
            rusqlite::Connection::open_with_flags(
                &probe,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|c| c.query_row("SELECT count(*) FROM customers", [], |r| r.get(0)))
            .is_ok_and(|n: i64| n == 50)
        })
        .await;
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    assert_bi_user_reads(&bin, &db, 50, "after the daemon was killed").await;
}

const HOT_JOURNAL_ENV: &str = "OMS_SYNC_TEST_HOT_JOURNAL";

/// Not a test of its own: run in a child process by
/// `a_transaction_a_crash_left_behind_is_rolled_back_by_the_writer`, it exits in the middle of
/// a transaction, so the file's rollback journal stays hot.
#[test]
#[ignore = "a helper run in a child process"]
fn helper_exit_inside_a_transaction() {
    let Ok(path) = std::env::var(HOT_JOURNAL_ENV) else {
        return;
    };
    let conn = rusqlite::Connection::open(path).expect("open");
    // A tiny cache: the transaction's pages spill into the file before the commit.
    conn.execute_batch(
        "PRAGMA cache_size = 1; BEGIN; CREATE TABLE t (x);
         INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         SELECT randomblob(1000) FROM n;",
    )
    .expect("write");
    std::process::exit(0);
}

/// A crash inside a transaction (e.g. a first start killed while it switched a new file to
/// WAL) leaves a hot journal, which a read-only connection cannot read. The writer rolls it
/// back before looking at the file; `status` says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_a_crash_left_behind_is_rolled_back_by_the_writer() {
    let oms = common::fake(common::distinct(20)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("warehouse.db");
    // A database with no table yet, then a transaction that never ends.
    rusqlite::Connection::open(&db)
        .expect("create")
        .execute_batch("CREATE TABLE x (a); DROP TABLE x;")
        .expect("fill");
    let st = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "helper_exit_inside_a_transaction", "--ignored"])
        .env(HOT_JOURNAL_ENV, &db)
        .stdout(Stdio::null())
        .status()
        .expect("run the helper");
    assert!(st.success(), "{st}");
    let ro = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        });
    let hot = ro.expect_err("a hot journal stops a read-only connection");
    assert_eq!(
        hot.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_READONLY_ROLLBACK),
        "{hot}"
    );

    let r = Cmd::oms_sync(&["status", "--db", &db.display().to_string()])
        .run()
        .await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(
        errs[0].contains("hot journal") && errs[0].contains("fix: run oms-sync --once"),
        "{}",
        errs[0]
    );

    let r = Cmd::oms_sync(&["--once"]).env(env(&oms, &db)).run().await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = Cmd::oms_sync(&["status", "--db", &db.display().to_string()])
        .run()
        .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("20 live"), "{}", r.stdout);
}

/// Every column that holds an instant, per table: declared DATETIME since migration 03.
const INSTANTS: &[(&str, &[&str])] = &[
    (
        "customers",
        &[
            "created_date",
            "modified_date",
            "deleted_at",
            "synced_at",
            "first_synced_at",
        ],
    ),
    ("sync_state", &["mark_modified_date", "updated_at"]),
    ("backfill_state", &["started_at", "high_water_date"]),
    ("sync_runs", &["started_at", "finished_at"]),
    (
        "quarantine",
        &["modified_date", "first_seen_at", "last_seen_at"],
    ),
];

/// Each table's (column, declared type), in order.
fn declared(conn: &rusqlite::Connection, table: &str) -> Vec<(String, String)> {
    let mut stmt = conn
        .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
        .expect("table_info");
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn all_rows(conn: &rusqlite::Connection, table: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let n = declared(conn, table).len();
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
        .expect("select");
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// The plan's detail lines.
fn plan(conn: &rusqlite::Connection, sql: &str, bound: &str) -> String {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let lines: Vec<String> = stmt
        .query_map([bound], |r| r.get(3))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    lines.join("; ")
}

/// Issue 24.2: instants were declared TEXT, so Metabase typed created_date, modified_date,
/// deleted_at and synced_at as text. A warehouse of schema version 2 with data migrates to
/// DATETIME columns; every row keeps its values, which stay text in canonical form (so their
/// order is still time order), other columns keep their types, and the indexes still serve
/// the keyset and latest-first queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_warehouse_migrates_to_datetime_columns_whose_values_stay_text() {
    let oms = common::fake(common::distinct(30)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("warehouse.db");
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    // A warehouse as version 2 left it, written by version 2's own SQL, with a row in every
    // table that has instants.
    {
        let conn = rusqlite::Connection::open(&db).expect("create");
        for m in ["01-initial", "02-mark-never-all-ids"] {
            let sql = std::fs::read_to_string(migrations.join(m).join("up.sql")).expect("read");
            conn.execute_batch(&sql).expect("old migration");
        }
        conn.execute_batch(
            "PRAGMA user_version = 2; PRAGMA journal_mode = WAL;
             INSERT INTO customers VALUES (1007, '2023-01-01T00:00:00.000000Z', '2023-10-06T08:42:53.427050Z',
               70, 'c7@example.com', 'Ayşe', NULL, NULL, NULL, 1, '{\"x\":1}', NULL,
               '2024-01-01T00:00:00.000001Z', '2024-01-01T00:00:00.000001Z');
             INSERT INTO customers VALUES (1008, NULL, '2023-10-06T08:42:53.427051Z', NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL, '2024-02-02T00:00:00.000000Z',
               '2024-01-01T00:00:00.000002Z', '2024-01-01T00:00:00.000002Z');
             INSERT INTO sync_runs (stream, kind, started_at, finished_at, status, mark_before, mark_after)
               VALUES ('customers', 'backfill', '2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:01.000000Z',
                       'succeeded', 'start', 'start');
             INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
               VALUES ('customers', 99, '2023-10-06T08:42:53.427050Z', '{}', 'bad', '2024-01-01T00:00:00.000000Z',
                       '2024-01-01T00:00:00.000000Z');
             INSERT INTO backfill_state VALUES ('customers', 1, '2024-01-01T00:00:00.000000Z', NULL);
             INSERT INTO backfill_ranges VALUES ('customers', 0, 0, NULL, 0, 0);",
        )
        .expect("fill");
    }
    let before: Vec<_> = {
        let conn = rusqlite::Connection::open(&db).expect("open");
        [
            "customers",
            "sync_runs",
            "quarantine",
            "backfill_state",
            "backfill_ranges",
        ]
        .iter()
        .map(|t| (declared(&conn, t), all_rows(&conn, t)))
        .collect()
    };

    let r = Cmd::oms_sync(&["--once"]).env(env(&oms, &db)).run().await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    let conn = rusqlite::Connection::open(&db).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert!(version >= 3, "migrated: {version}");
    for (i, t) in [
        "customers",
        "sync_runs",
        "quarantine",
        "backfill_state",
        "backfill_ranges",
    ]
    .iter()
    .enumerate()
    {
        let (old_types, old_rows) = &before[i];
        let instants = INSTANTS
            .iter()
            .find(|(n, _)| n == t)
            .map_or(&[][..], |(_, c)| c);
        // Columns later migrations add (04-history: sync_runs.versions_written) come last.
        let now: Vec<_> = declared(&conn, t)
            .into_iter()
            .filter(|(c, _)| c != "versions_written")
            .collect();
        assert_eq!(now.len(), old_types.len(), "{t}: columns");
        for ((col, ty), (old_col, old_ty)) in now.iter().zip(old_types) {
            assert_eq!(col, old_col, "{t}: column order");
            if instants.contains(&col.as_str()) {
                assert_eq!(old_ty, "TEXT", "{t}.{col} before");
                assert_eq!(ty, "DATETIME", "{t}.{col}");
            } else {
                assert_eq!(ty, old_ty, "{t}.{col}: other columns keep their type");
            }
        }
        let rows = all_rows(&conn, t);
        assert!(rows.len() >= old_rows.len(), "{t}");
        if *t == "customers" {
            // The pass added the fake OMS's 30; rows 1007 and 1008 are as they were.
            let kept: Vec<_> = rows.iter().filter(|r| old_rows.contains(r)).collect();
            assert_eq!(kept.len(), 2, "{t}: old rows unchanged");
        } else if *t != "sync_runs" {
            assert_eq!(
                &rows[..old_rows.len()],
                &old_rows[..],
                "{t}: rows unchanged"
            );
        } else {
            // The old run is unchanged; a column added later starts at its default.
            assert_eq!(
                rows[0][..old_rows[0].len()],
                old_rows[0][..],
                "{t}: the old run is unchanged"
            );
        }
    }
    // Instants stay text, old and new rows alike, in every DATETIME column.
    for (t, cols) in INSTANTS {
        for c in *cols {
            let non_text: i64 = conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND typeof({c}) <> 'text'"
                    ),
                    [],
                    |r| r.get(0),
                )
                .expect("typeof");
            assert_eq!(non_text, 0, "{t}.{c} holds non-text values");
        }
    }
    let texts: i64 = conn
        .query_row(
            "SELECT count(*) FROM customers WHERE typeof(modified_date) = 'text' AND typeof(synced_at) = 'text'",
            [],
            |r| r.get(0),
        )
        .expect("typeof");
    assert_eq!(texts, 32);
    // A canonical instant that reads as nothing but text is stored as given, even one a
    // NUMERIC affinity would turn into a number if it were one.
    let stored: (String, String) = conn
        .query_row(
            "SELECT typeof(modified_date), modified_date FROM customers WHERE id = 1007",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row 1007");
    assert_eq!(
        stored,
        ("text".into(), "2023-10-06T08:42:53.427050Z".into())
    );

    // The keyset and latest-first queries still use the index, with a text bound, and the
    // order is time order.
    let bound = "2023-10-06T08:42:53.427050Z";
    for sql in [
        "SELECT id FROM customers WHERE modified_date > ?1 ORDER BY modified_date, id LIMIT 100",
        "SELECT id FROM customers WHERE modified_date >= ?1 ORDER BY modified_date DESC LIMIT 10",
        "SELECT max(modified_date) FROM customers WHERE modified_date > ?1",
    ] {
        let p = plan(&conn, sql, bound);
        assert!(p.contains("INDEX customers_modified_date"), "{sql}: {p}");
        assert!(
            !p.contains("TEMP B-TREE"),
            "{sql}: sorted by the index: {p}"
        );
    }
    let after: Vec<i64> = conn
        .prepare("SELECT id FROM customers WHERE modified_date > ?1 ORDER BY modified_date, id")
        .expect("prepare")
        .query_map([bound], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("ids");
    assert_eq!(after[0], 1008, "the row 1 µs later comes first");
    assert_eq!(after.len(), 31, "1008, then the 30 of 2024");
    let sorted: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT modified_date, lag(modified_date) OVER (ORDER BY modified_date) AS prev FROM customers) WHERE prev > modified_date",
            [],
            |r| r.get(0),
        )
        .expect("order");
    assert_eq!(sorted, 0);
    let r = Cmd::oms_sync(&["status", "--db", &db.display().to_string()])
        .run()
        .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// Issue 24.2, PostgreSQL: every table, the view and every column carry a `COMMENT ON`, so
/// BI tools that read the catalog (Metabase's descriptions, psql's `\d+`) explain them.
#[test]
fn every_postgresql_table_view_and_column_is_commented() {
    if !common::backends().contains(&common::Backend::Postgres) {
        return;
    }
    let wh = common::TestWarehouse::of(common::Backend::Postgres);
    drop(wh.open());
    let common::TestWarehouse::Postgres(pg) = &wh else {
        unreachable!("a PostgreSQL warehouse")
    };
    let schema = pg.cfg.schema.clone();
    let (bare, relations) = pg.with_client(move |c| {
        let bare: Vec<String> = c
            .query(
                "SELECT c.relname || '.' || a.attname FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname NOT LIKE 'refinery%'
                   AND col_description(c.oid, a.attnum) IS NULL
                 ORDER BY 1",
                &[&schema],
            )
            .expect("columns")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let relations: Vec<(String, Option<String>)> = c
            .query(
                "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'v') AND c.relname NOT LIKE 'refinery%'
                 ORDER BY 1",
                &[&schema],
            )
            .expect("tables")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        (bare, relations)
    });
    assert!(bare.is_empty(), "columns without a comment: {bare:?}");
    let names: Vec<&str> = relations.iter().map(|(n, _)| n.as_str()).collect();
    for t in [
        "customers",
        "live_customers",
        "stock_locations",
        "live_stock_locations",
        "customer_addresses",
        "live_customer_addresses",
        "sync_runs",
        "sync_state",
        "quarantine",
    ] {
        assert!(names.contains(&t), "{t} in {names:?}");
    }
    for (name, comment) in &relations {
        let comment = comment
            .as_deref()
            .unwrap_or_else(|| panic!("{name} has no comment"));
        // The record tables and their views (their columns are the tables').
        let records = oms_sync::resource::ALL
            .iter()
            .any(|s| *name == s.table || *name == format!("live_{}", s.table))
            || name == "customers_history";
        if !records {
            assert!(
                comment.starts_with("oms-sync bookkeeping"),
                "{name}: {comment}"
            );
        }
    }
}
