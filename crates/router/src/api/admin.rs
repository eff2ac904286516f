//! Switchyard's own routes: VRAM status and control, models with their profiles, routing explanations and recent
//! decisions, profiling jobs, metrics, health and readiness. Admin routes need `SWITCHYARD_ADMIN_KEY` when set.

use crate::engine::decision;
use crate::error::{OllamaError, RouterError};
use crate::jobs::{self, JobRequest};
use crate::request::{Endpoint, PrepareContext, Target, parse_object, prepare_native};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_core::{Category, ModelName};
use switchyard_vram::AdminOp;
use switchyard_vram::view::{VramStatus, status};

/// `GET /admin/vram`.
pub async fn vram(State(state): State<AppState>) -> Json<VramStatus> {
    let ledger = state.vram.ledger();
    Json(status(&ledger, state.vram.source(), state.config.vram.limit.to_string(), state.config.vram.max_bypass_ms))
}

/// `POST /admin/vram/load`, `/unload`, `/pin` and `/unpin`: one handler, the operation taken from the route.
pub async fn vram_op(
    State(state): State<AppState>,
    path: MatchedPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, OllamaError> {
    let op = match path.as_str() {
        "/admin/vram/load" => AdminOp::Load,
        "/admin/vram/unload" => AdminOp::Unload,
        "/admin/vram/pin" => AdminOp::Pin,
        "/admin/vram/unpin" => AdminOp::Unpin,
        other => return Err(RouterError::NotFound(format!("no VRAM operation at {other}")).into()),
    };
    let bytes = super::read_body(&headers, body, 64 * 1024, state.config.server.body_timeout()).await?;
    let map = parse_object(&bytes, 8)?;
    let name = map
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| RouterError::bad("model is required", Some("model".into())))?;
    if state.tasks.virtual_models().iter().any(|(v, _)| v == name) {
        return Err(RouterError::bad(
            format!(
                "{name} is not a model but Switchyard's router, which picks a model per request; name a pulled model"
            ),
            Some("model".into()),
        )
        .into());
    }
    let model = ModelName::parse(name)?;
    let model = state.catalog.load().spelled(&model).cloned().unwrap_or(model);
    let node = match map.get("node") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.as_str()),
        Some(_) => return Err(RouterError::bad("node must be a fleet node's name", Some("node".into())).into()),
    };
    if state.catalog.load().get(&model).is_none() {
        state.refresh_catalog_for_unknown().await?;
    }
    if !state.fleet.is_empty()
        && state.catalog.load().get(&model).is_some_and(|s| s.backend.as_ref().is_some_and(|b| b.fleet))
    {
        let op = path.as_str().trim_start_matches("/admin/vram/");
        return Ok(Json(state.fleet.vram_op(op, &model, node).await?));
    }
    if node.is_some() {
        return Err(RouterError::bad(
            format!("{model} is not served by a fleet node here; \"node\" names a node of a fleet front"),
            Some("node".into()),
        )
        .into());
    }
    if state.catalog.load().get(&model).is_some_and(|s| s.cloud) {
        return Err(RouterError::bad(
            format!("{model} is an Ollama cloud model: it runs on ollama.com and takes no VRAM here, so it is never loaded, pinned or unloaded"),
            Some("model".into()),
        )
        .into());
    }
    if let Some(target) = state.catalog.load().get(&model).and_then(|s| s.backend.clone()) {
        let Some(backend) = state.backends.get(target.index) else {
            return Err(RouterError::Internal(format!("{model} names a backend that is not configured")).into());
        };
        let message = match op {
            AdminOp::Load => backend.manage(&target.id, true).await?,
            AdminOp::Unload => backend.manage(&target.id, false).await?,
            AdminOp::Pin | AdminOp::Unpin => {
                return Err(RouterError::bad(
                    format!(
                        "{model} is served by backend {}, which evicts by its own limit (llama-server's \
                         --models-max); pins hold the local Ollama's models",
                        target.name
                    ),
                    Some("model".into()),
                )
                .into());
            }
        };
        return Ok(Json(json!({ "model": model, "backend": &*target.name, "status": message })));
    }
    let message = state.vram.admin(op, &model).await?;
    let pinned = match op {
        AdminOp::Pin => Some(true),
        AdminOp::Unpin | AdminOp::Unload => Some(false),
        AdminOp::Load => None,
    };
    if let Some(pinned) = pinned
        && let Err(e) = state.store.set_pinned(model.as_str(), pinned).await
    {
        tracing::warn!(model = %model, error = %e, "cannot record the pin in the store; it holds until the next restart");
    }
    Ok(Json(json!({ "model": model, "status": message })))
}

