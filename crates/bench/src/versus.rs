//! Side by side with a plain reverse proxy: the same closed-loop load straight to the simulator, through nginx and
//! through the router (an explicit model and `auto`), alternating in each repeat, on Ollama's and OpenAI's
//! surfaces, buffered and streamed. CPU per request is read from `/proc` for each process: the router's, nginx's
//! master and workers', and the hosted simulator's threads.
//!
//! nginx forwards each surface to the simulator's own endpoint for it (`/api/chat`, `/v1/chat/completions`); the
//! router answers OpenAI's surface by translating to Ollama's native API, so its figures include the translation.

use crate::load::{self, LoadSpec, RunFigures};
use crate::machine::Machine;
use crate::nginx::Nginx;
use crate::overhead::verdict;
use crate::process::cpu_time;
use crate::sim_host::SIM_THREAD;
use crate::stack::{Stack, StackOptions};
use crate::stats::Spread;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::http::{HttpClient, build_request};

/// The prompt of every request.
const PROMPT: &str = crate::overhead::PROMPT;

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// `POST /api/chat`.
    Ollama,
    /// `POST /v1/chat/completions`.
    OpenAi,
}

impl Surface {
    pub fn parse(name: &str) -> Result<Surface> {
        match name.trim() {
            "ollama" => Ok(Surface::Ollama),
            "openai" => Ok(Surface::OpenAi),
            other => bail!("unknown surface {other:?}: expected ollama or openai"),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Surface::Ollama => "/api/chat",
            Surface::OpenAi => "/v1/chat/completions",
        }
    }

    /// One user turn asking for `num_predict` tokens. OpenAI's API cannot set a context length, so neither
    /// surface does: the simulator's default (4096 on a 16 GiB GPU) then matches the router's `vram.num_ctx`,
    /// and the direct, nginx and router paths all use the one loaded instance.
    fn body(self, model: &str, stream: bool, num_predict: u64) -> Bytes {
        let messages = json!([{"role": "user", "content": PROMPT}]);
        let body = match self {
            Surface::Ollama => json!({
                "model": model, "messages": messages, "stream": stream,
                "options": {"num_predict": num_predict},
            }),
            Surface::OpenAi => json!({
                "model": model, "messages": messages, "stream": stream, "max_tokens": num_predict,
            }),
        };
        Bytes::from(body.to_string())
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct VersusOptions {
    pub stack: StackOptions,
    pub nginx_bin: PathBuf,
    /// nginx's worker processes (the router's runtime has one worker thread per core).
    pub nginx_workers: usize,
    pub surfaces: Vec<Surface>,
    pub concurrencies: Vec<usize>,
    pub streams: Vec<bool>,
    pub warmup: Duration,
    pub duration: Duration,
    pub repeats: usize,
    pub model: String,
    pub num_predict: u64,
}

/// One path's figures in one cell, over the repeats.
#[derive(Debug, Clone, Serialize)]
pub struct PathFigures {
    /// `direct`, `nginx`, `switchyard` or `switchyard auto`.
    pub path: String,
    pub runs: Vec<RunFigures>,
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    pub rps: Spread,
    /// Added to the direct path of the same repeat (zero for direct itself).
    pub added_p50_ms: Spread,
    pub added_p99_ms: Spread,
    /// CPU of the proxy (nginx or the router) per request, microseconds; for direct, the simulator's.
    pub cpu_us: Option<Spread>,
    pub errors: usize,
}

/// One cell: a surface, an answer mode and a concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub surface: Surface,
    pub stream: bool,
    pub concurrency: usize,
    pub paths: Vec<PathFigures>,
    /// Router CPU over nginx CPU per request, paired per repeat (explicit model).
    pub router_over_nginx: Option<Spread>,
    /// The same for `auto`.
    pub auto_over_nginx: Option<Spread>,
    /// `auto` CPU over the explicit model's, paired per repeat.
    pub auto_over_explicit: Option<Spread>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct VersusReport {
    pub machine: Machine,
    pub nginx_version: String,
    pub nginx_workers: usize,
    pub model: String,
    pub auto_model: String,
    pub num_predict: u64,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub repeats: usize,
    pub cells: Vec<Cell>,
    pub load_average_after: String,
}

/// Where a path's CPU time is read.
#[derive(Debug, Clone, Copy)]
enum Probe<'a> {
    Sim,
    Nginx(&'a Nginx),
    Router(Option<u32>),
}

impl Probe<'_> {
    fn read(self) -> Option<Duration> {
        match self {
            Probe::Sim => cpu_time(std::process::id(), Some(SIM_THREAD)).ok(),
            Probe::Nginx(n) => n.cpu_time().ok(),
            Probe::Router(pid) => pid.and_then(|p| cpu_time(p, None).ok()),
        }
    }
}

/// One path of the matrix.
struct Path<'a> {
    name: &'static str,
    base: String,
    model: String,
    probe: Probe<'a>,
}

