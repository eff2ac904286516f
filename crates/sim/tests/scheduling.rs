//! Ollama's scheduling, reproduced: eviction by keep_alive, max loaded models, load/pin/unload, expiry, partial
//! offload, multi-GPU placement, num_ctx reloads, the queue limit, the time scale, every injected fault and OOM
//! with foreign memory use. In-process; time scale 0 unless time itself is under test; waits poll with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::{GIB, Sim, frames, ndjson, slow_fleet, sse};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_sim::{Fleet, SimOptions};

fn year(expires_at: &Value) -> i32 {
    expires_at.as_str().unwrap()[..4].parse().unwrap()
}

#[tokio::test]
async fn eviction_takes_the_shortest_keep_alive_not_the_least_recently_used() {
    let sim = Sim::new(SimOptions { max_loaded_models: Some(2), ..Default::default() });
    sim.load("llama3.2:3b", json!("10m")).await;
    sim.load("llama3.1:8b", json!("1m")).await;
    // LRU would evict llama3.2:3b (used first); Ollama evicts the shortest keep_alive.
    sim.load("qwen2.5-coder:7b", Value::Null).await;
    let mut names = sim.ps_names().await;
    names.sort();
    assert_eq!(names, vec!["llama3.2:3b", "qwen2.5-coder:7b"]);
    assert_eq!(sim.counters().await["evictions"], 1);
}

#[tokio::test]
async fn a_pinned_idle_model_is_evicted_before_a_busy_five_minute_one() {
    let sim = Sim::new(SimOptions { max_loaded_models: Some(2), ..Default::default() });
    sim.load("llama3.2:3b", json!(-1)).await;
    sim.load("llama3.1:8b", json!("5m")).await;
    let busy = sim.hold("llama3.1:8b").await;
    sim.load("qwen2.5-coder:7b", Value::Null).await;
    let mut names = sim.ps_names().await;
    names.sort();
    assert_eq!(names, vec!["llama3.1:8b", "qwen2.5-coder:7b"], "the pin did not protect llama3.2:3b");
    drop(busy);
}

#[tokio::test]
async fn when_none_is_idle_the_shortest_is_waited_for() {
    let sim = Sim::new(SimOptions { max_loaded_models: Some(1), ..Default::default() });
    sim.load("llama3.2:3b", Value::Null).await;
    let busy = sim.hold("llama3.2:3b").await;
    let app = sim.app.clone();
    let waiting = tokio::spawn(async move {
        let body = json!({"model": "llama3.1:8b", "prompt": "x", "stream": false}).to_string();
        let req = axum::http::Request::post("/api/generate").body(axum::body::Body::from(body)).unwrap();
        tower::ServiceExt::oneshot(app, req).await.unwrap().status()
    });
    sim.wait_for("the request to reach the scheduler", || async { sim.counters().await["requests"] == 3 }).await;
    assert!(!waiting.is_finished());
    assert_eq!(sim.ps_names().await, vec!["llama3.2:3b"]);
    let (_, complete) = frames(busy).await;
    assert!(complete);
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    assert_eq!(sim.ps_names().await, vec!["llama3.1:8b"]);
}

#[tokio::test]
async fn max_loaded_models_defaults_to_three_per_gpu() {
    let sim = Sim::new(SimOptions { gpus: vec![80 * GIB], ..Default::default() });
    for model in ["llama3.2:3b", "llama3.1:8b", "qwen2.5-coder:7b", "llava:7b"] {
        sim.load(model, Value::Null).await;
    }
    assert_eq!(sim.ps_names().await.len(), 3);
    assert_eq!(sim.counters().await["evictions"], 1);
}

#[tokio::test]
async fn memory_pressure_evicts_and_eighty_percent_of_free_must_fit() {
    // 24 GiB at the default 32768 context: 3b (6.2 GB) + 8b (9.8 GB) leave 9.8 GB free; 80% of it (7.8 GB) does not
    // take deepseek-r1:14b (16.1 GB), so models are evicted until it fits.
    let sim = Sim::default();
    sim.load("llama3.2:3b", Value::Null).await;
    sim.load("llama3.1:8b", Value::Null).await;
    sim.load("deepseek-r1:14b", Value::Null).await;
    let names = sim.ps_names().await;
    assert!(names.contains(&"deepseek-r1:14b".to_string()));
    assert!(names.len() < 3);
    let (_, gpu) = sim.get("/sim/gpu").await;
    assert!(gpu["gpus"][0]["used_bytes"].as_u64().unwrap() <= 24 * GIB);
}

