//! The router's one error type, and its mapping to each surface's error shape in one exhaustive match per surface.
//!
//! Messages say what to do. Internal details (SQL, file paths, upstream bodies beyond their own error text) never
//! reach a client.

use crate::forward::ForwardFailure;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_core::{CoreError, ModelName};
use switchyard_profiler::ProfileError;
use switchyard_vram::VramError;
use thiserror::Error;

/// Everything a request can fail with.
#[derive(Debug, Error)]
pub enum RouterError {
    /// The request is malformed: bad JSON, a wrong type, a missing field, an option out of range. `param` names the
    /// offending field when known.
    #[error("{message}")]
    BadRequest { message: String, param: Option<String> },

    /// The model is not pulled in Ollama.
    #[error("model '{0}' not found")]
    ModelNotFound(String),

    /// The body is larger than `server.max_body`.
    #[error("request body is larger than the {limit} byte limit (server.max_body)")]
    PayloadTooLarge { limit: u64 },

    /// The request body's `Content-Encoding` is one the router does not decode.
    #[error("{0}")]
    UnsupportedEncoding(String),

    /// A key is required and was missing or wrong.
    #[error("{0}")]
    Unauthorized(String),

    /// A per-IP or per-key rate limit was exceeded.
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },

    /// No room on the GPU or too many queued requests; worth retrying.
    #[error("{message}")]
    Busy { message: String, retry_after_secs: u64 },

    /// No local model has what the request needs (tools, vision, context).
    #[error("{0}")]
    NoCapableModel(String),

    /// The upstream answered an error that is the client's to fix (4xx); passed on with its own message.
    #[error("{message}")]
    UpstreamRejected { status: u16, message: String },

    /// Every candidate failed (5xx, out of memory, crash) before anything was sent.
    #[error("{0}")]
    UpstreamFailed(String),

    /// Ollama could not be reached at all.
    #[error("{0}")]
    Unreachable(String),

    /// Ollama did not answer in time.
    #[error("{0}")]
    Timeout(String),

    /// A conflicting operation is running (one profiling job at a time).
    #[error("{0}")]
    Conflict(String),

    /// Not found (an unknown job id, an unknown route).
    #[error("{0}")]
    NotFound(String),

    /// The route exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),

    /// A browser request from a web origin that is not allowed (`server.cors_origins`).
    #[error("{0}")]
    Forbidden(String),

    /// The server is stopping.
    #[error("Switchyard is shutting down; retry against another instance or in a moment")]
    ShuttingDown,

    /// Switchyard could not start (store, configuration, listener); the message says what to fix.
    #[error("cannot start: {0}")]
    Startup(String),

    /// A bug or an unexpected internal failure; the message is logged, the client sees a generic text.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RouterError {
    /// A bad request naming `param`.
    pub fn bad(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        Self::BadRequest { message: message.into(), param: param.into() }
    }

    /// The HTTP status for this error (the same on every surface).
    pub fn status(&self) -> StatusCode {
        match self {
            RouterError::BadRequest { .. } | RouterError::NoCapableModel(_) => StatusCode::BAD_REQUEST,
            RouterError::ModelNotFound(_) | RouterError::NotFound(_) => StatusCode::NOT_FOUND,
            RouterError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            RouterError::Forbidden(_) => StatusCode::FORBIDDEN,
            RouterError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RouterError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RouterError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            RouterError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            RouterError::Busy { .. } | RouterError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            RouterError::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).ok().filter(|s| s.is_client_error()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            RouterError::UpstreamFailed(_) | RouterError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            RouterError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            RouterError::Conflict(_) => StatusCode::CONFLICT,
            RouterError::Internal(_) | RouterError::Startup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds to put in `Retry-After`, for errors worth retrying.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            RouterError::RateLimited { retry_after_secs } | RouterError::Busy { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            RouterError::ShuttingDown => Some(5),
            RouterError::Unreachable(_) => Some(2),
            _ => None,
        }
    }

    /// The text a client sees.
    pub fn client_message(&self) -> String {
        match self {
            RouterError::Internal(_) | RouterError::Startup(_) => {
                "internal error in Switchyard; see its log".to_string()
            }
            other => other.to_string(),
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RouterError::BadRequest { .. } => "bad_request",
            RouterError::ModelNotFound(_) => "model_not_found",
            RouterError::PayloadTooLarge { .. } => "too_large",
            RouterError::UnsupportedEncoding(_) => "unsupported_encoding",
            RouterError::Unauthorized(_) => "unauthorized",
            RouterError::RateLimited { .. } => "rate_limited",
            RouterError::Busy { .. } => "busy",
            RouterError::NoCapableModel(_) => "no_capable_model",
            RouterError::UpstreamRejected { .. } => "upstream_rejected",
            RouterError::UpstreamFailed(_) => "upstream_failed",
            RouterError::Unreachable(_) => "unreachable",
            RouterError::Timeout(_) => "timeout",
            RouterError::Conflict(_) => "conflict",
            RouterError::NotFound(_) => "not_found",
            RouterError::MethodNotAllowed(_) => "method_not_allowed",
            RouterError::Forbidden(_) => "forbidden",
            RouterError::ShuttingDown => "shutting_down",
            RouterError::Internal(_) => "internal",
            RouterError::Startup(_) => "startup",
        }
    }
}

