//! The one error type of the simulator crate, and the HTTP status each variant is answered with.
//!
//! The two API surfaces render the same variants in their own shapes (`api::native` as Ollama's
//! `{"error":"..."}`, `api::openai` as OpenAI's `{"error":{"message","type",...}}`); the status comes from the one
//! exhaustive match in [`SimError::status`].

use axum::http::StatusCode;
use thiserror::Error;

/// Everything that can go wrong in the simulator, from a bad request body to a simulated out-of-memory load.
#[derive(Debug, Error)]
pub enum SimError {
    /// The request is malformed: bad JSON, a wrong type, a bad `keep_alive`, an unknown format. The text says what.
    #[error("{0}")]
    BadRequest(String),

    /// The request names no model.
    #[error("model is required")]
    ModelRequired,

    /// Generate, chat and show for a model that is not in the fleet; carries the name as the client sent it.
    #[error("model '{0}' not found")]
    ModelNotFound(String),

    /// Embed (and anything answered by the scheduler) for a model that is not in the fleet: Ollama's other wording.
    #[error("model \"{0}\" not found, try pulling it first")]
    ModelNotPulled(String),

    /// The model lacks a capability the request needs (`tools`, `thinking`, `generate`, `embeddings`...).
    #[error("{model} does not support {capability}")]
    Unsupported {
        /// The model as the client named it (quoted the way Ollama quotes it for that capability).
        model: String,
        /// What it cannot do, in Ollama's words.
        capability: String,
    },

    /// More requests are pending than `max_queue` allows.
    #[error("server busy, please try again.  maximum pending requests exceeded")]
    QueueFull,

    /// A load would not fit in the GPU's real memory (foreign usage included), or an injected OOM fault.
    #[error("llama runner process has terminated: cudaMalloc failed: out of memory")]
    OutOfMemory,

    /// An error injected through `/sim/faults`.
    #[error("{message}")]
    Injected {
        /// The status the fault asked for.
        status: u16,
        /// The message the fault asked for (a default when none was given).
        message: String,
        /// The `Retry-After` header the fault asked for, in seconds.
        retry_after: Option<u64>,
    },

    /// The server is shutting down; work in progress is abandoned.
    #[error("the server is shutting down")]
    ShuttingDown,

    /// The fleet file or the built-in fleet is invalid; `model` names the entry when one is at fault.
    #[error("fleet: {0}")]
    Fleet(String),

    /// The simulator options are inconsistent (no GPU, a negative time scale...).
    #[error("options: {0}")]
    Options(String),

    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

impl SimError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            SimError::BadRequest(_) | SimError::ModelRequired | SimError::Unsupported { .. } => StatusCode::BAD_REQUEST,
            SimError::ModelNotFound(_) | SimError::ModelNotPulled(_) => StatusCode::NOT_FOUND,
            SimError::QueueFull | SimError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            SimError::Injected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            SimError::OutOfMemory | SimError::Fleet(_) | SimError::Options(_) | SimError::Bind { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The `Retry-After` header this error's answer carries.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            SimError::Injected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Shorthand for a bad request with a message.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        SimError::BadRequest(message.into())
    }

    /// Shorthand for a missing capability.
    pub(crate) fn unsupported(model: impl Into<String>, capability: &str) -> Self {
        SimError::Unsupported { model: model.into(), capability: capability.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_ollama() {
        assert_eq!(SimError::ModelRequired.status(), StatusCode::BAD_REQUEST);
        assert_eq!(SimError::ModelNotFound("x".into()).status(), StatusCode::NOT_FOUND);
        assert_eq!(SimError::QueueFull.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(SimError::OutOfMemory.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            SimError::Injected { status: 429, message: "x".into(), retry_after: None }.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            SimError::QueueFull.to_string(),
            "server busy, please try again.  maximum pending requests exceeded"
        );
        assert_eq!(SimError::ModelNotPulled("x".into()).to_string(), "model \"x\" not found, try pulling it first");
    }
}
