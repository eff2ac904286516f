//! The simulated models: what each one is (the figures `/api/tags`, `/api/show` and `/api/ps` report), how fast it
//! is (load time, prefill and decode rates), and how good it is per task category (its skills).
//!
//! A fleet is read from TOML, one `[[models]]` table per model; the built-in fleet is `fleets/default.toml`,
//! embedded in the crate. Every figure is validated when the fleet is read, so that the rest of the simulator can
//! rely on it (for instance that the KV-cache size agrees with the attention geometry, as `/api/show` exposes both).

use crate::error::SimError;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashSet};
use switchyard_core::text::stable_hash_parts;
use switchyard_core::{Capabilities, Category, ModelName};

/// The built-in fleet's text.
const DEFAULT_FLEET: &str = include_str!("../fleets/default.toml");

/// The capability strings Ollama uses, the only ones a fleet may declare.
const KNOWN_CAPABILITIES: [&str; 6] = ["completion", "tools", "insert", "vision", "embedding", "thinking"];

/// A set of simulated models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// The models, in the order `/api/tags` lists them.
    pub models: Vec<FleetModel>,
}

/// One simulated model, as a fleet file declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetModel {
    /// The model's name, normalised (`llama3.2:3b`); requests are matched against it after normalisation.
    pub name: ModelName,
    /// Model family reported in `details.family` (`llama`, `qwen2`).
    pub family: String,
    /// GGUF architecture, the prefix of the architecture keys in `/api/show`'s `model_info` (`llama`, `qwen2`).
    pub architecture: String,
    /// Parameter count as Ollama prints it (`3.2B`), reported in `details.parameter_size`.
    pub parameter_size: String,
    /// Quantisation level reported in `details.quantization_level` (`Q4_K_M`).
    pub quantization: String,
    /// Bytes on disk, reported as `size` by `/api/tags`.
    #[serde(deserialize_with = "de_bytes")]
    pub disk_bytes: u64,
    /// Bytes a loaded instance uses (weights, buffers and KV cache) at `vram_context` tokens of context.
    #[serde(deserialize_with = "de_bytes")]
    pub vram_bytes: u64,
    /// The context length at which `vram_bytes` was measured; other contexts add or remove KV cache from it.
    pub vram_context: u64,
    /// f16 KV-cache bytes per token of context: `2 * block_count * head_count_kv * head_dim * 2`.
    pub kv_bytes_per_token: u64,
    /// Transformer layers (`<arch>.block_count`); also the granularity of partial offload.
    pub block_count: u64,
    /// Attention heads (`<arch>.attention.head_count`).
    pub head_count: u64,
    /// Key/value heads (`<arch>.attention.head_count_kv`), fewer than `head_count` with grouped-query attention.
    pub head_count_kv: u64,
    /// Hidden size (`<arch>.embedding_length`); for embedding models also the output dimension.
    pub embedding_length: u64,
    /// Trained context length (`<arch>.context_length`); requested contexts are capped at it.
    pub context_length: u64,
    /// Seconds a cold load takes (simulated; multiplied by the time scale).
    pub load_seconds: f64,
    /// Prompt tokens processed per second when fully on the GPU.
    pub prefill_tps: f64,
    /// Output tokens generated per second when fully on the GPU.
    pub decode_tps: f64,
    /// Ollama capability strings (`completion`, `tools`, `insert`, `vision`, `embedding`, `thinking`).
    pub capabilities: Vec<String>,
    /// Output dimensions of an embedding model; must equal `embedding_length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dims: Option<usize>,
    /// Probability in [0, 1] of answering a profiling item of each category correctly; missing categories are 0.
    #[serde(default)]
    pub skills: BTreeMap<Category, f64>,
    /// A fixed 64-hex digest; when absent one is derived from the name, so that it is stable across runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// An Ollama cloud model (`gpt-oss:120b-cloud`): the host Ollama forwards it to, listed as `remote_host` by
    /// `/api/tags`. It takes no GPU memory and `/api/ps` never lists it, as with Ollama.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
}

/// Reads a byte count written either as an integer or as a size string (`"4.9GB"`, `"24GiB"`).
fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(s) => switchyard_core::size::parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

