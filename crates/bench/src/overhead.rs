//! The router's overhead: the same closed-loop load straight to the simulator and through the router, for each
//! concurrency, buffered and streamed, for an explicit model and for `auto`; then the router's memory with many
//! streams open at once.
//!
//! Runs alternate (direct, through, direct, through...) within each repeat so that drift of a shared machine hits
//! both sides alike; each figure is reported as the median over repeats with its range. "Added" is through minus
//! direct of the same repeat. For `auto`, the direct side sends the model `auto` chose to the simulator.

use crate::load::{self, LoadSpec, RunFigures};
use crate::machine::Machine;
use crate::process::{Memory, cpu_time};
use crate::setup::chat_body;
use crate::sim_host::SIM_THREAD;
use crate::stack::{Stack, StackOptions};
use crate::stats::Spread;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;
use switchyard_core::http::{HttpClient, build_request};
use tokio::time::Instant;

/// The prompt of every request: one short chat turn.
pub const PROMPT: &str = "Write a short poem about the autumn leaves falling in the park.";

/// What to measure.
#[derive(Debug, Clone)]
pub struct OverheadOptions {
    pub stack: StackOptions,
    /// Time scales of the simulator to measure at (0 = instant answers: the router's overhead alone).
    pub time_scales: Vec<f64>,
    pub concurrencies: Vec<usize>,
    /// Which answer modes to measure: buffered (`false`), streamed (`true`).
    pub streams: Vec<bool>,
    pub warmup: Duration,
    pub duration: Duration,
    pub repeats: usize,
    /// The explicit model.
    pub model: String,
    /// Tokens per answer.
    pub num_predict: u64,
    /// Streams held open at once for the memory test (0 skips it).
    pub rss_streams: usize,
    pub rss_duration: Duration,
}

/// One cell of the matrix over its repeats.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub time_scale: f64,
    pub concurrency: usize,
    pub stream: bool,
    /// What the client asked for.
    pub requested: String,
    /// The model that served it.
    pub model: String,
    pub direct: Vec<RunFigures>,
    pub through: Vec<RunFigures>,
    pub direct_p50_ms: Spread,
    pub direct_p99_ms: Spread,
    pub through_p50_ms: Spread,
    pub through_p99_ms: Spread,
    pub added_p50_ms: Spread,
    pub added_p99_ms: Spread,
    pub direct_rps: Spread,
    pub through_rps: Spread,
    pub throughput_ratio: Spread,
    pub added_ttfc_p50_ms: Spread,
    pub added_ttfc_p99_ms: Spread,
    /// Router CPU per request through it, microseconds.
    pub router_cpu_us: Option<Spread>,
    /// Simulator CPU per request straight to it, microseconds.
    pub sim_cpu_us: Option<Spread>,
    pub errors: usize,
}

/// The memory test.
#[derive(Debug, Clone, Serialize)]
pub struct RssResult {
    pub streams: usize,
    /// Router RSS after start and warm-up, before the streams, bytes.
    pub baseline_rss: u64,
    /// Highest RSS sampled while the streams ran, bytes.
    pub sampled_peak_rss: u64,
    /// The router's VmHWM at the end, bytes.
    pub peak_rss: u64,
    /// Streams open at once on average (Little's law: throughput x mean latency).
    pub mean_open_streams: f64,
    pub completed: usize,
    pub errors: usize,
}

/// Everything one run of the tool measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub mode: String,
    pub settings: Settings,
    pub rows: Vec<Row>,
    /// The main router's memory after the whole matrix (None in process).
    pub router_memory_after_matrix: Option<Memory>,
    pub rss: Option<RssResult>,
    pub load_average_after: String,
}

/// The settings, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub time_scales: Vec<f64>,
    pub concurrencies: Vec<usize>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub repeats: usize,
    pub model: String,
    pub num_predict: u64,
    pub num_parallel: usize,
    pub gpu_vram: String,
}

