//! Switchyard's configuration: its shape, its defaults, and the checks a loaded configuration must pass.
//!
//! Values come in layers (built-in defaults < preset < config file < `SWITCHYARD_*` environment < flags); `layers`
//! merges them and remembers where each value came from, `presets` holds the embedded `profiles/*.toml`. Every
//! struct here denies unknown fields, and [`Config::validate`] names the key of any value it refuses.

mod layers;
mod presets;
mod tasks;
mod values;

pub use layers::{ConfigSources, ENV_ALIASES, FlagValue, LoadedConfig, Source, documented_keys, env_name, load};
pub use presets::{PRESETS, preset_text};
pub use tasks::{
    CascadeSteps, MAX_CASCADE_STEPS, TASK_KEYS, TASK_PRESETS, TaskRule, UnknownTask, VALIDATORS, effective_rule,
    preset_rule,
};
pub use values::{ByteSize, VramLimit};

use crate::error::CoreError;
use crate::model::ModelName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration. See `docs/configuration.md` for every key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub ollama: OllamaConfig,
    pub database: DatabaseConfig,
    pub vram: VramConfig,
    pub routing: RoutingConfig,
    pub breaker: BreakerConfig,
    pub limits: LimitsConfig,
    pub profiler: ProfilerConfig,
    pub cache: CacheConfig,
    /// Per-model settings, keyed by model name (`[models."qwen2.5:7b"]`).
    pub models: BTreeMap<String, ModelSettings>,
    /// OpenAI-compatible engines and providers beside the local Ollama (`[[backends]]`).
    pub backends: Vec<BackendConfig>,
    /// Task rules, keyed by task name (`[tasks.planner]`).
    pub tasks: BTreeMap<String, TaskRule>,
}

/// What a `[[backends]]` entry speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Any server with OpenAI's API: llama.cpp's `llama-server`, vLLM, SGLang, LM Studio, a remote provider.
    Openai,
    /// Ollama's native API. The one local Ollama is configured by `[ollama]`; a second one is refused.
    Ollama,
    /// A node of a fleet: another box running Ollama with `switchyard serve` beside it. This router is then a
    /// front: it reads each node's `GET /admin/state`, picks the (model, node) pair, and forwards the request to
    /// that node, which admits it through its own VRAM manager.
    Switchyard,
}

/// One OpenAI-compatible backend: where it is, how to authenticate, which models it serves, what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// A short name: shown in `/admin/backends`, metrics labels and decisions (letters, digits, `-`, `_`).
    pub name: String,
    pub kind: BackendKind,
    /// The server's root (`http://127.0.0.1:8080`: the API is under `/v1`), or the API's base as providers document
    /// it, ending in its version (`https://api.example.com/v1`, Gemini's `.../v1beta/openai`). A fleet node's is its
    /// router's root.
    pub url: String,
    /// The environment variable that holds the API key, sent as a bearer token to this backend only.
    pub api_key_env: String,
    /// A PEM file of certificate authorities to trust for this `https://` backend beside Mozilla's (a private CA).
    pub ca_file: String,
    /// Models to offer. Empty: whatever `GET /v1/models` lists. Entries are names or tables with capabilities.
    pub models: Vec<BackendModel>,
    /// Requests sent to this backend at once; more wait in its queue (at most `limits.queue_per_model` of them).
    pub max_concurrency: u32,
    /// Give up connecting after this many milliseconds.
    pub connect_timeout_ms: u64,
    /// Give up when no response head (or first stream chunk) arrived this many seconds after forwarding.
    pub first_byte_timeout_secs: u64,
    /// Give up on an answer that is not streamed when it is not complete this many seconds after forwarding.
    pub answer_timeout_secs: u64,
    /// End a stream when no chunk arrived for this many seconds.
    pub idle_timeout_secs: u64,
    /// Deadline for the model listing and the load/unload calls of a router-mode server (the wait for the load
    /// itself is `first_byte_timeout_secs`).
    pub control_timeout_secs: u64,
    /// For a fleet node (`kind = "switchyard"`): how often its `/admin/state` is read, in milliseconds.
    pub poll_interval_ms: u64,
    /// For a fleet node: models to pin there, asked of the node whenever it joins (at start, and when it returns).
    pub pin: Vec<String>,
    /// For a fleet node: models to load there whenever it joins.
    pub preload: Vec<String>,
    /// Price of a million input tokens (any currency, used consistently); with the output price, makes the
    /// backend priced (remote): see `routing.remote`.
    pub price_input_per_mtok: f64,
    /// Price of a million output tokens.
    pub price_output_per_mtok: f64,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: BackendKind::Openai,
            url: String::new(),
            api_key_env: String::new(),
            ca_file: String::new(),
            models: Vec::new(),
            max_concurrency: 4,
            connect_timeout_ms: 2000,
            first_byte_timeout_secs: 120,
            answer_timeout_secs: 600,
            idle_timeout_secs: 60,
            control_timeout_secs: 10,
            poll_interval_ms: 500,
            pin: Vec::new(),
            preload: Vec::new(),
            price_input_per_mtok: 0.0,
            price_output_per_mtok: 0.0,
        }
    }
}

