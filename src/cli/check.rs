//! `oms-sync check`: the first command an operator runs, and an `ExecStartPre=` candidate.
//! It validates the config, resolves the API host, connects (TCP, then TLS and HTTP), makes one
//! authenticated `limit=1` request per stream, verifies what each stream's endpoint honours
//! (its `OPTIONS` and probes of the filters and sort a pass relies on: [`crate::sync::verify`]),
//! and opens the warehouse (lock, migrations, a write rolled
//! back), printing each step as ok or FAILED with its fix. The exit code is the first failed
//! step's kind ([`ExitKind`]); later API steps are skipped once one fails, the warehouse step
//! always runs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::api::{self, ApiClient, ApiError, CONNECT_TIMEOUT};
use crate::config::{Config, WarehouseConfig};
use crate::stream::Stream;

use super::exit::{ExitKind, Failure};

/// Longest wait for each network step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// One step's outcome.
enum Outcome {
    Ok(String),
    Failed(ExitKind, String),
    Skipped,
}

/// Prints each step as it ends, and remembers the first failure.
struct Report {
    out: std::io::Stdout,
    first_failure: Option<(ExitKind, &'static str, String)>,
    failed: usize,
    steps: usize,
}

impl Report {
    fn step(&mut self, name: &'static str, outcome: Outcome) -> std::io::Result<bool> {
        self.steps += 1;
        let (tag, text, ok) = match outcome {
            Outcome::Ok(detail) => ("ok", detail, true),
            Outcome::Skipped => ("skipped", "an earlier step failed".to_string(), false),
            Outcome::Failed(kind, msg) => {
                self.failed += 1;
                if self.first_failure.is_none() {
                    self.first_failure = Some((kind, name, msg.clone()));
                }
                ("FAILED", msg, false)
            }
        };
        writeln!(self.out, "{tag:<8}{name:<11}{text}")?;
        self.out.flush()?;
        Ok(ok)
    }
}

/// Runs every step; `Err` carries the first failed step's exit kind.
pub async fn run(config: Option<&Path>) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::new(ExitKind::Other, e);
    let mut report = Report {
        out: std::io::stdout(),
        first_failure: None,
        failed: 0,
        steps: 0,
    };
    let cfg = match Config::load(config) {
        Ok(cfg) => {
            let from = config.map_or("the environment only".to_string(), |p| {
                format!("{} (and OMS_SYNC__* variables)", p.display())
            });
            report.step("config", Outcome::Ok(from)).map_err(io)?;
            cfg
        }
        Err(e) => {
            report
                .step("config", Outcome::Failed(ExitKind::Usage, e.to_string()))
                .map_err(io)?;
            return finish(report);
        }
    };
    let mut ok = true;
    for (name, step) in [
        ("dns", Step::Dns),
        ("connect", Step::Connect),
        (tls_name(&cfg), Step::Tls),
    ] {
        let outcome = if ok {
            step.run(&cfg).await
        } else {
            Outcome::Skipped
        };
        ok = report.step(name, outcome).map_err(io)?;
    }
    // One `auth` step per stream: a token may be allowed one endpoint and not another, so
    // every stream is asked even when an earlier one is refused.
    let client = ok.then(|| auth_client(&cfg));
    for stream in &cfg.sync.streams {
        let outcome = match &client {
            None => Outcome::Skipped,
            Some(Err(e)) => Outcome::Failed(ExitKind::Other, e.to_string()),
            Some(Ok(c)) => auth(c, *stream).await,
        };
        report.step("auth", outcome).map_err(io)?;
    }
    // Then what each endpoint honours (django-filter ignores what it does not declare).
    for stream in &cfg.sync.streams {
        let outcome = match &client {
            Some(Ok(c)) if report.failed == 0 => endpoint(c, *stream).await,
            _ => Outcome::Skipped,
        };
        report.step("endpoint", outcome).map_err(io)?;
    }
    let outcome = warehouse(&cfg.warehouse).await;
    report.step("warehouse", outcome).map_err(io)?;
    finish(report)
}