impl From<VramError> for RouterError {
    fn from(e: VramError) -> Self {
        match e {
            VramError::Busy { model, reason, retry_after_secs } => RouterError::Busy {
                message: format!("no GPU memory for {model} right now: {reason}"),
                retry_after_secs,
            },
            VramError::QueueFull { model, limit, retry_after_secs } => RouterError::Busy {
                message: format!(
                    "{model} already has {limit} requests queued or running (limits.queue_per_model); retry shortly"
                ),
                retry_after_secs,
            },
            VramError::UnknownModel(m) => RouterError::ModelNotFound(m),
            VramError::LoadFailed { unreachable: true, .. } => unreachable(""),
            VramError::LoadFailed { model, message, .. } => {
                RouterError::UpstreamFailed(format!("Ollama failed to load {model}: {message}"))
            }
            VramError::PinRefused { model, reason } => RouterError::Conflict(format!("cannot pin {model}: {reason}")),
            VramError::ProbeUnavailable { .. } => RouterError::Internal(e.to_string()),
            VramError::ShuttingDown => RouterError::ShuttingDown,
            VramError::Upstream(core) => core.into(),
        }
    }
}

/// Ollama cannot be reached; `detail` follows "cannot reach Ollama" (where, or why).
fn unreachable(detail: &str) -> RouterError {
    RouterError::Unreachable(format!(
        "cannot reach Ollama{detail}; check that it is running (`ollama serve`) and that ollama.url is right"
    ))
}

impl RouterError {
    /// The error a client sees when `failure` was the last forwarding failure, for `model`.
    /// `backend` names the `[[backends]]` entry that failed; `None` is the local Ollama.
    pub(crate) fn forward_failure(failure: &ForwardFailure, model: &ModelName, backend: Option<&str>) -> Self {
        let (who, timeout_key) = match backend {
            Some(name) => (
                format!("backend {name}"),
                format!(
                    "first_byte_timeout_secs of backend {name}, or its answer_timeout_secs for an answer that is not \
                     streamed"
                ),
            ),
            None => (
                "Ollama".to_string(),
                "ollama.first_byte_timeout_secs, or ollama.answer_timeout_secs for an answer that is not streamed"
                    .to_string(),
            ),
        };
        match failure {
            ForwardFailure::Connect(message) | ForwardFailure::Refused(message) if backend.is_some() => {
                RouterError::Unreachable(format!(
                    "cannot reach {who} ({message}); check that it is running and that its url is right"
                ))
            }
            ForwardFailure::Connect(message) | ForwardFailure::Refused(message) => {
                unreachable(&format!(" ({message})"))
            }
            ForwardFailure::Status { status: 503, message, retry_after } => RouterError::Busy {
                message: format!("{who} is busy: {message}"),
                retry_after_secs: retry_after.unwrap_or(2),
            },
            // The provider's own Retry-After when it sent one: a client that waits less is limited again.
            ForwardFailure::Status { status: 429, message, retry_after } if backend.is_some() => RouterError::Busy {
                message: format!("{who} is rate-limiting requests: {message}"),
                retry_after_secs: retry_after.unwrap_or(5),
            },
            ForwardFailure::Status { status, message, .. } => RouterError::UpstreamFailed(format!(
                "{model} failed ({who} answered {status}: {message}); retry, or pick another model"
            )),
            ForwardFailure::Timeout(d) => RouterError::Timeout(format!(
                "{model} did not answer within {} s ({timeout_key}); the model may be overloaded",
                d.as_secs()
            )),
            ForwardFailure::Broken(message) => {
                RouterError::UpstreamFailed(format!("{model} broke off its answer: {message}"))
            }
            ForwardFailure::TooLarge(message) => RouterError::UpstreamFailed(format!("{model}: {message}")),
        }
    }
}

impl From<CoreError> for RouterError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Unreachable { url, .. } | CoreError::Refused { url, .. } => {
                unreachable(&format!(" at {}", origin(&url)))
            }
            CoreError::Timeout { url, seconds } => {
                RouterError::Timeout(format!("Ollama at {} did not answer within {seconds:.0} s", origin(&url)))
            }
            CoreError::Upstream { status, message, .. } if (400..500).contains(&status) => {
                RouterError::UpstreamRejected { status, message }
            }
            CoreError::Upstream { status, message, .. } => {
                RouterError::UpstreamFailed(format!("Ollama answered {status}: {message}"))
            }
            CoreError::InvalidModelName { name, reason } => {
                RouterError::bad(format!("invalid model name {name:?}: {reason}"), Some("model".to_string()))
            }
            other => RouterError::Internal(other.to_string()),
        }
    }
}

