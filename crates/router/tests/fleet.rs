//! A fleet on loopback, all real processes: three simulated GPU boxes, each with its own `switchyard serve` (the
//! nodes), and two front routers (`ollama.enabled = false`, one `[[backends]] kind = "switchyard"` per node) on one
//! store (Postgres when the test command started one, else one SQLite file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Binary, eventually};
use http::Method;
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_core::http::{HttpClient, build_request};
use switchyard_sim::{SimHandle, SimOptions};

const GIB: u64 = 1024 * 1024 * 1024;

struct Call {
    status: u16,
    node: Option<String>,
    body: Value,
}

async fn call(http: &HttpClient, method: Method, url: &str, body: Option<Value>) -> Call {
    let request = build_request(method, url, body.map(|b| bytes::Bytes::from(b.to_string()))).unwrap();
    let response = http.send(request).await.unwrap();
    let status = response.status().as_u16();
    let node = response.headers().get("x-switchyard-node").map(|v| v.to_str().unwrap().to_string());
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    Call { status, node, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Name a prime number."}], "stream": false})
}

/// Loads `model` on a node directly (an empty-prompt request to the node itself, as a user on that box would).
async fn load_on(http: &HttpClient, node: &str, model: &str) {
    let r =
        call(http, Method::POST, &format!("{node}/api/generate"), Some(json!({"model": model, "prompt": ""}))).await;
    assert_eq!(r.status, 200, "load {model} on {node}: {}", r.body);
}

/// The node's `/admin/state` entry for `model`.
async fn state_of(http: &HttpClient, node: &str, model: &str) -> Value {
    let state = call(http, Method::GET, &format!("{node}/admin/state"), None).await.body;
    state["models"].as_array().unwrap().iter().find(|m| m["name"] == model).cloned().unwrap_or(Value::Null)
}

/// Whether front `front` sees `model` loaded on `node_name` (after its next reading of the node).
async fn front_sees(http: &HttpClient, front: &str, node_name: &str, model: &str) -> bool {
    let b = call(http, Method::GET, &format!("{front}/admin/backends"), None).await.body;
    b["backends"].as_array().unwrap().iter().any(|n| {
        n["name"] == node_name
            && n["healthy"] == true
            && n["loaded"].as_array().is_some_and(|l| l.iter().any(|m| m == model))
    })
}

async fn sim(time_scale: f64) -> SimHandle {
    switchyard_sim::spawn(SimOptions { gpus: vec![16 * GIB], time_scale, ..SimOptions::default() }).await.unwrap()
}

async fn start_node(sim: &SimHandle, dir: &std::path::Path, listen: &str) -> Binary {
    Binary::start(&sim.url(), dir, &["--listen", listen], &[]).await.unwrap_or_else(|e| panic!("node: {e}"))
}

async fn start_front(dir: &std::path::Path, nodes: &[(&str, &str)], database: &str) -> Binary {
    let mut config = String::from("[ollama]\nenabled = false\n");
    for (name, url) in nodes {
        config.push_str(&format!(
            "\n[[backends]]\nname = \"{name}\"\nkind = \"switchyard\"\nurl = \"{url}\"\npoll_interval_ms = 100\n"
        ));
        if *name == "b" {
            // Named for node b in the fronts' configuration: pinned there, and so loaded, whenever b joins.
            config.push_str("pin = [\"llama3.1:8b\"]\n");
        }
    }
    let path = dir.join("front.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.display().to_string();
    Binary::start("http://127.0.0.1:9", dir, &["--config", &path], &[("SWITCHYARD_DATABASE_URL", database)])
        .await
        .unwrap_or_else(|e| panic!("front: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_fronts_route_across_three_nodes_and_survive_a_node_and_a_front_dying() {
    let http = HttpClient::default();
    // Node a's box loads slowly (time runs at 0.6), so that it can be killed in the middle of a load.
    let sims = [sim(0.6).await, sim(0.0).await, sim(0.0).await];
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (sim, dir) in sims.iter().zip(&dirs) {
        nodes.push(start_node(sim, dir.path(), "127.0.0.1:0").await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let named: Vec<(&str, &str)> = ["a", "b", "c"].into_iter().zip(urls.iter().map(String::as_str)).collect();
    let database = match switchyard_core::store::testing::postgres_url().await.unwrap() {
        Some(url) => url,
        None => format!("sqlite://{}", dirs[3].path().join("fleet.db").display()),
    };
    let mut fronts = vec![
        start_front(dirs[3].path(), &named, &database).await,
        start_front(dirs[4].path(), &named, &database).await,
    ];
    let front_urls: Vec<String> = fronts.iter().map(|f| f.url.clone()).collect();

    // Every front lists the fleet's models and is ready while nodes answer.
    for front in &front_urls {
        let ok = eventually(Duration::from_secs(20), || async {
            let tags = call(&http, Method::GET, &format!("{front}/api/tags"), None).await.body;
            tags["models"].as_array().is_some_and(|m| m.iter().any(|m| m["name"] == "llama3.1:8b"))
        })
        .await;
        assert!(ok, "front {front} lists the fleet's models");
        assert_eq!(call(&http, Method::GET, &format!("{front}/ready"), None).await.status, 200);
    }

    // The fronts pinned llama3.1:8b on node b, as configured; a model loaded on b is routed to b, from either front.
    let pinned = eventually(Duration::from_secs(20), || async {
        let m = state_of(&http, &urls[1], "llama3.1:8b").await;
        m["pinned"] == true && m["loaded"] == true
    })
    .await;
    assert!(pinned, "the fronts pin llama3.1:8b on node b when it joins");
    for front in &front_urls {
        assert!(eventually(Duration::from_secs(10), || front_sees(&http, front, "b", "llama3.1:8b")).await);
        for _ in 0..3 {
            let r = call(&http, Method::POST, &format!("{front}/api/chat"), Some(chat("llama3.1:8b"))).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.node.as_deref(), Some("b"), "the loaded copy serves it");
        }
    }

    // A model cold everywhere goes to the node where loading it evicts least: a and c are full of a 14b, b has room.
    load_on(&http, &urls[0], "deepseek-r1:14b").await;
    load_on(&http, &urls[2], "deepseek-r1:14b").await;
    let on_a = state_of(&http, &urls[0], "qwen2.5-coder:7b").await;
    let on_b = state_of(&http, &urls[1], "qwen2.5-coder:7b").await;
    assert_eq!(on_a["evicts"], json!(["deepseek-r1:14b"]), "loading it on a evicts: {on_a}");
    assert_eq!(on_b["evicts"], json!([]), "it fits on b: {on_b}");
    assert!(on_a["eviction_seconds"].as_f64().unwrap() > 0.0);
    for front in &front_urls {
        assert!(eventually(Duration::from_secs(10), || front_sees(&http, front, "c", "deepseek-r1:14b")).await);
    }
    let r = call(&http, Method::POST, &format!("{}/api/chat", front_urls[1]), Some(chat("qwen2.5-coder:7b"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.node.as_deref(), Some("b"), "placed where nothing is evicted");
    assert!(state_of(&http, &urls[0], "deepseek-r1:14b").await["loaded"] == true, "a kept its model");
    assert!(state_of(&http, &urls[2], "deepseek-r1:14b").await["loaded"] == true, "c kept its model");
    // The other front learns of the placement from its next reading, and follows it.
    assert!(eventually(Duration::from_secs(10), || front_sees(&http, &front_urls[0], "b", "qwen2.5-coder:7b")).await);
    let r = call(&http, Method::POST, &format!("{}/api/chat", front_urls[0]), Some(chat("qwen2.5-coder:7b"))).await;
    assert_eq!(r.node.as_deref(), Some("b"));

    // Node a dies in the middle of a load: the request moves to another node and is answered.
    let front = front_urls[0].clone();
    let request = {
        let http = http.clone();
        let front = front.clone();
        tokio::spawn(
            async move { call(&http, Method::POST, &format!("{front}/api/chat"), Some(chat("llama3.2:3b"))).await },
        )
    };
    let loading = eventually(Duration::from_secs(20), || async {
        state_of(&http, &urls[0], "llama3.2:3b").await["loading"] == true
    })
    .await;
    assert!(loading, "the cold model is being loaded on a, the emptiest node for it");
    nodes[0].signal("KILL").await;
    let r = request.await.unwrap();
    assert_eq!(r.status, 200, "the request survived the node: {}", r.body);
    assert!(matches!(r.node.as_deref(), Some("b" | "c")), "served by {:?}", r.node);
    let down = eventually(Duration::from_secs(10), || async {
        let b = call(&http, Method::GET, &format!("{front}/admin/backends"), None).await.body;
        b["backends"].as_array().unwrap().iter().any(|n| n["name"] == "a" && n["healthy"] == false)
    })
    .await;
    assert!(down, "the front marks a down");
    for model in ["llama3.1:8b", "qwen2.5-coder:7b"] {
        let r = call(&http, Method::POST, &format!("{front}/api/chat"), Some(chat(model))).await;
        assert_eq!(r.status, 200, "{model} is still served while a is down: {}", r.body);
    }

    // a returns on the same address: the fronts read it again and send it what it holds.
    let address = urls[0].trim_start_matches("http://").to_string();
    nodes[0] = start_node(&sims[0], dirs[0].path(), &address).await;
    load_on(&http, &urls[0], "nomic-embed-text:latest").await;
    assert!(eventually(Duration::from_secs(10), || front_sees(&http, &front, "a", "nomic-embed-text:latest")).await);
    let r = call(
        &http,
        Method::POST,
        &format!("{front}/api/embed"),
        Some(json!({"model": "nomic-embed-text:latest", "input": "hello"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.node.as_deref(), Some("a"), "a rejoined and serves what it holds");

    // One front dies: the other serves everything, named models and auto alike.
    fronts[0].signal("KILL").await;
    let other = &front_urls[1];
    for model in ["llama3.1:8b", "qwen2.5-coder:7b", "deepseek-r1:14b", "auto"] {
        let r = call(&http, Method::POST, &format!("{other}/api/chat"), Some(chat(model))).await;
        assert_eq!(r.status, 200, "{model} through the surviving front: {}", r.body);
        assert!(r.node.is_some(), "a node served {model}");
    }
    // Pins and loads through the front name a node; a pin without one is refused, a load without one is placed.
    let pin = json!({"model": "llama3.2:3b", "node": "c"});
    let r = call(&http, Method::POST, &format!("{other}/admin/vram/pin"), Some(pin)).await;
    assert_eq!((r.status, r.body["node"].as_str()), (200, Some("c")), "{}", r.body);
    assert_eq!(state_of(&http, &urls[2], "llama3.2:3b").await["pinned"], true);
    assert!(state_of(&http, &urls[1], "llama3.2:3b").await["pinned"] != true, "pinned on c only");
    let r = call(&http, Method::POST, &format!("{other}/admin/vram/pin"), Some(json!({"model": "llama3.2:3b"}))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("node"), "{}", r.body);
    let r = call(
        &http,
        Method::POST,
        &format!("{other}/admin/vram/pin"),
        Some(json!({"model": "llama3.2:3b", "node": "z"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        &http,
        Method::POST,
        &format!("{other}/admin/vram/unpin"),
        Some(json!({"model": "llama3.2:3b", "node": "c"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(state_of(&http, &urls[2], "llama3.2:3b").await["pinned"], false);
    let r = call(&http, Method::POST, &format!("{other}/admin/vram/load"), Some(json!({"model": "llava:7b"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let placed = r.body["node"].as_str().unwrap().to_string();
    let index = ["a", "b", "c"].iter().position(|n| *n == placed).unwrap();
    assert_eq!(state_of(&http, &urls[index], "llava:7b").await["loaded"], true, "loaded on {placed}");

    let r = call(
        &http,
        Method::POST,
        &format!("{other}/v1/chat/completions"),
        Some(json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(r.status, 200, "OpenAI's surface through the fleet: {}", r.body);
    assert_eq!(r.node.as_deref(), Some("b"));
    // A stream through the fleet arrives whole, in order, with one final chunk.
    let request = build_request(
        Method::POST,
        &format!("{other}/api/chat"),
        Some(bytes::Bytes::from(
            json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "Count to five."}]}).to_string(),
        )),
    )
    .unwrap();
    let response = http.send(request).await.unwrap();
    assert_eq!(response.headers().get("x-switchyard-node").unwrap(), "b");
    let text = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let lines: Vec<Value> = String::from_utf8_lossy(&text).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 2, "streamed in chunks");
    assert_eq!(lines.iter().filter(|l| l["done"] == true).count(), 1);
    assert_eq!(lines.last().unwrap()["done"], true);
    // The model listings and metadata calls of both surfaces answer from the fleet.
    let models = call(&http, Method::GET, &format!("{other}/v1/models"), None).await.body;
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "deepseek-r1:14b"), "{models}");
    let ps = call(&http, Method::GET, &format!("{other}/api/ps"), None).await.body;
    let r1 = ps["models"].as_array().unwrap().iter().find(|m| m["name"] == "deepseek-r1:14b").cloned().unwrap();
    assert_eq!(r1["nodes"], json!(["a", "c"]), "{ps}");
    let show = call(&http, Method::POST, &format!("{other}/api/show"), Some(json!({"model": "deepseek-r1:14b"}))).await;
    assert_eq!(show.status, 200);
    assert!(show.body["capabilities"].as_array().unwrap().iter().any(|c| c == "thinking"), "{}", show.body);
    assert!(call(&http, Method::GET, &format!("{other}/api/version"), None).await.body["version"].is_string());
    // A model deleted through the front is deleted on every node, also when one of them no longer had it.
    let delete = |url: String| {
        let http = http.clone();
        async move { call(&http, Method::DELETE, &url, Some(json!({"model": "llama3.3:70b"}))).await.status }
    };
    assert_eq!(delete(format!("{}/api/delete", urls[0])).await, 200, "deleted on a directly");
    assert_eq!(delete(format!("{other}/api/delete")).await, 200, "a's 404 leaves it to b and c");
    for node in &urls {
        assert_eq!(state_of(&http, node, "llama3.3:70b").await, Value::Null, "gone from {node}");
    }
    let tags = call(&http, Method::GET, &format!("{other}/api/tags"), None).await.body;
    assert!(!tags["models"].as_array().unwrap().iter().any(|m| m["name"] == "llama3.3:70b"), "{tags}");
    assert_eq!(delete(format!("{other}/api/delete")).await, 404, "no node has it any more");

    for f in &mut fronts {
        let _ = f.child.start_kill();
    }
    for n in &mut nodes {
        let _ = n.child.start_kill();
    }
}

/// A stand-in node: its `/admin/state` offers `model` (loaded), and its `/api/chat` answers `status` with a one-line
/// answer naming `name`. Counts the chats it was sent.
async fn stub_node(
    name: &'static str,
    status: u16,
    model: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicU32, Ordering};
    let chats = std::sync::Arc::new(AtomicU32::new(0));
    let counter = std::sync::Arc::clone(&chats);
    let state = switchyard_core::fleet::NodeState {
        version: "test".into(),
        ready: true,
        num_parallel: 1,
        gpus: Vec::new(),
        models: vec![switchyard_core::fleet::NodeModel {
            name: model.into(),
            digest: "d".into(),
            capabilities: switchyard_core::Capabilities { completion: true, ..Default::default() },
            loaded: true,
            ..Default::default()
        }],
    };
    let app = axum::Router::new().route("/admin/state", get(move || async move { axum::Json(state.clone()) })).route(
        "/api/chat",
        post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let code = http::StatusCode::from_u16(status).unwrap();
                let body = if status == 200 {
                    json!({"model": model, "message": {"role": "assistant", "content": name}, "done": true,
                               "done_reason": "stop"})
                } else {
                    json!({"error": format!("{name} has no room")})
                };
                (code, axum::Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, chats)
}

#[tokio::test]
async fn a_node_refusing_for_room_is_skipped_and_a_fleet_with_no_room_answers_503() {
    use std::sync::atomic::Ordering;
    let (full, full_chats) = stub_node("full", 503, "m:latest").await;
    let (free, free_chats) = stub_node("free", 200, "m:latest").await;
    let dir = tempfile::tempdir().unwrap();
    let front_for = |nodes: Vec<(&str, String)>| {
        let mut config = switchyard_core::config::Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.ollama.enabled = false;
        config.database.url = format!("sqlite://{}", dir.path().join("front.db").display());
        config.backends = nodes
            .into_iter()
            .map(|(name, url)| switchyard_core::config::BackendConfig {
                name: name.into(),
                kind: switchyard_core::config::BackendKind::Switchyard,
                url,
                poll_interval_ms: 50,
                ..Default::default()
            })
            .collect();
        config.validate().unwrap();
        std::sync::Arc::new(config)
    };
    let http = HttpClient::default();
    // Both nodes hold the model; the first in order refuses for room.
    let front =
        switchyard::server::spawn(front_for(vec![("full", full.clone()), ("free", free.clone())])).await.unwrap();
    let r = call(&http, Method::POST, &format!("{}/api/chat", front.url()), Some(chat("m:latest"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.node.as_deref(), Some("free"));
    assert_eq!(r.body["message"]["content"], "free");
    assert_eq!((full_chats.load(Ordering::SeqCst), free_chats.load(Ordering::SeqCst)), (1, 1), "tried in order");
    let backends = call(&http, Method::GET, &format!("{}/admin/backends", front.url()), None).await.body;
    let full_row = backends["backends"].as_array().unwrap().iter().find(|b| b["name"] == "full").cloned().unwrap();
    assert_eq!(full_row["healthy"], true, "a node without room is not down: {full_row}");
    // A front has nothing of its own to profile (its profiles are the nodes'), and knows only the nodes' models.
    let r = call(&http, Method::POST, &format!("{}/admin/profile", front.url()), Some(json!({}))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("profile on the nodes"), "{}", r.body);
    let r = call(&http, Method::POST, &format!("{}/api/show", front.url()), Some(json!({"model": "nope:1b"}))).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let request = build_request(Method::GET, &format!("{}/metrics", front.url()), None).unwrap();
    let metrics = http.send_buffered(request, Duration::from_secs(10)).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body);
    for line in [
        "switchyard_backend_requests_total{backend=\"full\",outcome=\"no_room\"} 1",
        "switchyard_backend_requests_total{backend=\"free\",outcome=\"ok\"} 1",
        "switchyard_fleet_node_up{node=\"full\"} 1",
        "switchyard_backend_in_flight{backend=\"free\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }
    front.stop().await;

    // A node that answers with an error (a failed load there) is skipped for this request, and is not down.
    let (broken, broken_chats) = stub_node("broken", 500, "m:latest").await;
    let front = switchyard::server::spawn(front_for(vec![("broken", broken), ("free", free.clone())])).await.unwrap();
    let r = call(&http, Method::POST, &format!("{}/api/chat", front.url()), Some(chat("m:latest"))).await;
    assert_eq!((r.status, r.node.as_deref()), (200, Some("free")), "{}", r.body);
    assert_eq!(broken_chats.load(Ordering::SeqCst), 1);
    let backends = call(&http, Method::GET, &format!("{}/admin/backends", front.url()), None).await.body;
    let row = backends["backends"].as_array().unwrap().iter().find(|b| b["name"] == "broken").cloned().unwrap();
    assert_eq!(row["healthy"], true, "an error answer is not a node gone: {row}");
    front.stop().await;

    // Every node refuses: the client gets a 503 with Retry-After, and the model is not held against (no breaker).
    let front = switchyard::server::spawn(front_for(vec![("full", full)])).await.unwrap();
    for _ in 0..6 {
        let request = build_request(
            Method::POST,
            &format!("{}/api/chat", front.url()),
            Some(bytes::Bytes::from(chat("m:latest").to_string())),
        )
        .unwrap();
        let response = http.send(request).await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().get("retry-after").is_some());
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("no room"), "{text}");
    }
    assert_eq!(full_chats.load(Ordering::SeqCst), 7, "still asked each time: no circuit breaker opened");
    front.stop().await;
}

/// A node reports the context it serves each model with (its `num_ctx`), not the trained one, so a front passes
/// over a node whose instances a prompt would not fit, even one with the model already loaded, and sends the prompt
/// to a node whose context fits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_longer_than_a_nodes_context_goes_to_a_node_it_fits() {
    let http = HttpClient::default();
    let sims = [sim(0.0).await, sim(0.0).await];
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start_node(&sims[0], dirs[0].path(), "127.0.0.1:0").await;
    let b = Binary::start(&sims[1].url(), dirs[1].path(), &[], &[("SWITCHYARD_VRAM_NUM_CTX", "16384")])
        .await
        .unwrap_or_else(|e| panic!("node b: {e}"));
    assert_eq!(state_of(&http, &a.url, "llama3.1:8b").await["context_length"], 4096);
    assert_eq!(state_of(&http, &b.url, "llama3.1:8b").await["context_length"], 16384);
    load_on(&http, &a.url, "llama3.1:8b").await;
    let database = format!("sqlite://{}", dirs[2].path().join("front.db").display());
    let front = start_front(dirs[2].path(), &[("a", &a.url), ("c", &b.url)], &database).await;
    let warm = eventually(Duration::from_secs(20), || front_sees(&http, &front.url, "a", "llama3.1:8b")).await;
    assert!(warm, "the front sees llama3.1:8b loaded on a");
    let both = eventually(Duration::from_secs(20), || async {
        let b = call(&http, Method::GET, &format!("{}/admin/backends", front.url), None).await.body;
        b["backends"].as_array().unwrap().iter().filter(|n| n["healthy"] == true).count() == 2
    })
    .await;
    assert!(both, "the front reads both nodes");

    // About 6,000 tokens: over a's 4,096, within c's 16,384.
    let long = "The freight yard handles many trains every single day. ".repeat(450);
    let body = json!({"model": "auto", "stream": false,
        "messages": [{"role": "user", "content": format!("{long}\nSummarize the text above in one sentence.")}]});
    let answer = call(&http, Method::POST, &format!("{}/api/chat", front.url), Some(body)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.node.as_deref(), Some("c"), "{}", answer.body);
    // A short prompt still goes to the model already loaded on a.
    let answer = call(&http, Method::POST, &format!("{}/api/chat", front.url), Some(chat("llama3.1:8b"))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.node.as_deref(), Some("a"));
    // Texts to embed ask nothing of the context (the engine cuts each to the model's): a batch longer than the
    // embedding model's 2,048 tokens is served.
    let batch = json!({"model": "nomic-embed-text", "input": [long.clone(), "a short one"]});
    let answer = call(&http, Method::POST, &format!("{}/api/embed", front.url), Some(batch)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["embeddings"].as_array().unwrap().len(), 2);
    // Too long for every node: a named model gets a 400 that says so (waiting would not help).
    let longer = "The freight yard handles many trains every single day. ".repeat(1300);
    let body = json!({"model": "llama3.1:8b", "stream": false, "messages": [{"role": "user", "content": longer}]});
    let answer = call(&http, Method::POST, &format!("{}/api/chat", front.url), Some(body)).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body["error"].as_str().unwrap().contains("at most 16384"), "{}", answer.body);
}
