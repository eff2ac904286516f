//! The scorer: which local model serves a request best under the user's quality preference.
//!
//! Candidates have the capabilities the request needs (from `/api/show`), enough context, a closed breaker, and can
//! be admitted to VRAM. For each, quality is the posterior mean of its profiled success rate in the category
//! (shrunk toward `routing.prior_quality` by `routing.prior_weight` pseudo-observations, so a few samples do not
//! decide), and predicted latency is
//!
//! ```text
//! L = queue wait + (loaded ? 0 : load time + eviction cost) + prompt tokens / prefill rate + output tokens / decode rate
//! ```
//!
//! with rates from live averages of responses' own timings, then profiles, then a conservative prior; the answer
//! length from live traffic in the category (profiling items ask for terse answers, so they do not tell). Utility is
//! `w * quality + (1 - w) * (fastest L / L)`. Every component is kept for `/admin/explain` and the decision log.

use crate::classify::{Needs, expected_output_tokens};
use crate::profiles::{LiveModel, LiveStats, ProfileTable};
use serde::Serialize;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use switchyard_core::catalog::{Catalog, ModelSpec};
use switchyard_core::config::{Config, RemotePolicy};
use switchyard_core::{Category, ModelName};
use switchyard_vram::ledger::{Ledger, Plan, Room};
use switchyard_vram::policy::estimated_reload_seconds;
use tokio::time::Instant;

/// Prefill rate assumed for a model nothing was measured on (tokens/s): slow, so unmeasured models do not win on
/// speed by default.
pub const PRIOR_PREFILL_TPS: f64 = 400.0;
/// Decode rate assumed for a model nothing was measured on (tokens/s).
pub const PRIOR_DECODE_TPS: f64 = 15.0;
/// Seconds assumed for a backend to load a model it reports unloaded, until a load of it was measured.
pub const PRIOR_REMOTE_LOAD_SECONDS: f64 = 2.0;
/// Seconds an unload takes before its memory is free.
const UNLOAD_SECONDS: f64 = 0.25;
/// Share of an evicted model's reload time charged to the request that evicts it (it may be needed again soon).
const REEVICT_FACTOR: f64 = 0.5;
/// Seconds added when admission would have to wait for busy models.
const WAIT_PENALTY_SECONDS: f64 = 5.0;
/// How much slower decoding and prompt processing run with part of a model on the CPU than with all of it on the GPU.
const OFFLOAD_DECODE_SLOWDOWN: f64 = 10.0;
const OFFLOAD_PREFILL_SLOWDOWN: f64 = 3.0;

/// The backend name of a model served by the local Ollama, shared by every candidate that names it.
static LOCAL_BACKEND: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("ollama"));

/// What is being scored.
#[derive(Debug, Clone, Copy)]
pub struct ScoreRequest<'a> {
    pub category: Category,
    pub needs: &'a Needs,
    /// An embedding request: only embedding models qualify and quality is not measured (speed decides).
    pub embedding: bool,
    /// Quality weight `w` in [0, 1].
    pub preference: f64,
    pub prompt_tokens: u64,
    /// The client's `num_predict`/`max_tokens`.
    pub max_output_tokens: Option<u64>,
    /// Class probabilities to blend the per-category qualities by, when the classifier was unsure
    /// (`routing.blend_below`); `None` scores the quality in `category` alone.
    pub blend: Option<[f32; 7]>,
    /// The only models that may serve it (a task's `model` or `models`); `None` allows every model.
    pub allow: Option<&'a [ModelName]>,
    /// The model that answered the conversation's previous turn, and the prompt tokens of the history it holds
    /// processed: while it stays loaded, it prefills only the rest.
    pub affinity: Option<(&'a ModelName, u64)>,
}

/// What the scorer reads. All of it is lock-free snapshots.
#[derive(Debug, Clone, Copy)]
pub struct ScoreContext<'a> {
    pub config: &'a Config,
    pub catalog: &'a Catalog,
    pub profiles: &'a ProfileTable,
    pub live: &'a LiveStats,
    pub ledger: &'a Ledger,
    /// Models whose breaker is open.
    pub open_breakers: &'a [ModelName],
    /// Load and prices of each `[[backends]]` entry, by position.
    pub backends: &'a [BackendLoad],
    /// Backend models their server reports unloaded (llama.cpp's router mode): a request waits for their load.
    pub cold_remote: &'a [ModelName],
    /// What each fleet node offers for each of its models (a fleet front; empty otherwise).
    pub fleet: &'a FleetView,
}

/// What a fleet front knows of one model on one node, from the node's `/admin/state` and the front's own forwards
/// since.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOffer {
    /// The node's position in the fleet.
    pub node: usize,
    /// The node's configured name (shown as the candidate's backend).
    pub node_name: Arc<str>,
    /// Loaded there, or a load is under way (a request joins it).
    pub loaded: bool,
    /// Requests being served or waiting there for it.
    pub in_flight: u32,
    /// Requests the node serves at once per model.
    pub parallel: u32,
    /// Seconds a cold load takes there.
    pub load_seconds: f64,
    /// The node's price of making room (the reload cost of what it would evict).
    pub eviction_seconds: f64,
    /// What loading it there would unload.
    pub evicts: Vec<ModelName>,
    /// The node cannot load it now.
    pub refused: Option<String>,
    /// The node's measured prompt rate, once measured.
    pub prefill_tps: Option<f64>,
    /// The node's measured output rate, once measured.
    pub decode_tps: Option<f64>,
    /// The context, in tokens, the node serves the model with (unknown: no limit here).
    pub context: Option<u64>,
}

