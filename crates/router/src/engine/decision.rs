//! The routing decision: classification of the conversation and the scoring of every model, computed by one
//! function that both real routing and `/admin/explain` call, so the two cannot drift.
//!
//! [`decide`] is pure (it reads the catalog, profiles, live timings, VRAM ledger and breakers); [`record`] is what
//! real routing adds: metrics, the decision ring for `/admin/decisions` and a sample in the store.

use super::Request;
use crate::classify::ClassifyInput;
use crate::decisions::DecisionEntry;
use crate::error::RouterError;
use crate::request::{Prepared, Target};
use crate::score::{BackendLoad, ScoreContext, ScoreRequest, Scoring, score};
use crate::state::AppState;
use crate::writer::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::store::{DecisionRecord, now_ms};
use switchyard_core::{Category, ModelName};

/// A decision for an `auto` request.
#[derive(Debug)]
pub(crate) struct Decision {
    /// Every model with its components, eligible ones first in score order.
    pub scoring: Scoring,
    /// The eligible models to try, best first, at most `routing.max_attempts` (one more when a generate's context
    /// puts the model that wrote it first).
    pub candidates: Vec<ModelName>,
    /// Microseconds spent scoring.
    pub decision_us: f64,
}

/// The category reported in `x-switchyard-category` and metrics.
pub(crate) fn category_label(prepared: &Prepared) -> &'static str {
    if prepared.endpoint.is_embedding() { "embedding" } else { prepared.classification.category.as_str() }
}

/// The category whose answer lengths a response teaches (none for embeddings).
pub(crate) fn learned_category(prepared: &Prepared) -> Option<Category> {
    (!prepared.endpoint.is_embedding()).then_some(prepared.classification.category)
}

/// Which classifier's answer `prepared.classification` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Classifier {
    Learned,
    Rules,
    Embedding,
    /// A task rule fixed the category.
    Task,
}

impl Classifier {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Classifier::Learned => "learned",
            Classifier::Rules => "rules",
            Classifier::Embedding => "embedding",
            Classifier::Task => "task",
        }
    }
}

/// With `routing.classifier = "embedding"`, classifies an `auto` request again by its nearest labelled examples
/// (through the embedding model, admitted like any request); the local classifier's answer stays on any failure.
pub(crate) async fn classify(state: &AppState, prepared: &mut Prepared) -> Classifier {
    if prepared.task.as_ref().is_some_and(|t| t.category.is_some()) && matches!(prepared.target, Target::Auto { .. }) {
        return Classifier::Task;
    }
    let local = if state.classifier.learned() { Classifier::Learned } else { Classifier::Rules };
    if !matches!(prepared.target, Target::Auto { .. }) || prepared.endpoint.is_embedding() {
        return local;
    }
    let classifier = state.embedding_classifier.load_full();
    let Some(classifier) = classifier.as_ref() else { return local };
    let Ok(model) = ModelName::parse(&state.config.routing.embedding_model) else { return local };
    let Ok(_lease) = state.vram.acquire_within(&model, Duration::from_secs(2)).await else {
        return local;
    };
    let refined = {
        let Ok((turns, _)) = crate::request::read_turns(prepared.endpoint, &prepared.body, prepared.keep_alive) else {
            return local;
        };
        let needs = &prepared.classification.needs;
        let input = ClassifyInput {
            turns: &turns,
            has_tools: needs.tools,
            wants_json: needs.json,
            max_output_tokens: prepared.max_output_tokens,
            wants_thinking: needs.thinking,
            wants_insert: needs.insert,
        };
        classifier.classify(&input, &state.classifier).await
    };
    prepared.classification = refined;
    Classifier::Embedding
}

/// Reads the catalog again when it is empty: Ollama may have come up (or had a model pulled) since it was last read,
/// and "no models" until the next periodic refresh would be wrong. Fails when Ollama cannot be reached.
pub(crate) async fn ensure_catalog(state: &AppState) -> Result<(), RouterError> {
    if state.catalog.load().models.is_empty() {
        state.refresh_catalog_for_unknown().await?;
    }
    Ok(())
}