impl BackendConfig {
    /// True when requests to this backend cost money (a remote provider).
    pub fn priced(&self) -> bool {
        self.price_input_per_mtok > 0.0 || self.price_output_per_mtok > 0.0
    }

    /// The base of the server's OpenAI API (what `/chat/completions` is joined to) and the server's root (where
    /// llama.cpp's own endpoints are). A `url` whose path ends in a version (`/v1`, `/api/v1`, `/v1beta/openai`,
    /// `/api/paas/v4`) is the API's base, and the root is the `url` without that ending; any other `url` is the root,
    /// with the API under `/v1`.
    pub fn endpoints(&self) -> (String, String) {
        let url = self.url.trim_end_matches('/');
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let path_start = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
        let segments: Vec<&str> = url[path_start..].split('/').filter(|s| !s.is_empty()).collect();
        let version = |s: &str| {
            s.len() >= 2
                && s.starts_with(['v', 'V'])
                && s[1..].starts_with(|c: char| c.is_ascii_digit())
                && s.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        let ending = match segments.as_slice() {
            [.., v, openai] if version(v) && openai.eq_ignore_ascii_case("openai") => 2,
            [.., v] if version(v) => 1,
            _ => 0,
        };
        if ending == 0 {
            return (format!("{url}/v1"), url.to_string());
        }
        let root_segments = &segments[..segments.len() - ending];
        let root =
            format!("{}{}", &url[..path_start], root_segments.iter().map(|s| format!("/{s}")).collect::<String>());
        (url.to_string(), root)
    }
}

/// A model a backend serves: a bare name, or a table that says what it can do where the server does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendModel {
    Name(String),
    Detailed(BackendModelDetails),
}

impl BackendModel {
    /// The details, with defaults for a bare name.
    pub fn details(&self) -> BackendModelDetails {
        match self {
            BackendModel::Name(name) => BackendModelDetails { name: name.clone(), ..BackendModelDetails::default() },
            BackendModel::Detailed(d) => d.clone(),
        }
    }
}

/// Capabilities of a backend's model, as configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendModelDetails {
    /// The model's id on the backend (what `/v1/models` lists).
    pub name: String,
    pub tools: bool,
    pub vision: bool,
    /// The model answers `/v1/embeddings` (and not chat).
    pub embedding: bool,
    pub thinking: bool,
    /// Fill-in-the-middle: `/v1/completions` with a `suffix` (on llama.cpp, its `/infill`).
    pub insert: bool,
    /// Context length in tokens (0: unknown).
    pub context_length: u64,
}

/// When `auto` may use a remote model: a priced backend's, or an Ollama cloud model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemotePolicy {
    /// Never for `auto` (a model named explicitly is still served).
    Never,
    /// Only when no local model can serve the request: none has what it needs, or every local candidate failed.
    Fallback,
    /// Scored beside local models, quality against predicted cost (`routing.cost_weight`).
    Scored,
}

impl RemotePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RemotePolicy::Never => "never",
            RemotePolicy::Fallback => "fallback",
            RemotePolicy::Scored => "scored",
        }
    }
}

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Loopback by default: the GPU box is not opened to the network unless asked.
    pub listen: SocketAddr,
    /// Key the admin routes require (`Authorization: Bearer KEY` or `x-switchyard-admin-key`). Empty = no key.
    pub admin_key: String,
    /// Keys accepted on the inference routes. Empty = the inference routes are open.
    pub client_keys: Vec<String>,
    /// Allow a non-loopback `listen` without an admin key.
    pub allow_open_admin: bool,
    /// Largest request body accepted, a zstd-compressed one also once decompressed; larger bodies get 413.
    pub max_body: ByteSize,
    /// Deepest JSON nesting accepted in a request body.
    pub max_json_depth: u32,
    /// How long SIGTERM waits for in-flight requests and streams before exiting.
    pub shutdown_grace_secs: u64,
    /// How long a client connection may take to send a request's headers, counted from when the router waits for
    /// them (so also how long a keep-alive connection may sit idle); then it is closed.
    pub header_timeout_secs: u64,
    /// How long a request's body may stop arriving (no data for this long) once its headers have come; then the
    /// request gets 400.
    pub body_timeout_secs: u64,
    /// Web origins allowed to call Switchyard from a browser, besides the local ones Ollama allows by default
    /// (`http(s)://localhost`, `127.0.0.1` and `0.0.0.0` on any port, `app://`, `file://`, `tauri://`, VS Code
    /// webviews and browser extensions). A `*` stands for any host or port; `"*"` alone allows every origin.
    pub cors_origins: Vec<String>,
    /// `pretty` (humans) or `json` (log shippers).
    pub log_format: LogFormat,
    /// Log the bodies of inference requests (the prompts) at debug level; answers are not logged. Off by default:
    /// prompts are users' data.
    pub log_prompts: bool,
    /// This router's name as a node of a fleet whose nodes share one store: its speeds, load measurements and pins
    /// are kept in rows of its own there (quality stays shared). Empty: a router on its own.
    pub node_name: String,
}

