//! The VRAM manager against the simulator: pins, the threshold, foreign memory, in-flight protection, single-flight
//! loads, and a randomized workload that must never run the simulated GPU out of memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::catalog::Catalog;
use switchyard_core::config::{Config, ProbeKind, Strategy as Eviction};
use switchyard_core::gpu::GpuSnapshot;
use switchyard_core::http::HttpClient;
use switchyard_core::ollama::OllamaClient;
use switchyard_core::ollama::types::PsModel;
use switchyard_sim::{SimHandle, SimOptions};
use switchyard_vram::ledger::Residency;
use switchyard_vram::probe::{GpuProbe, SimProbe};
use switchyard_vram::{AdminOp, Ledger, ManagerIo, ManagerOptions, NoopSink, VramError, VramManager, VramMetrics};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const GIB: u64 = 1024 * 1024 * 1024;

struct World {
    sim: SimHandle,
    manager: VramManager,
    client: OllamaClient,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The manager's metrics, registered here.
    registry: prometheus::Registry,
}

fn name(s: &str) -> ModelName {
    ModelName::parse(s).unwrap()
}

async fn world(gpus: Vec<u64>, tweak: impl FnOnce(&mut Config)) -> World {
    world_with(gpus, tweak, |client| Arc::new(SimProbe::new(client)), Vec::new()).await
}

/// Measurements the manager starts with, as if from the store: model, load seconds, VRAM bytes.
type Known = Vec<(ModelName, Option<f64>, Option<u64>)>;

async fn world_with(
    gpus: Vec<u64>,
    tweak: impl FnOnce(&mut Config),
    probe: impl FnOnce(OllamaClient) -> Arc<dyn GpuProbe>,
    known: Known,
) -> World {
    let sim = switchyard_sim::spawn(SimOptions { gpus: gpus.clone(), ..SimOptions::default() }).await.unwrap();
    let mut config = Config::default();
    config.ollama.url = sim.url();
    config.vram.probe = ProbeKind::Sim;
    config.vram.poll_interval_ms = 50;
    config.vram.admission_wait_ms = 2_000;
    tweak(&mut config);
    let config = Arc::new(config);
    let client = OllamaClient::new(HttpClient::default(), sim.url());
    let catalog = Arc::new(Catalog::fetch(&client, &Catalog::default()).await.unwrap());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut options = ManagerOptions::from_config(Arc::clone(&config), gpus.len());
    options.known = known;
    let registry = prometheus::Registry::new();
    let io = ManagerIo {
        client: client.clone(),
        probe: probe(client.clone()),
        catalog,
        sink: Arc::new(NoopSink),
        metrics: Some(VramMetrics::register(&registry).unwrap()),
    };
    let manager = VramManager::start(options, io, shutdown.clone(), &tracker).await.unwrap();
    World { sim, manager, client, shutdown, tracker, registry }
}