async fn measure(client: &HttpClient, spec: LoadSpec, probe: Probe<'_>) -> Result<RunFigures> {
    let before = probe.read();
    let result = load::run(client, &spec).await?;
    let after = probe.read();
    if result.errors > 0 {
        eprintln!(
            "  {} errors at {} (c={}), e.g. {}",
            result.errors,
            spec.url,
            spec.concurrency,
            result.error_sample.as_deref().unwrap_or("?")
        );
    }
    let mut figures = RunFigures::of(&result);
    // `router_cpu_us` holds the CPU of whichever process serves this path (the simulator's threads, nginx or the
    // router), so that the JSON keeps the load tool's run shape.
    let spent = after.zip(before).and_then(|(a, b)| a.checked_sub(b));
    figures.router_cpu_us =
        spent.filter(|_| result.succeeded > 0).map(|s| s.as_secs_f64() * 1e6 / result.succeeded as f64);
    Ok(figures)
}

async fn check(client: &HttpClient, url: &str, body: Bytes) -> Result<serde_json::Value> {
    let request = build_request(Method::POST, url, Some(body))?;
    let response = client.send_buffered(request, Duration::from_secs(120)).await?;
    if !response.status.is_success() {
        bail!("{url} answered {} {}", response.status, String::from_utf8_lossy(&response.body));
    }
    serde_json::from_slice(&response.body).with_context(|| format!("the answer of {url}"))
}

fn spread(values: impl Iterator<Item = f64>) -> Spread {
    Spread::of(&values.collect::<Vec<_>>())
}

fn ratio(over: &[RunFigures], under: &[RunFigures]) -> Option<Spread> {
    let values: Option<Vec<f64>> = over
        .iter()
        .zip(under)
        .map(|(o, u)| Some(o.router_cpu_us? / u.router_cpu_us?).filter(|r| r.is_finite()))
        .collect();
    values.filter(|v| !v.is_empty()).map(|v| Spread::of(&v))
}

fn figures(name: &str, runs: Vec<RunFigures>, direct: &[RunFigures]) -> PathFigures {
    let cpu: Option<Vec<f64>> = runs.iter().map(|r| r.router_cpu_us).collect();
    PathFigures {
        path: name.to_string(),
        p50_ms: spread(runs.iter().map(|r| r.latency.p50)),
        p99_ms: spread(runs.iter().map(|r| r.latency.p99)),
        rps: spread(runs.iter().map(|r| r.throughput)),
        added_p50_ms: spread(runs.iter().zip(direct).map(|(r, d)| r.latency.p50 - d.latency.p50)),
        added_p99_ms: spread(runs.iter().zip(direct).map(|(r, d)| r.latency.p99 - d.latency.p99)),
        cpu_us: cpu.filter(|v| !v.is_empty()).map(|v| Spread::of(&v)),
        errors: runs.iter().map(|r| r.errors).sum(),
        runs,
    }
}

/// Runs the whole comparison.
pub async fn run(options: &VersusOptions) -> Result<VersusReport> {
    let stack = Stack::start(&options.stack).await?;
    let nginx = match Nginx::start(&options.nginx_bin, &stack.sim_url(), options.nginx_workers).await {
        Ok(n) => n,
        Err(e) => {
            stack.stop().await?;
            return Err(e);
        }
    };
    let outcome = run_on(&stack, &nginx, options).await;
    if outcome.is_err() {
        eprintln!("router log tail:\n{}", stack.router_log_tail());
    }
    nginx.stop().await?;
    stack.stop().await?;
    outcome
}

