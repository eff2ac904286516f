//! The simulator's state and the one path every inference request takes through it.
//!
//! [`SimState`] is what the HTTP handlers share: the catalog (the fleet plus what changes at run time, such as a
//! digest after a re-pull), the scheduler, the faults, the profiling items and the clock. A request becomes a
//! [`Job`]; [`Engine::run`] applies the faults meant for it, waits for the scheduler's lease and a runner slot,
//! plans the answer (spoilt when a `bad_answer` fault applies) and hands back a [`Run`] whose timings are the
//! simulated ones.

use crate::SimOptions;
use crate::answer::{self, Answer, Ask, Format};
use crate::clock::Clock;
use crate::embed;
use crate::error::SimError;
use crate::faults::{BadAnswer, FaultBook};
use crate::fleet::{Fleet, FleetModel, derive_digest};
use crate::generation::{Run, Summary};
use crate::items::ItemBook;
use crate::scheduler::{Counters, LoadRequest, SchedConfig, Scheduler};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::ollama::KeepAlive;
use switchyard_core::text::estimate_tokens;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// `load_duration` of a request whose model was already loaded: Ollama reports a few milliseconds.
const WARM_LOAD: Duration = Duration::from_micros(2_600);

/// Decode is about this many times slower when a model is partly offloaded to the CPU.
const OFFLOAD_DECODE_SLOWDOWN: f64 = 10.0;

/// Prompt processing is about this many times slower when a model is partly offloaded.
const OFFLOAD_PREFILL_SLOWDOWN: f64 = 3.0;

/// Tokens a chat template adds per message (role headers and separators).
pub(crate) const TOKENS_PER_MESSAGE: u64 = 4;

/// The simulator's shared state: cheap to clone; every clone is a handle on the same simulator.
///
/// Built by [`SimState::new`] (which starts the scheduler's tasks, so it needs a Tokio runtime). The background
/// tasks stop when [`SimState::shutdown`] is called or when the last clone is dropped.
#[derive(Clone)]
pub struct SimState {
    /// Everything the handlers use.
    engine: Arc<Engine>,
    /// Cancels the background tasks when the last clone goes (tasks hold the engine, not this guard).
    _owner: Arc<DropGuard>,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState").field("scheduler", &self.engine.scheduler).finish()
    }
}

impl SimState {
    /// Validates `opts` and starts the simulator's background tasks (the scheduler's queue and its reaper).
    pub fn new(opts: &SimOptions) -> Result<SimState, SimError> {
        validate_options(opts)?;
        opts.fleet.validate()?;
        let cancel = CancellationToken::new();
        let clock = Clock::new(opts.time_scale, cancel.clone());
        let faults = Arc::new(FaultBook::default());
        let tracker = TaskTracker::new();
        let config = SchedConfig {
            gpus: opts.gpus.clone(),
            max_loaded: opts.max_loaded_models.unwrap_or(3 * opts.gpus.len()),
            num_parallel: opts.num_parallel,
            max_queue: opts.max_queue,
            default_keep_alive: KeepAlive::For(opts.default_keep_alive),
        };
        let scheduler = Scheduler::start(config, clock.clone(), faults.clone(), &tracker);
        let started_at = Utc::now();
        let items = ItemBook::builtin();
        tracing::debug!(items = items.len(), models = opts.fleet.models.len(), "simulator ready");
        let engine = Engine {
            catalog: Catalog::new(&opts.fleet, started_at),
            scheduler,
            faults,
            items,
            default_num_ctx: default_num_ctx(opts.gpus.iter().sum()),
            clock,
            tracker,
            cancel: cancel.clone(),
            next_id: AtomicU64::new(1),
            api_key: opts.api_key.clone().filter(|k| !k.is_empty()),
            refused_params: opts.refused_params.clone(),
            llama_infill: opts.llama_infill,
            blobs: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            authorization_seen: AtomicU64::new(0),
            authorization_refused: AtomicU64::new(0),
            inference_requests: AtomicU64::new(0),
        };
        Ok(SimState { engine: Arc::new(engine), _owner: Arc::new(cancel.drop_guard()) })
    }

    /// Stops the background tasks and waits for them; requests in progress end with "shutting down".
    pub async fn shutdown(&self) {
        self.engine.cancel.cancel();
        self.engine.tracker.close();
        self.engine.tracker.wait().await;
    }

