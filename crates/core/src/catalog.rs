//! The model catalog: what Ollama has pulled and what each model can do, from `/api/tags` and `/api/show`.
//!
//! Capabilities and sizes come from Ollama's own answers, never from model names. `/api/show` is asked once per
//! digest: a refresh only shows models that are new or were re-pulled.

use crate::error::CoreError;
use crate::model::{Capabilities, ModelName};
use crate::ollama::OllamaClient;
use crate::ollama::types::{ModelDetails, ShowResponse};
use std::collections::BTreeMap;
use std::sync::Arc;

/// KV-cache bytes per token assumed when a model's metadata does not say (larger than any common 7-70B model's
/// f16 cache per token, so estimates err on the safe side until a load is measured).
const UNKNOWN_KV_BYTES_PER_TOKEN: u64 = 320 * 1024;

/// Compute-graph and runtime buffers on top of weights and KV cache: 512 MiB plus 5% of the weights (runtime and
/// CUDA context, output buffers that grow with the vocabulary and the model). On the generous side: an estimate that
/// is too small could admit a model that does not fit, while one that is too large only costs an eviction until the
/// first load is measured.
fn overhead_bytes(weights: u64) -> u64 {
    512 * 1024 * 1024 + weights / 20
}

/// Where a model is served when it is not the local Ollama's: an OpenAI-compatible backend, or the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRef {
    /// The backend's position in `[[backends]]` (unused for the fleet, whose nodes are picked per request).
    pub index: usize,
    /// The backend's configured name.
    pub name: Arc<str>,
    /// The id the backend knows the model by (what its `/v1/models` lists).
    pub id: Arc<str>,
    /// The backend charges per token (a remote provider).
    pub priced: bool,
    /// Served by the fleet's nodes (`kind = "switchyard"`): which node serves a request is chosen per request.
    pub fleet: bool,
}

/// One pulled model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: ModelName,
    /// Content digest from `/api/tags`; a change means the model was re-pulled (profiles become stale).
    pub digest: String,
    /// Bytes on disk (the weights).
    pub size_bytes: u64,
    pub details: ModelDetails,
    /// From `/api/show`.
    pub capabilities: Capabilities,
    /// Trained context length.
    pub context_length: Option<u64>,
    /// f16 KV-cache bytes per token from the GGUF metadata.
    pub kv_bytes_per_token: Option<u64>,
    /// Transformer layers from the GGUF metadata (what Ollama's `num_gpu` counts).
    pub block_count: Option<u64>,
    /// `None` for the local Ollama's models, the backend otherwise.
    pub backend: Option<BackendRef>,
    /// An Ollama cloud model (`remote_host` in its listing): the local Ollama forwards it to ollama.com, so it takes
    /// no local memory and is never loaded or unloaded.
    pub cloud: bool,
}

impl ModelSpec {
    /// True for models that only embed (loaded and unloaded through `/api/embed`).
    pub fn embedding_only(&self) -> bool {
        self.capabilities.embedding && !self.capabilities.completion
    }

    /// VRAM this model is expected to take when loaded with `num_ctx`: weights + KV cache + buffers.
    /// Used until a load of the model has been measured.
    pub fn estimate_vram(&self, num_ctx: u64) -> u64 {
        let ctx = self.context_length.map_or(num_ctx, |trained| num_ctx.min(trained));
        let kv = self.kv_bytes_per_token.unwrap_or(UNKNOWN_KV_BYTES_PER_TOKEN).saturating_mul(ctx);
        self.size_bytes.saturating_add(kv).saturating_add(overhead_bytes(self.size_bytes))
    }

    /// The backend's name: `ollama` for the local Ollama.
    pub fn backend_name(&self) -> &str {
        self.backend.as_ref().map_or("ollama", |b| &b.name)
    }

    /// True for models of a priced (remote) backend.
    pub fn priced(&self) -> bool {
        self.backend.as_ref().is_some_and(|b| b.priced)
    }

    /// True for models whose requests leave the machines the user runs: a priced backend's, or an Ollama cloud model
    /// (`routing.remote` decides when `auto` uses them).
    pub fn remote(&self) -> bool {
        self.priced() || self.cloud
    }

    /// True for models the local Ollama runs itself (in its VRAM), not a backend's or a cloud model.
    pub fn local(&self) -> bool {
        self.backend.is_none() && !self.cloud
    }

    /// The context this model is actually loaded with when `num_ctx` is asked (capped at the trained context).
    pub fn effective_ctx(&self, num_ctx: u64) -> u64 {
        self.context_length.map_or(num_ctx, |trained| num_ctx.min(trained))
    }
}

/// Every pulled model, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub models: BTreeMap<ModelName, ModelSpec>,
}

impl Catalog {
    /// The model named `name`, if pulled.
    pub fn get(&self, name: &ModelName) -> Option<&ModelSpec> {
        self.models.get(name)
    }

    /// The models the local GPUs hold when loaded: this catalog without its cloud models (what the VRAM manager is
    /// given).
    pub fn resident(&self) -> Catalog {
        Catalog { models: self.models.iter().filter(|(_, s)| !s.cloud).map(|(k, v)| (k.clone(), v.clone())).collect() }
    }