impl World {
    /// The value of an unlabelled counter of the manager's metrics.
    fn counter(&self, name: &str) -> f64 {
        let families = self.registry.gather();
        let family = families.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("no metric {name}"));
        family.get_metric()[0].get_counter().get_value()
    }

    async fn counters(&self) -> Value {
        self.client.http().get_json::<Value>(&self.client.url("/sim/gpu"), Duration::from_secs(5)).await.unwrap()["counters"].clone()
    }

    async fn loaded(&self) -> Vec<String> {
        let ps = self.client.ps().await.unwrap();
        ps.models.into_iter().map(|m| m.name).collect()
    }

    /// Polls the published ledger until `check` holds (within the polling deadline).
    async fn ledger_shows(&self, check: impl Fn(&Ledger) -> bool) -> bool {
        common_eventually(|| {
            let ledger = self.manager.ledger();
            let ok = check(&ledger);
            async move { ok }
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.sim.shutdown().await;
    }
}

async fn post(client: &OllamaClient, path: &str, body: Value) -> Value {
    client.http().post_json(&client.url(path), &body, Duration::from_secs(10)).await.unwrap()
}

#[tokio::test]
async fn a_pinned_model_survives_any_pressure() {
    let w = world(vec![16 * GIB], |_| {}).await;
    let pinned = name("llama3.2:3b");
    w.manager.admin(AdminOp::Pin, &pinned).await.unwrap();
    // Cycle every other chat model through the GPU; each needs room.
    for _ in 0..2 {
        for m in ["llama3.1:8b", "qwen2.5-coder:7b", "deepseek-r1:14b", "llava:7b"] {
            let lease = w.manager.acquire(&name(m)).await.unwrap();
            drop(lease);
            assert!(w.loaded().await.contains(&"llama3.2:3b".to_string()), "pinned model evicted while loading {m}");
        }
    }
    // Even a model too large for the GPU cannot push it out: it is refused instead.
    let err = w.manager.acquire(&name("llama3.3:70b")).await.unwrap_err();
    assert!(matches!(err, VramError::Busy { .. }), "{err}");
    assert!(w.loaded().await.contains(&"llama3.2:3b".to_string()));
    assert_eq!(w.counters().await["oom_events"], 0);
    w.stop().await;
}

#[tokio::test]
async fn a_pinned_model_that_ollama_drops_is_loaded_again() {
    let w = world(vec![24 * GIB], |_| {}).await;
    let pinned = name("llama3.2:3b");
    w.manager.admin(AdminOp::Pin, &pinned).await.unwrap();
    // Someone unloads it behind Switchyard's back.
    post(&w.client, "/api/generate", json!({"model": "llama3.2:3b", "keep_alive": 0})).await;
    let mut back = false;
    for _ in 0..200 {
        w.manager.refresh().await.unwrap();
        if w.loaded().await.contains(&"llama3.2:3b".to_string())
            && w.manager.ledger().entry(&pinned).is_some_and(|e| e.pinned)
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "the pin was not re-applied");
    w.stop().await;
}

#[tokio::test]
async fn pins_alone_over_the_budget_are_refused() {
    let w = world(vec![16 * GIB], |_| {}).await;
    w.manager.admin(AdminOp::Pin, &name("deepseek-r1:14b")).await.unwrap();
    let err = w.manager.admin(AdminOp::Pin, &name("llava:7b")).await.unwrap_err();
    assert!(matches!(err, VramError::PinRefused { .. }), "{err}");
    assert!(err.to_string().contains("unpin one first"), "{err}");
    w.stop().await;
}

#[tokio::test]
async fn the_threshold_unloads_idle_models_down_to_it() {
    let w = world(vec![24 * GIB], |c| {
        c.vram.unload_threshold_pct = 50.0;
        c.vram.threshold_min_idle_secs = 0;
        c.vram.max_loaded_models = 6;
    })
    .await;
    for m in ["llama3.2:3b", "qwen2.5-coder:7b", "llama3.1:8b"] {
        drop(w.manager.acquire(&name(m)).await.unwrap());
    }
    // 2.9 + 5.45 + 6.05 GB is over half of the budget: idle models go until it is under.
    let mut under = false;
    for _ in 0..200 {
        w.manager.refresh().await.unwrap();
        let ledger = w.manager.ledger();
        let committed = ledger.committed(0) as f64;
        let limit = ledger.budget(0) as f64 * 0.5;
        if committed <= limit {
            under = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(under, "still over the threshold: {:?}", w.loaded().await);
    assert!(!w.loaded().await.is_empty(), "the most recently used model stays");
    w.stop().await;
}

#[tokio::test]
async fn foreign_memory_is_respected() {
    let w = world(vec![16 * GIB], |_| {}).await;
    // Another process takes 10 GiB; Ollama's scheduler does not count it, Switchyard does.
    post(&w.client, "/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": 10 * GIB}})).await;
    w.manager.refresh().await.unwrap();
    assert!(w.manager.ledger().gpus()[0].foreign >= 10 * GIB);
    drop(w.manager.acquire(&name("llama3.2:3b")).await.unwrap());
    // deepseek-r1:14b (about 10 GiB) cannot go whole beside the other process: it runs partly offloaded, alone,
    // with only as many layers on the GPU as the memory left holds.
    let lease = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    let layers = lease.options.num_gpu.expect("Switchyard chose the GPU layers");
    let ps = w.client.ps().await.unwrap();
    assert_eq!(ps.models.len(), 1, "{ps:?}");
    let deepseek = &ps.models[0];
    assert!(deepseek.size_vram < deepseek.size, "partly offloaded: {deepseek:?}");
    assert!(deepseek.size_vram + 10 * GIB <= 16 * GIB, "{deepseek:?}");
    // A request with the lease's options is served by that instance (no reload); Ollama's default would reload it.
    let load = w.counters().await["loads"].as_u64().unwrap();
    let body = json!({"model": "deepseek-r1:14b", "prompt": "hi", "stream": false, "options": {"num_predict": 4}});
    let mut with_lease = body.clone();
    lease.options.write_to(with_lease["options"].as_object_mut().unwrap());
    assert_eq!(with_lease["options"]["num_gpu"], json!(layers));
    post(&w.client, "/api/generate", with_lease).await;
    assert_eq!(w.counters().await["loads"].as_u64().unwrap(), load);
    drop(lease);
    // Straight to the simulator, a load sized by Ollama's own count of free memory runs the GPU out of memory.
    let direct =
        w.client.http().post_json::<_, Value>(&w.client.url("/api/generate"), &body, Duration::from_secs(10)).await;
    assert!(direct.is_err());
    let counters = w.counters().await;
    assert_eq!(counters["oom_events"], 1, "only the direct load may OOM: {counters}");
    w.stop().await;
}

