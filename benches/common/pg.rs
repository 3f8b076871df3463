//! The PostgreSQL leg of the benchmarks: where the server is (`--pg URL` / `OMS_BENCH_PG_URL`),
//! a fresh schema per warehouse (dropped after use, so runs never see each other's rows), and
//! the raw loop of the product's own unnest upsert that a PostgreSQL backfill is measured
//! against. The blocking `postgres` client runs on its own thread: its internal runtime
//! panics when entered from a thread that already drives the bench's tokio runtime.

use std::time::Instant;

use oms_sync::config::WarehouseConfig;
use oms_sync::resource::{Cell, ColumnType, Customer, Row};
use oms_sync::timefmt;
use oms_sync::warehouse::secondary_indexes;
use oms_sync::warehouse::{AnyWarehouse, PgConfig};
use postgres::types::ToSql;

/// Rows per statement of the raw loop: the product's page size (one statement per page).
pub const RAW_PG_ROWS: usize = 1000;

/// The server to measure, if any: `--pg URL`, else `OMS_BENCH_PG_URL`.
pub fn pg_url() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--pg")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| std::env::var("OMS_BENCH_PG_URL").ok())
        .filter(|u| !u.trim().is_empty())
}

/// Runs `f` on a thread of its own (see the module doc).
pub fn on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Schema names unique to this process and tag (the bench may share a server with tests).
pub fn schema_name(tag: &str) -> String {
    format!("oms_bench_{}_{tag}", std::process::id())
}

pub fn config(url: &str, schema: &str) -> PgConfig {
    PgConfig::parse(url, None, Some(schema), false).expect("a valid --pg / OMS_BENCH_PG_URL")
}

fn admin(url: &str) -> postgres::Client {
    config(url, "public")
        .driver_config()
        .connect(postgres::NoTls)
        .expect("connect to the benchmark's PostgreSQL")
}

/// Drops `schema` and everything in it, if it exists.
pub fn drop_schema(url: &str, schema: &str) {
    on_thread(|| {
        admin(url)
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .expect("drop the benchmark schema");
    });
}

/// A fresh (empty) warehouse in `schema`, migrated by the product.
pub fn open_fresh(url: &str, schema: &str) -> AnyWarehouse {
    drop_schema(url, schema);
    AnyWarehouse::open(&WarehouseConfig::Postgres(config(url, schema))).expect("open PostgreSQL")
}

/// The server's version line, for the header.
pub fn server_version(url: &str) -> String {
    on_thread(|| {
        admin(url)
            .query_one("SHOW server_version", &[])
            .and_then(|r| r.try_get::<_, String>(0))
            .unwrap_or_else(|e| format!("unknown ({e})"))
    })
}

/// One array per column of `rows`, in `Customer::COLUMNS` order; `modified_date` replaced by
/// `md` when given (an update moves it forward).
fn column_arrays<'a>(
    rows: &[&'a Customer],
    md: Option<&'a str>,
) -> Vec<Box<dyn ToSql + Sync + 'a>> {
    let columns = <Customer as Row>::COLUMNS;
    (0..columns.len())
        .map(|i| -> Box<dyn ToSql + Sync + 'a> {
            match (columns[i].ty, md) {
                (_, Some(md)) if columns[i].name == "modified_date" => {
                    Box::new(vec![Some(md); rows.len()])
                }
                (ColumnType::BigInt, _) => Box::new(
                    rows.iter()
                        .map(|r| match r.cell(i) {
                            Cell::Int(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<i64>>>(),
                ),
                _ => Box::new(
                    rows.iter()
                        .map(|r| match r.cell(i) {
                            Cell::Text(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<&'a str>>>(),
                ),
            }
        })
        .collect()
}

fn run_upsert(
    client: &mut postgres::Client,
    sql: &postgres::Statement,
    rows: &[&Customer],
    md: Option<&str>,
    now: &str,
) -> usize {
    let arrays = column_arrays(rows, md);
    let mut params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|b| &**b).collect();
    params.push(&now);
    client.query(sql, &params).expect("raw upsert").len()
}

/// What one raw loop measured.
pub struct RawPg {
    /// Rows/s of the load (index build included when deferred).
    pub load: f64,
    /// Rows/s of the random updates (0 when none were asked).
    pub updates: f64,
}

/// The plain loop into a fresh schema (migrated by the product once, then a bare
/// `postgres::Client`): the product's unnest upsert, `RAW_PG_ROWS` rows per statement, each
/// statement its own transaction, no checkpoint or run bookkeeping. `defer_indexes`: drop the
/// secondary indexes first and build them after the load (what a backfill into an empty
/// warehouse does; the time includes the build). Then, with `update_fraction` > 0, that
/// fraction of customers spread over the table get a later `modified_date`, in statements of
/// `RAW_PG_ROWS`: the write pattern of an incremental pass.
pub fn raw_load(
    url: &str,
    schema: &str,
    records: &[Customer],
    defer_indexes: bool,
    update_fraction: f64,
) -> RawPg {
    drop(open_fresh(url, schema));
    let out = on_thread(|| {
        let mut client = config(url, schema)
            .driver_config()
            .connect(postgres::NoTls)
            .expect("connect for the raw loop");
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .expect("search_path");
        let sql = client
            .prepare(&oms_sync::warehouse::postgres::upsert_sql(
                "customers",
                <Customer as Row>::COLUMNS,
            ))
            .expect("prepare the product's upsert");
        let now = timefmt::now_canonical();
        let started = Instant::now();
        if defer_indexes {
            for (_, name, _) in secondary_indexes() {
                client
                    .batch_execute(&format!("DROP INDEX {name}"))
                    .expect("drop index");
            }
        }
        for chunk in records.chunks(RAW_PG_ROWS) {
            let rows: Vec<&Customer> = chunk.iter().collect();
            run_upsert(&mut client, &sql, &rows, None, &now);
        }
        if defer_indexes {
            for (_, _, create) in secondary_indexes() {
                client.batch_execute(&create).expect("build index");
            }
        }
        let load = records.len() as f64 / started.elapsed().as_secs_f64();
        let mut updates = 0.0;
        if update_fraction > 0.0 {
            // The same spread as the SQLite loop: a prime stride, so no id repeats (ON
            // CONFLICT cannot touch a row twice in one statement).
            let k = ((records.len() as f64 * update_fraction) as usize).max(1);
            let picked: Vec<&Customer> = (0..k)
                .map(|j| &records[(j * 7919) % records.len()])
                .collect();
            let later = timefmt::canonical(&chrono::Utc::now());
            let started = Instant::now();
            let mut written = 0;
            for chunk in picked.chunks(RAW_PG_ROWS) {
                written += run_upsert(&mut client, &sql, chunk, Some(&later), &now);
            }
            assert_eq!(written, k, "every picked row updated");
            updates = k as f64 / started.elapsed().as_secs_f64();
        }
        RawPg { load, updates }
    });
    drop_schema(url, schema);
    out
}

/// A `timestamptz` or `jsonb` value for the raw binary COPY, encoded ahead of the timed load
/// (its instants parsed by chrono), so the limit is the server's and the wire's alone.
#[derive(Debug)]
enum Raw {
    Instant(Option<chrono::DateTime<chrono::Utc>>),
    Jsonb(Option<String>),
}

impl ToSql for Raw {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Raw::Instant(Some(t)) => t.to_sql(ty, out),
            Raw::Jsonb(Some(j)) => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(j.as_bytes());
                Ok(postgres::types::IsNull::No)
            }
            Raw::Instant(None) | Raw::Jsonb(None) => Ok(postgres::types::IsNull::Yes),
        }
    }
    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        *ty == Type::TIMESTAMPTZ || *ty == Type::JSONB
    }
    postgres::types::to_sql_checked!();
}