impl ServerConfig {
    /// `header_timeout_secs` as a duration.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.header_timeout_secs)
    }

    /// `body_timeout_secs` as a duration.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.body_timeout_secs)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 11435)),
            admin_key: String::new(),
            client_keys: Vec::new(),
            allow_open_admin: false,
            max_body: ByteSize::mib(32),
            max_json_depth: 64,
            shutdown_grace_secs: 30,
            header_timeout_secs: 30,
            body_timeout_secs: 60,
            cors_origins: Vec::new(),
            log_format: LogFormat::Pretty,
            log_prompts: false,
            node_name: String::new(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The Ollama upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OllamaConfig {
    /// False for a router with no Ollama of its own: a fleet front (`[[backends]] kind = "switchyard"`) or a router
    /// of OpenAI-compatible backends only. It then needs at least one `[[backends]]` entry.
    pub enabled: bool,
    /// Base URL of Ollama.
    pub url: String,
    /// Give up connecting after this many milliseconds.
    pub connect_timeout_ms: u64,
    /// Give up when no response head arrived this many seconds after forwarding (the model is already loaded then).
    pub first_byte_timeout_secs: u64,
    /// Give up on an answer that is not streamed when it is not complete this many seconds after forwarding: Ollama
    /// sends nothing of it before the whole generation is done, so this bounds the generation, not the first byte.
    pub answer_timeout_secs: u64,
    /// End a stream when no chunk arrived for this many seconds.
    pub idle_timeout_secs: u64,
    /// Give up on a model load after this many seconds.
    pub load_timeout_secs: u64,
    /// Deadline for control calls (tags, ps, show).
    pub control_timeout_secs: u64,
    /// How often the model catalog (`/api/tags`, `/api/show`) is refreshed, in seconds.
    pub catalog_refresh_secs: u64,
    /// Requests Ollama serves at once per model (its `OLLAMA_NUM_PARALLEL`); the scorer's queue-wait estimate
    /// divides by it.
    pub num_parallel: u32,
}

impl Default for OllamaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "http://127.0.0.1:11434".to_string(),
            connect_timeout_ms: 2000,
            first_byte_timeout_secs: 120,
            answer_timeout_secs: 600,
            idle_timeout_secs: 60,
            load_timeout_secs: 300,
            control_timeout_secs: 10,
            catalog_refresh_secs: 30,
            num_parallel: 1,
        }
    }
}

/// Where profiles, decisions and load events are stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:///path/file.db` or `postgres://user@host/db`. Empty = `switchyard.db` in the data directory.
    pub url: String,
    /// Data directory. Empty = `$XDG_DATA_HOME/switchyard` (`~/.local/share/switchyard`).
    pub data_dir: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Background writes (decisions, load events) waiting for the store; beyond this they are dropped and counted.
    pub write_queue: usize,
    /// How often a running server looks for new profile scores in the store (written by `switchyard profile` or
    /// another replica) and reloads its profiles when they changed.
    pub profile_refresh_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            data_dir: String::new(),
            max_connections: 4,
            write_queue: 1024,
            profile_refresh_secs: 10,
        }
    }
}

impl DatabaseConfig {
    /// The data directory after defaults are applied.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if !self.data_dir.is_empty() {
            return PathBuf::from(&self.data_dir);
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("switchyard");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/share/switchyard");
        }
        PathBuf::from("switchyard-data")
    }

    /// The database URL after defaults are applied.
    pub fn resolved_url(&self) -> String {
        if !self.url.is_empty() {
            return self.url.clone();
        }
        format!("sqlite://{}", self.resolved_data_dir().join("switchyard.db").display())
    }
}

/// Which GPU probe the VRAM manager reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// NVML when a driver is present, else Ollama's `/api/ps` with `vram.total`.
    Auto,
    Nvml,
    Ollama,
    /// The simulator's `/sim/gpu` (tests, benchmarks, demo).
    Sim,
}