/// `GET /admin/backends`: the local Ollama and every `[[backends]]` entry with its health, models, load, latency,
/// tokens and spend. API keys are never shown: `authenticated` says whether one is set.
pub async fn backends(State(state): State<AppState>) -> Json<Value> {
    let mut list = Vec::new();
    if state.config.ollama.enabled {
        let reachable = state.ollama.version().await.is_ok();
        let catalog = state.catalog.load();
        let local: Vec<&str> =
            catalog.models.values().filter(|s| s.backend.is_none()).map(|s| s.name.as_str()).collect();
        list.push(json!({
            "name": "ollama",
            "kind": "ollama",
            "url": state.config.ollama.url,
            "healthy": reachable,
            "models": local,
            "in_flight": state.vram.ledger().entries().map(|e| u64::from(e.in_flight)).sum::<u64>(),
            "priced": false,
        }));
    }
    for node in state.fleet.views() {
        list.push(serde_json::to_value(node).unwrap_or(Value::Null));
    }
    futures_util::future::join_all(state.backends.iter().map(|b| b.refresh_residency())).await;
    for backend in state.backends.iter() {
        let mut view = serde_json::to_value(backend.view()).unwrap_or(Value::Null);
        if let Some(obj) = view.as_object_mut() {
            let open = backend_breakers(&state, backend.index);
            obj.insert("breaker_open".into(), json!(open));
        }
        list.push(view);
    }
    Json(json!({ "remote_policy": state.config.routing.remote.as_str(), "backends": list }))
}

/// The models of backend `index` whose circuit breaker is open.
fn backend_breakers(state: &AppState, index: usize) -> Vec<String> {
    let catalog = state.catalog.load();
    state
        .breaker
        .snapshot()
        .into_iter()
        .filter(|(m, phase)| {
            *phase == crate::breaker::Phase::Open
                && catalog.get(m).and_then(|s| s.backend.as_ref()).is_some_and(|b| !b.fleet && b.index == index)
        })
        .map(|(m, _)| m.to_string())
        .collect()
}

/// Quality of one category in `/admin/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoryView {
    pub category: Category,
    pub n: u32,
    pub successes: u32,
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// One model in `/admin/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfoView {
    pub name: String,
    pub digest: String,
    pub size_bytes: u64,
    pub parameter_size: String,
    pub quantization: String,
    pub capabilities: Vec<String>,
    pub context_length: Option<u64>,
    /// `loaded`, `loading`, `unloading` or `unloaded`.
    pub state: String,
    pub pinned: bool,
    pub profiled: bool,
    pub stale: bool,
    pub categories: Vec<CategoryView>,
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub load_seconds: Option<f64>,
    pub vram_bytes: Option<u64>,
}

