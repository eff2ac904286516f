//! `switchyard-cascade-bench`: what task cascades buy on the profiler's verifiable items.
//!
//! 1. The simulator (one GPU of `--gpu-vram`, time scale 0: instant, while the reported durations stay those of
//!    the simulated GPU) and the router in this process, with one task per cascade configuration.
//! 2. The router's real profiling job profiles every chat model on the training half of each category's verifiable
//!    items (a suite directory holding only those), and the routing profiles are reloaded from it.
//! 3. The held-out half is asked of each model alone (explicit model) and of each cascade (`auto:TASK`), one request
//!    at a time, after one warm-up request per category on a training item (so no figure includes a cold load; the
//!    simulator's load counter over each measured block says so). Correct means the item's own checker accepts the
//!    answer; GPU time is Ollama's `total_duration` of the answer alone, or for a cascade the delta of the router's
//!    `switchyard_cascade_model_seconds_total` (every step's answer and every judge call) over the request.
//!
//! Prints markdown; `--json PATH` writes every figure and every request's outcome.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::server::Running;
use switchyard_bench::cascade::{
    self, CHEAP, CategorySplit, Configuration, Figures, GOAL_ACCURACY, GOAL_GPU, Outcome, STRONG, Split,
};
use switchyard_bench::load;
use switchyard_bench::machine::Machine;
use switchyard_bench::setup;
use switchyard_bench::sim_host::HostedSim;
use switchyard_core::http::{HttpClient, build_request};
use switchyard_core::size::parse_bytes;
use switchyard_profiler::suite::Item;
use switchyard_sim::SimOptions;

/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the profiling job.
const PROFILE_TIMEOUT: Duration = Duration::from_secs(300);
/// Threads of the hosted simulator's runtime.
const SIM_THREADS: usize = 2;

/// Measures task cascades against each model alone on the profiler's held-out verifiable items.
#[derive(Debug, Parser)]
#[command(name = "switchyard-cascade-bench", version)]
struct Cli {
    /// Memory of the one simulated GPU (enough for `llama3.3:70b` entirely on the GPU, like an 80 GB card).
    #[arg(long, default_value = "80GiB")]
    gpu_vram: String,
    /// Most models loaded at once, in the simulator (OLLAMA_MAX_LOADED_MODELS) and the router: room for a cascade's
    /// steps and its judge together, so that no measured request waits for a swap.
    #[arg(long, default_value_t = 6)]
    max_loaded_models: u32,
    /// Evaluate at most this many held-out items per category (0 = all of them).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Write the figures and every request's outcome as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One model's profile in one category, from the training half.
#[derive(Debug, Clone, Serialize)]
struct ProfileRow {
    model: String,
    category: String,
    n: u32,
    mean: f64,
}

/// What the run used.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    gpu_vram: String,
    max_loaded_models: u32,
    time_scale: f64,
    judge_min_score: f64,
    limit_per_category: usize,
}