impl Fleet {
    /// The built-in fleet (`fleets/default.toml`): seven models from a 3B chat model to a 70B one, a coder, a
    /// reasoner, a vision model and an embedding model.
    pub fn builtin() -> Fleet {
        match Fleet::from_toml(DEFAULT_FLEET) {
            Ok(fleet) => fleet,
            Err(e) => {
                // A unit test proves the embedded file valid; an empty fleet is refused later by `validate`.
                tracing::error!(error = %e, "the built-in fleet is invalid");
                Fleet { models: Vec::new() }
            }
        }
    }

    /// Parses and validates a fleet file.
    pub fn from_toml(text: &str) -> Result<Fleet, SimError> {
        let fleet: Fleet = toml::from_str(text).map_err(|e| SimError::Fleet(e.to_string()))?;
        fleet.validate()?;
        Ok(fleet)
    }

    /// Checks every model's figures and that names are unique.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.models.is_empty() {
            return Err(SimError::Fleet("the fleet has no models".to_string()));
        }
        let mut seen = HashSet::new();
        for model in &self.models {
            if !seen.insert(model.name.clone()) {
                return Err(SimError::Fleet(format!("model {} appears twice", model.name)));
            }
            model.validate().map_err(|m| SimError::Fleet(format!("model {}: {m}", model.name)))?;
        }
        Ok(())
    }

    /// The model called `name` (already normalised).
    pub fn get(&self, name: &ModelName) -> Option<&FleetModel> {
        self.models.iter().find(|m| &m.name == name)
    }
}

impl FleetModel {
    /// Checks this model's figures; the message names the field at fault.
    fn validate(&self) -> Result<(), String> {
        for (field, value) in [("family", &self.family), ("architecture", &self.architecture)] {
            if value.trim().is_empty() {
                return Err(format!("{field} is empty"));
            }
        }
        if parse_parameter_size(&self.parameter_size).is_none() {
            return Err(format!("parameter_size {:?} is not like \"3.2B\" or \"137M\"", self.parameter_size));
        }
        for (field, value) in [
            ("disk_bytes", self.disk_bytes),
            ("vram_bytes", self.vram_bytes),
            ("vram_context", self.vram_context),
            ("kv_bytes_per_token", self.kv_bytes_per_token),
            ("block_count", self.block_count),
            ("head_count", self.head_count),
            ("head_count_kv", self.head_count_kv),
            ("embedding_length", self.embedding_length),
            ("context_length", self.context_length),
        ] {
            if value == 0 {
                return Err(format!("{field} must be positive"));
            }
        }
        if self.vram_context > self.context_length {
            return Err(format!(
                "vram_context {} is larger than the trained context_length {}",
                self.vram_context, self.context_length
            ));
        }
        if !self.embedding_length.is_multiple_of(self.head_count) {
            return Err(format!(
                "embedding_length {} is not a multiple of head_count {}",
                self.embedding_length, self.head_count
            ));
        }
        if self.head_count_kv > self.head_count {
            return Err("head_count_kv is larger than head_count".to_string());
        }
        let kv = 2 * self.block_count * self.head_count_kv * (self.embedding_length / self.head_count) * 2;
        if kv != self.kv_bytes_per_token {
            return Err(format!(
                "kv_bytes_per_token is {} but 2 x block_count x head_count_kv x (embedding_length / head_count) x 2 \
                 = {kv}",
                self.kv_bytes_per_token
            ));
        }
        if !(self.load_seconds.is_finite() && self.load_seconds >= 0.0) {
            return Err("load_seconds must be a non-negative number".to_string());
        }
        for (field, value) in [("prefill_tps", self.prefill_tps), ("decode_tps", self.decode_tps)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("{field} must be a positive number"));
            }
        }
        if self.capabilities.is_empty() {
            return Err("capabilities is empty".to_string());
        }
        for cap in &self.capabilities {
            if !KNOWN_CAPABILITIES.contains(&cap.as_str()) {
                return Err(format!("unknown capability {cap:?} (expected one of {})", KNOWN_CAPABILITIES.join(", ")));
            }
        }
        let caps = self.caps();
        match (caps.embedding, self.embedding_dims) {
            (true, None) => return Err("an embedding model needs embedding_dims".to_string()),
            (true, Some(dims)) if dims as u64 != self.embedding_length => {
                return Err(format!("embedding_dims {dims} differs from embedding_length {}", self.embedding_length));
            }
            (false, Some(_)) => return Err("embedding_dims is set but the model has no embedding capability".into()),
            _ => {}
        }
        for (category, skill) in &self.skills {
            if *category == Category::General {
                return Err("skills has no `general` category (it is the mean of the others)".to_string());
            }
            if !(0.0..=1.0).contains(skill) {
                return Err(format!("skill for {category} is {skill}, not in [0, 1]"));
            }
        }
        if let Some(digest) = &self.digest
            && !(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            return Err(format!("digest {digest:?} is not 64 lower-case hex digits"));
        }
        Ok(())
    }

    /// The capabilities as the core crate's flag set.
    pub fn caps(&self) -> Capabilities {
        Capabilities::from_names(self.capabilities.iter().map(String::as_str))
    }

    /// The probability of answering an item of `category` correctly.
    pub fn skill(&self, category: Category) -> f64 {
        self.skills.get(&category).copied().unwrap_or(0.0)
    }

    /// Bytes a loaded instance uses with `context` tokens of KV cache (never less than the file itself; none for a
    /// cloud model).
    pub fn vram_at(&self, context: u64) -> u64 {
        if self.remote_host.is_some() {
            return 0;
        }
        let delta = i128::from(context) - i128::from(self.vram_context);
        let bytes = i128::from(self.vram_bytes) + delta * i128::from(self.kv_bytes_per_token);
        u64::try_from(bytes.max(i128::from(self.disk_bytes))).unwrap_or(u64::MAX)
    }

    /// The digest the model starts with: the configured one, or 64 hex digits derived from the name.
    pub fn initial_digest(&self) -> String {
        self.digest.clone().unwrap_or_else(|| derive_digest(self.name.as_str(), 0))
    }

    /// The parameter count (`3.2B` -> 3_200_000_000), for `general.parameter_count`.
    pub fn parameter_count(&self) -> u64 {
        parse_parameter_size(&self.parameter_size).unwrap_or(0)
    }
}

