//! Replaying a trace against one scenario: a fresh simulator (its GPUs, a time scale), and either requests straight
//! to it (Ollama's own scheduling) or through a fresh Switchyard with one eviction strategy.
//!
//! Requests are sent at their arrival times (open loop: a slow answer does not delay the next arrival), part-way
//! another process takes VRAM on GPU 0, and at the end the simulator's counters tell the cold loads, evictions and
//! out-of-memory events of the scenario. Latencies are wall time divided by the time scale: simulated seconds.

use crate::setup;
use crate::sim_host::HostedSim;
use crate::stats::Summary;
use crate::trace::{Kind, TraceRequest, prompt};
use anyhow::{Context, Result};
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::Strategy;
use switchyard_core::http::{HttpClient, build_request};
use switchyard_sim::{Counters, SimOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Who schedules the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    /// Requests straight to the simulator, with its default keep_alive: Ollama's own scheduling.
    Ollama,
    /// Through Switchyard with this eviction strategy and `vram.max_bypass_ms` (as configured, in milliseconds of
    /// simulated time: the replay scales it like the router's other durations).
    Switchyard { strategy: Strategy, max_bypass_ms: u64 },
}

impl Scheduling {
    pub fn label(self) -> String {
        match self {
            Scheduling::Ollama => "ollama (direct)".to_string(),
            Scheduling::Switchyard { strategy, max_bypass_ms: 0 } => {
                format!("switchyard {}, arrival order", strategy.as_str())
            }
            Scheduling::Switchyard { strategy, max_bypass_ms } => {
                format!("switchyard {}, bypass {} s", strategy.as_str(), max_bypass_ms as f64 / 1000.0)
            }
        }
    }
}

/// How the bound on passing over a waiting request held in one scenario (`/admin/vram`'s `bypass`).
#[derive(Debug, Clone, Serialize)]
pub struct BoundCheck {
    /// The scenario's eviction strategy.
    pub strategy: Strategy,
    /// The scenario's `vram.max_bypass_ms`, in milliseconds of simulated time (as `Scheduling` gives it).
    pub max_bypass_ms: u64,
    /// The bound the router applied, in simulated seconds (read back from `/admin/vram`).
    pub bound_secs: f64,
    /// Requests that were passed over.
    pub deferred: u64,
    /// Leases granted ahead of them.
    pub bypasses: u64,
    /// The longest a request had waited when another went ahead of it, in simulated seconds.
    pub longest_passed_over_secs: f64,
    /// `longest_passed_over_secs <= bound_secs`: every request was passed over for no longer than the bound.
    pub held: bool,
}

/// Memory another process takes part-way through the trace.
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    /// When, as a share of the trace's length (0.5 = halfway).
    pub at_fraction: f64,
    /// Bytes it holds on GPU 0.
    pub bytes: u64,
}

/// Settings shared by every scenario.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Real seconds per simulated second.
    pub time_scale: f64,
    pub foreign: Option<Foreign>,
    /// How often the router reads the probes (real milliseconds).
    pub poll_interval_ms: u64,
    /// The router's idle TTL in real seconds (its default of 30 minutes, scaled like the simulator's keep_alive).
    pub idle_ttl_secs: u64,
    /// `vram.threshold_min_idle_secs` in real seconds (its default, scaled).
    pub threshold_min_idle_secs: u64,
    /// `vram.cost_half_life_secs` in real seconds (its default, scaled).
    pub cost_half_life_secs: u64,
    /// `vram.unload_threshold_pct` when not the default.
    pub unload_threshold_pct: Option<f64>,
    /// Most models loaded at once, for the simulator and the router alike, when not the default (3 per GPU).
    pub max_loaded_models: Option<u32>,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scheduling: String,
    pub gpus: String,
    pub requests: usize,
    pub failed: usize,
    /// Failures by message, most common first (a few).
    pub failures: Vec<(String, usize)>,
    /// Loads the simulator completed.
    pub cold_loads: u64,
    /// Loads attempted: completed ones plus those that failed out of memory.
    pub load_attempts: u64,
    pub evictions: u64,
    pub unloads: u64,
    pub oom_events: u64,
    /// Latency of successful requests, in simulated seconds.
    pub latency: Summary,
    /// The 95th percentile over every request, a failed one counting as never answered: `None` when that
    /// percentile is a failure (more than 5% failed).
    pub p95_all: Option<f64>,
    /// Real seconds the replay took.
    pub wall_secs: f64,
    /// Through Switchyard: how the bound on passing over waiting requests held.
    pub bound: Option<BoundCheck>,
}