/// Everything measured.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    settings: Settings,
    split: Vec<CategorySplit>,
    /// Items per category in the training suites, as the profiler read them.
    training_suites: BTreeMap<String, usize>,
    profiles: Vec<ProfileRow>,
    figures: Vec<Figures>,
    outcomes: BTreeMap<String, Vec<Outcome>>,
    runtime_seconds: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let started = Instant::now();
    let machine = Machine::read();
    let suites = cascade::builtin_suites()?;
    let split = cascade::split(&suites, cli.limit);
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let suite_dir = dir.path().join("training-suites");
    std::fs::create_dir(&suite_dir).with_context(|| format!("creating {}", suite_dir.display()))?;
    let training_suites = cascade::write_training_suites(&suite_dir, &split.training)?;

    let gpu = parse_bytes(&cli.gpu_vram).map_err(anyhow::Error::msg).context("--gpu-vram")?;
    let sim_options = SimOptions {
        gpus: vec![gpu],
        time_scale: 0.0,
        max_loaded_models: Some(cli.max_loaded_models as usize),
        ..SimOptions::default()
    };
    let sim = HostedSim::start(&sim_options, SIM_THREADS)?;
    let mut config = setup::router_config(&sim.url(), dir.path());
    config.profiler.suite_dir = suite_dir.display().to_string();
    config.vram.max_loaded_models = cli.max_loaded_models;
    let configurations = cascade::configurations();
    for c in &configurations {
        config.tasks.insert(c.task.to_string(), c.rule.clone());
    }
    config.validate().context("the benchmark's router configuration")?;
    let router = match switchyard::server::spawn(Arc::new(config)).await {
        Ok(r) => r,
        Err(e) => {
            sim.stop().await;
            return Err(e).context("starting the router");
        }
    };
    let bench = Bench { client: load::client(1), router: router.url(), sim: sim.url() };
    let measured = measure(&bench, &router, &split, &configurations).await;
    router.stop().await;
    sim.stop().await;
    let (profiles, figures, outcomes) = measured?;

    let report = Report {
        machine,
        settings: Settings {
            gpu_vram: cli.gpu_vram.clone(),
            max_loaded_models: cli.max_loaded_models,
            time_scale: 0.0,
            judge_min_score: 0.7,
            limit_per_category: cli.limit,
        },
        split: split.categories.clone(),
        training_suites,
        profiles,
        figures,
        outcomes,
        runtime_seconds: started.elapsed().as_secs_f64(),
    };
    print!("{}", markdown(&report));
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Profiles, then measures each model alone and each cascade.
async fn measure(
    bench: &Bench,
    router: &Running,
    split: &Split,
    configurations: &[Configuration],
) -> Result<(Vec<ProfileRow>, Vec<Figures>, BTreeMap<String, Vec<Outcome>>)> {
    let (models, profiles) = bench.profile().await?;
    router.reload_profiles().await.context("reloading the profiles")?;
    if !models.iter().any(|m| m == STRONG) || !models.iter().any(|m| m == CHEAP) {
        bail!("the profiling job did not profile {CHEAP} and {STRONG}: {models:?}");
    }
    let mut outcomes: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut raw: Vec<Figures> = Vec::new();
    for model in &models {
        let loads = bench.warm(model, &split.warmup).await?;
        let got = bench.alone(model, &split.held_out).await?;
        let loads = bench.sim_loads().await?.saturating_sub(loads);
        raw.push(Figures::of(model, "model", &got, loads));
        outcomes.insert(model.clone(), got);
    }
    for c in configurations {
        let name = format!("auto:{}", c.task);
        let loads = bench.warm(&name, &split.warmup).await?;
        let got = bench.cascade(&name, &split.held_out, c.rule.judge_model.is_some()).await?;
        let loads = bench.sim_loads().await?.saturating_sub(loads);
        let mut figures = Figures::of(c.label, "cascade", &got, loads);
        // Every model was measured alone above: the first step's answers are known right or wrong.
        figures.step_one = Some(cascade::StepOne::of(&got, &outcomes));
        raw.push(figures);
        outcomes.insert(name, got);
    }
    if let Some(strong) = outcomes.get(STRONG) {
        for model in models.iter().filter(|m| *m != STRONG) {
            if let Some(cheap) = outcomes.get(model) {
                raw.push(Figures::of(model, "derived", &cascade::perfect_judge(cheap, strong), 0));
            }
        }
    }
    let Some(strong) = raw.iter().find(|f| f.kind == "model" && f.name == STRONG).cloned() else {
        bail!("no figures for {STRONG}");
    };
    let mut figures: Vec<Figures> = raw.into_iter().map(|f| f.against(&strong)).collect();
    // Models alone from the cheapest, then the cascades in their order, then the derived bounds from the cheapest.
    figures.sort_by(|a, b| {
        let rank = |f: &Figures| match f.kind {
            "model" => 0,
            "cascade" => 1,
            _ => 2,
        };
        rank(a).cmp(&rank(b)).then(if a.kind != "cascade" {
            a.gpu_seconds.total_cmp(&b.gpu_seconds)
        } else {
            std::cmp::Ordering::Equal
        })
    });
    Ok((profiles, figures, outcomes))
}

/// The HTTP side: the router and the simulator's own routes.
struct Bench {
    client: HttpClient,
    router: String,
    sim: String,
}

/// A buffered response: status, headers, JSON body (`Null` when not JSON).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn content(&self) -> &str {
        self.body["message"]["content"].as_str().unwrap_or_default()
    }
}