    /// The token cancelled at shutdown.
    pub fn cancel_token(&self) -> CancellationToken {
        self.engine.cancel.clone()
    }

    /// What has happened so far (the counters `/sim/gpu` reports).
    pub fn counters(&self) -> Counters {
        self.engine.scheduler.counters()
    }

    /// Requests waiting in the scheduler's queue now.
    pub fn pending_requests(&self) -> usize {
        self.engine.scheduler.pending()
    }

    /// The engine, for the handlers.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

fn validate_options(opts: &SimOptions) -> Result<(), SimError> {
    let bad = |m: &str| Err(SimError::Options(m.to_string()));
    if opts.gpus.is_empty() {
        return bad("at least one GPU is needed");
    }
    if opts.gpus.contains(&0) {
        return bad("a GPU must have some memory");
    }
    if !(opts.time_scale.is_finite() && opts.time_scale >= 0.0) {
        return bad("the time scale must be a non-negative number");
    }
    if opts.num_parallel == 0 {
        return bad("num_parallel must be at least 1");
    }
    if opts.max_queue == 0 {
        return bad("max_queue must be at least 1");
    }
    if opts.max_loaded_models == Some(0) {
        return bad("max_loaded_models must be at least 1");
    }
    Ok(())
}

/// Ollama's default context by total VRAM: 4096 under ~23 GiB, 32768 up to ~47 GiB, 262144 above.
pub(crate) fn default_num_ctx(total_bytes: u64) -> u64 {
    const GIB: u64 = 1024 * 1024 * 1024;
    if total_bytes >= 47 * GIB {
        262_144
    } else if total_bytes >= 23 * GIB {
        32_768
    } else {
        4_096
    }
}

/// One model as served now.
#[derive(Debug, Clone)]
pub(crate) struct CatalogEntry {
    /// Its figures.
    pub model: Arc<FleetModel>,
    /// Its current digest (changes on re-pull).
    pub digest: String,
    /// When it was last "pulled".
    pub modified_at: DateTime<Utc>,
    /// How many times it has been re-pulled.
    generation: u64,
}

/// The fleet as served.
#[derive(Debug)]
pub(crate) struct Catalog {
    /// The entries, in fleet order.
    entries: RwLock<Vec<CatalogEntry>>,
    /// What `/api/pull` can fetch: the fleet's models (a deleted one can be pulled again).
    registry: Vec<FleetModel>,
}

impl Catalog {
    fn new(fleet: &Fleet, now: DateTime<Utc>) -> Self {
        let entries = fleet
            .models
            .iter()
            .map(|m| CatalogEntry {
                model: Arc::new(m.clone()),
                digest: m.initial_digest(),
                modified_at: now,
                generation: 0,
            })
            .collect();
        Self { entries: RwLock::new(entries), registry: fleet.models.clone() }
    }

    /// The registry's model called `name`, for a pull.
    pub(crate) fn registry_model(&self, name: &ModelName) -> Option<FleetModel> {
        self.registry.iter().find(|m| &m.name == name).cloned()
    }

    /// Adds `model` (a pull or a create), or refreshes it when it is there: a new digest and modification time.
    pub(crate) fn put(&self, model: FleetModel) -> CatalogEntry {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = entries.iter_mut().find(|e| e.model.name == model.name) {
            entry.generation += 1;
            entry.digest = derive_digest(model.name.as_str(), entry.generation);
            entry.modified_at = Utc::now();
            entry.model = Arc::new(model);
            return entry.clone();
        }
        let entry = CatalogEntry {
            digest: model.initial_digest(),
            model: Arc::new(model),
            modified_at: Utc::now(),
            generation: 0,
        };
        entries.push(entry.clone());
        entry
    }

    /// Removes `name`; false when there was no such model.
    pub(crate) fn remove(&self, name: &ModelName) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = entries.len();
        entries.retain(|e| &e.model.name != name);
        entries.len() != before
    }

    /// Every entry.
    pub(crate) fn all(&self) -> Vec<CatalogEntry> {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The entry for `name`; as Ollama does, a name in another case than the pulled one finds it.
    pub(crate) fn get(&self, name: &ModelName) -> Option<CatalogEntry> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .iter()
            .find(|e| &e.model.name == name)
            .or_else(|| entries.iter().find(|e| e.model.name.as_str().eq_ignore_ascii_case(name.as_str())))
            .cloned()
    }