#[tokio::test]
async fn load_pin_and_unload_with_keep_alive() {
    let sim = Sim::default();
    let v = sim.load("llama3.2:3b", json!(-1)).await;
    assert_eq!(v["response"], "");
    assert_eq!(v["done"], true);
    let (_, ps) = sim.get("/api/ps").await;
    let m = &ps["models"][0];
    assert_eq!(m["name"], "llama3.2:3b");
    assert_eq!(m["model"], "llama3.2:3b");
    assert!(year(&m["expires_at"]) > 2300, "pinned: {}", m["expires_at"]);
    assert_eq!(m["size"], m["size_vram"]);
    assert_eq!(m["context_length"], 32768);
    assert_eq!(m["details"]["format"], "gguf");
    assert_eq!(m["digest"].as_str().unwrap().len(), 64);

    // A request without keep_alive leaves the pin in place; one with keep_alive replaces it.
    sim.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": "x", "stream": false})).await;
    assert!(year(&sim.get("/api/ps").await.1["models"][0]["expires_at"]) > 2300);
    sim.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": "x", "stream": false, "keep_alive": "1h"}))
        .await;
    assert!(year(&sim.get("/api/ps").await.1["models"][0]["expires_at"]) < 2300);

    let (status, v) = sim.post("/api/generate", json!({"model": "llama3.2:3b", "keep_alive": 0})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["done_reason"], "unload");
    sim.wait_for("the model to unload", || async { sim.ps_names().await.is_empty() }).await;
    assert_eq!(sim.counters().await["unloads"], 1);

    // Chat and embed forms of load and unload.
    let (_, v) = sim.post("/api/chat", json!({"model": "llama3.1:8b", "messages": []})).await;
    assert_eq!((v["done_reason"].as_str(), v["message"]["role"].as_str()), (Some("load"), Some("assistant")));
    let (_, v) = sim.post("/api/chat", json!({"model": "llama3.1:8b", "messages": [], "keep_alive": 0})).await;
    assert_eq!(v["done_reason"], "unload");
    sim.post("/api/embed", json!({"model": "nomic-embed-text", "keep_alive": "-1m"})).await;
    sim.wait_for("only the embedding model", || async { sim.ps_names().await == vec!["nomic-embed-text:latest"] })
        .await;
    sim.post("/api/embed", json!({"model": "nomic-embed-text", "keep_alive": 0})).await;
    sim.wait_for("nothing loaded", || async { sim.ps_names().await.is_empty() }).await;
}

#[tokio::test]
async fn ps_lists_the_latest_expiry_first() {
    let sim = Sim::default();
    sim.load("llama3.2:3b", json!("1m")).await;
    sim.load("llama3.1:8b", json!(-1)).await;
    sim.load("qwen2.5-coder:7b", json!("30m")).await;
    assert_eq!(sim.ps_names().await, vec!["llama3.1:8b", "qwen2.5-coder:7b", "llama3.2:3b"]);
}

#[tokio::test]
async fn a_short_keep_alive_expires() {
    let sim = Sim::default();
    sim.load("llama3.2:3b", json!("200ms")).await;
    sim.load("llama3.1:8b", Value::Null).await;
    sim.wait_for("llama3.2:3b to expire", || async { sim.ps_names().await == vec!["llama3.1:8b"] }).await;
    let counters = sim.counters().await;
    assert_eq!((counters["unloads"].as_u64(), counters["evictions"].as_u64()), (Some(1), Some(0)));
}

