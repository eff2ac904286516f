//! The router's Ollama and OpenAI surfaces in front of the simulator: shapes, streaming, headers and errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::start;
use serde_json::json;

#[tokio::test]
async fn native_chat_routes_auto_and_streams_ndjson() {
    let h = start().await;
    let a = h
        .post("/api/chat", json!({"model": "auto", "messages": [{"role": "user", "content": "Write a Rust function that reverses a string"}]}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/x-ndjson"));
    let model = a.header("x-switchyard-model").unwrap().to_string();
    assert_eq!(a.header("x-switchyard-category"), Some("coding"));
    assert!(a.header("x-request-id").is_some());
    let lines = a.lines();
    assert!(lines.len() > 2, "streamed in several chunks");
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["model"], model.as_str(), "the response names the model actually used");
    assert!(last["eval_count"].as_u64().unwrap() > 0);
    h.stop().await;
}

#[tokio::test]
async fn native_non_streaming_and_explicit_models_echo_the_client_name() {
    let h = start().await;
    let a = h.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": "Say hello", "stream": false})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["model"], "llama3.2:3b");
    assert_eq!(v["done"], true);
    assert_eq!(a.header("x-switchyard-model"), Some("llama3.2:3b"));
    h.stop().await;
}

#[tokio::test]
async fn openai_chat_streams_sse_with_done() {
    let h = start().await;
    let a = h
        .post(
            "/v1/chat/completions",
            json!({"model": "auto", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "What is the capital of Peru?"}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let events = a.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let first: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let usage: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    h.stop().await;
}

#[tokio::test]
async fn errors_come_in_each_surfaces_shape() {
    let h = start().await;
    let a = h.post("/api/chat", json!({"model": "nope:1b", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json(), json!({"error": "model 'nope:1b' not found"}));
    let a = h
        .post("/v1/chat/completions", json!({"model": "nope:1b", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    assert_eq!(a.json()["error"]["param"], "model");
    let a = h.post_raw("/api/chat", b"{not json", &[]).await;
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().contains("invalid JSON"));
    h.stop().await;
}
