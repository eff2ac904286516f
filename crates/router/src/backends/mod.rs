//! Backends: what serves a model. The engine admits and forwards through the [`Backend`] trait, which has two
//! implementations.
//!
//! [`OllamaBackend`] is the local Ollama as it always was: a VRAM lease from the manager, the native body forwarded
//! with the lease's load-time options, Ollama's NDJSON relayed as is. Every `[[backends]]` entry is an
//! [`OpenAiBackend`]: its models are listed by `GET /v1/models` (or the config), join the catalog with a
//! [`BackendRef`], and are served through [`wire`]'s translation of the native request. Capacity is a semaphore of
//! `max_concurrency` slots with a bounded queue, not VRAM. The API key is read once from the environment variable the
//! config names, sent only to its own backend as a bearer token, and never printed (`Debug` shows `***`).

pub(crate) mod fleet;
pub(crate) mod wire;

mod ollama;
pub(crate) use ollama::{OllamaBackend, OllamaCloud};

use crate::engine::Surface;
use crate::error::RouterError;
use crate::forward::{ForwardFailure, Reply, first_chunk, open, read_whole};
use crate::metrics::Metrics;
use crate::request::{Endpoint, Prepared};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use switchyard_core::catalog::{BackendRef, Catalog, ModelSpec};
use switchyard_core::config::{BackendConfig, BackendKind};
use switchyard_core::http::{HttpClient, HttpClientOptions, build_request_with_key, error_message, join_url};
use switchyard_core::ollama::types::ModelDetails;
use switchyard_core::{Capabilities, CoreError, ModelName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wire::{Call, SseToNative, Usage};

/// An API key: sent as a bearer token, never shown.
#[derive(Clone)]
struct ApiKey(Arc<str>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The key a `[[backends]]` entry names (`api_key_env`), read once from the environment; a warning when the variable
/// is named but not set.
fn read_key(config: &BackendConfig) -> Option<String> {
    if config.api_key_env.is_empty() {
        return None;
    }
    // A key from a mounted secret file often ends in a newline, which no header may carry.
    let key = std::env::var(&config.api_key_env).ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
    if key.is_none() {
        tracing::warn!(
            backend = %config.name,
            variable = %config.api_key_env,
            "the key variable is not set; requests go without a key"
        );
    }
    key
}

/// Counters of one backend, for `/admin/backends`.
#[derive(Debug, Default)]
pub struct BackendStats {
    in_flight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    /// Spend in millionths of the price unit.
    spend_micros: AtomicU64,
    /// Exponential average of the time to the first byte, in microseconds (0 until measured).
    latency_us: AtomicU64,
}

/// What `/admin/backends` shows of one backend.
#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    pub name: String,
    pub kind: &'static str,
    pub url: String,
    /// Whether an API key is configured and present (never the key).
    pub authenticated: bool,
    pub priced: bool,
    pub price_input_per_mtok: f64,
    pub price_output_per_mtok: f64,
    pub healthy: bool,
    /// The last listing error, when the backend could not be listed.
    pub error: Option<String>,
    pub models: Vec<String>,
    pub max_concurrency: u32,
    pub in_flight: u32,
    pub requests: u64,
    pub failures: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub spend: f64,
    /// Average time to the first byte, in milliseconds.
    pub latency_ms: Option<f64>,
    /// For a server that loads and unloads its models (llama.cpp's router mode): the loaded ones.
    pub loaded: Option<Vec<String>>,
}

/// A held slot of a backend's `max_concurrency`; released on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<BackendStats>,
    gauge: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

/// A place in a backend's queue, left when dropped (also when the waiting request is cancelled).
struct Queued<'a> {
    waiting: &'a AtomicU32,
    /// Requests that were waiting before this one.
    ahead: u32,
}

impl<'a> Queued<'a> {
    fn join(waiting: &'a AtomicU32) -> Self {
        Self { ahead: waiting.fetch_add(1, Ordering::AcqRel), waiting }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why no slot was free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// The queue is full (`limits.queue_per_model` waiting).
    QueueFull,
    /// No slot freed up within the wait.
    Busy,
}

/// Why a backend did not admit a request.
#[derive(Debug)]
pub(crate) enum Admission {
    /// No room now (VRAM, slots, queue): another candidate may have some; a named model answers 503.
    Busy(RouterError),
    /// The model failed to come up (a failed load): counts against its breaker.
    Failed(RouterError),
    /// Nothing else will do better (the backend is down, the process is stopping).
    Fatal(RouterError),
}

/// What serves a model: admission, forwarding in Ollama's native shapes, and what a failure means for it.
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Takes what serving `model` needs (a VRAM lease, a slot), waiting at most `wait`.
    async fn admit(&self, model: &ModelName, prepared: &Prepared, wait: Duration) -> Result<Hold, Admission>;
    /// Sends the request for model `id` (as this backend knows it); the answer names the model `shown`.
    async fn send(
        &self,
        prepared: &Prepared,
        surface: Surface,
        id: &str,
        shown: &str,
        hold: &Hold,
    ) -> Result<Reply, ForwardFailure>;
    /// The longest gap allowed between stream chunks.
    fn idle_timeout(&self) -> Duration;
    /// True for `[[backends]]` entries: a refused key or a rate limit there is the backend's failure.
    fn remote(&self) -> bool;
    /// True when `failure` means the backend had no room for the request now (a fleet's nodes all answered 503):
    /// like a busy admission, it does not count against the model.
    fn refused_for_room(&self, _failure: &ForwardFailure) -> bool {
        false
    }
    /// Reacts to a failed forward (Ollama reconciles its VRAM view after a 500, which may be a failed load).
    fn failed(&self, failure: &ForwardFailure, tracker: &tokio_util::task::TaskTracker);
}

