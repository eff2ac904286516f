//! Helpers shared by the integration tests: a simulator driven in-process through `oneshot`, JSON in and out,
//! streamed bodies read frame by frame, and polling with a deadline instead of sleeping.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;
use switchyard_sim::{SimOptions, SimState, app};
use tower::ServiceExt;

pub const GIB: u64 = 1024 * 1024 * 1024;

/// A simulator and its router.
pub struct Sim {
    /// The simulator's state (counters, queue length, shutdown).
    pub state: SimState,
    /// Its router, driven with `oneshot`.
    pub app: Router,
}

impl Sim {
    pub fn new(opts: SimOptions) -> Sim {
        let state = SimState::new(&opts).expect("valid options");
        Sim { app: app(state.clone()), state }
    }

    pub fn default() -> Sim {
        Sim::new(SimOptions::default())
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<String>) -> Response<Body> {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        self.app.clone().oneshot(req).await.unwrap()
    }

    /// Sends and reads the whole body.
    pub async fn call(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.send(method, path, body).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("complete body").to_bytes();
        (status, headers, bytes)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, bytes) = self.call(Method::GET, path, None).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, bytes) = self.call(Method::POST, path, Some(body.to_string())).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let (status, _, bytes) = self.call(Method::POST, path, Some(body.to_string())).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Names of the models in `/api/ps`, in its order.
    pub async fn ps_names(&self) -> Vec<String> {
        let (_, ps) = self.get("/api/ps").await;
        ps["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect()
    }

    /// Loads a model with a keep_alive (`Value::Null` for none).
    pub async fn load(&self, model: &str, keep_alive: Value) -> Value {
        let mut body = serde_json::json!({"model": model, "stream": false});
        if !keep_alive.is_null() {
            body["keep_alive"] = keep_alive;
        }
        let (status, v) = self.post("/api/generate", body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["done_reason"], "load");
        v
    }

    /// Starts a streamed generation and returns the response without reading it: the model stays busy until the
    /// body is dropped or read to the end.
    pub async fn hold(&self, model: &str) -> Response<Body> {
        let body = serde_json::json!({"model": model, "prompt": "hold this model busy"});
        let resp = self.send(Method::POST, "/api/generate", Some(body.to_string())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp
    }

    pub async fn counters(&self) -> Value {
        self.get("/sim/gpu").await.1["counters"].clone()
    }

    /// Polls `cond` until it holds or the deadline passes.
    pub async fn wait_for<F, Fut>(&self, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !cond().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads a streamed body frame by frame until it ends or breaks: the data frames, and whether it ended cleanly.
pub async fn frames(resp: Response<Body>) -> (Vec<Bytes>, bool) {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return (out, true),
            Some(Err(_)) => return (out, false),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.push(data);
                }
            }
        }
    }
}

/// The NDJSON lines of a body.
pub fn ndjson(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "NDJSON must end with a newline");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))).collect()
}

/// The `data:` payloads of an SSE body.
pub fn sse(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.ends_with("\n\n"), "SSE events end with a blank line");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data line: {e:?}")).to_string())
        .collect()
}

/// A fleet file with one model whose load takes `load_seconds`.
pub fn slow_fleet(load_seconds: f64) -> String {
    format!(
        r#"
        [[models]]
        name = "slow:1b"
        family = "llama"
        architecture = "llama"
        parameter_size = "1.2B"
        quantization = "Q4_K_M"
        disk_bytes = 800000000
        vram_bytes = 1200000000
        vram_context = 4096
        kv_bytes_per_token = 32768
        block_count = 16
        head_count = 32
        head_count_kv = 8
        embedding_length = 2048
        context_length = 8192
        load_seconds = {load_seconds}
        prefill_tps = 5000
        decode_tps = 200
        capabilities = ["completion"]
        "#
    )
}
