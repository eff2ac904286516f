//! The router's Prometheus metrics, all prefixed `switchyard_`, with bounded labels: route templates (not paths),
//! model names from the catalog (or `none`), the seven categories, fixed status and reason sets.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use switchyard_vram::VramMetrics;

/// Every metric of the process, with the registry they live in.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub vram: VramMetrics,
    /// Requests by route, model, category and status code.
    pub requests: IntCounterVec,
    /// Whole request time by route and model (for streams, until the last chunk).
    pub request_duration: HistogramVec,
    /// Time to the first chunk sent to the client, by route and model.
    pub ttft: HistogramVec,
    /// Time spent by Switchyard itself before forwarding (classify, score, admit when warm).
    pub overhead: Histogram,
    /// `auto` decisions by category and chosen model.
    pub decisions: IntCounterVec,
    /// Classification + scoring time.
    pub decision_duration: Histogram,
    /// Fallbacks to the next candidate, by reason.
    pub fallbacks: IntCounterVec,
    /// Breaker state per model (0 closed, 1 half-open, 2 open).
    pub breaker_state: IntGaugeVec,
    /// Leases held per model (requests in flight or queued in Ollama).
    pub in_flight: IntGaugeVec,
    /// Streams that ended with an error after they started, by reason.
    pub stream_errors: IntCounterVec,
    /// Background store writes dropped because the queue was full, or failed.
    pub store_writes_dropped: IntCounter,
    pub store_write_errors: IntCounter,
    /// Requests refused by rate limits, by kind (ip, key).
    pub rate_limited: IntCounterVec,
    /// Profiler: items done by result (correct, incorrect, error, skipped), and the running job's progress in [0, 1].
    pub profiler_items: IntCounterVec,
    pub profiler_progress: prometheus::Gauge,
    /// Ollama reachable (1) or not (0), from the last VRAM poll or readiness check.
    pub upstream_up: IntGauge,
    /// Requests sent to `[[backends]]` by backend name (configured names only) and outcome (ok, error).
    pub backend_requests: IntCounterVec,
    /// Tokens reported by `[[backends]]`, by backend and direction (input, output).
    pub backend_tokens: IntCounterVec,
    /// Money spent on priced backends, in their price units.
    pub backend_spend: prometheus::CounterVec,
    /// Requests in flight per backend.
    pub backend_in_flight: IntGaugeVec,
    /// Fleet nodes answering their state readings (1) or not (0), by node name (configured names only).
    pub fleet_node_up: IntGaugeVec,
    /// Response cache lookups by result (hit, semantic_hit, miss, bypass).
    pub cache_requests: IntCounterVec,
    /// Time of a cache lookup (memory, store, and the embedding for the semantic cache).
    pub cache_lookup: Histogram,
    /// Answers in the cache's memory, and their bytes.
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    /// Answers evicted for room (entries or bytes).
    pub cache_evictions: IntCounter,
    /// Answers written to the store (`cache.persist`), by outcome (ok, error).
    pub cache_store_writes: IntCounterVec,
    /// Requests a cascade served, by the step whose answer was returned.
    pub cascade_requests: IntCounterVec,
    /// Cascade steps whose answer was refused, by step and reason.
    pub cascade_escalations: IntCounterVec,
    /// Model time (Ollama's `total_duration`) spent by cascades, on answers and on judging them.
    pub cascade_model_seconds: prometheus::CounterVec,
}