/// What a request holds while it is served: a VRAM lease on the local Ollama, or a backend's slot. Dropping it is
/// what releases the lease or slot.
#[derive(Debug)]
pub(crate) enum Hold {
    Vram(switchyard_vram::Lease),
    Slot(#[allow(dead_code)] Slot),
    /// The fleet's nodes to try in order, and the node serving once one answered.
    Fleet(fleet::FleetHold),
    /// An Ollama cloud model's request: nothing to hold locally.
    Cloud,
}

/// The host of a base URL (`https://api.openai.com/v1` -> `api.openai.com`), as the configuration checks it.
fn url_host(url: &str) -> Option<String> {
    url.parse::<http::Uri>().ok()?.host().filter(|h| !h.is_empty()).map(str::to_string)
}

/// One OpenAI-compatible backend.
#[derive(Debug)]
pub struct OpenAiBackend {
    pub index: usize,
    pub config: BackendConfig,
    key: Option<ApiKey>,
    http: HttpClient,
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
    queue_limit: u32,
    stats: Arc<BackendStats>,
    metrics: Metrics,
    /// The last listing: its error, if it failed, and the model ids.
    listing: Mutex<(Option<String>, Vec<String>)>,
    /// Router mode (llama.cpp's `llama-server --models-preset`): the server loads and unloads models on request and
    /// lists each with a status. Which of its models are loaded, by id, as last seen.
    residency: Mutex<Option<std::collections::HashMap<String, bool>>>,
    /// Models a router-mode server reports as failed to start.
    failed: Mutex<Vec<String>>,
    /// The server is OpenAI's own API (`api.openai.com`), whose chat endpoint takes `max_completion_tokens`.
    openai_api: bool,
    /// What each model (by endpoint and id) was seen to refuse, learned from its 400s (for at most 1,024 of them).
    quirks: Mutex<std::collections::HashMap<(&'static str, String), wire::Quirks>>,
    /// The server is llama.cpp's (it lists its models as `owned_by: llamacpp`, or refused a `suffix` as older
    /// llama-server releases do): fill-in-the-middle goes to its `/infill`.
    llama_cpp: AtomicBool,
    /// Models whose `/infill` answered that they have no fill-in-the-middle tokens (at most 1,024 ids).
    no_infill: Mutex<std::collections::HashSet<String>>,
    /// The base of its OpenAI API (`.../v1`) and the server's root, from its `url`.
    api_base: String,
    root: String,
}

impl OpenAiBackend {
    fn new(index: usize, config: BackendConfig, queue_limit: u32, metrics: Metrics) -> Self {
        let key = read_key(&config).map(|k| ApiKey(Arc::from(k)));
        let http = HttpClient::new(&HttpClientOptions {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            // Below the keep-alive timeout servers commonly use (llama.cpp's is 5 s), so that an idle pooled
            // connection is dropped here before the server closes it under a new request.
            pool_idle_timeout: Duration::from_secs(4),
            // Checked when the configuration was loaded.
            extra_roots: if config.ca_file.is_empty() {
                Vec::new()
            } else {
                switchyard_core::http::read_pem_certificates(&config.ca_file).unwrap_or_else(|e| {
                    tracing::error!(backend = %config.name, error = %e, "cannot read ca_file");
                    Vec::new()
                })
            },
            ..HttpClientOptions::default()
        });
        let slots = Arc::new(Semaphore::new(config.max_concurrency as usize));
        let (api_base, root) = config.endpoints();
        tracing::info!(backend = %config.name, api = %api_base, "OpenAI-compatible backend");
        Self {
            index,
            key,
            http,
            slots,
            waiting: AtomicU32::new(0),
            queue_limit,
            stats: Arc::new(BackendStats::default()),
            metrics,
            listing: Mutex::new((None, Vec::new())),
            residency: Mutex::new(None),
            failed: Mutex::new(Vec::new()),
            quirks: Mutex::new(std::collections::HashMap::new()),
            llama_cpp: AtomicBool::new(false),
            no_infill: Mutex::new(std::collections::HashSet::new()),
            api_base,
            root,
            openai_api: url_host(&config.url).is_some_and(|h| h.eq_ignore_ascii_case("api.openai.com")),
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn key(&self) -> Option<&str> {
        self.key.as_ref().map(|k| &*k.0)
    }

    /// Requests in flight and the slots there are.
    pub fn load(&self) -> (u32, u32) {
        (self.stats.in_flight.load(Ordering::Relaxed), self.config.max_concurrency)
    }

    /// Average time to the first byte, in seconds, once measured.
    pub fn latency_seconds(&self) -> Option<f64> {
        let us = self.stats.latency_us.load(Ordering::Relaxed);
        (us > 0).then(|| us as f64 / 1e6)
    }

    /// Takes a slot, waiting at most `wait` behind at most `limits.queue_per_model` others.
    pub async fn acquire(&self, wait: Duration) -> Result<Slot, SlotError> {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let queued = Queued::join(&self.waiting);
                if queued.ahead >= self.queue_limit {
                    return Err(SlotError::QueueFull);
                }
                let got = tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await;
                drop(queued);
                match got {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(SlotError::Busy),
                }
            }
        };
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let gauge = self.metrics.backend_in_flight.with_label_values(&[self.name()]);
        gauge.inc();
        Ok(Slot { _permit: permit, stats: Arc::clone(&self.stats), gauge })
    }

