//! The one error type of the profiler crate.

use switchyard_core::CoreError;
use thiserror::Error;

/// Errors raised while loading suites or profiling models.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// A suite file is malformed; `file` names it and `message` says what is wrong (with the item id when known).
    #[error("suite {file}: {message}")]
    Suite { file: String, message: String },

    /// A requested model, category or judge is not valid; `param` names the option (`models`, `categories`,
    /// `--judge`).
    #[error("{param}: {message}")]
    InvalidOption { param: String, message: String },

    /// The upstream, the store or the configuration failed.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// Another profiling job is already running.
    #[error("a profiling job is already running ({0}); wait for it or cancel it")]
    Busy(String),

    /// The job was cancelled (shutdown or user request).
    #[error("profiling was cancelled")]
    Cancelled,

    /// A model asked for is not in Ollama's list.
    #[error("model {0} is not pulled in Ollama (see `ollama list`)")]
    UnknownModel(String),

    /// The model could not be admitted to VRAM.
    #[error("cannot load {model}: {message}")]
    Admission { model: String, message: String },
}