/// Scores every model for `prepared` (an `auto` request at `preference`) against the current state.
pub(crate) fn decide(state: &AppState, prepared: &Prepared, preference: f64) -> Decision {
    let started = Instant::now();
    let c = &prepared.classification;
    let output = prepared.max_output_tokens.unwrap_or_else(|| crate::classify::expected_output_tokens(c.category));
    let prompt_tokens = c.needs.context_tokens.saturating_sub(output).max(1);
    let affine = state.conversations.model_for(prepared.conversation.as_ref());
    let prefix = prepared.conversation.map_or(0, |c| c.prefix_tokens);
    let req = ScoreRequest {
        category: c.category,
        needs: &c.needs,
        embedding: prepared.endpoint.is_embedding(),
        preference,
        prompt_tokens,
        max_output_tokens: prepared.max_output_tokens,
        blend: (f64::from(c.confidence) < state.config.routing.blend_below).then_some(c.scores),
        // A task's models are chat models: an embedding request keeps every embedding model.
        allow: prepared.task.as_ref().filter(|_| !prepared.endpoint.is_embedding()).and_then(|t| t.allow.as_deref()),
        affinity: affine.as_ref().map(|m| (m, prefix)),
    };
    let snapshots = Snapshots::take(state);
    let cx = snapshots.context(state);
    let scoring = score(&req, &cx);
    // Local (and free) models first, at most `routing.max_attempts`; then, under `routing.remote = "fallback"`, the
    // best priced model, so that a request every local model failed still reaches one.
    let max = state.config.routing.max_attempts as usize;
    let mut candidates: Vec<ModelName> =
        scoring.eligible().filter(|c| !c.fallback_only).take(max).map(|c| c.model.clone()).collect();
    candidates.extend(scoring.eligible().filter(|c| c.fallback_only).take(1).map(|c| c.model.clone()));
    // A generate's `context` is read only by the model that wrote it: that model first, when it can serve the request.
    if let Some(wrote) = &prepared.context_writer
        && scoring.eligible().any(|c| c.model == *wrote)
    {
        candidates.retain(|m| m != wrote);
        candidates.insert(0, wrote.clone());
    }
    Decision { scoring, candidates, decision_us: started.elapsed().as_secs_f64() * 1e6 }
}

/// What a scoring reads, each taken once: the catalog, profiles, VRAM ledger, open breakers, the backends' load and
/// the fleet's offers.
pub(crate) struct Snapshots {
    catalog: Arc<switchyard_core::catalog::Catalog>,
    profiles: Arc<crate::profiles::ProfileTable>,
    ledger: Arc<switchyard_vram::ledger::Ledger>,
    open: Vec<ModelName>,
    backends: Vec<BackendLoad>,
    cold_remote: Vec<ModelName>,
    fleet: Arc<crate::score::FleetView>,
}

impl Snapshots {
    pub(crate) fn take(state: &AppState) -> Self {
        let catalog = state.catalog.load_full();
        let open = state
            .breaker
            .snapshot()
            .into_iter()
            .filter(|(_, p)| *p == crate::breaker::Phase::Open)
            .map(|(m, _)| m)
            .collect();
        let backends = state
            .backends
            .iter()
            .map(|b| {
                let (in_flight, capacity) = b.load();
                BackendLoad {
                    in_flight,
                    capacity,
                    price_input_per_mtok: b.config.price_input_per_mtok,
                    price_output_per_mtok: b.config.price_output_per_mtok,
                }
            })
            .collect();
        let cold_remote = if state.backends.is_empty() {
            Vec::new()
        } else {
            catalog
                .models
                .values()
                .filter(|s| {
                    s.backend.as_ref().is_some_and(|b| {
                        !b.fleet && state.backends.get(b.index).and_then(|backend| backend.loaded(&b.id)) == Some(false)
                    })
                })
                .map(|s| s.name.clone())
                .collect()
        };
        Self {
            catalog,
            profiles: state.profiles.load_full(),
            ledger: state.vram.ledger(),
            open,
            backends,
            cold_remote,
            fleet: state.fleet.view(),
        }
    }

