//! `/admin/vram` as data: what the ledger holds, in a shape that serialises for the API and deserialises for
//! `switchyard vram status`.

use crate::ledger::{Ledger, Residency};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuView {
    pub index: u32,
    pub name: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// What Switchyard may fill (limit less headroom).
    pub budget_bytes: u64,
    /// Held by Ollama's models (or reserved for loads under way).
    pub models_bytes: u64,
    /// Used by other processes.
    pub foreign_bytes: u64,
}

/// The budget settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub limit: String,
    pub headroom_bytes: u64,
    pub unload_threshold_pct: f64,
    pub max_loaded_models: usize,
    /// Idle seconds before unloading (`null` = never).
    pub idle_ttl_secs: Option<u64>,
}

/// One model the ledger knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub name: String,
    /// `loaded`, `loading`, `unloading` or `unloaded`.
    pub state: String,
    /// The GPU holding the model, or its largest share when it is split across several.
    pub gpu: Option<u32>,
    /// Its GPU memory per GPU: one entry, or one per GPU when split.
    #[serde(default)]
    pub shares: Vec<ShareView>,
    pub size: u64,
    pub size_vram: u64,
    pub pinned: bool,
    pub in_flight: u32,
    /// Seconds since the last use.
    pub idle_secs: Option<f64>,
    pub uses: u64,
    pub load_seconds: Option<f64>,
    /// VRAM the model needs entirely on the GPU (Ollama's `size`: measured, or estimated before the first load).
    pub expected_bytes: u64,
    /// Ollama's `expires_at`.
    pub expires_at: Option<String>,
    /// Requests waiting for admission to this model.
    #[serde(default)]
    pub queued: u32,
    /// Milliseconds the longest-waiting of them has waited.
    #[serde(default)]
    pub oldest_wait_ms: Option<u64>,
}

/// A model's bytes on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareView {
    pub gpu: u32,
    pub bytes: u64,
}

/// The whole answer of `GET /admin/vram`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VramStatus {
    /// Which probe measures the GPUs: `nvml`, `ollama` or `sim`.
    pub source: String,
    pub strategy: String,
    pub gpus: Vec<GpuView>,
    pub budget: BudgetView,
    pub models: Vec<ModelView>,
    pub foreign_bytes: u64,
    /// Requests passed over by admission (`vram.max_bypass_ms`).
    #[serde(default)]
    pub bypass: BypassView,
    pub warnings: Vec<String>,
}

/// Admission out of arrival order: how often requests for loaded models went ahead of a request waiting for room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BypassView {
    /// `vram.max_bypass_ms`: how long a waiting request may be passed over.
    pub max_bypass_ms: u64,
    /// Requests that were passed over.
    pub deferred: u64,
    /// Leases granted ahead of them.
    pub bypasses: u64,
    /// The longest a request had waited when another went ahead of it.
    pub longest_passed_over_ms: f64,
}

/// Builds the status from a ledger snapshot.
pub fn status(ledger: &Ledger, source: &str, limit: String, max_bypass_ms: u64) -> VramStatus {
    let config = ledger.config();
    let gpus: Vec<GpuView> = ledger
        .gpus()
        .iter()
        .map(|g| GpuView {
            index: g.index,
            name: g.name.clone(),
            total_bytes: g.total,
            used_bytes: g.used,
            free_bytes: g.total.saturating_sub(g.used),
            budget_bytes: ledger.budget(g.index),
            models_bytes: ledger.models_bytes(g.index),
            foreign_bytes: g.foreign,
        })
        .collect();
    let models = ledger
        .entries()
        .filter(|e| e.residency != Residency::Absent || e.pinned || e.waiting > 0)
        .map(|e| {
            let size_vram = e.residency.bytes();
            let size = match e.residency {
                Residency::Loaded { size, .. } => size,
                _ => size_vram,
            };
            let held = e.residency.held();
            ModelView {
                name: e.name.to_string(),
                state: e.residency.as_str().to_string(),
                gpu: held.and_then(|s| s.primary()),
                shares: held.map_or_else(Vec::new, |s| s.iter().map(|(gpu, bytes)| ShareView { gpu, bytes }).collect()),
                size,
                size_vram,
                pinned: e.pinned,
                in_flight: e.in_flight,
                idle_secs: e.last_used.map(|t| t.elapsed().as_secs_f64()),
                uses: e.uses,
                load_seconds: e.load_seconds,
                expected_bytes: e.expected_bytes,
                expires_at: e.expires_at.clone(),
                queued: e.waiting,
                oldest_wait_ms: e.waiting_since.map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
            }
        })
        .collect();
    VramStatus {
        source: source.to_string(),
        strategy: config.strategy.as_str().to_string(),
        foreign_bytes: gpus.iter().map(|g| g.foreign_bytes).sum(),
        gpus,
        budget: BudgetView {
            limit,
            headroom_bytes: config.headroom,
            unload_threshold_pct: config.unload_threshold_pct,
            max_loaded_models: config.max_loaded,
            idle_ttl_secs: config.idle_ttl.map(|d: Duration| d.as_secs()),
        },
        models,
        bypass: {
            let b = ledger.bypass();
            BypassView {
                max_bypass_ms,
                deferred: b.deferred,
                bypasses: b.bypasses,
                longest_passed_over_ms: b.longest_passed_over.as_secs_f64() * 1000.0,
            }
        },
        warnings: ledger.warnings().to_vec(),
    }
}
