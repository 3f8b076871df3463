//! Where the PostgreSQL password comes from: `warehouse.password_file` (or the URL), else
//! libpq's conventions, `PGPASSWORD` and then the password file (`PGPASSFILE`, default
//! `~/.pgpass`), which is ignored with a warning if group or world may read it, as libpq does.
//! No password is ever printed; warnings name the file only.

use std::path::{Path, PathBuf};

use super::config::PgHost;
use crate::warehouse::WarehouseError;

/// Socket directories libpq builds may default to: a `localhost` line in the password file
/// matches them (other directories match by their path, as in libpq).
const DEFAULT_SOCKET_DIRS: [&str; 3] = ["/var/run/postgresql", "/run/postgresql", "/tmp"];

/// The part of the environment libpq reads for a password.
#[derive(Debug, Clone, Default)]
pub struct LibpqEnv {
    pub pgpassword: Option<String>,
    pub pgpassfile: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl LibpqEnv {
    pub fn from_process() -> LibpqEnv {
        LibpqEnv {
            pgpassword: std::env::var("PGPASSWORD").ok(),
            pgpassfile: std::env::var_os("PGPASSFILE").map(PathBuf::from),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    /// `PGPASSWORD` if set and not empty, else the first password-file line matching the
    /// first host that has one (the driver sends one password to every host; a replicated
    /// pair shares its roles, so one password serves them all).
    pub fn password(&self, hosts: &[(PgHost, u16)], dbname: &str, user: &str) -> Option<String> {
        if let Some(p) = self.pgpassword.as_ref().filter(|p| !p.is_empty()) {
            return Some(p.clone());
        }
        let path = self
            .pgpassfile
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".pgpass")))?;
        let text = read_pgpass(&path)?;
        hosts.iter().find_map(|(host, port)| {
            let name = match host {
                PgHost::Tcp(h) => h.clone(),
                PgHost::Unix(d) if DEFAULT_SOCKET_DIRS.iter().any(|s| Path::new(s) == d) => {
                    "localhost".to_string()
                }
                PgHost::Unix(d) => d.display().to_string(),
            };
            pgpass_lookup(&text, &name, &port.to_string(), dbname, user)
        })
    }
}

/// The password file's text, or None (with a warning naming the file, never its content)
/// when it is missing, not a plain file, or readable by group or world.
fn read_pgpass(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "PostgreSQL password file cannot be read; it is ignored");
            return None;
        }
    };
    if !meta.is_file() {
        tracing::warn!(file = %path.display(), "PostgreSQL password file is not a plain file; it is ignored");
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "PostgreSQL password file has group or world access; it is ignored; fix: chmod 0600 it"
            );
            return None;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "PostgreSQL password file cannot be read; it is ignored");
            None
        }
    }
}

/// The password of the first `host:port:db:user:password` line matching (`*` matches
/// anything; `\:` and `\\` escape), as libpq reads the file.
pub(in crate::warehouse::postgres) fn pgpass_lookup(
    text: &str,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let want = [host, port, dbname, user];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_fields(line);
        if fields.len() < 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

/// Splits at unescaped `:` (libpq ends the password at one too).
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

fn invalid(reason: String, fix: &'static str) -> WarehouseError {
    WarehouseError::Config {
        key: "warehouse.password_file",
        reason,
        fix,
    }
}

/// Reads the password file (trailing newline dropped); `$CREDENTIALS_DIRECTORY/name`
/// (systemd `LoadCredential=`) is expanded as for `api.token_file`.
pub(super) fn read_password_file(
    file: &str,
    credentials_dir: Option<&Path>,
) -> Result<String, WarehouseError> {
    let path = match file
        .strip_prefix("$CREDENTIALS_DIRECTORY/")
        .or_else(|| file.strip_prefix("${CREDENTIALS_DIRECTORY}/"))
    {
        Some(rest) => match credentials_dir {
            Some(dir) => dir.join(rest),
            None => {
                return Err(invalid(
                    "refers to $CREDENTIALS_DIRECTORY, which only the systemd units set".into(),
                    "by hand, add -p LoadCredential=pg-password:/etc/oms-sync/pg-password to systemd-run, or set OMS_SYNC__WAREHOUSE__PASSWORD_FILE=/etc/oms-sync/pg-password as a user who may read it",
                ));
            }
        },
        None => PathBuf::from(file),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        invalid(
            format!("cannot be read ({}: {e})", path.display()),
            "point it at a readable file that holds only the password",
        )
    })?;
    let pw = text.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        return Err(invalid(
            format!("({}) is empty", path.display()),
            "write the password into it",
        ));
    }
    Ok(pw.to_string())
}