impl NodeOffer {
    /// Predicted latency of a request of `prompt_tokens` and `out_tokens` on this node, with `prefill` and `decode`
    /// rates used where the node has not measured its own. `None` when the node cannot load the model.
    pub fn latency(&self, prompt_tokens: u64, out_tokens: u64, prefill: f64, decode: f64) -> Option<Latency> {
        if self.refused.is_some() {
            return None;
        }
        let mut l = Latency {
            prefill: prompt_tokens as f64 / self.prefill_tps.filter(|r| *r > 0.0).unwrap_or(prefill),
            decode: out_tokens as f64 / self.decode_tps.filter(|r| *r > 0.0).unwrap_or(decode),
            ..Latency::default()
        };
        l.queue = f64::from(self.in_flight / self.parallel.max(1)) * (l.prefill + l.decode);
        if !self.loaded {
            l.load = self.load_seconds;
            l.eviction = self.eviction_seconds;
        }
        l.total = l.queue + l.load + l.eviction + l.prefill + l.decode;
        Some(l)
    }

    /// Whether a request needing `context_tokens` (prompt and answer) fits the context the node serves the model
    /// with; `None` asks nothing of the context (embeddings: the engine cuts each input to the model's context).
    pub fn fits(&self, context_tokens: Option<u64>) -> bool {
        match (context_tokens, self.context) {
            (Some(needed), Some(context)) => needed <= context,
            _ => true,
        }
    }
}

/// The size of a request, as the ranking of a model's nodes reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSize {
    pub prompt_tokens: u64,
    pub out_tokens: u64,
    /// The context it needs (prompt and answer), checked against each node's; `None` for embeddings.
    pub context_tokens: Option<u64>,
}

/// Every fleet model's offers, by model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    /// Each model's offers, one per healthy node that has it.
    pub offers: std::collections::BTreeMap<ModelName, Vec<NodeOffer>>,
}

impl FleetView {
    /// The nodes that can serve `model`, fastest first, with their predicted latencies.
    pub fn ranked(
        &self,
        model: &ModelName,
        size: RequestSize,
        prefill: f64,
        decode: f64,
    ) -> Vec<(&NodeOffer, Latency)> {
        let RequestSize { prompt_tokens, out_tokens, context_tokens } = size;
        let mut ranked: Vec<(&NodeOffer, Latency)> = self
            .offers
            .get(model)
            .into_iter()
            .flatten()
            .filter(|o| o.fits(context_tokens))
            .filter_map(|o| Some((o, o.latency(prompt_tokens, out_tokens, prefill, decode)?)))
            .collect();
        ranked.sort_by(|a, b| {
            a.1.total.total_cmp(&b.1.total).then(b.0.loaded.cmp(&a.0.loaded)).then(a.0.node.cmp(&b.0.node))
        });
        ranked
    }
}

/// What the scorer knows of an OpenAI-compatible backend.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackendLoad {
    pub in_flight: u32,
    /// `max_concurrency`.
    pub capacity: u32,
    pub price_input_per_mtok: f64,
    pub price_output_per_mtok: f64,
}

impl BackendLoad {
    /// The predicted cost of a request of these sizes.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.price_input_per_mtok + output_tokens as f64 * self.price_output_per_mtok) / 1e6
    }
}

/// Predicted latency, in seconds, by component.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub queue: f64,
    pub load: f64,
    pub eviction: f64,
    pub prefill: f64,
    pub decode: f64,
    pub total: f64,
}

/// One model's score.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub model: ModelName,
    /// Where it is served: `ollama`, or the `[[backends]]` name.
    pub backend: Arc<str>,
    /// Predicted cost of this request on a priced backend (`None` for free ones).
    pub cost: Option<f64>,
    /// A remote model (priced, or an Ollama cloud model) under `routing.remote = "fallback"`: tried only after every
    /// local candidate.
    pub fallback_only: bool,
    /// Posterior mean quality in the category.
    pub quality: f64,
    /// Profiled items behind `quality`.
    pub samples: u32,
    /// False when the model has no profile: `quality` is the prior.
    pub profiled: bool,
    /// The profile was measured on an older digest.
    pub stale: bool,
    pub loaded: bool,
    pub latency: Latency,
    /// Models that would be unloaded to make room.
    pub evictions: Vec<ModelName>,
    /// Quality term `w * quality`.
    pub quality_term: f64,
    /// Speed term `(1 - w) * fastest / latency`.
    pub speed_term: f64,
    pub utility: f64,
    /// Why the model cannot serve this request; `None` for eligible candidates.
    pub excluded: Option<Cow<'static, str>>,
    /// Prompt tokens this model already holds processed (it answered the conversation's previous turn and is
    /// still loaded); they are left out of its prefill.
    #[serde(skip_serializing_if = "is_zero")]
    pub cached_prefix_tokens: u64,
}

