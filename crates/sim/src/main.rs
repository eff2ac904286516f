//! The `switchyard-sim` binary: parses the command line, sets up logging, starts the simulator, prints the address
//! it listens on, and shuts down gracefully on SIGINT or SIGTERM. Everything else lives in the library.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use switchyard_core::ollama::KeepAlive;
use switchyard_core::size::parse_bytes;
use switchyard_sim::{Fleet, SimOptions, spawn};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// An Ollama-compatible server with a simulated GPU.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard-sim",
    version,
    about = "An Ollama-compatible server with a simulated GPU: Ollama's API and scheduler, models from a fleet file.",
    after_help = "Examples:\n  \
        switchyard-sim --listen 127.0.0.1:11434 --gpu-vram 24GiB --time-scale 1\n  \
        switchyard-sim --listen 127.0.0.1:0 --time-scale 0 --gpu-vram 24GiB,24GiB --fleet my-fleet.toml\n\n\
        The first line on stdout is `switchyard-sim listening on http://ADDR`. Logs go to stderr (RUST_LOG filters).\n\
        Simulator routes: GET /sim/gpu, GET /sim/fleet, POST /sim/repull, GET|POST|DELETE /sim/faults."
)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:11434")]
    listen: SocketAddr,
    /// Fleet file (TOML, one [[models]] table per model); the built-in fleet when absent.
    #[arg(long)]
    fleet: Option<PathBuf>,
    /// Memory of each simulated GPU, comma-separated: 24GiB, or 24GiB,24GiB for two GPUs.
    #[arg(long, default_value = "24GiB", value_delimiter = ',')]
    gpu_vram: Vec<String>,
    /// Real seconds per simulated second (0 = every delay instant; keep_alive then runs in real time).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Most models loaded at once (default: 3 x GPUs, as OLLAMA_MAX_LOADED_MODELS).
    #[arg(long)]
    max_loaded_models: Option<usize>,
    /// Concurrent requests per loaded model (OLLAMA_NUM_PARALLEL).
    #[arg(long, default_value_t = 1)]
    num_parallel: usize,
    /// Most requests waiting before 503 (OLLAMA_MAX_QUEUE).
    #[arg(long, default_value_t = 512)]
    max_queue: usize,
    /// keep_alive of models loaded without one (OLLAMA_KEEP_ALIVE), a duration such as 5m or 30s.
    #[arg(long, default_value = "5m")]
    keep_alive: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let fleet = match &cli.fleet {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading the fleet {}", path.display()))?;
            Fleet::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Fleet::builtin(),
    };
    let gpus = cli
        .gpu_vram
        .iter()
        .map(|s| parse_bytes(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<u64>>>()
        .context("--gpu-vram")?;
    let default_keep_alive = match KeepAlive::parse_str(&cli.keep_alive).map_err(anyhow::Error::msg)? {
        KeepAlive::For(d) => d,
        KeepAlive::Forever => bail!("--keep-alive must not be negative"),
    };
    let opts = SimOptions {
        listen: cli.listen,
        fleet,
        gpus,
        time_scale: cli.time_scale,
        max_loaded_models: cli.max_loaded_models,
        num_parallel: cli.num_parallel,
        max_queue: cli.max_queue,
        default_keep_alive,
        api_key: None,
        refused_params: Vec::new(),
        llama_infill: false,
    };
    // The handlers are installed before the address is announced, so a signal sent right after it is graceful.
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let handle = spawn(opts).await.context("starting the simulator")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "switchyard-sim listening on http://{}", handle.addr())?;
        out.flush()?;
    }
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}
