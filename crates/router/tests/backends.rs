//! `[[backends]]`: an OpenAI-compatible server beside the local Ollama. A second simulator stands in for it (it
//! serves OpenAI's API too, and with `api_key` refuses requests without the key, as a provider does). Its models
//! are renamed `premium-*` so that they do not collide with the local ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Binary, Harness, start_with};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::config::{BackendConfig, BackendModel, BackendModelDetails, RemotePolicy};
use switchyard_sim::{Fleet, SimHandle, SimOptions};

/// A provider stand-in: the built-in fleet's `llama3.1:8b` and embedder as `premium-*`, answering instantly.
async fn provider(api_key: Option<&str>) -> SimHandle {
    provider_named("premium", api_key).await
}

/// `provider` with another prefix than `premium`.
async fn provider_named(prefix: &str, api_key: Option<&str>) -> SimHandle {
    let builtin = Fleet::builtin();
    let models = builtin
        .models
        .into_iter()
        .filter(|m| ["llama3.1:8b", "nomic-embed-text:latest"].contains(&m.name.as_str()))
        .map(|mut m| {
            m.name = ModelName::parse(&format!("{prefix}-{}", m.name.base())).unwrap();
            m
        })
        .collect();
    let opts = SimOptions { fleet: Fleet { models }, api_key: api_key.map(str::to_string), ..SimOptions::default() };
    switchyard_sim::spawn(opts).await.unwrap()
}

/// The built-in fleet's `llama3.1:8b` alone, renamed `name`.
fn llama_as(name: &str) -> Fleet {
    let models = Fleet::builtin()
        .models
        .into_iter()
        .filter(|m| m.name.as_str() == "llama3.1:8b")
        .map(|mut m| {
            m.name = ModelName::parse(name).unwrap();
            m
        })
        .collect();
    Fleet { models }
}

fn backend(url: &str, priced: bool) -> BackendConfig {
    BackendConfig {
        name: "premium".into(),
        url: url.to_string(),
        models: vec![
            BackendModel::Name("premium-llama3.1".into()),
            BackendModel::Detailed(BackendModelDetails {
                name: "premium-nomic-embed-text".into(),
                embedding: true,
                ..BackendModelDetails::default()
            }),
        ],
        price_input_per_mtok: if priced { 3.0 } else { 0.0 },
        price_output_per_mtok: if priced { 15.0 } else { 0.0 },
        ..BackendConfig::default()
    }
}

async fn with_provider(priced: bool, policy: RemotePolicy) -> (Harness, SimHandle) {
    let remote = provider(None).await;
    let url = remote.url();
    let h = start_with(SimOptions::default(), move |c| {
        c.backends = vec![backend(&url, priced)];
        c.routing.remote = policy;
    })
    .await;
    (h, remote)
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Write a haiku about trains."}]})
}

