//! Model management through the router: `/api/pull` (progress streamed as it arrives), `/api/push`, `/api/create`,
//! `/api/copy` and `DELETE /api/delete` go to the local Ollama unchanged, so that Open WebUI and the `ollama` CLI
//! can manage models through Switchyard (on a fleet front, to every node in turn); blobs (`/api/blobs/{digest}`)
//! stream to the local Ollama. They change the box, so they need the admin key when one is set (checked
//! by the gate). When one finishes, the catalog is read again at once: a pulled or created model is routable by the
//! next request, and a deleted one is gone from `auto`.

use super::read_body;
use crate::error::{OllamaError, RouterError};
use crate::request::parse_object;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, Uri, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::http::build_request;

/// The routes this module serves (the gate asks for the admin key on them), and blobs under `/api/blobs/`.
pub const ROUTES: [&str; 5] = ["/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"];

/// True for a path this module serves.
pub fn serves(path: &str) -> bool {
    ROUTES.contains(&path) || path.starts_with("/api/blobs/")
}

/// Most bytes of Ollama's answer to a blob request kept (it is empty, or a one-line error).
const BLOB_ANSWER_LIMIT: usize = 64 * 1024;

/// `HEAD /api/blobs/{digest}` (is the blob there?) and `POST /api/blobs/{digest}` (upload it): what `ollama create`
/// and the `ollama` library's `create_blob` send before creating a model from a local GGUF file. The upload streams
/// to Ollama as it arrives, whatever its size; Ollama checks it against the digest.
pub async fn blob(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Response<Body>, OllamaError> {
    let path = uri.path();
    let digest = path.strip_prefix("/api/blobs/").unwrap_or_default();
    let hex = digest.strip_prefix("sha256:").or_else(|| digest.strip_prefix("sha256-"));
    if !hex.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(RouterError::bad("invalid digest format: a blob is named sha256:<64 hex digits>", None).into());
    }
    if !state.config.ollama.enabled {
        return Err(RouterError::bad(
            "this router fronts a fleet and holds no models itself: upload blobs and create models on each node \
             (point OLLAMA_HOST at the node)",
            None,
        )
        .into());
    }
    // A body that is empty from the start (`HEAD`) has ended already.
    let ended = http_body::Body::is_end_stream(&body);
    let watch = Arc::new(UploadWatch { ended: AtomicBool::new(ended), ..UploadWatch::default() });
    let upload: switchyard_core::http::UploadBody = Watched { inner: body, watch: Arc::clone(&watch) }.boxed_unsync();
    let request = http::Request::builder()
        .method(method)
        .uri(state.ollama.url(path))
        .body(upload)
        .map_err(|e| RouterError::Internal(format!("cannot build the blob request: {e}")))?;
    // The upload may take as long as it keeps moving: it fails when no bytes came for `server.body_timeout_secs` (the
    // client stopped sending, or Ollama stopped reading), and Ollama's answer once it has it all is waited for as an
    // answer is (`ollama.answer_timeout_secs`).
    let idle = state.config.server.body_timeout();
    let answer_limit = Duration::from_secs(state.config.ollama.answer_timeout_secs);
    let send = state.ollama.http().send_upload(request);
    tokio::pin!(send);
    let mut seen = 0;
    let mut waited = Duration::ZERO;
    let sent = loop {
        tokio::select! {
            sent = &mut send => break sent,
            () = tokio::time::sleep(idle) => {
                let now = watch.bytes.load(Ordering::Relaxed);
                let ended = watch.ended.load(Ordering::Relaxed);
                waited = if now == seen { waited + idle } else { Duration::ZERO };
                seen = now;
                if !ended && waited >= idle {
                    return Err(RouterError::bad(
                        format!(
                            "the upload stopped for {} s (server.body_timeout_secs) after {now} bytes: the client \
                             stopped sending it or Ollama stopped reading it",
                            idle.as_secs()
                        ),
                        None,
                    )
                    .into());
                }
                if ended && waited >= answer_limit {
                    return Err(RouterError::Timeout(format!(
                        "Ollama took the whole blob but did not answer within {} s (ollama.answer_timeout_secs)",
                        answer_limit.as_secs()
                    ))
                    .into());
                }
            }
        }
    };
    let upstream = match sent {
        Ok(upstream) => upstream,
        // The client broke off the upload: its doing, not Ollama's.
        Err(_) if watch.client_failed.load(Ordering::Relaxed) => {
            return Err(RouterError::bad("the upload broke off before its end", None).into());
        }
        Err(e) => return Err(RouterError::from(e).into()),
    };
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let collect = http_body_util::Limited::new(upstream.into_body(), BLOB_ANSWER_LIMIT).collect();
    let answer = tokio::time::timeout(answer_limit, collect)
        .await
        .map_err(|_| RouterError::Timeout(format!("Ollama's answer to {path} stopped arriving")))?
        .map_err(|e| RouterError::UpstreamFailed(format!("Ollama broke off its answer to {path}: {e}")))?
        .to_bytes();
    let mut response = Response::new(Body::from(answer));
    *response.status_mut() = status;
    if let Some(v) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(response)
}

