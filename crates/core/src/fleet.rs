//! What a Switchyard node tells a fleet front about itself: the body of `GET /admin/state`, written by the node and
//! read by every front (`[[backends]] kind = "switchyard"`).
//!
//! It is compact on purpose: per model, what the front needs to score a (model, node) pair with the same utility
//! the node would use (resident or not, its queue, what loading it here would cost and evict, its measured speeds
//! here), and the catalog facts a front needs to check a request's needs (capabilities, context, size).

use crate::catalog::{BackendRef, ModelSpec};
use crate::model::{Capabilities, ModelName};
use crate::ollama::types::ModelDetails;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The state of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node's Switchyard version.
    pub version: String,
    /// Whether the node's Ollama answered (a node whose Ollama is down is skipped).
    pub ready: bool,
    /// Requests the node's Ollama serves at once per model.
    pub num_parallel: u32,
    pub gpus: Vec<NodeGpu>,
    pub models: Vec<NodeModel>,
}

/// One GPU of a node, as its VRAM manager budgets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeGpu {
    pub index: u32,
    pub total_bytes: u64,
    /// Room left for models under the node's budget.
    pub free_bytes: u64,
}

/// One pulled model of a node and what serving it there would take now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeModel {
    pub name: String,
    pub digest: String,
    pub size_bytes: u64,
    pub details: ModelDetails,
    pub capabilities: Capabilities,
    /// The context the node serves prompts with (its `num_ctx` for the model, at most the trained context).
    pub context_length: Option<u64>,
    pub kv_bytes_per_token: Option<u64>,
    pub block_count: Option<u64>,
    /// Loaded, or a load is under way (a request joins it).
    pub loaded: bool,
    pub loading: bool,
    pub pinned: bool,
    /// Requests being served now.
    pub in_flight: u32,
    /// Requests waiting for admission to it.
    pub queued: u32,
    /// Seconds a cold load takes here (measured, or estimated from its size); 0 when loaded.
    pub load_seconds: f64,
    /// The node's own price of making room for it: the reload cost of what it would evict (0 when it fits).
    pub eviction_seconds: f64,
    /// The models that loading it would unload.
    pub evicts: Vec<String>,
    /// An Ollama cloud model of the node's (run on ollama.com, never loaded there): remote for `routing.remote`.
    #[serde(default)]
    pub cloud: bool,
    /// Why the node cannot load it now, when it cannot (too large, everything else busy or pinned).
    pub refused: Option<String>,
    /// Measured prompt tokens per second here, once measured.
    pub prefill_tps: Option<f64>,
    /// Measured output tokens per second here, once measured.
    pub decode_tps: Option<f64>,
}

impl NodeModel {
    /// The catalog entry a front keeps for this model: served by the fleet, its node picked per request.
    pub fn spec(&self) -> Option<ModelSpec> {
        let name = ModelName::parse(&self.name).ok()?;
        Some(ModelSpec {
            backend: Some(BackendRef {
                index: 0,
                name: Arc::from("fleet"),
                id: Arc::from(self.name.as_str()),
                priced: false,
                fleet: true,
            }),
            name,
            digest: self.digest.clone(),
            size_bytes: self.size_bytes,
            details: self.details.clone(),
            capabilities: self.capabilities,
            context_length: self.context_length,
            kv_bytes_per_token: self.kv_bytes_per_token,
            block_count: self.block_count,
            cloud: self.cloud,
        })
    }

    /// The node model of a catalog entry, with no state yet.
    pub fn from_spec(spec: &ModelSpec) -> Self {
        Self {
            name: spec.name.to_string(),
            digest: spec.digest.clone(),
            size_bytes: spec.size_bytes,
            details: spec.details.clone(),
            capabilities: spec.capabilities,
            context_length: spec.context_length,
            kv_bytes_per_token: spec.kv_bytes_per_token,
            block_count: spec.block_count,
            cloud: spec.cloud,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_model_round_trips_through_json_and_becomes_a_fleet_entry() {
        let model = NodeModel {
            name: "llama3.2:3b".into(),
            digest: "abc".into(),
            size_bytes: 2_000_000_000,
            capabilities: Capabilities { completion: true, tools: true, ..Capabilities::default() },
            context_length: Some(131_072),
            loaded: true,
            in_flight: 2,
            evicts: vec!["qwen2.5:7b".into()],
            ..NodeModel::default()
        };
        let state = NodeState { version: "1".into(), ready: true, models: vec![model.clone()], ..NodeState::default() };
        let back: NodeState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
        let spec = model.spec().unwrap();
        assert_eq!(spec.name.as_str(), "llama3.2:3b");
        assert!(spec.backend.as_ref().is_some_and(|b| b.fleet && &*b.id == "llama3.2:3b"));
        assert!(spec.capabilities.tools);
        assert_eq!(NodeModel::from_spec(&spec).name, "llama3.2:3b");
        assert!(NodeModel { name: "not a name!".into(), ..NodeModel::default() }.spec().is_none());
        assert!(!spec.cloud && !spec.remote());
        // A node's cloud model stays one on the front (remote for `routing.remote`), and a node that does not say
        // (an older version) offers none.
        let cloud = NodeModel { name: "gpt-oss:120b-cloud".into(), cloud: true, ..NodeModel::default() };
        let spec = cloud.spec().unwrap();
        assert!(spec.cloud && spec.remote() && !spec.local());
        assert!(NodeModel::from_spec(&spec).cloud);
        let mut old = serde_json::to_value(&cloud).unwrap();
        old.as_object_mut().unwrap().remove("cloud");
        assert!(!serde_json::from_value::<NodeModel>(old).unwrap().cloud);
    }
}
