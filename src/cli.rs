//! The command line: parses arguments (clap), loads the config, sets up logging, runs one of
//! the commands, and turns the outcome into an exit code and one line on stderr.
//!
//! Exit codes: 0 success (also the daemon stopped by SIGTERM/SIGINT), 1 other failure,
//! 2 usage or configuration error, 3 authentication failed, 4 API unreachable or misbehaving,
//! 5 warehouse unusable, 6 a one-shot run stopped by a signal before it finished.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError};
use crate::config::{Config, ConfigError, LogConfig, LogFormat};
use crate::daemon::{self, Hooks, Schedule};
use crate::metrics::{self, Metrics};
use crate::notify::{self, Heartbeat, Notifier};
use crate::resource::Customers;
use crate::status;
use crate::sync::{self, NoProgress, Progress, SyncError, SyncOptions};
use crate::warehouse::{SqliteWarehouse, WarehouseError};

#[derive(Debug, Parser)]
#[command(
    name = "oms-sync",
    version,
    about = "Keeps a local SQLite warehouse in step with Akinon OMS customers",
    after_help = "Without --once, --backfill or a command, runs as a daemon: one incremental pass every sync.interval until SIGTERM/SIGINT."
)]
pub struct Cli {
    /// Configuration file (TOML); OMS_SYNC__SECTION__KEY environment variables override it.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run one incremental pass and exit.
    #[arg(long, conflicts_with = "backfill")]
    pub once: bool,
    /// Run one full pass by id (resuming an unfinished one), mark customers the API no longer
    /// lists as deleted, and exit.
    #[arg(long)]
    pub backfill: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the checkpoint, recent runs, row counts and lag (read-only; safe while the daemon runs).
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the whole job against a built-in fake OMS with synthetic customers (no account needed).
    Demo {
        /// Warehouse file to create or update.
        #[arg(long, default_value = "demo.db")]
        db: PathBuf,
        /// Number of synthetic customers.
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
    },
    /// Write the man page and shell completions into DIR (used to build the package).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

/// Failure with its exit code; the message is the whole story for the user.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
        }
    }
}

/// Maps a library error to its exit code.
pub fn exit_code(e: &SyncError) -> u8 {
    match e {
        SyncError::Api(ApiError::Auth { .. }) => 3,
        SyncError::Api(_) | SyncError::NoProgress { .. } => 4,
        SyncError::Warehouse(_) | SyncError::Writer(_) => 5,
        SyncError::Cancelled => 6,
    }
}

/// Entry point for `main.rs`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                1,
                anyhow::Error::new(e).context("cannot start the async runtime"),
            )
        })
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    if let Some(Command::Demo { db, customers }) = &cli.command {
        init_logging(&LogConfig {
            level: "warn".into(),
            format: LogFormat::Text,
        });
        return runtime()?
            .block_on(crate::demo::run(db, *customers))
            .map_err(|e| Failure::new(1, e));
    }
    if let Some(Command::GenerateAssets { dir }) = &cli.command {
        return crate::manpage::write_assets(dir)
            .map(drop)
            .map_err(|e| Failure::new(1, e));
    }
    let config_path = cli.config.as_deref().ok_or_else(|| {
        Failure::new(
            2,
            anyhow::anyhow!(
                "no configuration file; fix: pass --config FILE (see config/oms-sync.example.toml)"
            ),
        )
    })?;
    if let Some(Command::Status { json }) = cli.command {
        let wh =
            Config::load_warehouse(config_path).map_err(|e: ConfigError| Failure::new(2, e))?;
        return status::print(&wh.path, json).map_err(|e| Failure::new(5, e));
    }
    let cfg = Config::load(config_path).map_err(|e: ConfigError| Failure::new(2, e))?;
    init_logging(&cfg.log);
    let rt = runtime()?;
    rt.block_on(async {
        let cancel = CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        let mode = if cli.backfill {
            Mode::Backfill
        } else if cli.once {
            Mode::Once
        } else {
            Mode::Daemon
        };
        run_mode(&cfg, mode, &cancel).await
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    Once,
    Backfill,
}

async fn open_warehouse(path: &Path) -> Result<SqliteWarehouse, Failure> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || SqliteWarehouse::open(&p))
        .await
        .map_err(|e| Failure::new(1, anyhow::anyhow!("warehouse open task failed: {e}")))?
        .map_err(|e: WarehouseError| Failure::new(5, e))
}