#[tokio::test]
async fn a_backends_models_are_listed_and_served_on_both_surfaces() {
    let (h, remote) = with_provider(false, RemotePolicy::Fallback).await;
    let tags = h.get("/api/tags").await.json();
    let names: Vec<&str> = tags["models"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(names.contains(&"premium-llama3.1:latest") && names.contains(&"llama3.2:3b"), "{names:?}");

    // Ollama's surface, buffered: the native shape, with the counts the backend reported.
    let a = h.post("/api/chat", chat("premium-llama3.1", false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["model"], "premium-llama3.1");
    assert_eq!(v["done"], true);
    assert!(!v["message"]["content"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["eval_count"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(a.header("x-switchyard-model"), Some("premium-llama3.1:latest"));

    // Ollama's surface, streamed: NDJSON ending in one done chunk.
    let a = h.post("/api/chat", chat("premium-llama3.1", true)).await;
    let lines = a.lines();
    assert!(lines.len() > 2, "{}", a.text());
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    let last = lines.last().unwrap();
    assert_eq!((last["done"].as_bool(), last["done_reason"].as_str()), (Some(true), Some("stop")), "{last}");
    let text: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    assert!(!text.is_empty());

    // Generate (a templated chat on the backend) and embeddings.
    let a =
        h.post("/api/generate", json!({"model": "premium-llama3.1", "prompt": "What is 2+2?", "stream": false})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.json()["response"].as_str().is_some_and(|r| !r.is_empty()));
    let a = h.post("/api/embed", json!({"model": "premium-nomic-embed-text", "input": ["a", "b"]})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["embeddings"].as_array().unwrap().len(), 2);

    // OpenAI's surface, streamed: SSE chunks naming the model, then [DONE].
    let a = h.post("/v1/chat/completions", chat("premium-llama3.1", true)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let events = a.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{}", a.text());
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    let a = h.post("/v1/embeddings", json!({"model": "premium-nomic-embed-text", "input": "hello"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(!a.json()["data"][0]["embedding"].as_array().unwrap().is_empty());

    // The backend's counters.
    let b = h.get("/admin/backends").await.json();
    let premium = b["backends"].as_array().unwrap().iter().find(|b| b["name"] == "premium").unwrap().clone();
    assert_eq!(premium["healthy"], true, "{premium}");
    assert_eq!(premium["requests"], 6, "{premium}");
    assert!(premium["output_tokens"].as_u64().unwrap() > 0, "{premium}");
    assert_eq!(premium["in_flight"], 0);
    assert_eq!(b["backends"][0]["name"], "ollama");
    let metrics = h.get("/metrics").await.text();
    assert!(metrics.contains("switchyard_backend_requests_total{backend=\"premium\",outcome=\"ok\"} 6"), "{metrics}");
    h.stop().await;
    remote.shutdown().await;
}

#[tokio::test]
async fn a_priced_backend_serves_auto_only_when_no_local_model_can() {
    let (h, remote) = with_provider(true, RemotePolicy::Fallback).await;
    let a = h.post("/api/chat", chat("auto", false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(!a.header("x-switchyard-model").unwrap().starts_with("premium-"), "local models first");
    let explain = h.post("/admin/explain", json!({"prompt": "Write a haiku about trains."})).await.json();
    let premium = explain["scoring"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["backend"] == "premium")
        .unwrap()
        .clone();
    assert!(premium["cost"].as_f64().unwrap() > 0.0, "{premium}");
    assert_eq!(premium["fallback_only"], true);

    // Every local model fails: the request crosses to the priced backend before its first byte.
    h.fault(json!({"error_status": 500, "error_message": "model crashed"})).await;
    let a = h.post("/api/chat", chat("auto", true)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-switchyard-model"), Some("premium-llama3.1:latest"));
    assert_eq!(a.lines().last().unwrap()["done"], true);
    let b = h.get("/admin/backends").await.json();
    assert!(b["backends"][1]["spend"].as_f64().unwrap() > 0.0, "{b}");
    h.stop().await;
    remote.shutdown().await;
}

#[tokio::test]
async fn remote_never_keeps_auto_local_and_scored_weighs_cost() {
    let (h, remote) = with_provider(true, RemotePolicy::Never).await;
    h.fault(json!({"error_status": 500, "error_message": "model crashed"})).await;
    let a = h.post("/api/chat", chat("auto", false)).await;
    assert_ne!(a.status, StatusCode::OK, "{}", a.text());
    assert!(!a.text().contains("premium"), "{}", a.text());
    // A model named explicitly is still served.
    let a = h.post("/api/chat", chat("premium-llama3.1", false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    h.stop().await;
    remote.shutdown().await;

    // Scored: the same priced model wins with no cost weight and loses to local ones with a heavy one.
    for (weight, remote_first) in [(0.0, true), (1000.0, false)] {
        let remote = provider(None).await;
        let url = remote.url();
        let h = start_with(SimOptions::default(), move |c| {
            c.backends = vec![backend(&url, true)];
            c.routing.remote = RemotePolicy::Scored;
            c.routing.cost_weight = weight;
            // Unprofiled everywhere: quality is the prior, so speed decides; the backend is always warm.
            c.routing.quality_preference = 0.0;
        })
        .await;
        let explain = h.post("/admin/explain", json!({"prompt": "Write a haiku about trains."})).await.json();
        let first = explain["scoring"]["candidates"][0]["backend"].as_str().unwrap().to_string();
        assert_eq!(first == "premium", remote_first, "cost_weight {weight}: {explain}");
        h.stop().await;
        remote.shutdown().await;
    }
}

#[tokio::test]
async fn a_failing_backend_opens_its_breaker_and_auto_moves_on() {
    let remote = provider(None).await;
    let url = remote.url();
    let h = start_with(SimOptions::default(), move |c| {
        c.backends = vec![backend(&url, false)];
        c.breaker.failure_threshold = 1;
    })
    .await;
    let fault = json!({"error_status": 500, "error_message": "engine crashed"});
    let set = h.call(Method::POST, &format!("{}/sim/faults", remote.url()), Some(fault.to_string().into()), &[]).await;
    assert!(set.status.is_success());
    let a = h.post("/api/chat", chat("premium-llama3.1", false)).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text());
    assert!(a.text().contains("backend premium"), "the error names the backend: {}", a.text());
    let b = h.get("/admin/backends").await.json();
    assert_eq!(b["backends"][1]["breaker_open"], json!(["premium-llama3.1:latest"]), "{b}");
    assert_eq!(b["backends"][1]["failures"], 1);
    h.stop().await;
    remote.shutdown().await;
}

/// An engine may refuse what the router could only guess it does (vLLM without a tool parser answers 400 to tools,
/// llama-server to a prompt over its context): `auto` moves on to the next candidate, a named model gets the 400,
/// and neither that nor a provider's rate limit counts against the model.
#[tokio::test]
async fn an_engines_4xx_moves_auto_on_and_a_rate_limit_opens_no_breaker() {
    let (alpha, beta) = (provider_named("alpha", None).await, provider_named("beta", None).await);
    let (alpha_url, beta_url) = (alpha.url(), beta.url());
    let h = start_with(SimOptions::default(), move |c| {
        c.ollama.enabled = false;
        let engine = |name: &str, url: &str| BackendConfig {
            name: name.into(),
            url: url.to_string(),
            models: vec![BackendModel::Name(format!("{name}-llama3.1"))],
            ..BackendConfig::default()
        };
        c.backends = vec![engine("alpha", &alpha_url), engine("beta", &beta_url)];
        c.breaker.failure_threshold = 1;
    })
    .await;
    let explain = h.post("/admin/explain", json!({"prompt": "Write a haiku about trains."})).await.json();
    let first = explain["chosen"].as_str().unwrap().to_string();
    let (refusing, other) = if first.starts_with("alpha") { (&alpha, "beta") } else { (&beta, "alpha") };
    let refuse =
        json!({"error_status": 400, "error_message": "\"auto\" tool choice requires --enable-auto-tool-choice"});
    let set =
        h.call(Method::POST, &format!("{}/sim/faults", refusing.url()), Some(refuse.to_string().into()), &[]).await;
    assert!(set.status.is_success());
    let a = h.post("/api/chat", chat("auto", false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.header("x-switchyard-model").unwrap().starts_with(other), "the next candidate served it");
    // Named, the model's own 400 is the answer.
    let a = h.post("/api/chat", chat(&first, false)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("tool choice"), "{}", a.text());
    // A rate limit (429) is the provider's: the breaker (threshold 1) stays closed.
    let limit = json!({"error_status": 429, "error_message": "rate limited", "retry_after_secs": 17});
    let set =
        h.call(Method::POST, &format!("{}/sim/faults", refusing.url()), Some(limit.to_string().into()), &[]).await;
    assert!(set.status.is_success());
    let a = h.post("/api/chat", chat(&first, false)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.header("retry-after"), Some("17"), "a 429 is a 503 with the provider's Retry-After");
    let backends = h.get("/admin/backends").await.json();
    let open: Vec<&Value> =
        backends["backends"].as_array().unwrap().iter().flat_map(|b| b["breaker_open"].as_array().unwrap()).collect();
    assert!(open.is_empty(), "{backends}");
    h.stop().await;
    alpha.shutdown().await;
    beta.shutdown().await;
}

/// A reasoning model behind an OpenAI-compatible API refuses `max_tokens` (it wants `max_completion_tokens`) and
/// `temperature`: the router sends the request again without them, once per field, and remembers the model, so the
/// next request goes through at the first try. Fields that carry the request are never dropped.
#[tokio::test]
async fn a_refused_request_field_is_renamed_or_left_out_and_remembered() {
    let remote = switchyard_sim::spawn(SimOptions {
        fleet: llama_as("premium-llama3.1"),
        refused_params: vec!["max_tokens".into(), "temperature".into()],
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let url = remote.url();
    let h = start_with(SimOptions::default(), move |c| {
        c.backends = vec![BackendConfig {
            name: "premium".into(),
            url: url.to_string(),
            models: vec![BackendModel::Name("premium-llama3.1".into())],
            ..BackendConfig::default()
        }];
    })
    .await;
    let stats = || async {
        let a = h.call(Method::GET, &format!("{}/sim/stats", remote.url()), None, &[]).await;
        a.json()["inference_requests"].as_u64().unwrap()
    };
    let body = json!({"model": "premium-llama3.1", "max_tokens": 5, "temperature": 0.2,
        "messages": [{"role": "user", "content": "Write a haiku about trains."}]});
    let a = h.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["usage"]["completion_tokens"], 5, "the limit reached the model as max_completion_tokens: {v}");
    assert_eq!(stats().await, 3, "refused twice (max_tokens, then temperature), then served");
    // Remembered: one request upstream for the next one, streamed or not, on either surface.
    let a = h.post("/v1/chat/completions", body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(stats().await, 4);
    let native = json!({"model": "premium-llama3.1", "stream": true, "options": {"num_predict": 3, "temperature": 0.5},
        "messages": [{"role": "user", "content": "Write a haiku about trains."}]});
    let a = h.post("/api/chat", native).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let lines: Vec<Value> = a.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.last().unwrap()["eval_count"], 3, "{}", a.text());
    assert_eq!(stats().await, 5);
    h.stop().await;
    remote.shutdown().await;
}

/// An older llama.cpp server behind a proxy that does not say what it is (llama-swap lists the models as its own): its
/// `/v1/completions` refuses a `suffix`, so fill-in-the-middle moves to its `/infill`, and stays there.
#[tokio::test]
async fn fill_in_the_middle_moves_to_infill_when_completions_refuse_a_suffix() {
    let models = Fleet::builtin()
        .models
        .into_iter()
        .filter(|m| ["qwen2.5-coder:7b", "llama3.1:8b"].contains(&m.name.as_str()))
        .map(|mut m| {
            m.name = ModelName::parse(&format!("premium-{}", m.name.base())).unwrap();
            m
        })
        .collect();
    let opts = SimOptions { fleet: Fleet { models }, llama_infill: true, ..SimOptions::default() };
    let remote = switchyard_sim::spawn(opts).await.unwrap();
    let url = remote.url();
    // Both configured as filling in the middle; the second has no tokens for it. The url is the API's base, as
    // providers document theirs (`.../v1`): the OpenAI calls go under it, `/infill` to the server's root.
    let url = format!("{url}/v1/");
    let fim = |name: &str| {
        BackendModel::Detailed(BackendModelDetails {
            name: name.into(),
            insert: true,
            ..BackendModelDetails::default()
        })
    };
    let h = start_with(SimOptions::default(), move |c| {
        c.backends = vec![BackendConfig {
            name: "swap".into(),
            url: url.to_string(),
            models: vec![fim("premium-qwen2.5-coder"), fim("premium-llama3.1")],
            ..BackendConfig::default()
        }];
        c.ollama.catalog_refresh_secs = 1;
        // One failure would open a model's breaker: a refused fill-in-the-middle must not count as one.
        c.breaker.failure_threshold = 1;
    })
    .await;
    let stats = || async {
        let a = h.call(Method::GET, &format!("{}/sim/stats", remote.url()), None, &[]).await;
        a.json()["inference_requests"].as_u64().unwrap()
    };
    let generate = |model: &str, stream: bool| {
        json!({"model": model, "prompt": "def area(w, h):\n    ", "suffix": "\n    return a", "stream": stream,
            "options": {"num_predict": 6}})
    };
    let a = h.post("/api/generate", generate("premium-qwen2.5-coder", false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert!(!v["response"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!((v["eval_count"].as_u64(), v["done_reason"].as_str()), (Some(6), Some("length")), "{v}");
    assert_eq!(stats().await, 2, "refused on /v1/completions, then served by /infill");
    // Remembered: straight to /infill, streamed, and from OpenAI's surface.
    let a = h.post("/api/generate", generate("premium-qwen2.5-coder", true)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let lines: Vec<Value> = a.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 2, "{}", a.text());
    let last = lines.last().unwrap();
    assert_eq!((last["done"].as_bool(), last["eval_count"].as_u64()), (Some(true), Some(6)), "{}", a.text());
    let body = json!({"model": "premium-qwen2.5-coder", "prompt": "def f(", "suffix": "return 1", "max_tokens": 4});
    let a = h.post("/v1/completions", body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["usage"]["completion_tokens"], 4, "{}", a.text());
    assert_eq!(stats().await, 4);
    let inserts = |model: &'static str| {
        let h = &h;
        async move {
            let caps = h.post("/api/show", json!({"model": model})).await.json()["capabilities"].clone();
            caps.as_array().unwrap().contains(&json!("insert"))
        }
    };
    assert!(inserts("premium-llama3.1").await, "configured so, until the server says otherwise");
    // A backend model's name in another case is that model, as a request to it is.
    let shown = h.post("/api/show", json!({"model": "Premium-Llama3.1"})).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert!(shown.json()["modelfile"].as_str().unwrap().starts_with("# premium-llama3.1:latest: "), "{}", shown.text());
    // A model without fill-in-the-middle tokens: a 400 that says so, and its chat is not held against it.
    let a = h.post("/api/generate", generate("premium-llama3.1", false)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("cannot fill in the middle") && a.text().contains("Infill is not supported"));
    // Again (the server's answer, or the router's own once the catalog knows): still a 400.
    let a = h.post("/api/generate", generate("premium-llama3.1", false)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    let a = h.post("/api/chat", chat("premium-llama3.1", false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // From the next catalog refresh on, the model no longer offers it (so `auto` passes it over); the other does.
    assert!(common::eventually(Duration::from_secs(10), || async { !inserts("premium-llama3.1").await }).await);
    assert!(inserts("premium-qwen2.5-coder").await);
    h.stop().await;
    remote.shutdown().await;
}

/// The real binary with a mixed configuration: the key reaches the provider (which refuses requests without it)
/// and appears in no log line, `/admin` answer or error.
#[tokio::test]
async fn the_api_key_is_sent_to_its_backend_only_and_never_shown() {
    const KEY: &str = "sk-test-5f1e9c0d2b7a4e8f";
    let local = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let remote = provider(Some(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[routing]\nremote = \"fallback\"\n\n[[backends]]\nname = \"premium\"\nkind = \"openai\"\nurl = \"{}\"\n\
             api_key_env = \"PREMIUM_KEY\"\nmodels = [\"premium-llama3.1\"]\nprice_input_per_mtok = 3.0\n\
             price_output_per_mtok = 15.0\n",
            remote.url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [("PREMIUM_KEY", KEY), ("RUST_LOG", "debug")];
    let bin = Binary::start(&local.url(), dir.path(), &["--config", &config], &env).await.unwrap();
    let http = switchyard_core::http::HttpClient::default();
    let call = |method: Method, path: &str, body: Option<Value>| {
        let url = format!("{}{path}", bin.url);
        let http = http.clone();
        async move {
            let req =
                switchyard_core::http::build_request(method, &url, body.map(|b| bytes::Bytes::from(b.to_string())))
                    .unwrap();
            let resp = http.send(req).await.unwrap();
            let status = resp.status();
            let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = call(Method::POST, "/api/chat", Some(chat("premium-llama3.1", false))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(Method::POST, "/v1/chat/completions", Some(chat("premium-llama3.1", true))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An error answer, searched for the key below with the rest.
    let (status, error) = call(Method::POST, "/api/chat", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Every local model fails: auto falls back to the provider.
    let fault = json!({"error_status": 500});
    let set = http
        .send(
            switchyard_core::http::build_request(
                Method::POST,
                &format!("{}/sim/faults", local.url()),
                Some(fault.to_string().into()),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(set.status().is_success());
    let (status, body) = call(Method::POST, "/api/chat", Some(chat("auto", false))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("premium-llama3.1"), "{body}");

    let auth = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.send(switchyard_core::http::build_request(Method::GET, &url, None).unwrap()).await.unwrap();
            let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&body).unwrap()
        }
    };
    let remote_auth = auth(format!("{}/sim/auth", remote.url())).await;
    assert_eq!(remote_auth["refused"], 0, "every request to the provider carried its key: {remote_auth}");
    assert!(remote_auth["with_authorization"].as_u64().unwrap() >= 3, "{remote_auth}");
    let local_auth = auth(format!("{}/sim/auth", local.url())).await;
    assert_eq!(local_auth["with_authorization"], 0, "the key never went to Ollama: {local_auth}");

    let mut shown = error;
    for path in ["/admin/backends", "/admin/models", "/admin/vram", "/admin/decisions", "/metrics", "/api/tags"] {
        let (_, body) = call(Method::GET, path, None).await;
        shown.push_str(&body);
    }
    let (_, body) = call(Method::POST, "/admin/explain", Some(json!({"prompt": "hi"}))).await;
    shown.push_str(&body);
    assert!(shown.contains("\"authenticated\":true"), "{shown}");
    let mut stop = bin;
    stop.signal("TERM").await;
    let _ = tokio::time::timeout(Duration::from_secs(10), stop.child.wait()).await;
    let logs = stop.stderr();
    assert!(logs.contains("premium"), "debug logs were captured: {logs}");
    assert!(!shown.contains(KEY) && !logs.contains(KEY), "the key leaked");
    assert!(!shown.contains("5f1e9c0d") && !logs.contains("5f1e9c0d"), "part of the key leaked");
    local.shutdown().await;
    remote.shutdown().await;
}

/// `switchyard profile --backend` on a priced backend: the estimate first, nothing sent without `--yes`.
#[tokio::test]
async fn profiling_a_priced_backend_needs_yes_and_then_stores_its_profile() {
    let local = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let remote = provider(None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[backends]]\nname = \"premium\"\nurl = \"{}\"\nmodels = [\"premium-llama3.1\"]\n\
             price_input_per_mtok = 3.0\nprice_output_per_mtok = 15.0\n",
            remote.url()
        ),
    )
    .unwrap();
    let run = |extra: &'static [&'static str]| {
        let config = config.display().to_string();
        let db = format!("sqlite://{}", dir.path().join("switchyard.db").display());
        let ollama = local.url();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(["--config", &config, "profile", "--backend", "premium", "--categories", "math"])
                .args(["--items-per-category", "2"])
                .args(extra)
                .env("SWITCHYARD_OLLAMA_URL", ollama)
                .env("SWITCHYARD_VRAM_PROBE", "sim")
                .env("SWITCHYARD_DATABASE_URL", db)
                .output()
                .await
                .unwrap()
        }
    };
    let refused = run(&[]).await;
    let stdout = String::from_utf8_lossy(&refused.stdout).to_string();
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{stdout}");
    assert!(stdout.contains("backend premium is priced") && stdout.contains("input tokens"), "{stdout}");
    assert!(stderr.contains("--yes"), "{stderr}");
    let sent = |url: String| async move {
        let http = switchyard_core::http::HttpClient::default();
        let v: Value = http.get_json(&format!("{url}/api/ps"), Duration::from_secs(5)).await.unwrap();
        v
    };
    let backends_before = sent(remote.url()).await;
    assert_eq!(backends_before["models"], json!([]), "nothing was sent to the provider: {backends_before}");

    let done = run(&["--yes"]).await;
    let stdout = String::from_utf8_lossy(&done.stdout).to_string();
    assert!(done.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&done.stderr));
    assert!(stdout.contains("premium-llama3.1:latest") && stdout.contains("2 item(s) run"), "{stdout}");
    local.shutdown().await;
    remote.shutdown().await;
}

/// The provider stand-in behind TLS, with a self-signed certificate for `localhost`.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            // A client that refuses the certificate fails its handshake; wait for the next one.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[tokio::test]
async fn an_https_backend_is_reached_over_tls_and_its_certificate_is_checked() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config)) };
    let fleet = llama_as("premium-llama3.1:latest");
    let sim = switchyard_sim::SimState::new(&SimOptions { fleet, ..SimOptions::default() }).unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, switchyard_sim::app(sim)).await });

    let url = format!("https://localhost:{port}");
    let ca_path = ca.display().to_string();
    let h = start_with(SimOptions::default(), move |c| {
        let mut trusted = backend(&url, false);
        trusted.ca_file = ca_path;
        c.backends = vec![trusted];
    })
    .await;
    let a = h.post("/api/chat", chat("premium-llama3.1", false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["done"], true);
    let b = h.get("/admin/backends").await.json();
    assert_eq!(b["backends"][1]["healthy"], true, "listed over TLS: {b}");
    h.stop().await;

    // Without the CA the same server is refused: its certificate is checked.
    let url = format!("https://localhost:{port}");
    let h = start_with(SimOptions::default(), move |c| c.backends = vec![backend(&url, false)]).await;
    let b = h.get("/admin/backends").await.json();
    let error = b["backends"][1]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.to_lowercase().contains("certificate"), "{b}");
    let a = h.post("/api/chat", chat("premium-llama3.1", false)).await;
    assert_ne!(a.status, StatusCode::OK, "{}", a.text());
    h.stop().await;
    server.abort();
}