/// `1 x 24 GiB`, `2 x 24 GiB`.
pub fn gpus_label(gpus: &[u64]) -> String {
    let first = gpus.first().copied().unwrap_or(0);
    let gib = first as f64 / (1024.0 * 1024.0 * 1024.0);
    if gpus.iter().all(|g| *g == first) {
        format!("{} x {gib:.0} GiB", gpus.len())
    } else {
        gpus.iter()
            .map(|g| format!("{:.0} GiB", *g as f64 / (1024.0 * 1024.0 * 1024.0)))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

pub(crate) fn body(request: &TraceRequest, index: usize) -> (&'static str, Bytes) {
    let text = prompt(request.prompt_words, index as u64);
    match request.kind {
        Kind::Chat => ("/api/chat", setup::chat_body(&request.model, &text, false, request.num_predict)),
        Kind::Embed => ("/api/embed", Bytes::from(json!({"model": request.model, "input": text}).to_string())),
    }
}

pub(crate) async fn send(client: HttpClient, url: String, body: Bytes) -> Result<Duration, String> {
    let started = Instant::now();
    let request = build_request(Method::POST, &url, Some(body)).map_err(|e| e.to_string())?;
    let answer = client.send_buffered(request, Duration::from_secs(3600)).await.map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        let message = switchyard_core::http::error_message(&answer.body);
        return Err(format!("{}: {}", answer.status.as_u16(), shorten(&message)));
    }
    Ok(started.elapsed())
}

/// A failure message with model names and numbers kept, cut to a readable length.
fn shorten(message: &str) -> String {
    message.chars().take(300).collect()
}

/// Waits for every request of a replay: the latencies of the answered ones in simulated seconds (wall time over
/// `scale`), and the failures by message, most common first.
pub(crate) async fn collect(
    mut tasks: JoinSet<Result<Duration, String>>,
    scale: f64,
) -> Result<(Vec<f64>, Vec<(String, usize)>)> {
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures: Vec<(String, usize)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a replay request panicked")? {
            Ok(latency) => latencies.push(latency.as_secs_f64() / scale.max(1e-9)),
            Err(message) => match failures.iter_mut().find(|(m, _)| *m == message) {
                Some((_, n)) => *n += 1,
                None => failures.push((message, 1)),
            },
        }
    }
    failures.sort_by_key(|f| std::cmp::Reverse(f.1));
    Ok((latencies, failures))
}

/// The configuration of a Switchyard in front of the simulator at `sim_url` with `gpus` GPUs, its durations scaled
/// like the simulator's.
pub(crate) fn router_config(
    sim_url: &str,
    dir: &std::path::Path,
    strategy: Strategy,
    max_bypass_ms: u64,
    gpus: usize,
    options: &ReplayOptions,
) -> Result<switchyard_core::config::Config> {
    let mut config = setup::router_config(sim_url, dir);
    config.vram.strategy = strategy;
    config.vram.max_bypass_ms = (max_bypass_ms as f64 * options.time_scale).round() as u64;
    config.vram.gpu_count = gpus as u32;
    config.vram.poll_interval_ms = options.poll_interval_ms;
    config.vram.idle_ttl_secs = options.idle_ttl_secs;
    config.vram.threshold_min_idle_secs = options.threshold_min_idle_secs;
    config.vram.cost_half_life_secs = options.cost_half_life_secs;
    if let Some(pct) = options.unload_threshold_pct {
        config.vram.unload_threshold_pct = pct;
    }
    if let Some(max) = options.max_loaded_models {
        config.vram.max_loaded_models = max;
    }
    config.validate().context("the replay's router configuration")?;
    Ok(config)
}