/// Which idle model is unloaded first when room is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Least recently used.
    Lru,
    /// Largest first.
    Largest,
    /// Least frequently used.
    Lfu,
    /// GreedyDual-Size-Frequency: lowest uses x reload seconds / size.
    Cost,
}

impl Strategy {
    /// Lower-case name for labels and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Lru => "lru",
            Strategy::Largest => "largest",
            Strategy::Lfu => "lfu",
            Strategy::Cost => "cost",
        }
    }
}

/// The VRAM manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VramConfig {
    pub probe: ProbeKind,
    /// Memory per GPU when no probe can measure it (the `ollama` probe). Empty = unknown: 24 GiB is assumed and
    /// `/admin/vram` warns.
    pub total: String,
    /// Number of GPUs of `total` each, for the `ollama` probe.
    pub gpu_count: u32,
    /// What Switchyard may use: bytes (`20GiB`) or a percentage of each GPU (`90%`).
    pub limit: VramLimit,
    /// Kept free on every GPU on top of the limit, for allocations Ollama does not count.
    pub headroom: ByteSize,
    /// Above this share of the budget, idle unpinned models are unloaded by strategy until below it.
    pub unload_threshold_pct: f64,
    /// Only models idle at least this many seconds are unloaded for the threshold (hysteresis: a model in use is
    /// not unloaded just to be loaded again by the next request).
    pub threshold_min_idle_secs: u64,
    pub strategy: Strategy,
    /// For the `cost` strategy, a model's use counts half as much after this many seconds (how fast a model that
    /// was popular once stops being kept for it).
    pub cost_half_life_secs: u64,
    /// How often the probes are read, in milliseconds.
    pub poll_interval_ms: u64,
    /// Unload a managed model idle for this many seconds (0 = never unload for idleness).
    pub idle_ttl_secs: u64,
    /// Models pinned at start: loaded and never evicted.
    pub pins: Vec<String>,
    /// Models loaded at start (not pinned).
    pub preload: Vec<String>,
    /// Pin the fastest profiled chat model at start (the `low-latency` preset turns this on).
    pub pin_fastest: bool,
    /// How long a request waits for room before it is answered 503 with `Retry-After`, in milliseconds.
    pub admission_wait_ms: u64,
    /// How long requests for loaded models may be admitted ahead of a waiting request whose model needs an
    /// eviction, in milliseconds (0 = strictly in arrival order). During that time the waiting request's model is
    /// not loaded and nothing is evicted for it, so loaded models keep serving and later requests for the same cold
    /// model join its one load.
    pub max_bypass_ms: u64,
    /// Most models loaded at once (0 = Ollama's default of 3 per GPU).
    pub max_loaded_models: u32,
    /// Context length every model is loaded with, unless `[models."name"].num_ctx` says otherwise. Clients' own
    /// `num_ctx` is replaced by this so that different clients never force a reload.
    pub num_ctx: u64,
}

impl Default for VramConfig {
    fn default() -> Self {
        Self {
            probe: ProbeKind::Auto,
            total: String::new(),
            gpu_count: 1,
            limit: VramLimit::Percent(100.0),
            headroom: ByteSize::mib(512),
            unload_threshold_pct: 90.0,
            threshold_min_idle_secs: 60,
            strategy: Strategy::Cost,
            cost_half_life_secs: 3600,
            poll_interval_ms: 1000,
            idle_ttl_secs: 1800,
            pins: Vec::new(),
            preload: Vec::new(),
            pin_fastest: false,
            admission_wait_ms: 10_000,
            max_bypass_ms: 10_000,
            max_loaded_models: 0,
            num_ctx: 4096,
        }
    }
}

/// Which classifier `auto` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassifierKind {
    /// The learned model shipped in the binary (hashed word and structure features, logistic regression):
    /// microseconds, no model needed.
    Learned,
    /// The hand-written word-boundary rules and structure the learned model replaced.
    Rules,
    /// Nearest class centroid of labelled examples embedded through `routing.embedding_model`, the learned model as
    /// fallback.
    Embedding,
}

