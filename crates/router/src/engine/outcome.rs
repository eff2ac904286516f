//! A finished outcome, and what finishing an answer means: the duration and first-token metrics, the model's
//! circuit breaker settled, and the answer's own timings folded into the live averages (speed per model, answer
//! length per category). A buffered answer is finished before it is handed back; a stream when its relay ends.

use super::Request;
use super::decision::{category_label, learned_category};
use crate::backends::Hold;
use crate::cache::replay::{self, Capture, Captured};
use crate::cache::{CacheStatus, Hit, Plan};
use crate::forward::{OnEnd, RelayBody, Reply, StreamEnd, Transform, UpstreamBody};
use crate::request::{Endpoint, Target};
use crate::state::AppState;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use switchyard_core::ollama::Timings;
use switchyard_core::{Category, ModelName};

/// What the engine hands back to a surface to encode.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The model that served the request.
    pub model: ModelName,
    /// What the answer calls the model: the client's spelling for an explicit model, the chosen one for `auto`.
    pub shown: String,
    /// The category label for headers and metrics.
    pub category: &'static str,
    pub answer: Answer,
    /// What the response cache did.
    pub cache: CacheStatus,
    /// How the task's cascade went, when one served the request.
    pub cascade: Option<Box<super::cascade::Report>>,
    /// The fleet node that served it (a fleet front).
    pub node: Option<String>,
}

/// The body of an outcome.
#[derive(Debug)]
pub(crate) enum Answer {
    /// An empty-prompt load or unload was done; the reason (`load`, `unload`) goes in the answer.
    Control(&'static str),
    /// The whole upstream answer (`stream: false`), already finished.
    Buffered(Bytes),
    /// The upstream stream, to be relayed.
    Stream(Relay),
}

/// An upstream stream with everything its relay needs; the lease or slot is held until the relay's body ends.
pub(crate) struct Relay {
    first: Bytes,
    rest: UpstreamBody,
    idle: Duration,
    hold: Option<Hold>,
    on_end: OnEnd,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("first", &self.first.len()).field("idle", &self.idle).finish_non_exhaustive()
    }
}

impl Relay {
    /// The response body relaying the stream through `transform`.
    pub(crate) fn into_body<T: Transform>(self, transform: T) -> RelayBody<T> {
        RelayBody::new(self.first, self.rest, transform, self.idle, Box::new(self.hold), self.on_end)
    }
}

/// A request that reached a model.
pub(super) struct Admitted {
    pub model: ModelName,
    /// What `model` is called in the upstream request (the client's spelling for explicit requests).
    pub upstream_name: String,
    pub reply: Reply,
    pub hold: Hold,
    /// The longest gap between stream chunks (the backend's idle timeout).
    pub idle: Duration,
    /// When forwarding started.
    pub forwarded_at: Instant,
}

/// Turns an admitted reply into an outcome: a buffered answer is finished now (and its lease released), a stream
/// gets a relay that finishes it when it ends.
pub(super) fn finish(
    state: &AppState,
    req: &Request,
    admitted: Admitted,
    category: &'static str,
    plan: Option<Plan>,
) -> Outcome {
    let Admitted { model, upstream_name, reply, hold, idle, .. } = admitted;
    let node = match &hold {
        crate::backends::Hold::Fleet(h) => h.node().map(str::to_string),
        _ => None,
    };
    let learned = learned_category(&req.prepared);
    let cache = plan.as_ref().map_or(CacheStatus::Off, Plan::missed);
    // `auto` requests have a decision, which learns how long the request really took.
    let decided = matches!(req.prepared.target, Target::Auto { .. });
    let endpoint = req.prepared.endpoint;
    // Which model wrote an `auto` generate's `context`, for the next turn that sends it back (only Ollama's surface
    // shows it, and a raw generate has none).
    let keeps_context = decided
        && endpoint == Endpoint::Generate
        && req.surface == super::Surface::Ollama
        && req.prepared.body.get("raw").and_then(serde_json::Value::as_bool) != Some(true);
    let answer = match reply {
        Reply::Buffered(bytes) => {
            if let Some(plan) = &plan {
                state.cache.insert(state, plan, endpoint, &model, bytes.clone());
            }
            let elapsed = req.started.elapsed().as_secs_f64();
            if decided {
                state.decisions.measured(&req.request_id, model.as_str(), elapsed);
            }
            state.metrics.request_duration.with_label_values(&[req.route, model.as_str()]).observe(elapsed);
            state.metrics.ttft.with_label_values(&[req.route, model.as_str()]).observe(elapsed);
            state.breaker.success(&model);
            if let Some(t) = Timings::from_slice(&bytes) {
                learn(state, &model, learned, &t);
            }
            if keeps_context {
                let context = serde_json::from_slice::<WithContext>(&bytes).ok().and_then(|a| a.context);
                if let Some(key) = crate::affinity::Contexts::key(context.as_ref()) {
                    state.contexts.wrote(key, &model);
                }
            }
            drop(hold);
            Answer::Buffered(bytes)
        }
        Reply::Stream { first, rest } => {
            state
                .metrics
                .ttft
                .with_label_values(&[req.route, model.as_str()])
                .observe(req.started.elapsed().as_secs_f64());
            let decision = decided.then(|| req.request_id.clone());
            let mut on_end = finisher(state, model.clone(), learned, (req.route, decision, keeps_context), req.started);
            let mut rest = rest;
            if let Some(plan) = plan.filter(|p| p.write) {
                let (capture, captured) = Capture::new(&first, rest, capture_limit(state));
                rest = UpstreamBody::new(capture);
                on_end = cache_on_end(state, plan, endpoint, model.clone(), captured, on_end);
            }
            Answer::Stream(Relay { first, rest, idle, hold: Some(hold), on_end })
        }
    };
    Outcome { model, shown: upstream_name, category, answer, cache, cascade: None, node }
}

