//! OpenAI's API: chat completions, completions, embeddings and models, translated to Ollama's native API so that
//! `keep_alive` and load-time options stay under Switchyard's control. Streams are SSE with `[DONE]`; errors are
//! OpenAI error objects.

use super::ollama::VIRTUAL_MODELS;
use super::{RequestCtx, answer_json, decorate, read_request};
use crate::engine::{Answer, Engine, Surface};
use crate::error::{OpenAiError, RouterError};
use crate::forward::{LineSplitter, Transform};
use crate::request::Endpoint;
use crate::state::AppState;
use crate::translate::{self, OpenAiContext, OpenAiKind, SseTranslator};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
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

/// `POST /v1/chat/completions` and `/v1/completions`.
pub(super) async fn complete(
    state: AppState,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Body,
    kind: OpenAiKind,
) -> Result<Response<Body>, OpenAiError> {
    let (route, endpoint, prefix, param) = match kind {
        OpenAiKind::Chat => ("/v1/chat/completions", Endpoint::Chat, "chatcmpl", "messages"),
        OpenAiKind::Completion => ("/v1/completions", Endpoint::Generate, "cmpl", "prompt"),
    };
    let (request, meta) =
        read_request(&state, &ctx, &headers, body, (Surface::OpenAi, endpoint, route), |request| match kind {
            OpenAiKind::Chat => translate::chat_request(&request),
            OpenAiKind::Completion => translate::completion_request(&request),
        })
        .await?;
    if request.prepared.control.is_some() {
        return Err(RouterError::bad("the prompt is empty", Some(param.into())).into());
    }
    let outcome = Engine::new(&state).serve(request).await?;
    let cx = OpenAiContext {
        kind,
        id: format!("{prefix}-{}", ctx.request_id),
        created: chrono::Utc::now().timestamp(),
        include_usage: meta.include_usage,
    };
    let response = match outcome.answer {
        Answer::Buffered(bytes) => {
            Json(translate::openai_response(&cx, &outcome.shown, &answer_json(&bytes)?)).into_response()
        }
        Answer::Stream(relay) => {
            let transform = SseTransform {
                lines: LineSplitter::default(),
                translator: SseTranslator::new(cx, outcome.shown.clone()),
                out: BytesMut::new(),
            };
            let mut r = Response::new(Body::new(relay.into_body(transform)));
            sse_headers(&mut r);
            r
        }
        Answer::Control(_) => return Err(RouterError::Internal("a completion became a load".into()).into()),
    };
    Ok(decorate(response, &outcome.model, outcome.category))
}

/// `POST /v1/embeddings`.
pub(super) async fn embeddings(
    state: AppState,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, OpenAiError> {
    let inbound = (Surface::OpenAi, Endpoint::Embed, "/v1/embeddings");
    let (mut request, base64) =
        read_request(&state, &ctx, &headers, body, inbound, |request| translate::embeddings_request(&request)).await?;
    request.prepared.stream = false;
    let outcome = Engine::new(&state).serve(request).await?;
    let Answer::Buffered(bytes) = outcome.answer else {
        return Err(RouterError::Internal("embedding answer was not buffered".into()).into());
    };
    let out = translate::embeddings_response(&outcome.shown, &answer_json(&bytes)?, base64);
    Ok(decorate(Json(out).into_response(), &outcome.model, outcome.category))
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