    /// Lists the backend's models as catalog entries: the configured list when there is one, else `/v1/models`.
    pub async fn discover(&self) -> Result<Vec<ModelSpec>, CoreError> {
        let listed = self.list().await;
        let error = listed.as_ref().err().map(ToString::to_string);
        let result = if self.config.models.is_empty() {
            listed.map(|entries| entries.iter().filter_map(|(id, meta)| self.spec(id, None, meta)).collect::<Vec<_>>())
        } else {
            // Configured models are offered even while the server cannot be listed (its answers then decide).
            let entries = listed.unwrap_or_default();
            Ok(self
                .config
                .models
                .iter()
                .filter_map(|m| {
                    let d = m.details();
                    let meta = entries.iter().find(|(id, _)| *id == d.name).map_or(&Value::Null, |(_, m)| m);
                    self.spec(&d.name, Some(&d), meta)
                })
                .collect())
        };
        if let Ok(mut l) = self.listing.lock() {
            l.0 = error.clone();
            if let Ok(specs) = &result {
                l.1 = specs.iter().filter_map(|s| s.backend.as_ref().map(|b| b.id.to_string())).collect();
            }
        }
        result
    }

    /// `GET /v1/models`: ids with their entries. A listing whose entries carry a `status` (llama.cpp's router mode)
    /// also records which models are loaded.
    async fn list(&self) -> Result<Vec<(String, Value)>, CoreError> {
        let entries = self.list_raw().await?;
        let statuses: Option<std::collections::HashMap<String, bool>> = entries
            .iter()
            .map(|(id, m)| {
                let status = m.get("status")?.get("value")?.as_str()?;
                // A sleeping model is held and wakes on the next request.
                Some((id.clone(), matches!(status, "loaded" | "sleeping")))
            })
            .collect();
        let failed: Vec<String> = entries
            .iter()
            .filter(|(_, m)| m.get("status").and_then(|s| s.get("failed")).and_then(Value::as_bool) == Some(true))
            .map(|(id, _)| id.clone())
            .collect();
        if let Ok(mut r) = self.residency.lock() {
            *r = statuses.filter(|s| !s.is_empty());
        }
        if entries.iter().any(|(_, m)| is_llama_cpp(m)) {
            self.llama_cpp.store(true, Ordering::Relaxed);
        }
        if let Ok(mut f) = self.failed.lock() {
            *f = failed;
        }
        Ok(entries)
    }

    /// Reads a router-mode server's model statuses again (for `/admin/backends`).
    pub async fn refresh_residency(&self) {
        if self.manages_models()
            && let Err(e) = self.list().await
        {
            tracing::debug!(backend = %self.name(), error = %e, "cannot read the model statuses");
        }
    }

    /// True when the server loads and unloads models on request (llama.cpp's router mode).
    pub fn manages_models(&self) -> bool {
        self.residency.lock().is_ok_and(|r| r.is_some())
    }

    /// Whether model `id` is loaded on a router-mode server; `None` when the server does not say.
    pub fn loaded(&self, id: &str) -> Option<bool> {
        self.residency.lock().ok().and_then(|r| r.as_ref().and_then(|m| m.get(id).copied()))
    }

    /// The URL of `path`: an OpenAI API path (`/v1/...`) under the API's base, any other under the server's root.
    fn url_for(&self, path: &str) -> String {
        match path.strip_prefix("/v1/") {
            Some(rest) => join_url(&self.api_base, rest),
            None => join_url(&self.root, path),
        }
    }