/// Reads the catalog (and the profiles that depend on it) again, in the background.
fn refresh_later(state: &AppState) {
    let state2 = state.clone();
    state.tracker.spawn(async move {
        if let Err(e) = state2.refresh_catalog().await {
            tracing::warn!(error = %e, "cannot read the catalog after a model change");
            return;
        }
        if let Err(e) = state2.reload_profiles().await {
            tracing::debug!(error = %e, "cannot reload profiles after a model change");
        }
    });
}

/// Any of the management routes: forwarded to Ollama as it came.
pub async fn forward(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, OllamaError> {
    let path = uri.path();
    let bytes = read_body(&headers, body, state.config.server.max_body.0, state.config.server.body_timeout()).await?;
    // A clear 400 here for what is not a JSON object, rather than whatever Ollama makes of it.
    parse_object(&bytes, state.config.server.max_json_depth as usize)?;
    if !state.config.ollama.enabled {
        let (response, changed) = state.fleet.manage(method, path, bytes).await?;
        if changed {
            // Before answering, so that a client's next request already sees the change.
            let _ = state.refresh_catalog().await;
        }
        return Ok(response);
    }
    let url = state.ollama.url(path);
    let request = build_request(method, &url, Some(bytes)).map_err(RouterError::from)?;
    let upstream = state.ollama.http().send(request).await.map_err(RouterError::from)?;
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let changes_models = path != "/api/push";
    let streamed = content_type.as_ref().and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("ndjson"));
    let body = if streamed {
        // Progress lines are relayed as they come; the catalog is read again when the stream ends.
        let state2 = state.clone();
        let done: Option<Box<dyn FnOnce() + Send>> =
            changes_models.then(|| Box::new(move || refresh_later(&state2)) as Box<dyn FnOnce() + Send>);
        Body::new(Finally { inner: upstream.into_body(), done })
    } else {
        let whole = upstream
            .into_body()
            .collect()
            .await
            .map_err(|e| RouterError::UpstreamFailed(format!("Ollama broke off its answer to {path}: {e}")))?
            .to_bytes();
        if changes_models && status.is_success() {
            // Before answering, so that a client's next request already sees the change.
            if let Err(e) = state.refresh_catalog().await {
                tracing::warn!(error = %e, "cannot read the catalog after a model change");
            } else if let Err(e) = state.reload_profiles().await {
                tracing::debug!(error = %e, "cannot reload profiles after a model change");
            }
        }
        Body::from(whole)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(v) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    } else {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(response)
}

/// How a streamed upload is going: bytes relayed so far, whether the client's body ended, whether it failed.
#[derive(Debug, Default)]
struct UploadWatch {
    bytes: AtomicU64,
    ended: AtomicBool,
    client_failed: AtomicBool,
}

/// The client's body relayed upstream frame by frame, counted in its [`UploadWatch`].
struct Watched {
    inner: Body,
    watch: Arc<UploadWatch>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                self.watch.bytes.fetch_add(n, Ordering::Relaxed);
                // A body of known length is not polled again once complete.
                if self.inner.is_end_stream() {
                    self.watch.ended.store(true, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(_))) => self.watch.client_failed.store(true, Ordering::Relaxed),
            Poll::Ready(None) => self.watch.ended.store(true, Ordering::Relaxed),
            Poll::Pending => {}
        }
        polled.map_err(|e| Box::new(e) as Self::Error)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that runs `done` once it ends (or is dropped: the client went away, the pull goes on in Ollama).
struct Finally {
    inner: hyper::body::Incoming,
    done: Option<Box<dyn FnOnce() + Send>>,
}

impl Finally {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done();
        }
    }
}

impl Drop for Finally {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for Finally {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
