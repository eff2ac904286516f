//! `switchyard-load`: what the router adds to a request. Starts the simulator (hosted on its own runtime here, or
//! its binary) and the router (the release binary beside this one as its own process, or in this process with
//! `--in-process`), runs the same closed-loop load straight to the simulator and through the router, prints a
//! markdown report and writes JSON to `--out`.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_bench::overhead::{self, OverheadOptions};
use switchyard_bench::process::sibling_binary;
use switchyard_bench::stack::StackOptions;

/// Measures the router's added latency, throughput and memory against the simulator.
#[derive(Debug, Parser)]
#[command(name = "switchyard-load", version)]
struct Cli {
    /// A short smoke run: concurrency 1 and 16, half-second runs, one repeat, 32 streams for memory.
    #[arg(long)]
    quick: bool,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Concurrencies, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,
    /// Answer modes to measure, comma-separated: buffered, stream.
    #[arg(long, value_delimiter = ',', default_value = "buffered,stream")]
    modes: Vec<String>,
    /// Simulator time scales, comma-separated (0 = instant answers; a small scale such as 0.001 adds real pacing).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    time_scale: Vec<f64>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 1.5)]
    duration: f64,
    /// Unmeasured seconds at the start of each run.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Repeats of every run (the report shows the median and the range).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The explicit model.
    #[arg(long, default_value = "llama3.2:3b")]
    model: String,
    /// Tokens per answer.
    #[arg(long, default_value_t = 32)]
    num_predict: u64,
    /// Concurrent requests per loaded model in the simulator (OLLAMA_NUM_PARALLEL).
    #[arg(long, default_value_t = 4)]
    num_parallel: usize,
    /// Memory of the simulated GPU.
    #[arg(long, default_value = "24GiB")]
    gpu_vram: String,
    /// Streams held open at once for the memory test (0 skips it).
    #[arg(long, default_value_t = 256)]
    rss_streams: usize,
    /// Seconds the memory test runs.
    #[arg(long, default_value_t = 5.0)]
    rss_duration: f64,
    /// Run the router in this process (no memory figure then) instead of the release binary.
    #[arg(long)]
    in_process: bool,
    /// The `switchyard` binary (default: beside this one).
    #[arg(long)]
    router_bin: Option<PathBuf>,
    /// Run this `switchyard-sim` binary instead of hosting the simulator in this process with TCP_NODELAY.
    #[arg(long)]
    sim_bin: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let router_bin = match (cli.in_process, cli.router_bin) {
        (true, _) => None,
        (false, Some(p)) => Some(p),
        (false, None) => Some(sibling_binary("switchyard")?),
    };
    let (concurrencies, duration, warmup, repeats, rss_streams, rss_duration) = if cli.quick {
        (vec![1, 16], 0.5, 0.2, 1, 32, 1.5)
    } else {
        (cli.concurrency, cli.duration, cli.warmup, cli.repeats, cli.rss_streams, cli.rss_duration)
    };
    let streams = cli
        .modes
        .iter()
        .map(|m| match m.trim() {
            "buffered" => Ok(false),
            "stream" => Ok(true),
            other => anyhow::bail!("unknown mode {other:?}: expected buffered or stream"),
        })
        .collect::<Result<Vec<bool>>>()?;
    let options = OverheadOptions {
        stack: StackOptions {
            time_scale: 0.0,
            num_parallel: cli.num_parallel,
            gpu_vram: cli.gpu_vram,
            router_bin,
            sim_bin: cli.sim_bin,
            cache: Default::default(),
        },
        time_scales: cli.time_scale,
        concurrencies,
        streams,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(duration),
        repeats,
        model: cli.model,
        num_predict: cli.num_predict,
        rss_streams,
        rss_duration: Duration::from_secs_f64(rss_duration),
    };
    // Two worker threads: on a small machine the simulator and the router need the other cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(overhead::run(&options))?;
    println!("{}", overhead::markdown(&report));
    if let Some(path) = &cli.out {
        let json = serde_json::to_string_pretty(&report).context("rendering the JSON report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON results written to {}", path.display());
    }
    Ok(())
}