#[tokio::test]
async fn a_model_too_big_for_the_gpu_runs_partly_offloaded_beside_other_processes() {
    let w = world(vec![24 * GIB], |_| {}).await;
    post(&w.client, "/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": 6 * GIB}})).await;
    w.manager.refresh().await.unwrap();
    // llama3.3:70b (42 GiB) only ever runs partly offloaded on 24 GiB; beside 6 GiB of another process's memory it
    // gets the 17.5 GiB left, not the 23.5 GiB Ollama would give it.
    let lease = w.manager.acquire(&name("llama3.3:70b")).await.unwrap();
    assert!(lease.options.num_gpu.is_some());
    let ps = w.client.ps().await.unwrap();
    let big = ps.models.iter().find(|m| m.name.starts_with("llama3.3")).unwrap();
    assert!(big.size_vram + 6 * GIB <= 24 * GIB && big.size_vram > 12 * GIB, "{big:?}");
    let entry = w.manager.ledger().entry(&name("llama3.3:70b")).cloned().unwrap();
    assert_eq!(entry.expected_bytes, big.size, "planned by its whole size, not its GPU share");
    assert_eq!(w.counters().await["oom_events"], 0);
    w.stop().await;
}

#[tokio::test]
async fn a_model_larger_than_any_gpu_is_split_across_them_as_ollama_places_it() {
    let w = world(vec![24 * GIB, 24 * GIB], |c| c.vram.admission_wait_ms = 20_000).await;
    let big = name("llama3.3:70b");
    drop(w.manager.acquire(&name("llama3.2:3b")).await.unwrap());
    // About 43 GiB: on neither GPU alone, so Ollama splits it over both (once the small model is out of the way).
    let lease = w.manager.acquire(&big).await.unwrap();
    assert!(lease.cold);
    w.manager.refresh().await.unwrap();
    let ledger = w.manager.ledger();
    let shares = ledger.entry(&big).and_then(|e| e.residency.held().cloned()).unwrap();
    assert!(shares.is_split(), "{shares}");
    // The ledger's account of each GPU is the simulator's: nothing is mistaken for another process's memory.
    let sim: Value = w.client.http().get_json(&w.client.url("/sim/gpu"), Duration::from_secs(5)).await.unwrap();
    for g in ledger.gpus() {
        let used = sim["gpus"][g.index as usize]["used_bytes"].as_u64().unwrap();
        assert_eq!(ledger.models_bytes(g.index), used, "GPU {}", g.index);
        assert_eq!(g.foreign, 0, "GPU {}", g.index);
        assert!(shares.on(g.index) > 15 * GIB, "{shares}");
    }
    drop(lease);
    // Other models come back beside it or in its place, never past the memory.
    for model in ["llama3.1:8b", "deepseek-r1:14b", "llama3.3:70b", "llama3.2:3b"] {
        drop(w.manager.acquire(&name(model)).await.unwrap());
    }
    let counters = w.counters().await;
    assert_eq!(counters["oom_events"], 0, "{counters}");
    w.stop().await;
}

#[tokio::test]
async fn a_model_with_requests_in_flight_is_never_unloaded() {
    let w = world(vec![16 * GIB], |c| c.vram.admission_wait_ms = 300).await;
    let held = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    // llava needs the room the busy model holds: it waits, then gives up, and the busy model stays.
    let err = w.manager.acquire(&name("llava:7b")).await.unwrap_err();
    assert!(matches!(err, VramError::Busy { .. }), "{err}");
    assert!(w.loaded().await.contains(&"deepseek-r1:14b".to_string()));
    // Admin unload of a busy model is refused too.
    assert!(w.manager.admin(AdminOp::Unload, &name("deepseek-r1:14b")).await.is_err());
    drop(held);
    // Released: now llava gets its room.
    drop(w.manager.acquire(&name("llava:7b")).await.unwrap());
    assert!(!w.loaded().await.contains(&"deepseek-r1:14b".to_string()));
    w.stop().await;
}

#[tokio::test]
async fn concurrent_requests_for_a_cold_model_share_one_load() {
    let w = world(vec![24 * GIB], |_| {}).await;
    let before = w.counters().await["loads"].as_u64().unwrap();
    let model = name("llama3.1:8b");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let m = w.manager.clone();
        let model = model.clone();
        tasks.push(tokio::spawn(async move { m.acquire(&model).await.map(|l| l.cold) }));
    }
    let mut cold = 0;
    for t in tasks {
        cold += u32::from(t.await.unwrap().unwrap());
    }
    assert_eq!(cold, 16, "every request waited for the one load");
    assert_eq!(w.counters().await["loads"].as_u64().unwrap() - before, 1, "single flight");
    // The last releases are published a moment after they happen.
    assert!(w.ledger_shows(|l| l.entry(&model).is_some_and(|e| e.in_flight == 0)).await);
    let entry = w.manager.ledger().entry(&model).cloned().unwrap();
    assert!(matches!(entry.residency, Residency::Loaded { .. }));
    assert_eq!(entry.uses, 16);
    w.stop().await;
}

