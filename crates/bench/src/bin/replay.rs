//! `switchyard-replay`: the VRAM trace-replay benchmark. Draws a seeded Zipf trace over the simulator's chat
//! models, replays it against the simulator's own (Ollama's) scheduling and through Switchyard with each eviction
//! strategy, on one and on two simulated GPUs, prints a markdown report and writes JSON to `--out`.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::path::PathBuf;
use switchyard_bench::machine::Machine;
use switchyard_bench::optimum;
use switchyard_bench::replay::{self, Foreign, ReplayOptions, ReplayReport, Scheduling};
use switchyard_bench::trace::{self, TraceSpec};
use switchyard_core::config::Strategy;
use switchyard_core::size::parse_bytes;

/// Replays a request trace against Ollama's scheduling and Switchyard's VRAM manager.
#[derive(Debug, Parser)]
#[command(name = "switchyard-replay", version)]
struct Cli {
    /// A short smoke run: 80 requests, one GPU case, `cost` only.
    #[arg(long)]
    quick: bool,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the generated trace here (JSON), for offline analysis.
    #[arg(long)]
    trace_out: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Zipf exponent of model popularity.
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Chat models, most popular first. The default is every chat model of the built-in fleet that fits a 24 GiB
    /// GPU; add llama3.3:70b (partly offloaded there, about 2 tokens/s) for an overload test.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "llama3.1:8b,qwen2.5-coder:7b,llama3.2:3b,deepseek-r1:14b,llava:7b"
    )]
    models: Vec<String>,
    /// Share of requests to the embedding model nomic-embed-text (0 = none).
    #[arg(long, default_value_t = 0.0)]
    embed_share: f64,
    /// Mean simulated seconds between arrivals.
    #[arg(long, default_value_t = 3.0)]
    mean_gap: f64,
    /// Real seconds per simulated second.
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
    /// VRAM another process takes on GPU 0 part-way (0 = none).
    #[arg(long, default_value = "6GiB")]
    foreign: String,
    /// When the other process starts, as a share of the trace.
    #[arg(long, default_value_t = 0.5)]
    foreign_at: f64,
    /// Switchyard strategies to replay.
    #[arg(long, value_delimiter = ',', default_value = "lru,largest,lfu,cost")]
    strategies: Vec<String>,
    /// Values of `vram.max_bypass_ms` to replay each strategy with, in milliseconds as configured (scaled like the
    /// router's other durations); 0 admits in arrival order. Default: 0 and the router's default.
    #[arg(long, value_delimiter = ',')]
    max_bypass_ms: Vec<u64>,
    /// GPU cases: each a comma-separated list of GPU sizes; repeat the flag for several cases.
    #[arg(long = "gpus", default_values = ["24GiB", "24GiB,24GiB"])]
    gpu_cases: Vec<String>,
    /// Leave out the direct (Ollama scheduling) scenarios.
    #[arg(long)]
    no_direct: bool,
    /// Log the in-process router to stderr (RUST_LOG filters; warnings by default).
    #[arg(long)]
    log: bool,
    /// Router `vram.unload_threshold_pct` (default: the router's own default).
    #[arg(long)]
    unload_threshold_pct: Option<f64>,
    /// Most models loaded at once, set alike for the simulator (OLLAMA_MAX_LOADED_MODELS) and the router
    /// (`vram.max_loaded_models`); default: 3 per GPU, Ollama's default.
    #[arg(long)]
    max_loaded_models: Option<u32>,
    /// Router probe interval in real milliseconds (and, in fleet mode, how often the front reads the nodes).
    #[arg(long, default_value_t = 100)]
    poll_interval_ms: u64,
    /// Fleet mode: replay on this many boxes (comma-separated sizes, e.g. 2,4), each one GPU of the first `--gpus`
    /// size with its own Switchyard node, spread by a Switchyard front, by round robin and by least connections.
    #[arg(long, value_delimiter = ',')]
    fleet: Vec<usize>,
    /// Instead of replaying: the references alone (the offline optimum in arrival order and per `--max-bypass-ms`
    /// bound, and the best online policy in arrival order) on this many traces of the same kind, seeds `--seed`,
    /// `--seed` + 1, ...; a row per trace and their means. Takes about a second: nothing is simulated.
    #[arg(long, value_name = "TRACES")]
    references: Option<u64>,
}