/// Asks the router which model `auto` picks for the benchmark prompt.
async fn resolve_auto(client: &HttpClient, router: &str, num_predict: u64) -> Result<String> {
    let request = build_request(
        Method::POST,
        &format!("{router}/api/chat"),
        Some(chat_body("auto", PROMPT, false, num_predict)),
    )?;
    let response = client.send_buffered(request, Duration::from_secs(60)).await?;
    if !response.status.is_success() {
        bail!("auto request failed: {} {}", response.status, String::from_utf8_lossy(&response.body));
    }
    let body: serde_json::Value = serde_json::from_slice(&response.body).context("auto answer")?;
    body.get("model").and_then(|m| m.as_str()).map(str::to_string).context("the auto answer names no model")
}

/// Sends one request and checks it succeeds (loads the model on the way).
async fn warm(client: &HttpClient, url: &str, body: Bytes) -> Result<()> {
    let request = build_request(Method::POST, url, Some(body))?;
    let response = client.send_buffered(request, Duration::from_secs(120)).await?;
    if !response.status.is_success() {
        bail!("warm-up request to {url} failed: {} {}", response.status, String::from_utf8_lossy(&response.body));
    }
    Ok(())
}

fn ms(f: impl Fn(&RunFigures) -> f64, runs: &[RunFigures]) -> Spread {
    Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
}

fn paired(f: impl Fn(&RunFigures, &RunFigures) -> f64, direct: &[RunFigures], through: &[RunFigures]) -> Spread {
    Spread::of(&direct.iter().zip(through).map(|(d, t)| f(d, t)).collect::<Vec<_>>())
}

fn optional(values: Option<Vec<f64>>) -> Option<Spread> {
    values.filter(|v| !v.is_empty()).map(|v| Spread::of(&v))
}

fn row(
    time_scale: f64,
    concurrency: usize,
    stream: bool,
    requested: &str,
    model: &str,
    direct: Vec<RunFigures>,
    through: Vec<RunFigures>,
) -> Row {
    Row {
        time_scale,
        concurrency,
        stream,
        requested: requested.to_string(),
        model: model.to_string(),
        direct_p50_ms: ms(|r| r.latency.p50, &direct),
        direct_p99_ms: ms(|r| r.latency.p99, &direct),
        through_p50_ms: ms(|r| r.latency.p50, &through),
        through_p99_ms: ms(|r| r.latency.p99, &through),
        added_p50_ms: paired(|d, t| t.latency.p50 - d.latency.p50, &direct, &through),
        added_p99_ms: paired(|d, t| t.latency.p99 - d.latency.p99, &direct, &through),
        direct_rps: ms(|r| r.throughput, &direct),
        through_rps: ms(|r| r.throughput, &through),
        throughput_ratio: paired(
            |d, t| if d.throughput > 0.0 { t.throughput / d.throughput } else { 0.0 },
            &direct,
            &through,
        ),
        added_ttfc_p50_ms: paired(|d, t| t.first_chunk.p50 - d.first_chunk.p50, &direct, &through),
        added_ttfc_p99_ms: paired(|d, t| t.first_chunk.p99 - d.first_chunk.p99, &direct, &through),
        router_cpu_us: optional(through.iter().map(|r| r.router_cpu_us).collect()),
        sim_cpu_us: optional(direct.iter().map(|r| r.sim_cpu_us).collect()),
        errors: direct.iter().chain(&through).map(|r| r.errors).sum(),
        direct,
        through,
    }
}

/// Where to read CPU time: the router's process, and the simulator's threads in this process.
#[derive(Debug, Clone, Copy)]
struct CpuProbes {
    router: Option<u32>,
    sim_hosted: bool,
}

impl CpuProbes {
    fn read(&self) -> (Option<Duration>, Option<Duration>) {
        let router = self.router.and_then(|pid| cpu_time(pid, None).ok());
        let sim = self.sim_hosted.then(|| cpu_time(std::process::id(), Some(SIM_THREAD))).and_then(Result::ok);
        (router, sim)
    }
}

fn per_request(before: Option<Duration>, after: Option<Duration>, requests: usize) -> Option<f64> {
    let spent = after?.checked_sub(before?)?;
    (requests > 0).then(|| spent.as_secs_f64() * 1e6 / requests as f64)
}