#[tokio::test]
async fn a_release_is_published_even_when_nothing_follows_it() {
    // No poll publishes in between: only the release's own deferred publication can show it.
    let w = world(vec![24 * GIB], |c| c.vram.poll_interval_ms = 600_000).await;
    let model = name("llama3.2:3b");
    let shows = |in_flight: u32, uses: u64| {
        let model = model.clone();
        move |l: &Ledger| l.entry(&model).is_some_and(|e| e.in_flight == in_flight && e.uses == uses)
    };
    // The first lease loads the model (the load's own follow-ups publish too); the others find it loaded.
    let first = w.manager.acquire(&model).await.unwrap();
    assert!(w.ledger_shows(shows(1, 1)).await);
    // The readings the load asked for are in before anything else happens.
    w.manager.refresh().await.unwrap();
    let second = w.manager.acquire(&model).await.unwrap();
    assert!(w.ledger_shows(shows(2, 2)).await);
    // A release that leaves the model busy waits for the next batch, or a moment: it still shows.
    drop(second);
    assert!(w.ledger_shows(shows(1, 2)).await, "a deferred release");
    // The model going idle is published at once: the very next reading after the actor has seen it shows it.
    drop(first);
    assert!(w.ledger_shows(shows(0, 2)).await, "the last release");
    w.stop().await;
}

#[tokio::test]
async fn requests_after_shutdown_are_refused() {
    let w = world(vec![24 * GIB], |_| {}).await;
    let model = name("llama3.2:3b");
    drop(w.manager.acquire(&model).await.unwrap());
    let manager = w.manager.clone();
    w.stop().await;
    assert!(matches!(manager.acquire(&model).await, Err(VramError::ShuttingDown)));
}

#[tokio::test]
async fn the_threshold_spares_models_used_recently() {
    let w = world(vec![24 * GIB], |c| {
        c.vram.unload_threshold_pct = 50.0;
        c.vram.threshold_min_idle_secs = 3600;
        c.vram.max_loaded_models = 6;
    })
    .await;
    for m in ["llama3.2:3b", "qwen2.5-coder:7b", "llama3.1:8b"] {
        drop(w.manager.acquire(&name(m)).await.unwrap());
    }
    for _ in 0..3 {
        w.manager.refresh().await.unwrap();
    }
    assert_eq!(w.loaded().await.len(), 3, "models used within the hysteresis stay loaded");
    w.stop().await;
}

#[tokio::test]
async fn requests_for_a_busy_model_queue_behind_one_that_needs_it_gone() {
    let w = world(vec![16 * GIB], |c| {
        c.vram.admission_wait_ms = 5_000;
        c.vram.max_bypass_ms = 0;
    })
    .await;
    let busy = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    // llava needs deepseek's room and waits for it to go idle...
    let m = w.manager.clone();
    let waiting = tokio::spawn(async move { m.acquire(&name("llava:7b")).await.map(|_| ()) });
    assert!(w.ledger_shows(|l| l.entry(&name("llava:7b")).is_some()).await);
    // ...so a new request for deepseek is not granted ahead of it, keeping deepseek from never going idle.
    let m = w.manager.clone();
    let late = tokio::spawn(async move { m.acquire(&name("deepseek-r1:14b")).await.map(|l| l.cold) });
    for _ in 0..5 {
        w.manager.refresh().await.unwrap();
    }
    assert!(!late.is_finished(), "the later request was granted ahead of the waiting one");
    // `/admin/vram` shows each model's queue and how long its oldest request has waited.
    let status = switchyard_vram::view::status(&w.manager.ledger(), "sim", String::new(), 0);
    let queue = |model: &str| {
        let m = status.models.iter().find(|m| m.name == model).unwrap();
        (m.queued, m.oldest_wait_ms.is_some())
    };
    assert_eq!(queue("llava:7b"), (1, true));
    assert_eq!(queue("deepseek-r1:14b"), (1, true));
    drop(busy);
    waiting.await.unwrap().unwrap();
    // Then the later one is served in turn (deepseek had to be loaded again).
    assert!(late.await.unwrap().unwrap(), "deepseek should have been loaded again for the later request");
    assert!(w.ledger_shows(|l| l.entries().all(|e| e.waiting == 0 && e.waiting_since.is_none())).await);
    w.stop().await;
}