/// Replays `trace` on a fresh simulator with `gpus` under `scheduling`.
pub async fn run_scenario(
    trace: &[TraceRequest],
    gpus: &[u64],
    scheduling: Scheduling,
    options: &ReplayOptions,
) -> Result<ScenarioResult> {
    let sim_options = SimOptions {
        gpus: gpus.to_vec(),
        time_scale: options.time_scale,
        max_loaded_models: options.max_loaded_models.map(|n| n as usize),
        ..SimOptions::default()
    };
    let sim = HostedSim::start(&sim_options, 1)?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let router = match scheduling {
        Scheduling::Ollama => None,
        Scheduling::Switchyard { strategy, max_bypass_ms } => {
            let config = router_config(&sim.url(), dir.path(), strategy, max_bypass_ms, gpus.len(), options)?;
            Some(switchyard::server::spawn(Arc::new(config)).await.context("starting the router")?)
        }
    };
    let target = router.as_ref().map_or_else(|| sim.url(), |r| r.url());
    let before: Counters = sim.state().counters();
    let client = HttpClient::default();
    let scale = options.time_scale;
    let span = trace.last().map_or(0.0, |r| r.at);
    let foreign_at = options.foreign.map(|f| f.at_fraction * span);
    let mut foreign_done = false;
    let started = Instant::now();
    let mut in_flight = JoinSet::new();
    for (index, request) in trace.iter().enumerate() {
        if let (Some(at), Some(foreign)) = (foreign_at, options.foreign)
            && !foreign_done
            && request.at >= at
        {
            tokio::time::sleep_until(started + Duration::from_secs_f64(at * scale)).await;
            let spec = json!({"foreign_vram": {"gpu": 0, "bytes": foreign.bytes}});
            let set = client
                .request(
                    Method::POST,
                    &format!("{}/sim/faults", sim.url()),
                    Some(Bytes::from(spec.to_string())),
                    Duration::from_secs(10),
                )
                .await
                .context("setting foreign VRAM")?;
            anyhow::ensure!(set.status.is_success(), "the simulator refused the foreign VRAM: {:?}", set.body);
            foreign_done = true;
        }
        tokio::time::sleep_until(started + Duration::from_secs_f64(request.at * scale)).await;
        let (path, body) = body(request, index);
        in_flight.spawn(send(client.clone(), format!("{target}{path}"), body));
    }
    let (latencies, failures) = collect(in_flight, scale).await?;
    let wall_secs = started.elapsed().as_secs_f64();
    let after = sim.state().counters();
    let mut bound = None;
    if let Some(router) = router {
        let status: switchyard_vram::view::VramStatus = client
            .get_json(&format!("{}/admin/vram", router.url()), Duration::from_secs(10))
            .await
            .context("reading the router's /admin/vram")?;
        let b = status.bypass;
        let bound_secs = b.max_bypass_ms as f64 / 1000.0 / scale.max(1e-9);
        let longest_passed_over_secs = b.longest_passed_over_ms / 1000.0 / scale.max(1e-9);
        let Scheduling::Switchyard { strategy, max_bypass_ms } = scheduling else {
            anyhow::bail!("a router ran for a scenario without one")
        };
        bound = Some(BoundCheck {
            strategy,
            max_bypass_ms,
            bound_secs,
            deferred: b.deferred,
            bypasses: b.bypasses,
            longest_passed_over_secs,
            held: b.longest_passed_over_ms <= b.max_bypass_ms as f64,
        });
        router.stop().await;
    }
    sim.stop().await;
    let mut failures = failures;
    let failed = failures.iter().map(|(_, n)| n).sum();
    failures.truncate(4);
    Ok(ScenarioResult {
        scheduling: scheduling.label(),
        gpus: gpus_label(gpus),
        requests: trace.len(),
        failed,
        failures,
        cold_loads: after.loads.saturating_sub(before.loads),
        load_attempts: (after.loads + after.oom_events).saturating_sub(before.loads + before.oom_events),
        evictions: after.evictions.saturating_sub(before.evictions),
        unloads: after.unloads.saturating_sub(before.unloads),
        oom_events: after.oom_events.saturating_sub(before.oom_events),
        p95_all: p95_counting_failures(&latencies, failed),
        latency: Summary::of(latencies),
        wall_secs,
        bound,
    })
}

/// The 95th percentile of `latencies` and `failed` more requests that never got an answer (ranked after every
/// answer); `None` when it falls on a failure.
pub fn p95_counting_failures(latencies: &[f64], failed: usize) -> Option<f64> {
    let mut all: Vec<f64> = latencies.iter().copied().chain(std::iter::repeat_n(f64::INFINITY, failed)).collect();
    all.sort_by(f64::total_cmp);
    Some(crate::stats::percentile(&all, 95.0)).filter(|p| p.is_finite())
}