#[tokio::test]
async fn a_big_model_alone_is_partly_offloaded_and_decodes_slower() {
    let tps = |v: &Value| v["eval_count"].as_f64().unwrap() / (v["eval_duration"].as_f64().unwrap() / 1e9);
    let body = json!({"model": "llama3.3:70b", "prompt": "Explain.", "stream": false,
        "options": {"num_ctx": 4096, "num_predict": 20}});

    let small = Sim::default();
    small.load("llama3.2:3b", Value::Null).await;
    let (status, v) = small.post("/api/generate", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, ps) = small.get("/api/ps").await;
    assert_eq!(ps["models"].as_array().unwrap().len(), 1, "alone: the other model was evicted");
    let m = &ps["models"][0];
    let (size, size_vram) = (m["size"].as_u64().unwrap(), m["size_vram"].as_u64().unwrap());
    assert!(size_vram < size && size_vram > 0 && size_vram <= 24 * GIB);
    let offloaded_tps = tps(&v);
    assert!((offloaded_tps - 1.7).abs() < 0.01, "{offloaded_tps}");

    let big = Sim::new(SimOptions { gpus: vec![48_000_000_000], ..Default::default() });
    let (_, v) = big.post("/api/generate", body).await;
    let (_, ps) = big.get("/api/ps").await;
    assert_eq!(ps["models"][0]["size"], ps["models"][0]["size_vram"], "fits a 48 GB GPU at 4096");
    assert!((tps(&v) - 17.0).abs() < 0.1);
    assert!(tps(&v) > 9.0 * offloaded_tps);
}

#[tokio::test]
async fn models_go_to_the_gpu_with_most_free_memory_and_split_only_when_needed() {
    let sim = Sim::new(SimOptions { gpus: vec![24 * GIB, 24 * GIB], ..Default::default() });
    sim.load("llama3.1:8b", Value::Null).await;
    sim.load("qwen2.5-coder:7b", Value::Null).await;
    let (_, gpu) = sim.get("/sim/gpu").await;
    let gpu_of =
        |name: &str| gpu["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["gpu"].clone();
    assert_ne!(gpu_of("llama3.1:8b"), gpu_of("qwen2.5-coder:7b"));
    assert_eq!(gpu["gpus"].as_array().unwrap().len(), 2);

    let sim = Sim::new(SimOptions { gpus: vec![24 * GIB, 24 * GIB], ..Default::default() });
    sim.post("/api/generate", json!({"model": "llama3.3:70b", "options": {"num_ctx": 4096}})).await;
    let (_, gpu) = sim.get("/sim/gpu").await;
    let procs = gpu["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "split across both GPUs: {procs:?}");
    assert_ne!(procs[0]["gpu_index"], procs[1]["gpu_index"]);
    let m = &gpu["models"][0];
    assert_eq!(m["size"], m["size_vram"], "split, not offloaded");
    assert_eq!(sim.get("/api/ps").await.1["models"][0]["context_length"], 4096);
}

#[tokio::test]
async fn a_different_num_ctx_reloads_the_model() {
    let sim = Sim::default();
    let ask = |ctx: Option<u64>| {
        let mut b = json!({"model": "llama3.2:3b", "prompt": "x", "stream": false});
        if let Some(ctx) = ctx {
            b["options"] = json!({"num_ctx": ctx});
        }
        b
    };
    sim.post("/api/generate", ask(None)).await;
    sim.post("/api/generate", ask(None)).await;
    assert_eq!(sim.counters().await["loads"], 1);
    sim.post("/api/generate", ask(Some(8192))).await;
    sim.post("/api/generate", ask(None)).await;
    let counters = sim.counters().await;
    assert_eq!((counters["loads"].as_u64(), counters["unloads"].as_u64()), (Some(3), Some(2)));
    assert_eq!(sim.get("/api/ps").await.1["models"][0]["context_length"], 32768);
    // Contexts beyond the trained length are capped.
    sim.post(
        "/api/generate",
        json!({"model": "llava:7b", "prompt": "x", "stream": false, "options": {"num_ctx": 100000}}),
    )
    .await;
    let (_, ps) = sim.get("/api/ps").await;
    let llava = ps["models"].as_array().unwrap().iter().find(|m| m["name"] == "llava:7b").unwrap().clone();
    assert_eq!(llava["context_length"], 4096);
}

#[tokio::test]
async fn num_parallel_limits_concurrent_requests_per_model() {
    let sim = Sim::default();
    let first = sim.hold("llama3.2:3b").await;
    let app = sim.app.clone();
    let mut second = tokio::spawn(async move {
        let body = json!({"model": "llama3.2:3b", "prompt": "x", "stream": false}).to_string();
        let req = axum::http::Request::post("/api/generate").body(axum::body::Body::from(body)).unwrap();
        tower::ServiceExt::oneshot(app, req).await.unwrap().status()
    });
    // The second request cannot get the runner's only slot while the first holds it.
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut second).await.is_err());
    drop(first);
    assert_eq!(second.await.unwrap(), StatusCode::OK);

    let sim = Sim::new(SimOptions { num_parallel: 2, ..Default::default() });
    let a = sim.hold("llama3.2:3b").await;
    let b = sim.hold("llama3.2:3b").await;
    drop((a, b));
}

