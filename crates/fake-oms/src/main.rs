//! `fake-oms`: serves synthetic customers, their addresses and the stock locations like Akinon
//! OMS's list endpoints until Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_oms::{
    CUSTOMER_ADDRESSES, FakeOms, FakeOmsConfig, STOCK_LOCATIONS, Store,
    synthetic_customer_addresses, synthetic_customers, synthetic_stock_locations,
};

#[derive(Debug, Parser)]
#[command(
    name = "fake-oms",
    version,
    about = "A fake Akinon OMS (customers, customer addresses, stock locations) with synthetic data"
)]
struct Args {
    /// Number of synthetic customers.
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// Addresses per customer, on average (about 1 to 2 times this many each).
    #[arg(long, default_value_t = 2)]
    addresses_per_customer: usize,
    /// Number of synthetic stock locations (stores and warehouses).
    #[arg(long, default_value_t = 60)]
    stock_locations: usize,
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
    /// Delay added to every request before it is answered, e.g. `150ms` (a remote OMS).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    latency: Duration,
    /// Up to this much more delay per request, drawn uniformly, e.g. `20ms`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    latency_jitter: Duration,
    /// Serve at most N requests in any second; the rest get 429 (like DRF's throttle).
    #[arg(long, value_name = "N")]
    throttle: Option<u32>,
    /// Send throttled 429s without `Retry-After`, like a gateway that does not say.
    #[arg(long, requires = "throttle")]
    no_retry_after: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-oms: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fault_rate),
        "--fault-rate must be between 0 and 1"
    );
    let (n, per, locations, seed) = (
        args.customers,
        args.addresses_per_customer,
        args.stock_locations,
        args.seed,
    );
    let (customers, addresses, locations) = tokio::task::spawn_blocking(move || {
        let customers = synthetic_customers(n, seed);
        let ids: Vec<i64> = customers.iter().map(|c| c.id).collect();
        let addresses = synthetic_customer_addresses(&ids, per, seed);
        (
            customers,
            addresses,
            synthetic_stock_locations(locations, seed),
        )
    })
    .await?;
    let served = (addresses.len(), locations.len());
    let config = FakeOmsConfig {
        token: args.token,
        max_limit: args.max_limit,
        port: args.port,
        seed: args.seed,
    };
    let oms = match FakeOms::start(config, customers).await {
        Ok(oms) => oms,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            anyhow::bail!(
                "127.0.0.1:{} is already in use; choose another --port",
                args.port
            )
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("listening on 127.0.0.1:{}", args.port))
            );
        }
    };
    oms.add_resource(Store::from_records(&STOCK_LOCATIONS, locations));
    oms.add_resource(Store::from_records(&CUSTOMER_ADDRESSES, addresses));
    oms.knobs(|k| {
        k.random_fault_rate = args.fault_rate;
        k.record_requests = false;
        k.latency = args.latency;
        k.latency_jitter = args.latency_jitter;
        k.throttle_per_second = args.throttle;
        k.throttle_retry_after = !args.no_retry_after;
    });
    println!(
        "fake-oms serving {} customers, {} customer addresses and {} stock locations at {} token {}",
        args.customers,
        served.0,
        served.1,
        oms.base_url(),
        oms.token()
    );
    tokio::signal::ctrl_c().await?;
    oms.shutdown().await;
    Ok(())
}
