//! What clients see when the backend misbehaves (the simulator's fault injection): fallback to the next candidate
//! when nothing was sent yet, clean errors in the surface's shape otherwise, the circuit breaker, and readiness.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Harness, start_with};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use switchyard_sim::SimOptions;

const CODING: &str = "Write a Rust function that parses a CSV line into fields.";

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": CODING}]})
}

/// The model `auto` picks first for the coding prompt, loaded (faults then hit inference, not the load).
async fn first_choice(h: &Harness) -> String {
    let a = h
        .get("/admin/explain?prompt=Write%20a%20Rust%20function%20that%20parses%20a%20CSV%20line%20into%20fields.")
        .await;
    let model = a.json()["chosen"].as_str().unwrap().to_string();
    preload(h, &model).await;
    model
}

async fn preload(h: &Harness, model: &str) {
    let a = h.post("/admin/vram/load", json!({ "model": model })).await;
    assert_eq!(a.status, 200, "{}", a.text());
}

async fn harness() -> Harness {
    start_with(SimOptions::default(), |c| {
        c.ollama.first_byte_timeout_secs = 1;
        c.ollama.answer_timeout_secs = 1;
        c.ollama.idle_timeout_secs = 1;
        c.breaker.failure_threshold = 2;
        c.breaker.cooldown_secs = 3600;
    })
    .await
}

#[tokio::test]
async fn a_500_falls_back_for_auto_and_is_a_clear_502_for_an_explicit_model() {
    let h = harness().await;
    let top = first_choice(&h).await;
    h.fault(json!({"model": top, "error_status": 500, "error_message": "model crashed"})).await;
    let a = h.post("/api/chat", chat("auto", false)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let served = a.header("x-switchyard-model").unwrap().to_string();
    assert_ne!(served, top, "served by the next candidate");
    assert_eq!(a.json()["model"], served.as_str());
    let metrics = h.get("/metrics").await.text();
    assert!(metrics.contains("switchyard_fallbacks_total{reason=\"upstream_failed\"}"), "{metrics}");

    let a = h.post("/api/chat", chat(&top, false)).await;
    assert_eq!(a.status, 502);
    let message = a.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("model crashed") && message.contains(&top), "{message}");
    let a = h.post("/v1/chat/completions", chat(&top, false)).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["type"], "api_error");
    h.stop().await;
}

#[tokio::test]
async fn repeated_failures_open_the_breaker_and_auto_stops_trying_the_model() {
    let h = harness().await;
    let top = first_choice(&h).await;
    h.fault(json!({"model": top, "error_status": 500})).await;
    // Two failures (the threshold) open the breaker.
    for _ in 0..2 {
        assert_eq!(h.post("/api/chat", chat(&top, false)).await.status, 502);
    }
    let metrics = h.get("/metrics").await.text();
    assert!(metrics.contains(&format!("switchyard_breaker_state{{model=\"{top}\"}} 2")), "{metrics}");
    let explained = h
        .get("/admin/explain?prompt=Write%20a%20Rust%20function%20that%20parses%20a%20CSV%20line%20into%20fields.")
        .await
        .json();
    let excluded = explained["scoring"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == top.as_str())
        .unwrap()["excluded"]
        .clone();
    assert!(excluded.as_str().unwrap().contains("circuit breaker"), "{excluded}");
    // Now the failing model is skipped before anything is sent to it.
    let before = h.sim_gpu().await["counters"]["requests"].as_u64().unwrap();
    let a = h.post("/api/chat", chat("auto", false)).await;
    assert_eq!(a.status, 200);
    assert_ne!(a.header("x-switchyard-model"), Some(top.as_str()));
    let after = h.sim_gpu().await["counters"]["requests"].as_u64().unwrap();
    assert!(after - before <= 2, "at most the chosen model's load and request reached the backend");
    // An explicit request to it is refused at once with a message that says what to do.
    let a = h.post("/api/chat", chat(&top, false)).await;
    assert_eq!(a.status, 502);
    assert!(a.json()["error"].as_str().unwrap().contains("circuit breaker"));
    h.stop().await;
}

