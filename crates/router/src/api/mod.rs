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
    let encoding = content_encoding(headers)?;
    let raw = read_raw_body(headers, body, limit, timeout).await?;
    match encoding {
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
    let mut encoding = None;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("(not text)").trim();
        if text.is_empty() || text.eq_ignore_ascii_case("identity") {
            continue;
        }
        if !text.eq_ignore_ascii_case("zstd") || encoding.is_some() {
            return Err(RouterError::UnsupportedEncoding(format!(
                "request bodies with Content-Encoding {text:?} are not accepted: send the body uncompressed or as zstd"
            )));
        }
        encoding = Some(Encoding::Zstd);
    }
    Ok(encoding)
}

/// The largest zstd window accepted: what the decoder may hold besides the output. zstd's own level 19 uses 8 MiB.
const MIN_ZSTD_WINDOW_CAP: u64 = 8 << 20;

/// A zstd frame's header, as far as bounding its decoding needs: the window the decoder keeps and the content size
/// the frame declares.
#[derive(Debug, PartialEq, Eq)]
enum ZstdFrame {
    /// A skippable frame of this many bytes in all, header included.
    Skippable(u64),
    /// A compressed frame.
    Data { window: u64, content: Option<u64> },
}

/// Reads a zstd frame header (RFC 8878, section 3.1.1) without decoding anything; `None` when it is cut short or not
/// zstd.
fn zstd_frame(b: &[u8]) -> Option<ZstdFrame> {
    let le = |bytes: &[u8]| bytes.iter().rev().fold(0u64, |n, &x| (n << 8) | u64::from(x));
    let magic = le(b.get(..4)?);
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        return Some(ZstdFrame::Skippable(8 + le(b.get(4..8)?)));
    }
    if magic != 0xFD2F_B528 {
        return None;
    }
    let descriptor = *b.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    let mut at = 5;
    let mut window = 0;
    if !single_segment {
        let w = *b.get(at)?;
        at += 1;
        let base = 1u64 << (10 + u32::from(w >> 3));
        window = base + (base / 8) * u64::from(w & 7);
    }
    at += [0, 1, 2, 4][usize::from(descriptor & 3)];
    let size_bytes = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let content = match size_bytes {
        0 => None,
        2 => Some(le(b.get(at..at + 2)?) + 256),
        n => Some(le(b.get(at..at + n)?)),
    };
    if single_segment {
        window = content.unwrap_or(0);
    }
    Some(ZstdFrame::Data { window, content })
}

