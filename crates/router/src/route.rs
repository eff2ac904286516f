//! Routing one request: pick the candidates, admit the best through a VRAM lease, forward, and fall back to the
//! next candidate when a model fails before anything was sent.
//!
//! An explicit model has one candidate. `auto` classifies the conversation and scores every model; the decision
//! with all its components is kept for `/admin/decisions` (and a sample in the store). Failures before the first
//! byte (connection refused, a 5xx, an out-of-memory load, a timeout, a stream that broke at once) count against the
//! model's circuit breaker and move on to the next candidate, within `routing.max_attempts` and the admission wait.

use crate::decisions::DecisionEntry;
use crate::error::RouterError;
use crate::forward::{ForwardFailure, Reply};
use crate::request::{Prepared, Target};
use crate::score::{ScoreContext, ScoreRequest, Scoring, score};
use crate::state::AppState;
use crate::writer::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::ModelName;
use switchyard_core::store::{DecisionRecord, now_ms};
use switchyard_vram::{Lease, VramError};

/// Which API surface a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Ollama,
    OpenAi,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Ollama => "ollama",
            Surface::OpenAi => "openai",
        }
    }
}

/// A request that reached a model.
#[derive(Debug)]
pub struct Routed {
    pub model: ModelName,
    /// What `model` is called in the upstream request (the client's spelling for explicit requests).
    pub upstream_name: String,
    pub reply: Reply,
    pub lease: Lease,
    /// When forwarding started.
    pub forwarded_at: Instant,
}

/// The category reported in `x-switchyard-category` and metrics.
pub fn category_label(prepared: &Prepared) -> &'static str {
    if prepared.endpoint.is_embedding() { "embedding" } else { prepared.classification.category.as_str() }
}

/// Scores every model for `req` against the current catalog, profiles, live timings, VRAM ledger and breakers.
pub fn score_now(state: &AppState, req: &ScoreRequest<'_>) -> Scoring {
    let catalog = state.catalog.load();
    let profiles = state.profiles.load();
    let ledger = state.vram.ledger();
    let open: Vec<ModelName> = state
        .breaker
        .snapshot()
        .into_iter()
        .filter(|(_, p)| *p == crate::breaker::Phase::Open)
        .map(|(m, _)| m)
        .collect();
    let cx = ScoreContext {
        config: &state.config,
        catalog: &catalog,
        profiles: &profiles,
        live: &state.live,
        ledger: &ledger,
        open_breakers: &open,
    };
    score(req, &cx)
}

/// Scores the models for an `auto` request and records the decision.
fn decide(
    state: &AppState,
    prepared: &Prepared,
    preference: f64,
    request_id: &str,
    surface: Surface,
) -> Vec<ModelName> {
    let started = Instant::now();
    let c = &prepared.classification;
    let output = prepared.max_output_tokens.unwrap_or_else(|| crate::classify::expected_output_tokens(c.category));
    let prompt_tokens = c.needs.context_tokens.saturating_sub(output).max(1);
    let req = ScoreRequest {
        category: c.category,
        needs: &c.needs,
        embedding: prepared.endpoint.is_embedding(),
        preference,
        prompt_tokens,
        max_output_tokens: prepared.max_output_tokens,
    };
    let scoring = score_now(state, &req);
    let candidates: Vec<ModelName> =
        scoring.eligible().take(state.config.routing.max_attempts as usize).map(|c| c.model.clone()).collect();
    let decision_us = started.elapsed().as_secs_f64() * 1e6;
    tracing::Span::current().record("decision_us", decision_us);
    state.metrics.decision_duration.observe(decision_us / 1e6);
    let chosen = candidates.first().map(ToString::to_string);
    state.metrics.decisions.with_label_values(&[category_label(prepared), chosen.as_deref().unwrap_or("none")]).inc();
    let entry = Arc::new(DecisionEntry {
        request_id: request_id.to_string(),
        at: switchyard_core::ollama::types::rfc3339_nanos(chrono::Utc::now()),
        surface: surface.as_str(),
        requested: prepared.requested.clone(),
        chosen: chosen.clone(),
        decision_us,
        confidence: c.confidence,
        scoring,
    });
    if rand::random::<f64>() < state.config.routing.decision_sample_rate {
        let candidates_json = serde_json::to_string(&entry.scoring.candidates).unwrap_or_default();
        state.writer.write(Write::Decision(DecisionRecord {
            id: None,
            request_id: request_id.to_string(),
            at: now_ms(),
            surface: surface.as_str().to_string(),
            category: category_label(prepared).to_string(),
            requested: prepared.requested.clone(),
            chosen: chosen.unwrap_or_default(),
            quality_preference: preference,
            decision_us,
            candidates_json,
        }));
    }
    state.decisions.push(Arc::clone(&entry));
    tracing::debug!(request_id, category = %c.category, chosen = entry.chosen.as_deref().unwrap_or("none"), decision_us, "routing decision");
    if candidates.is_empty() {
        tracing::debug!(reason = %entry.scoring.why_none(), "no candidate");
    }
    candidates
}