    pub(crate) fn context<'a>(&'a self, state: &'a AppState) -> ScoreContext<'a> {
        ScoreContext {
            config: &state.config,
            catalog: &self.catalog,
            profiles: &self.profiles,
            live: &state.live,
            ledger: &self.ledger,
            open_breakers: &self.open,
            backends: &self.backends,
            cold_remote: &self.cold_remote,
            fleet: &self.fleet,
        }
    }
}

/// Records a real routing decision: the request's span, metrics, the ring `/admin/decisions` reads, and (sampled
/// by `routing.decision_sample_rate`) a row in the store. Gives back the candidates.
pub(crate) fn record(
    state: &AppState,
    req: &Request,
    preference: f64,
    decision: Decision,
    cascade: bool,
) -> Vec<ModelName> {
    let prepared = &req.prepared;
    let request_id = req.request_id.as_str();
    let surface = req.surface.as_str();
    let category = category_label(prepared);
    tracing::Span::current().record("decision_us", decision.decision_us);
    state.metrics.decision_duration.observe(decision.decision_us / 1e6);
    let chosen = decision.candidates.first().cloned();
    state.metrics.decisions.with_label_values(&[category, chosen.as_ref().map_or("none", ModelName::as_str)]).inc();
    if rand::random::<f64>() < state.config.routing.decision_sample_rate {
        state.writer.write(Write::Decision(DecisionRecord {
            id: None,
            request_id: request_id.to_string(),
            at: now_ms(),
            surface: surface.to_string(),
            category: category.to_string(),
            requested: prepared.requested.clone(),
            chosen: chosen.as_ref().map(ToString::to_string).unwrap_or_default(),
            quality_preference: preference,
            decision_us: decision.decision_us,
            candidates_json: serde_json::to_string(&decision.scoring.candidates).unwrap_or_default(),
        }));
    }
    tracing::debug!(
        request_id,
        category,
        chosen = chosen.as_ref().map_or("none", ModelName::as_str),
        decision_us = decision.decision_us,
        "routing decision"
    );
    let entry = Arc::new(DecisionEntry {
        request_id: request_id.to_string(),
        at: chrono::Utc::now(),
        surface,
        requested: prepared.requested.clone(),
        chosen,
        decision_us: decision.decision_us,
        confidence: prepared.classification.confidence,
        task: prepared.task.as_ref().map(|t| t.name.to_string()),
        cascade: cascade.then(|| decision.candidates.clone()),
        scoring: decision.scoring,
    });
    state.decisions.push(entry);
    decision.candidates
}

/// Checks that an explicitly named model exists (refreshing the catalog once if it is unknown) and can serve the
/// request's endpoint and tools; returns the name as the catalog spells it.
pub(crate) async fn check_explicit(
    state: &AppState,
    prepared: &Prepared,
    name: &ModelName,
) -> Result<ModelName, RouterError> {
    if state.catalog.load().spelled(name).is_none() {
        state.refresh_catalog_for_unknown().await?;
    }
    let catalog = state.catalog.load();
    let Some((name, spec)) = catalog.spelled(name).and_then(|n| catalog.models.get_key_value(n)) else {
        return Err(RouterError::ModelNotFound(prepared.requested.clone()));
    };
    let caps = spec.capabilities;
    if !prepared.endpoint.is_embedding() && !caps.completion && caps.embedding {
        return Err(RouterError::bad(
            format!("\"{}\" does not support generate", prepared.requested),
            Some("model".into()),
        ));
    }
    let needs = &prepared.classification.needs;
    if needs.tools && !caps.tools {
        return Err(RouterError::bad(format!("{} does not support tools", prepared.requested), Some("tools".into())));
    }
    if needs.thinking && !caps.thinking {
        return Err(RouterError::bad(
            format!("\"{}\" does not support thinking", prepared.requested),
            Some("think".into()),
        ));
    }
    if needs.insert && !caps.insert {
        return Err(RouterError::bad(
            format!("\"{}\" does not support insert", prepared.requested),
            Some("suffix".into()),
        ));
    }
    Ok(name.clone())
}