    /// Simulates pulling a new version of `name`: a new digest and modification time. The new digest, if found.
    pub(crate) fn repull(&self, name: &ModelName) -> Option<String> {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.iter_mut().find(|e| &e.model.name == name)?;
        entry.generation += 1;
        entry.digest = derive_digest(name.as_str(), entry.generation);
        entry.modified_at = Utc::now();
        Some(entry.digest.clone())
    }
}

/// What the handlers share.
pub(crate) struct Engine {
    /// The models.
    pub catalog: Catalog,
    /// Ollama's scheduler.
    pub scheduler: Scheduler,
    /// Injected faults.
    pub faults: Arc<FaultBook>,
    /// Profiling items, by prompt.
    pub items: ItemBook,
    /// The context length a request gets when it asks for none.
    pub default_num_ctx: u64,
    /// Time scale and shutdown.
    pub clock: Clock,
    /// Owns the background tasks.
    tracker: TaskTracker,
    /// Cancelled at shutdown.
    cancel: CancellationToken,
    /// Numbers response ids (`chatcmpl-N`).
    next_id: AtomicU64,
    /// The key every request must carry, when set.
    pub api_key: Option<String>,
    /// Digests of the blobs uploaded through `/api/blobs` (their bytes are not kept).
    pub blobs: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Fields `/v1/chat/completions` refuses (see [`crate::SimOptions::refused_params`]).
    pub refused_params: Vec<String>,
    /// `/infill` is served and `/v1/completions` refuses a suffix (see [`crate::SimOptions::llama_infill`]).
    pub llama_infill: bool,
    /// Requests that carried an `Authorization` header (any value), and those refused for a wrong or missing key.
    pub authorization_seen: AtomicU64,
    pub authorization_refused: AtomicU64,
    /// Inference requests received (generate, chat, completions, embeddings, on both APIs).
    pub inference_requests: AtomicU64,
}

/// Which "not found" wording a surface uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotFound {
    /// `model 'x' not found` (generate, chat, show).
    Quoted,
    /// `model "x" not found, try pulling it first` (embed).
    Pull,
}

/// An inference request, surface-independent.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The model.
    pub model: Arc<FleetModel>,
    /// The version wanted (its digest).
    pub digest: String,
    /// The context length to load it with.
    pub num_ctx: u64,
    /// The GPU layers to load it with (`None`: as many as fit).
    pub num_gpu: Option<u64>,
    /// The keep_alive sent, if any.
    pub keep_alive: Option<KeepAlive>,
    /// The text looked up as a profiling item.
    pub prompt: String,
    /// The whole conversation, for filler determinism.
    pub conversation: String,
    /// Prompt tokens before the context cap.
    pub prompt_tokens: u64,
    /// `options.seed`.
    pub seed: i64,
    /// `options.num_predict` (None = unlimited).
    pub num_predict: Option<u64>,
    /// `options.stop`.
    pub stop: Vec<String>,
    /// Produce reasoning first.
    pub think: bool,
    /// Structured output.
    pub format: Option<Format>,
    /// Tools to call (empty unless the user spoke last).
    pub tools: Vec<Value>,
    /// The last tool result, when the conversation ends with one.
    pub tool_result: Option<String>,
}

/// A started generation and how to deliver it.
pub(crate) struct Started {
    /// The generation.
    pub run: Run,
    /// Cut the response after this many chunks (injected fault).
    pub disconnect_after: Option<u32>,
}

/// The result of an embedding request.
#[derive(Debug, Clone)]
pub(crate) struct Embedded {
    /// One unit vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Simulated total time.
    pub total: Duration,
    /// Simulated queue wait plus load.
    pub load: Duration,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Cut the response after this many chunks (injected fault).
    pub disconnect_after: Option<u32>,
}

/// The result of a load-only request.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// Simulated total time.
    pub total: Duration,
    /// Simulated queue wait plus load.
    pub load: Duration,
    /// Cut the response after this many chunks (injected fault).
    pub disconnect_after: Option<u32>,
}