/// `GET /admin/models`: every model with per-category quality, speed and VRAM.
pub async fn models(State(state): State<AppState>) -> Result<Json<Value>, OllamaError> {
    decision::ensure_catalog(&state).await?;
    let catalog = state.catalog.load();
    let profiles = state.profiles.load();
    let ledger = state.vram.ledger();
    let mut out = Vec::with_capacity(catalog.models.len());
    for spec in catalog.models.values() {
        let profile = profiles.get(&spec.name);
        let entry = ledger.entry(&spec.name);
        let live = state.live.get(&spec.name);
        let categories = Category::PROFILED
            .iter()
            .filter_map(|c| {
                let q = profile?.categories[c.index()]?;
                Some(CategoryView {
                    category: *c,
                    n: q.n,
                    successes: q.successes,
                    mean: if q.n == 0 { 0.0 } else { f64::from(q.successes) / f64::from(q.n) },
                    ci_low: q.ci_low,
                    ci_high: q.ci_high,
                })
            })
            .collect();
        out.push(ModelInfoView {
            name: spec.name.to_string(),
            digest: spec.digest.clone(),
            size_bytes: spec.size_bytes,
            parameter_size: spec.details.parameter_size.clone(),
            quantization: spec.details.quantization_level.clone(),
            capabilities: spec.capabilities.names().into_iter().map(str::to_string).collect(),
            context_length: spec.context_length,
            state: entry.map_or("unloaded", |e| e.residency.as_str()).to_string(),
            pinned: entry.is_some_and(|e| e.pinned),
            profiled: profile.is_some_and(|p| p.profiled()),
            stale: profile.is_some_and(|p| p.stale),
            categories,
            prefill_tps: live.as_ref().and_then(|l| l.prefill_tps()).or(profile.and_then(|p| p.prefill_tps)),
            decode_tps: live.as_ref().and_then(|l| l.decode_tps()).or(profile.and_then(|p| p.decode_tps)),
            ttft_ms: profile.and_then(|p| p.ttft_ms),
            load_seconds: entry.and_then(|e| e.load_seconds).or(profile.and_then(|p| p.load_seconds)),
            vram_bytes: entry.map(|e| e.expected_bytes).filter(|b| *b > 0).or(profile.and_then(|p| p.vram_bytes)),
        });
    }
    Ok(Json(json!({ "models": out })))
}

/// Query of `GET /admin/explain`.
#[derive(Debug, Deserialize)]
pub struct ExplainQuery {
    /// The prompt to route.
    pub prompt: String,
    /// `auto`, `auto:fast`, `auto:quality`, `auto:TASK` (default `auto`).
    #[serde(default)]
    pub model: Option<String>,
    /// A task rule to apply, as `x-switchyard-task` would.
    #[serde(default)]
    pub task: Option<String>,
    /// Overrides the quality preference (0..1).
    #[serde(default)]
    pub quality: Option<f64>,
    /// The request carries tools.
    #[serde(default)]
    pub tools: bool,
    /// The request carries images.
    #[serde(default)]
    pub images: bool,
}