#[tokio::test]
async fn a_hung_model_times_out_then_falls_back_or_is_a_504() {
    let h = harness().await;
    let top = first_choice(&h).await;
    h.fault(json!({"model": top, "hang": true})).await;
    let a = h.post("/api/chat", chat("auto", true)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_ne!(a.header("x-switchyard-model"), Some(top.as_str()));
    let a = h.post("/api/generate", json!({"model": top, "prompt": "hi", "stream": false})).await;
    assert_eq!(a.status, 504);
    let message = a.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("did not answer within 1 s"), "{message}");
    assert!(message.contains("ollama.answer_timeout_secs for an answer that is not streamed"), "{message}");
    h.stop().await;
}

/// A stream keeps the first-byte limit, however long the limit of a whole answer is.
#[tokio::test]
async fn a_stream_is_still_held_to_the_first_byte_limit() {
    let h = start_with(SimOptions::default(), |c| {
        c.ollama.first_byte_timeout_secs = 1;
        c.ollama.answer_timeout_secs = 3600;
    })
    .await;
    let top = first_choice(&h).await;
    h.fault(json!({"model": top, "hang": true})).await;
    // A guard only: under the answer limit this would wait an hour.
    let streamed = h.post("/api/generate", json!({"model": top, "prompt": "hi", "stream": true}));
    let a = tokio::time::timeout(Duration::from_secs(30), streamed).await.unwrap();
    assert_eq!(a.status, 504, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("did not answer within 1 s"), "{}", a.text());
    h.stop().await;
}

/// Ollama sends a buffered answer's head only when the generation is done, so the first-byte limit would cut every
/// generation longer than it: a buffered answer is bounded by `ollama.answer_timeout_secs` instead.
#[tokio::test]
async fn a_buffered_answer_may_take_longer_than_the_first_byte_limit() {
    let h = start_with(SimOptions { time_scale: 1.0, ..SimOptions::default() }, |c| {
        c.ollama.first_byte_timeout_secs = 1;
    })
    .await;
    preload(&h, "llama3.2:3b").await;
    let long = json!({"model": "llama3.2:3b", "prompt": "Write a long story.", "stream": false,
                      "options": {"num_predict": 300}});
    let a = h.post("/api/generate", long).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let answer = a.json();
    assert_eq!(answer["eval_count"], 300, "{answer}");
    // The simulator's own timing: the generation took longer than the first-byte limit.
    assert!(answer["eval_duration"].as_u64().unwrap() > 1_000_000_000, "{answer}");
    h.stop().await;
}