/// Finds the models to try, best first.
async fn candidates(
    state: &AppState,
    prepared: &Prepared,
    request_id: &str,
    surface: Surface,
) -> Result<Vec<ModelName>, RouterError> {
    match &prepared.target {
        Target::Model(name) => {
            if state.catalog.load().get(name).is_none() {
                state.refresh_catalog_for_unknown().await?;
            }
            let catalog = state.catalog.load();
            let Some(spec) = catalog.get(name) else {
                return Err(RouterError::ModelNotFound(prepared.requested.clone()));
            };
            let caps = spec.capabilities;
            let needs = &prepared.classification.needs;
            if !prepared.endpoint.is_embedding() && !caps.completion && caps.embedding {
                return Err(RouterError::bad(
                    format!("\"{}\" does not support generate", prepared.requested),
                    Some("model".into()),
                ));
            }
            if needs.tools && !caps.tools {
                return Err(RouterError::bad(
                    format!("{} does not support tools", prepared.requested),
                    Some("tools".into()),
                ));
            }
            Ok(vec![name.clone()])
        }
        Target::Auto { preference, .. } => {
            let list = decide(state, prepared, *preference, request_id, surface);
            if list.is_empty() {
                let catalog = state.catalog.load();
                let reason = state.decisions.recent(1).first().map(|d| d.scoring.why_none()).unwrap_or_default();
                if catalog.models.is_empty() {
                    return Err(RouterError::UpstreamFailed(
                        "no models are known: Ollama has none pulled or cannot be reached (ollama pull llama3.2)"
                            .into(),
                    ));
                }
                return Err(RouterError::NoCapableModel(reason));
            }
            Ok(list)
        }
    }
}