impl Candidate {
    /// `model` on `backend` before anything about it is known: no quality, no latency, not loaded, eligible.
    pub fn unscored(model: ModelName, backend: Arc<str>) -> Self {
        Candidate {
            model,
            backend,
            cost: None,
            fallback_only: false,
            quality: 0.0,
            samples: 0,
            profiled: false,
            stale: false,
            loaded: false,
            latency: Latency::default(),
            evictions: Vec::new(),
            quality_term: 0.0,
            speed_term: 0.0,
            utility: 0.0,
            excluded: None,
            cached_prefix_tokens: 0,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A complete scoring: every model, eligible ones first by utility.
#[derive(Debug, Clone, Serialize)]
pub struct Scoring {
    pub category: Category,
    /// True when quality was blended over the categories by the class probabilities.
    pub blended: bool,
    pub preference: f64,
    pub prompt_tokens: u64,
    pub expected_output_tokens: u64,
    pub candidates: Vec<Candidate>,
}

impl Scoring {
    /// Eligible candidates, best first.
    pub fn eligible(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates.iter().filter(|c| c.excluded.is_none())
    }

    /// Why nothing is eligible, summarised for an error message.
    pub fn why_none(&self) -> String {
        if self.candidates.is_empty() {
            return "no models are pulled in Ollama (ollama pull llama3.2)".to_string();
        }
        let mut reasons: Vec<&str> = self.candidates.iter().filter_map(|c| c.excluded.as_deref()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        format!("no local model can serve this request: {}", reasons.join("; "))
    }
}

/// Scores every model in the catalog for `req`.
pub fn score(req: &ScoreRequest<'_>, cx: &ScoreContext<'_>) -> Scoring {
    let now = Instant::now();
    let w = req.preference.clamp(0.0, 1.0);
    // Answer length: live traffic in this category, else the category's typical length; never above the client's cap.
    let typical = cx
        .live
        .output_tokens(req.category)
        .map_or_else(|| expected_output_tokens(req.category), |t| t.round().max(1.0) as u64);
    let out_tokens = req.max_output_tokens.map_or(typical, |m| typical.min(m.max(1)));
    let out_tokens = if req.embedding { 0 } else { out_tokens };
    let room = cx.ledger.room(now);
    let live = cx.live.snapshot();
    let mut candidates: Vec<Candidate> = Vec::with_capacity(cx.catalog.models.len());
    for spec in cx.catalog.models.values() {
        candidates.push(evaluate(spec, req, cx, &room, live.get(&spec.name).map(Arc::as_ref), out_tokens));
    }
    let fastest =
        candidates.iter().filter(|c| c.excluded.is_none()).map(|c| c.latency.total).fold(f64::INFINITY, f64::min);
    let cost_weight =
        if cx.config.routing.remote == RemotePolicy::Scored { cx.config.routing.cost_weight } else { 0.0 };
    for c in candidates.iter_mut().filter(|c| c.excluded.is_none()) {
        let quality_weight = if req.embedding { 0.0 } else { w };
        c.quality_term = quality_weight * c.quality;
        c.speed_term = (1.0 - quality_weight) * if c.latency.total > 0.0 { fastest / c.latency.total } else { 1.0 };
        c.utility = c.quality_term + c.speed_term - cost_weight * c.cost.unwrap_or(0.0);
    }
    // Sort positions rather than the (large) candidates themselves, then put the candidates in that order in place.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // A total order (names are unique), so an unstable sort gives the same order as a stable one.
    order.sort_unstable_by(|&i, &j| {
        let (a, b) = (&candidates[i], &candidates[j]);
        a.excluded
            .is_some()
            .cmp(&b.excluded.is_some())
            .then(a.fallback_only.cmp(&b.fallback_only))
            .then(b.utility.total_cmp(&a.utility))
            .then(b.loaded.cmp(&a.loaded))
            .then(b.quality.total_cmp(&a.quality))
            // Names are compared only on a tie (`then` would compare them for every pair).
            .then_with(|| a.model.cmp(&b.model))
    });
    permute(&mut candidates, &mut order);
    Scoring {
        category: req.category,
        blended: req.blend.is_some(),
        preference: w,
        prompt_tokens: req.prompt_tokens,
        expected_output_tokens: out_tokens,
        candidates,
    }
}

/// Puts `items[order[k]]` at position `k`, in place, by following the permutation's cycles (at most one swap per
/// item, and no second vector of the large candidates). Leaves `order` as the identity.
fn permute<T>(items: &mut [T], order: &mut [usize]) {
    debug_assert_eq!(items.len(), order.len());
    for start in 0..order.len() {
        let mut k = start;
        while order[k] != start {
            let from = order[k];
            items.swap(k, from);
            order[k] = k;
            k = from;
        }
        order[k] = k;
    }
}

fn evaluate<'a>(
    spec: &ModelSpec,
    req: &ScoreRequest<'_>,
    cx: &ScoreContext<'a>,
    room: &Room<'a>,
    live: Option<&LiveModel>,
    out_tokens: u64,
) -> Candidate {
    let name = &spec.name;
    let profile = cx.profiles.get(name);
    let prior = cx.config.routing.prior_quality;
    let k = cx.config.routing.prior_weight;
    let posterior = |category: Category| {
        let (n, successes) = profile.map_or((0, 0), |p| p.counts(category));
        let q = if n == 0 && k == 0.0 { prior } else { (f64::from(successes) + prior * k) / (f64::from(n) + k) };
        (n, q)
    };
    let (n, mut quality) = posterior(req.category);
    if let Some(blend) = &req.blend {
        let total: f64 = blend.iter().map(|p| f64::from(*p)).sum();
        if total > 0.0 {
            quality = Category::ALL.iter().map(|c| f64::from(blend[c.index()]) * posterior(*c).1).sum::<f64>() / total;
        }
    }
    let backend = spec.backend.as_ref().map_or_else(|| Arc::clone(&LOCAL_BACKEND), |b| Arc::clone(&b.name));
    let mut c = Candidate {
        fallback_only: spec.remote() && cx.config.routing.remote == RemotePolicy::Fallback,
        quality,
        samples: n,
        profiled: profile.is_some_and(|p| p.profiled()),
        stale: profile.is_some_and(|p| p.stale),
        ..Candidate::unscored(name.clone(), backend)
    };
    if let Some(reason) = exclusion(spec, req, cx) {
        c.excluded = Some(reason);
        return c;
    }
    let prefill =
        live.and_then(|l| l.prefill_tps()).or(profile.and_then(|p| p.prefill_tps)).unwrap_or(PRIOR_PREFILL_TPS);
    let decode = live.and_then(|l| l.decode_tps()).or(profile.and_then(|p| p.decode_tps)).unwrap_or(PRIOR_DECODE_TPS);
    let service = req.prompt_tokens as f64 / prefill + out_tokens as f64 / decode;
    c.latency.prefill = req.prompt_tokens as f64 / prefill;
    c.latency.decode = out_tokens as f64 / decode;
    if spec.backend.as_ref().is_some_and(|b| b.fleet) {
        // Served by the fleet: the best node for it, with that node's own load, eviction and queue.
        let size = RequestSize {
            prompt_tokens: req.prompt_tokens,
            out_tokens,
            context_tokens: (!req.embedding).then_some(req.needs.context_tokens),
        };
        let best = cx.fleet.ranked(name, size, prefill, decode).into_iter().next();
        let Some((offer, latency)) = best else {
            c.excluded = Some(if cx.fleet.offers.get(name).is_some_and(|o| !o.is_empty()) {
                "no fleet node has room for it".into()
            } else {
                "no fleet node serves it now".into()
            });
            return c;
        };
        c.backend = Arc::clone(&offer.node_name);
        c.loaded = offer.loaded;
        c.latency = latency;
        if !offer.loaded {
            c.evictions = offer.evicts.clone();
        }
        return c;
    }
    if let Some(backend) = &spec.backend {
        // Served by its own server: always warm, queued behind its in-flight requests, priced when it says so.
        let load = cx.backends.get(backend.index).copied().unwrap_or_default();
        c.loaded = !cx.cold_remote.contains(name);
        if !c.loaded {
            c.latency.load = live
                .and_then(|l| l.load_seconds())
                .or(profile.and_then(|p| p.load_seconds))
                .unwrap_or(PRIOR_REMOTE_LOAD_SECONDS);
        }
        c.latency.queue = f64::from(load.in_flight / load.capacity.max(1)) * service;
        if spec.priced() {
            c.cost = Some(load.cost(req.prompt_tokens, out_tokens));
        }
        c.latency.total = c.latency.queue + c.latency.load + c.latency.prefill + c.latency.decode;
        return c;
    }
    let entry = cx.ledger.entry(name);
    // Ollama serves `num_parallel` requests of a model at once; the rest queue.
    let parallel = cx.config.ollama.num_parallel.max(1);
    c.latency.queue = f64::from(entry.map_or(0, |e| e.in_flight) / parallel) * service;
    let cost = vram_cost(spec, cx, room, live);
    // A model that fits the GPUs but must run partly offloaded now (other processes hold memory) is slower than its
    // measurements, which were taken with all of it on the GPU.
    if cost.offloaded {
        c.latency.prefill *= OFFLOAD_PREFILL_SLOWDOWN;
        c.latency.decode *= OFFLOAD_DECODE_SLOWDOWN;
    }
    c.loaded = cost.loaded;
    c.latency.load = cost.load;
    c.latency.eviction = cost.eviction;
    c.evictions = cost.victims;
    if let Some(reason) = cost.refused {
        c.excluded = Some(format!("no VRAM: {reason}").into());
    }
    if c.loaded
        && let Some((model, prefix)) = req.affinity
        && model == name
        && req.prompt_tokens > 0
    {
        // Ollama reuses the KV cache of this conversation's previous turn: only the new turns are prefilled.
        c.cached_prefix_tokens = prefix.min(req.prompt_tokens);
        c.latency.prefill *= (req.prompt_tokens - c.cached_prefix_tokens) as f64 / req.prompt_tokens as f64;
    }
    c.latency.total = c.latency.queue + c.latency.load + c.latency.eviction + c.latency.prefill + c.latency.decode;
    c
}

/// What getting a local model into VRAM would cost now, as the scorer prices it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VramCost {
    /// Loaded (nothing to do).
    pub loaded: bool,
    /// Seconds of the cold load (measured, else estimated from its size).
    pub load: f64,
    /// The price of making room: the unloads, and half the reload time of each model evicted (or a penalty for
    /// waiting on busy ones).
    pub eviction: f64,
    pub victims: Vec<ModelName>,
    /// It fits the GPUs but must run partly offloaded now (other processes hold memory).
    pub offloaded: bool,
    /// Why it cannot be loaded now, when it cannot.
    pub refused: Option<String>,
}

/// Prices getting local model `spec` into VRAM from the ledger's `room`.
pub fn vram_cost<'a>(spec: &ModelSpec, cx: &ScoreContext<'a>, room: &Room<'a>, live: Option<&LiveModel>) -> VramCost {
    if spec.cloud {
        // Served from ollama.com by the local Ollama: nothing to load, no memory taken.
        return VramCost { loaded: true, ..VramCost::default() };
    }
    let name = &spec.name;
    let entry = cx.ledger.entry(name);
    let num_ctx = cx.config.num_ctx_for(name);
    let estimate = spec.estimate_vram(num_ctx);
    let need = entry.map_or(estimate, |e| e.expected_or(estimate));
    let plan = cx.ledger.plan_in(room, name, need);
    let offloaded = matches!(plan, Plan::Load { offload: true, .. } | Plan::Evict { offload: true, .. })
        && need <= cx.ledger.gpus().iter().map(|g| cx.ledger.budget(g.index)).sum::<u64>();
    let mut cost = VramCost { offloaded, ..VramCost::default() };
    if matches!(plan, Plan::Ready) {
        cost.loaded = true;
        return cost;
    }
    cost.load = live
        .and_then(|l| l.load_seconds())
        .or(cx.profiles.get(name).and_then(|p| p.load_seconds))
        .or(entry.and_then(|e| e.load_seconds))
        .unwrap_or_else(|| estimated_reload_seconds(need));
    match plan {
        Plan::Evict { victims, .. } => {
            cost.eviction = victims
                .iter()
                .map(|v| {
                    let reload = cx
                        .ledger
                        .entry(v)
                        .and_then(|e| e.load_seconds)
                        .unwrap_or_else(|| estimated_reload_seconds(cx.ledger.expected_bytes(v, 0)));
                    UNLOAD_SECONDS + REEVICT_FACTOR * reload
                })
                .sum();
            cost.victims = victims;
        }
        Plan::Wait { .. } => cost.eviction = WAIT_PENALTY_SECONDS,
        Plan::Refuse { reason } => cost.refused = Some(reason),
        Plan::Join | Plan::Load { .. } | Plan::Ready => {}
    }
    cost
}

/// Why `spec` cannot serve the request, if it cannot.
fn exclusion(spec: &ModelSpec, req: &ScoreRequest<'_>, cx: &ScoreContext<'_>) -> Option<Cow<'static, str>> {
    if req.allow.is_some_and(|allow| !allow.contains(&spec.name)) {
        return Some("not among the task's models".into());
    }
    let caps = &spec.capabilities;
    if req.embedding {
        if !caps.embedding {
            return Some("not an embedding model".into());
        }
    } else if !caps.completion {
        return Some("cannot generate text (embedding only)".into());
    }
    if req.needs.tools && !caps.tools {
        return Some("no tool support".into());
    }
    if req.needs.vision && !caps.vision {
        return Some("no vision support".into());
    }
    if req.needs.thinking && !caps.thinking {
        return Some("no thinking support".into());
    }
    if req.needs.insert && !caps.insert {
        return Some("no fill-in-the-middle (suffix) support".into());
    }
    if spec.remote() && cx.config.routing.remote == RemotePolicy::Never {
        return Some(if spec.cloud {
            "Ollama cloud model, and routing.remote = \"never\"".into()
        } else {
            "priced backend, and routing.remote = \"never\"".into()
        });
    }
    if cx.config.model_settings(&spec.name).is_some_and(|s| s.exclude) {
        return Some("excluded by configuration".into());
    }
    if cx.open_breakers.contains(&spec.name) {
        return Some("circuit breaker open after repeated failures".into());
    }
    if !req.embedding {
        let ctx = serving_ctx(spec, cx.config);
        if req.needs.context_tokens > ctx {
            return Some(
                format!("context too small ({} tokens needed, {ctx} loaded)", req.needs.context_tokens).into(),
            );
        }
    }
    None
}