fn strategy(name: &str) -> Result<Strategy> {
    Ok(match name.trim() {
        "lru" => Strategy::Lru,
        "largest" => Strategy::Largest,
        "lfu" => Strategy::Lfu,
        "cost" => Strategy::Cost,
        other => bail!("unknown strategy {other:?}: expected lru, largest, lfu or cost"),
    })
}

/// The router settings the replay changes, for the report.
fn router_settings(options: &ReplayOptions) -> Vec<String> {
    let mut settings = vec![
        format!("vram.poll_interval_ms = {}", options.poll_interval_ms),
        format!("vram.idle_ttl_secs = {} (30 min scaled)", options.idle_ttl_secs),
        format!("vram.threshold_min_idle_secs = {} (1 min scaled)", options.threshold_min_idle_secs),
        format!("vram.cost_half_life_secs = {} (1 h scaled)", options.cost_half_life_secs),
        format!("vram.num_ctx = {}", switchyard_bench::setup::NUM_CTX),
    ];
    if let Some(pct) = options.unload_threshold_pct {
        settings.push(format!("vram.unload_threshold_pct = {pct}"));
    }
    if let Some(max) = options.max_loaded_models {
        settings.push(format!("vram.max_loaded_models = {max} (and the simulator's OLLAMA_MAX_LOADED_MODELS)"));
    }
    settings
}

/// The fewest loads any scheduler could need, for each single-GPU case, with the built-in fleet's sizes at the
/// replay's context and the router's default headroom: serving in arrival order, and with each bound on passing
/// over a request (`bounds`, milliseconds of simulated time; 0 is arrival order); and the loads of the best online
/// policy in arrival order. (Several GPUs are not covered: placement across them is more than which models are
/// loaded.)
fn offline_optimum(
    trace: &[trace::TraceRequest],
    cases: &[Vec<u64>],
    cli: &Cli,
    options: &ReplayOptions,
    bounds: &[u64],
) -> Result<(Vec<replay::OptimumRow>, Vec<replay::OnlineRow>)> {
    let fleet = switchyard_sim::Fleet::builtin();
    let mut sizes = Vec::new();
    for name in &cli.models {
        let model = switchyard_core::ModelName::parse(name).map_err(|e| anyhow::anyhow!("--models: {e}"))?;
        let spec = fleet.get(&model).with_context(|| format!("{name} is not in the built-in fleet"))?;
        sizes.push((name.clone(), spec.vram_at(switchyard_bench::setup::NUM_CTX)));
    }
    let headroom = switchyard_core::config::Config::default().vram.headroom.0;
    let span = trace.last().map_or(0.0, |r| r.at);
    let mut out = Vec::new();
    let mut online = Vec::new();
    for gpus in cases.iter().filter(|g| g.len() == 1) {
        let gpu = optimum::OneGpu {
            total: gpus[0],
            budget: gpus[0].saturating_sub(headroom),
            max_loaded: options.max_loaded_models.map_or(3, |n| n as usize),
            foreign: options.foreign.map(|f| (f.at_fraction * span, f.bytes)),
        };
        // A model larger than the budget runs partly offloaded, alone on the GPU: it takes all of it.
        let sizes: Vec<(String, u64)> = sizes.iter().map(|(n, b)| (n.clone(), (*b).min(gpu.budget))).collect();
        if let Some(best) = optimum::fewest_loads(trace, &sizes, &gpu) {
            out.push(replay::OptimumRow { gpus: replay::gpus_label(gpus), max_bypass_ms: 0, optimum: best });
        }
        if let Some(best) = optimum::best_online(trace, &sizes, &gpu) {
            online.push(replay::OnlineRow { gpus: replay::gpus_label(gpus), best });
        }
        for bound in bounds.iter().filter(|b| **b > 0) {
            if let Some(best) = optimum::fewest_loads_bounded(trace, &sizes, &gpu, *bound as f64 / 1000.0) {
                out.push(replay::OptimumRow { gpus: replay::gpus_label(gpus), max_bypass_ms: *bound, optimum: best });
            }
        }
    }
    Ok((out, online))
}