/// Routes `prepared` to a model and returns the upstream's answer with the lease that admitted it.
pub async fn dispatch(
    state: &AppState,
    prepared: &Prepared,
    request_id: &str,
    surface: Surface,
) -> Result<Routed, RouterError> {
    let list = candidates(state, prepared, request_id, surface).await?;
    let explicit = matches!(prepared.target, Target::Model(_));
    let deadline = Instant::now() + Duration::from_millis(state.config.vram.admission_wait_ms);
    let mut last: Option<RouterError> = None;
    for (attempt, model) in list.iter().enumerate() {
        if attempt > 0 {
            let reason = last.as_ref().map_or("unknown", RouterError::kind);
            state.metrics.fallbacks.with_label_values(&[reason]).inc();
            tracing::debug!(request_id, model = %model, reason, "falling back to the next candidate");
        }
        if !state.breaker.allow(model) {
            last = Some(RouterError::UpstreamFailed(format!(
                "{model} failed repeatedly and is paused for {} s (circuit breaker); retry later or pick another model",
                state.config.breaker.cooldown_secs
            )));
            continue;
        }
        let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let lease = match state.vram.acquire_within(model, wait).await {
            Ok(lease) => lease,
            Err(e @ (VramError::Busy { .. } | VramError::QueueFull { .. })) if !explicit => {
                last = Some(e.into());
                continue;
            }
            Err(e @ VramError::LoadFailed { unreachable: true, .. }) => return Err(e.into()),
            Err(e @ VramError::LoadFailed { .. }) => {
                state.breaker.failure(model);
                last = Some(e.into());
                if explicit {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(keep_alive) = prepared.keep_alive {
            state.vram.note_keep_alive(model, keep_alive);
        }
        let upstream_name = if explicit { prepared.requested.clone() } else { model.to_string() };
        let body = prepared.upstream_body(&upstream_name, &lease.options)?;
        let forwarded_at = Instant::now();
        let span = tracing::Span::current();
        span.record("model", model.as_str());
        span.record("category", category_label(prepared));
        match state.forwarder.send(prepared.endpoint.path(), body, prepared.stream).await {
            Ok(reply) => {
                // Until the first chunk for streams, the whole answer otherwise.
                span.record("upstream_ms", forwarded_at.elapsed().as_secs_f64() * 1000.0);
                return Ok(Routed { model: model.clone(), upstream_name, reply, lease, forwarded_at });
            }
            Err(ForwardFailure::Status { status, message }) if (400..500).contains(&status) && status != 404 => {
                // The request itself is wrong for this model: another model will not fix it.
                return Err(RouterError::UpstreamRejected { status, message });
            }
            Err(ForwardFailure::Status { status: 404, message }) => {
                if explicit {
                    return Err(RouterError::UpstreamRejected { status: 404, message });
                }
                state.refresh_catalog_for_unknown().await?;
                last = Some(RouterError::UpstreamFailed(message));
            }
            Err(failure) => {
                if state.breaker.failure(model) {
                    tracing::warn!(model = %model, "circuit breaker opened");
                }
                if matches!(&failure, ForwardFailure::Status { status: 500, .. }) {
                    // A failed load (out of memory) changes what Ollama holds: reconcile now.
                    let vram = state.vram.clone();
                    state.tracker.spawn(async move {
                        let _ = vram.refresh().await;
                    });
                }
                last = Some(failure_error(&failure, model));
            }
        }
        drop(lease);
    }
    Err(last.unwrap_or_else(|| RouterError::UpstreamFailed("no candidate could be tried".into())))
}

/// The error a client sees when `failure` was the last one.
fn failure_error(failure: &ForwardFailure, model: &ModelName) -> RouterError {
    match failure {
        ForwardFailure::Connect(message) => RouterError::Unreachable(format!(
            "cannot reach Ollama ({message}); check that it is running (`ollama serve`) and that ollama.url is right"
        )),
        ForwardFailure::Status { status: 503, message } => {
            RouterError::Busy { message: format!("Ollama is busy: {message}"), retry_after_secs: 2 }
        }
        ForwardFailure::Status { status, message } => RouterError::UpstreamFailed(format!(
            "{model} failed (Ollama answered {status}: {message}); retry, or pick another model"
        )),
        ForwardFailure::Timeout(d) => RouterError::Timeout(format!(
            "{model} did not answer within {} s (ollama.first_byte_timeout_secs); the model may be overloaded",
            d.as_secs()
        )),
        ForwardFailure::Broken(message) => {
            RouterError::UpstreamFailed(format!("{model} broke off its answer: {message}"))
        }
    }
}

/// The category whose answer lengths a response teaches (none for embeddings).
pub fn learned_category(prepared: &Prepared) -> Option<switchyard_core::Category> {
    (!prepared.endpoint.is_embedding()).then_some(prepared.classification.category)
}

/// With `routing.classifier = "embedding"`, classifies an `auto` request again by its nearest labelled examples
/// (through the embedding model, admitted like any request); the rules' answer stays on any failure.
pub async fn refine_classification(state: &AppState, prepared: &mut Prepared) {
    if !matches!(prepared.target, Target::Auto { .. }) || prepared.endpoint.is_embedding() {
        return;
    }
    let classifier = state.embedding_classifier.load_full();
    let Some(classifier) = classifier.as_ref() else { return };
    let Ok(model) = ModelName::parse(&state.config.routing.embedding_model) else { return };
    let Ok(_lease) = state.vram.acquire_within(&model, Duration::from_secs(2)).await else { return };
    let refined = {
        let Ok((turns, _)) = crate::request::read_turns(prepared.endpoint, &prepared.body, prepared.keep_alive) else {
            return;
        };
        let needs = &prepared.classification.needs;
        let input = crate::classify::ClassifyInput {
            turns: &turns,
            has_tools: needs.tools,
            wants_json: needs.json,
            max_output_tokens: prepared.max_output_tokens,
        };
        classifier.classify(&input, &state.classifier).await
    };
    prepared.classification = refined;
}