/// `ours` against `theirs` as `N% fewer` or `N% more`.
fn relative(ours: u64, theirs: u64) -> String {
    let change = ours as f64 / theirs.max(1) as f64 - 1.0;
    if change <= 0.0 { format!("{:.0}% fewer", -change * 100.0) } else { format!("{:.0}% more", change * 100.0) }
}

/// The failures of each row that had any, as a list under its table.
pub(crate) fn write_failures(out: &mut String, rows: &[&ScenarioResult]) {
    use std::fmt::Write as _;
    for r in rows.iter().filter(|r| r.failed > 0) {
        for (message, n) in &r.failures {
            let _ = writeln!(out, "\n- {}: {n} x `{message}`", r.scheduling);
        }
    }
}

/// `12.34`, or `failed` when the percentile is a failure.
pub(crate) fn seconds_or_failed(value: Option<f64>) -> String {
    value.map_or_else(|| "failed".to_string(), |v| format!("{v:.2}"))
}

/// A whole replay: the settings and every scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub machine: crate::machine::Machine,
    pub seed: u64,
    pub requests: usize,
    pub models: Vec<String>,
    pub zipf_s: f64,
    pub mean_gap_secs: f64,
    pub time_scale: f64,
    pub foreign_bytes: u64,
    pub foreign_at_fraction: f64,
    /// Router settings that differ from its defaults, as `key = value`.
    pub router_settings: Vec<String>,
    pub results: Vec<ScenarioResult>,
    /// The fewest loads any scheduler could need, per single-GPU case and bound (`crate::optimum`).
    pub optimum: Vec<OptimumRow>,
    /// What the best scheduler that does not know the future would load, per single-GPU case, in arrival order.
    pub online: Vec<OnlineRow>,
}

/// The best online policy of one single-GPU case (`crate::optimum::best_online`).
#[derive(Debug, Clone, Serialize)]
pub struct OnlineRow {
    /// The GPU case, as `gpus_label` writes it.
    pub gpus: String,
    /// What the best online policy loads on the trace, and expects to.
    pub best: crate::optimum::OnlineBest,
}

/// The offline optimum of one single-GPU case, in arrival order (`max_bypass_ms` 0) or with a bound on passing over
/// a request.
#[derive(Debug, Clone, Serialize)]
pub struct OptimumRow {
    pub gpus: String,
    /// Milliseconds of simulated time.
    pub max_bypass_ms: u64,
    pub optimum: crate::optimum::Optimum,
}

/// The references on one trace of `switchyard-replay --references`, for one single-GPU case.
#[derive(Debug, Clone)]
pub struct ReferenceRow {
    pub seed: u64,
    /// The offline optimum in arrival order.
    pub in_order: Option<u64>,
    /// The best online policy in arrival order.
    pub online: crate::optimum::OnlineBest,
    /// The offline optimum with each bound (as given to `references_markdown`).
    pub bounded: Vec<Option<u64>>,
}

