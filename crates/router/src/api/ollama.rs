//! Ollama's native API, served with Ollama's shapes, defaults, streaming (NDJSON, on by default) and errors.
//!
//! Inference routes go through routing and VRAM admission; `model: "auto"` (and `auto:fast`, `auto:quality`)
//! picks the model. The listing routes show the virtual `auto` models beside the real ones; `/api/ps` shows when
//! Switchyard (not Ollama's timer) will unload each model.

use super::{RequestCtx, decorate, json_bytes, read_body, read_request};
use crate::engine::{Answer, Engine, Surface};
use crate::error::{OllamaError, RouterError};
use crate::forward::Passthrough;
use crate::request::{Endpoint, parse_object};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_core::ollama::types::rfc3339_nanos;

/// The virtual models and the preference each stands for.
pub const VIRTUAL_MODELS: [(&str, &str); 3] = [
    ("auto", "routes each request by the configured quality preference"),
    ("auto:fast", "routes each request preferring speed"),
    ("auto:quality", "routes each request preferring quality"),
];

/// A virtual model's digest: 64 hex digits, stable across restarts and different for each virtual model (clients
/// such as `llm-ollama` tell models apart by digest).
fn virtual_digest(name: &str) -> String {
    (0u8..4)
        .map(|i| {
            format!(
                "{:016x}",
                switchyard_core::text::stable_hash_parts(&[b"switchyard-virtual-model", &[i], name.as_bytes()])
            )
        })
        .collect()
}

/// `GET /` and `HEAD /`: what clients probe to see that Ollama is up.
pub async fn root() -> &'static str {
    "Ollama is running"
}

/// `GET /api/version`: Ollama's version, so clients gate features on what the backend supports.
pub async fn version(State(state): State<AppState>) -> Result<Json<Value>, OllamaError> {
    if !state.config.ollama.enabled {
        // A front: the version of the nodes' Ollama (or the router's own with no fleet).
        if state.fleet.is_empty() {
            return Ok(Json(json!({ "version": env!("CARGO_PKG_VERSION") })));
        }
        let answer = state.fleet.ask(axum::http::Method::GET, "/api/version", None, None).await?;
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| RouterError::UpstreamFailed(e.to_string()))?;
        return Ok(Json(v));
    }
    let v = state.ollama.version().await?;
    Ok(Json(json!({ "version": v.version })))
}

/// `GET /api/tags`: Ollama's models, plus the virtual `auto` models.
pub async fn tags(State(state): State<AppState>) -> Result<Json<Value>, OllamaError> {
    let local = match if state.config.ollama.enabled { state.ollama.tags().await } else { Ok(Default::default()) } {
        Ok(tags) => tags.models,
        // With other backends, their models are still worth listing while Ollama is down.
        Err(e) if state.backends.is_empty() && state.fleet.is_empty() => return Err(RouterError::from(e).into()),
        Err(e) => {
            tracing::debug!(error = %e, "listing the backends' models only: Ollama cannot be read");
            Vec::new()
        }
    };
    let mut models = serde_json::to_value(&local).map_err(|e| RouterError::Internal(e.to_string()))?;
    if let Value::Array(list) = &mut models {
        let now = rfc3339_nanos(Utc::now());
        for spec in state.catalog.load().models.values().filter(|s| s.backend.is_some()) {
            list.push(backend_tag(spec, &now));
        }
        for (name, description) in state.tasks.virtual_models() {
            list.push(json!({
                "name": name, "model": name, "modified_at": now, "size": 0,
                "digest": virtual_digest(name),
                "details": {"parent_model": "", "format": "switchyard", "family": "switchyard", "families": ["switchyard"],
                            "parameter_size": "", "quantization_level": "", "description": description}
            }));
        }
    }
    Ok(Json(json!({ "models": models })))
}

/// A `/api/tags` entry for a model of a `[[backends]]` entry (`format` names the backend), or of the fleet (its
/// nodes' own description).
fn backend_tag(spec: &switchyard_core::catalog::ModelSpec, now: &str) -> Value {
    if spec.backend.as_ref().is_some_and(|b| b.fleet) {
        return json!({
            "name": spec.name, "model": spec.name, "modified_at": now, "size": spec.size_bytes,
            "digest": spec.digest, "details": spec.details,
        });
    }
    json!({
        "name": spec.name, "model": spec.name, "modified_at": now, "size": 0,
        "digest": virtual_digest(&spec.digest),
        "details": {"parent_model": "", "format": spec.backend_name(), "family": spec.backend_name(),
                    "families": [spec.backend_name()], "parameter_size": "", "quantization_level": ""}
    })
}