/// How `auto` picks a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Weight of quality against speed for `auto` (0 = fastest, 1 = best).
    pub quality_preference: f64,
    /// The weight for `auto:fast`.
    pub fast_preference: f64,
    /// The weight for `auto:quality`.
    pub best_preference: f64,
    /// Quality assumed for a model with no profile; it is flagged `unprofiled` in decisions.
    pub prior_quality: f64,
    /// How many pseudo-observations the prior is worth: few samples are shrunk toward it.
    pub prior_weight: f64,
    pub classifier: ClassifierKind,
    /// Below this classifier confidence, a model's quality is the per-category qualities weighted by the class
    /// probabilities instead of the quality in the one most likely category (0 never blends, 1 always does).
    pub blend_below: f64,
    /// Ollama embedding model for the `embedding` classifier.
    pub embedding_model: String,
    /// Share of routing decisions written to the store (all are kept in memory for `/admin/decisions`).
    pub decision_sample_rate: f64,
    /// Recent decisions kept in memory.
    pub decisions_kept: usize,
    /// Most candidates tried for one request when the first ones fail before sending anything.
    pub max_attempts: u32,
    /// Weight of each new response in the live latency averages.
    pub ewma_alpha: f64,
    /// When `auto` may use remote models: priced backends' and Ollama's cloud models.
    pub remote: RemotePolicy,
    /// Score lost per unit of predicted request cost (`price_*_per_mtok` units) under `remote = "scored"`.
    pub cost_weight: f64,
    /// What a task name no `[tasks.NAME]` rule or preset defines gets: `reject` (a 400) or `auto`.
    pub unknown_task: UnknownTask,
    /// Keep a conversation on the model that answered its previous turn while that model holds its prefix.
    pub affinity: bool,
    /// Conversations remembered for affinity (least recently used forgotten first).
    pub affinity_conversations: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            quality_preference: 0.7,
            fast_preference: 0.2,
            best_preference: 0.95,
            prior_quality: 0.4,
            prior_weight: 4.0,
            classifier: ClassifierKind::Learned,
            blend_below: 0.6,
            embedding_model: String::new(),
            decision_sample_rate: 0.05,
            decisions_kept: 256,
            max_attempts: 3,
            ewma_alpha: 0.2,
            remote: RemotePolicy::Fallback,
            cost_weight: 10.0,
            unknown_task: UnknownTask::Reject,
            affinity: true,
            affinity_conversations: 10_000,
        }
    }
}

/// The per-model circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Seconds an open breaker waits before letting one trial request through.
    pub cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, cooldown_secs: 30 }
    }
}

/// Overload protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests in flight or waiting per model; beyond it the answer is 503 with `Retry-After`.
    pub queue_per_model: u32,
    /// Requests per second per client IP (0 = no limit).
    pub per_ip_rps: f64,
    /// Requests per second per client key (0 = no limit).
    pub per_key_rps: f64,
    /// Burst size of both token buckets.
    pub burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { queue_per_model: 128, per_ip_rps: 0.0, per_key_rps: 0.0, burst: 20 }
    }
}

/// The profiler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilerConfig {
    /// Items per category (0 = the whole suite).
    pub items_per_category: u32,
    /// Directory of suite files replacing the embedded ones. Empty = embedded.
    pub suite_dir: String,
    /// Ollama model used as judge for open-ended items. Empty = no judge (those items are skipped).
    pub judge: String,
    /// OpenAI-compatible endpoint for the judge instead of a local model (`https://api.example.com/v1`).
    pub judge_url: String,
    /// Environment variable holding the judge endpoint's API key.
    pub judge_key_env: String,
    /// Most tokens an answer may have.
    pub max_output_tokens: u32,
    /// Per-item timeout floor in seconds; the timeout grows with the model's measured speed.
    pub timeout_floor_secs: u64,
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        Self {
            items_per_category: 20,
            suite_dir: String::new(),
            judge: String::new(),
            judge_url: String::new(),
            judge_key_env: "OPENAI_API_KEY".to_string(),
            max_output_tokens: 512,
            timeout_floor_secs: 30,
        }
    }
}

/// The response cache: exact answers by a hash of the request, and optionally paraphrases by embedding similarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Answer repeated requests from stored answers.
    pub enabled: bool,
    /// Most answers kept in memory (and in the store, with `persist`).
    pub max_entries: u64,
    /// Most bytes of stored answers kept in memory.
    pub max_bytes: ByteSize,
    /// Seconds an answer stays valid (0 = until evicted).
    pub ttl_secs: u64,
    /// Cache sampled answers too; by default only answers with temperature 0 or a fixed seed are cached.
    pub cache_sampled: bool,
    /// Cache answers that call tools; by default they are not.
    pub cache_tool_calls: bool,
    /// Keep answers in the store too, so that a restart keeps them and replicas sharing one Postgres share them.
    pub persist: bool,
    /// Also answer a paraphrase of a cached question, found through `cache.embedding_model`.
    pub semantic: bool,
    /// Ollama embedding model of the semantic cache.
    pub embedding_model: String,
    /// Least cosine similarity of the last user turn for a semantic hit.
    pub similarity_threshold: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_entries: 10_000,
            max_bytes: ByteSize(256 * 1024 * 1024),
            ttl_secs: 3600,
            cache_sampled: false,
            cache_tool_calls: false,
            persist: false,
            semantic: false,
            embedding_model: String::new(),
            similarity_threshold: 0.95,
        }
    }
}