    /// Model `id`'s `/infill` said it has no fill-in-the-middle tokens.
    fn cannot_infill(&self, id: &str) -> bool {
        self.no_infill.lock().is_ok_and(|ids| ids.contains(id))
    }

    fn load_failed(&self, id: &str) -> bool {
        self.failed.lock().is_ok_and(|f| f.iter().any(|m| m == id))
    }

    fn set_loaded(&self, id: &str, loaded: bool) {
        if let Ok(mut r) = self.residency.lock()
            && let Some(map) = r.as_mut()
        {
            map.insert(id.to_string(), loaded);
        }
    }

    /// Loads or unloads model `id` on a router-mode server (`POST /models/load`, `/models/unload`).
    pub async fn manage(&self, id: &str, load: bool) -> Result<String, RouterError> {
        if !self.manages_models() {
            return Err(RouterError::bad(
                format!(
                    "backend {} holds its models itself: it lists no load status (llama.cpp's router mode, \
                     --models-preset, does)",
                    self.name()
                ),
                Some("model".into()),
            ));
        }
        let path = if load { "/models/load" } else { "/models/unload" };
        let who = || format!("backend {}", self.name());
        let unreachable = |e: CoreError| RouterError::Unreachable(format!("cannot reach {} ({e})", who()));
        self.list().await.map_err(unreachable)?;
        if self.loaded(id) != Some(load) {
            let url = self.url_for(path);
            let request = build_request_with_key(Method::POST, &url, Some(Bytes::from(json_body(id))), self.key())
                .map_err(unreachable)?;
            let resp = self
                .http
                .send_buffered(request, Duration::from_secs(self.config.control_timeout_secs))
                .await
                .map_err(unreachable)?;
            let message = error_message(&resp.body);
            // Loading one that is running (or loading), unloading one that is not: already as wanted.
            let as_wanted = resp.status == StatusCode::BAD_REQUEST
                && (message.contains("already running") || message.contains("not running"));
            if !resp.status.is_success() && !as_wanted {
                return Err(RouterError::UpstreamFailed(format!(
                    "{} answered {} to {path} for {id}: {message}",
                    who(),
                    resp.status.as_u16()
                )));
            }
        }
        // The server loads in the background: wait (within the load timeout) until it lists the model as wanted,
        // backing off. This also reads which other model it evicted (`--models-max`).
        let timeout = Duration::from_secs(self.config.first_byte_timeout_secs);
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            self.list().await.map_err(unreachable)?;
            if self.loaded(id) == Some(load) {
                break;
            }
            if load && self.load_failed(id) {
                return Err(RouterError::UpstreamFailed(format!("{} failed to load {id} (see its log)", who())));
            }
            if Instant::now() >= deadline {
                return Err(RouterError::Timeout(format!(
                    "{} did not {} {id} within {} s (first_byte_timeout_secs)",
                    who(),
                    if load { "load" } else { "unload" },
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        Ok(if load {
            format!("{id} is loaded on backend {}", self.name())
        } else {
            format!("{id} is unloaded from backend {}", self.name())
        })
    }

    async fn list_raw(&self) -> Result<Vec<(String, Value)>, CoreError> {
        let url = self.url_for("/v1/models");
        let request = build_request_with_key(Method::GET, &url, None, self.key())?;
        let resp = self.http.send_buffered(request, Duration::from_secs(self.config.control_timeout_secs)).await?;
        if !resp.status.is_success() {
            return Err(CoreError::Upstream { url, status: resp.status.as_u16(), message: error_message(&resp.body) });
        }
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| CoreError::Decode { url: url.clone(), message: e.to_string() })?;
        let list = v.get("data").or_else(|| v.get("models")).and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(list
            .into_iter()
            .filter_map(|m| {
                let id = m.get("id").or_else(|| m.get("model")).or_else(|| m.get("name")).and_then(Value::as_str)?;
                Some((id.to_string(), m.clone()))
            })
            .collect())
    }

    /// A catalog entry for model `id`, from its configured details and what the server listed about it.
    fn spec(
        &self,
        id: &str,
        configured: Option<&switchyard_core::config::BackendModelDetails>,
        meta: &Value,
    ) -> Option<ModelSpec> {
        let name = match model_name_for(id) {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!(backend = %self.name(), model = %id, error = %e, "skipping a model whose name Switchyard cannot use");
                return None;
            }
        };
        // What the server says about context (llama.cpp's `meta.n_ctx` it runs with, else the trained
        // `n_ctx_train`; vLLM's `max_model_len`), unless the config says.
        let listed_ctx = meta
            .get("meta")
            .and_then(|m| m.get("n_ctx").or_else(|| m.get("n_ctx_train")))
            .or_else(|| meta.get("max_model_len"))
            .or_else(|| meta.get("context_length"))
            .and_then(Value::as_u64);
        let capabilities = match configured {
            Some(d) => Capabilities {
                completion: !d.embedding,
                embedding: d.embedding,
                tools: d.tools,
                vision: d.vision,
                thinking: d.thinking,
                insert: d.insert && !self.cannot_infill(id),
            },
            // Unconfigured models of an OpenAI-compatible server: chat with tools (the server refuses what its model
            // cannot do, and that answer reaches the client), and on a llama.cpp server holding one model,
            // fill-in-the-middle until its `/infill` says the model has no tokens for it. (A router-mode server would
            // load a model only to find that out, evicting another.)
            None => Capabilities {
                completion: true,
                tools: true,
                insert: (is_llama_cpp(meta) || self.llama_cpp.load(Ordering::Relaxed))
                    && meta.get("status").is_none()
                    && !self.cannot_infill(id),
                ..Capabilities::default()
            },
        };
        let context_length = configured.map(|d| d.context_length).filter(|n| *n > 0).or(listed_ctx);
        Some(ModelSpec {
            name,
            digest: format!("{}:{}", self.name(), id),
            size_bytes: 0,
            details: ModelDetails::default(),
            capabilities,
            context_length,
            kv_bytes_per_token: None,
            block_count: None,
            backend: Some(BackendRef {
                index: self.index,
                name: Arc::from(self.name()),
                id: Arc::from(id),
                priced: self.config.priced(),
                fleet: false,
            }),
            cloud: false,
        })
    }

    /// Sends a native request to model `id` and answers in the native shape. `shown` names the model in the answer.
    async fn forward(
        &self,
        mut call: Call,
        prepared: &Prepared,
        id: &str,
        shown: &str,
    ) -> Result<Reply, ForwardFailure> {
        let started = Instant::now();
        let mut wire = wire::request(call, &prepared.body, id, prepared.stream, !self.config.priced());
        let mut quirks = self.quirks_of(call, id);
        quirks.apply(&mut wire);
        // An answer that is not streamed comes whole when it is done: its limit bounds the generation.
        let limit = if prepared.stream { self.config.first_byte_timeout_secs } else { self.config.answer_timeout_secs };
        let timeout = Duration::from_secs(limit);
        let deadline = tokio::time::Instant::now() + timeout;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let times = Times { started, deadline, timeout };
        let mut result;
        // A 400 that names a field the server refuses (a reasoning model's `max_tokens` or `temperature`) is sent
        // again without it, or under its newer name, and the model is remembered: a few tries at most, each learning
        // something new, all within the one deadline.
        let mut tries = 0;
        let top = wire::logprobs_top(&prepared.body);
        loop {
            let body = serde_json::to_vec(&wire).map_err(|e| ForwardFailure::Connect(e.to_string()))?;
            let url = self.url_for(call.path());
            let request = build_request_with_key(Method::POST, &url, Some(Bytes::from(body)), self.key())
                .map_err(|e| ForwardFailure::Connect(e.to_string()))?;
            result = self.exchange(request, (call, top), shown, prepared.stream, times).await;
            tries += 1;
            match &result {
                // Older llama-server releases refuse a `suffix` on `/v1/completions` ("Unsupported param: suffix"):
                // their own `/infill` fills in the middle (a server listed without `owned_by`, or configured models).
                Err(ForwardFailure::Status { status: 400, message, .. })
                    if call == Call::Completion && message.contains("Unsupported param: suffix") =>
                {
                    self.llama_cpp.store(true, Ordering::Relaxed);
                    call = Call::Infill;
                    wire = wire::request(call, &prepared.body, id, prepared.stream, !self.config.priced());
                    quirks = self.quirks_of(call, id);
                    quirks.apply(&mut wire);
                }
                // A server taken for llama.cpp's without an `/infill` (a proxy that copies its listing): not a missing
                // model. (A router-mode server's 404 is one: its unknown models are answered so.)
                Err(ForwardFailure::Status { status: 404, .. }) if call == Call::Infill && !self.manages_models() => {
                    result = Err(ForwardFailure::Status {
                        status: 400,
                        message: format!("backend {} has no /infill for fill-in-the-middle", self.name()),
                        retry_after: None,
                    });
                    break;
                }
                // A model without fill-in-the-middle tokens: the request asked what the model cannot do (as a
                // 400, so that `auto` moves on and the model is not counted as failing), and `auto` stops offering
                // it for that.
                Err(ForwardFailure::Status { status: 501, message, .. }) if call == Call::Infill => {
                    if let Ok(mut ids) = self.no_infill.lock()
                        && ids.len() < 1024
                    {
                        ids.insert(id.to_string());
                    }
                    result = Err(ForwardFailure::Status {
                        status: 400,
                        message: format!("{shown} cannot fill in the middle on backend {}: {message}", self.name()),
                        retry_after: None,
                    });
                    break;
                }
                Err(ForwardFailure::Status { status: 400, message, .. })
                    if tries < 4 && quirks.learn(&wire, message) =>
                {
                    tracing::info!(
                        backend = %self.name(),
                        model = %id,
                        quirks = ?quirks,
                        "the backend refused a request field; sending again without it"
                    );
                    wire = wire::request(call, &prepared.body, id, prepared.stream, !self.config.priced());
                    quirks.apply(&mut wire);
                    self.remember_quirks(call, id, &quirks);
                }
                _ => break,
            }
        }
        match &result {
            Ok(_) => {
                self.set_loaded(id, true);
                let us = started.elapsed().as_micros().max(1) as f64;
                let old = self.stats.latency_us.load(Ordering::Relaxed) as f64;
                let new = if old == 0.0 { us } else { 0.8 * old + 0.2 * us };
                self.stats.latency_us.store(new as u64, Ordering::Relaxed);
                self.metrics.backend_requests.with_label_values(&[self.name(), "ok"]).inc();
            }
            Err(_) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.metrics.backend_requests.with_label_values(&[self.name(), "error"]).inc();
            }
        }
        result
    }

    async fn exchange(
        &self,
        request: http::Request<http_body_util::Full<Bytes>>,
        (call, top): (Call, Option<usize>),
        shown: &str,
        stream: bool,
        times: Times,
    ) -> Result<Reply, ForwardFailure> {
        let Times { started, deadline, timeout } = times;
        let body = match open(&self.http, request, deadline, timeout).await {
            Ok(body) => body,
            // llama.cpp's router answers 400 "model 'x' not found" for a model it does not have: that is a missing
            // model (another candidate may serve), not a bad request.
            Err(ForwardFailure::Status { status: 400, message, .. }) if message.contains("not found") => {
                return Err(ForwardFailure::Status { status: 404, message, retry_after: None });
            }
            Err(e) => return Err(e),
        };
        if !stream {
            let bytes = read_whole(body, deadline, timeout).await?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ForwardFailure::Broken(format!("the backend's answer is not JSON: {e}")))?;
            if let Some(message) = wire::answer_error(&v) {
                return Err(ForwardFailure::Broken(format!("the backend answered with an error: {message}")));
            }
            let (mut native, usage) = wire::answer(call, shown, &v, started.elapsed().as_nanos() as u64);
            if let Some(top) = top {
                wire::trim_logprobs(native.get_mut("logprobs"), top);
            }
            self.account(&usage);
            let out = serde_json::to_vec(&native).map_err(|e| ForwardFailure::Broken(e.to_string()))?;
            return Ok(Reply::Buffered(Bytes::from(out)));
        }
        let sse = SseBody {
            inner: body,
            conv: SseToNative::new(call, shown).with_top_logprobs(top.unwrap_or(0)),
            ended: false,
            accounting: Some(self.accounting()),
        };
        first_chunk(sse.boxed_unsync(), deadline, timeout).await
    }