#[tokio::test]
async fn a_full_queue_answers_503() {
    let fleet = Fleet::from_toml(&slow_fleet(1000.0)).unwrap();
    let sim = Sim::new(SimOptions { fleet, time_scale: 1.0, max_queue: 2, ..Default::default() });
    let spawn_request = |prompt: &'static str| {
        let app = sim.app.clone();
        tokio::spawn(async move {
            let body = json!({"model": "slow:1b", "prompt": prompt, "stream": false}).to_string();
            let req = axum::http::Request::post("/api/generate").body(axum::body::Body::from(body)).unwrap();
            tower::ServiceExt::oneshot(app, req).await.unwrap().status()
        })
    };
    // The first request starts a very slow load; the queue task is busy with it.
    let loading = spawn_request("first");
    sim.wait_for("the load to start", || async { sim.ps_names().await == vec!["slow:1b"] }).await;
    let queued = [spawn_request("second"), spawn_request("third")];
    sim.wait_for("two queued requests", || async { sim.state.pending_requests() == 2 }).await;

    let (status, v) = sim.post("/api/generate", json!({"model": "slow:1b", "prompt": "fourth"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v, json!({"error": "server busy, please try again.  maximum pending requests exceeded"}));
    let (status, v) = sim
        .post("/v1/chat/completions", json!({"model": "slow:1b", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!(sim.counters().await["rejected_queue_full"], 2);

    sim.state.shutdown().await;
    assert_eq!(loading.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    for q in queued {
        assert_eq!(q.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[tokio::test]
async fn at_a_positive_time_scale_responses_report_simulated_time() {
    let fleet = Fleet::from_toml(&slow_fleet(2.0)).unwrap();
    let sim = Sim::new(SimOptions { fleet, time_scale: 0.01, ..Default::default() });
    let (_, v) = sim
        .post(
            "/api/generate",
            json!({"model": "slow:1b", "prompt": "x", "stream": false, "options": {"num_predict": 4}}),
        )
        .await;
    // 2 s of simulated load took about 20 ms; the response reports the 2 s.
    assert!(v["load_duration"].as_u64().unwrap() >= 2_000_000_000);
    assert_eq!(v["eval_duration"], 20_000_000, "4 tokens at 200 tok/s, simulated");
    // keep_alive is scaled too: 10 s simulated expires after about 100 ms.
    sim.post("/api/generate", json!({"model": "slow:1b", "keep_alive": "10s"})).await;
    sim.wait_for("scaled expiry", || async { sim.ps_names().await.is_empty() }).await;
}

#[tokio::test]
async fn injected_errors_latency_and_fail_times() {
    let sim = Sim::default();
    let (status, v) = sim
        .post(
            "/sim/faults",
            json!({"model": "llama3.2:3b", "error_status": 503, "error_message": "overloaded",
            "fail_times": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["faults"][0]["model"], "llama3.2:3b");
    let ask = json!({"model": "llama3.2:3b", "prompt": "x", "stream": false});
    let (status, v) = sim.post("/api/generate", ask.clone()).await;
    assert_eq!((status, v), (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "overloaded"})));
    let (status, _) = sim.post("/api/generate", ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "fail_times 1: the fault cleared itself");
    assert_eq!(sim.get("/sim/faults").await.1["faults"], json!([]));

    // A fleet-wide fault, on the OpenAI surface too.
    sim.post("/sim/faults", json!({"model": null, "error_status": 500})).await;
    let (status, v) = sim
        .post("/v1/chat/completions", json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!((status, v["error"]["type"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("api_error")));
    let (status, _, _) = sim.call(Method::DELETE, "/sim/faults", None).await;
    assert_eq!(status, StatusCode::OK);

    // Latency is simulated like everything else: at scale 0 it shows in total_duration only.
    sim.post("/sim/faults", json!({"model": "llama3.2:3b", "latency_ms": 5000})).await;
    let (_, v) = sim.post("/api/generate", ask).await;
    assert!(v["total_duration"].as_u64().unwrap() >= 5_000_000_000);

    let (status, _) = sim.post("/sim/faults", json!({"model": "llama3.2:3b", "error_status": 200})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = sim.post("/sim/faults", json!({"model": "ghost", "hang": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = sim.post("/sim/faults", json!({"explode": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_hung_request_never_answers() {
    let sim = Sim::default();
    sim.post("/sim/faults", json!({"model": "llama3.2:3b", "hang": true})).await;
    let request = sim.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": "x"}));
    assert!(tokio::time::timeout(Duration::from_millis(200), request).await.is_err(), "the client's timeout acts");
    sim.call(Method::DELETE, "/sim/faults", None).await;
    let (status, _) = sim.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": "x", "stream": false})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_stream_can_be_cut_after_n_chunks() {
    let sim = Sim::default();
    sim.post("/sim/faults", json!({"model": "llama3.2:3b", "disconnect_after_chunks": 3})).await;
    let body = json!({"model": "llama3.2:3b", "prompt": "x", "options": {"num_predict": 10}});
    let resp = sim.send(Method::POST, "/api/generate", Some(body.to_string())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (chunks, complete) = frames(resp).await;
    assert!(!complete, "the body breaks off");
    assert_eq!(chunks.len(), 3);
    let lines = ndjson(&chunks.concat());
    assert!(lines.iter().all(|l| l["done"] == false), "no final chunk");

    sim.post("/sim/faults", json!({"model": "llama3.2:3b", "disconnect_after_chunks": 2})).await;
    let body = json!({"model": "llama3.2:3b", "stream": true, "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}]});
    let resp = sim.send(Method::POST, "/v1/chat/completions", Some(body.to_string())).await;
    let (chunks, complete) = frames(resp).await;
    assert!(!complete);
    assert_eq!(chunks.len(), 2);
}

/// Where a test asks for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    Chat,
    ChatStream,
    Generate,
    GenerateStream,
    OpenAiChat,
    OpenAiChatStream,
    Completions,
}

const SURFACES: [Surface; 7] = [
    Surface::Chat,
    Surface::ChatStream,
    Surface::Generate,
    Surface::GenerateStream,
    Surface::OpenAiChat,
    Surface::OpenAiChatStream,
    Surface::Completions,
];

impl Surface {
    /// Whether requests here can carry tools and a format.
    fn is_chat(self) -> bool {
        matches!(self, Surface::Chat | Surface::ChatStream | Surface::OpenAiChat | Surface::OpenAiChatStream)
    }

    fn has_format(self) -> bool {
        self != Surface::Completions
    }
}

/// An answer as any surface gives it: the text, why it ended (`done_reason` or `finish_reason`), and the tool
/// calls' arguments as objects.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    content: String,
    done: String,
    tool_args: Vec<Value>,
}

/// Asks `model` for an answer to `prompt` on `surface`, with JSON format and tools where the surface takes them.
async fn reply(sim: &Sim, surface: Surface, model: &str, prompt: &str, format: bool, tools: &[Value]) -> Reply {
    let messages = json!([{"role": "user", "content": prompt}]);
    let stream = matches!(surface, Surface::ChatStream | Surface::GenerateStream | Surface::OpenAiChatStream);
    let (path, mut body) = match surface {
        Surface::Chat | Surface::ChatStream => ("/api/chat", json!({"model": model, "messages": messages})),
        Surface::Generate | Surface::GenerateStream => ("/api/generate", json!({"model": model, "prompt": prompt})),
        Surface::OpenAiChat | Surface::OpenAiChatStream => {
            ("/v1/chat/completions", json!({"model": model, "messages": messages}))
        }
        Surface::Completions => ("/v1/completions", json!({"model": model, "prompt": prompt})),
    };
    body["stream"] = json!(stream);
    if format && surface.has_format() {
        let openai = matches!(surface, Surface::OpenAiChat | Surface::OpenAiChatStream);
        body[if openai { "response_format" } else { "format" }] =
            if openai { json!({"type": "json_object"}) } else { json!("json") };
    }
    if !tools.is_empty() && surface.is_chat() {
        body["tools"] = json!(tools);
    }
    let (status, _, bytes) = sim.call(Method::POST, path, Some(body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{surface:?}: {}", String::from_utf8_lossy(&bytes));
    let native_args = |calls: &Value| -> Vec<Value> {
        calls.as_array().into_iter().flatten().map(|c| c["function"]["arguments"].clone()).collect()
    };
    let openai_args = |calls: &Value| -> Vec<Value> {
        let args = calls.as_array().into_iter().flatten().map(|c| c["function"]["arguments"].as_str().unwrap());
        args.map(|a| serde_json::from_str(a).unwrap()).collect()
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match surface {
        Surface::Chat | Surface::Generate => {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let content = if surface == Surface::Chat { &v["message"]["content"] } else { &v["response"] };
            Reply {
                content: text(content),
                done: text(&v["done_reason"]),
                tool_args: native_args(&v["message"]["tool_calls"]),
            }
        }
        Surface::ChatStream | Surface::GenerateStream => {
            let lines = ndjson(&bytes);
            let (last, chunks) = lines.split_last().unwrap();
            assert_eq!(last["done"], true);
            let key = |l: &Value| {
                if surface == Surface::ChatStream { text(&l["message"]["content"]) } else { text(&l["response"]) }
            };
            Reply {
                content: chunks.iter().map(key).collect(),
                done: text(&last["done_reason"]),
                tool_args: chunks.iter().flat_map(|l| native_args(&l["message"]["tool_calls"])).collect(),
            }
        }
        Surface::OpenAiChat | Surface::Completions => {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let choice = &v["choices"][0];
            let content = if surface == Surface::OpenAiChat { &choice["message"]["content"] } else { &choice["text"] };
            Reply {
                content: text(content),
                done: text(&choice["finish_reason"]),
                tool_args: openai_args(&choice["message"]["tool_calls"]),
            }
        }
        Surface::OpenAiChatStream => {
            let events = sse(&bytes);
            assert_eq!(events.last().unwrap(), "[DONE]");
            let chunks: Vec<Value> =
                events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
            let deltas = || chunks.iter().map(|c| &c["choices"][0]["delta"]);
            Reply {
                content: deltas().map(|d| text(&d["content"])).collect(),
                done: chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str()).unwrap().to_string(),
                tool_args: deltas().flat_map(|d| openai_args(&d["tool_calls"])).collect(),
            }
        }
    }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_current_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

/// Sets a lasting `bad_answer` fault for `model`.
async fn set_bad_answer(sim: &Sim, model: &str, kind: &str) {
    let (status, v) = sim.post("/sim/faults", json!({"model": model, "bad_answer": kind})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["faults"], json!([{"model": model, "bad_answer": kind}]));
}

#[tokio::test]
async fn bad_answers_spoil_every_surface_streamed_or_not() {
    let sim = Sim::default();
    let model = "llama3.1:8b";
    let story = "Tell me a story about a lighthouse.";
    let weather = "What's the weather like in Oslo?";
    let tools = [weather_tool()];
    let mut normal = Vec::new();
    for surface in SURFACES {
        let plain = reply(&sim, surface, model, story, false, &[]).await;
        assert!(plain.content.split_whitespace().count() > 5, "{surface:?}: {plain:?}");
        let call = reply(&sim, surface, model, weather, false, &tools).await;
        if surface.is_chat() {
            assert_eq!(call.tool_args, vec![json!({"city": "Oslo"})], "{surface:?}");
        }
        normal.push((surface, plain, call));
    }

    set_bad_answer(&sim, model, "empty").await;
    for (surface, _, _) in &normal {
        let r = reply(&sim, *surface, model, weather, false, &tools).await;
        assert_eq!(r, Reply { content: String::new(), done: "stop".into(), tool_args: vec![] }, "{surface:?}");
    }

    set_bad_answer(&sim, model, "truncated").await;
    for (surface, plain, _) in &normal {
        let r = reply(&sim, *surface, model, story, false, &[]).await;
        assert_eq!(r.done, "length", "{surface:?}");
        assert!(!r.content.is_empty() && r.content.split_whitespace().count() <= 3, "{surface:?}: {r:?}");
        assert!(plain.content.starts_with(&r.content) && plain.content.len() > r.content.len(), "{surface:?}");
        let r = reply(&sim, *surface, model, weather, false, &tools).await;
        assert!(r.tool_args.is_empty() && r.done == "length", "{surface:?}: a cut answer calls no tool");
    }

    set_bad_answer(&sim, model, "invalid_json").await;
    for (surface, plain, _) in &normal {
        let r = reply(&sim, *surface, model, story, true, &[]).await;
        if surface.has_format() {
            assert!(r.content.starts_with('{'), "{surface:?}: {r:?}");
            assert!(serde_json::from_str::<Value>(&r.content).is_err(), "{surface:?}: {r:?}");
            assert_eq!(r.done, "stop");
        } else {
            assert_eq!(&r, plain, "{surface:?}: without a format, a non-item prompt is answered normally");
        }
    }

    set_bad_answer(&sim, model, "refusal").await;
    for (surface, _, _) in &normal {
        let r = reply(&sim, *surface, model, weather, false, &tools).await;
        let want = Reply {
            content: "I'm sorry, but I can't help with that request.".into(),
            done: "stop".into(),
            tool_args: vec![],
        };
        assert_eq!(r, want, "{surface:?}");
    }

    set_bad_answer(&sim, model, "bad_code").await;
    for (surface, _, _) in &normal {
        let r = reply(&sim, *surface, model, "Write a function that sorts a list.", false, &[]).await;
        assert!(r.content.starts_with("```python\ndef solve(:\n"), "{surface:?}: {r:?}");
        assert!(r.content.contains("\n```\n") && r.content.ends_with('.'), "{surface:?}: {r:?}");
    }

    set_bad_answer(&sim, model, "bad_tool_args").await;
    for (surface, plain, call) in &normal {
        let r = reply(&sim, *surface, model, weather, false, &tools).await;
        if surface.is_chat() {
            assert_eq!(r.tool_args, vec![json!({})], "{surface:?}: required parameters missing");
            assert_eq!(r.done, call.done, "{surface:?}");
        } else {
            assert_eq!(&reply(&sim, *surface, model, story, false, &[]).await, plain, "{surface:?}: no tools");
        }
    }
    sim.call(Method::DELETE, "/sim/faults", None).await;

    // `wrong`, set fleet-wide: profiling items get their incorrect answer whatever the skill.
    let suites = switchyard_profiler::suite::builtin().unwrap();
    let items = suites[0].take(8);
    let strong = "llama3.3:70b";
    let mut right = 0;
    for item in items {
        right +=
            usize::from(reply(&sim, Surface::Chat, strong, &item.prompt, false, &[]).await.content == item.reference);
    }
    assert!(right > 0, "the strong model gets some right when answering normally");
    sim.post("/sim/faults", json!({"bad_answer": "wrong"})).await;
    for surface in SURFACES {
        for item in items {
            let r = reply(&sim, surface, strong, &item.prompt, false, &[]).await;
            assert_eq!(r.content, item.check.incorrect_answer(), "{surface:?} {}", item.id);
        }
        assert_eq!(
            &reply(&sim, surface, model, story, false, &[]).await,
            &normal.iter().find(|n| n.0 == surface).unwrap().1
        );
    }
}

#[tokio::test]
async fn a_bad_answer_applies_fail_times_to_generations_only() {
    let sim = Sim::default();
    let (status, v) = sim.post("/sim/faults", json!({"bad_answer": "refusal", "fail_times": 1})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["faults"], json!([{"model": null, "bad_answer": "refusal", "fail_times": 1}]));
    // A load, an unload and an embedding pass it by without using it.
    sim.load("llama3.2:3b", Value::Null).await;
    let (status, _) = sim.post("/api/embed", json!({"model": "nomic-embed-text", "input": "x"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = sim.post("/api/generate", json!({"model": "llama3.2:3b", "keep_alive": 0})).await;
    assert_eq!((status, v["done_reason"].as_str()), (StatusCode::OK, Some("unload")));
    assert_eq!(sim.get("/sim/faults").await.1["faults"][0]["fail_times"], 1);

    let ask = json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "Hello!"}], "stream": false});
    let (_, first) = sim.post("/api/chat", ask.clone()).await;
    assert_eq!(first["message"]["content"], "I'm sorry, but I can't help with that request.");
    let (_, second) = sim.post("/api/chat", ask).await;
    assert_ne!(second["message"]["content"], first["message"]["content"], "fail_times 1: applied once");
    assert_eq!(sim.get("/sim/faults").await.1["faults"], json!([]));

    for bad in [
        json!({"bad_answer": "rude"}),
        json!({"bad_answer": "empty", "hang": true}),
        json!({"bad_answer": "empty", "error_status": 500}),
        json!({"bad_answer": 3}),
    ] {
        let (status, v) = sim.post("/sim/faults", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    assert_eq!(sim.get("/sim/faults").await.1["faults"], json!([]));
}

#[tokio::test]
async fn oom_on_load_fails_the_load_and_counts() {
    let sim = Sim::default();
    sim.post("/sim/faults", json!({"model": "llama3.1:8b", "oom_on_load": true, "fail_times": 1})).await;
    let ask = json!({"model": "llama3.1:8b", "prompt": "x", "stream": false});
    let (status, v) = sim.post("/api/generate", ask.clone()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v, json!({"error": "llama runner process has terminated: cudaMalloc failed: out of memory"}));
    assert!(sim.ps_names().await.is_empty());
    assert_eq!(sim.counters().await["oom_events"], 1);
    let (status, _) = sim.post("/api/generate", ask).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn foreign_memory_use_causes_oom_because_ollama_does_not_count_it() {
    let sim = Sim::default();
    let (status, v) = sim.post("/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": "16GiB"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["foreign_vram"], json!([{"gpu": 0, "bytes": 16 * GIB}]));
    let (_, gpu) = sim.get("/sim/gpu").await;
    assert_eq!(gpu["gpus"][0]["foreign_bytes"], 16 * GIB);
    assert_eq!(gpu["gpus"][0]["used_bytes"], 16 * GIB);
    assert_eq!(gpu["processes"][0]["name"], "foreign");

    // 6.2 GB fits next to 16 GiB; a further 9.8 GB fits Ollama's belief (80% of 24 GiB - 6.2 GB) but not reality.
    sim.load("llama3.2:3b", Value::Null).await;
    let (status, v) = sim.post("/api/generate", json!({"model": "llama3.1:8b"})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(sim.counters().await["oom_events"], 1);
    assert_eq!(sim.ps_names().await, vec!["llama3.2:3b"]);

    sim.post("/sim/faults", json!({"foreign_vram": {"gpu": 0, "bytes": 0}})).await;
    sim.load("llama3.1:8b", Value::Null).await;
    let (status, _) = sim.post("/sim/faults", json!({"foreign_vram": {"gpu": 3, "bytes": 1}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn spawn_serves_over_tcp_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let handle = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    assert!(handle.url().starts_with("http://127.0.0.1:"));
    assert_ne!(handle.addr().port(), 0);
    let mut stream = tokio::net::TcpStream::connect(handle.addr()).await.unwrap();
    stream.write_all(b"GET /api/version HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("\"version\""));
    handle.shutdown().await;
}
