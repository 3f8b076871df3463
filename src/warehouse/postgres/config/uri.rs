//! libpq's connection URI, taken apart: `postgresql://[user[:password]@][host[:port][,…]][/dbname][?k=v&…]`
//! with the host list, `host`/`port`/`dbname`/`user` as parameters, and percent-escapes. The
//! `url` crate cannot read it (several `host:port` pairs are not a URL authority). Errors
//! never echo the input, so a password cannot leak through them.

use std::path::PathBuf;

use super::{PgHost, invalid};
use crate::warehouse::WarehouseError;

const KEY: &str = "warehouse.url";
const FORM: &str =
    "write it as postgresql://USER@HOST:PORT[,HOST2:PORT2]/DBNAME?sslmode=verify-full";

/// The pieces of the URI, before the settings are checked against each other.
#[derive(Debug, Default)]
pub(super) struct Uri {
    pub user: Option<String>,
    pub password: Option<String>,
    /// The authority's hosts with their ports as written (None: not given).
    pub hosts: Vec<(PgHost, Option<u16>)>,
    pub dbname: Option<String>,
    /// The query parameters in order, decoded.
    pub params: Vec<(String, String)>,
}

pub(super) fn decode(s: &str) -> Result<String, WarehouseError> {
    percent_decode(s).ok_or_else(|| {
        invalid(
            KEY,
            "has a bad percent-escape or one that is not UTF-8",
            "percent-encode special characters, e.g. @ as %40",
        )
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A host as written: a socket directory if it starts with `/` (libpq's rule).
pub(super) fn host(h: &str) -> PgHost {
    if h.starts_with('/') {
        PgHost::Unix(PathBuf::from(h))
    } else {
        PgHost::Tcp(h.to_string())
    }
}

pub(super) fn port(p: &str) -> Result<u16, WarehouseError> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(
            KEY,
            format!("has port {p:?}, which is not a port number"),
            "give each host's port as HOST:PORT with PORT 1-65535 (default 5432)",
        )),
    }
}

pub(super) fn parse(url: &str) -> Result<Uri, WarehouseError> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| invalid(KEY, "is not a postgresql:// URL", FORM))?;
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    // The password may hold a literal `@` only percent-encoded; the last `@` ends userinfo.
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut uri = Uri::default();
    if let Some(u) = userinfo {
        let (user, password) = match u.split_once(':') {
            Some((user, pw)) => (user, Some(pw)),
            None => (u, None),
        };
        if !user.is_empty() {
            uri.user = Some(decode(user)?);
        }
        uri.password = password.map(decode).transpose()?;
    }
    if !hostlist.is_empty() {
        for chunk in hostlist.split(',') {
            let (h, p) = if let Some(inner) = chunk.strip_prefix('[') {
                let (h, after) = inner
                    .split_once(']')
                    .ok_or_else(|| invalid(KEY, "has an IPv6 host without its closing ]", FORM))?;
                let p = match after {
                    "" => None,
                    a => Some(
                        a.strip_prefix(':')
                            .ok_or_else(|| invalid(KEY, "has text after an IPv6 host's ]", FORM))?,
                    ),
                };
                (h.to_string(), p)
            } else {
                let (h, p) = match chunk.split_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (chunk, None),
                };
                (decode(h)?, p)
            };
            if h.is_empty() {
                return Err(invalid(
                    KEY,
                    "has an empty host in its host list",
                    "list hosts as HOST1:PORT1,HOST2:PORT2",
                ));
            }
            let p = p.filter(|p| !p.is_empty()).map(port).transpose()?;
            uri.hosts.push((host(&h), p));
        }
    }
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        uri.dbname = Some(decode(p)?);
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            invalid(
                KEY,
                "has a parameter without a value",
                "write parameters as ?key=value&key2=value2",
            )
        })?;
        uri.params.push((decode(k)?, decode(v)?));
    }
    Ok(uri)
}