    /// What model `id` was seen to refuse on this endpoint. OpenAI's own chat endpoint takes
    /// `max_completion_tokens` from the start (its reasoning models refuse `max_tokens`, and every chat model reads the
    /// newer name); its legacy completions endpoint takes `max_tokens` only.
    fn quirks_of(&self, call: Call, id: &str) -> wire::Quirks {
        let learned = self.quirks.lock().ok().and_then(|q| q.get(&(call.path(), id.to_string())).cloned());
        learned.unwrap_or_else(|| wire::Quirks {
            completion_tokens: call != Call::Completion && self.openai_api,
            dropped: Vec::new(),
        })
    }

    /// Remembers what model `id` refuses on this endpoint, with what other requests learned meanwhile (for at most
    /// 1,024 models and endpoints: ids come from the catalog, bounded anyway).
    fn remember_quirks(&self, call: Call, id: &str, quirks: &wire::Quirks) {
        if let Ok(mut q) = self.quirks.lock() {
            let key = (call.path(), id.to_string());
            if q.len() < 1024 || q.contains_key(&key) {
                let merged = match q.get(&key) {
                    Some(known) => quirks.clone().merged(known),
                    None => quirks.clone(),
                };
                q.insert(key, merged);
            }
        }
    }

    /// Where this backend's answers count their tokens and cost.
    fn accounting(&self) -> Accounting {
        Accounting {
            stats: Arc::clone(&self.stats),
            metrics: self.metrics.clone(),
            name: self.config.name.clone(),
            prices: (self.config.price_input_per_mtok, self.config.price_output_per_mtok),
        }
    }

