//! Response shapes of Ollama's control endpoints, as `shared/ollama-api.md` and Ollama's `docs/api.md` give them.
//!
//! Fields Ollama may omit are `Option` or defaulted so that reading a real Ollama never fails on a missing field.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Formats a timestamp as Ollama does: RFC 3339, UTC, nanoseconds.
pub fn rfc3339_nanos(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `details` of a model in tags, ps and show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelDetails {
    #[serde(default)]
    pub parent_model: String,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<String>>,
    #[serde(default)]
    pub parameter_size: String,
    #[serde(default)]
    pub quantization_level: String,
}

/// `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagsResponse {
    #[serde(default)]
    pub models: Vec<TagModel>,
}

/// One pulled model in `/api/tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagModel {
    pub name: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub modified_at: String,
    /// Bytes on disk.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub details: ModelDetails,
    /// A cloud model (`gpt-oss:120b-cloud`): the model the cloud host serves it as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// A cloud model: the host Ollama forwards its requests to (`https://ollama.com:443`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
}

/// `GET /api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsResponse {
    #[serde(default)]
    pub models: Vec<PsModel>,
}

/// One loaded model in `/api/ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsModel {
    pub name: String,
    #[serde(default)]
    pub model: String,
    /// Bytes the running instance uses (weights, KV cache, buffers).
    #[serde(default)]
    pub size: u64,
    /// The part of `size` in GPU memory; less than `size` means partial CPU offload.
    #[serde(default)]
    pub size_vram: u64,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub details: ModelDetails,
    #[serde(default)]
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
}

/// `POST /api/show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShowResponse {
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub modelfile: String,
    #[serde(default)]
    pub parameters: String,
    #[serde(default)]
    pub template: String,
    #[serde(default)]
    pub details: ModelDetails,
    #[serde(default)]
    pub model_info: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub modified_at: String,
}

impl ShowResponse {
    /// `general.architecture`, the prefix of the architecture-specific keys (`llama`, `qwen2`).
    pub fn architecture(&self) -> Option<&str> {
        self.model_info.get("general.architecture").and_then(|v| v.as_str())
    }

    /// An architecture-specific integer such as `context_length` or `block_count`.
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.model_info.get(&format!("{arch}.{key}")).and_then(|v| v.as_u64())
    }

    /// Transformer layers (`<arch>.block_count`): what `num_gpu` counts.
    pub fn block_count(&self) -> Option<u64> {
        self.arch_u64("block_count")
    }

    /// The trained context length.
    pub fn context_length(&self) -> Option<u64> {
        self.arch_u64("context_length")
    }

    /// f16 KV-cache bytes per token: 2 (K and V) x layers x KV heads x head dim x 2 bytes.
    /// `None` when the metadata needed is missing (then only measurement tells).
    pub fn kv_bytes_per_token(&self) -> Option<u64> {
        let layers = self.arch_u64("block_count")?;
        let embedding = self.arch_u64("embedding_length")?;
        let heads = self.arch_u64("attention.head_count")?.max(1);
        let kv_heads = self.arch_u64("attention.head_count_kv").unwrap_or(heads);
        let head_dim = self.arch_u64("attention.key_length").unwrap_or(embedding / heads);
        Some(2 * layers * kv_heads * head_dim * 2)
    }
}

/// `GET /api/version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_bytes_from_gguf_metadata() {
        let show: ShowResponse = serde_json::from_value(serde_json::json!({
            "model_info": {
                "general.architecture": "llama",
                "llama.block_count": 28,
                "llama.embedding_length": 3072,
                "llama.attention.head_count": 24,
                "llama.attention.head_count_kv": 8,
                "llama.context_length": 131072
            },
            "capabilities": ["completion", "tools"]
        }))
        .unwrap();
        // llama3.2:3b: 2 x 28 x 8 x 128 x 2 = 112 KiB per token.
        assert_eq!(show.kv_bytes_per_token(), Some(112 * 1024));
        assert_eq!(show.context_length(), Some(131072));
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123).unwrap();
        assert_eq!(rfc3339_nanos(t), "2023-11-14T22:13:20.000000123Z");
    }

    #[test]
    fn ps_tolerates_missing_fields() {
        let ps: PsResponse = serde_json::from_str(r#"{"models":[{"name":"a:latest","size":5}]}"#).unwrap();
        assert_eq!(ps.models[0].size, 5);
        assert_eq!(ps.models[0].size_vram, 0);
    }
}
