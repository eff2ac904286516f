//! Model management through the router: `/api/pull` (progress streamed as it arrives), `/api/push`, `/api/create`,
//! `/api/copy` and `DELETE /api/delete` go to the local Ollama unchanged, so that Open WebUI and the `ollama` CLI
//! can manage models through Switchyard (on a fleet front, to every node in turn). They change the box, so they need the admin key when one is set (checked
//! by the gate). When one finishes, the catalog is read again at once: a pulled or created model is routable by the
//! next request, and a deleted one is gone from `auto`.

use super::read_body;
use crate::error::{OllamaError, RouterError};
use crate::request::parse_object;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use switchyard_core::http::build_request;

/// The routes this module serves (the gate asks for the admin key on them).
pub const ROUTES: [&str; 5] = ["/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"];

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
    let bytes = read_body(&headers, body, state.config.server.max_body.0).await?;
    // A clear 400 here for what is not a JSON object, rather than whatever Ollama makes of it.
    parse_object(&bytes, state.config.server.max_json_depth as usize)?;
    if !state.config.ollama.enabled {
        return fleet_forward(&state, method, path, bytes).await;
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

/// A management call on a fleet front: done on every node that answers, one after the other, so that a model pulled,
/// copied, created or deleted through the front is so on every box. A streamed pull relays each node's progress in
/// turn (a node that fails adds an error line); otherwise the first node that refuses answers for all, and the last
/// answer is returned. The fleet's catalog is read again before a whole answer returns (and by the nodes' readings
/// after a stream).
async fn fleet_forward(
    state: &AppState,
    method: Method,
    path: &str,
    bytes: Bytes,
) -> Result<Response<Body>, OllamaError> {
    use futures_util::StreamExt;
    let nodes = state.fleet.healthy_nodes();
    let Some((first, rest)) = nodes.split_first() else {
        return Err(RouterError::Unreachable(
            "no fleet node answers, and models are managed on the nodes: check `switchyard backends`".into(),
        )
        .into());
    };
    let upstream = first.send_raw(method.clone(), path, bytes.clone()).await?;
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let streamed = content_type.as_ref().and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("ndjson"));
    let body = if streamed && status.is_success() {
        let (path, rest) = (path.to_string(), rest.to_vec());
        let more = futures_util::stream::iter(rest)
            .then(move |node| {
                let (method, path, bytes) = (method.clone(), path.clone(), bytes.clone());
                async move {
                    let failed = |message: String| {
                        let line = format!("{}\n", serde_json::json!({ "error": message }));
                        futures_util::stream::once(async move { Ok::<Bytes, String>(Bytes::from(line)) }).boxed()
                    };
                    match node.send_raw(method, &path, bytes).await {
                        Ok(r) if r.status().is_success() => {
                            r.into_body().into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string())).boxed()
                        }
                        Ok(r) => failed(format!("fleet node {} answered {}", node.name(), r.status().as_u16())),
                        Err(e) => failed(format!("fleet node {}: {e}", node.name())),
                    }
                }
            })
            .flatten();
        let all = upstream.into_body().into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string())).chain(more);
        Body::from_stream(all)
    } else {
        // A node that does not have the model (404) leaves it to the others; any other refusal stops the round and
        // answers for all; otherwise a node's success answers.
        let mut answers = vec![(status, collect(upstream, path).await?)];
        for node in rest {
            if answers.last().is_some_and(|(s, _)| !s.is_success() && *s != StatusCode::NOT_FOUND) {
                break;
            }
            let r = node.send_raw(method.clone(), path, bytes.clone()).await?;
            answers.push((r.status(), collect(r, path).await?));
        }
        let refused = answers.iter().position(|(s, _)| !s.is_success() && *s != StatusCode::NOT_FOUND);
        let done = answers.iter().rposition(|(s, _)| s.is_success());
        let chosen = refused.or(done).unwrap_or(answers.len() - 1);
        let answer = answers.swap_remove(chosen);
        if answer.0.is_success() && path != "/api/push" {
            let _ = state.refresh_catalog().await;
        }
        let mut response = Response::new(Body::from(answer.1));
        *response.status_mut() = answer.0;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(response);
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(v) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(response)
}

/// The whole body of a node's answer to `path`.
async fn collect(response: Response<hyper::body::Incoming>, path: &str) -> Result<Bytes, RouterError> {
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| RouterError::UpstreamFailed(format!("a fleet node broke off its answer to {path}: {e}")))?
        .to_bytes())
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