/// The native chat body a real request for `q` would carry: the prompt as one user message, with a placeholder
/// image and tool when asked for.
fn explain_body(q: &ExplainQuery) -> serde_json::Map<String, Value> {
    let mut message = json!({"role": "user", "content": q.prompt});
    if q.images {
        message["images"] = json!(["iVBORw0KGgo="]);
    }
    // Buffered, as a request a task's cascade serves.
    let mut body = json!({"model": q.model.as_deref().unwrap_or("auto"), "stream": false, "messages": [message]});
    if q.tools {
        body["tools"] = json!([{"type": "function", "function": {"name": "tool", "parameters": {"type": "object"}}}]);
    }
    match body {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// `GET /admin/explain?prompt=...`: how `auto` would route a prompt. A query whose percent-encoding is not UTF-8
/// is refused rather than guessed at.
pub async fn explain(State(state): State<AppState>, uri: Uri) -> Result<Json<Value>, OllamaError> {
    let raw = uri.query().unwrap_or("");
    let utf8 = raw.split('&').flat_map(|pair| pair.split('=')).all(|part| {
        let bytes: Vec<u8> = percent_decoded(part);
        std::str::from_utf8(&bytes).is_ok()
    });
    if !utf8 {
        return Err(RouterError::bad("the query string is not UTF-8 once percent-decoded", None).into());
    }
    let Query(q) = Query::<ExplainQuery>::try_from_uri(&uri)
        .map_err(|e| RouterError::bad(format!("invalid query: {}", e.body_text()), None))?;
    Ok(Json(explanation(&state, &q).await?))
}

/// `POST /admin/explain` with the same fields as a JSON body, for prompts too long for a query string.
pub async fn explain_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, OllamaError> {
    let bytes =
        super::read_body(&headers, body, state.config.server.max_body.0, state.config.server.body_timeout()).await?;
    let q: ExplainQuery =
        serde_json::from_slice(&bytes).map_err(|e| RouterError::bad(format!("invalid explain request: {e}"), None))?;
    Ok(Json(explanation(&state, &q).await?))
}

/// `+` and `%XX` decoded, as `application/x-www-form-urlencoded` reads them (a malformed escape stays as it is).
pub(crate) fn percent_decoded(part: &str) -> Vec<u8> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// How `auto` would route `q`: it prepares the prompt as a chat request and runs the engine's own classification
/// and decision on it, so it answers what routing that request now would do.
async fn explanation(state: &AppState, q: &ExplainQuery) -> Result<Value, RouterError> {
    if q.prompt.trim().is_empty() {
        return Err(RouterError::bad("prompt is required", Some("prompt".into())));
    }
    if q.quality.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
        return Err(RouterError::bad("quality must be between 0 and 1", Some("quality".into())));
    }
    let mut body = explain_body(q);
    let mut headers = HeaderMap::new();
    if let Some(task) = &q.task {
        let value =
            HeaderValue::from_str(task).map_err(|_| RouterError::bad("task must be ASCII", Some("task".into())))?;
        headers.insert(crate::tasks::TASK_HEADER, value);
    }
    let task = state.tasks.find(&mut body, &headers)?;
    let mut prepared = prepare_native(
        Endpoint::Chat,
        body,
        PrepareContext { routing: &state.config.routing, classifier: &state.classifier, quality_header: q.quality },
    )?;
    if let Some(task) = task {
        task.apply(&mut prepared, q.quality.is_some());
        prepared.task = Some(task);
    }
    let Target::Auto { preference, label } = prepared.target else {
        return Err(RouterError::bad("model must be auto, auto:fast, auto:quality or auto:TASK", Some("model".into())));
    };
    decision::ensure_catalog(state).await?;
    let classifier = decision::classify(state, &mut prepared).await;
    let decided = decision::decide(state, &prepared, preference);
    let cascade = prepared.task.as_ref().and_then(|t| t.cascade.as_ref()).map(|c| {
        crate::engine::cascade::steps(&decided.scoring, c).iter().map(ModelName::to_string).collect::<Vec<_>>()
    });
    let classification = &prepared.classification;
    let scores: serde_json::Map<String, Value> =
        Category::ALL.iter().map(|c| (c.as_str().to_string(), json!(classification.scores[c.index()]))).collect();
    Ok(json!({
        "model": label,
        "task": prepared.task.as_ref().map(|t| t.describe()),
        "cascade": cascade,
        "classifier": classifier.as_str(),
        "category": classification.category,
        "confidence": classification.confidence,
        "category_scores": scores,
        "top_categories": classification.top(3).into_iter().map(|(c, p)| json!({"category": c, "probability": p})).collect::<Vec<_>>(),
        "blended": decided.scoring.blended,
        "needs": {"tools": classification.needs.tools, "vision": classification.needs.vision, "json": classification.needs.json, "thinking": classification.needs.thinking, "insert": classification.needs.insert, "context_tokens": classification.needs.context_tokens},
        // A cascade answers with its first step.
        "chosen": cascade.as_ref().and_then(|steps| steps.first().cloned()).or_else(|| decided.candidates.first().map(ToString::to_string)),
        "decision_us": decided.decision_us,
        "scoring": decided.scoring,
    }))
}

/// Query of `GET /admin/decisions`.
#[derive(Debug, Deserialize)]
pub struct DecisionsQuery {
    #[serde(default)]
    pub limit: Option<usize>,
    /// `memory` (default: every recent decision) or `store` (the sampled, persisted ones).
    #[serde(default)]
    pub source: Option<String>,
}

/// `GET /admin/decisions`.
pub async fn decisions(
    State(state): State<AppState>,
    q: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<Json<Value>, OllamaError> {
    let q = super::query(q)?;
    let limit = q.limit.unwrap_or(50).min(1000);
    match q.source.as_deref() {
        None | Some("memory") => Ok(Json(json!({ "decisions": state.decisions.recent(limit) }))),
        Some("store") => {
            let rows = state.store.decisions(limit as u32).await?;
            Ok(Json(json!({ "decisions": rows })))
        }
        Some(other) => {
            Err(RouterError::bad(format!("source must be memory or store, got {other:?}"), Some("source".into()))
                .into())
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let ledger = state.vram.ledger();
    for entry in ledger.entries() {
        state.metrics.in_flight.with_label_values(&[entry.name.as_str()]).set(i64::from(entry.in_flight));
    }
    let upstream_up = if state.config.ollama.enabled {
        !ledger.warnings().iter().any(|w| w.starts_with("cannot read Ollama"))
    } else {
        // A front's upstream is its fleet.
        state.fleet.is_empty() || state.fleet.any_healthy()
    };
    state.metrics.upstream_up.set(i64::from(upstream_up));
    state.metrics.breaker_state.reset();
    for (model, phase) in state.breaker.snapshot() {
        state.metrics.breaker_state.with_label_values(&[model.as_str()]).set(phase.as_gauge());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// `GET /health`: the process is up (it does not depend on Ollama).
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "uptime_secs": state.started.elapsed().as_secs() }))
}

/// `GET /admin/state`: this node's state for a fleet front (`[[backends]] kind = "switchyard"`).
pub async fn node_state(State(state): State<AppState>) -> Json<switchyard_core::fleet::NodeState> {
    Json(crate::backends::fleet::node_state(&state).await)
}

/// `GET /ready`: Ollama answers and the store is reachable; 503 with the reasons otherwise.
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut problems = Vec::new();
    if !state.config.ollama.enabled {
        // No Ollama of its own: ready while some fleet node answers (or, with no fleet, always: its backends'
        // failures show in /admin/backends and their breakers).
        for node in state.fleet.views().into_iter().filter(|n| !n.healthy) {
            problems.push(format!("fleet node {}: {}", node.name, node.error.unwrap_or_default()));
        }
        let ok = state.fleet.is_empty() || state.fleet.any_healthy();
        state.metrics.upstream_up.set(i64::from(ok));
        if !ok {
            problems.push("no fleet node answers".to_string());
        }
        let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        return (status, Json(json!({ "ready": ok, "problems": problems }))).into_response();
    }
    let ollama = tokio::time::timeout(Duration::from_secs(2), state.ollama.version()).await;
    match ollama {
        Ok(Ok(_)) => state.metrics.upstream_up.set(1),
        Ok(Err(e)) => {
            state.metrics.upstream_up.set(0);
            problems.push(format!("Ollama: {}", RouterError::from(e)));
        }
        Err(_) => {
            state.metrics.upstream_up.set(0);
            problems.push(format!("Ollama at {} did not answer within 2 s", state.ollama.base_url()));
        }
    }
    let store = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    if !matches!(store, Ok(Ok(()))) {
        problems.push("the store does not answer; routing continues from profiles in memory".to_string());
    }
    let ollama_ok = problems.iter().all(|p| !p.starts_with("Ollama"));
    let status = if ollama_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ollama_ok, "problems": problems }))).into_response()
}