#[tokio::test]
async fn requests_for_a_busy_model_go_ahead_of_one_waiting_for_room_only_within_the_bound() {
    let bound = Duration::from_millis(1_500);
    let w = world(vec![16 * GIB], |c| {
        c.vram.admission_wait_ms = 8_000;
        c.vram.max_bypass_ms = 1_500;
    })
    .await;
    let busy = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    // llava needs deepseek's room; deepseek is serving.
    let m = w.manager.clone();
    let waiting = tokio::spawn(async move { m.acquire(&name("llava:7b")).await });
    let started = tokio::time::Instant::now();
    assert!(w.ledger_shows(|l| l.entry(&name("llava:7b")).is_some_and(|e| e.waiting == 1)).await);
    // Within the bound a new request for deepseek is served at once, ahead of llava...
    let ahead = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    assert!(!ahead.cold);
    assert!(!waiting.is_finished());
    // ...and once llava has waited for the bound, new requests for deepseek queue behind it.
    tokio::time::sleep_until(started + bound).await;
    let m = w.manager.clone();
    let behind = tokio::spawn(async move { m.acquire(&name("deepseek-r1:14b")).await.map(|l| l.cold) });
    for _ in 0..5 {
        w.manager.refresh().await.unwrap();
    }
    assert!(!behind.is_finished(), "a request went ahead of one that had waited for the bound");
    drop(busy);
    drop(ahead);
    let lease = waiting.await.unwrap().unwrap();
    assert!(lease.cold);
    drop(lease);
    assert!(behind.await.unwrap().unwrap(), "deepseek should have been loaded again after llava");
    let status = switchyard_vram::view::status(&w.manager.ledger(), "sim", String::new(), 1_500);
    // llava was passed over once; the last request may have deferred too (llava was busy when it was planned).
    assert_eq!(status.bypass.bypasses, 1, "{:?}", status.bypass);
    assert!(status.bypass.deferred >= 1, "{:?}", status.bypass);
    assert!(status.bypass.longest_passed_over_ms <= 1_500.0, "{:?}", status.bypass);
    // The metrics count the same.
    assert_eq!(w.counter("switchyard_admission_bypasses_total"), 1.0);
    assert_eq!(w.counter("switchyard_admission_deferred_total"), status.bypass.deferred as f64);
    w.stop().await;
}