#[tokio::test]
async fn a_slow_model_is_waited_for() {
    let h = start_with(SimOptions { time_scale: 1.0, ..SimOptions::default() }, |_| {}).await;
    preload(&h, "llama3.2:3b").await;
    h.fault(json!({"model": "llama3.2:3b", "latency_ms": 300})).await;
    let a = h
        .post(
            "/api/generate",
            json!({"model": "llama3.2:3b", "prompt": "hi", "stream": false, "options": {"num_predict": 3}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["done"], true);
    h.stop().await;
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_in_each_surfaces_shape() {
    // Tokens are spaced in time (time scale > 0) so that the first chunks reach the client before the cut.
    let h =
        start_with(SimOptions { time_scale: 0.05, ..SimOptions::default() }, |c| c.ollama.idle_timeout_secs = 5).await;
    preload(&h, "llama3.2:3b").await;
    h.fault(json!({"model": "llama3.2:3b", "disconnect_after_chunks": 3})).await;
    let a = h
        .post(
            "/api/generate",
            json!({"model": "llama3.2:3b", "prompt": "Tell me a story", "options": {"num_predict": 50}}),
        )
        .await;
    assert_eq!(a.status, 200, "the stream had started");
    let lines = a.lines();
    let last = lines.last().unwrap();
    assert!(last["error"].as_str().unwrap().contains("stream"), "{last}");
    assert!(lines.iter().all(|l| l["done"] != true), "no final chunk was invented");

    let a = h
        .post("/v1/chat/completions", json!({"model": "llama3.2:3b", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "Tell me a story"}]}))
        .await;
    assert_eq!(a.status, 200);
    let events = a.events();
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "api_error", "{last}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    h.stop().await;
}

#[tokio::test]
async fn a_stream_that_breaks_before_its_first_chunk_falls_back() {
    let h = harness().await;
    let top = first_choice(&h).await;
    h.fault(json!({"model": top, "disconnect_after_chunks": 0})).await;
    let a = h.post("/api/chat", chat("auto", true)).await;
    assert_eq!(a.status, 200);
    assert_ne!(a.header("x-switchyard-model"), Some(top.as_str()));
    assert_eq!(a.lines().last().unwrap()["done"], true);
    h.stop().await;
}

#[tokio::test]
async fn an_out_of_memory_load_falls_back() {
    let h = harness().await;
    let top = first_choice(&h).await;
    let a = h.post("/admin/vram/unload", json!({ "model": top })).await;
    assert_eq!(a.status, 200, "{}", a.text());
    h.fault(json!({"model": top, "oom_on_load": true})).await;
    let a = h.post("/api/chat", chat("auto", false)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_ne!(a.header("x-switchyard-model"), Some(top.as_str()));
    let a = h.post("/api/chat", chat(&top, false)).await;
    assert_eq!(a.status, 502);
    assert!(a.json()["error"].as_str().unwrap().contains("out of memory"), "{}", a.text());
    h.stop().await;
}

#[tokio::test]
async fn memory_another_process_holds_makes_a_big_model_run_partly_offloaded_not_fail() {
    const GIB: u64 = 1024 * 1024 * 1024;
    let h = harness().await;
    h.fault(json!({"foreign_vram": {"gpu": 0, "bytes": 6 * GIB}})).await;
    let seen = common::eventually(Duration::from_secs(10), || async {
        h.get("/admin/vram").await.json()["foreign_bytes"].as_u64().unwrap_or(0) >= 6 * GIB
    });
    assert!(seen.await, "the router did not see the other process");
    // Twice, once with a client's own num_gpu: Switchyard's layer count is sent both times, so one load serves both.
    for options in [json!({}), json!({"num_gpu": 999})] {
        let body = json!({"model": "llama3.3:70b", "prompt": "hello", "stream": false, "options": options});
        let a = h.post("/api/generate", body).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let counters = h.sim_gpu().await["counters"].clone();
    assert_eq!(counters["loads"], 1, "{counters}");
    assert_eq!(counters["oom_events"], 0, "{counters}");
    h.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_down_is_a_502_and_not_ready_while_health_stays_up() {
    let h = harness().await;
    let Harness { sim, router, http, dir } = h;
    sim.shutdown().await;
    let h = Harness { sim: switchyard_sim::spawn(SimOptions::default()).await.unwrap(), router, http, dir };
    let a = h.post("/api/chat", chat("llama3.2:3b", false)).await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("ollama serve"), "{}", a.text());
    let ready = h.get("/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["ready"], false);
    assert_eq!(h.get("/health").await.status, 200);
    let a = h.post("/v1/chat/completions", chat("auto", false)).await;
    assert!(a.status == 502 || a.status == 503, "{} {}", a.status, a.text());
    assert!(a.json()["error"]["message"].is_string());
    tokio::time::sleep(Duration::from_millis(1)).await;
    h.stop().await;
}

#[tokio::test]
async fn routing_keeps_working_when_the_store_goes_away() {
    // A real Postgres database that is dropped while the router runs.
    let Some(url) = switchyard_core::store::testing::postgres_url().await.unwrap() else { return };
    let h = start_with(SimOptions::default(), |c| {
        c.database.url = url.clone();
        c.routing.decision_sample_rate = 1.0;
    })
    .await;
    assert_eq!(h.post("/api/chat", chat("auto", false)).await.status, 200);
    let name = url.rsplit('/').next().unwrap().to_string();
    let admin_url = std::env::var("SY_TEST_POSTGRES_URL").unwrap();
    sqlx::any::install_default_drivers();
    let admin = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&admin).await.unwrap();
    admin.close().await;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let a = h.post("/api/chat", chat("auto", false)).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let elapsed = started.elapsed();
    assert!(
        h.get("/admin/decisions").await.json()["decisions"].as_array().unwrap().len() >= 20,
        "decisions stay in memory"
    );
    let failed = common::eventually(Duration::from_secs(20), || async {
        let metrics = h.get("/metrics").await.text();
        metrics.lines().any(|l| {
            (l.starts_with("switchyard_store_write_errors_total")
                || l.starts_with("switchyard_store_writes_dropped_total"))
                && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(failed, "lost writes are counted");
    let ready = h.get("/ready").await;
    assert_eq!(ready.status, 200, "Ollama is still there: {}", ready.text());
    assert!(ready.text().contains("store does not answer"), "{}", ready.text());
    println!("20 routed requests with the store gone took {:.0} ms", elapsed.as_secs_f64() * 1000.0);
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_work_and_frees_its_lease() {
    // Slow tokens (time scale 1): the stream would take seconds.
    let h = start_with(SimOptions { time_scale: 1.0, ..SimOptions::default() }, |_| {}).await;
    preload(&h, "llama3.2:3b").await;
    let request = switchyard_core::http::build_request(
        http::Method::POST,
        &h.url("/api/generate"),
        Some(
            json!({"model": "llama3.2:3b", "prompt": "Tell me a long story", "options": {"num_predict": 2000}})
                .to_string()
                .into(),
        ),
    )
    .unwrap();
    let response = h.http.send(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = http_body_util::BodyExt::frame(&mut body).await.unwrap().unwrap();
    assert!(first.is_data());
    assert_eq!(h.in_flight("llama3.2:3b").await, 1);
    drop(body);
    let freed = common::eventually(Duration::from_secs(5), || async { h.in_flight("llama3.2:3b").await == 0 }).await;
    assert!(freed, "the lease was released");
    // The simulated Ollama runs one request at a time per model: had the abandoned 2000-token generation gone on
    // (about 12 s), the next request would report that wait in its load_duration.
    let next = h
        .post(
            "/api/generate",
            json!({"model": "llama3.2:3b", "prompt": "hi", "stream": false, "options": {"num_predict": 1}}),
        )
        .await;
    assert_eq!(next.status, 200);
    let waited_ns = next.json()["load_duration"].as_u64().unwrap_or(0);
    assert!(waited_ns < 2_000_000_000, "the next request queued {waited_ns} ns behind the abandoned one");
    h.stop().await;
}

#[tokio::test]
async fn profiling_jobs_run_in_the_background_one_at_a_time() {
    let h = start_with(SimOptions { time_scale: 0.05, ..SimOptions::default() }, |_| {}).await;
    let a = h
        .post(
            "/admin/profile",
            json!({"models": ["llama3.2:3b", "llama3.1:8b"], "categories": ["math"], "items_per_category": 5}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    let id = a.json()["id"].as_str().unwrap().to_string();
    let second = h.post("/admin/profile", json!({"models": ["llama3.2:3b"]})).await;
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(second.json()["error"].as_str().unwrap().contains(&id));
    let done = common::eventually(Duration::from_secs(60), || async {
        h.get(&format!("/admin/profile/{id}")).await.json()["state"] == "complete"
    })
    .await;
    let status = h.get(&format!("/admin/profile/{id}")).await.json();
    assert!(done, "{status}");
    assert_eq!(status["items_done"], 10);
    assert_eq!(status["progress"], 1.0);
    assert_eq!(status["models"].as_array().unwrap().len(), 2);
    // The routing profiles were reloaded from the store.
    let models = h.get("/admin/models").await.json();
    let small = models["models"].as_array().unwrap().iter().find(|m| m["name"] == "llama3.2:3b").unwrap().clone();
    assert_eq!(small["profiled"], true);
    assert_eq!(small["categories"][0]["n"], 5);
    assert_eq!(h.get("/admin/profile/no-such-job").await.status, 404);
    h.stop().await;
}

#[tokio::test]
async fn auto_routes_as_soon_as_a_backend_that_was_down_at_start_comes_up() {
    // A free port with nothing listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&format!("http://{addr}"), dir.path());
    config.vram.probe = switchyard_core::config::ProbeKind::Ollama;
    config.vram.total = "24GiB".into();
    let router = switchyard::server::spawn(std::sync::Arc::new(config)).await.expect("router");
    // While it is down, a named model is "cannot reach", twice in a row (not a 404 on the second try).
    let http = switchyard_core::http::HttpClient::default();
    for _ in 0..2 {
        let request = switchyard_core::http::build_request(
            http::Method::POST,
            &format!("{}/api/chat", router.url()),
            Some(chat("llama3.2:3b", false).to_string().into()),
        )
        .unwrap();
        let a = http.send_buffered(request, Duration::from_secs(10)).await.unwrap();
        assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    }
    // The admin views say so too, rather than an empty model list or `chosen: null`.
    for path in ["/admin/models", "/admin/explain?prompt=hi"] {
        let a = http
            .request(http::Method::GET, &format!("{}{path}", router.url()), None, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(a.status, 502, "{path}: {}", String::from_utf8_lossy(&a.body));
        assert!(String::from_utf8_lossy(&a.body).contains("cannot reach Ollama"), "{path}");
    }
    let sim = switchyard_sim::spawn(SimOptions { listen: addr, ..SimOptions::default() }).await.unwrap();
    let h = Harness { sim, router, http: switchyard_core::http::HttpClient::default(), dir };
    // The catalog read at start was empty and the periodic refresh is 30 s away: the first request still routes.
    let a = h.post("/api/chat", chat("auto", false)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.header("x-switchyard-model").is_some());
    h.stop().await;
}

/// A harness whose simulated Ollama listens on a fixed address, so that it can be stopped and started again there.
async fn harness_on_fixed_address(tweak: impl FnOnce(&mut switchyard_core::config::Config)) -> (Harness, SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    (start_with(SimOptions { listen: addr, ..SimOptions::default() }, tweak).await, addr)
}

/// Stops the simulated Ollama (a spare one on another address stands in the harness meanwhile).
async fn ollama_down(h: &mut Harness) {
    let sim = std::mem::replace(&mut h.sim, switchyard_sim::spawn(SimOptions::default()).await.unwrap());
    sim.shutdown().await;
}

/// Starts a fresh simulated Ollama, with nothing loaded, on `addr` again.
async fn ollama_back(h: &mut Harness, addr: SocketAddr) {
    let spare = std::mem::replace(
        &mut h.sim,
        switchyard_sim::spawn(SimOptions { listen: addr, ..SimOptions::default() }).await.unwrap(),
    );
    spare.shutdown().await;
}

#[tokio::test]
async fn ollama_going_down_does_not_pause_its_models_once_it_is_back() {
    let (mut h, addr) = harness_on_fixed_address(|c| {
        c.breaker.failure_threshold = 2;
        c.breaker.cooldown_secs = 3600;
    })
    .await;
    preload(&h, "llama3.2:3b").await;
    assert_eq!(h.post("/api/chat", chat("llama3.2:3b", false)).await.status, 200);
    ollama_down(&mut h).await;
    // Ollama is down: every request is "cannot reach Ollama", well past the breaker's threshold, never a pause.
    for i in 0..5 {
        let a = h.post("/api/chat", chat("llama3.2:3b", false)).await;
        assert_eq!(a.status, 502, "#{i}: {}", a.text());
        assert!(a.text().contains("cannot reach Ollama"), "#{i}: {}", a.text());
        assert_eq!(a.header("retry-after"), Some("2"), "#{i}");
    }
    // Back on the same address: the model is served again at once, not after the breaker's hour.
    ollama_back(&mut h, addr).await;
    let a = h.post("/api/chat", chat("llama3.2:3b", false)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    h.stop().await;
}

#[tokio::test]
async fn a_model_that_needs_another_unloaded_while_ollama_is_down_is_a_502_at_once() {
    let (mut h, addr) = harness_on_fixed_address(|c| {
        // One model at a time: the second needs the first unloaded.
        c.vram.max_loaded_models = 1;
        c.vram.admission_wait_ms = 5_000;
    })
    .await;
    preload(&h, "llama3.2:3b").await;
    ollama_down(&mut h).await;
    // The unload finds nothing listening, so no process holds the model: the load is tried and cannot reach Ollama
    // (502), instead of waiting for an unload no one will confirm and answering 503 for want of room.
    let a = h.post("/api/chat", chat("llama3.1:8b", false)).await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(a.text().contains("cannot reach Ollama"), "{}", a.text());
    // Back on the same address, with nothing loaded: the model loads and answers.
    ollama_back(&mut h, addr).await;
    let a = h.post("/api/chat", chat("llama3.1:8b", false)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    h.stop().await;
}