    fn account(&self, usage: &Usage) {
        self.accounting().record(usage);
    }

    /// What `/admin/backends` shows.
    pub fn view(&self) -> BackendView {
        let (error, models) = self.listing.lock().map(|l| l.clone()).unwrap_or_default();
        let s = &self.stats;
        BackendView {
            name: self.config.name.clone(),
            kind: "openai",
            url: self.config.url.clone(),
            authenticated: self.key.is_some(),
            priced: self.config.priced(),
            price_input_per_mtok: self.config.price_input_per_mtok,
            price_output_per_mtok: self.config.price_output_per_mtok,
            healthy: error.is_none(),
            error,
            models,
            max_concurrency: self.config.max_concurrency,
            in_flight: s.in_flight.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            input_tokens: s.input_tokens.load(Ordering::Relaxed),
            output_tokens: s.output_tokens.load(Ordering::Relaxed),
            spend: s.spend_micros.load(Ordering::Relaxed) as f64 / 1e6,
            latency_ms: self.latency_seconds().map(|s| s * 1000.0),
            loaded: self.residency.lock().ok().and_then(|r| {
                r.as_ref().map(|m| {
                    let mut ids: Vec<String> = m.iter().filter(|(_, l)| **l).map(|(id, _)| id.clone()).collect();
                    ids.sort();
                    ids
                })
            }),
        }
    }
}

#[async_trait::async_trait]
impl Backend for OpenAiBackend {
    async fn admit(&self, _model: &ModelName, _prepared: &Prepared, wait: Duration) -> Result<Hold, Admission> {
        match self.acquire(wait).await {
            Ok(slot) => Ok(Hold::Slot(slot)),
            Err(why) => Err(Admission::Busy(RouterError::Busy {
                message: match why {
                    SlotError::QueueFull => format!(
                        "backend {} already has {} requests queued (limits.queue_per_model); retry shortly",
                        self.name(),
                        self.queue_limit
                    ),
                    SlotError::Busy => format!(
                        "backend {} is serving {} requests (its max_concurrency); retry shortly",
                        self.name(),
                        self.config.max_concurrency
                    ),
                },
                retry_after_secs: 1,
            })),
        }
    }

