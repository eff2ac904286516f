//! Control calls to Ollama: list, show, ps, load, unload.

use super::keep_alive::KeepAlive;
use super::types::{PsResponse, ShowResponse, TagsResponse, VersionResponse};
use crate::error::CoreError;
use crate::http::{HttpClient, join_url};
use crate::model::ModelName;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// What a load call reported.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOutcome {
    /// `load_duration` from Ollama's answer: queue wait plus load, a few ms when the model was already loaded.
    pub load_duration: Duration,
    /// Wall time of the call as seen from here.
    pub wall: Duration,
}

/// A client for Ollama's control endpoints. Cheap to clone; shares the connection pool.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: HttpClient,
    base: String,
    /// Deadline for quick control calls (tags, ps, show, version).
    control_timeout: Duration,
    /// Deadline for a load: cold loads take seconds to minutes (Ollama's own limit is 5 minutes).
    load_timeout: Duration,
}

impl OllamaClient {
    /// A client for the Ollama at `base` (`http://127.0.0.1:11434`).
    pub fn new(http: HttpClient, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_string(),
            control_timeout: Duration::from_secs(10),
            load_timeout: Duration::from_secs(300),
        }
    }

    /// Replaces the deadlines for control calls and loads.
    pub fn with_timeouts(mut self, control: Duration, load: Duration) -> Self {
        self.control_timeout = control;
        self.load_timeout = load;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The full URL of `path` on this upstream.
    pub fn url(&self, path: &str) -> String {
        join_url(&self.base, path)
    }

    /// `GET /api/version`.
    pub async fn version(&self) -> Result<VersionResponse, CoreError> {
        self.http.get_json(&self.url("/api/version"), self.control_timeout).await
    }

    /// `GET /api/tags`: every pulled model.
    pub async fn tags(&self) -> Result<TagsResponse, CoreError> {
        self.http.get_json(&self.url("/api/tags"), self.control_timeout).await
    }

    /// `GET /api/ps`: what is loaded now.
    pub async fn ps(&self) -> Result<PsResponse, CoreError> {
        self.http.get_json(&self.url("/api/ps"), self.control_timeout).await
    }

    /// `POST /api/show` for one model.
    pub async fn show(&self, model: &ModelName) -> Result<ShowResponse, CoreError> {
        self.http.post_json(&self.url("/api/show"), &json!({ "model": model.as_str() }), self.control_timeout).await
    }

    /// Loads `model` without generating, with `keep_alive` and load-time `options` (`num_ctx`...).
    /// Embedding-only models are loaded through `/api/embed`, as Ollama requires.
    pub async fn load(
        &self,
        model: &ModelName,
        embedding_only: bool,
        keep_alive: KeepAlive,
        options: &Map<String, Value>,
    ) -> Result<LoadOutcome, CoreError> {
        let mut body = json!({ "model": model.as_str(), "keep_alive": keep_alive.to_json() });
        if !options.is_empty() {
            body["options"] = Value::Object(options.clone());
        }
        let path = if embedding_only { "/api/embed" } else { "/api/generate" };
        if !embedding_only {
            body["stream"] = Value::Bool(false);
        }
        let started = std::time::Instant::now();
        let answer: Value = self.http.post_json(&self.url(path), &body, self.load_timeout).await?;
        let load_ns = answer.get("load_duration").and_then(Value::as_u64).unwrap_or(0);
        Ok(LoadOutcome { load_duration: Duration::from_nanos(load_ns), wall: started.elapsed() })
    }

    /// Asks Ollama to unload `model` (`keep_alive: 0`). Ollama answers at once and unloads when in-flight work is
    /// done; poll [`OllamaClient::ps`] to confirm.
    pub async fn unload(&self, model: &ModelName, embedding_only: bool) -> Result<(), CoreError> {
        let path = if embedding_only { "/api/embed" } else { "/api/generate" };
        let mut body = json!({ "model": model.as_str(), "keep_alive": 0 });
        if !embedding_only {
            body["stream"] = Value::Bool(false);
        }
        let _: Value = self.http.post_json(&self.url(path), &body, self.control_timeout).await?;
        Ok(())
    }
}