impl From<ProfileError> for RouterError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Suite { .. } => RouterError::Startup(e.to_string()),
            ProfileError::InvalidOption { param, message } => RouterError::bad(message, Some(param)),
            ProfileError::Core(core) => core.into(),
            ProfileError::Busy(_) => RouterError::Conflict(e.to_string()),
            ProfileError::Cancelled => RouterError::ShuttingDown,
            ProfileError::UnknownModel(m) => RouterError::ModelNotFound(m),
            ProfileError::Admission { .. } => RouterError::UpstreamFailed(e.to_string()),
        }
    }
}

/// Scheme, host and port of a URL (no path or query, which might carry secrets).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or(url, |i| &url[..after_scheme + i])
}

/// Ollama's error shape: `{"error":"..."}`.
#[derive(Debug)]
pub struct OllamaError(pub RouterError);

/// OpenAI's error shape: `{"error":{"message","type","param","code"}}`.
#[derive(Debug)]
pub struct OpenAiError(pub RouterError);

impl<E: Into<RouterError>> From<E> for OllamaError {
    fn from(e: E) -> Self {
        OllamaError(e.into())
    }
}

impl<E: Into<RouterError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        OpenAiError(e.into())
    }
}

fn with_retry_after(mut response: Response, error: &RouterError) -> Response {
    if let Some(secs) = error.retry_after()
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn log(error: &RouterError) {
    match error {
        RouterError::Internal(detail) => tracing::error!(%detail, "internal error"),
        other if other.status().is_server_error() => tracing::warn!(error = %other, "request failed"),
        other => tracing::debug!(error = %other, "request rejected"),
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let e = self.0;
        log(&e);
        let body = axum::Json(json!({ "error": e.client_message() }));
        with_retry_after((e.status(), body).into_response(), &e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let e = self.0;
        log(&e);
        let (kind, code) = match &e {
            RouterError::BadRequest { .. }
            | RouterError::NoCapableModel(_)
            | RouterError::PayloadTooLarge { .. }
            | RouterError::UnsupportedEncoding(_) => ("invalid_request_error", None),
            RouterError::UpstreamRejected { .. } => ("invalid_request_error", None),
            RouterError::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            RouterError::NotFound(_) => ("not_found_error", None),
            RouterError::MethodNotAllowed(_) => ("invalid_request_error", None),
            RouterError::Forbidden(_) => ("permission_error", None),
            RouterError::Unauthorized(_) => ("authentication_error", Some("invalid_api_key")),
            RouterError::RateLimited { .. } => ("rate_limit_error", Some("rate_limit_exceeded")),
            RouterError::Conflict(_) => ("invalid_request_error", None),
            RouterError::Busy { .. }
            | RouterError::ShuttingDown
            | RouterError::UpstreamFailed(_)
            | RouterError::Unreachable(_)
            | RouterError::Timeout(_)
            | RouterError::Internal(_)
            | RouterError::Startup(_) => ("api_error", None),
        };
        let param = match &e {
            RouterError::BadRequest { param, .. } => param.clone(),
            RouterError::ModelNotFound(_) => Some("model".to_string()),
            _ => None,
        };
        let message = match &e {
            RouterError::ModelNotFound(m) => format!("The model `{m}` does not exist or is not pulled in Ollama"),
            other => other.client_message(),
        };
        let body = axum::Json(json!({ "error": { "message": message, "type": kind, "param": param, "code": code } }));
        with_retry_after((e.status(), body).into_response(), &e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_hide_paths() {
        assert_eq!(origin("http://127.0.0.1:11434/api/chat"), "http://127.0.0.1:11434");
        assert_eq!(origin("http://h:1"), "http://h:1");
    }

    #[test]
    fn vram_waits_become_503_with_retry_after() {
        let e: RouterError = VramError::Busy { model: "m".into(), reason: "pinned".into(), retry_after_secs: 7 }.into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = OpenAiError(e).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn rate_limits_are_429_with_retry_after_in_both_shapes() {
        let native = OllamaError(RouterError::RateLimited { retry_after_secs: 3 }).into_response();
        assert_eq!(native.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(native.headers()[header::RETRY_AFTER], "3");
        let openai = OpenAiError(RouterError::RateLimited { retry_after_secs: 3 }).into_response();
        assert_eq!(openai.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn internal_details_stay_inside() {
        let e = RouterError::Internal("SELECT * FROM secrets failed at /var/lib/x".into());
        assert!(!e.client_message().contains("SELECT"));
    }
}