/// `POST /admin/profile`: starts a profiling job; 202 with its id, 409 while another runs.
pub async fn start_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OllamaError> {
    let bytes = super::read_body(&headers, body, 64 * 1024, state.config.server.body_timeout()).await?;
    let request: JobRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        JobRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| RouterError::bad(format!("invalid profile request: {e}"), None))?
    };
    for name in &request.models {
        let model = ModelName::parse(name)?;
        if state.catalog.load().get(&model).is_none() {
            state.refresh_catalog_for_unknown().await?;
        }
        match state.catalog.load().get(&model) {
            None => return Err(RouterError::ModelNotFound(name.clone()).into()),
            Some(spec) if !spec.capabilities.completion => {
                return Err(RouterError::bad(
                    format!("{name} only embeds; there is nothing to profile"),
                    Some("models".into()),
                )
                .into());
            }
            Some(_) => {}
        }
    }
    let status = jobs::start(&state, request)?;
    let id = status.id.clone();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status_url": format!("/admin/profile/{id}"), "state": status.state })),
    )
        .into_response())
}

/// `GET /admin/profile/{id}`: a job's progress.
pub async fn profile_status(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<jobs::JobStatus>, OllamaError> {
    let id = super::path(id)?;
    state.jobs.status(&id).map(Json).ok_or_else(|| RouterError::NotFound(format!("no profiling job {id}")).into())
}

/// `GET /admin/cache`: the response cache's size, limits and counters.
pub async fn cache(State(state): State<AppState>) -> Json<crate::cache::CacheStats> {
    Json(state.cache.stats())
}

/// The body of `POST /admin/cache/invalidate`; empty drops every answer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    /// Only the answers of this model.
    model: Option<String>,
    /// Only answers stored more than this many seconds ago.
    older_than_secs: Option<u64>,
}

