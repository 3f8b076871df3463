//! `fake-oms`: serves synthetic customers like Akinon OMS's customers list until Ctrl-C.

use clap::Parser;
use oms_sync::fake_oms::{FakeOms, FakeOmsConfig, synthetic_customers};

#[derive(Debug, Parser)]
#[command(about = "A fake Akinon OMS customers endpoint with synthetic data")]
struct Args {
    /// Number of synthetic customers.
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The API token clients must send (`Authorization: Token <token>`).
    #[arg(long, default_value = "test-token")]
    token: String,
    /// Largest page size served (larger `limit`s are capped).
    #[arg(long, default_value_t = 1000)]
    max_limit: usize,
    /// Seed for the data and the random faults.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Probability (0..1) of a random 5xx/429/truncated answer.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fault_rate),
        "--fault-rate must be between 0 and 1"
    );
    let customers =
        tokio::task::spawn_blocking(move || synthetic_customers(args.customers, args.seed)).await?;
    let config = FakeOmsConfig {
        token: args.token,
        max_limit: args.max_limit,
        port: args.port,
        seed: args.seed,
    };
    let oms = FakeOms::start(config, customers).await?;
    oms.knobs(|k| {
        k.random_fault_rate = args.fault_rate;
        k.record_requests = false;
    });
    println!(
        "fake-oms serving {} customers at {} token {}",
        args.customers,
        oms.base_url(),
        oms.token()
    );
    tokio::signal::ctrl_c().await?;
    oms.shutdown().await;
    Ok(())
}
