//! Where a PostgreSQL warehouse is and how to reach it: libpq's URL forms (one or several
//! `host:port` pairs, unix sockets, `target_session_attrs`, `connect_timeout`,
//! `application_name`), the password (`warehouse.password_file` or the URL; else libpq's
//! `PGPASSWORD` and `.pgpass`, read when connecting; never printed), `sslmode` and the schema,
//! validated once into a [`PgConfig`] whose `Debug`/`Display` redact the password.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::warehouse::WarehouseError;

mod uri;

pub use super::password::LibpqEnv;
#[cfg(test)]
mod tests;

/// How long connecting to one host may take before it fails, unless `connect_timeout` is
/// given (libpq waits forever by default; hanging is worse).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `application_name` the server shows in `pg_stat_activity`, unless the URL sets one.
pub const APPLICATION_NAME: &str = "oms-sync";

/// libpq's `target_session_attrs` values the driver supports (`primary`, `standby` and
/// `prefer-standby` need `pg_is_in_recovery()`, which it does not check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// The first host that accepts the connection.
    Any,
    /// The first host whose sessions take writes (the primary of a replicated pair).
    ReadWrite,
    /// The first host whose sessions are read-only (a standby).
    ReadOnly,
}

impl SessionAttrs {
    fn parse(s: &str) -> Result<SessionAttrs, WarehouseError> {
        Ok(match s {
            "any" => SessionAttrs::Any,
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            other => {
                return Err(invalid(
                    "warehouse.url",
                    format!("has target_session_attrs={other:?}, which oms-sync does not support"),
                    "use target_session_attrs=read-write (the primary, which oms-sync needs to write), or any",
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
        }
    }
}

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
    /// Where the servers listen, each with its port, tried in order (libpq's multi-host form).
    pub hosts: Vec<(PgHost, u16)>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// PEM file of the CA(s) to trust with `verify-full`, instead of the bundled web roots.
    pub sslrootcert: Option<PathBuf>,
    pub target_session_attrs: SessionAttrs,
    /// Per host tried.
    pub connect_timeout: Duration,
    pub application_name: String,
    pub schema: String,
}

fn invalid(key: &'static str, reason: impl Into<String>, fix: &'static str) -> WarehouseError {
    WarehouseError::Config {
        key,
        reason: reason.into(),
        fix,
    }
}

/// Refuses a setting given twice (in the URL's body and as a parameter): which one wins
/// differs between tools, so oms-sync asks for one.
fn once<T>(a: Option<T>, b: Option<T>, what: &str) -> Result<Option<T>, WarehouseError> {
    match (a, b) {
        (Some(_), Some(_)) => Err(invalid(
            "warehouse.url",
            format!("gives the {what} both in its body and as ?{what}="),
            "give it once",
        )),
        (a, b) => Ok(a.or(b)),
    }
}

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
        let u = uri::parse(url.trim())?;
        let mut sslmode = None;
        let mut sslrootcert = None;
        let mut param_hosts: Option<Vec<PgHost>> = None;
        let mut param_ports: Option<Vec<u16>> = None;
        let (mut param_db, mut param_user) = (None, None);
        let mut target_session_attrs = SessionAttrs::Any;
        let mut connect_timeout = CONNECT_TIMEOUT;
        let mut application_name = APPLICATION_NAME.to_string();
        for (k, v) in &u.params {
            match k.as_str() {
                "sslmode" => sslmode = Some(SslMode::parse(v)?),
                "sslrootcert" => sslrootcert = Some(PathBuf::from(v)),
                "host" => param_hosts = Some(v.split(',').map(uri::host).collect()),
                "port" => {
                    param_ports = Some(
                        v.split(',')
                            .map(|p| if p.is_empty() { Ok(5432) } else { uri::port(p) })
                            .collect::<Result<_, _>>()?,
                    );
                }
                "dbname" => param_db = Some(v.clone()),
                "user" => param_user = Some(v.clone()),
                "target_session_attrs" => target_session_attrs = SessionAttrs::parse(v)?,
                "connect_timeout" => {
                    connect_timeout = match v.trim().parse::<u64>() {
                        Ok(s) if s > 0 => Duration::from_secs(s),
                        _ => {
                            return Err(invalid(
                                KEY,
                                format!("has connect_timeout={v:?}"),
                                "give whole seconds per host, at least 1 (default 10)",
                            ));
                        }
                    }
                }
                "application_name" => application_name = v.clone(),
                other => {
                    return Err(invalid(
                        KEY,
                        format!("has an unsupported parameter {other:?}"),
                        "use only sslmode, sslrootcert, host, port, dbname, user, target_session_attrs, connect_timeout and application_name",
                    ));
                }
            }
        }
        let user = once(u.user, param_user, "user")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                invalid(
                    KEY,
                    "names no user",
                    "write it as postgresql://USER@HOST/DBNAME",
                )
            })?;
        let dbname = once(u.dbname, param_db, "dbname")?
            .filter(|d| !d.is_empty() && !d.contains('/'))
            .ok_or_else(|| {
                invalid(
                    KEY,
                    "names no database",
                    "write it as postgresql://USER@HOST/DBNAME",
                )
            })?;
        let hosts = match (u.hosts.is_empty(), param_hosts) {
            (true, None) => {
                return Err(invalid(
                    KEY,
                    "has no host",
                    "give HOST:PORT, or ?host=/run/postgresql for the unix socket",
                ));
            }
            (false, Some(_)) => {
                return Err(invalid(
                    KEY,
                    "has both a host and ?host=",
                    "give one: HOST:PORT[,HOST2:PORT2], or USER@/DB?host=/socket/dir",
                ));
            }
            (true, Some(hosts)) => {
                let ports = param_ports.unwrap_or_else(|| vec![5432]);
                if ports.len() != 1 && ports.len() != hosts.len() {
                    return Err(invalid(
                        KEY,
                        format!("gives {} ports for {} hosts", ports.len(), hosts.len()),
                        "give one port for all hosts, or one per host in the same order",
                    ));
                }
                let port_of = |i: usize| ports.get(i).copied().unwrap_or(ports[0]);
                hosts
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| (h, port_of(i)))
                    .collect::<Vec<_>>()
            }
            (false, None) => {
                if param_ports.is_some() && u.hosts.iter().any(|(_, p)| p.is_some()) {
                    return Err(invalid(
                        KEY,
                        "gives ports both after its hosts and as ?port=",
                        "give them once, as HOST:PORT",
                    ));
                }
                let ports = param_ports.unwrap_or_default();
                if ports.len() > 1 && ports.len() != u.hosts.len() {
                    return Err(invalid(
                        KEY,
                        format!("gives {} ports for {} hosts", ports.len(), u.hosts.len()),
                        "give them as HOST1:PORT1,HOST2:PORT2",
                    ));
                }
                u.hosts
                    .into_iter()
                    .enumerate()
                    .map(|(i, (h, p))| {
                        let port = p
                            .or_else(|| ports.get(i).or(ports.first()).copied())
                            .unwrap_or(5432);
                        (h, port)
                    })
                    .collect()
            }
        };
        let local = hosts.iter().all(|(h, _)| match h {
            PgHost::Unix(_) => true,
            PgHost::Tcp(h) => is_loopback(h),
        });
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
        let password = match (password_file, u.password) {
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
            hosts,
            dbname,
            sslmode,
            sslrootcert,
            target_session_attrs,
            connect_timeout,
            application_name,
            schema: parse_schema(schema)?,
        })
    }

    /// The URL with the password replaced by `***`: what errors and logs show.
    pub fn redacted_url(&self) -> String {
        let pw = if self.password.is_some() { ":***" } else { "" };
        let mut q = Vec::new();
        let tcp_only = self.hosts.iter().all(|(h, _)| matches!(h, PgHost::Tcp(_)));
        let authority = if tcp_only {
            let list: Vec<String> = self
                .hosts
                .iter()
                .map(|(h, port)| match h {
                    PgHost::Tcp(h) if h.contains(':') => format!("[{h}]:{port}"),
                    PgHost::Tcp(h) => format!("{h}:{port}"),
                    PgHost::Unix(d) => d.display().to_string(),
                })
                .collect();
            list.join(",")
        } else {
            let hosts: Vec<String> = self
                .hosts
                .iter()
                .map(|(h, _)| match h {
                    PgHost::Tcp(h) => h.clone(),
                    PgHost::Unix(d) => d.display().to_string(),
                })
                .collect();
            q.push(format!("host={}", hosts.join(",")));
            if self.hosts.iter().any(|(_, p)| *p != 5432) {
                let ports: Vec<String> = self.hosts.iter().map(|(_, p)| p.to_string()).collect();
                q.push(format!("port={}", ports.join(",")));
            }
            String::new()
        };
        q.push(format!("sslmode={}", self.sslmode.as_str()));
        if let Some(c) = &self.sslrootcert {
            q.push(format!("sslrootcert={}", c.display()));
        }
        if self.target_session_attrs != SessionAttrs::Any {
            q.push(format!(
                "target_session_attrs={}",
                self.target_session_attrs.as_str()
            ));
        }
        format!(
            "postgresql://{}{pw}@{authority}/{}?{}",
            self.user,
            self.dbname,
            q.join("&")
        )
    }

    /// The location errors name: redacted URL and schema.
    pub fn location(&self) -> String {
        format!("{} (schema {})", self.redacted_url(), self.schema)
    }

    /// [`PgConfig::location`] as errors name it.
    pub fn at(&self) -> crate::warehouse::Location {
        crate::warehouse::Location::Server(self.location())
    }

    /// The driver's connection settings (TLS is chosen by [`super::tls`]). Without a password
    /// in the config, libpq's `PGPASSWORD` and `.pgpass` are consulted now, as libpq does
    /// when it connects (a changed file is seen on the next connection).
    pub fn driver_config(&self) -> postgres::Config {
        self.driver_config_in(&super::password::LibpqEnv::from_process())
    }

    /// [`PgConfig::driver_config`] with libpq's environment given (tests).
    pub fn driver_config_in(&self, env: &super::password::LibpqEnv) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .target_session_attrs(match self.target_session_attrs {
                SessionAttrs::Any => postgres::config::TargetSessionAttrs::Any,
                SessionAttrs::ReadWrite => postgres::config::TargetSessionAttrs::ReadWrite,
                SessionAttrs::ReadOnly => postgres::config::TargetSessionAttrs::ReadOnly,
            })
            .ssl_mode(match self.sslmode {
                SslMode::Disable => postgres::config::SslMode::Disable,
                SslMode::Prefer => postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyFull => postgres::config::SslMode::Require,
            });
        for (h, port) in &self.hosts {
            match h {
                PgHost::Tcp(h) => c.host(h),
                PgHost::Unix(dir) => c.host_path(dir),
            };
            c.port(*port);
        }
        let password = match &self.password {
            Some(p) => Some(p.clone()),
            None => env.password(&self.hosts, &self.dbname, &self.user),
        };
        if let Some(p) = password {
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
