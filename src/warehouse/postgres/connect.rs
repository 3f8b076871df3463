//! Opening PostgreSQL connections: TLS, the schema and `search_path`, the writer's advisory
//! lock, migrations (`migrations/postgres/` through refinery), and sorting driver errors into
//! the warehouse's error kinds (a lost connection is its own kind: the next pass reconnects).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use include_dir::{Dir, include_dir};
use postgres::Client;
use postgres::error::SqlState;
use refinery::{Migration, Runner};

use super::config::PgConfig;
use super::tls;
use crate::warehouse::WarehouseError;

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations/postgres");

/// `migrations/postgres/NN-name/up.sql` as refinery migrations `VNN__name`, in order.
pub(super) static MIGRATIONS: LazyLock<Result<Vec<Migration>, String>> = LazyLock::new(|| {
    let mut dirs: Vec<&Dir> = MIGRATIONS_DIR.dirs().collect();
    dirs.sort_by_key(|d| d.path());
    dirs.iter()
        .map(|d| {
            let dir = d.path().to_string_lossy();
            let (nn, name) = dir
                .split_once('-')
                .ok_or_else(|| format!("migration directory {dir} is not NN-name"))?;
            let version: u32 = nn
                .parse()
                .map_err(|_| format!("migration directory {dir} is not NN-name"))?;
            let sql = d
                .get_file(d.path().join("up.sql"))
                .and_then(|f| f.contents_utf8())
                .ok_or_else(|| format!("migration {dir} has no up.sql"))?;
            Migration::unapplied(&format!("V{version}__{}", name.replace('-', "_")), sql)
                .map_err(|e| format!("migration {dir}: {e}"))
        })
        .collect()
});

/// Runs `f` where the blocking client may block. The `postgres` client drives its own
/// runtime, which panics if entered (or dropped) on a thread that is already running async
/// tasks; called from one (async code, tests), the work hops to a scoped thread instead.
pub(super) fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Quotes an identifier already restricted to `[a-z_][a-z0-9_]*` (see config).
pub(super) fn quoted(ident: &str) -> String {
    format!("\"{ident}\"")
}

/// Connects to the database without touching the schema (errors still name it).
pub(super) fn connect_server(cfg: &PgConfig) -> Result<Client, WarehouseError> {
    let connector = tls::connector(cfg)?;
    cfg.driver_config()
        .connect(connector)
        .map_err(|e| connect_error(cfg, &e))
}

/// Connects and points `search_path` at the schema (which must exist unless `create`).
pub(super) fn connect(cfg: &PgConfig, create: bool) -> Result<Client, WarehouseError> {
    let mut client = connect_server(cfg)?;
    if create {
        refuse_read_only(cfg, &mut client)?;
    }
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&cfg.schema],
        )
        .map_err(|e| classify(cfg, "looking up the schema", e))?
        .is_some();
    if !exists {
        if !create {
            return Err(WarehouseError::NotAWarehouse {
                at: cfg.at(),
                reason: format!("schema {} does not exist", cfg.schema),
                fix: "run oms-sync --once or --backfill first, or check warehouse.schema",
            });
        }
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quoted(&cfg.schema)
            ))
            .map_err(|e| denied_or(cfg, "creating the schema", e))?;
    }
    // pg_catalog stays implicitly first, so built-in functions resolve as usual.
    client
        .batch_execute(&format!("SET search_path TO {}", quoted(&cfg.schema)))
        .map_err(|e| classify(cfg, "setting search_path", e))?;
    Ok(client)
}

/// What to do about a server that takes no writes.
const READ_ONLY_FIX: &str = "point warehouse.url at the primary: list every server as postgresql://USER@HOST1:PORT1,HOST2:PORT2/DB?target_session_attrs=read-write so the writable one is chosen (also after a failover), or turn default_transaction_read_only off for this role and database";

/// Refuses, before anything is written, a standby or a server whose sessions are read-only:
/// otherwise the first write fails deep in a pass with a bare SQLSTATE.
fn refuse_read_only(cfg: &PgConfig, client: &mut Client) -> Result<(), WarehouseError> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
            &[],
        )
        .map_err(|e| classify(cfg, "asking whether the server takes writes", e))?;
    let (standby, read_only): (bool, bool) = (
        row.try_get(0)
            .map_err(|e| classify(cfg, "asking whether the server takes writes", e))?,
        row.try_get(1)
            .map_err(|e| classify(cfg, "asking whether the server takes writes", e))?,
    );
    let reason = match (standby, read_only) {
        (true, _) => "the server is a standby (in recovery), which takes no writes",
        (false, true) => "its sessions are read-only (default_transaction_read_only is on)",
        (false, false) => return Ok(()),
    };
    Err(WarehouseError::ReadOnly {
        at: cfg.at(),
        reason: reason.to_string(),
        fix: READ_ONLY_FIX,
    })
}

