//! The fleet replay: a trace against several boxes, each a simulated GPU with its own Switchyard node in front of
//! it, routed either by a Switchyard front (`[[backends]] kind = "switchyard"`) or by what a plain load balancer does
//! over the same nodes (round robin, least connections).
//!
//! Every box is identical, every policy sees the same trace at the same times (open loop), and the boxes' own
//! counters tell the cold loads, evictions and out-of-memory events; latencies are simulated seconds.

use crate::replay::{self, ReplayOptions, ScenarioResult, p95_counting_failures};
use crate::sim_host::HostedSim;
use crate::stats::Summary;
use crate::trace::TraceRequest;
use anyhow::{Context, Result};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use switchyard_core::config::{BackendConfig, BackendKind, Config, Strategy};
use switchyard_core::http::HttpClient;
use switchyard_sim::SimOptions;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Who spreads the requests over the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FleetPolicy {
    /// A Switchyard front reading the nodes' state.
    Front,
    /// Request i to node i mod N.
    RoundRobin,
    /// To the node with the fewest requests in flight (the first on a tie).
    LeastConnections,
}

impl FleetPolicy {
    pub const ALL: [FleetPolicy; 3] = [FleetPolicy::Front, FleetPolicy::RoundRobin, FleetPolicy::LeastConnections];

    pub fn label(self) -> &'static str {
        match self {
            FleetPolicy::Front => "switchyard front",
            FleetPolicy::RoundRobin => "round robin",
            FleetPolicy::LeastConnections => "least connections",
        }
    }
}

/// The front's configuration over `nodes`: no Ollama of its own, one `switchyard` backend per node, read every
/// `poll_interval_ms` like the nodes read their GPUs.
fn front_config(nodes: &[String], dir: &std::path::Path, options: &ReplayOptions) -> Result<Config> {
    let mut config = crate::setup::router_config("http://127.0.0.1:9", dir);
    config.ollama.enabled = false;
    config.backends = nodes
        .iter()
        .enumerate()
        .map(|(i, url)| BackendConfig {
            name: format!("node-{}", i + 1),
            kind: BackendKind::Switchyard,
            url: url.clone(),
            poll_interval_ms: options.poll_interval_ms,
            // A request may wait for a cold load on its node: the first byte comes after it.
            first_byte_timeout_secs: 3600,
            answer_timeout_secs: 3600,
            ..BackendConfig::default()
        })
        .collect();
    config.validate().context("the fleet front's configuration")?;
    Ok(config)
}

/// Replays `trace` on `nodes` fresh boxes of one GPU of `gpu` bytes each, spread by `policy`.
pub async fn run(
    trace: &[TraceRequest],
    nodes: usize,
    gpu: u64,
    policy: FleetPolicy,
    options: &ReplayOptions,
) -> Result<ScenarioResult> {
    let sim_options = SimOptions {
        gpus: vec![gpu],
        time_scale: options.time_scale,
        max_loaded_models: options.max_loaded_models.map(|n| n as usize),
        ..SimOptions::default()
    };
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut sims = Vec::with_capacity(nodes);
    let mut routers = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let sim = HostedSim::start(&sim_options, 1)?;
        let node_dir = dir.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir).context("creating a node's directory")?;
        let default_bypass = Config::default().vram.max_bypass_ms;
        let config = replay::router_config(&sim.url(), &node_dir, Strategy::Cost, default_bypass, 1, options)?;
        routers.push(switchyard::server::spawn(Arc::new(config)).await.context("starting a node")?);
        sims.push(sim);
    }
    let node_urls: Vec<String> = routers.iter().map(|r| r.url()).collect();
    let front = match policy {
        FleetPolicy::Front => {
            let config = front_config(&node_urls, dir.path(), options)?;
            Some(switchyard::server::spawn(Arc::new(config)).await.context("starting the front")?)
        }
        _ => None,
    };
    if let Some(front) = &front {
        wait_for_models(&front.url(), trace).await?;
    }
    let before: Vec<switchyard_sim::Counters> = sims.iter().map(|s| s.state().counters()).collect();
    let client = HttpClient::default();
    let scale = options.time_scale;
    let in_flight: Arc<Vec<AtomicU32>> = Arc::new((0..nodes).map(|_| AtomicU32::new(0)).collect());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, request) in trace.iter().enumerate() {
        tokio::time::sleep_until(started + Duration::from_secs_f64(request.at * scale)).await;
        let (path, body) = replay::body(request, index);
        let (target, node) = match (&front, policy) {
            (Some(front), _) => (front.url(), None),
            (None, FleetPolicy::LeastConnections) => {
                let i = (0..nodes).min_by_key(|i| in_flight[*i].load(Ordering::Relaxed)).unwrap_or(0);
                (node_urls[i].clone(), Some(i))
            }
            (None, _) => (node_urls[index % nodes].clone(), Some(index % nodes)),
        };
        if let Some(i) = node {
            in_flight[i].fetch_add(1, Ordering::Relaxed);
        }
        let client = client.clone();
        let counts = Arc::clone(&in_flight);
        tasks.spawn(async move {
            let answer = replay::send(client, format!("{target}{path}"), body).await;
            if let Some(i) = node {
                counts[i].fetch_sub(1, Ordering::Relaxed);
            }
            answer
        });
    }
    let (latencies, mut failures) = replay::collect(tasks, scale).await?;
    let wall_secs = started.elapsed().as_secs_f64();
    let after: Vec<switchyard_sim::Counters> = sims.iter().map(|s| s.state().counters()).collect();
    let delta = |f: fn(&switchyard_sim::Counters) -> u64| -> u64 {
        before.iter().zip(&after).map(|(b, a)| f(a).saturating_sub(f(b))).sum()
    };
    if let Some(front) = front {
        front.stop().await;
    }
    for router in routers {
        router.stop().await;
    }
    for sim in sims {
        sim.stop().await;
    }
    let failed = failures.iter().map(|(_, n)| n).sum();
    failures.truncate(4);
    Ok(ScenarioResult {
        scheduling: policy.label().to_string(),
        gpus: format!("{nodes} nodes of {}", replay::gpus_label(&[gpu])),
        requests: trace.len(),
        failed,
        failures,
        cold_loads: delta(|c| c.loads),
        load_attempts: delta(|c| c.loads + c.oom_events),
        evictions: delta(|c| c.evictions),
        unloads: delta(|c| c.unloads),
        oom_events: delta(|c| c.oom_events),
        p95_all: p95_counting_failures(&latencies, failed),
        latency: Summary::of(latencies),
        wall_secs,
        bound: None,
    })
}

