//! A simulator with a router in front of it. The router runs as the real release binary (its own process, so its
//! memory is its own) or in this process; the simulator is hosted on threads of its own here (see `sim_host`), or
//! runs as its binary when one is given.

use crate::process::{Memory, Server};
use crate::setup;
use crate::sim_host::HostedSim;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use switchyard::server::Running;
use switchyard_core::config::CacheConfig;
use switchyard_core::size::parse_bytes;
use switchyard_sim::SimOptions;
use tempfile::TempDir;

/// Requests the simulator queues before it answers 503: far more than any benchmark keeps in flight.
const SIM_MAX_QUEUE: usize = 100_000;
/// Requests the router admits per model: above the highest concurrency measured, so that none is refused (the
/// default of 128 would answer 503 to half of 256 concurrent requests for one model, by design).
const ROUTER_QUEUE_PER_MODEL: u32 = 4096;
/// Threads of the hosted simulator's runtime.
const SIM_THREADS: usize = 2;

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Real seconds per simulated second (0 = instant).
    pub time_scale: f64,
    /// Concurrent requests per loaded model in the simulator.
    pub num_parallel: usize,
    /// Memory of each simulated GPU (`24GiB`).
    pub gpu_vram: String,
    /// The `switchyard` binary; `None` runs the router in this process.
    pub router_bin: Option<PathBuf>,
    /// The `switchyard-sim` binary; `None` hosts the simulator here.
    pub sim_bin: Option<PathBuf>,
    /// The router's `[cache]` (off by default).
    pub cache: CacheConfig,
}

/// The simulator, hosted or as a process.
#[derive(Debug)]
enum Sim {
    Hosted(HostedSim),
    Process(Box<Server>),
}

/// The router, as a process or in this one.
#[derive(Debug)]
enum Router {
    Process(Box<Server>),
    InProcess(Box<Running>),
}

/// A running simulator and router.
#[derive(Debug)]
pub struct Stack {
    sim: Sim,
    router: Router,
    /// Holds the router's configuration and SQLite store.
    dir: TempDir,
}

impl Stack {
    /// Starts the simulator, then the router against it.
    pub async fn start(options: &StackOptions) -> Result<Stack> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let sim = match &options.sim_bin {
            Some(bin) => {
                let args: Vec<String> = vec![
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--time-scale".into(),
                    options.time_scale.to_string(),
                    "--gpu-vram".into(),
                    options.gpu_vram.clone(),
                    "--num-parallel".into(),
                    options.num_parallel.to_string(),
                    "--max-queue".into(),
                    SIM_MAX_QUEUE.to_string(),
                ];
                Sim::Process(Box::new(Server::start("switchyard-sim", bin, &args, &[("RUST_LOG", "warn")]).await?))
            }
            None => {
                let gpu = parse_bytes(&options.gpu_vram).map_err(anyhow::Error::msg).context("--gpu-vram")?;
                let opts = SimOptions {
                    gpus: vec![gpu],
                    time_scale: options.time_scale,
                    num_parallel: options.num_parallel,
                    max_queue: SIM_MAX_QUEUE,
                    ..SimOptions::default()
                };
                Sim::Hosted(HostedSim::start(&opts, SIM_THREADS)?)
            }
        };
        let sim_url = match &sim {
            Sim::Hosted(s) => s.url(),
            Sim::Process(s) => s.url().to_string(),
        };
        let mut config = setup::router_config(&sim_url, dir.path());
        config.limits.queue_per_model = ROUTER_QUEUE_PER_MODEL;
        config.cache = options.cache.clone();
        // The router is told how many requests per model the backend serves at once, as an operator would.
        config.ollama.num_parallel = u32::try_from(options.num_parallel).unwrap_or(u32::MAX).max(1);
        let router = match &options.router_bin {
            Some(bin) => {
                let path = dir.path().join("switchyard.toml");
                setup::write_config(&config, &path)?;
                let args: Vec<String> = vec!["--config".into(), path.display().to_string(), "serve".into()];
                // The router logs at its default level (info): what an operator runs.
                Server::start("switchyard", bin, &args, &[("RUST_LOG", "info")])
                    .await
                    .map(|s| Router::Process(Box::new(s)))
            }
            None => {
                config.validate().context("the router configuration")?;
                switchyard::server::spawn(Arc::new(config))
                    .await
                    .context("starting the router")
                    .map(|r| Router::InProcess(Box::new(r)))
            }
        };
        match router {
            Ok(router) => Ok(Stack { sim, router, dir }),
            Err(e) => {
                stop_sim(sim).await?;
                Err(e)
            }
        }
    }

    pub fn sim_url(&self) -> String {
        match &self.sim {
            Sim::Hosted(s) => s.url(),
            Sim::Process(s) => s.url().to_string(),
        }
    }

    pub fn router_url(&self) -> String {
        match &self.router {
            Router::Process(r) => r.url().to_string(),
            Router::InProcess(r) => r.url(),
        }
    }

    /// The router's own memory; `None` in this process, where it cannot be told apart from the rest.
    pub fn router_memory(&self) -> Option<Memory> {
        match &self.router {
            Router::Process(r) => r.memory().ok(),
            Router::InProcess(_) => None,
        }
    }

    /// The router's process id, when it runs as a process.
    pub fn router_pid(&self) -> Option<u32> {
        match &self.router {
            Router::Process(r) => r.pid().ok(),
            Router::InProcess(_) => None,
        }
    }

    /// The router's stderr so far (its logs), for error messages.
    pub fn router_log_tail(&self) -> String {
        match &self.router {
            Router::Process(r) => r.stderr_tail(),
            Router::InProcess(_) => String::new(),
        }
    }

    /// Stops both (router first) and removes the temporary directory.
    pub async fn stop(self) -> Result<()> {
        match self.router {
            Router::Process(r) => r.stop().await?,
            Router::InProcess(r) => r.stop().await,
        }
        stop_sim(self.sim).await?;
        drop(self.dir);
        Ok(())
    }
}

async fn stop_sim(sim: Sim) -> Result<()> {
    match sim {
        Sim::Hosted(s) => s.stop().await,
        Sim::Process(s) => s.stop().await?,
    }
    Ok(())
}
