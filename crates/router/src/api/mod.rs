//! HTTP surfaces: Ollama's native API, OpenAI's, and Switchyard's admin routes, plus what they share: the
//! per-request context, body reading with the size limit, the quality header, and the routing headers on a
//! response. Inference handlers parse, hand the request to the engine (`crate::engine`), and encode its outcome.

pub(crate) mod admin;
pub(crate) mod manage;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod ui;

use crate::cache::{CacheStatus, Directives};
use crate::engine::{Request, Surface};
use crate::error::{OllamaError, RouterError};
use crate::request::{Endpoint, PrepareContext, parse_object, prepare_native};
use crate::state::AppState;
use crate::translate::OpenAiKind;
use axum::body::Body;
use axum::extract::{Extension, MatchedPath, State};
use axum::http::{HeaderMap, HeaderValue, Response, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::BodyExt;
use openai::Generation;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use switchyard_core::ModelName;

/// Set by the request middleware for every request.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
}

/// Labels a handler attaches to its response for the metrics middleware.
#[derive(Debug, Clone)]
pub struct RouteLabels {
    pub model: String,
    pub category: &'static str,
}

/// Every inference route of both surfaces: one handler, the endpoint taken from the route, the answer (and any
/// error) in the shape of the surface the route belongs to.
pub(crate) async fn inference(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    path: MatchedPath,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let native = match path.as_str() {
        "/api/chat" => Endpoint::Chat,
        "/api/generate" => Endpoint::Generate,
        "/api/embed" => Endpoint::Embed,
        "/api/embeddings" => Endpoint::Embeddings,
        "/v1/embeddings" => return openai::embeddings(state, ctx, headers, body).await.into_response(),
        openai_route => {
            let generation = match openai_route {
                "/v1/chat/completions" => Generation::Classic(OpenAiKind::Chat),
                "/v1/completions" => Generation::Classic(OpenAiKind::Completion),
                "/v1/responses" => Generation::Responses,
                other => {
                    let error = RouterError::NotFound(format!("no inference route {other}"));
                    return OllamaError::from(error).into_response();
                }
            };
            return openai::complete(state, ctx, headers, body, generation).await.into_response();
        }
    };
    ollama::infer(state, ctx, headers, body, native).await.into_response()
}

/// Reads a request body up to `limit` bytes. A body that stops arriving for `timeout` (a client that declares a body
/// and stops sending it) gets a 400 and its connection back, instead of holding a task and a descriptor for ever; a
/// large body on a slow link is fine as long as it keeps coming. A body sent with `Content-Encoding: zstd` (Codex
/// compresses its requests so) is decompressed, and `limit` bounds it decompressed too.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64, timeout: Duration) -> Result<Bytes, RouterError> {
    let raw = read_raw_body(headers, body, limit, timeout).await?;
    match content_encoding(headers)? {
        None => Ok(raw),
        Some(Encoding::Zstd) => tokio::task::spawn_blocking(move || unzstd(&raw, limit))
            .await
            .map_err(|e| RouterError::Internal(format!("decompressing the request body failed: {e}")))?,
    }
}

/// A request body's encoding that the router decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Zstd,
}

/// The body's `Content-Encoding`: none (or `identity`), zstd, or a 415 that says what is accepted.
fn content_encoding(headers: &HeaderMap) -> Result<Option<Encoding>, RouterError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(None) };
    let value = value.to_str().unwrap_or_default().trim();
    if value.is_empty() || value.eq_ignore_ascii_case("identity") {
        Ok(None)
    } else if value.eq_ignore_ascii_case("zstd") {
        Ok(Some(Encoding::Zstd))
    } else {
        Err(RouterError::UnsupportedEncoding(format!(
            "request bodies with Content-Encoding {value:?} are not accepted: send the body uncompressed or as zstd"
        )))
    }
}

/// Decompresses a zstd body (one frame or several in a row) to at most `limit` bytes.
fn unzstd(compressed: &[u8], limit: u64) -> Result<Bytes, RouterError> {
    use std::io::Read;
    let bad =
        |e: &dyn std::fmt::Display| RouterError::bad(format!("failed to decompress the zstd request body: {e}"), None);
    let mut rest = compressed;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let decoder = ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| bad(&e))?;
        let room = (limit + 1).saturating_sub(out.len() as u64);
        decoder.take(room).read_to_end(&mut out).map_err(|e| bad(&e))?;
        if out.len() as u64 > limit {
            return Err(RouterError::PayloadTooLarge { limit });
        }
    }
    Ok(Bytes::from(out))
}

async fn read_raw_body(headers: &HeaderMap, body: Body, limit: u64, timeout: Duration) -> Result<Bytes, RouterError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(RouterError::PayloadTooLarge { limit });
    }
    let mut limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    // Most bodies come as one frame, kept as it is; more are gathered.
    let mut first: Option<Bytes> = None;
    let mut whole = bytes::BytesMut::new();
    loop {
        let Ok(frame) = tokio::time::timeout(timeout, limited.frame()).await else {
            return Err(RouterError::bad(
                format!("the request body stopped arriving for {} s (server.body_timeout_secs)", timeout.as_secs()),
                None,
            ));
        };
        match frame {
            None if whole.is_empty() => return Ok(first.unwrap_or_default()),
            None => return Ok(whole.freeze()),
            Some(Ok(frame)) => match (frame.into_data(), first.take()) {
                (Ok(data), None) if whole.is_empty() => first = Some(data),
                (Ok(data), earlier) => {
                    if let Some(earlier) = earlier {
                        whole.extend_from_slice(&earlier);
                    }
                    whole.extend_from_slice(&data);
                }
                (Err(_), earlier) => first = earlier,
            },
            Some(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(RouterError::PayloadTooLarge { limit });
            }
            Some(Err(e)) => return Err(RouterError::bad(format!("could not read the request body: {e}"), None)),
        }
    }
}

