//! OpenAI's API: chat completions, completions, embeddings and models, translated to Ollama's native API so that
//! `keep_alive` and load-time options stay under Switchyard's control. Streams are SSE with `[DONE]`; errors are
//! OpenAI error objects.

use super::{RequestCtx, answer_json, decorate, invalid_answer, read_request};
use crate::engine::{Answer, Engine, Surface};
use crate::error::{OpenAiError, RouterError};
use crate::forward::{LineSplitter, RelayBody, Transform};
use crate::request::Endpoint;
use crate::state::AppState;
use crate::translate::{
    self, OpenAiContext, OpenAiKind, ResponsesContext, ResponsesTranslator, SseEvents, SseTranslator,
};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Response, header};
use axum::response::IntoResponse;
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

/// Rewrites Ollama NDJSON into OpenAI SSE events as lines complete.
struct SseTransform<T: SseEvents> {
    lines: LineSplitter,
    translator: T,
    out: BytesMut,
}

impl<T: SseEvents> SseTransform<T> {
    fn new(translator: T) -> Self {
        Self { lines: LineSplitter::default(), translator, out: BytesMut::new() }
    }
}

impl<T: SseEvents> Transform for SseTransform<T> {
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

/// Which text-generating OpenAI endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Generation {
    /// `/v1/chat/completions` and `/v1/completions`.
    Classic(OpenAiKind),
    /// `/v1/responses`.
    Responses,
}

/// `POST /v1/chat/completions`, `/v1/completions` and `/v1/responses`.
pub(super) async fn complete(
    state: AppState,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Body,
    generation: Generation,
) -> Result<Response<Body>, OpenAiError> {
    let (route, endpoint, param) = match generation {
        Generation::Classic(OpenAiKind::Chat) => ("/v1/chat/completions", Endpoint::Chat, "messages"),
        Generation::Classic(OpenAiKind::Completion) => ("/v1/completions", Endpoint::Generate, "prompt"),
        Generation::Responses => ("/v1/responses", Endpoint::Chat, "input"),
    };
    let (request, (meta, echo)) =
        read_request(&state, &ctx, &headers, body, (Surface::OpenAi, endpoint, route), |request| {
            let with = |(native, meta)| (native, (meta, serde_json::Map::new()));
            match generation {
                Generation::Classic(OpenAiKind::Chat) => translate::chat_request(&request).map(with),
                Generation::Classic(OpenAiKind::Completion) => translate::completion_request(&request).map(with),
                Generation::Responses => translate::responses_request(&request)
                    .map(|(native, meta)| (native, (meta, translate::responses_echo(&request)))),
            }
        })
        .await?;
    if request.prepared.control.is_some() {
        return Err(RouterError::bad("the prompt is empty", Some(param.into())).into());
    }
    let outcome = Engine::new(&state).serve(request).await?;
    let created = chrono::Utc::now().timestamp();
    let shown = outcome.shown.clone();
    let response = match (outcome.answer, generation) {
        (Answer::Buffered(bytes), Generation::Classic(kind)) => {
            let cx = classic_context(kind, &ctx, created, meta.include_usage);
            let json = translate::openai_response_bytes(&cx, &shown, &bytes).map_err(invalid_answer)?;
            let mut response = Response::new(Body::from(json));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        (Answer::Buffered(bytes), Generation::Responses) => {
            let cx = ResponsesContext { id: format!("resp_{}", ctx.request_id), created, echo };
            Json(translate::responses_response(&cx, &shown, &answer_json(&bytes)?)).into_response()
        }
        (Answer::Stream(relay), Generation::Classic(kind)) => {
            let cx = classic_context(kind, &ctx, created, meta.include_usage);
            sse(relay.into_body(SseTransform::new(SseTranslator::new(cx, shown))))
        }
        (Answer::Stream(relay), Generation::Responses) => {
            let cx = ResponsesContext { id: format!("resp_{}", ctx.request_id), created, echo };
            sse(relay.into_body(SseTransform::new(ResponsesTranslator::new(cx, shown))))
        }
        (Answer::Control(_), _) => return Err(RouterError::Internal("a completion became a load".into()).into()),
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

/// What the chat and completion translations need to know about the request.
fn classic_context(kind: OpenAiKind, ctx: &RequestCtx, created: i64, include_usage: bool) -> OpenAiContext {
    let prefix = if kind == OpenAiKind::Chat { "chatcmpl" } else { "cmpl" };
    OpenAiContext { kind, id: format!("{prefix}-{}", ctx.request_id), created, include_usage }
}

/// An SSE response of `body`.
fn sse<T: Transform>(body: RelayBody<T>) -> Response<Body> {
    let mut r = Response::new(Body::new(body));
    sse_headers(&mut r);
    r
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
    let out = translate::embeddings_response(&outcome.shown, &bytes, base64).map_err(invalid_answer)?;
    let mut response = Response::new(Body::from(out));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(decorate(
        response,
        &outcome.model,
        outcome.category,
        outcome.cache,
        outcome.cascade.as_deref(),
        outcome.node.as_deref(),
    ))
}

fn model_object(id: &str, owned_by: &str, created: i64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": owned_by})
}

/// `GET /v1/models`: the pulled models and the virtual `auto` ones.
pub async fn models(State(state): State<AppState>) -> Result<Json<Value>, OpenAiError> {
    let local = match if state.config.ollama.enabled { state.ollama.tags().await } else { Ok(Default::default()) } {
        Ok(tags) => tags.models,
        Err(e) if state.backends.is_empty() && state.fleet.is_empty() => return Err(RouterError::from(e).into()),
        Err(_) => Vec::new(),
    };
    let virtual_models = state.tasks.virtual_models();
    let mut data = Vec::with_capacity(local.len() + virtual_models.len());
    for m in &local {
        let created = chrono::DateTime::parse_from_rfc3339(&m.modified_at).map_or(0, |t| t.timestamp());
        data.push(model_object(&m.name, "library", created));
    }
    let now = chrono::Utc::now().timestamp();
    for spec in state.catalog.load().models.values() {
        if let Some(b) = &spec.backend {
            data.push(model_object(spec.name.as_str(), &b.name, now));
        }
    }
    for (name, _) in virtual_models {
        data.push(model_object(name, "switchyard", now));
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/models/{model}`.
pub async fn model(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, OpenAiError> {
    let id = super::path(id)?;
    let bare = id.strip_suffix(":latest").unwrap_or(&id);
    if state.tasks.virtual_models().iter().any(|(v, _)| *v == bare) {
        return Ok(Json(model_object(&id, "switchyard", chrono::Utc::now().timestamp())));
    }
    let wanted = switchyard_core::ModelName::parse(&id)?;
    if let Some(b) = state.catalog.load().get(&wanted).and_then(|s| s.backend.clone()) {
        return Ok(Json(model_object(wanted.as_str(), &b.name, chrono::Utc::now().timestamp())));
    }
    if !state.config.ollama.enabled {
        return Err(RouterError::ModelNotFound(id).into());
    }
    let tags = state.ollama.tags().await?;
    let found = tags.models.iter().find(|m| switchyard_core::ModelName::parse(&m.name).is_ok_and(|n| n == wanted));
    match found {
        Some(m) => {
            let created = chrono::DateTime::parse_from_rfc3339(&m.modified_at).map_or(0, |t| t.timestamp());
            Ok(Json(model_object(&m.name, "library", created)))
        }
        None => Err(RouterError::ModelNotFound(id).into()),
    }
}
