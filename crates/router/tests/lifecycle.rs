//! The real binary's life: a graceful shutdown that lets streams finish, a SIGKILL and restart that rebuilds the
//! VRAM ledger from Ollama and re-applies pins, and metrics that move under load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Binary;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard_core::http::{HttpClient, build_request};
use switchyard_sim::SimOptions;

async fn get_json(http: &HttpClient, url: &str) -> Value {
    http.get_json(url, Duration::from_secs(10)).await.unwrap()
}

#[tokio::test]
async fn sigterm_stops_accepting_and_lets_in_flight_streams_finish() {
    // At time scale 2 a 150-token stream lasts about two seconds.
    let sim = switchyard_sim::spawn(SimOptions { time_scale: 2.0, ..SimOptions::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin =
        Binary::start(&sim.url(), dir.path(), &[], &[("SWITCHYARD_SERVER_SHUTDOWN_GRACE_SECS", "20")]).await.unwrap();
    let http = HttpClient::default();
    // Load first so the stream starts at once.
    let _: Value = http
        .post_json(&format!("{}/admin/vram/load", bin.url), &json!({"model": "llama3.2:3b"}), Duration::from_secs(60))
        .await
        .unwrap();
    let url = format!("{}/api/generate", bin.url);
    let request = build_request(
        http::Method::POST,
        &url,
        Some(
            json!({"model": "llama3.2:3b", "prompt": "Tell me a long story", "options": {"num_predict": 150}})
                .to_string()
                .into(),
        ),
    )
    .unwrap();
    let response = http.send(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let stream =
        tokio::spawn(async move { http_body_util::BodyExt::collect(response.into_body()).await.map(|c| c.to_bytes()) });
    let signalled = Instant::now();
    bin.signal("TERM").await;
    // New connections are refused once the listener is closed.
    let refused = common::eventually(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(bin.url.trim_start_matches("http://")).await.is_err()
    })
    .await;
    assert!(refused, "still accepting connections after SIGTERM");
    let body = stream.await.unwrap().expect("the in-flight stream finished");
    let drained = signalled.elapsed();
    let last: Value = serde_json::from_str(String::from_utf8_lossy(&body).lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true, "the stream ran to its final chunk");
    assert_eq!(last["eval_count"], 150);
    let mut bin = bin;
    let status = tokio::time::timeout(Duration::from_secs(30), bin.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status}: {}", bin.stderr());
    println!(
        "drained an in-flight stream in {:.2} s after SIGTERM, exited in {:.2} s",
        drained.as_secs_f64(),
        signalled.elapsed().as_secs_f64()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn after_sigkill_a_restart_rebuilds_the_ledger_and_reapplies_pins() {
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [("SWITCHYARD_VRAM_PINS", "llama3.2:3b")];
    let mut bin = Binary::start(&sim.url(), dir.path(), &[], &env).await.unwrap();
    let http = HttpClient::default();
    let vram_url = format!("{}/admin/vram", bin.url);
    let pinned = common::eventually(Duration::from_secs(20), || async {
        get_json(&http, &vram_url).await["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "llama3.2:3b" && m["state"] == "loaded" && m["pinned"] == true)
    })
    .await;
    assert!(pinned);
    let _: Value = http
        .post_json(
            &format!("{}/admin/vram/load", bin.url),
            &json!({"model": "qwen2.5-coder:7b"}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    // A pin set at run time survives the crash too.
    let _: Value = http
        .post_json(&format!("{}/admin/vram/pin", bin.url), &json!({"model": "llama3.1:8b"}), Duration::from_secs(60))
        .await
        .unwrap();
    bin.signal("KILL").await;
    bin.child.wait().await.unwrap();
    // While Switchyard is down, something unloads the pinned models behind its back.
    for model in ["llama3.2:3b", "llama3.1:8b"] {
        let _: Value = http
            .post_json(
                &format!("{}/api/generate", sim.url()),
                &json!({"model": model, "keep_alive": 0}),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let bin = Binary::start(&sim.url(), dir.path(), &[], &env).await.unwrap();
    let vram_url = format!("{}/admin/vram", bin.url);
    let rebuilt = common::eventually(Duration::from_secs(20), || async {
        let v = get_json(&http, &vram_url).await;
        let models = v["models"].as_array().unwrap().clone();
        let coder = models.iter().any(|m| m["name"] == "qwen2.5-coder:7b" && m["state"] == "loaded");
        let pinned =
            |name: &str| models.iter().any(|m| m["name"] == name && m["state"] == "loaded" && m["pinned"] == true);
        coder && pinned("llama3.2:3b") && pinned("llama3.1:8b")
    })
    .await;
    assert!(rebuilt, "{}", get_json(&http, &vram_url).await);
    // The store survived the kill: the load events of the first life are there.
    let events =
        switchyard_core::store::SqlStore::open(&format!("sqlite://{}", dir.path().join("switchyard.db").display()), 1)
            .await
            .unwrap();
    use switchyard_core::store::Store;
    assert!(!events.load_events(Some("qwen2.5-coder:7b"), 10).await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn metrics_exist_and_move_under_load() {
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::start(&sim.url(), dir.path(), &[], &[]).await.unwrap();
    let http = HttpClient::default();
    for i in 0..20 {
        let body = json!({"model": "auto", "stream": i % 2 == 0, "messages": [{"role": "user", "content": format!("Write a Python function number {i}")}]});
        let request =
            build_request(http::Method::POST, &format!("{}/api/chat", bin.url), Some(body.to_string().into())).unwrap();
        assert_eq!(http.send_buffered(request, Duration::from_secs(10)).await.unwrap().status, 200);
    }
    let request = build_request(
        http::Method::POST,
        &format!("{}/v1/chat/completions", bin.url),
        Some(json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).to_string().into()),
    )
    .unwrap();
    assert_eq!(http.send_buffered(request, Duration::from_secs(10)).await.unwrap().status, 404);
    let text = String::from_utf8(
        http.request(http::Method::GET, &format!("{}/metrics", bin.url), None, Duration::from_secs(5))
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    for name in [
        "switchyard_requests_total",
        "switchyard_request_duration_seconds_count",
        "switchyard_time_to_first_token_seconds_count",
        "switchyard_router_overhead_seconds_count",
        "switchyard_routing_decisions_total",
        "switchyard_routing_decision_seconds_count",
        "switchyard_model_loads_total",
        "switchyard_model_load_duration_seconds_count",
        "switchyard_lease_wait_seconds_count",
        "switchyard_vram_total_bytes",
        "switchyard_vram_used_bytes",
        "switchyard_vram_budget_bytes",
        "switchyard_models_loaded",
    ] {
        assert!(value(name) > 0.0, "{name} did not move:\n{text}");
    }
    // Gauges that are legitimately zero when the load is over exist with a value per model.
    assert!(text.contains("switchyard_model_in_flight{model="), "{text}");
    assert!(text.contains("switchyard_requests_total{category=\"coding\""), "requests are labelled by category");
    assert!(text.contains("route=\"/v1/chat/completions\"") && text.contains("status=\"404\""));
    assert!(text.contains("switchyard_upstream_up 1"));
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("switchyard_"), "unprefixed metric {line}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn json_logs_carry_one_span_per_request_with_its_routing_fields() {
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::start(
        &sim.url(),
        dir.path(),
        &[],
        &[("RUST_LOG", "switchyard=debug"), ("SWITCHYARD_SERVER_LOG_FORMAT", "json")],
    )
    .await
    .unwrap();
    let http = HttpClient::default();
    let request = build_request(
        http::Method::POST,
        &format!("{}/api/chat", bin.url),
        Some(json!({"model": "auto", "stream": false, "messages": [{"role": "user", "content": "Write a Go function that reverses a slice"}]}).to_string().into()),
    )
    .unwrap();
    let answer = http.send_buffered(request, Duration::from_secs(10)).await.unwrap();
    let id = answer.status;
    assert_eq!(id, 200);
    bin.signal("TERM").await;
    let mut bin = bin;
    bin.child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let logs = bin.stderr();
    let handled: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request handled" && v["span"]["route"] == "/api/chat")
        .collect();
    assert_eq!(handled.len(), 1, "{logs}");
    let span = &handled[0]["span"];
    assert!(span["request_id"].as_str().unwrap().starts_with("sy-"), "{span}");
    assert_eq!(span["category"], "coding");
    assert!(span["model"].is_string() && span["decision_us"].is_number() && span["upstream_ms"].is_number(), "{span}");
    sim.shutdown().await;
}