/// The raw limit of a first load: ONE binary `COPY` of all `records` (values encoded before
/// the clock starts) into the product's `customers` table of a fresh schema, its secondary
/// indexes dropped first and built after (timed: what a backfill into an empty table does).
/// No checkpoint, no run bookkeeping, one transaction. Returns rows/s.
pub fn raw_copy(url: &str, schema: &str, records: &[Customer]) -> f64 {
    use postgres::types::Type;
    drop(open_fresh(url, schema));
    let columns = <Customer as Row>::COLUMNS;
    let now = chrono::Utc::now();
    let rows: Vec<Vec<Box<dyn ToSql + Sync>>> = records
        .iter()
        .map(|r| {
            let mut row: Vec<Box<dyn ToSql + Sync>> = (0..columns.len())
                .map(|i| -> Box<dyn ToSql + Sync> {
                    match (columns[i].ty, r.cell(i)) {
                        (_, Cell::Int(v)) => Box::new(v),
                        (_, Cell::Bool(v)) => Box::new(v),
                        (ColumnType::Timestamp, Cell::Text(v)) => {
                            Box::new(Raw::Instant(v.and_then(timefmt::parse_api)))
                        }
                        (ColumnType::Json, Cell::Text(v)) => {
                            Box::new(Raw::Jsonb(v.map(str::to_owned)))
                        }
                        (_, Cell::Text(v)) => Box::new(v.map(str::to_owned)),
                    }
                })
                .collect();
            row.push(Box::new(now));
            row.push(Box::new(now));
            row
        })
        .collect();
    let mut types: Vec<Type> = columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::BigInt => Type::INT8,
            ColumnType::Bool => Type::BOOL,
            ColumnType::Text => Type::TEXT,
            ColumnType::Timestamp => Type::TIMESTAMPTZ,
            ColumnType::Json => Type::JSONB,
        })
        .collect();
    types.extend([Type::TIMESTAMPTZ, Type::TIMESTAMPTZ]);
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let out = on_thread(|| {
        let mut client = config(url, schema)
            .driver_config()
            .connect(postgres::NoTls)
            .expect("connect for the raw COPY");
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .expect("search_path");
        let started = Instant::now();
        let mut tx = client.transaction().expect("begin");
        for (_, name, _) in secondary_indexes() {
            tx.batch_execute(&format!("DROP INDEX {name}"))
                .expect("drop index");
        }
        let sink = tx
            .copy_in(&format!(
                "COPY customers ({}, synced_at, first_synced_at) FROM STDIN BINARY",
                names.join(", ")
            ))
            .expect("COPY");
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        for row in &rows {
            let refs: Vec<&(dyn ToSql + Sync)> = row.iter().map(|b| &**b).collect();
            w.write(&refs).expect("COPY row");
        }
        assert_eq!(w.finish().expect("COPY end"), records.len() as u64);
        tx.commit().expect("commit");
        for (_, _, create) in secondary_indexes() {
            client.batch_execute(&create).expect("build index");
        }
        records.len() as f64 / started.elapsed().as_secs_f64()
    });
    drop_schema(url, schema);
    out
}