async fn measure(client: &HttpClient, spec: LoadSpec, probes: CpuProbes) -> Result<RunFigures> {
    let (router_before, sim_before) = probes.read();
    let result = load::run(client, &spec).await?;
    let (router_after, sim_after) = probes.read();
    if result.errors > 0 {
        eprintln!(
            "  {} errors at {} ({}), e.g. {}",
            result.errors,
            spec.url,
            spec.concurrency,
            result.error_sample.as_deref().unwrap_or("?")
        );
    }
    let mut figures = RunFigures::of(&result);
    figures.router_cpu_us = per_request(router_before, router_after, result.succeeded);
    figures.sim_cpu_us = per_request(sim_before, sim_after, result.succeeded);
    Ok(figures)
}

/// Runs the matrix at one time scale.
async fn matrix(options: &OverheadOptions, time_scale: f64, rows: &mut Vec<Row>) -> Result<Option<Memory>> {
    let stack_options = StackOptions { time_scale, ..options.stack.clone() };
    let stack = Stack::start(&stack_options).await?;
    let outcome = matrix_on(&stack, options, time_scale, rows).await;
    let memory = stack.router_memory();
    if outcome.is_err() {
        eprintln!("router log tail:\n{}", stack.router_log_tail());
    }
    stack.stop().await?;
    outcome.map(|()| memory)
}

async fn matrix_on(stack: &Stack, options: &OverheadOptions, time_scale: f64, rows: &mut Vec<Row>) -> Result<()> {
    let max_c = options.concurrencies.iter().copied().max().unwrap_or(1);
    let client = load::client(max_c);
    let sim = stack.sim_url();
    let router = stack.router_url();
    let n = options.num_predict;
    let probes = CpuProbes { router: stack.router_pid(), sim_hosted: options.stack.sim_bin.is_none() };
    warm(&client, &format!("{router}/api/chat"), chat_body(&options.model, PROMPT, false, n)).await?;
    let auto_model = resolve_auto(&client, &router, n).await?;
    warm(&client, &format!("{router}/api/chat"), chat_body(&auto_model, PROMPT, false, n)).await?;
    eprintln!("time scale {time_scale}: `auto` routes the benchmark prompt to {auto_model}");
    let targets: Vec<(String, String)> =
        vec![(options.model.clone(), options.model.clone()), ("auto".to_string(), auto_model.clone())];
    // A first stretch of load on every path warms connections, allocators and caches.
    for stream in [false, true] {
        for (requested, model) in &targets {
            for (url, name) in [(&sim, model), (&router, requested)] {
                let spec = LoadSpec {
                    url: format!("{url}/api/chat"),
                    body: chat_body(name, PROMPT, stream, n),
                    concurrency: 16.min(max_c),
                    warmup: Duration::ZERO,
                    duration: options.warmup,
                };
                load::run(&client, &spec).await?;
            }
        }
    }
    for &concurrency in &options.concurrencies {
        for &stream in &options.streams {
            let mut direct: Vec<Vec<RunFigures>> = vec![Vec::new(); targets.len()];
            let mut through: Vec<Vec<RunFigures>> = vec![Vec::new(); targets.len()];
            for _ in 0..options.repeats.max(1) {
                for (i, (requested, model)) in targets.iter().enumerate() {
                    let spec = |url: &str, name: &str| LoadSpec {
                        url: format!("{url}/api/chat"),
                        body: chat_body(name, PROMPT, stream, n),
                        concurrency,
                        warmup: options.warmup,
                        duration: options.duration,
                    };
                    direct[i].push(measure(&client, spec(&sim, model), probes).await?);
                    through[i].push(measure(&client, spec(&router, requested), probes).await?);
                }
            }
            for (i, (requested, model)) in targets.iter().enumerate() {
                let r = row(
                    time_scale,
                    concurrency,
                    stream,
                    requested,
                    model,
                    std::mem::take(&mut direct[i]),
                    std::mem::take(&mut through[i]),
                );
                eprintln!(
                    "  c={concurrency:<3} stream={stream:<5} {requested:<12} added p50 {} ms, p99 {} ms, throughput x{}",
                    r.added_p50_ms.show(3),
                    r.added_p99_ms.show(3),
                    r.throughput_ratio.show(2)
                );
                rows.push(r);
            }
        }
    }
    let after = resolve_auto(&client, &router, n).await?;
    if after != auto_model {
        eprintln!("note: `auto` moved from {auto_model} to {after} during the run");
    }
    Ok(())
}