#[tokio::test]
async fn a_request_waiting_for_room_is_served_within_its_bound_while_a_busy_model_keeps_getting_requests() {
    let w = world(vec![16 * GIB], |c| {
        c.vram.admission_wait_ms = 20_000;
        c.vram.max_bypass_ms = 300;
    })
    .await;
    let first = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    let m = w.manager.clone();
    let starving = tokio::spawn(async move { m.acquire(&name("llava:7b")).await });
    // A stream of overlapping requests for deepseek (each held 60 ms, one every 20 ms) for up to 10 s: deepseek is
    // never idle while the stream is admitted ahead of llava.
    let stream_end = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut stream = tokio::task::JoinSet::new();
    stream.spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(first);
    });
    let mut served_during_stream = false;
    while tokio::time::Instant::now() < stream_end {
        if starving.is_finished() {
            served_during_stream = true;
            break;
        }
        let m = w.manager.clone();
        stream.spawn(async move {
            if let Ok(lease) = m.acquire(&name("deepseek-r1:14b")).await {
                tokio::time::sleep(Duration::from_millis(60)).await;
                drop(lease);
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served_during_stream, "llava was starved by the stream of deepseek requests");
    assert!(starving.await.unwrap().is_ok());
    while stream.join_next().await.is_some() {}
    let bypass = w.manager.ledger().bypass();
    assert!(bypass.bypasses > 0, "the stream never went ahead of llava: {bypass:?}");
    assert!(bypass.longest_passed_over <= Duration::from_millis(300), "{bypass:?}");
    w.stop().await;
}

#[tokio::test]
async fn time_passed_over_is_added_to_the_wait_for_room() {
    let w = world(vec![16 * GIB], |c| {
        c.vram.admission_wait_ms = 1_000;
        c.vram.max_bypass_ms = 2_000;
    })
    .await;
    let busy = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    let m = w.manager.clone();
    let waiting = tokio::spawn(async move { m.acquire(&name("llava:7b")).await });
    // A follower for the same model shares the first one's wait, its time passed over included.
    assert!(w.ledger_shows(|l| l.entry(&name("llava:7b")).is_some_and(|e| e.waiting == 1)).await);
    let m = w.manager.clone();
    let follower = tokio::spawn(async move { m.acquire(&name("llava:7b")).await });
    assert!(w.ledger_shows(|l| l.entry(&name("llava:7b")).is_some_and(|e| e.waiting == 2)).await);
    let loads = w.counters().await["loads"].as_u64().unwrap();
    // deepseek's request takes 1.5 s: longer than the 1 s wait for room, well within the wait plus the 2 s bound.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    drop(busy);
    let lease = waiting.await.unwrap();
    assert!(lease.is_ok(), "the time passed over was taken from the wait for room: {:?}", lease.err());
    // The follower is served by the same load.
    let follower = follower.await.unwrap().unwrap();
    assert!(lease.unwrap().cold);
    assert_eq!(w.counters().await["loads"].as_u64().unwrap(), loads + 1, "one load for both requests");
    drop(follower);
    w.stop().await;
}

#[tokio::test]
async fn a_client_sending_one_request_at_a_time_is_never_passed_over() {
    let w = world(vec![16 * GIB], |c| c.vram.max_bypass_ms = 1_000).await;
    for model in ["deepseek-r1:14b", "llava:7b", "deepseek-r1:14b", "llava:7b"] {
        let lease = w.manager.acquire(&name(model)).await.unwrap();
        drop(lease);
    }
    assert_eq!(w.manager.ledger().bypass().deferred, 0);
    w.stop().await;
}

/// One GPU with room for two models: llama3.1:8b, loaded by another client and then used `uses` times, whose
/// reload is known to take `reload_seconds`, beside deepseek-r1:14b, used once and still serving (the lease returned).
async fn hot_idle_beside_rare_busy(reload_seconds: f64, uses: usize) -> (World, switchyard_vram::Lease) {
    let known = vec![(name("llama3.1:8b"), Some(reload_seconds), None)];
    let tweak = |c: &mut Config| {
        c.vram.max_loaded_models = 2;
        c.vram.admission_wait_ms = 20_000;
    };
    let w = world_with(vec![24 * GIB], tweak, |client| Arc::new(SimProbe::new(client)), known).await;
    post(&w.client, "/api/generate", json!({"model": "llama3.1:8b", "keep_alive": -1, "options": {"num_ctx": 4096}}))
        .await;
    w.manager.refresh().await.unwrap();
    for _ in 0..uses {
        drop(w.manager.acquire(&name("llama3.1:8b")).await.unwrap());
    }
    let rare = w.manager.acquire(&name("deepseek-r1:14b")).await.unwrap();
    (w, rare)
}

async fn sorted_loaded(w: &World) -> Vec<String> {
    let mut loaded = w.loaded().await;
    loaded.sort();
    loaded
}

#[tokio::test]
async fn a_model_used_often_is_not_evicted_while_a_rarely_used_busy_one_can_go_soon() {
    let (w, rare) = hot_idle_beside_rare_busy(30.0, 10).await;
    // A third model needs one of the two slots. llama3.1:8b is idle but worth keeping; deepseek-r1:14b is the one
    // the strategy would evict, so the request waits for it (for up to a 30 s reload of llama3.1:8b).
    let m = w.manager.clone();
    let waiting = tokio::spawn(async move { m.acquire(&name("qwen2.5-coder:7b")).await.map(|l| l.cold) });
    assert!(w.ledger_shows(|l| l.entry(&name("qwen2.5-coder:7b")).is_some()).await);
    for _ in 0..5 {
        w.manager.refresh().await.unwrap();
    }
    assert!(!waiting.is_finished(), "granted without waiting for deepseek-r1:14b");
    assert_eq!(sorted_loaded(&w).await, ["deepseek-r1:14b", "llama3.1:8b"]);
    // Waiting by choice holds nobody back: deepseek-r1:14b still serves new requests at once.
    let again = w.manager.acquire_within(&name("deepseek-r1:14b"), Duration::from_secs(5)).await.unwrap();
    assert!(!again.cold);
    drop(again);
    drop(rare);
    assert!(waiting.await.unwrap().unwrap(), "qwen2.5-coder:7b was loaded for the request");
    assert_eq!(sorted_loaded(&w).await, ["llama3.1:8b", "qwen2.5-coder:7b"]);
    w.stop().await;
}

#[tokio::test]
async fn the_wait_for_a_busy_model_lasts_no_longer_than_the_reload_it_saves() {
    let (w, rare) = hot_idle_beside_rare_busy(0.5, 40).await;
    // deepseek-r1:14b stays busy: after half a second (a reload of llama3.1:8b) waiting costs more than the reload,
    // and llama3.1:8b goes after all.
    let lease = w.manager.acquire(&name("qwen2.5-coder:7b")).await.unwrap();
    assert!(lease.waited >= Duration::from_millis(500), "evicted after {:?}", lease.waited);
    assert_eq!(sorted_loaded(&w).await, ["deepseek-r1:14b", "qwen2.5-coder:7b"]);
    drop(lease);
    drop(rare);
    w.stop().await;
}

#[tokio::test]
async fn an_out_of_memory_load_is_planned_again_after_a_poll() {
    let w = world(vec![24 * GIB], |c| c.vram.poll_interval_ms = 60_000).await;
    // The next load of llama3.1:8b fails out of memory once (as if another process had just taken the memory).
    post(&w.client, "/sim/faults", json!({"model": "llama3.1:8b", "oom_on_load": true, "fail_times": 1})).await;
    let lease = w.manager.acquire(&name("llama3.1:8b")).await;
    assert!(lease.is_ok(), "retried after the failed load: {:?}", lease.err());
    let counters = w.counters().await;
    assert_eq!(counters["oom_events"], 1);
    w.stop().await;
}

#[tokio::test]
async fn a_request_that_stopped_waiting_for_a_busy_model_no_longer_holds_its_requests_back() {
    let w = world(vec![16 * GIB], |c| {
        c.vram.admission_wait_ms = 5_000;
        c.vram.max_bypass_ms = 0;
    })
    .await;
    let busy = w.manager.acquire(&name("llama3.2:3b")).await.unwrap();
    // With 8 GiB taken by another process, llama3.1:8b fits only if the busy llama3.2:3b goes: it waits for it.
    post(&w.client, "/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": 8 * GIB}})).await;
    w.manager.refresh().await.unwrap();
    let m = w.manager.clone();
    let _waiting = tokio::spawn(async move { m.acquire(&name("llama3.1:8b")).await.map(|_| ()) });
    assert!(w.ledger_shows(|l| l.entry(&name("llama3.1:8b")).is_some()).await);
    // The other process exits: now llama3.1:8b fits beside llama3.2:3b and its load starts (and hangs, so it is
    // still loading while the next request comes).
    post(&w.client, "/sim/faults", json!({"model": "llama3.1:8b", "hang": true})).await;
    post(&w.client, "/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": 0}})).await;
    w.manager.refresh().await.unwrap();
    let loading = w.ledger_shows(|l| {
        matches!(l.entry(&name("llama3.1:8b")).map(|e| &e.residency), Some(Residency::Loading { .. }))
    });
    assert!(loading.await, "the load started once the memory was back");
    // llama3.2:3b is loaded and nobody needs it gone any more: a new request gets it at once, not after the load.
    // (Held back, it would wait until the earlier request gave up after its 5 s; one second is plenty for a grant.)
    let again = w.manager.acquire_within(&name("llama3.2:3b"), Duration::from_secs(1)).await;
    assert!(again.is_ok(), "held back by a request that no longer waits for it: {:?}", again.err());
    assert!(!again.unwrap().cold);
    assert!(matches!(
        w.manager.ledger().entry(&name("llama3.1:8b")).map(|e| e.residency.clone()),
        Some(Residency::Loading { .. })
    ));
    drop(busy);
    w.stop().await;
}

