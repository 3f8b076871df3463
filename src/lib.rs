//! oms-sync keeps a warehouse (a SQLite file or a PostgreSQL schema) in step with the
//! customers, stock locations and customer addresses of an Akinon OMS.
//!
//! Layout, one module per concern:
//! - [`config`]: the TOML file plus `OMS_SYNC__*` environment, validated into [`config::Config`].
//! - [`api`]: the HTTP client for OMS list endpoints (auth, retries, rate limit, page parsing).
//! - [`resource`]: what is specific to one OMS resource (customers, stock locations, customer addresses): path, record shape, columns.
//! - [`stream`]: the streams the commands run, one per resource.
//! - [`timefmt`]: the one canonical text form of an instant (UTC, microseconds).
//! - [`text`]: text helpers (one-line messages) for errors, logs and status lines.
//! - [`warehouse`]: the backend-neutral storage interface (writer, reader, snapshot) and its
//!   SQLite and PostgreSQL backends.
//! - [`sync`]: the engine: incremental keyset passes and id-keyset backfills, with the writer.
//! - [`tick`]: every enabled stream in one tick, each failing (and backing off) alone.
//! - [`daemon`]: the scheduler loop, its service plumbing and signal handling.
//! - [`reconcile`]: when the daemon runs its scheduled backfill (reconciliation).
//! - [`metrics`]: the Prometheus endpoint.
//! - [`notify`]: systemd readiness, status and watchdog (sd_notify); what the status says is
//!   the daemon's.
//! - [`status`]: the read-only `status` report.
//! - [`progress`]: backfill progress (a bar on a terminal, log lines otherwise).
//! - [`cli`]: argument parsing, the commands (`check` among them) and exit codes.
//! - [`manpage`]: the man pages and shell completions the package ships.
//! - [`demo`]: the self-contained demo run, against the fake OMS (the `fake-oms` crate of this
//!   workspace) in-process; built with the default cargo feature `demo`.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod manpage;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod reconcile;
pub mod resource;
pub mod status;
pub mod stream;
pub mod sync;
pub mod text;
pub mod tick;
pub mod timefmt;
pub mod warehouse;

/// What [`declare_resource!`] expands to needs, whatever the calling crate depends on.
#[doc(hidden)]
pub mod __private {
    pub use serde::Deserializer;
    pub use serde_json::value::RawValue;
}
