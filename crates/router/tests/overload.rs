//! Overload: bounded queues per model answer 503 with Retry-After instead of waiting without bound, rate limits
//! answer 429, and a soak of thousands of requests at high concurrency loses none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::start_with;
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchyard_sim::SimOptions;

#[tokio::test]
async fn a_full_model_queue_is_a_503_with_retry_after_not_a_wait() {
    let h = Arc::new(
        start_with(SimOptions { time_scale: 1.0, ..SimOptions::default() }, |c| {
            c.limits.queue_per_model = 4;
        })
        .await,
    );
    let a = h.post("/admin/vram/load", json!({"model": "llama3.2:3b"})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // Each request takes a while upstream (one at a time in the simulated Ollama).
    h.fault(json!({"model": "llama3.2:3b", "latency_ms": 400})).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let a = h
                .post(
                    "/api/generate",
                    json!({"model": "llama3.2:3b", "prompt": "hi", "stream": false, "options": {"num_predict": 1}}),
                )
                .await;
            (a.status, a.header("retry-after").map(str::to_string), started.elapsed(), a.text())
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, retry_after, elapsed, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert!(retry_after.is_some(), "503 without Retry-After");
                assert!(body.contains("limits.queue_per_model"), "{body}");
                assert!(elapsed < Duration::from_millis(400), "refused at once, not after waiting: {elapsed:?}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok + refused, 12);
    assert!(ok >= 4 && refused >= 1, "ok {ok}, refused {refused}");
    Arc::try_unwrap(h).ok().unwrap().stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_ip_and_per_key() {
    // Limits key on the peer address, which the real binary sees.
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = common::Binary::start(
        &sim.url(),
        dir.path(),
        &[],
        &[
            ("SWITCHYARD_LIMITS_PER_IP_RPS", "0.5"),
            ("SWITCHYARD_LIMITS_PER_KEY_RPS", "0.5"),
            ("SWITCHYARD_LIMITS_BURST", "2"),
        ],
    )
    .await
    .unwrap();
    let http = switchyard_core::http::HttpClient::default();
    let call = |key: Option<&'static str>| {
        let http = http.clone();
        let url = format!("{}/api/generate", bin.url);
        async move {
            let mut req = switchyard_core::http::build_request(
                http::Method::POST,
                &url,
                Some(json!({"model": "llama3.2:3b", "prompt": "hi", "stream": false}).to_string().into()),
            )
            .unwrap();
            if let Some(k) = key {
                req.headers_mut().insert("authorization", format!("Bearer {k}").parse().unwrap());
            }
            http.send_buffered(req, Duration::from_secs(10)).await.unwrap()
        }
    };
    assert_eq!(call(None).await.status, 200);
    assert_eq!(call(None).await.status, 200);
    let limited = call(None).await;
    assert_eq!(limited.status, 429);
    assert!(limited.content_type.is_some());
    let body: serde_json::Value = serde_json::from_slice(&limited.body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("rate limit"));
    sim.shutdown().await;
}

#[tokio::test]
async fn per_key_limits_are_separate_from_the_per_ip_one() {
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = common::Binary::start(
        &sim.url(),
        dir.path(),
        &[],
        &[
            ("SWITCHYARD_LIMITS_PER_KEY_RPS", "0.5"),
            ("SWITCHYARD_LIMITS_BURST", "1"),
            ("SWITCHYARD_SERVER_CLIENT_KEYS", "key-a,key-b"),
        ],
    )
    .await
    .unwrap();
    let http = switchyard_core::http::HttpClient::default();
    let call = |key: &'static str| {
        let http = http.clone();
        let url = format!("{}/v1/chat/completions", bin.url);
        async move {
            let mut req = switchyard_core::http::build_request(
                http::Method::POST,
                &url,
                Some(
                    json!({"model": "llama3.2:3b", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
                        .to_string()
                        .into(),
                ),
            )
            .unwrap();
            req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
            http.send_buffered(req, Duration::from_secs(10)).await.unwrap()
        }
    };
    assert_eq!(call("key-a").await.status, 200);
    let limited = call("key-a").await;
    assert_eq!(limited.status, 429);
    let body: serde_json::Value = serde_json::from_slice(&limited.body).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(call("key-b").await.status, 200, "another key has its own bucket");
    let metrics = http.get_json::<serde_json::Value>(&format!("{}/health", bin.url), Duration::from_secs(5)).await;
    assert!(metrics.is_ok(), "health is not rate limited");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_soak_of_thousands_of_requests_loses_none() {
    let h = Arc::new(start_with(SimOptions::default(), |c| c.limits.queue_per_model = 512).await);
    let total = 3000;
    let concurrency = 128;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let h = Arc::clone(&h);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (path, body) = match i % 4 {
                    0 => ("/api/chat", json!({"model": "auto", "stream": i.is_multiple_of(8), "messages": [{"role": "user", "content": format!("Question {i}: what is 2+{i}?")}]})),
                    1 => ("/api/generate", json!({"model": "llama3.2:3b", "prompt": format!("p{i}"), "stream": true, "options": {"num_predict": 4}})),
                    2 => ("/v1/chat/completions", json!({"model": "auto:fast", "stream": i.is_multiple_of(3), "max_tokens": 4, "messages": [{"role": "user", "content": format!("hello {i}")}]})),
                    _ => ("/api/embed", json!({"model": "nomic-embed-text", "input": format!("text {i}")})),
                };
                let a = h.post(path, body).await;
                let complete = match a.status.as_u16() {
                    200 if path == "/api/generate" || (path == "/api/chat" && i.is_multiple_of(8)) => a.lines().last().is_some_and(|l| l["done"] == true),
                    200 if path == "/v1/chat/completions" && i.is_multiple_of(3) => a.events().last().is_some_and(|e| e == "[DONE]"),
                    200 => serde_json::from_slice::<serde_json::Value>(&a.body).is_ok(),
                    429 | 503 => a.header("retry-after").is_some(),
                    _ => false,
                };
                outcomes.push((a.status.as_u16(), complete));
            }
            outcomes
        }));
    }
    let mut by_status = std::collections::BTreeMap::new();
    let mut incomplete = 0;
    for w in workers {
        for (status, complete) in w.await.unwrap() {
            *by_status.entry(status).or_insert(0) += 1;
            incomplete += usize::from(!complete);
        }
    }
    let answered: usize = by_status.values().sum();
    println!("soak: {answered} requests at concurrency {concurrency}: {by_status:?}, incomplete {incomplete}");
    assert_eq!(answered, total, "every request got an answer");
    assert_eq!(incomplete, 0, "every answer was complete (or a 429/503 with Retry-After)");
    assert!(by_status.get(&200).copied().unwrap_or(0) >= total * 9 / 10, "{by_status:?}");
    Arc::try_unwrap(h).ok().unwrap().stop().await;
}
