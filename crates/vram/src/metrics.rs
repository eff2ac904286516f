//! The VRAM manager's Prometheus metrics. Labels are bounded: GPU index, a fixed set of reasons, the strategy.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric of the VRAM manager.
#[derive(Debug, Clone)]
pub struct VramMetrics {
    pub total_bytes: IntGaugeVec,
    pub used_bytes: IntGaugeVec,
    pub foreign_bytes: IntGaugeVec,
    pub budget_bytes: IntGaugeVec,
    pub models_loaded: IntGauge,
    /// Loads by reason (request, pin, preload, admin) and result (ok, error).
    pub loads: IntCounterVec,
    /// Unloads by reason (room, threshold, idle, admin, external).
    pub unloads: IntCounterVec,
    /// Evictions Switchyard chose, by reason (room, threshold) and strategy.
    pub evictions: IntCounterVec,
    pub load_duration: Histogram,
    /// Time a request waited for its lease, by outcome (ready, cold, rejected).
    pub lease_wait: HistogramVec,
    /// Requests refused admission, by reason (busy, queue_full, load_failed, unknown).
    pub rejections: IntCounterVec,
    /// Requests that let requests for loaded models go ahead of them (`vram.max_bypass_ms`).
    pub deferred: IntCounter,
    /// Leases granted ahead of a request waiting for room.
    pub bypasses: IntCounter,
}

impl VramMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gpu_gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["gpu"]);
        let m = Self {
            total_bytes: gpu_gauge("switchyard_vram_total_bytes", "GPU memory per GPU")?,
            used_bytes: gpu_gauge("switchyard_vram_used_bytes", "GPU memory in use per GPU, all processes")?,
            foreign_bytes: gpu_gauge(
                "switchyard_vram_foreign_bytes",
                "GPU memory used by processes other than Ollama's models",
            )?,
            budget_bytes: gpu_gauge("switchyard_vram_budget_bytes", "GPU memory Switchyard may fill per GPU")?,
            models_loaded: IntGauge::new("switchyard_models_loaded", "Models loaded in Ollama")?,
            loads: IntCounterVec::new(
                Opts::new("switchyard_model_loads_total", "Model loads started by Switchyard"),
                &["reason", "result"],
            )?,
            unloads: IntCounterVec::new(
                Opts::new("switchyard_model_unloads_total", "Model unloads seen, by reason"),
                &["reason"],
            )?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "switchyard_model_evictions_total",
                    "Models evicted by Switchyard to make room or stay under the threshold",
                ),
                &["reason", "strategy"],
            )?,
            load_duration: Histogram::with_opts(
                HistogramOpts::new("switchyard_model_load_duration_seconds", "Cold load time of models")
                    .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0]),
            )?,
            lease_wait: HistogramVec::new(
                HistogramOpts::new("switchyard_lease_wait_seconds", "Time requests waited for VRAM admission")
                    .buckets(vec![0.00001, 0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
                &["outcome"],
            )?,
            rejections: IntCounterVec::new(
                Opts::new("switchyard_admission_rejections_total", "Requests refused VRAM admission, by reason"),
                &["reason"],
            )?,
            deferred: IntCounter::new(
                "switchyard_admission_deferred_total",
                "Requests that waited while requests for loaded models went ahead of them",
            )?,
            bypasses: IntCounter::new(
                "switchyard_admission_bypasses_total",
                "Leases granted ahead of an earlier request waiting for room",
            )?,
        };
        registry.register(Box::new(m.total_bytes.clone()))?;
        registry.register(Box::new(m.used_bytes.clone()))?;
        registry.register(Box::new(m.foreign_bytes.clone()))?;
        registry.register(Box::new(m.budget_bytes.clone()))?;
        registry.register(Box::new(m.models_loaded.clone()))?;
        registry.register(Box::new(m.loads.clone()))?;
        registry.register(Box::new(m.unloads.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.load_duration.clone()))?;
        registry.register(Box::new(m.lease_wait.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.deferred.clone()))?;
        registry.register(Box::new(m.bypasses.clone()))?;
        Ok(m)
    }
}