/// Holds `streams` streams open through a fresh router and samples its memory.
async fn rss_test(options: &OverheadOptions) -> Result<RssResult> {
    let streams = options.rss_streams;
    // Real-time answers long enough that every worker's stream is open at once; room for that many on the GPU.
    let stack_options = StackOptions {
        time_scale: 1.0,
        num_parallel: streams,
        gpu_vram: "200GiB".to_string(),
        ..options.stack.clone()
    };
    let stack = Stack::start(&stack_options).await?;
    let outcome = rss_on(&stack, options, streams).await;
    stack.stop().await?;
    outcome
}

async fn rss_on(stack: &Stack, options: &OverheadOptions, streams: usize) -> Result<RssResult> {
    let client = load::client(streams);
    let router = stack.router_url();
    let url = format!("{router}/api/chat");
    let num_predict = 200;
    warm(&client, &url, chat_body(&options.model, PROMPT, true, num_predict)).await?;
    let baseline = stack.router_memory().context("the router's memory cannot be read in process")?;
    let spec = LoadSpec {
        url,
        body: chat_body(&options.model, PROMPT, true, num_predict),
        concurrency: streams,
        warmup: Duration::from_millis(500),
        duration: options.rss_duration,
    };
    let run = load::run(&client, &spec);
    tokio::pin!(run);
    let mut sampled_peak = baseline.rss;
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    let result = loop {
        tokio::select! {
            result = &mut run => break result?,
            _ = ticker.tick() => {
                if let Some(m) = stack.router_memory() {
                    sampled_peak = sampled_peak.max(m.rss);
                }
            }
        }
    };
    let end = stack.router_memory().context("reading the router's memory")?;
    let figures = RunFigures::of(&result);
    Ok(RssResult {
        streams,
        baseline_rss: baseline.rss,
        sampled_peak_rss: sampled_peak,
        peak_rss: end.peak_rss,
        mean_open_streams: figures.throughput * figures.latency.mean / 1000.0,
        completed: result.completed,
        errors: result.errors,
    })
}