/// The most bytes of one streamed answer captured for the cache: the largest answer stored, with room for the
/// stream's framing (a JSON object per chunk, several times the text it carries); a larger stream would not fit.
fn capture_limit(state: &AppState) -> usize {
    usize::try_from(state.cache.max_answer_bytes().saturating_mul(4)).unwrap_or(usize::MAX)
}

/// After `then`, stores a stream that completed (assembled into the buffered shape) in the cache.
fn cache_on_end(
    state: &AppState,
    plan: Plan,
    endpoint: Endpoint,
    model: ModelName,
    captured: Captured,
    then: OnEnd,
) -> OnEnd {
    let state = state.clone();
    Box::new(move |end: StreamEnd| {
        let complete = matches!(end, StreamEnd::Complete(_));
        then(end);
        if !complete {
            return;
        }
        let bytes = captured.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(answer) = bytes.and_then(|b| replay::assemble(endpoint, &b)) {
            state.cache.insert(&state, &plan, endpoint, &model, answer);
        }
    })
}

/// An answer from the cache: the stored answer with the model as the client should see it, whole or replayed as
/// a stream.
pub(super) fn replay(req: &Request, hit: Hit) -> Outcome {
    let prepared = &req.prepared;
    let entry = hit.entry;
    // An explicit model keeps the client's spelling, as a forwarded answer does.
    let shown = match prepared.target {
        Target::Model(_) => prepared.requested.clone(),
        Target::Auto { .. } => entry.model.to_string(),
    };
    // The stored answer as it is (and its stream, made once) when it already names the model as shown; else a copy
    // with `model` rewritten.
    let (whole, lines) = if shown == entry.shown {
        let lines = prepared.stream.then(|| {
            entry.lines.get_or_init(|| replay::stream_lines(entry.endpoint, &replay::parse(&entry.answer))).clone()
        });
        (entry.answer.clone(), lines)
    } else {
        let renamed = replay::renamed(&entry.answer, &shown);
        let lines = prepared.stream.then(|| replay::stream_lines(entry.endpoint, &renamed));
        (Bytes::from(serde_json::to_vec(&renamed).unwrap_or_default()), lines)
    };
    let answer = match lines {
        Some(lines) => stream_of(lines),
        None => Answer::Buffered(whole),
    };
    Outcome {
        model: entry.model.clone(),
        shown,
        category: category_label(prepared),
        answer,
        cache: hit.status,
        cascade: None,
        node: None,
    }
}

/// A stream made of a whole answer's native NDJSON lines (a cache hit, or a cascade's accepted answer), relayed
/// like an upstream stream so that each surface encodes it in its own shape.
pub(super) fn stream_of(lines: Bytes) -> Answer {
    let rest = UpstreamBody::new(http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}));
    Answer::Stream(Relay { first: lines, rest, idle: Duration::from_secs(60), hold: None, on_end: Box::new(drop) })
}

/// What to do when a stream has been delivered: learn the model's speed, settle its breaker, record metrics, and
/// give the request's decision (`decision`: its request id, for `auto`) the measured duration.
fn finisher(
    state: &AppState,
    model: ModelName,
    category: Option<Category>,
    (route, decision, keeps_context): (&'static str, Option<String>, bool),
    started: Instant,
) -> OnEnd {
    let state = state.clone();
    Box::new(move |end: StreamEnd| {
        state
            .metrics
            .request_duration
            .with_label_values(&[route, model.as_str()])
            .observe(started.elapsed().as_secs_f64());
        match end {
            StreamEnd::Complete(final_chunk) => {
                state.breaker.success(&model);
                if let Some(request_id) = &decision {
                    state.decisions.measured(request_id, model.as_str(), started.elapsed().as_secs_f64());
                }
                if let Some(t) = final_chunk.as_ref().and_then(Timings::from_json) {
                    learn(&state, &model, category, &t);
                }
                if keeps_context
                    && let Some(key) =
                        crate::affinity::Contexts::key(final_chunk.as_ref().and_then(|c| c.get("context")))
                {
                    state.contexts.wrote(key, &model);
                }
            }
            StreamEnd::Failed(reason) => {
                state.metrics.stream_errors.with_label_values(&[route]).inc();
                state.breaker.failure(&model);
                tracing::warn!(model = %model, %reason, "stream ended with an error");
            }
            StreamEnd::ClientGone => tracing::debug!(model = %model, "client closed the stream"),
        }
    })
}

/// The `context` of a generate's whole answer (the rest is skipped).
#[derive(serde::Deserialize)]
struct WithContext {
    #[serde(default)]
    context: Option<serde_json::Value>,
}

/// Folds an answer's timings into the live averages.
fn learn(state: &AppState, model: &ModelName, category: Option<Category>, t: &Timings) {
    let alpha = state.config.routing.ewma_alpha;
    state.live.observe(model, t, alpha);
    if let Some(c) = category {
        state.live.observe_output(c, t.eval_count, alpha);
    }
}
