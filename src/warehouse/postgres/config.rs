//! Where a PostgreSQL warehouse is and how to reach it: the URL (TCP or unix socket), the
//! password (from `warehouse.password_file` or the URL, never printed), `sslmode` and the
//! schema, validated once into a [`PgConfig`] whose `Debug`/`Display` redact the password.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::warehouse::WarehouseError;

/// How long connecting may take before it fails (libpq has no default; hanging is worse).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// libpq's `sslmode` values oms-sync supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS if the server offers it, certificate not verified; plain text otherwise.
    Prefer,
    /// TLS always, certificate not verified (encrypted, not authenticated, as libpq does).
    Require,
    /// TLS always, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, WarehouseError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(invalid(
                    "warehouse.url",
                    format!("has sslmode={other:?}, which oms-sync does not support"),
                    "use sslmode=disable, prefer, require or verify-full",
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgHost {
    Tcp(String),
    /// The directory holding the server's socket (`?host=/run/postgresql`).
    Unix(PathBuf),
}

/// A validated PostgreSQL warehouse location. The password is only ever handed to the driver.
#[derive(Clone)]
pub struct PgConfig {
    pub user: String,
    password: Option<String>,
    pub host: PgHost,
    pub port: u16,
    pub dbname: String,
    pub sslmode: SslMode,
    /// PEM file of the CA(s) to trust with `verify-full`, instead of the bundled web roots.
    pub sslrootcert: Option<PathBuf>,
    pub schema: String,
}

fn invalid(key: &'static str, reason: impl Into<String>, fix: &'static str) -> WarehouseError {
    WarehouseError::PgConfig {
        key,
        reason: reason.into(),
        fix,
    }
}

/// Stands in for the empty host of `postgresql://user@/db?host=/dir`, which `url` rejects.
const NO_HOST: &str = "unix-socket.invalid";

impl PgConfig {
    /// Validates `warehouse.url`, `warehouse.password_file`, `warehouse.schema` (default
    /// `public`) and `warehouse.allow_insecure`; `$CREDENTIALS_DIRECTORY/…` is expanded.
    pub fn parse(
        url: &str,
        password_file: Option<&str>,
        schema: Option<&str>,
        allow_insecure: bool,
    ) -> Result<PgConfig, WarehouseError> {
        let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Self::parse_in(url, password_file, schema, allow_insecure, creds.as_deref())
    }

