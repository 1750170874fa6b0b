//! Load generator for s3-auth-api: `metagraph` writes a metagraph of development keys,
//! `run` drives a running server with pre-signed requests and reports throughput,
//! latency percentiles, errors by status and the server's memory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use s3_auth_api::loadgen::{self, BenchKeys, Endpoint, RunSpec};

#[derive(Parser)]
#[command(name = "s3-auth-loadgen", about = "Load generator for s3-auth-api")]
struct Cli {
    /// Development keys `//bench//0..N`.
    #[arg(long, default_value_t = 256, global = true)]
    keys: usize,
    /// How many of them are validators (the rest are miners).
    #[arg(long, default_value_t = 8, global = true)]
    validators: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the metagraph of the keys (a METAGRAPH_FILE for the server).
    Metagraph {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// The subnet.
        #[arg(long, default_value_t = 46)]
        netuid: u16,
    },
    /// Drives a running server.
    Run {
        /// `host:port` of the server.
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: String,
        /// The endpoint.
        #[arg(long, value_enum)]
        endpoint: Endpoint,
        /// Concurrent keep-alive connections.
        #[arg(long, short = 'c', default_value_t = 16)]
        connections: usize,
        /// Seconds to run.
        #[arg(long, short = 'd', default_value_t = 10.0)]
        duration: f64,
        /// Signed bodies to prepare (each is sent once); the run stops early if they run out.
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
        /// Total requests per second to pace at (default: as fast as answered).
        #[arg(long)]
        rate: Option<f64>,
        /// Also report req/s, p99 and errors per interval of this many seconds.
        #[arg(long)]
        interval: Option<f64>,
        /// Worker threads of the generator.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Server process whose memory to report.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let keys = BenchKeys::derive(cli.keys, cli.validators).context("deriving keys")?;
    match cli.command {
        Command::Metagraph { out, netuid } => {
            loadgen::write_metagraph(&keys, netuid, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} ({} validators, {} miners)",
                out.display(),
                keys.validators.len(),
                keys.miners.len()
            );
        }
        Command::Run {
            addr,
            endpoint,
            connections,
            duration,
            requests,
            rate,
            interval,
            threads,
            server_pid,
            json,
        } => {
            let now = chrono::Utc::now().timestamp();
            let prepared = loadgen::prepare_requests(&keys, endpoint, &addr, requests, now);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let before = server_pid.and_then(loadgen::process_memory_kib);
            let spec = RunSpec {
                addr,
                connections,
                duration: Duration::from_secs_f64(duration.max(0.1)),
                rate,
                interval: interval.map(|i| Duration::from_secs_f64(i.max(0.1))),
            };
            let report = runtime.block_on(loadgen::run(endpoint, prepared, &spec));
            let after = server_pid.and_then(loadgen::process_memory_kib);
            let mut value = serde_json::to_value(&report).context("serialising the report")?;
            if let (Some(obj), Some((rss_before, _)), Some((rss_after, hwm))) =
                (value.as_object_mut(), before, after)
            {
                obj.insert("server_rss_before_kib".into(), rss_before.into());
                obj.insert("server_rss_after_kib".into(), rss_after.into());
                obj.insert("server_rss_peak_kib".into(), hwm.into());
            }
            if json {
                println!("{value}");
            } else {
                println!(
                    "{} c={} {:.1}s: {} requests, {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, errors {} {:?}{}",
                    endpoint.path(),
                    report.connections,
                    report.seconds,
                    report.requests,
                    report.rps,
                    report.p50_ms,
                    report.p90_ms,
                    report.p99_ms,
                    report.p999_ms,
                    report.max_ms,
                    report.errors,
                    report.statuses,
                    if report.ran_out_of_bodies {
                        " (bodies ran out)"
                    } else {
                        ""
                    }
                );
                for i in &report.series {
                    println!(
                        "  t={:>6.1}s {:>8.0} req/s p99 {:>7.2} ms errors {}",
                        i.t_s, i.rps, i.p99_ms, i.errors
                    );
                }
                if let Some((rss, hwm)) = after {
                    println!("server RSS {} KiB (peak {} KiB)", rss, hwm);
                }
            }
        }
    }
    Ok(())
}
