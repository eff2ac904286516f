//! OpenAI's API: chat completions, completions, embeddings and models, translated to Ollama's native API so that
//! `keep_alive` and load-time options stay under Switchyard's control. Streams are SSE with `[DONE]`; errors are
//! OpenAI error objects.

use super::ollama::VIRTUAL_MODELS;
use super::{RequestCtx, decorate, finish_buffered, finisher, quality_header, read_body};
use crate::error::{OpenAiError, RouterError};
use crate::forward::{LineSplitter, RelayBody, Reply, Transform};
use crate::request::{Endpoint, PrepareContext, parse_object, prepare_native};
use crate::route::{Surface, category_label, dispatch, learned_category};
use crate::state::AppState;
use crate::translate::{self, OpenAiContext, OpenAiKind, SseTranslator};
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Response, header};
use axum::response::IntoResponse;
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

/// Rewrites Ollama NDJSON into OpenAI SSE events as lines complete.
struct SseTransform {
    lines: LineSplitter,
    translator: SseTranslator,
    out: BytesMut,
}

impl Transform for SseTransform {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        let translator = &mut self.translator;
        let out = &mut self.out;
        self.lines.push(&data, |line| translator.line(line, out));
        self.out.split().freeze()
    }

    fn error(&mut self, message: &str) -> Bytes {
        self.translator.error(message, &mut self.out);
        self.out.split().freeze()
    }

    fn finish(&mut self) -> Bytes {
        if let Some(rest) = self.lines.take_rest() {
            self.translator.line(&rest, &mut self.out);
        }
        self.out.split().freeze()
    }
}