/// Waits until the front lists every model of the trace (its first reading of the nodes).
async fn wait_for_models(front: &str, trace: &[TraceRequest]) -> Result<()> {
    let client = HttpClient::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tags: serde_json::Value =
            client.get_json(&format!("{front}/api/tags"), Duration::from_secs(10)).await.unwrap_or_default();
        let listed: Vec<&str> =
            tags["models"].as_array().into_iter().flatten().filter_map(|m| m["name"].as_str()).collect();
        if trace.iter().all(|r| listed.contains(&r.model.as_str())) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the fleet front did not list the trace's models within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fleet replay's figures as markdown: one table per fleet size, and the front's targets against round robin.
pub fn markdown(results: &[ScenarioResult]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut cases: Vec<&str> = Vec::new();
    for r in results {
        if !cases.contains(&r.gpus.as_str()) {
            cases.push(&r.gpus);
        }
    }
    for case in cases {
        let rows: Vec<&ScenarioResult> = results.iter().filter(|r| r.gpus == case).collect();
        let _ = writeln!(out, "\n### Fleet: {case}\n");
        let _ = writeln!(
            out,
            "| spread by | cold loads | unloads | p50 s | p95 s | p99 s | p95 s, failures counted | OOM events | failed | wall s |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.1} |",
                r.scheduling,
                r.cold_loads,
                r.unloads,
                r.latency.p50,
                r.latency.p95,
                r.latency.p99,
                replay::seconds_or_failed(r.p95_all),
                r.oom_events,
                r.failed,
                r.wall_secs
            );
        }
        replay::write_failures(&mut out, &rows);
        let front = rows.iter().find(|r| r.scheduling == FleetPolicy::Front.label());
        let round_robin = rows.iter().find(|r| r.scheduling == FleetPolicy::RoundRobin.label());
        let least = rows.iter().find(|r| r.scheduling == FleetPolicy::LeastConnections.label());
        if let (Some(f), Some(rr)) = (front, round_robin) {
            let fewer = 1.0 - f.cold_loads as f64 / rr.cold_loads.max(1) as f64;
            let faster = match (f.p95_all, rr.p95_all) {
                (Some(ours), Some(theirs)) if theirs > 0.0 => Some(1.0 - ours / theirs),
                (Some(_), None) => Some(1.0),
                _ => None,
            };
            let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
            let _ = writeln!(
                out,
                "\nTargets ({case}, front against round robin): >= 40% fewer cold loads: {:.0}% ({}); >= 25% lower p95 \
                 (failures counted): {} ({}); zero OOM: {} ({}).",
                fewer * 100.0,
                verdict(fewer >= 0.40),
                faster.map_or_else(|| "-".to_string(), |v| format!("{:.0}%", v * 100.0)),
                verdict(faster.is_some_and(|v| v >= 0.25)),
                f.oom_events,
                verdict(f.oom_events == 0)
            );
            if let Some(lc) = least {
                let _ = writeln!(
                    out,
                    "Against least connections: {:.0}% fewer cold loads, p95 {} s against {} s.",
                    (1.0 - f.cold_loads as f64 / lc.cold_loads.max(1) as f64) * 100.0,
                    replay::seconds_or_failed(f.p95_all),
                    replay::seconds_or_failed(lc.p95_all)
                );
            }
        }
    }
    out
}
