//! HTTP surfaces: Ollama's native API, OpenAI's, and Switchyard's admin routes, plus what they share: the
//! per-request context, body reading with the size limit, and the response finishing (headers, metrics, learning
//! from timings).

pub mod admin;
pub mod ollama;
pub mod openai;

use crate::error::RouterError;
use crate::forward::{OnEnd, StreamEnd};
use crate::profiles::Timings;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Instant;
use switchyard_core::{Category, ModelName};

/// Set by the request middleware for every request.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    /// The client key that authenticated the request, if keys are configured.
    pub client_key: Option<String>,
}

/// Labels a handler attaches to its response for the metrics middleware.
#[derive(Debug, Clone)]
pub struct RouteLabels {
    pub model: String,
    pub category: &'static str,
}

/// Reads a request body up to `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, RouterError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(RouterError::PayloadTooLarge { limit });
    }
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(RouterError::PayloadTooLarge { limit })
        }
        Err(e) => Err(RouterError::bad(format!("could not read the request body: {e}"), None)),
    }
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

/// Adds Switchyard's routing headers and the labels for metrics.
pub fn decorate(mut response: Response<Body>, model: &ModelName, category: &'static str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(model.as_str()) {
        response.headers_mut().insert("x-switchyard-model", v);
    }
    response.headers_mut().insert("x-switchyard-category", HeaderValue::from_static(category));
    response.extensions_mut().insert(RouteLabels { model: model.to_string(), category });
    response
}

/// What to do when an answer has been delivered: learn the model's speed, settle its breaker, record metrics.
pub fn finisher(
    state: &AppState,
    model: ModelName,
    category: Option<Category>,
    route: &'static str,
    started: Instant,
) -> OnEnd {
    let state = state.clone();
    Box::new(move |end: StreamEnd| {
        state
            .metrics
            .request_duration
            .with_label_values(&[route, model.as_str()])
            .observe(started.elapsed().as_secs_f64());
        match end {
            StreamEnd::Complete(final_chunk) => {
                state.breaker.success(&model);
                if let Some(t) = final_chunk.as_ref().and_then(Timings::from_json) {
                    learn(&state, &model, category, &t);
                }
            }
            StreamEnd::Failed(reason) => {
                state.metrics.stream_errors.with_label_values(&[route]).inc();
                state.breaker.failure(&model);
                tracing::warn!(model = %model, %reason, "stream ended with an error");
            }
            StreamEnd::ClientGone => tracing::debug!(model = %model, "client closed the stream"),
        }
    })
}

/// Records a buffered answer's outcome like a finished stream.
pub fn finish_buffered(
    state: &AppState,
    model: &ModelName,
    category: Option<Category>,
    route: &'static str,
    started: Instant,
    answer: &serde_json::Value,
) {
    state.metrics.request_duration.with_label_values(&[route, model.as_str()]).observe(started.elapsed().as_secs_f64());
    state.metrics.ttft.with_label_values(&[route, model.as_str()]).observe(started.elapsed().as_secs_f64());
    state.breaker.success(model);
    if let Some(t) = Timings::from_json(answer) {
        learn(state, model, category, &t);
    }
}

/// Folds a response's timings into the live averages (speed per model, answer length per category).
fn learn(state: &AppState, model: &ModelName, category: Option<Category>, t: &Timings) {
    let alpha = state.config.routing.ewma_alpha;
    state.live.observe(model, t, alpha);
    if let Some(c) = category {
        state.live.observe_output(c, t.eval_count, alpha);
    }
}