/// Runs everything.
pub async fn run(options: &OverheadOptions) -> Result<Report> {
    let machine = Machine::read();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut memory = None;
    for &scale in &options.time_scales {
        memory = matrix(options, scale, &mut rows).await?.or(memory);
    }
    let rss = if options.rss_streams > 0 && options.stack.router_bin.is_some() {
        Some(rss_test(options).await?)
    } else {
        None
    };
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(Report {
        machine,
        mode: format!(
            "router {}, simulator {}",
            if options.stack.router_bin.is_some() {
                "as its own process (release binary)"
            } else {
                "in the load tool's process"
            },
            if options.stack.sim_bin.is_some() {
                "as its own process (release binary)"
            } else {
                "hosted on its own runtime in the load tool's process (TCP_NODELAY)"
            }
        ),
        settings: Settings {
            time_scales: options.time_scales.clone(),
            concurrencies: options.concurrencies.clone(),
            warmup_secs: options.warmup.as_secs_f64(),
            duration_secs: options.duration.as_secs_f64(),
            repeats: options.repeats,
            model: options.model.clone(),
            num_predict: options.num_predict,
            num_parallel: options.stack.num_parallel,
            gpu_vram: options.stack.gpu_vram.clone(),
        },
        rows,
        router_memory_after_matrix: memory,
        rss,
        load_average_after: crate::machine::load_average(),
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `met`, or `MISSED` in capitals so that it stands out in a report.
pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The report as markdown tables, with the targets checked.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}", report.machine.line());
    let _ = writeln!(
        out,
        "Mode: {} (the load generator, the simulator and the router share these cores; figures include their \
         contention). Load average after: {}.",
        report.mode, report.load_average_after
    );
    let s = &report.settings;
    let _ = writeln!(
        out,
        "Closed loop, {} s measured after {} s warm-up, {} repeat(s); medians with (min..max) over repeats. \
         Answers of {} tokens; simulator num_parallel {}, GPU {}.",
        s.duration_secs, s.warmup_secs, s.repeats, s.num_predict, s.num_parallel, s.gpu_vram
    );
    for &scale in &s.time_scales {
        let _ = writeln!(out, "\n### Simulator time scale {scale}\n");
        let _ = writeln!(
            out,
            "| stream | c | model | direct p50 / p99 ms | through p50 / p99 ms | added p50 ms | added p99 ms | \
             direct req/s | through/direct | added TTFC p50 ms | added TTFC p99 ms | router CPU us/req | \
             sim CPU us/req | errors |"
        );
        let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in report.rows.iter().filter(|r| r.time_scale == scale) {
            let mut model =
                if r.requested == r.model { r.model.clone() } else { format!("{} -> {}", r.requested, r.model) };
            let mut served: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for run in &r.through {
                for (m, n) in &run.served_by {
                    *served.entry(m.as_str()).or_default() += n;
                }
            }
            let total: usize = served.values().sum();
            for (m, n) in served.iter().filter(|(m, _)| **m != r.model) {
                let _ = write!(model, " (and {m}: {:.1}%)", *n as f64 * 100.0 / total.max(1) as f64);
            }
            let ttfc = |s: &Spread| if r.stream { s.show(3) } else { "-".to_string() };
            let cpu = |s: &Option<Spread>| s.map_or_else(|| "-".to_string(), |s| s.show(0));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} / {:.3} | {:.3} / {:.3} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                if r.stream { "yes" } else { "no" },
                r.concurrency,
                model,
                r.direct_p50_ms.median,
                r.direct_p99_ms.median,
                r.through_p50_ms.median,
                r.through_p99_ms.median,
                r.added_p50_ms.show(3),
                r.added_p99_ms.show(3),
                r.direct_rps.median,
                r.throughput_ratio.show(2),
                ttfc(&r.added_ttfc_p50_ms),
                ttfc(&r.added_ttfc_p99_ms),
                cpu(&r.router_cpu_us),
                cpu(&r.sim_cpu_us),
                r.errors
            );
        }
    }
    let _ = writeln!(out, "\n### Targets\n");
    let _ = writeln!(out, "| target | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    let zero = report.rows.iter().filter(|r| r.time_scale == 0.0);
    for r in zero.clone().filter(|r| r.concurrency == 64 && !r.stream) {
        let _ = writeln!(
            out,
            "| c=64 {}: added p50 <= 0.2 ms | {} ms | {} |",
            r.requested,
            r.added_p50_ms.show(3),
            verdict(r.added_p50_ms.median <= 0.2)
        );
        let _ = writeln!(
            out,
            "| c=64 {}: added p99 <= 1 ms | {} ms | {} |",
            r.requested,
            r.added_p99_ms.show(3),
            verdict(r.added_p99_ms.median <= 1.0)
        );
        let _ = writeln!(
            out,
            "| c=64 {}: throughput >= 0.8 x direct | {} | {} |",
            r.requested,
            r.throughput_ratio.show(2),
            verdict(r.throughput_ratio.median >= 0.8)
        );
    }
    for r in zero.filter(|r| r.stream && (r.concurrency == 1 || r.concurrency == 64)) {
        let _ = writeln!(
            out,
            "| c={} {} stream: added time to first chunk p50 <= 1 ms | {} ms (p99 {} ms) | {} |",
            r.concurrency,
            r.requested,
            r.added_ttfc_p50_ms.show(3),
            r.added_ttfc_p99_ms.show(3),
            verdict(r.added_ttfc_p50_ms.median <= 1.0)
        );
    }
    if let Some(rss) = &report.rss {
        let _ = writeln!(
            out,
            "| peak RSS <= 50 MB with {} concurrent streams | VmHWM {:.1} MiB (sampled peak {:.1} MiB, {:.1} MiB before; \
             {:.0} streams open on average, {} completed, {} errors) | {} |",
            rss.streams,
            mib(rss.peak_rss),
            mib(rss.sampled_peak_rss),
            mib(rss.baseline_rss),
            rss.mean_open_streams,
            rss.completed,
            rss.errors,
            verdict(rss.peak_rss as f64 <= 50.0 * 1_000_000.0)
        );
    }
    if let Some(m) = &report.router_memory_after_matrix {
        let _ = writeln!(
            out,
            "\nRouter memory after the whole matrix: VmHWM {:.1} MiB, VmRSS {:.1} MiB.",
            mib(m.peak_rss),
            mib(m.rss)
        );
    }
    out
}
