//! The profiling runner: measures each model's quality per category, its speed and its VRAM, and writes every
//! item's result as soon as it is known.
//!
//! Models are profiled one at a time, items one after another, so a model's timings are not distorted by its own
//! concurrency. Each model is admitted through the VRAM manager like any request, so profiling does not fight live
//! traffic for memory. Per model: the cold load is measured (unload, then load), VRAM is read from `/api/ps`
//! `size_vram` and from the GPU probe's used-memory delta; per item: time to first token, prefill and decode
//! tokens/s from Ollama's own timings, and correctness from the item's checker. Timeouts grow with the model's
//! measured speed.
//!
//! Resuming: results are keyed by (model, digest, suite version, item), so a run killed at any point continues
//! where it stopped when started again, with nothing lost or counted twice, and the unfinished run's row is reused.
//! A model whose results are complete for its current digest and suite versions is skipped unless `force`.

use crate::check::Verdict;
use crate::client;
use crate::error::ProfileError;
use crate::judge::{judge_prompt, judged_verdict, parse_judge_reply};
use crate::stats;
use crate::suite::{Item, Suite, combined_version};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::catalog::{Catalog, ModelSpec};
use switchyard_core::config::Config;
use switchyard_core::ollama::{LoadOptions, OllamaClient};
use switchyard_core::store::{ItemResult, ProfileRun, RunStatus, ScoreRecord, Store, now_ms};
use switchyard_core::text::estimate_tokens;
use switchyard_core::{Category, ModelName};
use switchyard_vram::ledger::Residency;
use switchyard_vram::{AdminOp, Lease, VramManager};
use tokio_util::sync::CancellationToken;

/// The seed sent with every item, so answers are reproducible where the backend honours seeds.
const SEED: u64 = 42;

/// Which model judges open-ended items.
#[derive(Debug, Clone)]
pub enum JudgeTarget {
    /// A model in the same Ollama.
    Local(ModelName),
    /// An OpenAI-compatible endpoint (`http://host:port/v1`), its API key and model name.
    OpenAi { base_url: String, api_key: Option<String>, model: String },
}

/// Request options for a profiling or judging call: greedy decoding with the fixed seed, at most `max_tokens`
/// when given, and the load-time options of the model's instance (so the call never reloads it).
fn deterministic_options(load: &LoadOptions, max_tokens: Option<u32>) -> serde_json::Map<String, Value> {
    let mut options = serde_json::Map::new();
    if let Some(n) = max_tokens {
        options.insert("num_predict".into(), n.into());
    }
    options.insert("temperature".into(), 0.into());
    options.insert("seed".into(), SEED.into());
    load.write_to(&mut options);
    options
}

/// What a measured cold load of a model found.
struct ColdLoad {
    /// The lease it was loaded for (held while the model is profiled).
    lease: Lease,
    /// Load seconds, as Ollama reports them (else as timed).
    seconds: f64,
    /// GPU memory the instance holds (`size_vram`).
    vram: Option<u64>,
    /// What the model needs entirely on the GPU (`size`; more than `vram` when partly offloaded).
    needs: Option<u64>,
    /// The probe's used memory after the load less before it.
    delta: Option<u64>,
}

/// What to profile.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Models to profile; empty = every model that can generate text.
    pub models: Vec<ModelName>,
    /// Categories; empty = every suite.
    pub categories: Vec<Category>,
    /// Items per category (0 = the whole suite).
    pub items_per_category: usize,
    /// Re-profile models whose profiles are fresh, discarding their results.
    pub force: bool,
    pub judge: Option<JudgeTarget>,
    /// Output tokens allowed per item unless the item says otherwise.
    pub max_output_tokens: u32,
    /// Shortest per-item timeout.
    pub timeout_floor: Duration,
}

