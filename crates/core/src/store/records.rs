//! Rows of the store, as plain structs.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, the store's time unit (portable across SQLite and Postgres).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A model as the catalog knows it, plus what was measured about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    pub digest: String,
    /// Bytes on disk.
    pub size_bytes: u64,
    pub family: String,
    pub parameter_size: String,
    pub quantization: String,
    /// Ollama's capability strings.
    pub capabilities: Vec<String>,
    pub context_length: Option<u64>,
    pub kv_bytes_per_token: Option<u64>,
    /// Measured cold-load seconds (latest).
    pub load_seconds: Option<f64>,
    /// Measured VRAM bytes when loaded with `vram_num_ctx`.
    pub vram_bytes: Option<u64>,
    pub vram_num_ctx: Option<u64>,
    pub updated_at: i64,
}

/// Where a profile run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Complete,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "complete" => RunStatus::Complete,
            "failed" => RunStatus::Failed,
            _ => RunStatus::Running,
        }
    }
}

/// One profiling pass over one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRun {
    pub id: String,
    pub model: String,
    pub digest: String,
    /// The combined version of the suites used (`coding=v1-…;math=…`).
    pub suite_version: String,
    /// Categories covered, comma-separated.
    pub categories: String,
    pub items_per_category: u32,
    pub status: RunStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Measured cold-load seconds.
    pub load_seconds: Option<f64>,
    /// VRAM from `/api/ps` `size_vram`.
    pub vram_bytes: Option<u64>,
    /// VRAM from the GPU probe's used-memory delta across the load.
    pub vram_probe_delta: Option<u64>,
    pub error: Option<String>,
}

/// One profiling item's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub model: String,
    pub digest: String,
    pub category: String,
    pub item_id: String,
    /// The version of this item's category suite.
    pub suite_version: String,
    pub run_id: String,
    pub correct: bool,
    /// Score in [0, 1] (1/0 for verifiable checks, the judge's score for judged items).
    pub score: f64,
    pub ttft_ms: Option<f64>,
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_ms: Option<f64>,
    /// Set when the item failed to run (timeout, upstream error); such items count as incorrect.
    pub error: Option<String>,
    pub created_at: i64,
}

/// Statistics of (model, category).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub model: String,
    pub category: String,
    pub digest: String,
    pub suite_version: String,
    pub n: u32,
    pub successes: u32,
    pub mean: f64,
    /// Wilson 95% interval.
    pub ci_low: f64,
    pub ci_high: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    pub mean_output_tokens: Option<f64>,
    pub updated_at: i64,
}

/// A routing decision, sampled into the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub id: Option<i64>,
    pub request_id: String,
    pub at: i64,
    /// `ollama` or `openai`.
    pub surface: String,
    pub category: String,
    /// What the client asked for (`auto`, `auto:fast`, a model name).
    pub requested: String,
    pub chosen: String,
    pub quality_preference: f64,
    pub decision_us: f64,
    /// Every candidate's components, as JSON.
    pub candidates_json: String,
}

/// A load, unload or eviction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadEvent {
    pub id: Option<i64>,
    pub at: i64,
    pub model: String,
    /// `load`, `unload`, `evict`, `external_load`, `external_unload`.
    pub kind: String,
    /// Why (`request`, `preload`, `pin`, `threshold`, `idle`, `admin`, `room`).
    pub reason: String,
    pub strategy: Option<String>,
    pub duration_ms: Option<f64>,
    pub bytes: Option<u64>,
    pub ok: bool,
    pub error: Option<String>,
}

/// One cached answer (`[cache] persist = true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Hex hash of everything that decides the answer.
    pub key: String,
    /// The model that answered.
    pub model: String,
    /// That model's digest when it answered (a re-pulled model's answers are stale).
    pub digest: String,
    /// The native endpoint (`/api/chat`, `/api/generate`).
    pub endpoint: String,
    /// Hex hash of the request without its last user turn, for the semantic cache.
    pub semantic_key: Option<String>,
    /// The last user turn's embedding (base64 of little-endian f32s), for the semantic cache.
    pub embedding: Option<String>,
    /// The whole answer in Ollama's native (buffered) shape.
    pub answer: String,
    pub created_at: i64,
}