/// `--references`: the offline optima and the best online policy on `traces` traces like `spec` (seeds from its
/// own), each single-GPU case, printed as markdown.
fn references(
    spec: &TraceSpec,
    traces: u64,
    cases: &[Vec<u64>],
    cli: &Cli,
    options: &ReplayOptions,
    bounds: &[u64],
    foreign: u64,
) -> Result<()> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "References on {traces} traces (seeds {} to {}), {} requests each, Zipf s = {} over {}, a request every {} s \
         on average; {} on GPU 0 taken by another process at {:.0}% of each trace.",
        spec.seed,
        spec.seed + traces.saturating_sub(1),
        spec.requests,
        spec.zipf_s,
        spec.models.join(", "),
        spec.mean_gap,
        switchyard_core::size::Bytes(foreign),
        cli.foreign_at * 100.0
    );
    let bounded: Vec<u64> = bounds.iter().copied().filter(|b| *b > 0).collect();
    let mut cases_rows: Vec<(String, Vec<replay::ReferenceRow>)> = Vec::new();
    for i in 0..traces {
        let trace = trace::generate(&TraceSpec { seed: spec.seed + i, ..spec.clone() });
        let (optimum, online) = offline_optimum(&trace, cases, cli, options, bounds)?;
        for best in online {
            let loads = |bound: u64| {
                optimum.iter().find(|o| o.gpus == best.gpus && o.max_bypass_ms == bound).map(|o| o.optimum.loads)
            };
            let row = replay::ReferenceRow {
                seed: spec.seed + i,
                in_order: loads(0),
                online: best.best,
                bounded: bounded.iter().map(|b| loads(*b)).collect(),
            };
            match cases_rows.iter_mut().find(|(gpus, _)| *gpus == best.gpus) {
                Some((_, list)) => list.push(row),
                None => cases_rows.push((best.gpus, vec![row])),
            }
        }
    }
    out.push_str(&replay::references_markdown(&cases_rows, &bounded));
    println!("{out}");
    Ok(())
}

/// What a fleet replay wrote: the settings and each (fleet size, policy) result.
#[derive(Debug, serde::Serialize)]
struct FleetReport {
    machine: Machine,
    seed: u64,
    requests: usize,
    models: Vec<String>,
    zipf_s: f64,
    mean_gap_secs: f64,
    time_scale: f64,
    router_settings: Vec<String>,
    results: Vec<replay::ScenarioResult>,
}

