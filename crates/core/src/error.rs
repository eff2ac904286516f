//! The one error type of the core crate.
//!
//! Each variant says which part failed in words a user can act on; the surfaces (HTTP, CLI) decide how to show it.
//! Database and HTTP details are kept in the `Display` text for logs but never passed on to clients verbatim by the
//! router, which maps variants to its own messages.

use thiserror::Error;

/// Errors raised by configuration loading, the Ollama client and the Store.
#[derive(Debug, Error)]
pub enum CoreError {
    /// A configuration key is unknown or its value is not allowed. `key` is the dotted key (`vram.strategy`) or the
    /// environment variable / flag that carried it.
    #[error("configuration error at `{key}`: {message}")]
    Config { key: String, message: String },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A model name that Ollama would not accept (empty, path-like, too long, odd characters).
    #[error("invalid model name {name:?}: {reason}")]
    InvalidModelName { name: String, reason: &'static str },

    /// The upstream (Ollama or the simulator) could not be reached at all.
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },

    /// No connection to the upstream could be made (refused, no route): the request never reached it. Unlike
    /// [`CoreError::Unreachable`] it says nothing about what the upstream did with a request.
    #[error("cannot reach {url}: {message}")]
    Refused { url: String, message: String },

    /// The upstream answered with an error status. `message` is its own error text when it gave one.
    #[error("{url} answered {status}: {message}")]
    Upstream { url: String, status: u16, message: String },

    /// The upstream took longer than allowed.
    #[error("{url} did not answer within {seconds:.1} s")]
    Timeout { url: String, seconds: f64 },

    /// The upstream answered with a body we could not parse.
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },

    /// The store failed (connection, migration or query).
    #[error("store: {0}")]
    Store(String),
}

impl CoreError {
    /// Shorthand for a configuration error naming `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config { key: key.into(), message: message.into() }
    }

    /// True when the upstream could not be reached or timed out, as opposed to answering with an error.
    pub fn is_connectivity(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Refused { .. } | Self::Timeout { .. })
    }
}

impl From<sqlx::Error> for CoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for CoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Store(format!("migration failed: {e}"))
    }
}
