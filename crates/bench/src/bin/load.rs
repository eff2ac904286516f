//! `switchyard-load`: what the router adds to a request. Starts the simulator (hosted on its own runtime here, or
//! its binary) and the router (the release binary beside this one as its own process, or in this process with
//! `--in-process`), runs the same closed-loop load straight to the simulator and through the router, prints a
//! markdown report and writes JSON to `--out`. With `--versus nginx` it runs nginx as a plain reverse proxy in front
//! of the same simulator and compares CPU per request and added latency side by side.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_bench::nginx;
use switchyard_bench::overhead::{self, OverheadOptions};
use switchyard_bench::process::sibling_binary;
use switchyard_bench::stack::StackOptions;
use switchyard_bench::versus::{self, Surface, VersusOptions};

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
    /// Concurrencies, comma-separated [default: 1,16,64,256; 1,16,64 with --versus].
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
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
    /// Memory of the simulated GPU [default: 24GiB; 16GiB with --versus, whose default context length, 4096,
    /// is the router's, so that OpenAI requests sent straight to the simulator load the same instance].
    #[arg(long)]
    gpu_vram: Option<String>,
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
    /// Compare side by side with a plain reverse proxy instead: direct, nginx, the router with an explicit model
    /// and with `auto`, alternating, on both surfaces (concurrency defaults to 1,16,64 then).
    #[arg(long, value_name = "PROXY", value_parser = ["nginx"])]
    versus: Option<String>,
    /// The nginx binary (default: /usr/sbin/nginx or nginx on PATH; Debian: apt-get install nginx-light).
    #[arg(long)]
    nginx_bin: Option<PathBuf>,
    /// nginx worker processes (default: one per core, like the router's runtime threads).
    #[arg(long)]
    nginx_workers: Option<usize>,
    /// Surfaces compared with --versus, comma-separated: ollama, openai.
    #[arg(long, value_delimiter = ',', default_value = "ollama,openai")]
    surfaces: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_concurrency = if cli.versus.is_some() { vec![1, 16, 64] } else { vec![1, 16, 64, 256] };
    let router_bin = match (cli.in_process, cli.router_bin) {
        (true, _) => None,
        (false, Some(p)) => Some(p),
        (false, None) => Some(sibling_binary("switchyard")?),
    };
    let (concurrencies, duration, warmup, repeats, rss_streams, rss_duration) = if cli.quick {
        (vec![1, 16], 0.5, 0.2, 1, 32, 1.5)
    } else {
        (
            cli.concurrency.unwrap_or(default_concurrency),
            cli.duration,
            cli.warmup,
            cli.repeats,
            cli.rss_streams,
            cli.rss_duration,
        )
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
    let default_vram = if cli.versus.is_some() { "16GiB" } else { "24GiB" };
    let stack = StackOptions {
        time_scale: 0.0,
        num_parallel: cli.num_parallel,
        gpu_vram: cli.gpu_vram.unwrap_or_else(|| default_vram.to_string()),
        router_bin,
        sim_bin: cli.sim_bin,
        cache: Default::default(),
    };
    // Two worker threads: on a small machine the simulator and the router need the other cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if cli.versus.is_some() {
        let options = VersusOptions {
            stack,
            nginx_bin: nginx::locate(cli.nginx_bin.as_deref())?,
            nginx_workers: cli
                .nginx_workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)),
            surfaces: cli.surfaces.iter().map(|s| Surface::parse(s)).collect::<Result<_>>()?,
            concurrencies,
            streams,
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            repeats,
            model: cli.model,
            num_predict: cli.num_predict,
        };
        let report = runtime.block_on(versus::run(&options))?;
        println!("{}", versus::markdown(&report));
        return write_json(cli.out.as_deref(), &report);
    }
    let options = OverheadOptions {
        stack,
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
    let report = runtime.block_on(overhead::run(&options))?;
    println!("{}", overhead::markdown(&report));
    write_json(cli.out.as_deref(), &report)
}

fn write_json(path: Option<&Path>, report: &impl serde::Serialize) -> Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_string_pretty(report).context("rendering the JSON report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON results written to {}", path.display());
    }
    Ok(())
}