fn finish(mut report: Report) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::new(ExitKind::Other, e);
    match report.first_failure.take() {
        None => {
            writeln!(report.out, "all {} checks passed", report.steps).map_err(io)?;
            Ok(())
        }
        Some((kind, name, msg)) => {
            writeln!(
                report.out,
                "{} of {} checks failed",
                report.failed, report.steps
            )
            .map_err(io)?;
            Err(Failure::new(
                kind,
                anyhow::anyhow!("check failed at `{name}`: {msg}"),
            ))
        }
    }
}

fn tls_name(cfg: &Config) -> &'static str {
    if cfg.api.base_url.scheme() == "https" {
        "tls"
    } else {
        "http"
    }
}

#[derive(Clone, Copy)]
enum Step {
    Dns,
    Connect,
    Tls,
}

impl Step {
    async fn run(self, cfg: &Config) -> Outcome {
        let url = &cfg.api.base_url;
        let endpoint = api::endpoint_of(url);
        match self {
            Step::Dns => match resolve(cfg).await {
                Ok(addrs) => Outcome::Ok(format!(
                    "{} -> {}",
                    url.host_str().unwrap_or("?"),
                    addrs
                        .iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(cause) => Outcome::Failed(
                    ExitKind::Api,
                    format!(
                        "cannot resolve {endpoint}: {cause}; fix: check the host name in api.base_url and the DNS resolver"
                    ),
                ),
            },
            Step::Connect => {
                let addrs = match resolve(cfg).await {
                    Ok(a) => a,
                    Err(cause) => {
                        return Outcome::Failed(ExitKind::Api, format!("{endpoint}: {cause}"));
                    }
                };
                let mut last = String::new();
                for addr in addrs {
                    let started = Instant::now();
                    match tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {
                            return Outcome::Ok(format!(
                                "TCP to {addr} in {} ms",
                                started.elapsed().as_millis()
                            ));
                        }
                        Ok(Err(e)) => last = format!("{addr}: {e}"),
                        // An address that is not answering at all: try the next one.
                        Err(_) => last = format!("{addr}: timed out after {CONNECT_TIMEOUT:?}"),
                    }
                }
                Outcome::Failed(
                    ExitKind::Api,
                    format!(
                        "cannot connect to {last}; fix: check the port in api.base_url, that the OMS is up, and firewalls on the way"
                    ),
                )
            }
            Step::Tls => probe(cfg).await,
        }
    }
}

async fn resolve(cfg: &Config) -> Result<Vec<SocketAddr>, String> {
    let url = &cfg.api.base_url;
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                Err("no addresses".into())
            } else {
                Ok(v)
            }
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {STEP_TIMEOUT:?}")),
    }
}

/// An unauthenticated GET of the origin: any HTTP answer proves TLS (for https) and HTTP work.
async fn probe(cfg: &Config) -> Outcome {
    let url = cfg.api.base_url.clone();
    let client = match reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(STEP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(ExitKind::Other, format!("HTTP client: {e}")),
    };
    match client.get(url.clone()).send().await {
        Ok(resp) => Outcome::Ok(format!(
            "{} answers (HTTP {} from {url})",
            if url.scheme() == "https" {
                "TLS handshake done, the server"
            } else {
                "the server"
            },
            resp.status().as_u16()
        )),
        Err(e) => {
            let err = api::transport_error(&e, url.to_string(), api::endpoint_of(&url));
            Outcome::Failed(ExitKind::Api, with_fix(&err))
        }
    }
}

/// A transport error with a fix, whichever variant it is.
fn with_fix(err: &ApiError) -> String {
    match err {
        ApiError::Transport { .. } => {
            format!("{err}; fix: check api.base_url, the network and that the OMS is up")
        }
        other => other.to_string(),
    }
}