async fn run_on(stack: &Stack, nginx: &Nginx, options: &VersusOptions) -> Result<VersusReport> {
    let max_c = options.concurrencies.iter().copied().max().unwrap_or(1);
    let client = load::client(max_c);
    let n = options.num_predict;
    let router = stack.router_url();
    let sim = stack.sim_url();
    check(&client, &format!("{router}/api/chat"), Surface::Ollama.body(&options.model, false, n)).await?;
    let auto = check(&client, &format!("{router}/api/chat"), Surface::Ollama.body("auto", false, n)).await?;
    let auto_model = auto.get("model").and_then(|m| m.as_str()).context("the auto answer names no model")?;
    let auto_model = auto_model.to_string();
    eprintln!("`auto` routes the benchmark prompt to {auto_model}");
    let router_pid = stack.router_pid();
    let paths = [
        Path { name: "direct", base: sim.clone(), model: options.model.clone(), probe: Probe::Sim },
        Path { name: "nginx", base: nginx.url().to_string(), model: options.model.clone(), probe: Probe::Nginx(nginx) },
        Path {
            name: "switchyard",
            base: router.clone(),
            model: options.model.clone(),
            probe: Probe::Router(router_pid),
        },
        Path {
            name: "switchyard auto",
            base: router.clone(),
            model: "auto".to_string(),
            probe: Probe::Router(router_pid),
        },
    ];
    // Every path answers before anything is measured, and a first stretch of load warms pools and allocators.
    for surface in &options.surfaces {
        for path in &paths {
            check(&client, &format!("{}{}", path.base, surface.path()), surface.body(&path.model, false, n)).await?;
            for stream in [false, true] {
                let spec = LoadSpec {
                    url: format!("{}{}", path.base, surface.path()),
                    body: surface.body(&path.model, stream, n),
                    concurrency: 16.min(max_c),
                    warmup: Duration::ZERO,
                    duration: options.warmup,
                };
                load::run(&client, &spec).await?;
            }
        }
    }
    let mut cells = Vec::new();
    for &surface in &options.surfaces {
        for &stream in &options.streams {
            for &concurrency in &options.concurrencies {
                let mut runs: Vec<Vec<RunFigures>> = vec![Vec::new(); paths.len()];
                for _ in 0..options.repeats.max(1) {
                    for (i, path) in paths.iter().enumerate() {
                        let spec = LoadSpec {
                            url: format!("{}{}", path.base, surface.path()),
                            body: surface.body(&path.model, stream, n),
                            concurrency,
                            warmup: options.warmup,
                            duration: options.duration,
                        };
                        runs[i].push(measure(&client, spec, path.probe).await?);
                    }
                }
                let direct = runs[0].clone();
                let router_over_nginx = ratio(&runs[2], &runs[1]);
                let auto_over_nginx = ratio(&runs[3], &runs[1]);
                let auto_over_explicit = ratio(&runs[3], &runs[2]);
                let figures: Vec<PathFigures> =
                    paths.iter().zip(runs).map(|(p, r)| figures(p.name, r, &direct)).collect();
                let cpu = |i: usize| figures[i].cpu_us.map_or_else(|| "-".to_string(), |s| s.show(0));
                eprintln!(
                    "  {} {} c={concurrency}: CPU us/req nginx {}, switchyard {}, auto {}; router/nginx {}",
                    surface.path(),
                    if stream { "stream" } else { "buffered" },
                    cpu(1),
                    cpu(2),
                    cpu(3),
                    router_over_nginx.map_or_else(|| "-".to_string(), |s| s.show(2)),
                );
                cells.push(Cell {
                    surface,
                    stream,
                    concurrency,
                    paths: figures,
                    router_over_nginx,
                    auto_over_nginx,
                    auto_over_explicit,
                });
            }
        }
    }
    Ok(VersusReport {
        machine: Machine::read(),
        nginx_version: nginx_version(&options.nginx_bin),
        nginx_workers: options.nginx_workers,
        model: options.model.clone(),
        auto_model,
        num_predict: n,
        warmup_secs: options.warmup.as_secs_f64(),
        duration_secs: options.duration.as_secs_f64(),
        repeats: options.repeats,
        cells,
        load_average_after: crate::machine::load_average(),
    })
}

