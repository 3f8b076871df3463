//! oms-sync keeps a local SQLite warehouse in step with the customers of an Akinon OMS.
//!
//! Layout, one module per concern:
//! - [`config`]: the TOML file plus `OMS_SYNC__*` environment, validated into [`config::Config`].
//! - [`api`]: the HTTP client for OMS list endpoints (auth, retries, page parsing).
//! - [`resource`]: what is specific to one OMS resource (customers): path, record shape, columns.
//! - [`timefmt`]: the one canonical text form of an instant (UTC, microseconds).
//! - [`warehouse`]: the narrow storage interface and its SQLite implementation.
//! - [`sync`]: the engine: incremental keyset passes and id-keyset backfills.
//! - [`daemon`]: the scheduler loop and signal handling.
//! - [`status`]: the read-only `status` report.
//! - [`progress`]: backfill progress (a bar on a terminal, log lines otherwise).
//! - [`cli`]: argument parsing, the commands and exit codes (used by `main.rs`).
//! - [`fake_oms`]: a faithful fake of the OMS endpoint for tests, the demo and benchmarks.
//! - [`demo`]: the self-contained demo run.
//! - [`manpage`]: the man page and shell completions, generated from the `cli` definition.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod fake_oms;
pub mod manpage;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod resource;
pub mod status;
pub mod stream;
pub mod sync;
pub mod timefmt;
pub mod warehouse;