    /// The catalog's own spelling of `name`: the name itself when pulled, else a model whose name differs only in
    /// ASCII case (Ollama matches names without regard to case: `Qwen3:8B` is `qwen3:8b`), the local Ollama's first
    /// when a backend lists one spelled alike.
    pub fn spelled(&self, name: &ModelName) -> Option<&ModelName> {
        if let Some((key, _)) = self.models.get_key_value(name) {
            return Some(key);
        }
        let alike = |s: &&ModelSpec| s.name.as_str().eq_ignore_ascii_case(name.as_str());
        let local = self.models.values().filter(alike).find(|s| s.backend.is_none());
        local.or_else(|| self.models.values().find(alike)).map(|s| &s.name)
    }

    /// Reads `/api/tags`, and `/api/show` for every model whose digest is not already in `previous`.
    pub async fn fetch(client: &OllamaClient, previous: &Catalog) -> Result<Catalog, CoreError> {
        let tags = client.tags().await?;
        let mut models = BTreeMap::new();
        for tag in tags.models {
            let Ok(name) = ModelName::parse(&tag.name) else {
                tracing::warn!(model = %tag.name, "skipping a model whose name Switchyard cannot use");
                continue;
            };
            if let Some(known) = previous.models.get(&name).filter(|m| m.digest == tag.digest && !tag.digest.is_empty())
            {
                models.insert(name, known.clone());
                continue;
            }
            let show = match client.show(&name).await {
                Ok(show) => show,
                Err(e) => {
                    tracing::warn!(model = %name, error = %e, "cannot read /api/show; the model is left out until the next refresh");
                    continue;
                }
            };
            let cloud = tag.remote_host.is_some();
            let mut spec = spec_from(name.clone(), tag.digest, tag.size, tag.details, &show);
            spec.cloud = cloud;
            models.insert(name, spec);
        }
        Ok(Catalog { models })
    }
}

/// Builds a spec from a tags entry and its `/api/show` answer.
pub fn spec_from(
    name: ModelName,
    digest: String,
    size_bytes: u64,
    details: ModelDetails,
    show: &ShowResponse,
) -> ModelSpec {
    ModelSpec {
        name,
        digest,
        size_bytes,
        details,
        capabilities: Capabilities::from_names(show.capabilities.iter().map(String::as_str)),
        context_length: show.context_length(),
        kv_bytes_per_token: show.kv_bytes_per_token(),
        block_count: show.block_count(),
        backend: None,
        cloud: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kv: Option<u64>) -> ModelSpec {
        ModelSpec {
            name: ModelName::parse("m").unwrap(),
            digest: String::new(),
            size_bytes: 4_000_000_000,
            details: ModelDetails::default(),
            capabilities: Capabilities::from_names(["completion"]),
            context_length: Some(8192),
            kv_bytes_per_token: kv,
            block_count: Some(32),
            backend: None,
            cloud: false,
        }
    }

    #[test]
    fn estimates_grow_with_context_and_cap_at_the_trained_one() {
        let s = spec(Some(128 * 1024));
        let at_4k = s.estimate_vram(4096);
        assert_eq!(at_4k, 4_000_000_000 + 128 * 1024 * 4096 + 512 * 1024 * 1024 + 200_000_000);
        assert_eq!(s.estimate_vram(8192) - at_4k, 128 * 1024 * 4096);
        assert_eq!(s.estimate_vram(65536), s.estimate_vram(8192));
        assert_eq!(s.effective_ctx(65536), 8192);
    }

    #[test]
    fn unknown_kv_is_assumed_large() {
        assert!(spec(None).estimate_vram(4096) > spec(Some(128 * 1024)).estimate_vram(4096));
    }

    #[test]
    fn names_are_spelled_as_the_catalog_spells_them_and_cloud_models_are_not_resident() {
        let named = |name: &str, backend: bool, cloud: bool| {
            let mut s = spec(None);
            s.name = ModelName::parse(name).unwrap();
            s.cloud = cloud;
            s.backend = backend.then(|| BackendRef {
                index: 0,
                name: Arc::from("b"),
                id: Arc::from(name),
                priced: false,
                fleet: false,
            });
            (s.name.clone(), s)
        };
        let catalog = Catalog {
            models: [
                named("Mistral:7B", true, false),
                named("mistral:7b", false, false),
                named("qwen3:8b", false, false),
                named("gpt-oss:120b-cloud", false, true),
            ]
            .into_iter()
            .collect(),
        };
        let spelled = |n: &str| catalog.spelled(&ModelName::parse(n).unwrap()).map(ModelName::as_str);
        assert_eq!(spelled("Qwen3:8B"), Some("qwen3:8b"));
        assert_eq!(spelled("qwen3:8b"), Some("qwen3:8b"));
        assert_eq!(spelled("Mistral:7B"), Some("Mistral:7B"), "an exact name wins");
        assert_eq!(spelled("MISTRAL:7b"), Some("mistral:7b"), "the local model before a backend's");
        assert_eq!(spelled("qwen3:4b"), None);
        let resident = catalog.resident();
        assert_eq!(resident.models.len(), 3);
        assert!(resident.models.values().all(|s| !s.cloud));
        let cloud = &catalog.models[&ModelName::parse("gpt-oss:120b-cloud").unwrap()];
        assert!(!cloud.local() && cloud.remote() && !cloud.priced());
    }
}
