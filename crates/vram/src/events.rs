//! Where the manager reports what it did: load events and measurements, for the store.
//!
//! The sink must not block: the router's implementation queues writes for a background task and drops them (with a
//! metric) when the store falls behind.

use switchyard_core::ModelName;
use switchyard_core::store::LoadEvent;

/// Receives the manager's events.
pub trait VramEventSink: Send + Sync + std::fmt::Debug {
    /// A load, unload or eviction happened (or failed).
    fn load_event(&self, event: LoadEvent);

    /// A load was measured: seconds, VRAM bytes (`size_vram`), at context `num_ctx`.
    fn measured(&self, model: &ModelName, load_seconds: Option<f64>, vram_bytes: Option<u64>, num_ctx: u64);
}

/// A sink that drops everything (tests, tools without a store).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopSink;

impl VramEventSink for NoopSink {
    fn load_event(&self, _event: LoadEvent) {}

    fn measured(&self, _model: &ModelName, _load_seconds: Option<f64>, _vram_bytes: Option<u64>, _num_ctx: u64) {}
}