    async fn send(
        &self,
        prepared: &Prepared,
        surface: Surface,
        id: &str,
        shown: &str,
        _hold: &Hold,
    ) -> Result<Reply, ForwardFailure> {
        let mut call = call_for(prepared, surface);
        if call == Call::Completion && has_suffix(prepared) && self.llama_cpp.load(Ordering::Relaxed) {
            call = Call::Infill;
        }
        self.forward(call, prepared, id, shown).await
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.idle_timeout_secs)
    }

    fn remote(&self) -> bool {
        true
    }

    fn failed(&self, _failure: &ForwardFailure, _tracker: &tokio_util::task::TaskTracker) {}
}

/// The name Switchyard offers a backend's model by: its id, or, for an id that is a `.gguf` file's path (llama-server
/// lists its model by the path it was started with, `-m /models/qwen2.5-7b-q4_k_m.gguf`, unless given `--alias`),
/// the file's name without `.gguf`. Requests still reach the backend by its id.
fn model_name_for(id: &str) -> Result<ModelName, CoreError> {
    let file = id.rsplit(['/', '\\']).next().unwrap_or(id);
    let stem = file
        .len()
        .checked_sub(5)
        .filter(|&at| at > 0 && file.get(at..).is_some_and(|ext| ext.eq_ignore_ascii_case(".gguf")))
        .map(|at| &file[..at]);
    match stem {
        Some(stem) => ModelName::parse(stem).or_else(|_| ModelName::parse(id)),
        None => ModelName::parse(id),
    }
}

fn json_body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "model": id })).unwrap_or_default()
}