/// When Switchyard will unload `name`: pinned or infinite TTL is centuries ahead, like Ollama's `keep_alive: -1`.
fn switchyard_expiry(state: &AppState, name: &str) -> Option<String> {
    let model = switchyard_core::ModelName::parse(name).ok()?;
    let ledger = state.vram.ledger();
    let entry = ledger.entry(&model)?;
    let ttl = entry.idle_ttl.or(ledger.config().idle_ttl);
    let forever = entry.pinned || ttl.is_none_or(|t| t > Duration::from_secs(100 * 365 * 86400));
    if forever {
        return Some("2318-01-01T00:00:00Z".to_string());
    }
    let ttl = ttl?;
    let idle = entry.last_used.map_or(Duration::ZERO, |t| t.elapsed());
    let left = chrono::Duration::from_std(ttl.saturating_sub(idle)).ok()?;
    Some(rfc3339_nanos(Utc::now() + left))
}

/// `GET /api/ps`: what Ollama holds, with Switchyard's own unload schedule as `expires_at`.
pub async fn ps(State(state): State<AppState>) -> Result<Json<Value>, OllamaError> {
    if !state.config.ollama.enabled {
        // A front: what the fleet's nodes hold, each model once (`nodes` says where).
        let models: Vec<Value> = state
            .fleet
            .loaded()
            .into_iter()
            .map(|(spec, nodes)| {
                json!({
                    "name": spec.name, "model": spec.name, "size": spec.size_bytes, "digest": spec.digest,
                    "details": spec.details, "expires_at": "2318-01-01T00:00:00Z", "size_vram": spec.size_bytes,
                    "nodes": nodes.iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
                })
            })
            .collect();
        return Ok(Json(json!({ "models": models })));
    }
    let ps = state.ollama.ps().await?;
    let mut models = Vec::with_capacity(ps.models.len());
    for mut m in ps.models {
        if let Some(expiry) = switchyard_expiry(&state, &m.name) {
            m.expires_at = expiry;
        }
        models.push(m);
    }
    Ok(Json(json!({ "models": models })))
}