/// Whether the server refused a write because the session is read-only (SQLSTATE 25006): the
/// connection is dropped so the next call connects again, to the primary if the URL lists it.
pub(super) fn is_read_only(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// The writer's advisory-lock key: FNV-1a of `oms-sync:<schema>` (stable across builds and
/// machines, unlike std's hasher), so one writer per schema and database.
pub(super) fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"oms-sync:".iter().chain(schema.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// How long opening waits for the writer lock: a session that just closed (a restart, a
/// reopen) may hold it until its backend has finished exiting.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Takes the session advisory lock (held until the connection closes) or fails with
/// `Locked`. `stale` is this process's own previous backend, after a lost connection: if the
/// server has not noticed yet that it is gone (a network cut), it still holds the lock, and
/// is terminated so the reconnect can take it.
pub(super) fn take_lock(
    cfg: &PgConfig,
    client: &mut Client,
    stale: Option<i32>,
) -> Result<(), WarehouseError> {
    let key = lock_key(&cfg.schema);
    let (classid, objid) = (
        ((key as u64) >> 32) as i64,
        ((key as u64) & 0xffff_ffff) as i64,
    );
    let deadline = Instant::now() + LOCK_WAIT;
    let mut stale = stale;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .and_then(|r| r.try_get(0))
            .map_err(|e| classify(cfg, "taking the writer lock", e))?;
        if got {
            return Ok(());
        }
        if let Some(pid) = stale.take() {
            client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks
                     WHERE locktype = 'advisory' AND granted AND pid = $1
                       AND classid::bigint = $2 AND objid::bigint = $3",
                    &[&pid, &classid, &objid],
                )
                .map_err(|e| classify(cfg, "ending this process's stale session", e))?;
        }
        if Instant::now() >= deadline {
            return Err(WarehouseError::Locked {
                at: cfg.at(),
                pid: None,
                lock: "advisory lock held".into(),
                fix: "stop the other instance, or set warehouse.schema to another schema",
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Applies the pending migrations in the schema (refinery keeps its history table there), all
/// of them with their history rows in one transaction. Refinery's default commits a
/// migration's SQL and its history row in two transactions: a process killed between the two
/// (a first start stopped early) left the tables without the row, and every later start failed
/// re-creating them. PostgreSQL's DDL is transactional, so one transaction leaves all or none.
pub(super) fn migrate(cfg: &PgConfig, client: &mut Client) -> Result<(), WarehouseError> {
    let migrations = MIGRATIONS
        .as_ref()
        .map_err(|e| migration_failed(cfg, e.clone()))?;
    Runner::new(migrations)
        .set_grouped(true)
        .run(client)
        .map_err(|e| migration_failed(cfg, migration_error(&e)))?;
    Ok(())
}

fn migration_failed(cfg: &PgConfig, reason: String) -> WarehouseError {
    WarehouseError::Migration {
        at: cfg.at(),
        reason,
        fix: "check the role may create tables in the schema, or restore a backup",
    }
}

/// Refinery's error with the server's message and SQLSTATE ([`describe`]) from further down
/// its chain: its own text says only "db error".
fn migration_error(e: &refinery::Error) -> String {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(pg) = c.downcast_ref::<postgres::Error>() {
            return format!("{e}: {}", describe(pg));
        }
        cause = c.source();
    }
    e.to_string()
}

fn connect_error(cfg: &PgConfig, e: &postgres::Error) -> WarehouseError {
    let reason = describe(e);
    // The driver's words when target_session_attrs=read-write found no writable server.
    if reason.contains("does not allow writes") {
        return WarehouseError::ReadOnly {
            at: cfg.at(),
            reason: "no server in warehouse.url takes writes (target_session_attrs=read-write); during a failover this lasts until a standby is promoted, and the next pass tries again".into(),
            fix: READ_ONLY_FIX,
        };
    }
    let fix = match e.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            "check the user in warehouse.url and the password in warehouse.password_file"
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
            "create the database (createdb) or fix its name in warehouse.url"
        }
        // The server asked for a password and none was configured (the driver's own check).
        _ if reason.contains("password missing") => {
            "the server asks this user for a password: put it in a file named by warehouse.password_file (or in warehouse.url), or use a user the server trusts"
        }
        _ if reason.contains("TLS") || reason.contains("certificate") || reason.contains("tls") => {
            "check sslmode: require and verify-full need TLS on the server; verify-full needs a certificate for this host name issued by a CA in sslrootcert=/path/ca.pem (default: the public web roots)"
        }
        _ => crate::warehouse::error::PG_UNREACHABLE_FIX,
    };
    WarehouseError::Unusable {
        at: cfg.at(),
        what: "cannot connect",
        reason,
        fix,
    }
}

/// The error in one line: the server's message and SQLSTATE, or the driver's with its cause.
pub(super) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(&format!(": {cause}"));
        src = cause.source();
    }
    s
}

