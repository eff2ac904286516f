//! `switchyard demo`: the Ollama simulator (a simulated GPU and model fleet) and the router together, with the
//! simulated models profiled so that `auto` has real quality figures, and instructions for talking to it.
//! Needs no Ollama and no GPU. Built with the `demo` cargo feature (on by default), which brings in the simulator.

use super::flag;
use crate::error::RouterError;
use crate::server;
use clap::Args;
use std::sync::Arc;
use switchyard_core::config::{Config, FlagValue};
use switchyard_core::size::parse_bytes;
use switchyard_profiler::{Progress, ProgressSink, Runner};
use switchyard_sim::{Fleet, SimOptions};
use tokio_util::sync::CancellationToken;

/// `switchyard demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the router (default 127.0.0.1:11435).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Simulated GPU memory, one size per GPU, comma-separated.
    #[arg(long, value_name = "SIZE", default_value = "24GiB")]
    pub gpu_vram: String,
    /// Multiplies the simulator's delays (load, prefill, decode); 1 = real speed, 0 = instant.
    #[arg(long, value_name = "F", default_value_t = 0.05)]
    pub time_scale: f64,
    /// Items per category for the start-up profile of the simulated models.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub profile_items: u32,
    /// Skip the start-up profile.
    #[arg(long)]
    pub no_profile: bool,
}

/// Flags that set configuration keys (the database and probe are set by `run`).
pub fn flags(args: &DemoArgs) -> Vec<FlagValue> {
    let mut flags = Vec::new();
    if let Some(v) = &args.listen {
        flags.push(flag("server.listen", "--listen", v));
    }
    flags
}

struct Quiet;

impl ProgressSink for Quiet {
    fn event(&self, event: &Progress) {
        if let Progress::ModelDone { model } = event {
            eprintln!("  profiled {model}");
        }
    }
}

/// Runs the demo until Ctrl-C.
pub async fn run(config: Arc<Config>, args: DemoArgs) -> Result<(), RouterError> {
    if !(0.0..=100.0).contains(&args.time_scale) {
        return Err(RouterError::bad("--time-scale must be between 0 and 100", Some("--time-scale".into())));
    }
    let gpus = args
        .gpu_vram
        .split(',')
        .map(|s| parse_bytes(s).map_err(|m| RouterError::bad(format!("--gpu-vram: {m}"), None)))
        .collect::<Result<Vec<u64>, _>>()?;
    let sim = switchyard_sim::spawn(SimOptions {
        fleet: Fleet::builtin(),
        gpus,
        time_scale: args.time_scale,
        ..SimOptions::default()
    })
    .await
    .map_err(|e| RouterError::Startup(format!("simulator: {e}")))?;
    let mut config = Config::clone(&config);
    config.ollama.url = sim.url();
    config.vram.probe = switchyard_core::config::ProbeKind::Sim;
    if config.database.url.is_empty() {
        config.database.url = format!("sqlite://{}", config.database.resolved_data_dir().join("demo.db").display());
    }
    config.validate().map_err(|e| RouterError::Startup(e.to_string()))?;
    let config = Arc::new(config);
    let running = server::spawn(Arc::clone(&config)).await?;
    let state = running.state.clone();
    if !args.no_profile {
        eprintln!(
            "profiling the simulated models ({} items per category; stored results are reused) ...",
            args.profile_items
        );
        let mut options = switchyard_profiler::plan::options(&config, &[], &[], false)?;
        options.items_per_category = args.profile_items as usize;
        let runner = Runner {
            client: state.ollama.clone(),
            store: Arc::clone(&state.store),
            vram: state.vram.clone(),
            config: Arc::clone(&config),
            suites: Arc::new(switchyard_profiler::plan::suites(&config)?),
            cancel: state.shutdown.clone(),
        };
        let catalog = state.catalog.load_full();
        runner
            .run(&catalog, &options, &Quiet)
            .await
            .map_err(|e| RouterError::Startup(format!("profiling the demo fleet: {e}")))?;
        state.reload_profiles().await?;
    }
    let url = running.url();
    // How to call this very binary (it may not be on PATH when started with `cargo run`).
    let me = std::env::current_exe()
        .ok()
        .map(|p| {
            std::env::current_dir()
                .ok()
                .and_then(|d| p.strip_prefix(d).ok().map(std::path::Path::to_path_buf))
                .unwrap_or(p)
        })
        .map_or_else(|| "switchyard".to_string(), |p| p.display().to_string());
    println!("Switchyard demo is running.");
    println!("  simulator (Ollama API, simulated GPU): {}", sim.url());
    println!("  router (Ollama + OpenAI APIs):         {url}");
    println!("  dashboard (open in a browser):         {url}/ui");
    println!();
    println!("Try:");
    println!(
        "  curl -s {url}/api/chat -d '{{\"model\":\"auto\",\"stream\":false,\"messages\":[{{\"role\":\"user\",\"content\":\"Write a Python function that checks whether a number is prime\"}}]}}'"
    );
    println!(
        "  curl -s {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"auto:fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"What is the capital of Australia?\"}}]}}'"
    );
    println!("  {me} models --server {url}");
    println!("  {me} explain --server {url} --quality 0.95 \"Prove that there are infinitely many primes\"");
    println!("  {me} vram status --server {url}");
    println!();
    println!("Python: ollama.Client(host=\"{url}\") or openai.OpenAI(base_url=\"{url}/v1\", api_key=\"unused\")");
    println!("Press Ctrl-C to stop.");
    let stop = CancellationToken::new();
    super::cancel_on_signal(stop.clone());
    stop.cancelled().await;
    eprintln!("stopping ...");
    running.stop().await;
    sim.shutdown().await;
    Ok(())
}