/// Decompresses a zstd body (one frame or several in a row, skippable frames skipped) to at most `limit` bytes. Each
/// frame's header is read first, so that neither its declared size nor its window can make the decoder hold more
/// than the limit allows; a checksum the frame carries is checked.
fn unzstd(compressed: &[u8], limit: u64) -> Result<Bytes, RouterError> {
    use std::io::Read;
    let bad =
        |e: &dyn std::fmt::Display| RouterError::bad(format!("failed to decompress the zstd request body: {e}"), None);
    let window_cap = limit.max(MIN_ZSTD_WINDOW_CAP);
    let mut rest = compressed;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let room = limit.saturating_sub(out.len() as u64);
        match zstd_frame(rest) {
            None => return Err(bad(&"the data is not a zstd frame, or its header is cut short")),
            Some(ZstdFrame::Skippable(n)) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                rest = rest.get(n..).ok_or_else(|| bad(&"a skippable frame is cut short"))?;
                continue;
            }
            Some(ZstdFrame::Data { content: Some(n), .. }) if n > room => {
                return Err(RouterError::PayloadTooLarge { limit });
            }
            Some(ZstdFrame::Data { window, .. }) if window > window_cap => {
                return Err(bad(&format!("its window of {window} bytes is larger than the {window_cap} accepted")));
            }
            Some(ZstdFrame::Data { .. }) => {}
        }
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| bad(&e))?;
        (&mut decoder).take(room.saturating_add(1)).read_to_end(&mut out).map_err(|e| bad(&e))?;
        if out.len() as u64 > limit {
            return Err(RouterError::PayloadTooLarge { limit });
        }
        let frame = &decoder.decoder;
        if !frame.is_finished() {
            return Err(bad(&"a frame is cut short"));
        }
        if let (Some(sent), Some(computed)) = (frame.get_checksum_from_data(), frame.get_calculated_checksum())
            && sent != computed
        {
            return Err(bad(&"the checksum does not match the data"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};

    const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

    /// A frame header and one RLE block of `block` bytes of `b'a'` (the last block), as a hostile client would write
    /// it: a few bytes that decode to as much as the header lets them.
    fn rle_frame(descriptor: u8, rest_of_header: &[u8], block: u32) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.push(descriptor);
        f.extend_from_slice(rest_of_header);
        let block_header = 1 | (1 << 1) | (block << 3); // last block, RLE, size
        f.extend_from_slice(&block_header.to_le_bytes()[..3]);
        f.push(b'a');
        f
    }

    #[test]
    fn frame_headers_are_read_as_the_format_defines_them() {
        // Single segment, one byte of content size: the window is the content size.
        assert_eq!(
            zstd_frame(&rle_frame(0x20, &[100], 100)),
            Some(ZstdFrame::Data { window: 100, content: Some(100) })
        );
        // A window descriptor (exponent 3, mantissa 2: 8 KiB + 2 KiB) and two bytes of content size (+256).
        assert_eq!(
            zstd_frame(&rle_frame(0x40, &[(3 << 3) | 2, 0x10, 0x00], 8)),
            Some(ZstdFrame::Data { window: 10 << 10, content: Some(16 + 256) })
        );
        // A skippable frame, and what is not zstd or is cut short.
        assert_eq!(zstd_frame(&[0x5A, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3]), Some(ZstdFrame::Skippable(11)));
        assert_eq!(zstd_frame(b"{\"model\":1}"), None);
        assert_eq!(zstd_frame(&MAGIC), None);
        // What the encoder writes is read back as decodable.
        let data = compress_to_vec(&b"hello"[..], CompressionLevel::Fastest);
        assert!(matches!(zstd_frame(&data), Some(ZstdFrame::Data { .. })), "{data:?}");
    }

    #[test]
    fn a_frame_that_declares_or_needs_more_than_the_limit_is_refused_before_it_is_decoded() {
        let limit = 1 << 20;
        // Declares 1 TiB in 8 bytes of content size: 413 at once, nothing decoded.
        let huge = rle_frame(0xE0, &(1u64 << 40).to_le_bytes(), 1 << 16);
        assert!(matches!(unzstd(&huge, limit), Err(RouterError::PayloadTooLarge { .. })));
        // No content size, a window of 2 TiB (exponent 31): refused for its window.
        let window = rle_frame(0x00, &[31 << 3], 1 << 16);
        let Err(RouterError::BadRequest { message, .. }) = unzstd(&window, limit) else { panic!("window accepted") };
        assert!(message.contains("window"), "{message}");
        // No content size and a small window, but more blocks than the limit: the output stops at the limit.
        let mut many = MAGIC.to_vec();
        many.extend_from_slice(&[0x00, 7 << 3]); // window 128 KiB, no content size
        for i in 0..20 {
            let last = u32::from(i == 19);
            let block_header = last | (1 << 1) | ((128 << 10) << 3);
            many.extend_from_slice(&block_header.to_le_bytes()[..3]);
            many.push(b' ');
        }
        assert!(matches!(unzstd(&many, limit), Err(RouterError::PayloadTooLarge { .. })));
        assert_eq!(unzstd(&many, 4 << 20).map(|b| b.len()).ok(), Some(20 * (128 << 10)));
        // A skippable frame between two frames is passed over.
        let mut two = compress_to_vec(&b"{\"a\":"[..], CompressionLevel::Fastest);
        two.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 2, 0, 0, 0, 9, 9]);
        two.extend(compress_to_vec(&b"1}"[..], CompressionLevel::Fastest));
        assert_eq!(unzstd(&two, limit).ok().as_deref(), Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn only_zstd_and_identity_encodings_are_taken() {
        let with = |values: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::CONTENT_ENCODING, HeaderValue::from_bytes(v).unwrap());
            }
            content_encoding(&h)
        };
        assert_eq!(with(&[]).ok(), Some(None));
        assert_eq!(with(&[b"identity"]).ok(), Some(None));
        assert_eq!(with(&[b"Zstd"]).ok(), Some(Some(Encoding::Zstd)));
        for refused in [&[&b"gzip"[..]][..], &[b"zstd", b"zstd"], &[b"zstd", b"gzip"], &[b"\xff"]] {
            assert!(matches!(with(refused), Err(RouterError::UnsupportedEncoding(_))), "{refused:?}");
        }
    }
}