/// The context, in tokens, model `spec` serves prompts with: the local instance's (`num_ctx`, at most what the model
/// was trained for), or another server's own (unknown: `u64::MAX`, no reason to refuse).
pub fn serving_ctx(spec: &ModelSpec, config: &Config) -> u64 {
    if !spec.local() {
        spec.context_length.unwrap_or(u64::MAX)
    } else {
        spec.effective_ctx(config.num_ctx_for(&spec.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::{CategoryQuality, ModelProfile};
    use std::time::Duration;
    use switchyard_core::Capabilities;
    use switchyard_core::config::{Strategy, VramLimit};
    use switchyard_core::gpu::GpuSnapshot;
    use switchyard_core::ollama::types::ModelDetails;
    use switchyard_vram::ledger::{GpuState, LedgerConfig};

    const GIB: u64 = 1024 * 1024 * 1024;

    struct World {
        config: Config,
        catalog: Catalog,
        profiles: ProfileTable,
        live: LiveStats,
        ledger: Ledger,
    }

    fn spec(name: &str, gib: u64, caps: &[&str]) -> ModelSpec {
        ModelSpec {
            name: ModelName::parse(name).unwrap(),
            digest: "d".into(),
            size_bytes: gib * GIB,
            details: ModelDetails::default(),
            capabilities: Capabilities::from_names(caps.iter().copied()),
            context_length: Some(32768),
            kv_bytes_per_token: Some(64 * 1024),
            block_count: Some(32),
            backend: None,
            cloud: false,
        }
    }

    fn profile(successes: u32, n: u32, decode: f64, load: f64) -> ModelProfile {
        let mut p = ModelProfile {
            decode_tps: Some(decode),
            prefill_tps: Some(decode * 20.0),
            load_seconds: Some(load),
            ..Default::default()
        };
        for c in Category::PROFILED {
            p.categories[c.index()] =
                Some(CategoryQuality { n, successes, ci_low: 0.0, ci_high: 1.0, mean_output_tokens: Some(200.0) });
        }
        p
    }

    fn world() -> World {
        let mut catalog = Catalog::default();
        for s in [
            spec("small", 2, &["completion", "tools"]),
            spec("big", 9, &["completion"]),
            spec("embed", 1, &["embedding"]),
        ] {
            catalog.models.insert(s.name.clone(), s);
        }
        let mut profiles = ProfileTable::default();
        profiles.models.insert(ModelName::parse("small").unwrap(), profile(10, 20, 150.0, 1.5));
        profiles.models.insert(ModelName::parse("big").unwrap(), profile(18, 20, 40.0, 6.0));
        let ledger = Ledger::new(
            LedgerConfig {
                limit: VramLimit::Percent(100.0),
                headroom: 0,
                unload_threshold_pct: 95.0,
                threshold_min_idle: Duration::ZERO,
                strategy: Strategy::Cost,
                max_loaded: 3,
                idle_ttl: Some(Duration::from_secs(600)),
                cost_half_life: Duration::from_secs(3600),
            },
            vec![GpuState { index: 0, name: "g".into(), total: 24 * GIB, used: 0, foreign: 0 }],
        );
        World { config: Config::default(), catalog, profiles, live: LiveStats::default(), ledger }
    }

    /// Scores `req` against the world `w`.
    fn score_in(w: &World, req: &ScoreRequest<'_>) -> Scoring {
        score_fleet(w, req, &FleetView::default())
    }

    fn score_fleet(w: &World, req: &ScoreRequest<'_>, fleet: &FleetView) -> Scoring {
        let cx = ScoreContext {
            config: &w.config,
            catalog: &w.catalog,
            profiles: &w.profiles,
            live: &w.live,
            ledger: &w.ledger,
            open_breakers: &[],
            backends: &[],
            cold_remote: &[],
            fleet,
        };
        score(req, &cx)
    }

    fn run(w: &World, preference: f64, needs: Needs) -> Scoring {
        run_blended(w, preference, needs, None)
    }

    /// A math request scored in `w`, its qualities blended by `blend` when given.
    fn run_blended(w: &World, preference: f64, needs: Needs, blend: Option<[f32; 7]>) -> Scoring {
        let req = ScoreRequest {
            category: Category::Math,
            needs: &needs,
            embedding: false,
            preference,
            prompt_tokens: 50,
            max_output_tokens: None,
            blend,
            allow: None,
            affinity: None,
        };
        score_in(w, &req)
    }

    fn needs() -> Needs {
        Needs { context_tokens: 300, ..Default::default() }
    }

    #[test]
    fn an_unsure_classification_blends_the_qualities_by_probability() {
        let mut w = world();
        // "small" is good at math and bad at everything else.
        let mut small = profile(2, 20, 150.0, 1.5);
        small.categories[Category::Math.index()] =
            Some(CategoryQuality { n: 20, successes: 20, ci_low: 0.0, ci_high: 1.0, mean_output_tokens: Some(200.0) });
        w.profiles.models.insert(ModelName::parse("small").unwrap(), small);
        let sure = run(&w, 1.0, needs());
        let small_sure =
            sure.candidates.iter().find(|c| c.model == ModelName::parse("small").unwrap()).unwrap().quality;
        let mut blend = [0.0f32; 7];
        blend[Category::Math.index()] = 0.5;
        blend[Category::Factual.index()] = 0.5;
        let blended = run_blended(&w, 1.0, needs(), Some(blend));
        assert!(blended.blended && !sure.blended);
        let small_blended =
            blended.candidates.iter().find(|c| c.model == ModelName::parse("small").unwrap()).unwrap().quality;
        let k = w.config.routing.prior_weight;
        let prior = w.config.routing.prior_quality;
        let factual = (2.0 + prior * k) / (20.0 + k);
        assert!((small_blended - (0.5 * small_sure + 0.5 * factual)).abs() < 1e-9, "{small_blended} {small_sure}");
        // Blending by a certain distribution is the plain quality.
        let mut certain = [0.0f32; 7];
        certain[Category::Math.index()] = 1.0;
        let same = run_blended(&w, 1.0, needs(), Some(certain));
        let q = same.candidates.iter().find(|c| c.model == ModelName::parse("small").unwrap()).unwrap().quality;
        assert!((q - small_sure).abs() < 1e-12);
    }

    fn offer(node: usize, loaded: bool, in_flight: u32, eviction_seconds: f64) -> NodeOffer {
        NodeOffer {
            node,
            node_name: Arc::from(["a", "b", "c"][node]),
            loaded,
            in_flight,
            parallel: 1,
            load_seconds: 4.0,
            eviction_seconds,
            evicts: if eviction_seconds > 0.0 { vec![ModelName::parse("other").unwrap()] } else { Vec::new() },
            refused: None,
            prefill_tps: Some(2000.0),
            decode_tps: Some(50.0),
            context: None,
        }
    }

    /// `w` with its models served by the fleet instead of the local Ollama.
    fn fleet_world() -> World {
        let mut w = world();
        for s in w.catalog.models.values_mut() {
            s.backend = switchyard_core::fleet::NodeModel::from_spec(s).spec().and_then(|f| f.backend);
        }
        w
    }

    #[test]
    fn a_node_is_not_offered_a_request_longer_than_its_context() {
        let narrow = NodeOffer { context: Some(4096), ..offer(0, true, 0, 0.0) };
        assert!(narrow.fits(Some(4096)), "exactly the context fits");
        assert!(!narrow.fits(Some(4097)));
        assert!(narrow.fits(None), "an embedding asks nothing of the context");
        let mut view = FleetView::default();
        let big = ModelName::parse("big").unwrap();
        view.offers.insert(big.clone(), vec![narrow, NodeOffer { context: Some(16384), ..offer(1, false, 0, 0.0) }]);
        let nodes = |prompt, context_tokens| {
            let size = RequestSize { prompt_tokens: prompt, out_tokens: 100, context_tokens };
            view.ranked(&big, size, 2000.0, 50.0).iter().map(|(o, _)| o.node).collect::<Vec<_>>()
        };
        assert_eq!(nodes(100, Some(200)), vec![0, 1], "the loaded node first");
        assert_eq!(nodes(6000, Some(6100)), vec![1], "only the node whose context fits");
        assert!(nodes(20000, Some(20100)).is_empty());
        assert_eq!(nodes(6000, None), vec![0, 1], "an embedding goes to any node");
    }

    #[test]
    fn a_fleet_model_is_priced_on_its_best_node() {
        let w = fleet_world();
        let big = ModelName::parse("big").unwrap();
        let small = ModelName::parse("small").unwrap();
        let mut view = FleetView::default();
        // a: cold, evicting; b: cold, room to spare; c: cannot load it.
        view.offers.insert(
            big.clone(),
            vec![
                offer(0, false, 0, 3.0),
                offer(1, false, 0, 0.0),
                NodeOffer { refused: Some("too big".into()), ..offer(2, true, 0, 0.0) },
            ],
        );
        let n = needs();
        let req = ScoreRequest {
            category: Category::Math,
            needs: &n,
            embedding: false,
            preference: 1.0,
            prompt_tokens: 50,
            max_output_tokens: Some(100),
            blend: None,
            allow: None,
            affinity: None,
        };
        let scoring = score_fleet(&w, &req, &view);
        let c = scoring.candidates.iter().find(|c| c.model == big).unwrap();
        assert_eq!(&*c.backend, "b", "the node where loading it evicts nothing");
        assert!(!c.loaded);
        assert!(c.evictions.is_empty());
        assert!((c.latency.load - 4.0).abs() < 1e-9 && c.latency.eviction == 0.0);
        assert!((c.latency.decode - 2.0).abs() < 1e-9, "the node's own decode rate: {:?}", c.latency);
        let s = scoring.candidates.iter().find(|c| c.model == small).unwrap();
        assert_eq!(s.excluded.as_deref(), Some("no fleet node serves it now"));

        // Loaded on a with a short queue beats a cold load anywhere; a long queue does not.
        view.offers.insert(big.clone(), vec![offer(0, true, 1, 0.0), offer(1, false, 0, 0.0)]);
        let c = score_fleet(&w, &req, &view).candidates.into_iter().find(|c| c.model == big).unwrap();
        assert_eq!((&*c.backend, c.loaded), ("a", true));
        assert!(c.latency.queue > 0.0);
        view.offers.insert(big.clone(), vec![offer(0, true, 4, 0.0), offer(1, false, 0, 0.0)]);
        let c = score_fleet(&w, &req, &view).candidates.into_iter().find(|c| c.model == big).unwrap();
        assert_eq!(&*c.backend, "b", "four requests queued on a take longer than a load on b");

        // Every node refuses: excluded, with the reason.
        view.offers.insert(big.clone(), vec![NodeOffer { refused: Some("x".into()), ..offer(0, false, 0, 0.0) }]);
        let c = score_fleet(&w, &req, &view).candidates.into_iter().find(|c| c.model == big).unwrap();
        assert_eq!(c.excluded.as_deref(), Some("no fleet node has room for it"));
        let size = RequestSize { prompt_tokens: 50, out_tokens: 100, context_tokens: Some(150) };
        assert!(view.ranked(&big, size, 400.0, 15.0).is_empty());
    }

    #[test]
    fn permuting_in_place_puts_each_item_where_the_order_says() {
        let orders: [&[usize]; 5] = [&[], &[0], &[1, 0], &[2, 0, 1], &[3, 1, 4, 0, 2]];
        for order in orders {
            let mut items: Vec<usize> = (0..order.len()).map(|i| i * 10).collect();
            let mut order = order.to_vec();
            let expected: Vec<usize> = order.iter().map(|&i| i * 10).collect();
            permute(&mut items, &mut order);
            assert_eq!(items, expected);
        }
    }

    #[test]
    fn preference_trades_quality_for_speed() {
        let w = world();
        assert_eq!(run(&w, 0.95, needs()).candidates[0].model.as_str(), "big:latest");
        assert_eq!(run(&w, 0.05, needs()).candidates[0].model.as_str(), "small:latest");
    }

    #[test]
    fn needs_filter_candidates_by_capability() {
        let w = world();
        let scoring = run(&w, 0.95, Needs { tools: true, ..needs() });
        let eligible: Vec<&str> = scoring.eligible().map(|c| c.model.as_str()).collect();
        assert_eq!(eligible, ["small:latest"]);
        let big = scoring.candidates.iter().find(|c| c.model.as_str() == "big:latest").unwrap();
        assert_eq!(big.excluded.as_deref(), Some("no tool support"));
        let too_long = run(&w, 0.5, Needs { context_tokens: 100_000, ..needs() });
        assert!(too_long.eligible().next().is_none());
        assert!(too_long.why_none().contains("context too small"));
    }

    /// A math request of `prompt_tokens` scored in `w` with a task's allow-list and a conversation's affinity.
    fn run_with(
        w: &World,
        prompt_tokens: u64,
        allow: Option<&[ModelName]>,
        affinity: Option<(&ModelName, u64)>,
    ) -> Scoring {
        let needs = Needs { context_tokens: prompt_tokens + 300, ..needs() };
        let req = ScoreRequest {
            category: Category::Math,
            needs: &needs,
            embedding: false,
            preference: 0.5,
            prompt_tokens,
            max_output_tokens: None,
            blend: None,
            allow,
            affinity,
        };
        score_in(w, &req)
    }

    #[test]
    fn a_tasks_models_exclude_the_others() {
        let w = world();
        let only = [ModelName::parse("big").unwrap()];
        let scoring = run_with(&w, 50, Some(&only), None);
        let eligible: Vec<&str> = scoring.eligible().map(|c| c.model.as_str()).collect();
        assert_eq!(eligible, ["big:latest"]);
        let small = scoring.candidates.iter().find(|c| c.model.as_str() == "small:latest").unwrap();
        assert_eq!(small.excluded.as_deref(), Some("not among the task's models"));
    }

    #[test]
    fn affinity_leaves_the_held_prefix_out_of_a_loaded_models_prefill_only() {
        let mut w = world();
        let small = ModelName::parse("small").unwrap();
        let big = ModelName::parse("big").unwrap();
        let plain = run_with(&w, 3000, None, Some((&small, 2000)));
        let cold = plain.candidates.iter().find(|c| c.model == small).unwrap();
        // Not loaded: its cache is gone, nothing is saved.
        assert_eq!(cold.cached_prefix_tokens, 0);
        w.ledger.begin_load(&small, switchyard_vram::Shares::one(0, 3 * GIB), None, Instant::now());
        w.ledger.finish_load(&small, Ok((1.5, None)), Instant::now());
        let before = run_with(&w, 3000, None, None);
        let after = run_with(&w, 3000, None, Some((&small, 2000)));
        let find = |s: &Scoring, m: &ModelName| s.candidates.iter().find(|c| &c.model == m).unwrap().clone();
        let (s0, s1) = (find(&before, &small), find(&after, &small));
        assert_eq!(s1.cached_prefix_tokens, 2000);
        assert!((s1.latency.prefill - s0.latency.prefill * 1000.0 / 3000.0).abs() < 1e-9);
        assert!(s1.latency.total < s0.latency.total);
        // Every other model's latency is as before; next to the faster held model, its speed term is lower.
        assert_eq!(find(&before, &big).latency, find(&after, &big).latency);
        assert!(find(&after, &big).utility < find(&before, &big).utility);
        assert_eq!(find(&after, &big).cached_prefix_tokens, 0);
    }

    #[test]
    fn a_loaded_model_beats_a_marginally_better_cold_one() {
        let mut w = world();
        // "small" is loaded; make the two equally fast so only quality and the cold start differ.
        w.profiles.models.insert(ModelName::parse("small").unwrap(), profile(17, 20, 40.0, 6.0));
        let small = ModelName::parse("small").unwrap();
        w.ledger.begin_load(&small, switchyard_vram::Shares::one(0, 3 * GIB), None, Instant::now());
        w.ledger.finish_load(&small, Ok((1.5, None)), Instant::now());
        let scoring = run(&w, 0.7, needs());
        assert_eq!(scoring.candidates[0].model.as_str(), "small:latest");
        assert!(scoring.candidates[0].loaded);
        let big = &scoring.candidates[1];
        assert!(big.latency.load > 0.0 && big.quality > scoring.candidates[0].quality);
    }

    #[test]
    fn a_model_offloaded_only_because_of_other_processes_is_predicted_slower() {
        let big =
            |w: &World| run(w, 0.5, needs()).candidates.into_iter().find(|c| c.model.as_str() == "big:latest").unwrap();
        let mut w = world();
        w.ledger.note_layers(&ModelName::parse("big").unwrap(), Some(32));
        let alone = big(&w);
        // Another process holds 20 GiB: "big" (about 10 GiB) can only run partly offloaded in the 4 GiB left.
        let snapshot = GpuSnapshot {
            gpus: vec![switchyard_core::gpu::GpuMemory {
                index: 0,
                name: "g".into(),
                total_bytes: 24 * GIB,
                used_bytes: 20 * GIB,
                free_bytes: 4 * GIB,
            }],
            processes: Vec::new(),
        };
        w.ledger.apply_gpus(&snapshot);
        let shared = big(&w);
        assert!(shared.excluded.is_none(), "{:?}", shared.excluded);
        assert!((shared.latency.decode - 10.0 * alone.latency.decode).abs() < 1e-9);
        assert!((shared.latency.prefill - 3.0 * alone.latency.prefill).abs() < 1e-9);
    }

    #[test]
    fn unprofiled_models_get_the_prior_and_are_flagged() {
        let mut w = world();
        w.profiles.models.clear();
        let scoring = run(&w, 1.0, needs());
        for c in scoring.eligible() {
            assert!(!c.profiled);
            assert!((c.quality - w.config.routing.prior_quality).abs() < 1e-9);
        }
    }

    #[test]
    fn few_samples_are_shrunk_toward_the_prior() {
        let mut w = world();
        w.profiles.models.insert(ModelName::parse("small").unwrap(), profile(1, 1, 150.0, 1.5));
        let c = run(&w, 1.0, needs()).candidates.into_iter().find(|c| c.model.as_str() == "small:latest").unwrap();
        assert!(c.quality < 0.6, "one lucky answer is not a quality of 1.0: {}", c.quality);
    }
}