/// `--fleet`: the trace on each fleet size under each policy.
fn fleet_mode(
    cli: &Cli,
    trace: &[trace::TraceRequest],
    cases: &[Vec<u64>],
    options: &ReplayOptions,
    runtime: &tokio::runtime::Runtime,
    machine: Machine,
) -> Result<()> {
    use switchyard_bench::fleet::{self, FleetPolicy};
    let gpu = cases.first().and_then(|c| c.first()).copied().context("--gpus names no GPU size")?;
    let mut results = Vec::new();
    for &nodes in &cli.fleet {
        anyhow::ensure!(nodes >= 1, "--fleet: a fleet has at least one node");
        for policy in FleetPolicy::ALL {
            eprintln!(
                "replaying {} requests on {nodes} nodes of {} with {}",
                trace.len(),
                replay::gpus_label(&[gpu]),
                policy.label()
            );
            let result = runtime.block_on(fleet::run(trace, nodes, gpu, policy, options))?;
            eprintln!(
                "  cold loads {}, p95 {:.2} s, OOM {}, failed {}",
                result.cold_loads, result.latency.p95, result.oom_events, result.failed
            );
            results.push(result);
        }
    }
    let report = FleetReport {
        machine,
        seed: cli.seed,
        requests: trace.len(),
        models: cli.models.clone(),
        zipf_s: cli.zipf,
        mean_gap_secs: cli.mean_gap,
        time_scale: cli.time_scale,
        router_settings: router_settings(options),
        results,
    };
    println!("Machine: {}", report.machine.line());
    println!(
        "Trace: seed {}, {} requests, Zipf s = {} over {} (most popular first), Poisson arrivals every {} s on average \
         (simulated), time scale {}. Each node: one GPU, its own Switchyard (`cost`, default bypass bound).",
        report.seed,
        report.requests,
        report.zipf_s,
        report.models.join(", "),
        report.mean_gap_secs,
        report.time_scale
    );
    println!("Router settings: {}.", report.router_settings.join(", "));
    println!("{}", fleet::markdown(&report.results));
    if let Some(path) = &cli.out {
        let json = serde_json::to_string_pretty(&report).context("rendering the JSON report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON results written to {}", path.display());
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let requests = if cli.quick { 80 } else { cli.requests };
    let strategies: Vec<Strategy> = if cli.quick {
        vec![Strategy::Cost]
    } else {
        cli.strategies.iter().map(|s| strategy(s)).collect::<Result<_>>()?
    };
    let cases: Vec<Vec<u64>> = cli
        .gpu_cases
        .iter()
        .take(if cli.quick { 1 } else { usize::MAX })
        .map(|case| {
            case.split(',').map(|s| parse_bytes(s.trim()).map_err(anyhow::Error::msg)).collect::<Result<Vec<u64>>>()
        })
        .collect::<Result<_>>()
        .context("--gpus")?;
    let foreign = parse_bytes(&cli.foreign).map_err(anyhow::Error::msg).context("--foreign")?;
    let spec = TraceSpec {
        seed: cli.seed,
        requests,
        models: cli.models.clone(),
        zipf_s: cli.zipf,
        mean_gap: cli.mean_gap,
        embedding: (cli.embed_share > 0.0).then(|| ("nomic-embed-text:latest".to_string(), cli.embed_share)),
    };
    let bounds: Vec<u64> = if cli.max_bypass_ms.is_empty() {
        vec![0, switchyard_core::config::Config::default().vram.max_bypass_ms]
    } else {
        cli.max_bypass_ms.clone()
    };
    let trace = trace::generate(&spec);
    if let Some(path) = &cli.trace_out {
        let json = serde_json::to_string(&trace).context("rendering the trace")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let options = ReplayOptions {
        time_scale: cli.time_scale,
        foreign: (foreign > 0).then_some(Foreign { at_fraction: cli.foreign_at, bytes: foreign }),
        poll_interval_ms: cli.poll_interval_ms,
        // The router's default idle TTL (30 minutes) in simulated time, like the simulator's keep_alive.
        idle_ttl_secs: ((1800.0 * cli.time_scale).round() as u64).max(1),
        // The threshold's hysteresis and the `cost` half-life are real time too: scaled the same way.
        threshold_min_idle_secs: ((60.0 * cli.time_scale).ceil() as u64).max(1),
        cost_half_life_secs: ((3600.0 * cli.time_scale).round() as u64).max(1),
        unload_threshold_pct: cli.unload_threshold_pct,
        max_loaded_models: cli.max_loaded_models,
    };
    if let Some(traces) = cli.references {
        return references(&spec, traces, &cases, &cli, &options, &bounds, foreign);
    }
    if cli.log {
        switchyard::telemetry::init(switchyard_core::config::LogFormat::Pretty, "warn");
    }
    let machine = Machine::read();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if !cli.fleet.is_empty() {
        return fleet_mode(&cli, &trace, &cases, &options, &runtime, machine);
    }
    let mut results = Vec::new();
    for gpus in &cases {
        let mut schedulings = if cli.no_direct { Vec::new() } else { vec![Scheduling::Ollama] };
        for strategy in &strategies {
            schedulings
                .extend(bounds.iter().map(|b| Scheduling::Switchyard { strategy: *strategy, max_bypass_ms: *b }));
        }
        for scheduling in schedulings {
            eprintln!("replaying {} requests on {} with {}", trace.len(), replay::gpus_label(gpus), scheduling.label());
            let result = runtime.block_on(replay::run_scenario(&trace, gpus, scheduling, &options))?;
            eprintln!(
                "  cold loads {}, p95 {:.2} s, OOM {}, failed {}",
                result.cold_loads, result.latency.p95, result.oom_events, result.failed
            );
            results.push(result);
        }
    }
    let (optimum, online) = offline_optimum(&trace, &cases, &cli, &options, &bounds)?;
    let report = ReplayReport {
        machine,
        seed: cli.seed,
        requests: trace.len(),
        models: cli.models,
        zipf_s: cli.zipf,
        mean_gap_secs: cli.mean_gap,
        time_scale: cli.time_scale,
        foreign_bytes: foreign,
        foreign_at_fraction: cli.foreign_at,
        router_settings: router_settings(&options),
        results,
        optimum,
        online,
    };
    println!("{}", replay::markdown(&report));
    if let Some(path) = &cli.out {
        let json = serde_json::to_string_pretty(&report).context("rendering the JSON report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON results written to {}", path.display());
    }
    Ok(())
}