impl Metrics {
    /// Creates every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let vram = VramMetrics::register(&registry)?;
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        ];
        let m = Self {
            registry,
            vram,
            requests: IntCounterVec::new(
                Opts::new("switchyard_requests_total", "Requests by route, model, category and status"),
                &["route", "model", "category", "status"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new("switchyard_request_duration_seconds", "Request time, until the last byte")
                    .buckets(latency_buckets.clone()),
                &["route", "model"],
            )?,
            ttft: HistogramVec::new(
                HistogramOpts::new(
                    "switchyard_time_to_first_token_seconds",
                    "Time until the first chunk reached the client",
                )
                .buckets(latency_buckets),
                &["route", "model"],
            )?,
            overhead: Histogram::with_opts(
                HistogramOpts::new(
                    "switchyard_router_overhead_seconds",
                    "Time Switchyard spent before forwarding: parse, classify, score, admit",
                )
                .buckets(vec![
                    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1.0, 10.0,
                ]),
            )?,
            decisions: IntCounterVec::new(
                Opts::new("switchyard_routing_decisions_total", "auto routing decisions by category and chosen model"),
                &["category", "model"],
            )?,
            decision_duration: Histogram::with_opts(
                HistogramOpts::new("switchyard_routing_decision_seconds", "Classification and scoring time")
                    .buckets(vec![0.000001, 0.0000025, 0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.00025, 0.001]),
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new("switchyard_fallbacks_total", "Requests moved to the next candidate, by reason"),
                &["reason"],
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new("switchyard_breaker_state", "Circuit breaker per model: 0 closed, 1 half-open, 2 open"),
                &["model"],
            )?,
            in_flight: IntGaugeVec::new(Opts::new("switchyard_model_in_flight", "Leases held per model"), &["model"])?,
            stream_errors: IntCounterVec::new(
                Opts::new("switchyard_stream_errors_total", "Streams ended with an error after they started"),
                &["route"],
            )?,
            store_writes_dropped: IntCounter::new(
                "switchyard_store_writes_dropped_total",
                "Background store writes dropped (queue full or store down)",
            )?,
            store_write_errors: IntCounter::new(
                "switchyard_store_write_errors_total",
                "Background store writes that failed",
            )?,
            rate_limited: IntCounterVec::new(
                Opts::new("switchyard_rate_limited_total", "Requests refused by a rate limit"),
                &["kind"],
            )?,
            profiler_items: IntCounterVec::new(
                Opts::new("switchyard_profiler_items_total", "Profiling items done, by result"),
                &["result"],
            )?,
            profiler_progress: prometheus::Gauge::new(
                "switchyard_profiler_progress_ratio",
                "Progress of the running profiling job",
            )?,
            upstream_up: IntGauge::new(
                "switchyard_upstream_up",
                "Ollama reachable (1) or not (0), as of the last poll",
            )?,
            backend_requests: IntCounterVec::new(
                Opts::new("switchyard_backend_requests_total", "Requests sent to a [[backends]] entry, by outcome"),
                &["backend", "outcome"],
            )?,
            backend_tokens: IntCounterVec::new(
                Opts::new("switchyard_backend_tokens_total", "Tokens a [[backends]] entry reported, by direction"),
                &["backend", "direction"],
            )?,
            backend_spend: prometheus::CounterVec::new(
                Opts::new("switchyard_backend_spend_total", "Spent on a priced backend, in its price units"),
                &["backend"],
            )?,
            backend_in_flight: IntGaugeVec::new(
                Opts::new("switchyard_backend_in_flight", "Requests in flight per [[backends]] entry"),
                &["backend"],
            )?,
            fleet_node_up: IntGaugeVec::new(
                Opts::new("switchyard_fleet_node_up", "A fleet node answers its state readings (1) or not (0)"),
                &["node"],
            )?,
            cache_requests: IntCounterVec::new(
                Opts::new("switchyard_cache_requests_total", "Response cache lookups by result"),
                &["result"],
            )?,
            cache_lookup: Histogram::with_opts(
                HistogramOpts::new("switchyard_cache_lookup_seconds", "Time of a response cache lookup").buckets(vec![
                    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.001, 0.005, 0.025, 0.1, 1.0,
                ]),
            )?,
            cache_entries: IntGauge::new("switchyard_cache_entries", "Answers in the response cache's memory")?,
            cache_bytes: IntGauge::new(
                "switchyard_cache_bytes",
                "Bytes of the answers in the response cache's memory",
            )?,
            cache_evictions: IntCounter::new(
                "switchyard_cache_evictions_total",
                "Answers evicted from the response cache for room",
            )?,
            cache_store_writes: IntCounterVec::new(
                Opts::new("switchyard_cache_store_writes_total", "Cached answers written to the store, by outcome"),
                &["outcome"],
            )?,
            cascade_requests: IntCounterVec::new(
                Opts::new(
                    "switchyard_cascade_requests_total",
                    "Requests a cascade served, by the step (1 = the first, cheapest model) whose answer was returned",
                ),
                &["step"],
            )?,
            cascade_escalations: IntCounterVec::new(
                Opts::new(
                    "switchyard_cascade_escalations_total",
                    "Cascade steps whose answer was refused and passed on to the next step, by step and reason",
                ),
                &["step", "reason"],
            )?,
            cascade_model_seconds: prometheus::CounterVec::new(
                Opts::new(
                    "switchyard_cascade_model_seconds_total",
                    "Model time spent by cascades (the answers' total_duration), on answers and on judging them",
                ),
                &["work"],
            )?,
        };
        for collector in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.request_duration.clone()),
            Box::new(m.ttft.clone()),
            Box::new(m.overhead.clone()),
            Box::new(m.decisions.clone()),
            Box::new(m.decision_duration.clone()),
            Box::new(m.fallbacks.clone()),
            Box::new(m.breaker_state.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.stream_errors.clone()),
            Box::new(m.backend_requests.clone()),
            Box::new(m.backend_tokens.clone()),
            Box::new(m.backend_spend.clone()),
            Box::new(m.backend_in_flight.clone()),
            Box::new(m.fleet_node_up.clone()),
            Box::new(m.store_writes_dropped.clone()),
            Box::new(m.store_write_errors.clone()),
            Box::new(m.rate_limited.clone()),
            Box::new(m.profiler_items.clone()),
            Box::new(m.profiler_progress.clone()),
            Box::new(m.upstream_up.clone()),
            Box::new(m.cache_requests.clone()),
            Box::new(m.cache_lookup.clone()),
            Box::new(m.cache_entries.clone()),
            Box::new(m.cache_bytes.clone()),
            Box::new(m.cache_evictions.clone()),
            Box::new(m.cache_store_writes.clone()),
            Box::new(m.cascade_requests.clone()),
            Box::new(m.cascade_escalations.clone()),
            Box::new(m.cascade_model_seconds.clone()),
        ] {
            m.registry.register(collector)?;
        }
        Ok(m)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for valid metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