/// The simulator's probe, behind a gate: while it is closed, polls wait, so a test can hold the manager between an
/// out-of-memory load and the reading that follows it.
#[derive(Debug)]
struct GatedProbe {
    inner: SimProbe,
    open: tokio::sync::watch::Sender<bool>,
}

#[async_trait::async_trait]
impl GpuProbe for GatedProbe {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn read(&self, ps: &[PsModel]) -> Result<GpuSnapshot, VramError> {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
        self.inner.read(ps).await
    }
}

#[tokio::test]
async fn memory_taken_since_the_last_reading_is_seen_before_a_load_instead_of_running_out() {
    let w = world(vec![24 * GIB], |c| c.vram.poll_interval_ms = 60_000).await;
    drop(w.manager.acquire(&name("llama3.1:8b")).await.unwrap());
    // Another process takes 12 GiB, and no poll has seen it: by the last reading deepseek fits beside llama3.1:8b.
    post(&w.client, "/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": 12 * GIB}})).await;
    let lease = w.manager.acquire(&name("deepseek-r1:14b")).await;
    assert!(lease.is_ok(), "{:?}", lease.err());
    let counters = w.counters().await;
    assert_eq!(counters["oom_events"], 0, "{counters}");
    assert_eq!(sorted_loaded(&w).await, ["deepseek-r1:14b"], "llama3.1:8b had to make room");
    w.stop().await;
}