/// `POST /api/show`: Ollama's answer; for the virtual models, a description of what they route to.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, OllamaError> {
    let bytes = read_body(&headers, body, state.config.server.max_body.0, state.config.server.body_timeout()).await?;
    let map = parse_object(&bytes, state.config.server.max_json_depth as usize)?;
    let name = map
        .get("model")
        .or_else(|| map.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| RouterError::bad("model is required", Some("model".into())))?;
    // `auto:latest` is `auto`, as `/api/chat` reads it.
    let bare = name.strip_suffix(":latest").unwrap_or(name);
    if let Some((virtual_name, description)) = state.tasks.virtual_models().iter().find(|(v, _)| v == bare) {
        let catalog = state.catalog.load();
        let mut capabilities: Vec<&str> = Vec::new();
        for spec in catalog.models.values() {
            for c in spec.capabilities.names() {
                // Not `embedding` or `thinking`: Ollama's CLI treats a model that lists `embedding` as an embedding
                // model (`ollama run auto` would print vectors), and turns thinking on for one that lists `thinking`
                // (which would send every prompt to a thinking model). `auto` still routes both when asked.
                if !capabilities.contains(&c) && c != "embedding" && c != "thinking" {
                    capabilities.push(c);
                }
            }
        }
        // The longest context a model that answers prompts serves them with (a local one: its `num_ctx`): what a client
        // that sizes its prompts by the model (Continue reads `<architecture>.context_length`) may send; `auto` passes
        // over the models a prompt would not fit.
        let context_length = catalog
            .models
            .values()
            .filter(|spec| spec.capabilities.completion)
            .map(|spec| crate::score::serving_ctx(spec, &state.config))
            .filter(|n| *n != u64::MAX)
            .max();
        let mut model_info = json!({"general.architecture": "switchyard", "switchyard.models": catalog.models.len()});
        if let Some(n) = context_length {
            model_info["switchyard.context_length"] = json!(n);
        }
        return Ok(Json(json!({
            "modelfile": format!("# {virtual_name}: Switchyard {description}\n"),
            "parameters": "", "template": "{{ .Prompt }}",
            "details": {"parent_model": "", "format": "switchyard", "family": "switchyard", "families": ["switchyard"], "parameter_size": "", "quantization_level": ""},
            "model_info": model_info,
            "capabilities": capabilities,
            "modified_at": rfc3339_nanos(Utc::now()),
        }))
        .into_response());
    }
    let model = switchyard_core::ModelName::parse(name)?;
    // A name in another case is the catalog's model, as a request to it is (a local model's answer is Ollama's own).
    let model = state.catalog.load().spelled(&model).cloned().unwrap_or(model);
    if state.catalog.load().get(&model).is_some_and(|s| s.backend.as_ref().is_some_and(|b| b.fleet)) {
        // A fleet model: a node that serves it answers for it (through its own Ollama).
        let answer = state.fleet.ask(axum::http::Method::POST, "/api/show", Some(bytes), Some(&model)).await?;
        let mut response = json_bytes(answer.body);
        *response.status_mut() = answer.status;
        return Ok(response);
    }
    if let Some(spec) = state.catalog.load().get(&model).filter(|s| s.backend.is_some()) {
        let mut info = serde_json::Map::new();
        info.insert("general.architecture".into(), json!(spec.backend_name()));
        if let Some(ctx) = spec.context_length {
            info.insert(format!("{}.context_length", spec.backend_name()), json!(ctx));
        }
        return Ok(Json(json!({
            "modelfile": format!("# {}: served by backend {}\n", spec.name, spec.backend_name()),
            "parameters": "", "template": "{{ .Prompt }}",
            "details": {"parent_model": "", "format": spec.backend_name(), "family": spec.backend_name(),
                        "families": [spec.backend_name()], "parameter_size": "", "quantization_level": ""},
            "model_info": info,
            "capabilities": spec.capabilities.names(),
            "modified_at": rfc3339_nanos(Utc::now()),
        }))
        .into_response());
    }
    if !state.config.ollama.enabled {
        return Err(RouterError::ModelNotFound(model.to_string()).into());
    }
    let url = state.ollama.url("/api/show");
    let answer = state
        .ollama
        .http()
        .request(
            axum::http::Method::POST,
            &url,
            Some(bytes),
            Duration::from_secs(state.config.ollama.control_timeout_secs),
        )
        .await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Err(RouterError::ModelNotFound(model.to_string()).into());
    }
    let mut response = json_bytes(answer.body);
    *response.status_mut() = answer.status;
    Ok(response)
}

/// The answer Ollama gives to an empty-prompt load or unload.
fn control_answer(endpoint: Endpoint, requested: &str, reason: &str) -> Value {
    let now = rfc3339_nanos(Utc::now());
    match endpoint {
        Endpoint::Chat => {
            json!({"model": requested, "created_at": now, "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": reason})
        }
        Endpoint::Generate => {
            json!({"model": requested, "created_at": now, "response": "", "done": true, "done_reason": reason})
        }
        Endpoint::Embed => json!({"model": requested, "embeddings": []}),
        Endpoint::Embeddings => json!({"embedding": []}),
    }
}

/// `POST /api/chat`, `/api/generate`, `/api/embed` and the legacy `/api/embeddings`.
pub(super) async fn infer(
    state: AppState,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Result<Response<Body>, OllamaError> {
    let inbound = (Surface::Ollama, endpoint, endpoint.path());
    let (request, ()) = read_request(&state, &ctx, &headers, body, inbound, |map| Ok((map, ()))).await?;
    let stream = request.prepared.stream;
    let outcome = Engine::new(&state).serve(request).await?;
    let response = match outcome.answer {
        Answer::Control(reason) => {
            let answer = control_answer(endpoint, &outcome.shown, reason);
            let mut response = if stream && !endpoint.is_embedding() {
                let mut line = serde_json::to_vec(&answer).unwrap_or_default();
                line.push(b'\n');
                let mut r = Response::new(Body::from(line));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
                r
            } else {
                Json(answer).into_response()
            };
            if let Ok(v) = HeaderValue::from_str(outcome.model.as_str()) {
                response.headers_mut().insert("x-switchyard-model", v);
            }
            if let Some(v) = outcome.cache.header().and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert("x-switchyard-cache", v);
            }
            return Ok(response);
        }
        Answer::Buffered(bytes) => json_bytes(bytes),
        Answer::Stream(relay) => {
            let mut r = Response::new(Body::new(relay.into_body(Passthrough)));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
            r
        }
    };
    Ok(decorate(
        response,
        &outcome.model,
        outcome.category,
        outcome.cache,
        outcome.cascade.as_deref(),
        outcome.node.as_deref(),
    ))
}