/// Reads a request body as one JSON object within the configured size and depth limits, turns it into a native
/// body with `native` (the identity for Ollama's surface, the translation for OpenAI's), checks and classifies it
/// for `endpoint` with the quality header applied, and makes the engine's request of it. `native`'s other output
/// (what the surface needs to encode the answer) comes back beside it.
pub(crate) async fn read_request<T>(
    state: &AppState,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    body: Body,
    (surface, endpoint, route): (Surface, Endpoint, &'static str),
    native: impl FnOnce(Map<String, Value>) -> Result<(Map<String, Value>, T), RouterError>,
) -> Result<(Request, T), RouterError> {
    let bytes = read_body(headers, body, state.config.server.max_body.0, state.config.server.body_timeout()).await?;
    let (mut native, extra) = native(parse_object(&bytes, state.config.server.max_json_depth as usize)?)?;
    let quality = quality_header(headers)?;
    let task = state.tasks.find(&mut native, headers)?;
    let mut prepared = prepare_native(
        endpoint,
        native,
        PrepareContext { routing: &state.config.routing, classifier: &state.classifier, quality_header: quality },
    )?;
    if let Some(task) = task {
        task.apply(&mut prepared, quality.is_some());
        prepared.task = Some(task);
    }
    if state.config.routing.affinity {
        prepared.conversation = crate::affinity::Conversation::of(&prepared, headers);
    }
    if state.config.server.log_prompts {
        tracing::debug!(request_id = %ctx.request_id, body = %String::from_utf8_lossy(&bytes), "request");
    }
    let request = Request {
        prepared,
        surface,
        route,
        request_id: ctx.request_id.clone(),
        started: ctx.started,
        cache: Directives::from_headers(headers),
        cascade: crate::engine::cascade::CascadeMode::from_headers(headers)?,
    };
    Ok((request, extra))
}

/// A response of JSON bytes as they are.
pub(crate) fn json_bytes(bytes: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

/// Parses a buffered upstream answer.
pub(crate) fn answer_json(bytes: &[u8]) -> Result<Value, RouterError> {
    serde_json::from_slice(bytes).map_err(invalid_answer)
}

/// A query string, or a 400 in the surface's shape saying what is wrong with it (axum's own rejection is plain
/// text).
pub(crate) fn query<T>(
    query: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, RouterError> {
    query.map(|axum::extract::Query(q)| q).map_err(|e| RouterError::bad(e.body_text(), None))
}

/// A path parameter, or a 400 in the surface's shape (axum's own rejection is plain text).
pub(crate) fn path<T>(
    path: Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>,
) -> Result<T, RouterError> {
    path.map(|axum::extract::Path(p)| p).map_err(|e| RouterError::bad(e.body_text(), None))
}

/// The error for a buffered upstream answer that is not JSON.
pub(crate) fn invalid_answer(e: serde_json::Error) -> RouterError {
    RouterError::UpstreamFailed(format!("Ollama sent invalid JSON: {e}"))
}

/// Parses `x-switchyard-quality`.
pub fn quality_header(headers: &HeaderMap) -> Result<Option<f64>, RouterError> {
    let value = match headers.get("x-switchyard-quality") {
        None => None,
        Some(v) => Some(
            v.to_str().map_err(|_| RouterError::bad("x-switchyard-quality must be a number between 0 and 1", None))?,
        ),
    };
    crate::request::parse_quality_header(value)
}

/// Adds Switchyard's routing, cache and cascade headers and the labels for metrics.
pub(crate) fn decorate(
    response: Response<Body>,
    model: &ModelName,
    category: &'static str,
    cache: CacheStatus,
    cascade: Option<&crate::engine::cascade::Report>,
    node: Option<&str>,
) -> Response<Body> {
    let mut response = label(response, model, category);
    if let Some(v) = node.and_then(|n| HeaderValue::from_str(n).ok()) {
        response.headers_mut().insert("x-switchyard-node", v);
    }
    if let Some(v) = cache.header().and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert("x-switchyard-cache", v);
    }
    for (name, value) in cascade.map(crate::engine::cascade::Report::headers).unwrap_or_default() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// Adds the routing headers (`x-switchyard-model`, `x-switchyard-category`) and the labels for metrics.
pub fn label(mut response: Response<Body>, model: &ModelName, category: &'static str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(model.as_str()) {
        response.headers_mut().insert("x-switchyard-model", v);
    }
    response.headers_mut().insert("x-switchyard-category", HeaderValue::from_static(category));
    response.extensions_mut().insert(RouteLabels { model: model.to_string(), category });
    response
}