/// The client of the `auth` steps: the configured one, without retries.
fn auth_client(cfg: &Config) -> Result<ApiClient, ApiError> {
    let mut api_cfg = cfg.api.clone();
    api_cfg.max_retries = 0;
    api_cfg.timeout = api_cfg.timeout.min(STEP_TIMEOUT.max(CONNECT_TIMEOUT));
    ApiClient::new(&api_cfg)
}

/// One authenticated request for one record of `stream`.
async fn auth(client: &ApiClient, stream: Stream) -> Outcome {
    match stream.probe(client).await {
        Ok(p) => Outcome::Ok(format!(
            "the token may list {} (GET {} with limit=1: {} of {} listed)",
            stream.name(),
            stream.path(),
            p.listed,
            p.count
        )),
        Err(e) => {
            let e = match e {
                ApiError::GaveUp { last, .. } => *last,
                other => other,
            };
            let kind = ExitKind::from(&e);
            Outcome::Failed(kind, format!("{}: {}", stream.name(), with_fix(&e)))
        }
    }
}

/// Verifies what `stream`'s endpoint honours; anything a pass relies on that it ignores
/// fails the step (the pass would fail at its page check).
async fn endpoint(client: &ApiClient, stream: Stream) -> Outcome {
    use crate::sync::verify::{Mode, Seen};
    match stream.verify(client).await {
        Ok(f) => {
            let mut text = format!("{}: allows {}: {}", stream.name(), f.mode.as_str(), f.note);
            if !f.undeclared_fields.is_empty() {
                text.push_str(&format!(
                    "; fields not declared (kept in extra): {}",
                    f.undeclared_fields.join(", ")
                ));
            }
            if !f.missing_fields.is_empty() {
                text.push_str(&format!(
                    "; WARNING: declared fields the endpoint no longer lists: {}",
                    f.missing_fields.join(", ")
                ));
            }
            let trusted = f.mode == Mode::Keyset && f.id_filter != Seen::Ignored;
            if trusted {
                Outcome::Ok(text)
            } else {
                Outcome::Failed(ExitKind::Api, text)
            }
        }
        Err(e) => Outcome::Failed(
            ExitKind::from(&e),
            format!("{}: {}", stream.name(), with_fix(&e)),
        ),
    }
}

/// Opens the warehouse as the daemon would, then proves a write (rolled back).
async fn warehouse(cfg: &WarehouseConfig) -> Outcome {
    // A PostgreSQL schema that only this check would create is dropped again after it.
    let created = match cfg {
        WarehouseConfig::Postgres(pg) => {
            let pg = pg.clone();
            match tokio::task::spawn_blocking(move || {
                crate::warehouse::postgres::schema_exists(&pg)
            })
            .await
            {
                Ok(Ok(exists)) => !exists,
                Ok(Err(e)) => return Outcome::Failed(ExitKind::Warehouse, e.to_string()),
                Err(e) => {
                    return Outcome::Failed(ExitKind::Other, format!("warehouse task failed: {e}"));
                }
            }
        }
        WarehouseConfig::Sqlite { .. } => false,
    };
    let mut wh = match super::open_warehouse(cfg).await {
        Ok(wh) => wh,
        Err(f) => return Outcome::Failed(f.kind, f.message()),
    };
    let where_ = crate::warehouse::describe(cfg);
    // SQLite stays off the async workers.
    let probe = tokio::task::spawn_blocking(
        move || -> Result<String, crate::warehouse::WarehouseError> {
            let state = wh.probe_writable()?;
            if created {
                wh.drop_created_schema()?;
                return Ok(format!("{state}; the schema it created was dropped again"));
            }
            Ok(state)
        },
    )
    .await;
    match probe {
        Ok(Ok(state)) => Outcome::Ok(format!("{where_}: lock taken, {state}")),
        Ok(Err(e)) => Outcome::Failed(ExitKind::Warehouse, e.to_string()),
        Err(e) => Outcome::Failed(ExitKind::Other, format!("warehouse probe task failed: {e}")),
    }
}