/// What a progress display is told.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The plan: per model, how many items will run (0 = fresh, skipped).
    Plan {
        models: Vec<(String, usize)>,
    },
    ModelStarted {
        model: String,
        items: usize,
        resumed: usize,
    },
    Loaded {
        model: String,
        seconds: f64,
        vram_bytes: Option<u64>,
    },
    Item {
        model: String,
        category: Category,
        item: String,
        correct: bool,
        error: Option<String>,
    },
    ModelDone {
        model: String,
    },
    ModelSkipped {
        model: String,
        reason: String,
    },
    ModelFailed {
        model: String,
        error: String,
    },
}

/// Receives progress events (terminal bars, log lines, a server job's status).
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: &Progress);
}

/// How profiling one model ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelOutcome {
    Profiled,
    /// Fresh results were already there.
    Skipped(String),
    Failed(String),
}

/// One model's line in the summary.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub model: String,
    pub outcome: ModelOutcome,
    pub load_seconds: Option<f64>,
    /// The memory the model needs loaded (Ollama's `size`, GPU and CPU): the figure `switchyard models` shows.
    pub vram_bytes: Option<u64>,
    /// The part of it on the GPU (`size_vram`): less than `vram_bytes` when part runs from CPU memory.
    pub gpu_bytes: Option<u64>,
    pub scores: Vec<ScoreRecord>,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub models: Vec<ModelSummary>,
    pub items_run: usize,
    pub elapsed: Duration,
}

/// Runs profiles against one Ollama, through one VRAM manager, into one store.
#[derive(Clone)]
pub struct Runner {
    pub client: OllamaClient,
    pub store: Arc<dyn Store>,
    pub vram: VramManager,
    pub config: Arc<Config>,
    pub suites: Arc<Vec<Suite>>,
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("suites", &self.suites.len()).finish()
    }
}

/// Per-item work of one model.
struct Plan {
    spec: ModelSpec,
    suites: Vec<(Suite, Vec<Item>)>,
    todo: usize,
    done: usize,
}

impl Runner {
    /// The items of `suite` this run covers: verifiable ones (and judged ones when a judge is set), first `n`.
    fn items(&self, suite: &Suite, options: &RunOptions) -> Vec<Item> {
        let usable: Vec<&Item> =
            suite.items.iter().filter(|i| options.judge.is_some() || !i.check.needs_judge()).collect();
        let n =
            if options.items_per_category == 0 { usable.len() } else { options.items_per_category.min(usable.len()) };
        usable.into_iter().take(n).cloned().collect()
    }

