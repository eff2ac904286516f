//! A real inference engine behind Switchyard: llama.cpp's `llama-server` (built from source by
//! `scripts/llama-server.sh`, serving tiny random-weight GGUF models it writes) as an `openai` backend of the real
//! `switchyard` binary, beside the simulator as the local Ollama. Everything runs on port 0 or a free port.
//!
//! Without a built `llama-server` these tests print why and pass, unless `SY_REQUIRE_REAL_ENGINE=1` (set by
//! `scripts/test.sh` once the build succeeded), which makes a missing engine a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::Binary;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchyard_core::http::{HttpClient, build_request};
use switchyard_sim::SimOptions;

/// Where `scripts/llama-server.sh` put the binary and the models.
fn llama_dir() -> PathBuf {
    std::env::var_os("SY_LLAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/llama"))
}

/// The engine's binary, or `None` (after saying why) when it is not built and not required.
fn engine() -> Option<PathBuf> {
    let dir = llama_dir();
    let bin = dir.join("bin/llama-server");
    let ready =
        bin.exists() && dir.join("models/tiny-chat.gguf").exists() && dir.join("models/tiny-embed.gguf").exists();
    if ready {
        return Some(bin);
    }
    let why = format!("no llama-server and tiny models under {} (run scripts/llama-server.sh)", dir.display());
    if std::env::var("SY_REQUIRE_REAL_ENGINE").is_ok_and(|v| v == "1") {
        panic!("SY_REQUIRE_REAL_ENGINE=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A running `llama-server`, killed on drop.
struct Engine {
    child: tokio::process::Child,
    url: String,
    port: u16,
    args: Vec<String>,
}

impl Engine {
    /// Starts `llama-server` with `args` on `port` (0: a free one) and waits until `/health` answers 200.
    async fn start(bin: &PathBuf, args: &[String], port: u16) -> Engine {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        } else {
            port
        };
        let child = tokio::process::Command::new(bin)
            .args(args)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--no-webui"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let engine = Engine { child, url: format!("http://127.0.0.1:{port}"), port, args: args.to_vec() };
        let http = HttpClient::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(resp) =
                http.send(build_request(Method::GET, &format!("{}/health", engine.url), None).unwrap()).await
                && resp.status() == StatusCode::OK
            {
                return engine;
            }
            assert!(Instant::now() < deadline, "llama-server did not become healthy within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn model_args(model: &str, extra: &[&str]) -> Vec<String> {
        let path = llama_dir().join(format!("models/{model}.gguf"));
        let mut args: Vec<String> =
            vec!["-m".into(), path.display().to_string(), "--alias".into(), model.into(), "-t".into(), "1".into()];
        args.extend(["-c", "2048"].iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A small HTTP client for one base URL.
#[derive(Clone)]
struct Client {
    http: HttpClient,
    base: String,
}

impl Client {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, http::HeaderMap, Bytes) {
        let req =
            build_request(method, &format!("{}{path}", self.base), body.map(|b| Bytes::from(b.to_string()))).unwrap();
        let resp = self.http.send(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        (status, headers, body)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, http::HeaderMap, Bytes) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn json(&self, path: &str, body: Value) -> Value {
        let (status, _, bytes) = self.post(path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }
}

fn ndjson(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sse(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// The router's configuration: the llama.cpp engines as an `openai` backend.
fn config_file(dir: &std::path::Path, chat_url: &str, embed_url: &str) -> String {
    let path = dir.join("switchyard.toml");
    std::fs::write(
        &path,
        format!(
            "[breaker]\nfailure_threshold = 1\ncooldown_secs = 1\n\n\
             [[backends]]\nname = \"llamacpp\"\nurl = \"{chat_url}\"\nmax_concurrency = 2\n\n\
             [[backends]]\nname = \"llamacpp-embed\"\nurl = \"{embed_url}\"\n\
             models = [{{ name = \"tiny-embed\", embedding = true }}]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

struct World {
    chat: Engine,
    _embed: Engine,
    _sim: switchyard_sim::SimHandle,
    router: Binary,
    direct: Client,
    via: Client,
    _dir: tempfile::TempDir,
}

async fn world(bin: &PathBuf) -> World {
    let chat = Engine::start(bin, &Engine::model_args("tiny-chat", &["--jinja"]), 0).await;
    let embed = Engine::start(bin, &Engine::model_args("tiny-embed", &["--embeddings", "--pooling", "mean"]), 0).await;
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &chat.url, &embed.url);
    let router = Binary::start(&sim.url(), dir.path(), &["--config", &config], &[]).await.unwrap();
    let http = HttpClient::default();
    let direct = Client { http: http.clone(), base: chat.url.clone() };
    let via = Client { http, base: router.url.clone() };
    World { chat, _embed: embed, _sim: sim, router, direct, via, _dir: dir }
}

/// The simulator as the local Ollama, and the real router beside it with `config` (TOML).
async fn router_with(config: &str) -> (switchyard_sim::SimHandle, Binary, tempfile::TempDir) {
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config).unwrap();
    let router = Binary::start(&sim.url(), dir.path(), &["--config", &path.display().to_string()], &[]).await.unwrap();
    (sim, router, dir)
}

fn greedy_chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "temperature": 0, "max_tokens": 24, "seed": 1,
           "messages": [{"role": "user", "content": "Name three colours."}]})
}

#[tokio::test]
async fn the_real_engine_serves_both_surfaces_through_switchyard() {
    let Some(bin) = engine() else { return };
    let w = world(&bin).await;

    // Listing: the engine's models beside the simulator's.
    let tags = w.via.call(Method::GET, "/api/tags", None).await;
    let tags: Value = serde_json::from_slice(&tags.2).unwrap();
    let names: Vec<&str> = tags["models"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(names.contains(&"tiny-chat:latest") && names.contains(&"tiny-embed:latest"), "{names:?}");
    assert!(names.contains(&"llama3.2:3b"), "{names:?}");

    // OpenAI surface, buffered: the same greedy answer as the engine gives directly.
    let direct = w.direct.json("/v1/chat/completions", greedy_chat("tiny-chat", false)).await;
    let via = w.via.json("/v1/chat/completions", greedy_chat("tiny-chat", false)).await;
    let text = direct["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_eq!(via["choices"][0]["message"]["content"].as_str(), Some(text), "{via}");
    assert_eq!(via["usage"]["completion_tokens"], direct["usage"]["completion_tokens"]);

    // OpenAI surface, streamed: the deltas add up to the same text, then [DONE].
    let (status, headers, body) = w.via.post("/v1/chat/completions", greedy_chat("tiny-chat", true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("x-switchyard-model").unwrap(), "tiny-chat:latest");
    let events = sse(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let streamed: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, text);

    // Ollama surface, buffered and streamed: native shapes with the engine's own timings.
    let native = json!({"model": "tiny-chat", "stream": false, "options": {"temperature": 0, "num_predict": 24, "seed": 1},
                        "messages": [{"role": "user", "content": "Name three colours."}]});
    let v = w.via.json("/api/chat", native.clone()).await;
    assert_eq!(v["message"]["content"].as_str(), Some(text), "{v}");
    assert_eq!(v["done"], true);
    assert!(v["eval_count"].as_u64().unwrap() > 0 && v["eval_duration"].as_u64().unwrap() > 0, "{v}");
    let mut streaming = native;
    streaming["stream"] = json!(true);
    let (status, _, body) = w.via.post("/api/chat", streaming).await;
    assert_eq!(status, StatusCode::OK);
    let lines = ndjson(&body);
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true, "{last}");
    let streamed: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    assert_eq!(streamed, text);

    // Completions, both surfaces.
    let prompt =
        json!({"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0, "seed": 1});
    let direct = w.direct.json("/v1/completions", prompt.clone()).await;
    let via = w.via.json("/v1/completions", prompt).await;
    assert_eq!(via["choices"][0]["text"], direct["choices"][0]["text"], "{via}");
    let raw = json!({"model": "tiny-chat", "prompt": "Once upon a time", "raw": true, "stream": true,
                     "options": {"num_predict": 12, "temperature": 0, "seed": 1}});
    let (status, _, body) = w.via.post("/api/generate", raw).await;
    assert_eq!(status, StatusCode::OK);
    let lines = ndjson(&body);
    let generated: String = lines.iter().filter_map(|l| l["response"].as_str()).collect();
    assert_eq!(generated, direct["choices"][0]["text"].as_str().unwrap());
    assert_eq!(lines.last().unwrap()["done"], true);

    // Log probabilities: the engine's own, in Ollama's shape and back in OpenAI's.
    let mut asked = greedy_chat("tiny-chat", false);
    asked["logprobs"] = json!(true);
    asked["top_logprobs"] = json!(2);
    let direct = w.direct.json("/v1/chat/completions", asked.clone()).await;
    let expected = direct["choices"][0]["logprobs"]["content"].as_array().unwrap().clone();
    assert!(!expected.is_empty(), "{direct}");
    let via = w.via.json("/v1/chat/completions", asked).await;
    let got = via["choices"][0]["logprobs"]["content"].as_array().unwrap();
    let tokens =
        |entries: &[Value]| entries.iter().map(|e| e["token"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(tokens(got), tokens(&expected));
    assert_eq!(got[0]["top_logprobs"].as_array().unwrap().len(), 2, "{via}");
    let native = json!({"model": "tiny-chat", "stream": false, "logprobs": true, "top_logprobs": 2,
                        "options": {"temperature": 0, "num_predict": 24, "seed": 1},
                        "messages": [{"role": "user", "content": "Name three colours."}]});
    let v = w.via.json("/api/chat", native).await;
    assert_eq!(tokens(v["logprobs"].as_array().unwrap()), tokens(&expected), "{v}");
    // No alternatives asked for: none shown (llama.cpp is asked for one, as it reads 0 as "no log probabilities").
    let mut bare = greedy_chat("tiny-chat", false);
    bare["logprobs"] = json!(true);
    let v = w.via.json("/v1/chat/completions", bare).await;
    let entries = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(tokens(entries), tokens(&expected));
    assert!(entries.iter().all(|e| e["top_logprobs"] == json!([])), "{v}");
    let legacy = json!({"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0,
                        "seed": 1, "logprobs": 0});
    let v = w.via.json("/v1/completions", legacy).await;
    let text: String =
        v["choices"][0]["logprobs"]["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(text, v["choices"][0]["text"].as_str().unwrap(), "{v}");

    // Embeddings, both surfaces.
    let v = w.via.json("/api/embed", json!({"model": "tiny-embed", "input": ["red", "green"]})).await;
    let vectors = v["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    assert!(vectors[0].as_array().unwrap().len() >= 16);
    let v = w.via.json("/v1/embeddings", json!({"model": "tiny-embed", "input": "red"})).await;
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), vectors[0].as_array().unwrap().len());

    let backends = w.via.call(Method::GET, "/admin/backends", None).await;
    let backends: Value = serde_json::from_slice(&backends.2).unwrap();
    let llama = &backends["backends"][1];
    assert_eq!((llama["name"].as_str(), llama["healthy"].as_bool()), (Some("llamacpp"), Some(true)), "{backends}");
    assert!(llama["output_tokens"].as_u64().unwrap() > 0);
    drop(w.router);
}

#[tokio::test]
async fn a_killed_engine_ends_the_stream_cleanly_and_auto_falls_back_until_it_returns() {
    let Some(bin) = engine() else { return };
    let mut w = world(&bin).await;
    // A long stream, explicitly on the engine; the engine dies after the first chunks arrived.
    let long = json!({"model": "tiny-chat", "stream": true, "options": {"num_predict": 100000, "temperature": 1.0},
                      "messages": [{"role": "user", "content": "Tell me a long story."}]});
    let req =
        build_request(Method::POST, &format!("{}/api/chat", w.via.base), Some(Bytes::from(long.to_string()))).unwrap();
    let resp = w.via.http.send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = Vec::new();
    while received.iter().filter(|b| **b == b'\n').count() < 3 {
        let frame = body.frame().await.unwrap().unwrap();
        received.extend_from_slice(&frame.into_data().unwrap_or_default());
    }
    w.chat.kill().await;
    while let Some(Ok(frame)) = tokio::time::timeout(Duration::from_secs(30), body.frame()).await.unwrap() {
        received.extend_from_slice(&frame.into_data().unwrap_or_default());
    }
    let lines = ndjson(&received);
    let last = lines.last().unwrap();
    assert!(last["error"].as_str().is_some_and(|e| !e.is_empty()), "a clean error line ends the stream: {last}");
    assert!(lines.iter().all(|l| l["done"] != true), "no false completion");

    // The breaker opened (threshold 1): auto serves the next request from the simulator, not the dead engine.
    let backends: Value = serde_json::from_slice(&w.via.call(Method::GET, "/admin/backends", None).await.2).unwrap();
    assert_eq!(backends["backends"][1]["breaker_open"], json!(["tiny-chat:latest"]), "{backends}");
    let (status, headers, body) = w
        .via
        .post(
            "/api/chat",
            json!({"model": "auto:fast", "stream": false,
        "messages": [{"role": "user", "content": "Say hi."}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let served = headers.get("x-switchyard-model").unwrap().to_str().unwrap().to_string();
    assert!(!served.starts_with("tiny-"), "served by {served}");

    // The engine comes back on the same port: after the breaker's cooldown the backend serves again.
    let args = w.chat.args.clone();
    let port = w.chat.port;
    w.chat = Engine::start(&bin, &args, port).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = w.via.post("/v1/chat/completions", greedy_chat("tiny-chat", false)).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the backend did not recover: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(w.router);
}

#[tokio::test]
async fn a_router_mode_engine_loads_and_unloads_through_switchyard() {
    let Some(bin) = engine() else { return };
    let preset = llama_dir().join("models/preset.ini").display().to_string();
    let args: Vec<String> = ["--models-preset", &preset, "--models-max", "1"].iter().map(|s| s.to_string()).collect();
    let _engine = Engine::start(&bin, &args, 0).await;
    let (_sim, router, _dir) = router_with(&format!(
        "[[backends]]\nname = \"llamacpp\"\nurl = \"{}\"\n\
         models = [\"tiny-chat\", \"tiny-chat-b\", \"ghost\", {{ name = \"tiny-embed\", embedding = true }}]\n",
        _engine.url
    ))
    .await;
    let via = Client { http: HttpClient::default(), base: router.url.clone() };
    let loaded = |via: Client| async move {
        let (_, _, body) = via.call(Method::GET, "/admin/backends", None).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["backends"][1]["loaded"].clone()
    };
    assert_eq!(loaded(via.clone()).await, json!([]), "nothing is loaded at first");

    let v = via.json("/admin/vram/load", json!({"model": "tiny-chat-b"})).await;
    assert_eq!(v["backend"], "llamacpp", "{v}");
    assert_eq!(loaded(via.clone()).await, json!(["tiny-chat-b"]));

    // The scorer counts a load for the unloaded model and none for the loaded one.
    let explain = via.json("/admin/explain", json!({"prompt": "Say hi."})).await;
    let candidates = explain["scoring"]["candidates"].as_array().unwrap();
    let find = |name: &str| candidates.iter().find(|c| c["model"] == name).unwrap().clone();
    assert_eq!(find("tiny-chat-b:latest")["loaded"], true);
    assert_eq!(find("tiny-chat:latest")["loaded"], false);
    assert!(find("tiny-chat:latest")["latency"]["load"].as_f64().unwrap() > 0.0);

    // A request for the other model loads it; the engine evicts the first (--models-max 1).
    let _ = via.json("/v1/chat/completions", greedy_chat("tiny-chat", false)).await;
    assert_eq!(loaded(via.clone()).await, json!(["tiny-chat"]));

    // Ollama's way: an empty prompt with keep_alive 0 unloads, an empty prompt loads.
    let v = via.json("/api/generate", json!({"model": "tiny-chat", "keep_alive": 0})).await;
    assert_eq!(v["done_reason"], "unload", "{v}");
    assert_eq!(loaded(via.clone()).await, json!([]));
    let v = via.json("/api/generate", json!({"model": "tiny-chat-b"})).await;
    assert_eq!(v["done_reason"], "load", "{v}");
    assert_eq!(loaded(via.clone()).await, json!(["tiny-chat-b"]));
    let v = via.json("/admin/vram/unload", json!({"model": "tiny-chat-b"})).await;
    assert!(v["status"].as_str().unwrap().contains("unloaded"), "{v}");
    assert_eq!(loaded(via.clone()).await, json!([]));

    // A configured model the engine does not have is a missing model (404), not a bad request.
    let (status, _, body) = via
        .post(
            "/api/chat",
            json!({"model": "ghost", "stream": false,
        "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&body));

    // Pins are the local Ollama's.
    let (status, _, body) = via.post("/admin/vram/pin", json!({"model": "tiny-chat"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
    drop(router);
}

#[tokio::test]
async fn switchyard_profile_measures_a_backends_model_and_the_server_uses_it() {
    let Some(bin) = engine() else { return };
    let engine = Engine::start(&bin, &Engine::model_args("tiny-chat", &["--jinja"]), 0).await;
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, format!("[[backends]]\nname = \"llamacpp\"\nurl = \"{}\"\n", engine.url)).unwrap();
    let config = config.display().to_string();
    let db = format!("sqlite://{}", dir.path().join("switchyard.db").display());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--config", &config, "profile", "--backend", "llamacpp", "--categories", "math,coding"])
        .args(["--items-per-category", "2"])
        .env("SWITCHYARD_OLLAMA_URL", sim.url())
        .env("SWITCHYARD_VRAM_PROBE", "sim")
        .env("SWITCHYARD_DATABASE_URL", &db)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("tiny-chat"), "the summary names the model: {stdout}");
    assert!(stdout.contains("4 item(s) run"), "{stdout}");

    // A server on the same store reads the profile: two items per category, with the engine's measured speed.
    let router = Binary::start(&sim.url(), dir.path(), &["--config", &config], &[]).await.unwrap();
    let via = Client { http: HttpClient::default(), base: router.url.clone() };
    let (_, _, body) = via.call(Method::GET, "/admin/models", None).await;
    let models: Value = serde_json::from_slice(&body).unwrap();
    let tiny = models["models"].as_array().unwrap().iter().find(|m| m["name"] == "tiny-chat:latest").unwrap().clone();
    assert_eq!(tiny["profiled"], true, "{tiny}");
    let math = tiny["categories"].as_array().unwrap().iter().find(|c| c["category"] == "math").unwrap().clone();
    assert_eq!(math["n"], 2, "{tiny}");
    assert!(tiny["decode_tps"].as_f64().is_some_and(|t| t > 0.0), "{tiny}");
    drop(router);
}

/// The mixed configuration: the simulator as the local Ollama, the real engine as a free backend, and a priced
/// OpenAI-compatible stand-in that needs a key. Routing follows the policy, and the key is in no output.
#[tokio::test]
async fn a_mixed_configuration_routes_by_policy_and_never_shows_the_key() {
    const KEY: &str = "sk-mixed-9d2c7e4b1a";
    let Some(bin) = engine() else { return };
    let mut chat = Engine::start(&bin, &Engine::model_args("tiny-chat", &["--jinja"]), 0).await;
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let builtin = switchyard_sim::Fleet::builtin();
    let premium_fleet = switchyard_sim::Fleet {
        models: builtin
            .models
            .into_iter()
            .filter(|m| m.name.as_str() == "llama3.3:70b")
            .map(|mut m| {
                m.name = switchyard_core::ModelName::parse("premium-llama3.3:70b").unwrap();
                m
            })
            .collect(),
    };
    let provider =
        switchyard_sim::spawn(SimOptions { fleet: premium_fleet, api_key: Some(KEY.into()), ..SimOptions::default() })
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[routing]\nremote = \"fallback\"\n\n[breaker]\nfailure_threshold = 1\n\n\
             [[backends]]\nname = \"llamacpp\"\nurl = \"{}\"\n\n\
             [[backends]]\nname = \"premium\"\nurl = \"{}\"\napi_key_env = \"PREMIUM_KEY\"\n\
             price_input_per_mtok = 3.0\nprice_output_per_mtok = 15.0\n",
            chat.url,
            provider.url()
        ),
    )
    .unwrap();
    let env = [("PREMIUM_KEY", KEY), ("RUST_LOG", "debug")];
    let router =
        Binary::start(&sim.url(), dir.path(), &["--config", &config.display().to_string()], &env).await.unwrap();
    let via = Client { http: HttpClient::default(), base: router.url.clone() };
    let chat_auto =
        json!({"model": "auto:fast", "stream": false, "messages": [{"role": "user", "content": "Say hi."}]});
    let mut shown = String::new();

    // auto stays local (the simulator or the engine) while a local model can serve.
    let (status, headers, body) = via.post("/api/chat", chat_auto.clone()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let served = headers.get("x-switchyard-model").unwrap().to_str().unwrap().to_string();
    assert!(!served.starts_with("premium-"), "{served}");
    shown.push_str(&String::from_utf8_lossy(&body));
    // The engine by name, through the OpenAI surface.
    let v = via.json("/v1/chat/completions", greedy_chat("tiny-chat", false)).await;
    assert!(v["choices"][0]["message"]["content"].as_str().is_some_and(|c| !c.is_empty()));

    // Every local model fails (the simulator faulted, the engine killed): auto reaches the priced backend.
    let http = HttpClient::default();
    let fault = build_request(
        Method::POST,
        &format!("{}/sim/faults", sim.url()),
        Some(Bytes::from(json!({"error_status": 500}).to_string())),
    )
    .unwrap();
    assert!(http.send(fault).await.unwrap().status().is_success());
    chat.kill().await;
    let mut reached = None;
    for _ in 0..6 {
        let (status, headers, body) = via.post("/api/chat", chat_auto.clone()).await;
        shown.push_str(&String::from_utf8_lossy(&body));
        if status == StatusCode::OK {
            reached = headers.get("x-switchyard-model").map(|v| v.to_str().unwrap().to_string());
            break;
        }
    }
    assert_eq!(reached.as_deref(), Some("premium-llama3.3:70b"), "{shown}");

    for path in ["/admin/backends", "/admin/models", "/admin/decisions", "/metrics", "/api/tags", "/v1/models"] {
        shown.push_str(&String::from_utf8_lossy(&via.call(Method::GET, path, None).await.2));
    }
    shown.push_str(&String::from_utf8_lossy(&via.post("/admin/explain", json!({"prompt": "hi"})).await.2));
    let mut router = router;
    router.signal("TERM").await;
    let _ = tokio::time::timeout(Duration::from_secs(10), router.child.wait()).await;
    let logs = router.stderr();
    assert!(logs.contains("premium"), "debug logs were captured");
    assert!(!shown.contains(KEY) && !logs.contains(KEY), "the key leaked");
    assert!(!shown.contains("9d2c7e4b") && !logs.contains("9d2c7e4b"), "part of the key leaked");
    provider.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn fill_in_the_middle_reaches_llama_cpps_infill_and_a_model_without_fim_tokens_says_so() {
    let Some(bin) = engine() else { return };
    // tiny-chat has fill-in-the-middle tokens, tiny-chat-b has none.
    let fim = Engine::start(&bin, &Engine::model_args("tiny-chat", &[]), 0).await;
    let plain = Engine::start(&bin, &Engine::model_args("tiny-chat-b", &[]), 0).await;
    // One failure would open a model's breaker: a refused fill-in-the-middle must not count as one.
    let (sim, router, _dir) = router_with(&format!(
        "[breaker]\nfailure_threshold = 1\n\n[[backends]]\nname = \"fim\"\nurl = \"{}\"\n\n\
         [[backends]]\nname = \"plain\"\nurl = \"{}\"\n",
        fim.url, plain.url
    ))
    .await;
    let http = HttpClient::default();
    let direct = Client { http: http.clone(), base: fim.url.clone() };
    let via = Client { http, base: router.url.clone() };

    let (prefix, suffix) = ("def area(width, height):\n    ", "\n    return result\n");
    let engine_says = direct
        .json(
            "/infill",
            json!({"input_prefix": prefix, "input_suffix": suffix, "n_predict": 12, "temperature": 0, "seed": 1}),
        )
        .await;
    let middle = engine_says["content"].as_str().unwrap().to_string();
    assert!(engine_says["tokens_predicted"].as_u64().unwrap() > 0, "{engine_says}");
    // Why `/infill`: its OpenAI completions ignore a suffix (older releases refuse it), and continue the prefix alone.
    let completion = |with_suffix: bool| {
        let mut body = json!({"model": "tiny-chat", "prompt": prefix, "max_tokens": 12, "temperature": 0, "seed": 1});
        if with_suffix {
            body["suffix"] = json!(suffix);
        }
        let direct = direct.clone();
        async move { direct.json("/v1/completions", body).await["choices"][0]["text"].clone() }
    };
    assert_eq!(completion(true).await, completion(false).await);

    // Ollama's generate with a suffix (as Continue's autocomplete sends it), whole and streamed.
    let generate = json!({"model": "tiny-chat", "prompt": prefix, "suffix": suffix, "raw": true, "stream": false,
                          "options": {"num_predict": 12, "temperature": 0, "seed": 1}});
    let v = via.json("/api/generate", generate.clone()).await;
    assert_eq!(v["response"].as_str(), Some(middle.as_str()), "{v}");
    assert_eq!(v["done"], true);
    assert_eq!(v["eval_count"], engine_says["tokens_predicted"], "{v}");
    let mut streamed = generate;
    streamed["stream"] = json!(true);
    let (status, headers, body) = via.post("/api/generate", streamed).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("x-switchyard-model").unwrap(), "tiny-chat:latest");
    let lines = ndjson(&body);
    assert_eq!(lines.iter().filter_map(|l| l["response"].as_str()).collect::<String>(), middle);
    assert_eq!(lines.last().unwrap()["done"], true, "{lines:?}");

    // OpenAI's completions with a suffix.
    let v = via
        .json(
            "/v1/completions",
            json!({"model": "tiny-chat", "prompt": prefix, "suffix": suffix, "max_tokens": 12,
                   "temperature": 0, "seed": 1}),
        )
        .await;
    assert_eq!(v["choices"][0]["text"].as_str(), Some(middle.as_str()), "{v}");

    // The model offers fill-in-the-middle; one without the tokens gets a 400 that says why, and is not counted as
    // failing (its chat still works).
    let show = via.json("/api/show", json!({"model": "tiny-chat"})).await;
    assert!(show["capabilities"].as_array().unwrap().contains(&json!("insert")), "{show}");
    let refused = json!({"model": "tiny-chat-b", "prompt": prefix, "suffix": suffix, "stream": false});
    let (status, _, body) = via.post("/api/generate", refused.clone()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("cannot fill in the middle") && text.contains("Infill is not supported"), "{text}");
    let (status, _, body) = via.post("/api/generate", refused).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
    let chat = json!({"model": "tiny-chat-b", "stream": false, "options": {"num_predict": 4},
                      "messages": [{"role": "user", "content": "hi"}]});
    let chat = via.json("/api/chat", chat).await;
    assert_eq!(chat["done"], true, "{chat}");
    drop(router);
    sim.shutdown().await;
}