/// Runs the daemon, one pass or a backfill with an already loaded config.
pub async fn run_mode(cfg: &Config, mode: Mode, cancel: &CancellationToken) -> Result<(), Failure> {
    let client = ApiClient::new(&cfg.api).map_err(|e| Failure::new(1, e))?;
    let wh = open_warehouse(&cfg.warehouse.path).await?;
    let opts = SyncOptions::from_config(cfg);
    tracing::info!(
        base_url = %cfg.api.base_url,
        warehouse = %cfg.warehouse.path.display(),
        mode = ?mode,
        "oms-sync starting"
    );
    let pass_failure = |e: SyncError| {
        let code = exit_code(&e);
        let err = anyhow::Error::new(e);
        Failure::new(
            code,
            if code == 6 {
                err.context("stopped by a signal; committed pages are kept, run again to continue")
            } else {
                err
            },
        )
    };
    match mode {
        Mode::Daemon => {
            let schedule = Schedule {
                interval: cfg.sync.interval,
                options: opts,
            };
            run_daemon(cfg, client, wh, &schedule, cancel).await
        }
        Mode::Once => {
            let (_wh, r) = sync::incremental_pass::<Customers, _>(
                &client,
                wh,
                &opts,
                cancel,
                Arc::new(NoProgress),
            )
            .await;
            let report = r.map_err(pass_failure)?;
            daemon::log_pass(&report);
            Ok(())
        }
        Mode::Backfill => {
            let progress: Arc<dyn Progress> = Arc::new(crate::progress::BackfillProgress::new());
            let (_wh, r) =
                sync::backfill_pass::<Customers, _>(&client, wh, &opts, cancel, progress).await;
            let report = r.map_err(pass_failure)?;
            daemon::log_pass(&report);
            Ok(())
        }
    }
}

/// The daemon with its service plumbing: metrics endpoint, request observer, systemd
/// readiness, per-pass status and watchdog.
async fn run_daemon(
    cfg: &Config,
    mut client: ApiClient,
    wh: SqliteWarehouse,
    schedule: &Schedule,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    let notifier = Notifier::from_env();
    let heartbeat = Heartbeat::new();
    let metrics = match cfg.metrics.listen {
        None => None,
        Some(addr) => {
            let listener = metrics::bind(addr).await.map_err(|e| {
                Failure::new(
                    2,
                    anyhow::anyhow!(
                        "cannot listen on metrics.listen {addr}: {e}; fix: choose a free address:port, or leave metrics.listen out"
                    ),
                )
            })?;
            let m = Arc::new(Metrics::new());
            // Lag and last success are known from the warehouse before the first pass ends.
            if let Ok(s) = status::read(&cfg.warehouse.path) {
                m.seed(
                    s.newest_modified_date.as_deref(),
                    s.last_success_at.as_deref(),
                );
            }
            tracing::info!(listen = %addr, "serving Prometheus metrics at /metrics");
            tokio::spawn(metrics::serve(listener, m.clone(), cancel.clone()));
            Some(m)
        }
    };
    {
        // Every finished HTTP attempt shows the loop is alive, even during a long retry run.
        let hb = heartbeat.clone();
        let m = metrics.clone();
        client.set_observer(Arc::new(move |status, elapsed| {
            hb.beat();
            if let Some(m) = &m {
                m.observe_request(status, elapsed);
            }
        }));
    }
    let observe: daemon::PassObserver = {
        let notifier = notifier.clone();
        let metrics = metrics.clone();
        Box::new(move |r| {
            if let Some(m) = &metrics {
                m.observe_pass(r);
            }
            notifier.status(&notify::pass_status(r, chrono::Utc::now()));
        })
    };
    let progress: Arc<dyn Progress> = match &metrics {
        Some(m) => m.clone(),
        None => Arc::new(NoProgress),
    };
    notifier.ready("started; first pass running");
    let watchdog_stop = CancellationToken::new();
    if notifier.is_enabled()
        && let Some(timeout) = notify::watchdog_timeout()
    {
        tracing::info!(
            timeout_ms = timeout.as_millis() as u64,
            "feeding the systemd watchdog while the sync loop is alive"
        );
        let n = notifier.clone();
        tokio::spawn(notify::run_watchdog(
            timeout,
            heartbeat.clone(),
            watchdog_stop.clone(),
            move || n.watchdog(),
        ));
    }
    let (_wh, r) = daemon::run::<Customers, _>(
        &client,
        wh,
        schedule,
        cancel,
        Hooks {
            heartbeat,
            progress,
            observe,
        },
    )
    .await;
    watchdog_stop.cancel();
    match &r {
        Ok(()) => notifier.stopping("stopping on request"),
        Err(e) => notifier.stopping(&format!("stopping: {}", notify::one_line(&e.to_string()))),
    }
    r.map_err(|e| Failure::new(exit_code(&e), e))?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT cancel the token. Later signals are ignored: the stop is prompt anyway
/// (the fetch side selects on the token, so at most the commit in flight finishes).
pub fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("signal received, stopping after the current page");
        cancel.cancel();
    });
}

/// Logs to stderr: text (no colours unless stderr is a terminal) or JSON. `RUST_LOG` wins
/// over `log.level` when set.
pub fn init_logging(cfg: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::try_new(&cfg.level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
