//! The command line: parses arguments (clap), rejects conflicting ones, loads the config, sets
//! up logging and runs one of the commands. Exit codes and the final error line live in
//! [`exit`]; `oms-sync check` in [`check`]; the long help's config summary in [`help`]; the
//! daemon's assembly in [`crate::daemon`].

pub mod check;
pub mod exit;
pub mod help;
pub mod logfmt;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::{Config, LogConfig, LogFormat, WarehouseConfig};
use crate::daemon::{self, Schedule};
use crate::status;
use crate::stream::Stream;
use crate::stream::StreamWarehouse;
use crate::sync::{NoProgress, Progress, SyncOptions};
use crate::warehouse::{self, AnyWarehouse, RunKind};

pub use exit::{ExitKind, Failure};

#[derive(Debug, Parser)]
#[command(
    name = "oms-sync",
    version,
    about = "Keeps a local SQLite warehouse in step with Akinon OMS customers",
    after_help = "Without --once, --backfill or a command, runs as a daemon: one incremental pass every sync.interval until SIGTERM/SIGINT.\nWithout --config, every key comes from OMS_SYNC__SECTION__KEY variables. --help lists the config file's locations and main keys.",
    after_long_help = help::after_long_help()
)]
pub struct Cli {
    /// Configuration file (TOML); OMS_SYNC__SECTION__KEY environment variables override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run one incremental pass of every stream of sync.streams and exit (with the first
    /// failure's exit code, after trying them all).
    #[arg(long, conflicts_with = "backfill")]
    pub once: bool,
    /// Run one full pass by id of every stream (resuming an unfinished one), mark records the
    /// API no longer lists as deleted, and exit.
    #[arg(long)]
    pub backfill: bool,
    /// With --backfill: only this stream (customers, stock_locations or customer_addresses).
    #[arg(long, value_name = "NAME", requires = "backfill", value_parser = parse_stream)]
    pub stream: Option<Stream>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the checkpoint, recent runs, row counts and lag (read-only; safe while the daemon runs).
    Status {
        /// Configuration file; only the [warehouse] section is read from it.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// The warehouse instead of a configuration: a SQLite file, or a postgresql:// URL.
        #[arg(long, value_name = "PATH|URL", conflicts_with = "config")]
        db: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check the config, the API (DNS, TCP, TLS, one authenticated request per stream) and the
    /// warehouse, printing each step as ok or failed with its fix. Changes nothing but creating
    /// the warehouse file if it is missing.
    Check {
        /// Configuration file; OMS_SYNC__SECTION__KEY environment variables override it.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the whole job against a built-in fake OMS with synthetic customers (no account needed).
    Demo {
        /// Where to write: a SQLite file (replaced if an earlier demo made it), or a
        /// postgresql:// URL (the demo writes schema oms_sync_demo there).
        #[arg(long, value_name = "PATH|URL", default_value = "demo.db")]
        db: String,
        /// Number of synthetic customers.
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
    },
    /// Write the man page and shell completions into DIR (used to build the package).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

/// `--stream NAME`: a known stream, or an error listing them.
fn parse_stream(name: &str) -> Result<Stream, String> {
    Stream::from_name(name).ok_or_else(|| {
        format!(
            "unknown stream {name:?}; the streams are: {}",
            Stream::names()
        )
    })
}

impl Cli {
    /// Combinations clap cannot express: a command with a mode flag, a config given twice, or
    /// a config the demo would ignore.
    fn conflicts(&self) -> Option<String> {
        let cmd = self.command.as_ref()?;
        let name = match cmd {
            Command::Status { .. } => "status",
            Command::Check { .. } => "check",
            Command::Demo { .. } => "demo",
            Command::GenerateAssets { .. } => "generate-assets",
        };
        if self.once || self.backfill {
            let flag = if self.once { "--once" } else { "--backfill" };
            return Some(format!("{flag} cannot be used with the `{name}` command"));
        }
        match cmd {
            Command::Demo { .. } if self.config.is_some() => {
                Some("the `demo` command uses its own fake OMS and takes no --config".to_string())
            }
            Command::Status { config, db, .. }
                if self.config.is_some() && (config.is_some() || db.is_some()) =>
            {
                Some("give the warehouse once: --config FILE or --db PATH".to_string())
            }
            Command::Check { config: Some(_) } if self.config.is_some() => {
                Some("--config is given twice".to_string())
            }
            _ => None,
        }
    }
}

/// The log format in force, so the final error line matches the other events.
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Entry point for `main.rs`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitKind::Usage
            } else {
                ExitKind::Success
            };
            let _ = e.print();
            return ExitCode::from(code.code());
        }
    };
    if let Some(msg) = cli.conflicts() {
        let _ = Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .print();
        return ExitCode::from(ExitKind::Usage.code());
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => exit::report(&f, LOG_FORMAT.get().copied().unwrap_or(LogFormat::Text)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                ExitKind::Other,
                anyhow::Error::new(e).context("cannot start the async runtime"),
            )
        })
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        #[cfg(feature = "demo")]
        Some(Command::Demo { db, customers }) => {
            init_logging(&LogConfig {
                level: "warn".into(),
                format: LogFormat::Text,
            });
            let target = crate::demo::target(&db).map_err(|e| Failure::new(ExitKind::Usage, e))?;
            runtime()?
                .block_on(crate::demo::run(&target, customers))
                .map_err(|e| Failure::new(ExitKind::Other, e))
        }
        #[cfg(not(feature = "demo"))]
        Some(Command::Demo { .. }) => Err(Failure::new(
            ExitKind::Usage,
            anyhow::anyhow!(
                "this oms-sync was built without the demo; fix: build it with the default \
                 features (cargo feature `demo`)"
            ),
        )),
        Some(Command::Status { config, db, json }) => {
            let location = match db {
                Some(db) => WarehouseConfig::from_db_arg(&db)?,
                None => match Config::load_warehouse(config.or(cli.config).as_deref()) {
                    Ok(wh) => wh,
                    // `status` needs only a file name: say so rather than list API variables.
                    Err(crate::config::ConfigError::Nothing) => {
                        return Err(Failure::new(
                            ExitKind::Usage,
                            anyhow::anyhow!(
                                "status needs a warehouse; fix: pass --db PATH, or --config FILE, or set OMS_SYNC__WAREHOUSE__PATH"
                            ),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            warehouse::open_reader(&location)
                .map_err(anyhow::Error::from)
                .and_then(|mut reader| status::print(reader.as_mut(), json))
                .map_err(|e| Failure::new(ExitKind::Warehouse, e))
        }
        Some(Command::GenerateAssets { dir }) => crate::manpage::write_assets(&dir)
            .map(drop)
            .map_err(|e| Failure::new(ExitKind::Other, e)),
        Some(Command::Check { config }) => {
            init_logging(&LogConfig {
                level: "error".into(),
                format: LogFormat::Text,
            });
            runtime()?.block_on(check::run(config.or(cli.config).as_deref()))
        }
        None => {
            let cfg = Config::load(cli.config.as_deref()).inspect_err(|_| {
                // The error is printed in the format the config asked for, if it says.
                if let Some(format) = crate::config::peek_log_format(cli.config.as_deref()) {
                    let _ = LOG_FORMAT.set(format);
                }
            })?;
            init_logging(&cfg.log);
            let mode = if cli.backfill {
                Mode::Backfill(cli.stream)
            } else if cli.once {
                Mode::Once
            } else {
                Mode::Daemon
            };
            runtime()?.block_on(async {
                let cancel = CancellationToken::new();
                daemon::spawn_signal_handler(cancel.clone());
                run_mode(&cfg, mode, &cancel).await
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    Once,
    /// Every enabled stream, or the one named by `--stream`.
    Backfill(Option<Stream>),
}

/// Opens the configured warehouse for writing off the async workers.
pub async fn open_warehouse(cfg: &WarehouseConfig) -> Result<AnyWarehouse, Failure> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || AnyWarehouse::open(&cfg))
        .await
        .map_err(|e| {
            Failure::new(
                ExitKind::Other,
                anyhow::anyhow!("warehouse open task failed: {e}"),
            )
        })?
        .map_err(Failure::from)
}

/// Runs the daemon, one pass or a backfill with an already loaded config.
pub async fn run_mode(cfg: &Config, mode: Mode, cancel: &CancellationToken) -> Result<(), Failure> {
    let client = ApiClient::new(&cfg.api).map_err(|e| Failure::new(ExitKind::Other, e))?;
    let wh = match open_warehouse(&cfg.warehouse).await {
        Ok(wh) => wh,
        Err(f) if matches!(mode, Mode::Backfill(_)) => return Err(backfill_while_locked(f, cfg)),
        Err(f) => return Err(f),
    };
    let opts = SyncOptions::from_config(cfg);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        base_url = %cfg.api.base_url,
        warehouse = %warehouse::describe(&cfg.warehouse),
        mode = ?mode,
        interval = %humantime::format_duration(cfg.sync.interval),
        lookback = %humantime::format_duration(cfg.sync.lookback),
        streams = %cfg.sync.streams.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        "oms-sync starting"
    );
    match mode {
        Mode::Daemon => {
            let schedule = Schedule {
                interval: cfg.sync.interval,
                options: opts,
                reconcile_every: cfg.sync.reconcile_every,
                keep_runs: cfg.sync.keep_runs,
                streams: cfg.sync.streams.clone(),
            };
            Ok(daemon::serve(cfg, client, wh, &schedule, cancel).await?)
        }
        Mode::Once | Mode::Backfill(_) => {
            let (kind, streams) = match mode {
                Mode::Backfill(Some(one)) => (RunKind::Backfill, vec![one]),
                Mode::Backfill(None) => (RunKind::Backfill, cfg.sync.streams.clone()),
                _ => (RunKind::Incremental, cfg.sync.streams.clone()),
            };
            let progress = |_| -> Arc<dyn Progress> {
                match kind {
                    RunKind::Backfill => Arc::new(crate::progress::BackfillProgress::new()),
                    RunKind::Incremental => Arc::new(NoProgress),
                }
            };
            let (wh, outcomes) = crate::tick::run_all(
                &streams,
                kind,
                &client,
                wh,
                &opts,
                cancel,
                &progress,
                &mut |stream, r| match r {
                    Ok(report) => crate::tick::log_pass(report),
                    Err(e) if streams.len() > 1 => crate::tick::log_failure(stream, kind, e, 1),
                    Err(_) => {}
                },
            )
            .await;
            if outcomes.iter().all(|(_, r)| r.is_ok()) {
                forget_old_runs(wh, cfg).await;
            }
            first_failure(outcomes, streams.len())
        }
    }
}

/// The first failed stream's failure (its exit code), named by stream when several ran; the
/// others were tried all the same and logged their own.
fn first_failure(outcomes: Vec<crate::tick::Outcome>, ran: usize) -> Result<(), Failure> {
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    match outcomes
        .into_iter()
        .find_map(|(s, r)| r.err().map(|e| (s, e)))
    {
        None => Ok(()),
        Some((_, e)) if ran == 1 => Err(Failure::from(e)),
        Some((stream, e)) => {
            let f = Failure::from(e);
            Err(Failure {
                kind: f.kind,
                error: f.error.context(format!(
                    "stream {} failed ({failed} of {ran} streams failed; the others ran)",
                    stream.name()
                )),
            })
        }
    }
}

/// `sync.keep_runs` after a one-shot run's passes. Housekeeping: a failure is a warning, the
/// passes it follows succeeded.
async fn forget_old_runs<W: StreamWarehouse>(wh: W, cfg: &Config) {
    if let (_, Err(e)) = crate::sync::retention::prune_runs(wh, cfg.sync.keep_runs).await {
        tracing::warn!(error = %e, "cannot forget old runs (sync.keep_runs); the next run tries again");
    }
}

/// `--backfill` while another process (the daemon, as a rule) holds the warehouse: says that
/// the daemon reconciles by itself and how to reconcile now instead.
fn backfill_while_locked(f: Failure, cfg: &Config) -> Failure {
    let held = match f.error.downcast_ref::<warehouse::WarehouseError>() {
        Some(warehouse::WarehouseError::Locked { at, pid, .. }) => format!(
            "{at} is in use by another oms-sync process{}",
            pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
        ),
        _ => return f,
    };
    let every = cfg.sync.reconcile_every;
    let schedule = if every.is_zero() {
        "the daemon's own reconciliation is off (sync.reconcile_every = \"0s\")".to_string()
    } else {
        format!(
            "a running daemon does this backfill itself every {} (sync.reconcile_every), in slices between its incremental passes; `oms-sync status` shows its progress",
            humantime::format_duration(every)
        )
    };
    Failure::new(
        ExitKind::Warehouse,
        anyhow::anyhow!(
            "{held}; --backfill cannot run beside it: {schedule}; fix: to reconcile now, stop the daemon (systemctl stop oms-sync), run --backfill, then start the daemon again (it keeps its checkpoint); the packaged oms-sync-backfill.service does all three: systemctl start --no-block oms-sync-backfill"
        ),
    )
}

/// Libraries whose INFO lines are chatter for an operator (each PostgreSQL connect: refinery's
/// "no migrations to apply", the server's `NOTICE: relation … already exists, skipping`):
/// shown from `log.level = "debug"` on.
const QUIET_BELOW_DEBUG: &str =
    "refinery=warn,refinery_core=warn,tokio_postgres=warn,postgres=warn";

/// The filter for `log.level`: the level, with [`QUIET_BELOW_DEBUG`] unless it asks for
/// debug or trace (then everything it names shows).
fn level_filter(level: &str) -> String {
    let verbose = level.contains("debug") || level.contains("trace");
    if verbose {
        level.to_string()
    } else {
        format!("{level},{QUIET_BELOW_DEBUG}")
    }
}

/// Logs to stderr: text in logfmt fields ([`logfmt`]; no colours unless stderr is a
/// terminal) or JSON. `RUST_LOG` wins over `log.level` when set.
pub fn init_logging(cfg: &LogConfig) {
    let _ = LOG_FORMAT.set(cfg.format);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::try_new(level_filter(&cfg.level))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cfg.format {
        LogFormat::Text => builder.fmt_fields(logfmt::Logfmt).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