    /// [`PgConfig::parse`] with the credentials directory given (tests).
    pub fn parse_in(
        url: &str,
        password_file: Option<&str>,
        schema: Option<&str>,
        allow_insecure: bool,
        credentials_dir: Option<&Path>,
    ) -> Result<PgConfig, WarehouseError> {
        const KEY: &str = "warehouse.url";
        let url = url.trim();
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| {
                invalid(
                    KEY,
                    "is not a postgresql:// URL",
                    "write it as postgresql://USER@HOST:PORT/DBNAME?sslmode=verify-full",
                )
            })?;
        // `user@/db`: no host in the authority (the socket directory comes in `?host=`).
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let empty_host = rest[..authority_end].is_empty() || rest[..authority_end].ends_with('@');
        let fixed = if empty_host {
            format!(
                "postgresql://{}{NO_HOST}{}",
                &rest[..authority_end],
                &rest[authority_end..]
            )
        } else {
            format!("postgresql://{rest}")
        };
        // The parse error of `url` never echoes the input, so a password cannot leak here.
        let parsed = Url::parse(&fixed).map_err(|e| {
            invalid(
                KEY,
                format!("is not a valid URL ({e})"),
                "write it as postgresql://USER@HOST:PORT/DBNAME?sslmode=verify-full",
            )
        })?;
        let decode = |s: &str| -> Result<String, WarehouseError> {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .ok_or_else(|| invalid(KEY, "has a bad percent-escape", "percent-encode it"))
        };
        let user = decode(parsed.username())?;
        if user.is_empty() {
            return Err(invalid(
                KEY,
                "names no user",
                "write it as postgresql://USER@HOST/DBNAME",
            ));
        }
        let url_password = parsed.password().map(decode).transpose()?;
        let dbname = decode(parsed.path().trim_start_matches('/'))?;
        if dbname.is_empty() || dbname.contains('/') {
            return Err(invalid(
                KEY,
                "names no database",
                "write it as postgresql://USER@HOST/DBNAME",
            ));
        }
        let mut sslmode = None;
        let mut socket_dir = None;
        let mut sslrootcert = None;
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "sslmode" => sslmode = Some(SslMode::parse(&v)?),
                "host" if v.starts_with('/') => socket_dir = Some(PathBuf::from(&*v)),
                "sslrootcert" => sslrootcert = Some(PathBuf::from(&*v)),
                other => {
                    return Err(invalid(
                        KEY,
                        format!("has an unsupported parameter {other:?}"),
                        "use only sslmode, sslrootcert and host=/socket/dir",
                    ));
                }
            }
        }
        let host = match (socket_dir, empty_host) {
            (Some(dir), true) => PgHost::Unix(dir),
            (None, true) => {
                return Err(invalid(
                    KEY,
                    "has no host",
                    "give HOST:PORT, or ?host=/run/postgresql for the unix socket",
                ));
            }
            (Some(_), false) => {
                return Err(invalid(
                    KEY,
                    "has both a host and ?host=",
                    "give one: HOST:PORT, or USER@/DB?host=/socket/dir",
                ));
            }
            (None, false) => PgHost::Tcp(
                parsed
                    .host_str()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            ),
        };
        let local = match &host {
            PgHost::Unix(_) => true,
            PgHost::Tcp(h) => is_loopback(h),
        };
        // libpq's default; the rule below makes it safe off the machine.
        let sslmode = sslmode.unwrap_or(SslMode::Prefer);
        if !local && !allow_insecure && matches!(sslmode, SslMode::Disable | SslMode::Prefer) {
            return Err(invalid(
                KEY,
                format!(
                    "reaches a non-loopback host with sslmode={}, which may send the password and the data unencrypted",
                    sslmode.as_str()
                ),
                "add ?sslmode=verify-full (or require), or set warehouse.allow_insecure = true if you really mean it",
            ));
        }
        if sslrootcert.is_some() && sslmode != SslMode::VerifyFull {
            return Err(invalid(
                KEY,
                "has sslrootcert without sslmode=verify-full",
                "add sslmode=verify-full, or drop sslrootcert",
            ));
        }
        let password = match (password_file, url_password) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "warehouse.password_file",
                    "is set while warehouse.url also holds a password",
                    "keep the password in one place, preferably the file",
                ));
            }
            (Some(file), None) => Some(super::password::read_password_file(file, credentials_dir)?),
            (None, p) => p,
        };
        Ok(PgConfig {
            user,
            password,
            host,
            port: parsed.port().unwrap_or(5432),
            dbname,
            sslmode,
            sslrootcert,
            schema: parse_schema(schema)?,
        })
    }

    /// The URL with the password replaced by `***`: what errors and logs show.
    pub fn redacted_url(&self) -> String {
        let pw = if self.password.is_some() { ":***" } else { "" };
        let mut q = vec![format!("sslmode={}", self.sslmode.as_str())];
        let host = match &self.host {
            PgHost::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            PgHost::Tcp(h) => format!("{h}:{}", self.port),
            PgHost::Unix(dir) => {
                q.insert(0, format!("host={}", dir.display()));
                String::new()
            }
        };
        if let Some(c) = &self.sslrootcert {
            q.push(format!("sslrootcert={}", c.display()));
        }
        format!(
            "postgresql://{}{pw}@{host}/{}?{}",
            self.user,
            self.dbname,
            q.join("&")
        )
    }

    /// The location errors name: redacted URL and schema.
    pub fn location(&self) -> String {
        format!("{} (schema {})", self.redacted_url(), self.schema)
    }

    /// The driver's connection settings (TLS is chosen by [`super::tls`]).
    pub fn driver_config(&self) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.user(&self.user)
            .dbname(&self.dbname)
            .port(self.port)
            .application_name("oms-sync")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => postgres::config::SslMode::Disable,
                SslMode::Prefer => postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyFull => postgres::config::SslMode::Require,
            });
        match &self.host {
            PgHost::Tcp(h) => c.host(h),
            PgHost::Unix(dir) => c.host_path(dir),
        };
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .finish()
    }
}

impl fmt::Display for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

/// Schema names are interpolated into SQL (quoted), so only plain identifiers pass.
fn parse_schema(schema: Option<&str>) -> Result<String, WarehouseError> {
    let s = schema.unwrap_or("public");
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(invalid(
            "warehouse.schema",
            format!("is {s:?}"),
            "use a plain lower-case identifier (a-z, 0-9, _; at most 63 characters), e.g. oms",
        ));
    }
    Ok(s.to_string())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<PgConfig, WarehouseError> {
        PgConfig::parse_in(url, None, None, false, None)
    }

    #[test]
    fn tcp_and_unix_socket_forms() {
        let c = parse("postgresql://oms@127.0.0.1:5433/wh?sslmode=disable").unwrap();
        assert_eq!(
            (c.user.as_str(), &c.host, c.port, c.dbname.as_str()),
            ("oms", &PgHost::Tcp("127.0.0.1".into()), 5433, "wh")
        );
        assert_eq!((c.sslmode, c.schema.as_str()), (SslMode::Disable, "public"));
        let c = parse("postgresql://oms@/warehouse?host=/run/postgresql").unwrap();
        assert_eq!(c.host, PgHost::Unix("/run/postgresql".into()));
        assert_eq!((c.port, c.dbname.as_str()), (5432, "warehouse"));
        let c = parse("postgres://oms@[::1]/wh").unwrap();
        assert_eq!(
            (c.host, c.sslmode),
            (PgHost::Tcp("::1".into()), SslMode::Prefer)
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
        let c =
            parse("postgresql://u@db.example.com/d?sslmode=verify-full&sslrootcert=/etc/ca.pem")
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
        assert!(!format!("{:?}", c.driver_config()).contains("s3cr"));
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
}