#[tokio::test]
async fn requests_that_come_while_an_out_of_memory_load_awaits_its_poll_queue_behind_it() {
    let (open, _) = tokio::sync::watch::channel(true);
    let w = world_with(
        vec![24 * GIB],
        |c| c.vram.poll_interval_ms = 60_000,
        |client| Arc::new(GatedProbe { inner: SimProbe::new(client), open: open.clone() }),
        Vec::new(),
    )
    .await;
    let model = name("llama3.1:8b");
    post(&w.client, "/sim/faults", json!({"model": "llama3.1:8b", "oom_on_load": true, "fail_times": 1})).await;
    open.send_replace(false);
    let m = w.manager.clone();
    let first = tokio::spawn(async move { m.acquire(&name("llama3.1:8b")).await.map(|_| ()) });
    let failed_once = common_eventually(|| async { w.counters().await["oom_events"] == 1 }).await;
    assert!(failed_once, "the first load ran out of memory");
    // A second request while the retry waits for its reading: sent now, answered later.
    let m = w.manager.clone();
    let mut second = Box::pin(async move { m.acquire(&name("llama3.1:8b")).await.map(|_| ()) });
    assert!(tokio::time::timeout(Duration::ZERO, &mut second).await.is_err());
    // Two round trips through the manager: the second request has been through a whole admission pass since.
    for _ in 0..2 {
        assert!(w.manager.admin(AdminOp::Unload, &name("no-such-model:1b")).await.is_err());
    }
    let entry = w.manager.ledger().entry(&model).cloned();
    assert!(
        entry.as_ref().is_none_or(|e| e.residency.held().is_none()),
        "a load was planned from the reading that had just failed: {:?}",
        entry.map(|e| e.residency)
    );
    open.send_replace(true);
    assert!(first.await.unwrap().is_ok(), "the first request was served by its retry");
    assert!(second.await.is_ok(), "the second request was served too");
    let counters = w.counters().await;
    assert_eq!(counters["oom_events"], 1);
    assert_eq!(counters["loads"], 1, "one load served both");
    w.stop().await;
}

async fn common_eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

const CHAT_MODELS: [&str; 6] =
    ["llama3.2:3b", "llama3.1:8b", "qwen2.5-coder:7b", "deepseek-r1:14b", "llava:7b", "llama3.3:70b"];

/// GPU sizes, strategy index, (model index, hold) requests, foreign bytes on GPU 0, and `vram.max_bypass_ms`.
type Workload = (Vec<u64>, u8, Vec<(usize, u8)>, Option<u64>, u64);

fn workload() -> impl Strategy<Value = Workload> {
    (
        prop_oneof![
            Just(vec![8 * GIB]),
            Just(vec![16 * GIB]),
            Just(vec![24 * GIB]),
            Just(vec![12 * GIB, 12 * GIB]),
            Just(vec![16 * GIB, 8 * GIB]),
            Just(vec![24 * GIB, 24 * GIB]),
        ],
        0u8..4,
        prop::collection::vec((0usize..CHAT_MODELS.len(), 0u8..4), 5..40),
        prop::option::of(0u64..6 * GIB),
        prop_oneof![Just(0u64), Just(30), Just(200)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, .. ProptestConfig::default() })]

    /// Whatever the request sequence, fleet share, foreign usage and bound on passing over a waiting request,
    /// admission never makes the GPU run out of memory, and no request is passed over for longer than the bound.
    #[test]
    fn random_workloads_never_oom((gpus, strategy, requests, foreign, bound) in workload()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let strategy = [Eviction::Lru, Eviction::Largest, Eviction::Lfu, Eviction::Cost][strategy as usize];
            let w = world(gpus, |c| {
                c.vram.strategy = strategy;
                c.vram.admission_wait_ms = 500;
                c.vram.max_bypass_ms = bound;
            }).await;
            if let Some(bytes) = foreign {
                post(&w.client, "/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": bytes}})).await;
                w.manager.refresh().await.unwrap();
            }
            // Requests in waves of up to four concurrent leases.
            for wave in requests.chunks(4) {
                let mut tasks = Vec::new();
                for (model, hold) in wave {
                    let m = w.manager.clone();
                    let model = name(CHAT_MODELS[*model]);
                    let hold = Duration::from_millis(u64::from(*hold) * 5);
                    tasks.push(tokio::spawn(async move {
                        match m.acquire(&model).await {
                            Ok(lease) => { tokio::time::sleep(hold).await; drop(lease); Ok(()) }
                            Err(VramError::Busy { .. } | VramError::QueueFull { .. }) => Ok(()),
                            Err(e) => Err(e.to_string()),
                        }
                    }));
                }
                for t in tasks {
                    let outcome = t.await.unwrap();
                    assert!(outcome.is_ok(), "unexpected admission error: {outcome:?}");
                }
            }
            let counters = w.counters().await;
            assert_eq!(counters["oom_events"], 0, "OOM with {strategy:?}: {counters}");
            let bypass = w.manager.ledger().bypass();
            assert!(bypass.longest_passed_over <= Duration::from_millis(bound), "bound {bound} ms: {bypass:?}");
            if bound == 0 {
                assert_eq!((bypass.deferred, bypass.bypasses), (0, 0));
            }
            w.stop().await;
        });
    }
}
