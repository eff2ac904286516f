//! The fleet replay end to end on a short trace: two boxes, each policy, every request answered, the boxes'
//! counters read, and the report's targets line written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_bench::fleet::{self, FleetPolicy};
use switchyard_bench::replay::ReplayOptions;
use switchyard_bench::trace::{self, TraceSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_trace_replays_on_two_nodes_under_every_policy() {
    let trace = trace::generate(&TraceSpec {
        seed: 3,
        requests: 24,
        models: vec!["llama3.2:3b".into(), "llama3.1:8b".into(), "qwen2.5-coder:7b".into()],
        zipf_s: 1.1,
        mean_gap: 3.0,
        embedding: None,
    });
    let options = ReplayOptions {
        time_scale: 0.005,
        foreign: None,
        poll_interval_ms: 50,
        idle_ttl_secs: 9,
        threshold_min_idle_secs: 1,
        cost_half_life_secs: 18,
        unload_threshold_pct: None,
        max_loaded_models: None,
    };
    let mut results = Vec::new();
    for policy in FleetPolicy::ALL {
        let r = fleet::run(&trace, 2, 24 * 1024 * 1024 * 1024, policy, &options).await.unwrap();
        assert_eq!((r.requests, r.failed, r.oom_events), (24, 0, 0), "{}: {:?}", r.scheduling, r.failures);
        assert!(r.cold_loads >= 1, "{}: the boxes start empty, so something was loaded", r.scheduling);
        assert_eq!(r.latency.n, 24);
        assert_eq!(r.gpus, "2 nodes of 1 x 24 GiB");
        results.push(r);
    }
    let report = fleet::markdown(&results);
    assert!(report.contains("| switchyard front |") && report.contains("| round robin |"), "{report}");
    assert!(report.contains("Targets (2 nodes of 1 x 24 GiB, front against round robin)"), "{report}");
}