/// Whether the error means the session is gone (server restart, admin shutdown, network):
/// the connection must be dropped and opened again.
pub(super) fn is_connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08") || c.starts_with("57P");
    }
    // No SQLSTATE: the driver failed to talk to the server (I/O).
    e.as_db_error().is_none()
        && std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// A permission error names the grant that fixes it; anything else is sorted by [`classify`].
fn denied_or(cfg: &PgConfig, context: &str, e: postgres::Error) -> WarehouseError {
    if e.code() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return classify(cfg, context, e);
    }
    WarehouseError::PermissionDenied {
        at: cfg.at(),
        context: context.to_string(),
        reason: describe(&e),
        fix: format!(
            "as a superuser or the database owner: GRANT CREATE ON DATABASE {} TO {}; or create the schema for it: CREATE SCHEMA {} AUTHORIZATION {}",
            cfg.dbname, cfg.user, cfg.schema, cfg.user
        ),
    }
}

/// Sorts a driver error into the warehouse's kinds.
pub(super) fn classify(cfg: &PgConfig, context: &str, e: postgres::Error) -> WarehouseError {
    if is_read_only(&e) {
        WarehouseError::ReadOnly {
            at: cfg.at(),
            reason: format!("{context}: {}", describe(&e)),
            fix: READ_ONLY_FIX,
        }
    } else if e.code() == Some(&SqlState::DISK_FULL) {
        WarehouseError::DiskFull {
            at: cfg.at(),
            context: context.to_string(),
            reason: describe(&e),
        }
    } else if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        WarehouseError::PermissionDenied {
            at: cfg.at(),
            context: context.to_string(),
            reason: describe(&e),
            fix: format!(
                "connect as the role that created the warehouse, or grant {} the privilege the server names",
                cfg.user
            ),
        }
    } else if is_connection_lost(&e) {
        WarehouseError::ConnectionLost {
            at: cfg.at(),
            context: context.to_string(),
            reason: describe(&e),
        }
    } else {
        WarehouseError::Backend {
            at: cfg.at(),
            context: context.to_string(),
            reason: describe(&e),
            code: e.code().map(|c| c.code().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_named_and_ordered() {
        let m = MIGRATIONS.as_ref().unwrap();
        assert!(!m.is_empty());
        let versions: Vec<i64> = m.iter().map(|m| i64::from(m.version())).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]) && versions[0] == 1);
    }

    /// 24.10: a server that asks for a password none was configured for gets the password
    /// fix, not "check that the server is running". (The test server trusts every local
    /// user, so this one speaks just enough of the protocol to ask.)
    #[test]
    fn a_password_request_without_a_password_names_password_file() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            loop {
                let mut len = [0u8; 4];
                s.read_exact(&mut len)?;
                let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                s.read_exact(&mut body)?;
                // SSLRequest: no TLS here; then the startup message follows.
                if body.get(..4) == Some(&80_877_103u32.to_be_bytes()[..]) {
                    s.write_all(b"N")?;
                    continue;
                }
                break;
            }
            // AuthenticationCleartextPassword.
            s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])?;
            let _ = s.read(&mut [0u8; 64]);
            Ok(())
        });
        let cfg = PgConfig::parse(
            &format!("postgresql://app@127.0.0.1:{port}/db?sslmode=disable"),
            None,
            None,
            false,
        )
        .expect("config");
        let err = match connect(&cfg, false) {
            Ok(_) => panic!("connected without the password the server asked for"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("password missing"), "{err}");
        assert!(err.contains("warehouse.password_file"), "{err}");
        assert!(!err.contains("server is running"), "{err}");
        server.join().expect("server thread").expect("server io");
    }

    #[test]
    fn lock_keys_are_stable_and_per_schema() {
        assert_eq!(lock_key("public"), lock_key("public"));
        assert_ne!(lock_key("public"), lock_key("oms"));
    }
}