/// `POST /admin/cache/invalidate`: drops cached answers (all, by model, by age) from memory and the store.
pub async fn cache_invalidate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, OllamaError> {
    let bytes = super::read_body(&headers, body, 64 * 1024, state.config.server.body_timeout()).await?;
    let q: InvalidateBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        InvalidateBody::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            RouterError::bad(format!("expected {{\"model\": NAME, \"older_than_secs\": N}} (both optional): {e}"), None)
        })?
    };
    let model = match q.model.as_deref() {
        Some(m) => Some(ModelName::parse(m).map_err(|e| RouterError::bad(e.to_string(), Some("model".into())))?),
        None => None,
    };
    let model = model.as_ref().map(ModelName::as_str);
    let older_than = q.older_than_secs.map(Duration::from_secs);
    let dropped = state.cache.invalidate_memory(model, older_than);
    let mut answer = json!({ "dropped": dropped });
    if state.cache.persist() {
        let before = older_than.map(crate::cache::cutoff);
        match tokio::time::timeout(Duration::from_secs(5), state.store.cache_delete(model, before)).await {
            Ok(Ok(n)) => answer["dropped_from_store"] = json!(n),
            Ok(Err(e)) => answer["store_error"] = json!(e.to_string()),
            Err(_) => answer["store_error"] = json!("the store did not answer within 5 s"),
        }
    }
    Ok(Json(answer))
}

/// `GET /admin/vram/events` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub model: Option<String>,
}

/// `GET /admin/vram/events`: the newest loads, unloads and evictions (of `model` when given), from the store.
pub async fn vram_events(
    State(state): State<AppState>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>, OllamaError> {
    let q = super::query(q)?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let model = match q.model.as_deref() {
        Some(m) => Some(ModelName::parse(m).map_err(|e| RouterError::bad(e.to_string(), Some("model".into())))?),
        None => None,
    };
    let events = state.store.load_events(model.as_ref().map(ModelName::as_str), limit).await?;
    Ok(Json(json!({ "events": events })))
}