impl Bench {
    async fn send(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Answer> {
        let bytes = body.map(|b| Bytes::from(b.to_string()));
        let call = async {
            let response = self.client.send(build_request(method, url, bytes)?).await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.into_body().collect().await.context("reading the answer")?.to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            anyhow::Ok(Answer { status, headers, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call).await.with_context(|| format!("{url} did not answer"))?
    }

    async fn get_text(&self, url: &str) -> Result<String> {
        let response = self.client.send(build_request(Method::GET, url, None)?).await?;
        let bytes = response.into_body().collect().await.context("reading the answer")?.to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn chat(&self, body: &Value) -> Result<Answer> {
        self.send(Method::POST, &format!("{}/api/chat", self.router), Some(body)).await
    }

    /// Model loads the simulator has completed so far.
    async fn sim_loads(&self) -> Result<u64> {
        let gpu = self.send(Method::GET, &format!("{}/sim/gpu", self.sim), None).await?;
        gpu.body["counters"]["loads"].as_u64().context("the simulator's /sim/gpu has no counters.loads")
    }

    /// Cascade model seconds so far: (answers, judge calls).
    async fn cascade_seconds(&self) -> Result<(f64, f64)> {
        let text = self.get_text(&format!("{}/metrics", self.router)).await?;
        let name = "switchyard_cascade_model_seconds_total";
        Ok((
            cascade::metric_sum(&text, name, Some("work=\"answer\"")),
            cascade::metric_sum(&text, name, Some("work=\"judge\"")),
        ))
    }

    /// Runs the router's profiling job over the training suites for every chat model; the models profiled and
    /// their profiles.
    async fn profile(&self) -> Result<(Vec<String>, Vec<ProfileRow>)> {
        let body = json!({"items_per_category": 0, "force": true});
        let started = self.send(Method::POST, &format!("{}/admin/profile", self.router), Some(&body)).await?;
        let Some(id) = started.body["id"].as_str().filter(|_| started.status == 202) else {
            bail!("the profiling job did not start: {} {}", started.status, started.body);
        };
        let deadline = Instant::now() + PROFILE_TIMEOUT;
        let status = loop {
            let s = self.send(Method::GET, &format!("{}/admin/profile/{id}", self.router), None).await?;
            if s.body["state"] != "running" {
                break s.body;
            }
            if Instant::now() > deadline {
                bail!("the profiling job is still running after {PROFILE_TIMEOUT:?}: {}", s.body);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if status["state"] != "complete" {
            bail!("the profiling job ended {}: {}", status["state"], status["error"]);
        }
        let mut models = Vec::new();
        let mut rows = Vec::new();
        for m in status["models"].as_array().into_iter().flatten() {
            let name = m["model"].as_str().unwrap_or_default().to_string();
            if m["outcome"] != "profiled" {
                bail!("profiling {name} ended {}: {}", m["outcome"], m["detail"]);
            }
            for s in m["scores"].as_array().into_iter().flatten() {
                rows.push(ProfileRow {
                    model: name.clone(),
                    category: s["category"].as_str().unwrap_or_default().to_string(),
                    n: s["n"].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                    mean: s["mean"].as_f64().unwrap_or(0.0),
                });
            }
            models.push(name);
        }
        Ok((models, rows))
    }

    /// One unmeasured request per warm-up item to `model` (a model or `auto:TASK`), so that the models it uses
    /// are loaded; the simulator's load count after it.
    async fn warm(&self, model: &str, items: &[Item]) -> Result<u64> {
        for item in items {
            let a = self.chat(&cascade::item_body(model, item)).await?;
            if a.status != 200 {
                bail!("warming {model} up with {} gave {}: {}", item.id, a.status, a.body);
            }
        }
        self.sim_loads().await
    }

    /// Each item to `model` alone.
    async fn alone(&self, model: &str, items: &[Item]) -> Result<Vec<Outcome>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let a = self.chat(&cascade::item_body(model, item)).await?;
            let mut o = Outcome { item: item.id.clone(), category: item.category.to_string(), ..Outcome::default() };
            if a.status == 200 {
                let seconds = a.body["total_duration"].as_f64().unwrap_or(0.0) / 1e9;
                o.correct = cascade::is_correct(item, a.content());
                o.gpu_seconds = seconds;
                o.answer_seconds = seconds;
                o.model = a.header("x-switchyard-model").unwrap_or(model).to_string();
            } else {
                o.error = Some(format!("{} {}", a.status, a.body));
            }
            out.push(o);
        }
        Ok(out)
    }

    /// Each item to the cascade `auto:TASK`, with the model time the request spent read from `/metrics` before
    /// and after it, and the chain the router planned from `/admin/decisions`.
    async fn cascade(&self, name: &str, items: &[Item], judged: bool) -> Result<Vec<Outcome>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let (answer_before, judge_before) = self.cascade_seconds().await?;
            let a = self.chat(&cascade::item_body(name, item)).await?;
            let (answer_after, judge_after) = self.cascade_seconds().await?;
            let mut o = Outcome {
                item: item.id.clone(),
                category: item.category.to_string(),
                routed_category: a.header("x-switchyard-category").map(str::to_string),
                answer_seconds: answer_after - answer_before,
                judge_seconds: judge_after - judge_before,
                ..Outcome::default()
            };
            o.gpu_seconds = o.answer_seconds + o.judge_seconds;
            if a.status == 200 {
                o.correct = cascade::is_correct(item, a.content());
                o.model = a.header("x-switchyard-model").unwrap_or_default().to_string();
                if let Some((step, steps)) = a.header("x-switchyard-cascade-step").and_then(|s| s.split_once('/')) {
                    o.step = step.trim().parse().ok();
                    o.steps = steps.trim().parse().ok();
                }
                o.escalations = a
                    .header("x-switchyard-cascade-escalations")
                    .map(|e| e.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default();
                o.unvalidated = a.header("x-switchyard-cascade-unvalidated").map(str::to_string);
                if judged {
                    o.judge_calls = cascade::judge_calls(
                        &o.escalations,
                        o.unvalidated.as_deref(),
                        o.step.unwrap_or(0),
                        o.steps.unwrap_or(0),
                    );
                }
            } else {
                o.error = Some(format!("{} {}", a.status, a.body));
            }
            let decisions = self.send(Method::GET, &format!("{}/admin/decisions?limit=1", self.router), None).await?;
            let newest = &decisions.body["decisions"][0];
            if newest["task"].as_str() == name.strip_prefix("auto:") {
                o.chain = newest["cascade"]
                    .as_array()
                    .map(|c| c.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
            }
            out.push(o);
        }
        Ok(out)
    }
}

/// The report, markdown.
fn markdown(r: &Report) -> String {
    let s = &r.settings;
    let held_out: usize = r.split.iter().map(|c| c.held_out).sum();
    let training: usize = r.split.iter().map(|c| c.training).sum();
    let mut out = format!(
        "## Task cascades on the profiler's held-out verifiable items\n\n\
         Machine: {}. Simulator: one GPU of {} (so `{STRONG}` runs entirely on the GPU), time scale {} (instant; the \
         GPU-seconds are the simulated `total_duration`s, the same on any machine), at most {} models loaded. \
         Judge threshold: the default {}.\n\n\
         ### Split\n\n| category | items | skipped (judge / system prompt) | training (profiled) | held out (evaluated) |\n\
         |---|---:|---:|---:|---:|\n",
        r.machine.line(),
        s.gpu_vram,
        s.time_scale,
        s.max_loaded_models,
        s.judge_min_score,
    );
    for c in &r.split {
        out.push_str(&format!("| {} | {} | {} | {} | {} |\n", c.category, c.items, c.skipped, c.training, c.held_out));
    }
    out.push_str(&format!("| **all** | | | **{training}** | **{held_out}** |\n"));

    let categories: Vec<String> = r.split.iter().map(|c| c.category.clone()).collect();
    out.push_str("\n### Profiles from the training half (share correct)\n\n| model |");
    for c in &categories {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(categories.len()));
    out.push('\n');
    let mut models: Vec<&str> = r.profiles.iter().map(|p| p.model.as_str()).collect();
    models.dedup();
    for m in models {
        out.push_str(&format!("| `{m}` |"));
        for c in &categories {
            let cell = r
                .profiles
                .iter()
                .find(|p| p.model == m && &p.category == c)
                .map_or_else(String::new, |p| format!(" {:.2} |", p.mean));
            out.push_str(&cell);
        }
        out.push('\n');
    }

    out.push_str(&format!(
        "\n### Held-out items ({held_out}): each model alone and each cascade\n\n{}",
        cascade::summary_table(&r.figures)
    ));
    out.push_str(&format!(
        "\n### What became of the first step's answers (right or wrong as the first model's own answer alone)\n\n{}",
        cascade::step_one_table(&r.figures)
    ));
    out.push_str(&format!(
        "\n### The most a judge could do: a perfect judge that costs nothing (derived from the answers above, not \
         run)\n\n{}",
        cascade::bound_table(&r.figures)
    ));
    out.push_str(&format!("\n### Accuracy by category\n\n{}", cascade::category_table(&r.figures, &categories)));

    out.push_str("\n### Who answered, and the chains the router planned\n\n");
    for f in r.figures.iter().filter(|f| f.kind == "cascade") {
        let by_model: Vec<String> = f.by_model.iter().map(|(m, n)| format!("`{m}` {n}")).collect();
        out.push_str(&format!(
            "- **{}**: answered by {}; last-step answers that failed validation too: {}; errors: {}; model loads \
             while measured: {}.\n",
            f.name,
            by_model.join(", "),
            f.unvalidated,
            f.errors,
            f.loads
        ));
        if f.judge_calls > 0 {
            let per_call = f.judge_seconds / f.judge_calls as f64;
            out.push_str(&format!(
                "  - judge calls: {} ({:.2} GPU-s each on average, {:.0} % of 70b's GPU time in all)\n",
                f.judge_calls,
                per_call,
                ratio_pct(f.judge_seconds, strong_gpu(&r.figures)),
            ));
        }
        // The chain a listed cascade plans is the same for every request; an `auto` one's depends on the category.
        let distinct: std::collections::BTreeSet<&str> =
            f.chains.keys().map(|k| k.split_once(": ").map_or(k.as_str(), |(_, chain)| chain)).collect();
        if distinct.len() == 1 {
            let chain = distinct.iter().next().copied().unwrap_or_default();
            out.push_str(&format!("  - chain: {chain} (every request)\n"));
        } else {
            for (chain, n) in &f.chains {
                out.push_str(&format!("  - chain for {chain} ({n} requests, by the routed category)\n"));
            }
        }
    }
    let model_loads: u64 = r.figures.iter().filter(|f| f.kind == "model").map(|f| f.loads).sum();
    out.push_str(&format!("- Models alone: model loads while measured: {model_loads}.\n"));

    out.push_str(&format!(
        "\n### Goal: >= {:.0} % of `{STRONG}`'s accuracy for <= {:.0} % of its GPU time\n\n",
        GOAL_ACCURACY * 100.0,
        GOAL_GPU * 100.0
    ));
    for f in r.figures.iter().filter(|f| f.kind == "cascade") {
        let verdict = if f.goal_met { "met" } else { "NOT met" };
        let why: Vec<String> = [
            (f.accuracy_vs_strong < GOAL_ACCURACY)
                .then(|| format!("accuracy {:.0} % of 70b's", f.accuracy_vs_strong * 100.0)),
            (f.gpu_vs_strong > GOAL_GPU).then(|| format!("GPU time {:.0} % of 70b's", f.gpu_vs_strong * 100.0)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let why = if why.is_empty() {
            format!(
                " (accuracy {:.0} %, GPU time {:.0} % of 70b's)",
                f.accuracy_vs_strong * 100.0,
                f.gpu_vs_strong * 100.0
            )
        } else {
            format!(": {}", why.join(", "))
        };
        out.push_str(&format!("- {}: {verdict}{why}\n", f.name));
    }
    out.push_str(&format!("\nRuntime: {:.1} s.\n", r.runtime_seconds));
    out
}

/// The strong model's GPU seconds alone (0 when missing).
fn strong_gpu(figures: &[Figures]) -> f64 {
    figures.iter().find(|f| f.kind == "model" && f.name == STRONG).map_or(0.0, |f| f.gpu_seconds)
}

/// `a` as a percentage of `b` (0 when `b` is 0).
fn ratio_pct(a: f64, b: f64) -> f64 {
    if b > 0.0 { a * 100.0 / b } else { 0.0 }
}