/// What the faults let through, after latency has been waited.
struct Admitted {
    /// Cut the response after this many chunks.
    disconnect_after: Option<u32>,
    /// Answer badly, this way (generations only).
    bad_answer: Option<BadAnswer>,
    /// Simulated latency that was added.
    latency: Duration,
}

impl Engine {
    /// Finds the model a request names. `None` or empty is "model is required"; an unknown one is 404 in the
    /// surface's wording; a malformed one is 400.
    pub(crate) fn resolve(&self, sent: Option<&str>, not_found: NotFound) -> Result<CatalogEntry, SimError> {
        let sent = sent.map(str::trim).filter(|s| !s.is_empty()).ok_or(SimError::ModelRequired)?;
        let missing = || match not_found {
            NotFound::Quoted => SimError::ModelNotFound(sent.to_string()),
            NotFound::Pull => SimError::ModelNotPulled(sent.to_string()),
        };
        let name = ModelName::parse(sent).map_err(|_| missing())?;
        self.catalog.get(&name).ok_or_else(missing)
    }

    /// The context length for `model` when the request asks for `requested` (capped at the trained length).
    pub(crate) fn num_ctx(&self, model: &FleetModel, requested: Option<u64>) -> u64 {
        requested.unwrap_or(self.default_num_ctx).clamp(1, model.context_length)
    }

    /// A fresh response id number.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts the request and applies the faults meant for it: an injected error, latency, or a hang. A request
    /// that `generates` an answer also picks up a bad-answer fault.
    async fn admit_faults(&self, model: &FleetModel, generates: bool) -> Result<Admitted, SimError> {
        self.scheduler.count_request();
        let fault = self.faults.take_request(&model.name, generates);
        if fault.hang {
            return Err(self.clock.hang().await);
        }
        self.clock.sleep(fault.latency).await?;
        if let Some((status, message)) = fault.error {
            return Err(SimError::Injected { status, message, retry_after: fault.retry_after });
        }
        Ok(Admitted { disconnect_after: fault.disconnect_after, bad_answer: fault.bad_answer, latency: fault.latency })
    }

    /// Waits for the scheduler to hand over `model`; the simulated `load_duration` with it.
    async fn lease(
        &self,
        model: &Arc<FleetModel>,
        digest: &str,
        (num_ctx, num_gpu): (u64, Option<u64>),
        keep_alive: Option<KeepAlive>,
    ) -> Result<(crate::scheduler::Lease, Duration), SimError> {
        let request = LoadRequest { model: model.clone(), digest: digest.to_string(), num_ctx, num_gpu, keep_alive };
        let lease = self.scheduler.acquire(request).await?;
        let load = if lease.loaded {
            Duration::try_from_secs_f64(model.load_seconds).unwrap_or_default()
        } else {
            Duration::ZERO
        };
        let load_duration = WARM_LOAD + load.max(self.clock.simulated(lease.waited));
        Ok((lease, load_duration))
    }

    /// Loads `model` without generating (`done_reason: "load"`).
    pub(crate) async fn load(
        &self,
        entry: &CatalogEntry,
        shape: (u64, Option<u64>),
        keep_alive: Option<KeepAlive>,
    ) -> Result<Loaded, SimError> {
        let admitted = self.admit_faults(&entry.model, false).await?;
        let (lease, load) = self.lease(&entry.model, &entry.digest, shape, keep_alive).await?;
        drop(lease);
        Ok(Loaded { total: admitted.latency + load, load, disconnect_after: admitted.disconnect_after })
    }

    /// Unloads `model` once idle (`keep_alive: 0` with no prompt); answers at once.
    pub(crate) async fn unload(&self, model: &FleetModel) -> Result<Option<u32>, SimError> {
        let admitted = self.admit_faults(model, false).await?;
        self.scheduler.expire(&model.name);
        Ok(admitted.disconnect_after)
    }