/// When a forward started, and until when its first byte may take.
#[derive(Debug, Clone, Copy)]
struct Times {
    started: Instant,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

/// Where a finished answer's tokens and cost are counted.
#[derive(Debug)]
struct Accounting {
    stats: Arc<BackendStats>,
    metrics: Metrics,
    name: String,
    prices: (f64, f64),
}

impl Accounting {
    fn record(&self, usage: &Usage) {
        let s = &self.stats;
        s.input_tokens.fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        s.output_tokens.fetch_add(usage.output_tokens, Ordering::Relaxed);
        let cost = (usage.prompt_tokens as f64 * self.prices.0 + usage.output_tokens as f64 * self.prices.1) / 1e6;
        s.spend_micros.fetch_add((cost * 1e6).round() as u64, Ordering::Relaxed);
        self.metrics.backend_tokens.with_label_values(&[&self.name, "input"]).inc_by(usage.prompt_tokens);
        self.metrics.backend_tokens.with_label_values(&[&self.name, "output"]).inc_by(usage.output_tokens);
        if cost > 0.0 {
            self.metrics.backend_spend.with_label_values(&[&self.name]).inc_by(cost);
        }
    }
}

/// A backend's SSE body, rewritten into native NDJSON as it arrives.
struct SseBody {
    inner: hyper::body::Incoming,
    conv: SseToNative,
    ended: bool,
    accounting: Option<Accounting>,
}

impl SseBody {
    fn settle(&mut self) {
        if self.conv.is_done()
            && let Some(a) = self.accounting.take()
        {
            a.record(&self.conv.usage());
        }
    }
}

impl Drop for SseBody {
    /// A stream cut short (client gone, upstream broken) still used the tokens generated so far.
    fn drop(&mut self) {
        if let Some(a) = self.accounting.take() {
            a.record(&self.conv.usage());
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    let out = this.conv.push(&data);
                    this.settle();
                    if this.conv.is_done() {
                        // Complete: what follows `[DONE]` (even a reset connection) changes nothing.
                        this.ended = true;
                    }
                    // An empty frame when the events gave no line yet (tool-call deltas are gathered until the end):
                    // the relay sees the stream is alive and does not time it out.
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    let out = this.conv.end();
                    this.settle();
                    return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Which OpenAI call serves a native request that came in on `surface`: a generate from Ollama's surface is a
/// templated chat (as Ollama templates it) unless it is raw or fills in the middle; from OpenAI's `/v1/completions`
/// it stays a completion.
pub fn call_for(prepared: &Prepared, surface: Surface) -> Call {
    match prepared.endpoint {
        Endpoint::Chat => Call::Chat,
        Endpoint::Embed => Call::Embed,
        Endpoint::Embeddings => Call::LegacyEmbedding,
        Endpoint::Generate => {
            let raw = prepared.body.get("raw").and_then(Value::as_bool) == Some(true);
            if surface == Surface::OpenAi || raw || has_suffix(prepared) {
                Call::Completion
            } else {
                Call::ChatAsGenerate
            }
        }
    }
}

/// The request fills in the middle: it has a non-empty `suffix`.
fn has_suffix(prepared: &Prepared) -> bool {
    prepared.body.get("suffix").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// A `/v1/models` entry of llama.cpp's server.
fn is_llama_cpp(entry: &Value) -> bool {
    entry.get("owned_by").and_then(Value::as_str) == Some("llamacpp")
}

/// Every configured `openai` backend.
#[derive(Debug, Default)]
pub struct Backends {
    list: Vec<Arc<OpenAiBackend>>,
}

impl Backends {
    pub fn new(configs: &[BackendConfig], queue_limit: u32, metrics: &Metrics) -> Self {
        Self {
            list: configs
                .iter()
                // Fleet nodes are the fleet's (`fleet::Fleet`); positions here count `openai` entries only.
                .filter(|c| c.kind != BackendKind::Switchyard)
                .enumerate()
                .map(|(i, c)| Arc::new(OpenAiBackend::new(i, c.clone(), queue_limit, metrics.clone())))
                .collect(),
        }
    }

    pub fn get(&self, index: usize) -> Option<&Arc<OpenAiBackend>> {
        self.list.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<OpenAiBackend>> {
        self.list.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Lists every backend's models at once. A backend that cannot be listed keeps the models it had in `previous`
    /// (its failures then show in its breaker and `/admin/backends`).
    pub async fn discover(&self, previous: &Catalog) -> Vec<ModelSpec> {
        let lists = futures_util::future::join_all(self.list.iter().map(|b| b.discover())).await;
        let mut out = Vec::new();
        for (backend, listed) in self.list.iter().zip(lists) {
            match listed {
                Ok(specs) => out.extend(specs),
                Err(e) => {
                    tracing::warn!(backend = %backend.name(), error = %e, "cannot list the backend's models");
                    out.extend(
                        previous
                            .models
                            .values()
                            .filter(|s| s.backend.as_ref().is_some_and(|b| !b.fleet && b.index == backend.index))
                            .cloned(),
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_base_url() {
        assert_eq!(url_host("https://api.openai.com").as_deref(), Some("api.openai.com"));
        assert_eq!(url_host("https://api.openai.com/v1").as_deref(), Some("api.openai.com"));
        assert_eq!(url_host("http://user:pw@127.0.0.1:8080/x?y").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("https://api.openai.com.example.net").as_deref(), Some("api.openai.com.example.net"));
        assert_eq!(url_host("http:///x"), None);
    }

    #[test]
    fn a_model_listed_by_its_file_path_is_named_by_its_file() {
        // llama-server without --alias lists the path it was started with.
        let name = |id: &str| model_name_for(id).map(|n| n.to_string()).map_err(|e| e.to_string());
        assert_eq!(name("/models/qwen2.5-7b-instruct-q4_k_m.gguf"), Ok("qwen2.5-7b-instruct-q4_k_m:latest".into()));
        assert_eq!(name("../models/Llama-3.2-3B.Q4_K_M.gguf"), Ok("Llama-3.2-3B.Q4_K_M:latest".into()));
        assert_eq!(name("C:\\models\\phi3.gguf"), Ok("phi3:latest".into()));
        assert_eq!(name("models/qwen3-4b.GGUF"), Ok("qwen3-4b:latest".into()), "a relative path too");
        assert_eq!(name("tiny.gguf"), Ok("tiny:latest".into()));
        // An id that is a name stays itself; one that no file name rescues is still refused.
        assert_eq!(name("meta-llama/Llama-3.1-8B-Instruct"), Ok("meta-llama/Llama-3.1-8B-Instruct:latest".into()));
        assert!(name("/models/my model.gguf").is_err());
    }
}
