//! Model management through the router (`/api/pull`, `/api/push`, `/api/create`, `/api/copy`, `/api/delete`):
//! forwarded to Ollama (the simulator), guarded by the admin key, and seen by routing at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::start_with;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_sim::SimOptions;

fn names(tags: &Value) -> Vec<String> {
    tags["models"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str().map(str::to_string)).collect()
}

async fn auto_candidates(h: &common::Harness) -> Vec<String> {
    let explain = h.post("/admin/explain", json!({"prompt": "Write a haiku about trains."})).await.json();
    explain["scoring"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["model"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn delete_pull_copy_and_create_go_through_and_routing_sees_them_at_once() {
    let h = start_with(SimOptions::default(), |_| {}).await;
    let body = |v: Value| Some(bytes::Bytes::from(v.to_string()));

    // Delete: gone from the tags and from auto's candidates, with no wait for the periodic refresh.
    let a = h.call(Method::DELETE, &h.url("/api/delete"), body(json!({"model": "llama3.1:8b"})), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(!names(&h.get("/api/tags").await.json()).contains(&"llama3.1:8b".to_string()));
    assert!(!auto_candidates(&h).await.contains(&"llama3.1:8b".to_string()));
    let a = h.call(Method::DELETE, &h.url("/api/delete"), body(json!({"model": "llama3.1:8b"})), &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "Ollama's answer passes through: {}", a.text());

    // Pull, streamed: progress lines as Ollama sends them, ending in success; routable by the next request.
    let a = h.post("/api/pull", json!({"model": "llama3.1:8b"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let lines = a.lines();
    assert_eq!(lines.first().unwrap()["status"], "pulling manifest");
    assert!(lines.iter().any(|l| l["total"].as_u64().is_some() && l["completed"].as_u64().is_some()), "{lines:?}");
    assert_eq!(lines.last().unwrap()["status"], "success");
    let ready = common::eventually(std::time::Duration::from_secs(10), || async {
        auto_candidates(&h).await.contains(&"llama3.1:8b".to_string())
    })
    .await;
    assert!(ready, "the pulled model is a candidate again");
    let a = h
        .post(
            "/api/chat",
            json!({"model": "llama3.1:8b", "stream": false,
        "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // A pull of a model the registry does not have is Ollama's error.
    let a = h.post("/api/pull", json!({"model": "no-such-model:1b", "stream": false})).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("file does not exist"));

    // Copy and create (not streamed): in the tags when the call returns.
    let a = h.post("/api/copy", json!({"source": "llama3.2:3b", "destination": "my-assistant:latest"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = h.post("/api/create", json!({"model": "coder-x", "from": "qwen2.5-coder:7b", "stream": false})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["status"], "success");
    let tags = names(&h.get("/api/tags").await.json());
    assert!(
        tags.contains(&"my-assistant:latest".to_string()) && tags.contains(&"coder-x:latest".to_string()),
        "{tags:?}"
    );
    let candidates = auto_candidates(&h).await;
    assert!(candidates.contains(&"coder-x:latest".to_string()), "{candidates:?}");

    // Push streams its progress and changes nothing here.
    let a = h.post("/api/push", json!({"model": "coder-x"})).await;
    assert_eq!(a.lines().last().unwrap()["status"], "success", "{}", a.text());
    // Not a JSON object: the router's own 400 in Ollama's shape.
    let a = h.post_raw("/api/pull", b"[1]", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.json()["error"].is_string());
    h.stop().await;
}

#[tokio::test]
async fn managing_models_needs_the_admin_key_when_one_is_set() {
    let h = start_with(SimOptions::default(), |c| c.server.admin_key = "admin-secret".into()).await;
    let body = json!({"model": "llama3.1:8b"}).to_string();
    let a = h.call(Method::DELETE, &h.url("/api/delete"), Some(body.clone().into()), &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("admin key"));
    let a = h.post_raw("/api/pull", body.as_bytes(), &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Inference needs no key here; management does, and works with it.
    let a = h
        .post(
            "/api/chat",
            json!({"model": "llama3.2:3b", "stream": false,
        "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = h
        .call(Method::DELETE, &h.url("/api/delete"), Some(body.into()), &[("authorization", "Bearer admin-secret")])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    h.stop().await;
}

/// `ollama create` from a local GGUF file: `HEAD /api/blobs/{digest}` says whether Ollama has the file, `POST`
/// uploads it. The upload streams to Ollama whatever its size (here three times `server.max_body`, which bounds JSON
/// bodies); Ollama checks the digest and its answer passes through. With an admin key set, blobs need it too.
#[tokio::test]
async fn blobs_are_checked_and_uploaded_through_the_router() {
    use sha2::Digest as _;
    let h = start_with(SimOptions::default(), |c| {
        c.server.max_body = switchyard_core::config::ByteSize::mib(1);
        c.server.admin_key = "admin-secret".into();
    })
    .await;
    let admin = [("authorization", "Bearer admin-secret")];
    let blob: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let hex: String = sha2::Sha256::digest(&blob).iter().map(|b| format!("{b:02x}")).collect();
    let path = format!("/api/blobs/sha256:{hex}");

    let a = h.call(Method::HEAD, &h.url(&path), None, &admin).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "not uploaded yet");
    let a = h.call(Method::POST, &h.url(&path), Some(bytes::Bytes::from(blob.clone())), &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "blobs change the machine: {}", a.text());
    let a = h.call(Method::POST, &h.url(&path), Some(bytes::Bytes::from(blob.clone())), &admin).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let a = h.call(Method::HEAD, &h.url(&path), None, &admin).await;
    assert_eq!(a.status, StatusCode::OK);

    // Another file under that digest: Ollama's own 400.
    let wrong = bytes::Bytes::from(blob[1..].to_vec());
    let other = format!("/api/blobs/sha256-{}", "0".repeat(64));
    let a = h.call(Method::POST, &h.url(&other), Some(wrong), &admin).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("digest mismatch"), "{}", a.text());
    // Not a digest: the router's own 400, in Ollama's shape.
    let a = h.call(Method::HEAD, &h.url("/api/blobs/abc"), None, &admin).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = h.call(Method::POST, &h.url("/api/blobs/md5:abc"), Some(bytes::Bytes::from_static(b"x")), &admin).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.json()["error"].as_str().unwrap().contains("sha256:"), "{}", a.text());
    h.stop().await;
}

/// An upload that stops arriving gets a 400 that says so once `server.body_timeout_secs` passes with no bytes, and
/// its connection back (the timer is the server's own on a real socket; the socket is read until it closes).
#[tokio::test]
async fn a_stalled_blob_upload_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = start_with(SimOptions::default(), |c| c.server.body_timeout_secs = 1).await;
    let addr = h.router.url().trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/blobs/sha256:{} HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n0123456789",
        "a".repeat(64)
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(15), stalled.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the router kept the stalled upload open; read so far: {got:?}");
    let answer = String::from_utf8_lossy(&got).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("server.body_timeout_secs"), "{answer}");
    assert_eq!(h.get("/health").await.status, 200);
    h.stop().await;
}