/// Settings for one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// Context length this model is loaded with (0 = `vram.num_ctx`).
    pub num_ctx: u64,
    /// Idle seconds before this model is unloaded (0 = `vram.idle_ttl_secs`).
    pub idle_ttl_secs: u64,
    /// Never route `auto` requests to this model (explicit requests still work).
    pub exclude: bool,
}

impl Config {
    /// Checks ranges and cross-field rules. Every error names the key it is about.
    pub fn validate(&self) -> Result<(), CoreError> {
        let unit = |key: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(CoreError::config(key, format!("{v} is not between 0 and 1")))
            }
        };
        if !self.server.listen.ip().is_loopback() && self.server.admin_key.is_empty() && !self.server.allow_open_admin {
            return Err(CoreError::config(
                "server.listen",
                format!(
                    "{} is not a loopback address and no admin key is set: set SWITCHYARD_ADMIN_KEY \
                     (or server.admin_key), or pass --allow-open-admin to expose the admin routes without a key",
                    self.server.listen
                ),
            ));
        }
        if self.server.node_name.len() > 63
            || !self.server.node_name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(CoreError::config(
                "server.node_name",
                "must be at most 63 letters, digits, '-', '_' or '.' (a host or pod name)",
            ));
        }
        if self.server.max_body.0 < 1024 {
            return Err(CoreError::config("server.max_body", "must be at least 1KiB"));
        }
        for origin in &self.server.cors_origins {
            let origin = origin.trim();
            let shaped =
                origin == "*" || (origin.contains("://") && !origin.ends_with('/') && origin.matches('*').count() <= 1);
            if !shaped {
                return Err(CoreError::config(
                    "server.cors_origins",
                    format!(
                        "{origin:?} is not an origin: write it as the browser sends it, scheme://host[:port] with no \
                         path or trailing slash (at most one `*`, or \"*\" alone for every origin)"
                    ),
                ));
            }
        }
        if self.server.header_timeout_secs == 0 {
            return Err(CoreError::config("server.header_timeout_secs", "must be at least 1"));
        }
        if self.server.body_timeout_secs == 0 {
            return Err(CoreError::config("server.body_timeout_secs", "must be at least 1"));
        }
        if !(2..=1024).contains(&self.server.max_json_depth) {
            return Err(CoreError::config("server.max_json_depth", "must be between 2 and 1024"));
        }
        if !self.ollama.enabled && self.backends.is_empty() {
            return Err(CoreError::config(
                "ollama.enabled",
                "is false, so requests need a [[backends]] entry to go to: add fleet nodes (kind = \"switchyard\") or \
                 OpenAI-compatible servers, or set ollama.enabled = true",
            ));
        }
        if !(self.ollama.url.starts_with("http://") || self.ollama.url.starts_with("https://"))
            || self.ollama.url.parse::<http::Uri>().is_err()
        {
            return Err(CoreError::config("ollama.url", format!("{:?} is not an http:// URL", self.ollama.url)));
        }
        if self.ollama.url.starts_with("https://") {
            return Err(CoreError::config(
                "ollama.url",
                "https upstreams are not supported; put Ollama on loopback or a private network",
            ));
        }
        for (key, v) in [
            ("ollama.connect_timeout_ms", self.ollama.connect_timeout_ms),
            ("ollama.first_byte_timeout_secs", self.ollama.first_byte_timeout_secs),
            ("ollama.answer_timeout_secs", self.ollama.answer_timeout_secs),
            ("ollama.idle_timeout_secs", self.ollama.idle_timeout_secs),
            ("ollama.load_timeout_secs", self.ollama.load_timeout_secs),
            ("ollama.control_timeout_secs", self.ollama.control_timeout_secs),
            ("ollama.catalog_refresh_secs", self.ollama.catalog_refresh_secs),
            ("database.profile_refresh_secs", self.database.profile_refresh_secs),
            ("vram.poll_interval_ms", self.vram.poll_interval_ms),
        ] {
            if v == 0 {
                return Err(CoreError::config(key, "must be greater than 0"));
            }
        }
        let url = self.database.resolved_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(CoreError::config("database.url", "must start with sqlite: or postgres://"));
        }
        if self.ollama.num_parallel == 0 || self.ollama.num_parallel > 256 {
            return Err(CoreError::config(
                "ollama.num_parallel",
                "must be between 1 and 256 (Ollama's OLLAMA_NUM_PARALLEL)",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(CoreError::config("database.max_connections", "must be at least 1"));
        }
        if !self.vram.total.is_empty() {
            crate::size::parse_bytes(&self.vram.total).map_err(|m| CoreError::config("vram.total", m))?;
        }
        if self.vram.gpu_count == 0 || self.vram.gpu_count > 64 {
            return Err(CoreError::config("vram.gpu_count", "must be between 1 and 64"));
        }
        if !(1.0..=100.0).contains(&self.vram.unload_threshold_pct) {
            return Err(CoreError::config("vram.unload_threshold_pct", "must be between 1 and 100"));
        }
        if self.vram.cost_half_life_secs == 0 {
            return Err(CoreError::config("vram.cost_half_life_secs", "must be at least 1"));
        }
        if self.vram.num_ctx < 256 {
            return Err(CoreError::config("vram.num_ctx", "must be at least 256"));
        }
        for (key, list) in [("vram.pins", &self.vram.pins), ("vram.preload", &self.vram.preload)] {
            for name in list {
                ModelName::parse(name).map_err(|err| CoreError::config(key, err.to_string()))?;
            }
        }
        for name in self.models.keys() {
            ModelName::parse(name).map_err(|err| CoreError::config(format!("models.{name:?}"), err.to_string()))?;
        }
        unit("routing.quality_preference", self.routing.quality_preference)?;
        unit("routing.fast_preference", self.routing.fast_preference)?;
        unit("routing.best_preference", self.routing.best_preference)?;
        unit("routing.prior_quality", self.routing.prior_quality)?;
        unit("routing.decision_sample_rate", self.routing.decision_sample_rate)?;
        unit("routing.blend_below", self.routing.blend_below)?;
        if !(0.01..=1.0).contains(&self.routing.ewma_alpha) {
            return Err(CoreError::config("routing.ewma_alpha", "must be between 0.01 and 1"));
        }
        if !(0.0..=1000.0).contains(&self.routing.prior_weight) {
            return Err(CoreError::config("routing.prior_weight", "must be between 0 and 1000"));
        }
        if self.routing.classifier == ClassifierKind::Embedding && self.routing.embedding_model.is_empty() {
            return Err(CoreError::config(
                "routing.embedding_model",
                "must name an Ollama embedding model when routing.classifier = \"embedding\"",
            ));
        }
        if self.routing.affinity_conversations == 0 {
            return Err(CoreError::config("routing.affinity_conversations", "must be at least 1"));
        }
        for (name, rule) in &self.tasks {
            // The rule as it applies (over its preset), so that a preset's cascade counts for cascade keys.
            tasks::effective_rule(name, rule, &self.routing).validate(name)?;
        }
        if self.routing.max_attempts == 0 || self.routing.max_attempts > 10 {
            return Err(CoreError::config("routing.max_attempts", "must be between 1 and 10"));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(CoreError::config("breaker.failure_threshold", "must be at least 1"));
        }
        if self.limits.queue_per_model == 0 {
            return Err(CoreError::config("limits.queue_per_model", "must be at least 1"));
        }
        for (key, v) in [("limits.per_ip_rps", self.limits.per_ip_rps), ("limits.per_key_rps", self.limits.per_key_rps)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(CoreError::config(key, "must be 0 (off) or a positive number of requests per second"));
            }
        }
        if (self.limits.per_ip_rps > 0.0 || self.limits.per_key_rps > 0.0) && self.limits.burst == 0 {
            return Err(CoreError::config("limits.burst", "must be at least 1 when a rate limit is set"));
        }
        if self.profiler.max_output_tokens == 0 {
            return Err(CoreError::config("profiler.max_output_tokens", "must be at least 1"));
        }
        if !(self.routing.cost_weight.is_finite() && self.routing.cost_weight >= 0.0) {
            return Err(CoreError::config("routing.cost_weight", "must be 0 or a positive number"));
        }
        self.validate_cache()?;
        self.validate_backends()
    }

    fn validate_cache(&self) -> Result<(), CoreError> {
        let c = &self.cache;
        if c.max_entries == 0 {
            return Err(CoreError::config("cache.max_entries", "must be at least 1"));
        }
        if c.max_bytes.0 < 1024 {
            return Err(CoreError::config("cache.max_bytes", "must be at least 1KiB"));
        }
        if !(c.similarity_threshold.is_finite() && (0.5..=1.0).contains(&c.similarity_threshold)) {
            return Err(CoreError::config(
                "cache.similarity_threshold",
                "must be between 0.5 and 1 (cosine similarity; 0.95 is a careful start)",
            ));
        }
        if c.semantic && c.embedding_model.is_empty() {
            return Err(CoreError::config(
                "cache.embedding_model",
                "must name an Ollama embedding model when cache.semantic = true (e.g. nomic-embed-text)",
            ));
        }
        if !c.embedding_model.is_empty() {
            ModelName::parse(&c.embedding_model)
                .map_err(|e| CoreError::config("cache.embedding_model", e.to_string()))?;
        }
        Ok(())
    }

    fn validate_backends(&self) -> Result<(), CoreError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let key = |field: &str| format!("backends[{i}].{field}");
            if b.name.is_empty()
                || b.name.len() > 32
                || !b.name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                return Err(CoreError::config(
                    key("name"),
                    "must be 1-32 letters, digits, '-' or '_' (it labels metrics and decisions)",
                ));
            }
            if b.name == "ollama" || !names.insert(b.name.clone()) {
                return Err(CoreError::config(
                    key("name"),
                    format!("{:?} is taken (by another backend, or by the local Ollama)", b.name),
                ));
            }
            if b.kind == BackendKind::Ollama {
                return Err(CoreError::config(
                    key("kind"),
                    "the local Ollama is configured by [ollama] url; a [[backends]] entry must be kind = \"openai\" \
                     (an engine or provider) or \"switchyard\" (a fleet node)",
                ));
            }
            if b.kind == BackendKind::Switchyard && b.priced() {
                return Err(CoreError::config(key("price_input_per_mtok"), "a fleet node is not priced"));
            }
            if !(b.url.starts_with("http://") || b.url.starts_with("https://")) || b.url.parse::<http::Uri>().is_err() {
                return Err(CoreError::config(key("url"), format!("{:?} is not an http:// or https:// URL", b.url)));
            }
            if b.url.contains(['?', '#']) {
                return Err(CoreError::config(
                    key("url"),
                    "has a query or fragment: give the server's root or its API's base (https://api.example.com/v1)",
                ));
            }
            if b.url.parse::<http::Uri>().ok().and_then(|u| u.authority().map(|a| a.as_str().contains('@')))
                == Some(true)
            {
                return Err(CoreError::config(
                    key("url"),
                    "holds credentials (user:key@): put the key in an environment variable named by api_key_env",
                ));
            }
            if !b.api_key_env.is_empty() && !b.api_key_env.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(CoreError::config(
                    key("api_key_env"),
                    "must name an environment variable (letters, digits, '_'), not hold the key itself",
                ));
            }
            if !b.ca_file.is_empty() {
                crate::http::read_pem_certificates(&b.ca_file).map_err(|e| CoreError::config(key("ca_file"), e))?;
            }
            if b.max_concurrency == 0 || b.max_concurrency > 4096 {
                return Err(CoreError::config(key("max_concurrency"), "must be between 1 and 4096"));
            }
            for (field, v) in [
                ("connect_timeout_ms", b.connect_timeout_ms),
                ("first_byte_timeout_secs", b.first_byte_timeout_secs),
                ("answer_timeout_secs", b.answer_timeout_secs),
                ("idle_timeout_secs", b.idle_timeout_secs),
                ("control_timeout_secs", b.control_timeout_secs),
                ("poll_interval_ms", b.poll_interval_ms),
            ] {
                if v == 0 {
                    return Err(CoreError::config(key(field), "must be greater than 0"));
                }
            }
            for (field, v) in
                [("price_input_per_mtok", b.price_input_per_mtok), ("price_output_per_mtok", b.price_output_per_mtok)]
            {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(CoreError::config(key(field), "must be 0 (free) or a positive price"));
                }
            }
            if b.kind != BackendKind::Switchyard && !(b.pin.is_empty() && b.preload.is_empty()) {
                return Err(CoreError::config(
                    key(if b.pin.is_empty() { "preload" } else { "pin" }),
                    "applies to fleet nodes (kind = \"switchyard\") only; for a llama.cpp router-mode server use \
                     vram.preload",
                ));
            }
            for (field, list) in [("pin", &b.pin), ("preload", &b.preload)] {
                for (j, m) in list.iter().enumerate() {
                    ModelName::parse(m)
                        .map_err(|e| CoreError::config(format!("backends[{i}].{field}[{j}]"), e.to_string()))?;
                }
            }
            for (j, m) in b.models.iter().enumerate() {
                let d = m.details();
                ModelName::parse(&d.name)
                    .map_err(|e| CoreError::config(format!("backends[{i}].models[{j}]"), e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Context length `model` is loaded with.
    pub fn num_ctx_for(&self, model: &ModelName) -> u64 {
        self.models.get(model.as_str()).map(|m| m.num_ctx).filter(|n| *n > 0).unwrap_or(self.vram.num_ctx)
    }

    /// The settings of `model`, when it has any.
    pub fn model_settings(&self, model: &ModelName) -> Option<&ModelSettings> {
        self.models.get(model.as_str())
    }
}