    /// Runs a generation: faults, lease, slot, answer, timings.
    pub(crate) async fn run(&self, job: Job) -> Result<Started, SimError> {
        let admitted = self.admit_faults(&job.model, true).await?;
        let (lease, load) = self.lease(&job.model, &job.digest, (job.num_ctx, job.num_gpu), job.keep_alive).await?;
        let slot_requested = Instant::now();
        let permit = lease.slot().await?;
        let start = Instant::now();
        let slot_wait = self.clock.simulated(start - slot_requested);

        let answer: Answer = answer::answer(
            &Ask {
                model: &job.model,
                prompt: &job.prompt,
                conversation: &job.conversation,
                seed: job.seed,
                num_predict: job.num_predict.map(|n| n.min(job.num_ctx)),
                context: job.num_ctx,
                stop: &job.stop,
                think: job.think,
                format: job.format.as_ref(),
                tools: &job.tools,
                tool_result: job.tool_result.as_deref(),
                bad_answer: admitted.bad_answer,
            },
            &self.items,
        );
        let (prefill_tps, decode_tps) = rates(&job.model, lease.offloaded);
        let prompt_eval_count = job.prompt_tokens.clamp(1, job.num_ctx);
        let prompt_eval = Duration::from_secs_f64(prompt_eval_count as f64 / prefill_tps);
        let per_token = Duration::from_secs_f64(1.0 / decode_tps);
        let eval_count = answer.tokens();
        let eval = per_token.mul_f64(eval_count as f64);
        let summary = Summary {
            done_reason: answer.done_reason,
            total: admitted.latency + load + slot_wait + prompt_eval + eval,
            load,
            prompt_eval_count,
            prompt_eval,
            eval_count,
            eval,
        };
        let run = Run { pieces: answer.pieces, summary, per_token, clock: self.clock.clone(), start, lease, permit };
        Ok(Started { run, disconnect_after: admitted.disconnect_after })
    }

    /// Embeds `inputs` with an embedding model.
    pub(crate) async fn embed(
        &self,
        entry: &CatalogEntry,
        (num_ctx, num_gpu): (u64, Option<u64>),
        keep_alive: Option<KeepAlive>,
        inputs: &[String],
        truncate: bool,
        dimensions: Option<usize>,
    ) -> Result<Embedded, SimError> {
        let limit = num_ctx.min(entry.model.context_length);
        if !truncate && let Some(long) = inputs.iter().find(|i| estimate_tokens(i) > limit) {
            return Err(SimError::bad(format!(
                "input length exceeds the context length ({} tokens > {limit}); set truncate to true or shorten it",
                estimate_tokens(long)
            )));
        }
        let model = &entry.model;
        let admitted = self.admit_faults(model, false).await?;
        let (lease, load) = self.lease(model, &entry.digest, (num_ctx, num_gpu), keep_alive).await?;
        let slot_requested = Instant::now();
        let permit = lease.slot().await?;
        let slot_wait = self.clock.simulated(slot_requested.elapsed());
        let prompt_tokens: u64 = inputs.iter().map(|i| estimate_tokens(i).min(limit)).sum();
        let (prefill_tps, _) = rates(model, lease.offloaded);
        let prefill = Duration::from_secs_f64(prompt_tokens as f64 / prefill_tps);
        self.clock.sleep(prefill).await?;
        drop(permit);
        drop(lease);
        let dims = model.embedding_dims.unwrap_or(model.embedding_length as usize);
        let embeddings = inputs
            .iter()
            .map(|text| {
                let v = embed::embed(model.name.as_str(), dims, text);
                match dimensions {
                    Some(d) => embed::truncate(v, d),
                    None => v,
                }
            })
            .collect();
        Ok(Embedded {
            embeddings,
            total: admitted.latency + load + slot_wait + prefill,
            load,
            prompt_tokens,
            disconnect_after: admitted.disconnect_after,
        })
    }
}

/// Prefill and decode rates, slower when the model is partly on the CPU.
fn rates(model: &FleetModel, offloaded: bool) -> (f64, f64) {
    if offloaded {
        (model.prefill_tps / OFFLOAD_PREFILL_SLOWDOWN, model.decode_tps / OFFLOAD_DECODE_SLOWDOWN)
    } else {
        (model.prefill_tps, model.decode_tps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_context_follows_vram_tiers() {
        const GIB: u64 = 1024 * 1024 * 1024;
        assert_eq!(default_num_ctx(16 * GIB), 4096);
        assert_eq!(default_num_ctx(24 * GIB), 32768);
        assert_eq!(default_num_ctx(48_000_000_000), 32768);
        assert_eq!(default_num_ctx(48 * GIB), 262_144);
    }
}