/// `--references` as markdown: per GPU case a row per trace, the means, and how far the best online policy is above
/// the offline optimum in arrival order. `bounds` are the bounds of each row's `bounded`, in milliseconds.
pub fn references_markdown(cases: &[(String, Vec<ReferenceRow>)], bounds: &[u64]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    for (gpus, rows) in cases {
        let _ = writeln!(out, "\n### {gpus}\n");
        let mut header =
            "| seed | offline optimum, arrival order | best online policy, arrival order | its expected loads |"
                .to_string();
        let mut rule = "|---:|---:|---:|---:|".to_string();
        for bound in bounds {
            let _ = write!(header, " offline optimum, passed over up to {} s |", *bound as f64 / 1000.0);
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for r in rows {
            let bounded: Vec<String> = r.bounded.iter().map(|b| cell(*b)).collect();
            let _ =
                write!(out, "| {} | {} | {} | {:.1} |", r.seed, cell(r.in_order), r.online.loads, r.online.expected);
            for b in bounded {
                let _ = write!(out, " {b} |");
            }
            let _ = writeln!(out);
        }
        let in_order: Vec<f64> = rows.iter().filter_map(|r| r.in_order).map(|v| v as f64).collect();
        let online: Vec<f64> = rows.iter().map(|r| r.online.loads as f64).collect();
        let expected: Vec<f64> = rows.iter().map(|r| r.online.expected).collect();
        let _ = write!(out, "| mean | {:.1} | {:.1} | {:.1} |", mean(&in_order), mean(&online), mean(&expected));
        for k in 0..bounds.len() {
            let values: Vec<f64> =
                rows.iter().filter_map(|r| r.bounded.get(k).copied().flatten()).map(|v| v as f64).collect();
            let _ = write!(out, " {:.1} |", mean(&values));
        }
        let _ = writeln!(out);
        let gaps: Vec<i64> = rows.iter().filter_map(|r| r.in_order.map(|o| r.online.loads as i64 - o as i64)).collect();
        if let (Some(low), Some(high)) = (gaps.iter().min(), gaps.iter().max()) {
            let average = gaps.iter().sum::<i64>() as f64 / gaps.len() as f64;
            let _ = writeln!(
                out,
                "\nThe best online policy above the offline optimum (both in arrival order): {average:.1} loads on \
                 average, {low} to {high}."
            );
        }
    }
    out
}

/// The report as markdown: one table per GPU case, and the targets for `cost` against Ollama's scheduling.
pub fn markdown(report: &ReplayReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}", report.machine.line());
    let _ = writeln!(
        out,
        "Trace: seed {}, {} requests, Zipf s = {} over {} (most popular first), Poisson arrivals every {} s on \
         average (simulated), time scale {}; {} on GPU 0 taken by another process at {:.0}% of the trace.",
        report.seed,
        report.requests,
        report.zipf_s,
        report.models.join(", "),
        report.mean_gap_secs,
        report.time_scale,
        switchyard_core::size::Bytes(report.foreign_bytes),
        report.foreign_at_fraction * 100.0
    );
    let _ = writeln!(out, "Router settings: {}.", report.router_settings.join(", "));
    let mut cases: Vec<&str> = Vec::new();
    for r in &report.results {
        if !cases.contains(&r.gpus.as_str()) {
            cases.push(&r.gpus);
        }
    }
    for case in cases {
        let rows: Vec<&ScenarioResult> = report.results.iter().filter(|r| r.gpus == case).collect();
        let base = rows.iter().find(|r| r.scheduling.starts_with("ollama"));
        let _ = writeln!(out, "\n### {case}\n");
        let _ = writeln!(
            out,
            "| scheduling | cold loads | vs Ollama | load attempts (loads + OOM) | vs Ollama | p50 s | p95 s | p99 s | \
             p95 s, failures counted | OOM events | failed | wall s |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            let versus = |ours: u64, theirs: Option<u64>| match theirs {
                Some(b) if b > 0 && !r.scheduling.starts_with("ollama") => {
                    format!("{:+.0}%", (ours as f64 / b as f64 - 1.0) * 100.0)
                }
                _ => "-".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.1} |",
                r.scheduling,
                r.cold_loads,
                versus(r.cold_loads, base.map(|b| b.cold_loads)),
                r.load_attempts,
                versus(r.load_attempts, base.map(|b| b.load_attempts)),
                r.latency.p50,
                r.latency.p95,
                r.latency.p99,
                seconds_or_failed(r.p95_all),
                r.oom_events,
                r.failed,
                r.wall_secs
            );
        }
        write_failures(&mut out, &rows);
        let in_order = report.optimum.iter().find(|o| o.gpus == case && o.max_bypass_ms == 0);
        if let Some(row) = in_order {
            let best = row.optimum;
            let _ = write!(
                out,
                "\nOffline optimum ({case}, every request known in advance, served in arrival order): {} loads",
                best.loads
            );
            if best.unservable > 0 {
                let _ = write!(out, " ({} requests no set of models could serve)", best.unservable);
            }
            match base {
                Some(b) if b.cold_loads > 0 => {
                    let _ = writeln!(
                        out,
                        "; that is {} than Ollama's {} completed loads and {} than its {} load attempts.",
                        relative(best.loads, b.cold_loads),
                        b.cold_loads,
                        relative(best.loads, b.load_attempts),
                        b.load_attempts
                    );
                }
                _ => {
                    let _ = writeln!(out, ".");
                }
            }
        }
        if let Some(row) = report.online.iter().find(|o| o.gpus == case) {
            let _ = writeln!(
                out,
                "\nBest online policy ({case}, served in arrival order, knowing how often each model is asked for but \
                 not when): {} loads on this trace, {:.0} expected on a trace like it.",
                row.best.loads, row.best.expected
            );
        }
        for row in report.optimum.iter().filter(|o| o.gpus == case && o.max_bypass_ms > 0) {
            let _ = writeln!(
                out,
                "\nOffline optimum ({case}) when a request may be passed over for up to {} s: {} loads.",
                row.max_bypass_ms as f64 / 1000.0,
                row.optimum.loads
            );
        }
        // Each bounded row against the in-order optimum, the bounded optimum and the same strategy in arrival order.
        for r in rows.iter().filter(|r| r.bound.as_ref().is_some_and(|b| b.max_bypass_ms > 0)) {
            let Some(check) = &r.bound else { continue };
            let in_order_row = rows
                .iter()
                .find(|o| o.bound.as_ref().is_some_and(|b| b.strategy == check.strategy && b.max_bypass_ms == 0));
            let bounded = report.optimum.iter().find(|o| o.gpus == case && o.max_bypass_ms == check.max_bypass_ms);
            let mut parts = Vec::new();
            if let Some(o) = in_order {
                let fewer = r.cold_loads < o.optimum.loads;
                parts.push(format!(
                    "fewer loads than the in-order optimum: {} vs {} ({})",
                    r.cold_loads,
                    o.optimum.loads,
                    if fewer { "met" } else { "MISSED" }
                ));
            }
            if let Some(b) = bounded {
                let above = r.cold_loads as f64 / b.optimum.loads.max(1) as f64 - 1.0;
                parts.push(format!(
                    "within 15% of the bounded optimum: {:+.0}% ({})",
                    above * 100.0,
                    if above <= 0.15 { "met" } else { "MISSED" }
                ));
            }
            if let Some(o) = in_order_row {
                let no_worse = match (r.p95_all, o.p95_all) {
                    (Some(ours), Some(theirs)) => ours <= theirs,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                parts.push(format!(
                    "p95 counting failures no worse than in arrival order: {} vs {} ({})",
                    seconds_or_failed(r.p95_all),
                    seconds_or_failed(o.p95_all),
                    if no_worse { "met" } else { "MISSED" }
                ));
            }
            parts.push(format!("zero OOM: {} ({})", r.oom_events, if r.oom_events == 0 { "met" } else { "MISSED" }));
            parts.push(format!(
                "no request passed over for longer than the bound: longest {:.2} s of {:.2} s, {} requests passed \
                 over, {} leases ahead of them ({})",
                check.longest_passed_over_secs,
                check.bound_secs,
                check.deferred,
                check.bypasses,
                if check.held { "met" } else { "MISSED" }
            ));
            let _ = writeln!(out, "\nTargets for {} ({case}): {}.", r.scheduling, parts.join("; "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_show_each_trace_their_means_and_the_online_gap() {
        let row = |seed, in_order, online, bounded| ReferenceRow {
            seed,
            in_order: Some(in_order),
            online: crate::optimum::OnlineBest { loads: online, expected: online as f64 - 0.5, unservable: 0 },
            bounded: vec![Some(bounded)],
        };
        let cases = vec![("1 x 24 GiB".to_string(), vec![row(42, 75, 91, 70), row(43, 67, 84, 63)])];
        let md = references_markdown(&cases, &[10_000]);
        assert!(md.contains("| seed | offline optimum, arrival order | best online policy, arrival order | its expected loads | offline optimum, passed over up to 10 s |"), "{md}");
        assert!(md.contains("| 42 | 75 | 91 | 90.5 | 70 |"), "{md}");
        assert!(md.contains("| mean | 71.0 | 87.5 | 87.0 | 66.5 |"), "{md}");
        assert!(md.contains("16.5 loads on average, 16 to 17."), "{md}");
    }

    #[test]
    fn failures_count_as_never_answered_in_the_p95() {
        let answered: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(p95_counting_failures(&answered, 0), Some(95.0));
        // Four failures in 104 requests push the 95th percentile up but leave it an answer...
        assert_eq!(p95_counting_failures(&answered, 4), Some(99.0));
        // ...more than 5% make it a failure.
        assert_eq!(p95_counting_failures(&answered, 10), None);
        assert_eq!(seconds_or_failed(None), "failed");
    }
}