    async fn plan(&self, spec: &ModelSpec, options: &RunOptions) -> Result<Plan, ProfileError> {
        let mut suites = Vec::new();
        let (mut todo, mut done) = (0, 0);
        for suite in
            self.suites.iter().filter(|s| options.categories.is_empty() || options.categories.contains(&s.category))
        {
            let items = self.items(suite, options);
            let existing: HashSet<String> = self
                .store
                .results(spec.name.as_str(), &spec.digest, suite.category.as_str(), &suite.version)
                .await?
                .into_iter()
                .map(|r| r.item_id)
                .collect();
            let (have, missing): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|i| existing.contains(&i.id));
            done += have.len();
            todo += missing.len();
            suites.push((suite.clone(), missing));
        }
        Ok(Plan { spec: spec.clone(), suites, todo, done })
    }

    /// Profiles what `options` asks for, reporting to `progress`.
    pub async fn run(
        &self,
        catalog: &Catalog,
        options: &RunOptions,
        progress: &dyn ProgressSink,
    ) -> Result<Summary, ProfileError> {
        let started = Instant::now();
        let mut specs: Vec<ModelSpec> = Vec::new();
        if options.models.is_empty() {
            // A cloud model runs its items on ollama.com, against the account's allowance: only when named.
            specs.extend(catalog.models.values().filter(|s| s.capabilities.completion && !s.cloud).cloned());
        } else {
            for name in &options.models {
                let spec = catalog
                    .spelled(name)
                    .and_then(|n| catalog.get(n))
                    .ok_or_else(|| ProfileError::UnknownModel(name.to_string()))?;
                if !spec.capabilities.completion {
                    return Err(ProfileError::Admission {
                        model: name.to_string(),
                        message: "it only embeds; there is nothing to profile".into(),
                    });
                }
                specs.push(spec.clone());
            }
        }
        if options.force {
            for spec in &specs {
                self.store.delete_results(spec.name.as_str()).await?;
            }
        }
        let mut plans = Vec::with_capacity(specs.len());
        for spec in &specs {
            plans.push(self.plan(spec, options).await?);
        }
        progress.event(&Progress::Plan { models: plans.iter().map(|p| (p.spec.name.to_string(), p.todo)).collect() });
        let mut summary = Summary::default();
        for plan in plans {
            if self.cancel.is_cancelled() {
                return Err(ProfileError::Cancelled);
            }
            let model = plan.spec.name.to_string();
            if plan.todo == 0 {
                let reason = format!("fresh ({} results for digest {})", plan.done, short(&plan.spec.digest));
                let scores = self.rescore(&plan).await?;
                progress.event(&Progress::ModelSkipped { model: model.clone(), reason: reason.clone() });
                summary.models.push(ModelSummary {
                    model,
                    outcome: ModelOutcome::Skipped(reason),
                    load_seconds: None,
                    vram_bytes: None,
                    gpu_bytes: None,
                    scores,
                });
                continue;
            }
            match self.profile_model(&plan, options, progress, &mut summary.items_run).await {
                Ok(mut s) => {
                    progress.event(&Progress::ModelDone { model: model.clone() });
                    s.scores = self.rescore(&plan).await?;
                    summary.models.push(s);
                }
                Err(ProfileError::Cancelled) => return Err(ProfileError::Cancelled),
                Err(e) => {
                    let error = e.to_string();
                    tracing::warn!(model, error, "profiling failed");
                    progress.event(&Progress::ModelFailed { model: model.clone(), error: error.clone() });
                    summary.models.push(ModelSummary {
                        model,
                        outcome: ModelOutcome::Failed(error),
                        load_seconds: None,
                        vram_bytes: None,
                        gpu_bytes: None,
                        scores: Vec::new(),
                    });
                }
            }
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// Recomputes and stores the scores of every category of `plan` from the stored results.
    async fn rescore(&self, plan: &Plan) -> Result<Vec<ScoreRecord>, ProfileError> {
        let mut scores = Vec::new();
        for (suite, _) in &plan.suites {
            let results = self
                .store
                .results(plan.spec.name.as_str(), &plan.spec.digest, suite.category.as_str(), &suite.version)
                .await?;
            if results.is_empty() {
                continue;
            }
            let score = stats::score(
                plan.spec.name.as_str(),
                suite.category.as_str(),
                &plan.spec.digest,
                &suite.version,
                &results,
            );
            self.store.upsert_score(&score).await?;
            scores.push(score);
        }
        Ok(scores)
    }

    async fn profile_model(
        &self,
        plan: &Plan,
        options: &RunOptions,
        progress: &dyn ProgressSink,
        items_run: &mut usize,
    ) -> Result<ModelSummary, ProfileError> {
        let spec = &plan.spec;
        let model = spec.name.to_string();
        let suite_refs: Vec<&Suite> = plan.suites.iter().map(|(s, _)| s).collect();
        let version = combined_version(&suite_refs);
        let categories: Vec<&str> = plan.suites.iter().map(|(s, _)| s.category.as_str()).collect();
        let mut run = match self.store.unfinished_run(&model, &spec.digest, &version).await? {
            Some(run) => run,
            None => {
                let run = ProfileRun {
                    id: uuid::Uuid::new_v4().to_string(),
                    model: model.clone(),
                    digest: spec.digest.clone(),
                    suite_version: version,
                    categories: categories.join(","),
                    items_per_category: options.items_per_category as u32,
                    status: RunStatus::Running,
                    started_at: now_ms(),
                    finished_at: None,
                    load_seconds: None,
                    vram_bytes: None,
                    vram_probe_delta: None,
                    error: None,
                };
                self.store.insert_run(&run).await?;
                run
            }
        };
        progress.event(&Progress::ModelStarted { model: model.clone(), items: plan.todo, resumed: plan.done });
        let outcome = self.measure_and_run(plan, options, progress, &mut run, items_run).await;
        let needs = outcome.as_ref().ok().copied().flatten();
        run.finished_at = Some(now_ms());
        match &outcome {
            Ok(_) => run.status = RunStatus::Complete,
            Err(ProfileError::Cancelled) => return Err(ProfileError::Cancelled),
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
            }
        }
        self.store.update_run(&run).await?;
        outcome?;
        Ok(ModelSummary {
            model,
            outcome: ModelOutcome::Profiled,
            load_seconds: run.load_seconds,
            vram_bytes: needs.or(run.vram_bytes),
            gpu_bytes: run.vram_bytes,
            scores: Vec::new(),
        })
    }

    async fn measure_and_run(
        &self,
        plan: &Plan,
        options: &RunOptions,
        progress: &dyn ProgressSink,
        run: &mut ProfileRun,
        items_run: &mut usize,
    ) -> Result<Option<u64>, ProfileError> {
        let spec = &plan.spec;
        // A model of another backend (`switchyard profile --backend`) is held by its own server, and an Ollama cloud
        // model by ollama.com: there is no cold load or VRAM to measure from here, and no load-time options to keep.
        let (lease, load, needs) = if !spec.local() {
            (None, LoadOptions::default(), None)
        } else {
            let ColdLoad { lease, seconds, vram, needs, delta } = self.cold_load(&spec.name).await?;
            run.load_seconds = Some(seconds);
            run.vram_bytes = vram;
            run.vram_probe_delta = delta;
            self.store.update_run(run).await?;
            let load = lease.options;
            let num_ctx = load.num_ctx.unwrap_or_else(|| spec.effective_ctx(self.config.num_ctx_for(&spec.name)));
            self.store.record_model_measurement(spec.name.as_str(), Some(seconds), needs, Some(num_ctx)).await?;
            progress.event(&Progress::Loaded { model: spec.name.to_string(), seconds, vram_bytes: vram });
            (Some(lease), load, needs)
        };
        let mut speed = Speed::default();
        for (suite, items) in &plan.suites {
            for item in items {
                if self.cancel.is_cancelled() {
                    return Err(ProfileError::Cancelled);
                }
                let result = self.run_item(spec, suite, item, options, &load, &mut speed, &run.id).await;
                self.store.insert_result(&result).await?;
                *items_run += 1;
                progress.event(&Progress::Item {
                    model: spec.name.to_string(),
                    category: suite.category,
                    item: item.id.clone(),
                    correct: result.correct,
                    error: result.error.clone(),
                });
            }
            let results =
                self.store.results(spec.name.as_str(), &spec.digest, suite.category.as_str(), &suite.version).await?;
            let score =
                stats::score(spec.name.as_str(), suite.category.as_str(), &spec.digest, &suite.version, &results);
            self.store.upsert_score(&score).await?;
        }
        drop(lease);
        Ok(needs)
    }

    /// Unloads the model, then loads it through the manager: cold load seconds, `/api/ps` VRAM, probe delta.
    /// Unloading unpins: a pinned model is pinned again afterwards, whether the measurement worked or not (pins set
    /// at run time are kept in the store by the admin route, which this unload does not touch).
    async fn cold_load(&self, model: &ModelName) -> Result<ColdLoad, ProfileError> {
        let was_pinned = self.vram.ledger().entry(model).is_some_and(|e| e.pinned);
        let measured = self.measure_cold_load(model).await;
        if was_pinned && let Err(e) = self.vram.admin(AdminOp::Pin, model).await {
            return Err(ProfileError::Admission {
                model: model.to_string(),
                message: format!("it was pinned, and pinning it again after the cold load failed: {e}"),
            });
        }
        measured
    }

    async fn measure_cold_load(&self, model: &ModelName) -> Result<ColdLoad, ProfileError> {
        let admission = |e: switchyard_vram::VramError| ProfileError::Admission {
            model: model.to_string(),
            message: e.to_string(),
        };
        let loaded = |vram: &VramManager| vram.ledger().entry(model).is_some_and(|e| e.residency != Residency::Absent);
        if loaded(&self.vram) {
            self.vram.admin(AdminOp::Unload, model).await.map_err(admission)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while loaded(&self.vram) {
                if Instant::now() > deadline {
                    return Err(ProfileError::Admission {
                        model: model.to_string(),
                        message: "it did not unload within 60 s".into(),
                    });
                }
                self.vram.refresh().await.map_err(admission)?;
            }
        }
        self.vram.refresh().await.map_err(admission)?;
        let used_before: u64 = self.vram.ledger().gpus().iter().map(|g| g.used).sum();
        let started = Instant::now();
        let wait = Duration::from_secs(self.config.ollama.load_timeout_secs);
        let lease = self.vram.acquire_within(model, wait).await.map_err(admission)?;
        let wall = started.elapsed().as_secs_f64();
        self.vram.refresh().await.map_err(admission)?;
        let ledger = self.vram.ledger();
        let used_after: u64 = ledger.gpus().iter().map(|g| g.used).sum();
        let entry = ledger.entry(model);
        let seconds = entry.and_then(|e| e.load_seconds).unwrap_or(wall);
        let vram = entry.and_then(|e| matches!(e.residency, Residency::Loaded { .. }).then(|| e.residency.bytes()));
        let needs = entry.filter(|e| e.measured).map(|e| e.expected_bytes);
        let delta = (used_after > used_before).then(|| used_after - used_before);
        Ok(ColdLoad { lease, seconds, vram, needs, delta })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_item(
        &self,
        spec: &ModelSpec,
        suite: &Suite,
        item: &Item,
        options: &RunOptions,
        load: &LoadOptions,
        speed: &mut Speed,
        run_id: &str,
    ) -> ItemResult {
        let max_tokens = item.max_tokens.unwrap_or(options.max_output_tokens);
        let prompt_tokens = estimate_tokens(&item.prompt) + item.system.as_deref().map_or(0, estimate_tokens);
        let timeout = speed.timeout(prompt_tokens, u64::from(max_tokens), options.timeout_floor);
        let mut result = ItemResult {
            model: spec.name.to_string(),
            digest: spec.digest.clone(),
            category: suite.category.as_str().to_string(),
            item_id: item.id.clone(),
            suite_version: suite.version.clone(),
            run_id: run_id.to_string(),
            correct: false,
            score: 0.0,
            ttft_ms: None,
            prefill_tps: None,
            decode_tps: None,
            prompt_tokens: None,
            output_tokens: None,
            total_ms: None,
            error: None,
            created_at: now_ms(),
        };
        let mut messages = Vec::new();
        if let Some(system) = &item.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": item.prompt}));
        let body = json!({
            "model": spec.name.as_str(), "messages": messages, "stream": true, "keep_alive": -1,
            "options": deterministic_options(load, Some(max_tokens))
        });
        let answer = match tokio::time::timeout(timeout, client::chat_stream(&self.client, &body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                result.error = Some(e);
                return result;
            }
            Err(_) => {
                result.error = Some(format!("no answer within {:.0} s", timeout.as_secs_f64()));
                return result;
            }
        };
        result.ttft_ms = answer.ttft.map(|d| d.as_secs_f64() * 1000.0);
        result.total_ms = Some(answer.total.as_secs_f64() * 1000.0);
        let t = &answer.timings;
        result.prompt_tokens = Some(t.prompt_eval_count);
        result.output_tokens = Some(t.eval_count);
        if t.prompt_eval_count > 0 && t.prompt_eval_ns > 0 {
            result.prefill_tps = Some(t.prompt_eval_count as f64 * 1e9 / t.prompt_eval_ns as f64);
        }
        if t.eval_count > 0 && t.eval_ns > 0 {
            result.decode_tps = Some(t.eval_count as f64 * 1e9 / t.eval_ns as f64);
        }
        speed.observe(result.prefill_tps, result.decode_tps);
        let verdict = match item.check.evaluate(&answer.text) {
            Verdict::NeedsJudge => match &options.judge {
                Some(judge) => match self.judge(judge, item, &answer.text).await {
                    Ok(score) => judged_verdict(score),
                    Err(e) => {
                        result.error = Some(format!("judge: {e}"));
                        return result;
                    }
                },
                None => Verdict::pass_fail(false),
            },
            v => v,
        };
        if let Verdict::Scored { correct, score } = verdict {
            result.correct = correct;
            result.score = score;
        }
        result
    }

    /// Scores an open-ended answer with the judge; returns a score in [0, 1].
    async fn judge(&self, judge: &JudgeTarget, item: &Item, answer: &str) -> Result<f64, String> {
        let prompt = judge_prompt(item, answer);
        // The judge's answer is not streamed: it comes whole when it is done.
        let timeout = Duration::from_secs(self.config.ollama.answer_timeout_secs);
        let reply = match judge {
            JudgeTarget::Local(model) => {
                let lease = self.vram.acquire(model).await.map_err(|e| e.to_string())?;
                let body = json!({"model": model.as_str(), "messages": [{"role": "user", "content": prompt}], "stream": false,
                                  "keep_alive": -1, "options": deterministic_options(&lease.options, None)});
                client::chat(&self.client, &body, timeout).await?
            }
            JudgeTarget::OpenAi { base_url, api_key, model } => {
                let body = json!({"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0});
                client::openai_chat(self.client.http(), base_url, api_key.as_deref(), &body, timeout).await?
            }
        };
        parse_judge_reply(&reply)
            .ok_or_else(|| format!("no score in the judge's reply: {:?}", reply.chars().take(80).collect::<String>()))
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The model's measured speed so far, for adaptive timeouts.
#[derive(Debug, Default)]
struct Speed {
    prefill_tps: Option<f64>,
    decode_tps: Option<f64>,
}

impl Speed {
    fn observe(&mut self, prefill: Option<f64>, decode: Option<f64>) {
        let blend = |old: Option<f64>, new: Option<f64>| match (old, new) {
            (Some(o), Some(n)) => Some(o.min(n) * 0.5 + o.max(n) * 0.5),
            (o, n) => n.or(o),
        };
        self.prefill_tps = blend(self.prefill_tps, prefill);
        self.decode_tps = blend(self.decode_tps, decode);
    }

    /// Four times the expected time of an item at the measured speed, never below `floor`; before anything is
    /// measured, four times the floor.
    fn timeout(&self, prompt_tokens: u64, max_tokens: u64, floor: Duration) -> Duration {
        match (self.prefill_tps, self.decode_tps) {
            (Some(p), Some(d)) if p > 0.0 && d > 0.0 => {
                let expected = prompt_tokens as f64 / p + max_tokens as f64 / d;
                floor.max(Duration::from_secs_f64(4.0 * expected + 2.0))
            }
            _ => floor * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_the_measured_speed() {
        let floor = Duration::from_secs(10);
        let mut speed = Speed::default();
        assert_eq!(speed.timeout(100, 500, floor), Duration::from_secs(40));
        speed.observe(Some(1000.0), Some(5.0));
        // 0.1 s prefill + 100 s decode, times four, plus two.
        assert!((speed.timeout(100, 500, floor).as_secs_f64() - 402.4).abs() < 0.01);
        speed.observe(Some(1000.0), Some(500.0));
        assert_eq!(speed.timeout(100, 10, floor), floor);
    }
}