fn nginx_version(bin: &std::path::Path) -> String {
    std::process::Command::new(bin)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("nginx version: ").to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The ceilings of the comparison at c = 16: router CPU over nginx's for (surface, stream).
pub fn ceiling(surface: Surface, stream: bool) -> f64 {
    match (surface, stream) {
        (_, false) => 2.0,
        (Surface::Ollama, true) => 2.5,
        (Surface::OpenAi, true) => 3.0,
    }
}

/// `auto`'s CPU over the explicit model's, at most.
pub const AUTO_CEILING: f64 = 1.2;

/// The report as markdown.
pub fn markdown(report: &VersusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}", report.machine.line());
    let _ = writeln!(
        out,
        "nginx {} with {} worker process(es); model {} (`auto` -> {}), answers of {} tokens; closed loop, {} s \
         measured after {} s warm-up, {} repeat(s) alternating direct, nginx, switchyard, switchyard auto; medians \
         with (min..max). Load average after: {}.",
        report.nginx_version,
        report.nginx_workers,
        report.model,
        report.auto_model,
        report.num_predict,
        report.duration_secs,
        report.warmup_secs,
        report.repeats,
        report.load_average_after
    );
    let _ = writeln!(
        out,
        "\n| surface | stream | c | sim CPU us/req (direct) | nginx CPU us/req | switchyard CPU us/req | auto CPU \
         us/req | switchyard / nginx | auto / explicit | added p50 ms nginx / switchyard / auto | added p99 ms \
         nginx / switchyard / auto | errors |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|");
    let show = |s: &Option<Spread>, d: usize| s.map_or_else(|| "-".to_string(), |s| s.show(d));
    for c in &report.cells {
        let p = &c.paths;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} | {} |",
            c.surface.path(),
            if c.stream { "yes" } else { "no" },
            c.concurrency,
            show(&p[0].cpu_us, 0),
            show(&p[1].cpu_us, 0),
            show(&p[2].cpu_us, 0),
            show(&p[3].cpu_us, 0),
            show(&c.router_over_nginx, 2),
            show(&c.auto_over_explicit, 2),
            p[1].added_p50_ms.median,
            p[2].added_p50_ms.median,
            p[3].added_p50_ms.median,
            p[1].added_p99_ms.median,
            p[2].added_p99_ms.median,
            p[3].added_p99_ms.median,
            p.iter().map(|f| f.errors).sum::<usize>()
        );
    }
    let _ = writeln!(out, "\n| target (c = 16) | measured | verdict |\n|---|---|---|");
    for c in report.cells.iter().filter(|c| c.concurrency == 16) {
        let what = format!("{} {}", c.surface.path(), if c.stream { "stream" } else { "buffered" });
        if let Some(r) = c.router_over_nginx {
            let limit = ceiling(c.surface, c.stream);
            let _ = writeln!(
                out,
                "| {what}: router CPU <= {limit}x nginx | {}x | {} |",
                r.show(2),
                verdict(r.median <= limit)
            );
        }
        if let Some(r) = c.auto_over_explicit {
            let _ = writeln!(
                out,
                "| {what}: `auto` CPU <= {AUTO_CEILING}x explicit | {}x | {} |",
                r.show(2),
                verdict(r.median <= AUTO_CEILING)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_ask_for_the_tokens_in_each_surface_shape() {
        let ollama: serde_json::Value = serde_json::from_slice(&Surface::Ollama.body("m", true, 7)).unwrap();
        assert_eq!(ollama["options"]["num_predict"], 7);
        assert_eq!(ollama["stream"], true);
        let openai: serde_json::Value = serde_json::from_slice(&Surface::OpenAi.body("m", false, 7)).unwrap();
        assert_eq!(openai["max_tokens"], 7);
        assert_eq!(openai["stream"], false);
        assert!(Surface::parse("grpc").is_err());
    }

    #[test]
    fn ratios_pair_repeats_and_skip_missing_figures() {
        let run = |cpu: Option<f64>| {
            let mut f = RunFigures::of(&load::LoadResult::default());
            f.router_cpu_us = cpu;
            f
        };
        let r = ratio(&[run(Some(40.0)), run(Some(60.0))], &[run(Some(20.0)), run(Some(20.0))]).unwrap();
        assert_eq!((r.min, r.max), (2.0, 3.0));
        assert!(ratio(&[run(None)], &[run(Some(20.0))]).is_none());
    }
}