fn sse_headers(response: &mut Response<Body>) {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

async fn complete(
    state: AppState,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Body,
    kind: OpenAiKind,
) -> Result<Response<Body>, OpenAiError> {
    let route = match kind {
        OpenAiKind::Chat => "/v1/chat/completions",
        OpenAiKind::Completion => "/v1/completions",
    };
    let bytes = read_body(&headers, body, state.config.server.max_body.0).await?;
    let request = parse_object(&bytes, state.config.server.max_json_depth as usize)?;
    let (native, meta) = match kind {
        OpenAiKind::Chat => translate::chat_request(&request)?,
        OpenAiKind::Completion => translate::completion_request(&request)?,
    };
    let endpoint = match kind {
        OpenAiKind::Chat => Endpoint::Chat,
        OpenAiKind::Completion => Endpoint::Generate,
    };
    let quality = quality_header(&headers)?;
    let mut prepared = prepare_native(
        endpoint,
        native,
        PrepareContext { routing: &state.config.routing, classifier: &state.classifier, quality_header: quality },
    )?;
    if prepared.control.is_some() {
        return Err(RouterError::bad(
            "the prompt is empty",
            Some(if kind == OpenAiKind::Chat { "messages".into() } else { "prompt".into() }),
        )
        .into());
    }
    if state.config.server.log_prompts {
        tracing::debug!(request_id = %ctx.request_id, body = %String::from_utf8_lossy(&bytes), "request");
    }
    crate::route::refine_classification(&state, &mut prepared).await;
    let category = category_label(&prepared);
    let routed = dispatch(&state, &prepared, &ctx.request_id, Surface::OpenAi).await?;
    state.metrics.overhead.observe(routed.forwarded_at.duration_since(ctx.started).as_secs_f64());
    let model = routed.model.clone();
    let prefix = if kind == OpenAiKind::Chat { "chatcmpl" } else { "cmpl" };
    let cx = OpenAiContext {
        kind,
        id: format!("{prefix}-{}", ctx.request_id),
        created: chrono::Utc::now().timestamp(),
        include_usage: meta.include_usage,
    };
    // The response names the model actually used: the client's spelling for explicit requests, the chosen one for auto.
    let shown = routed.upstream_name.clone();
    let response = match routed.reply {
        Reply::Buffered(bytes) => {
            let answer: Value = serde_json::from_slice(&bytes)
                .map_err(|e| RouterError::UpstreamFailed(format!("Ollama sent invalid JSON: {e}")))?;
            finish_buffered(&state, &model, learned_category(&prepared), route, ctx.started, &answer);
            drop(routed.lease);
            Json(translate::openai_response(&cx, &shown, &answer)).into_response()
        }
        Reply::Stream { first, rest } => {
            state.metrics.ttft.with_label_values(&[route, model.as_str()]).observe(ctx.started.elapsed().as_secs_f64());
            let transform = SseTransform {
                lines: LineSplitter::default(),
                translator: SseTranslator::new(cx, shown),
                out: BytesMut::new(),
            };
            let on_end = finisher(&state, model.clone(), learned_category(&prepared), route, ctx.started);
            let relay =
                RelayBody::new(first, rest, transform, state.forwarder.idle_timeout, Box::new(routed.lease), on_end);
            let mut r = Response::new(Body::new(relay));
            sse_headers(&mut r);
            r
        }
    };
    Ok(decorate(response, &model, category))
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, OpenAiError> {
    complete(state, ctx, headers, body, OpenAiKind::Chat).await
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, OpenAiError> {
    complete(state, ctx, headers, body, OpenAiKind::Completion).await
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, OpenAiError> {
    let route = "/v1/embeddings";
    let bytes = read_body(&headers, body, state.config.server.max_body.0).await?;
    let request = parse_object(&bytes, state.config.server.max_json_depth as usize)?;
    let (native, base64) = translate::embeddings_request(&request)?;
    let quality = quality_header(&headers)?;
    let mut prepared = prepare_native(
        Endpoint::Embed,
        native,
        PrepareContext { routing: &state.config.routing, classifier: &state.classifier, quality_header: quality },
    )?;
    prepared.stream = false;
    let routed = dispatch(&state, &prepared, &ctx.request_id, Surface::OpenAi).await?;
    let model = routed.model.clone();
    let Reply::Buffered(bytes) = routed.reply else {
        return Err(RouterError::Internal("embedding answer was streamed".into()).into());
    };
    let answer: Value = serde_json::from_slice(&bytes)
        .map_err(|e| RouterError::UpstreamFailed(format!("Ollama sent invalid JSON: {e}")))?;
    finish_buffered(&state, &model, learned_category(&prepared), route, ctx.started, &answer);
    drop(routed.lease);
    let out = translate::embeddings_response(&routed.upstream_name, &answer, base64);
    Ok(decorate(Json(out).into_response(), &model, "embedding"))
}

fn model_object(id: &str, owned_by: &str, created: i64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": owned_by})
}

/// `GET /v1/models`: the pulled models and the virtual `auto` ones.
pub async fn models(State(state): State<AppState>) -> Result<Json<Value>, OpenAiError> {
    let tags = state.ollama.tags().await?;
    let mut data = Vec::with_capacity(tags.models.len() + VIRTUAL_MODELS.len());
    for m in &tags.models {
        let created = chrono::DateTime::parse_from_rfc3339(&m.modified_at).map_or(0, |t| t.timestamp());
        data.push(model_object(&m.name, "library", created));
    }
    let now = chrono::Utc::now().timestamp();
    for (name, _) in VIRTUAL_MODELS {
        data.push(model_object(name, "switchyard", now));
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/models/{model}`.
pub async fn model(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, OpenAiError> {
    if VIRTUAL_MODELS.iter().any(|(v, _)| *v == id) {
        return Ok(Json(model_object(&id, "switchyard", chrono::Utc::now().timestamp())));
    }
    let tags = state.ollama.tags().await?;
    let wanted = switchyard_core::ModelName::parse(&id)?;
    let found = tags.models.iter().find(|m| switchyard_core::ModelName::parse(&m.name).is_ok_and(|n| n == wanted));
    match found {
        Some(m) => {
            let created = chrono::DateTime::parse_from_rfc3339(&m.modified_at).map_or(0, |t| t.timestamp());
            Ok(Json(model_object(&m.name, "library", created)))
        }
        None => Err(RouterError::ModelNotFound(id).into()),
    }
}
