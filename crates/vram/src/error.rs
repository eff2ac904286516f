//! The one error type of the VRAM crate. Each variant says what a client can do about it; the router maps them
//! to HTTP statuses (503 with `Retry-After` for the waits, 502 for upstream failures) in one place.

use switchyard_core::CoreError;
use thiserror::Error;

/// Errors of the VRAM manager and its probes.
#[derive(Debug, Error)]
pub enum VramError {
    /// No room could be made in time: every model that could be unloaded is pinned or serving requests.
    #[error("no VRAM for {model} within the wait limit: {reason}")]
    Busy { model: String, reason: String, retry_after_secs: u64 },

    /// Too many requests are already waiting for or running on this model.
    #[error("too many requests queued for {model} ({limit} at most); retry shortly")]
    QueueFull { model: String, limit: u32, retry_after_secs: u64 },

    /// The model is not in Ollama's list.
    #[error("model {0} is not pulled in Ollama")]
    UnknownModel(String),

    /// Ollama failed to load the model (out of memory, corrupt file, timeout), or could not be reached at all
    /// (`unreachable`).
    #[error("loading {model} failed: {message}")]
    LoadFailed { model: String, message: String, unreachable: bool },

    /// A pin was refused because pinned models alone would exceed the budget.
    #[error("cannot pin {model}: {reason}")]
    PinRefused { model: String, reason: String },

    /// A GPU probe is not available on this machine (no driver, no simulator).
    #[error("GPU probe {probe} unavailable: {message}")]
    ProbeUnavailable { probe: &'static str, message: String },

    /// The manager is shutting down.
    #[error("the VRAM manager is shutting down")]
    ShuttingDown,

    /// Ollama or the simulator could not be reached or answered with an error.
    #[error(transparent)]
    Upstream(#[from] CoreError),
}

impl VramError {
    /// Seconds a client should wait before retrying, for errors that are worth retrying.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            VramError::Busy { retry_after_secs, .. } | VramError::QueueFull { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            VramError::ShuttingDown => Some(5),
            _ => None,
        }
    }
}