/// 64 hex digits derived from `name` and a generation number (0 for the original pull, then one per re-pull).
pub(crate) fn derive_digest(name: &str, generation: u64) -> String {
    let generation = generation.to_le_bytes();
    (0u8..4)
        .map(|lane| format!("{:016x}", stable_hash_parts(&[b"digest", name.as_bytes(), &generation, &[lane]])))
        .collect()
}

/// Parses Ollama's parameter size (`3.2B`, `137M`, `70.6B`) into a count.
fn parse_parameter_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = match text.chars().last()? {
        'B' | 'b' => (&text[..text.len() - 1], 1e9),
        'M' | 'm' => (&text[..text.len() - 1], 1e6),
        'K' | 'k' => (&text[..text.len() - 1], 1e3),
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value > 0.0).then(|| (value * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Fleet {
        Fleet::from_toml(DEFAULT_FLEET).unwrap()
    }

    fn model<'a>(fleet: &'a Fleet, name: &str) -> &'a FleetModel {
        fleet.get(&ModelName::parse(name).unwrap()).unwrap()
    }

    #[test]
    fn the_builtin_fleet_is_valid_and_complete() {
        let fleet = builtin();
        for name in [
            "llama3.2:3b",
            "llama3.1:8b",
            "qwen2.5-coder:7b",
            "deepseek-r1:14b",
            "llama3.3:70b",
            "nomic-embed-text:latest",
            "llava:7b",
        ] {
            assert!(fleet.get(&ModelName::parse(name).unwrap()).is_some(), "{name} is missing");
        }
        assert_eq!(Fleet::builtin(), fleet);
        assert!(model(&fleet, "llama3.2:3b").caps().tools);
        assert!(model(&fleet, "qwen2.5-coder:7b").caps().insert);
        assert!(model(&fleet, "deepseek-r1:14b").caps().thinking);
        assert!(model(&fleet, "llava:7b").caps().vision);
        let embed = model(&fleet, "nomic-embed-text");
        assert!(embed.caps().embedding && !embed.caps().completion);
        assert_eq!(embed.embedding_dims, Some(768));
    }

    #[test]
    fn the_70b_fits_a_48_gb_gpu_at_4096_but_not_24_gib() {
        let fleet = builtin();
        let big = model(&fleet, "llama3.3:70b");
        assert_eq!(big.disk_bytes, 42_520_413_916);
        let at_4096 = big.vram_at(4096);
        assert!(at_4096 < 48_000_000_000 && at_4096 > 24 * 1024 * 1024 * 1024);
        assert_eq!(big.kv_bytes_per_token, 320 * 1024);
        assert_eq!(big.vram_at(8192) - at_4096, 4096 * 320 * 1024);
        assert_eq!(big.vram_at(0), big.vram_at(0).max(big.disk_bytes));
    }

    #[test]
    fn skills_differ_realistically_per_category() {
        let fleet = builtin();
        let s = |name: &str, c: Category| model(&fleet, name).skill(c);
        assert!(s("qwen2.5-coder:7b", Category::Coding) > s("llama3.1:8b", Category::Coding) + 0.15);
        assert!(s("deepseek-r1:14b", Category::Math) > s("llama3.1:8b", Category::Math) + 0.15);
        assert!(s("deepseek-r1:14b", Category::Reasoning) > s("llama3.2:3b", Category::Reasoning) + 0.15);
        for c in Category::PROFILED {
            let big = s("llama3.3:70b", c);
            assert!(big > s("llama3.2:3b", c) + 0.15, "{c}");
            let pairs = fleet
                .models
                .iter()
                .flat_map(|a| fleet.models.iter().map(move |b| (a.skill(c), b.skill(c))))
                .filter(|(a, b)| a - b >= 0.15 && *b > 0.0)
                .count();
            assert!(pairs >= 3, "{c}: only {pairs} pairs differ by 0.15");
        }
    }

    #[test]
    fn inconsistent_figures_are_rejected_with_the_field_named() {
        let good = r#"
            [[models]]
            name = "tiny"
            family = "llama"
            architecture = "llama"
            parameter_size = "1.2B"
            quantization = "Q4_K_M"
            disk_bytes = "800MB"
            vram_bytes = 1200000000
            vram_context = 4096
            kv_bytes_per_token = 32768
            block_count = 16
            head_count = 32
            head_count_kv = 8
            embedding_length = 2048
            context_length = 131072
            load_seconds = 0.5
            prefill_tps = 5000
            decode_tps = 200
            capabilities = ["completion"]
            skills = { coding = 0.2 }
        "#;
        let fleet = Fleet::from_toml(good).unwrap();
        assert_eq!(fleet.models[0].name.as_str(), "tiny:latest");
        assert_eq!(fleet.models[0].disk_bytes, 800_000_000);
        assert_eq!(fleet.models[0].skill(Category::Math), 0.0);
        assert_eq!(fleet.models[0].initial_digest().len(), 64);

        let cases = [
            ("kv_bytes_per_token = 32768", "kv_bytes_per_token = 1000", "kv_bytes_per_token"),
            ("coding = 0.2", "coding = 1.5", "not in [0, 1]"),
            (r#"["completion"]"#, r#"["completion", "flying"]"#, "unknown capability"),
            (r#"["completion"]"#, r#"["embedding"]"#, "embedding_dims"),
            ("decode_tps = 200", "decode_tps = 0", "decode_tps"),
            ("parameter_size = \"1.2B\"", "parameter_size = \"big\"", "parameter_size"),
            ("load_seconds = 0.5", "load_seconds = 0.5\nbogus = 1", "unknown field"),
        ];
        for (from, to, needle) in cases {
            let text = good.replace(from, to);
            let err = Fleet::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{to}: {err}");
        }
        let twice = format!("{good}\n{good}");
        assert!(Fleet::from_toml(&twice).unwrap_err().to_string().contains("twice"));
        assert!(Fleet::from_toml("models = []").unwrap_err().to_string().contains("no models"));
    }

    #[test]
    fn digests_are_stable_and_change_per_generation() {
        let a = derive_digest("llama3.2:3b", 0);
        assert_eq!(a, derive_digest("llama3.2:3b", 0));
        assert_ne!(a, derive_digest("llama3.2:3b", 1));
        assert!(a.len() == 64 && a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(parse_parameter_size("70.6B"), Some(70_600_000_000));
        assert_eq!(parse_parameter_size("137M"), Some(137_000_000));
    }
}
