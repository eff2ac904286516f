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

#[tokio::test]
async fn clients_with_different_load_options_do_not_force_reloads() {
    let h = start().await;
    let loads = |v: serde_json::Value| v["counters"]["loads"].as_u64().unwrap();
    let before = loads(h.sim_gpu().await);
    for (num_ctx, num_gpu) in [(2048, 10), (8192, 99), (32768, 1)] {
        let a = h
            .post("/api/generate", json!({"model": "llama3.1:8b", "prompt": "hi", "stream": false, "options": {"num_ctx": num_ctx, "num_gpu": num_gpu}}))
            .await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let a = h
        .post("/v1/chat/completions", json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(loads(h.sim_gpu().await) - before, 1, "one load for four clients with different options");
    let ps = h.get("/api/ps").await.json();
    assert_eq!(ps["models"][0]["context_length"], 4096, "loaded with the normalised vram.num_ctx");
    h.stop().await;
}

#[tokio::test]
async fn decisions_are_kept_in_memory_and_sampled_into_the_store() {
    let h = start().await;
    for i in 0..3 {
        let a = h.post("/api/chat", json!({"model": "auto", "stream": false, "messages": [{"role": "user", "content": format!("What is {i} + 2?")}]})).await;
        assert_eq!(a.status, 200);
    }
    let memory = h.get("/admin/decisions?limit=2").await.json();
    let decisions = memory["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["scoring"]["category"], "math");
    assert!(decisions[0]["scoring"]["candidates"].as_array().unwrap().len() >= 6);
    // The harness samples every decision into the store; the writer is asynchronous.
    let stored = common::eventually(std::time::Duration::from_secs(10), || async {
        h.get("/admin/decisions?source=store").await.json()["decisions"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;
    assert!(stored);
    assert_eq!(h.get("/admin/decisions?source=elsewhere").await.status, 400);
    h.stop().await;
}

/// Reads `body` until `lines` non-empty lines have arrived, returning how many frames carried them.
async fn frames_until_lines(body: &mut hyper::body::Incoming, lines: usize) -> usize {
    let mut seen = 0;
    let mut frames = 0;
    while seen < lines {
        let frame = http_body_util::BodyExt::frame(body).await.expect("the stream went on").unwrap();
        let Ok(data) = frame.into_data() else { continue };
        frames += 1;
        seen += data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    }
    frames
}

#[tokio::test]
async fn streamed_tokens_are_relayed_while_the_model_is_still_generating() {
    // At time scale 5 a token takes about 30 ms and 100 000 of them would take most of an hour: whatever the
    // client reads before the deadline was relayed while the simulator was still generating.
    let h = common::start_with(switchyard_sim::SimOptions { time_scale: 5.0, ..Default::default() }, |_| {}).await;
    let loaded = h.post("/admin/vram/load", json!({"model": "llama3.2:3b"})).await;
    assert_eq!(loaded.status, 200, "{}", loaded.text());
    let requests = [
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "options": {"num_predict": 100_000},
                              "messages": [{"role": "user", "content": "Tell me a long story"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "llama3.2:3b", "stream": true, "max_tokens": 100_000,
                                         "messages": [{"role": "user", "content": "Tell me a long story"}]}),
        ),
    ];
    for (path, body) in requests {
        let request =
            switchyard_core::http::build_request(http::Method::POST, &h.url(path), Some(body.to_string().into()))
                .unwrap();
        let response = h.http.send(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let mut body = response.into_body();
        let frames = tokio::time::timeout(std::time::Duration::from_secs(60), frames_until_lines(&mut body, 8))
            .await
            .unwrap_or_else(|_| panic!("{path}: eight lines did not arrive while the model was generating"));
        assert!(frames >= 3, "{path}: eight token lines came in {frames} frame(s), as if buffered");
        assert_eq!(h.in_flight("llama3.2:3b").await, 1, "{path}: the generation is still running");
        drop(body);
        let freed =
            common::eventually(std::time::Duration::from_secs(10), || async { h.in_flight("llama3.2:3b").await == 0 })
                .await;
        assert!(freed, "{path}: dropping the stream released the model");
    }
    h.stop().await;
}

#[tokio::test]
async fn null_options_are_ignored_as_ollama_does() {
    // What LangChain's OllamaEmbeddings and LlamaIndex's Ollama send by default.
    let h = start().await;
    let nulls = json!({"mirostat": null, "temperature": null, "num_predict": null, "num_ctx": null, "stop": null});
    let chat = h
        .post(
            "/api/chat",
            json!({"model": "auto", "stream": false, "options": nulls, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(chat.status, 200, "{}", chat.text());
    let generate = h
        .post("/api/generate", json!({"model": "llama3.2:3b", "stream": false, "prompt": "hi", "options": nulls}))
        .await;
    assert_eq!(generate.status, 200, "{}", generate.text());
    let embed = h.post("/api/embed", json!({"model": "nomic-embed-text", "input": "hi", "options": nulls})).await;
    assert_eq!(embed.status, 200, "{}", embed.text());
    // A wrong type is still refused.
    let bad = h
        .post(
            "/api/generate",
            json!({"model": "llama3.2:3b", "stream": false, "prompt": "hi", "options": {"mirostat": "x"}}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    h.stop().await;
}

#[tokio::test]
async fn each_virtual_model_has_its_own_stable_digest() {
    let h = start().await;
    let digests = |v: serde_json::Value| -> Vec<(String, String)> {
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"].as_str().unwrap().starts_with("auto"))
            .map(|m| (m["name"].as_str().unwrap().to_string(), m["digest"].as_str().unwrap().to_string()))
            .collect()
    };
    let first = digests(h.get("/api/tags").await.json());
    assert_eq!(first.len(), 3, "{first:?}");
    for (name, digest) in &first {
        assert_eq!(digest.len(), 64, "{name}: {digest}");
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{name}: {digest}");
    }
    let mut unique: Vec<&String> = first.iter().map(|(_, d)| d).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "the virtual models share a digest: {first:?}");
    assert_eq!(digests(h.get("/api/tags").await.json()), first, "digests are stable");
    h.stop().await;
}

#[tokio::test]
async fn auto_only_picks_models_that_can_think_or_fill_in_the_middle_when_asked() {
    let h = start().await;
    let think = |model: &str| json!({"model": model, "stream": false, "think": true, "messages": [{"role": "user", "content": "What is 2 + 2?"}]});
    for model in ["auto", "auto:fast", "auto:quality"] {
        let a = h.post("/api/chat", think(model)).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        assert_eq!(a.header("x-switchyard-model"), Some("deepseek-r1:14b"), "{model}: the only thinking model");
    }
    let effort = h
        .post(
            "/v1/chat/completions",
            json!({"model": "auto:fast", "reasoning_effort": "low", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}),
        )
        .await;
    assert_eq!(effort.status, 200, "{}", effort.text());
    assert_eq!(effort.header("x-switchyard-model"), Some("deepseek-r1:14b"));
    let fim = h
        .post("/api/generate", json!({"model": "auto:fast", "stream": false, "prompt": "def add(a, b):\n    ", "suffix": "\n    return c"}))
        .await;
    assert_eq!(fim.status, 200, "{}", fim.text());
    assert_eq!(fim.header("x-switchyard-model"), Some("qwen2.5-coder:7b"), "the only insert model");
    // `think: false` needs nothing; an explicit model that cannot think is told so; a wrong type is refused.
    let off = h
        .post("/api/chat", json!({"model": "auto:fast", "stream": false, "think": false, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(off.status, 200, "{}", off.text());
    let explicit = h.post("/api/chat", think("llama3.2:3b")).await;
    assert_eq!(explicit.status, 400, "{}", explicit.text());
    assert!(explicit.text().contains("does not support thinking"), "{}", explicit.text());
    let wrong = h
        .post("/api/chat", json!({"model": "auto", "think": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    h.stop().await;
}

/// Ollama takes a thinking level only from gpt-oss and refuses any other model's with a 400, where `true` works.
/// Through the router a level (`think: "high"`, or OpenAI's `reasoning_effort`) to another thinking model is asked
/// again as `true` on the same lease, and the model is remembered: its next request is sent `true` at once.
#[tokio::test]
async fn thinking_levels_are_asked_again_as_true_of_models_that_refuse_them() {
    let h = start().await;
    let sim_requests = || async {
        let url = format!("{}/sim/stats", h.sim.url());
        h.call(hyper::Method::GET, &url, None, &[]).await.json()["inference_requests"].as_u64().unwrap()
    };
    let chat = |think: serde_json::Value| {
        json!({"model": "deepseek-r1:14b", "stream": false, "think": think,
               "messages": [{"role": "user", "content": "Is 91 prime?"}]})
    };
    // Straight to the simulator, as to Ollama: the level is refused.
    let direct = h
        .call(
            hyper::Method::POST,
            &format!("{}/api/chat", h.sim.url()),
            Some(chat(json!("high")).to_string().into()),
            &[],
        )
        .await;
    assert_eq!(direct.status, 400, "{}", direct.text());
    assert!(direct.text().contains(r#"think value \"high\" is not supported for this model"#), "{}", direct.text());
    // Loaded first, so that the counts below are the chat requests alone.
    assert_eq!(h.post("/api/chat", chat(json!(true))).await.status, 200);
    let before = sim_requests().await;
    let first = h.post("/api/chat", chat(json!("high"))).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(!first.json()["message"]["thinking"].as_str().unwrap_or_default().is_empty(), "it thought");
    let after_first = sim_requests().await;
    assert_eq!(after_first - before, 2, "refused, then asked with think true");
    let second = h.post("/api/chat", chat(json!("low"))).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(sim_requests().await - after_first, 1, "the model's refusal is remembered");
    // OpenAI's effort, either spelling, under `auto` and named.
    for body in [
        json!({"model": "deepseek-r1:14b", "reasoning_effort": "high", "messages": [{"role": "user", "content": "Is 91 prime?"}]}),
        json!({"model": "auto:fast", "reasoning": {"effort": "medium"}, "messages": [{"role": "user", "content": "Is 91 prime?"}]}),
    ] {
        let a = h.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(a.status, 200, "{body}: {}", a.text());
        assert_eq!(a.header("x-switchyard-model"), Some("deepseek-r1:14b"));
        assert!(!a.json()["choices"][0]["message"]["reasoning"].as_str().unwrap_or_default().is_empty(), "{body}");
    }
    h.stop().await;
}

/// Ollama matches model names without regard to case and takes any message role; so does the router.
#[tokio::test]
async fn model_names_in_another_case_and_unknown_roles_are_served_as_ollama_serves_them() {
    let h = start().await;
    for model in ["Llama3.2:3B", "LLAMA3.2:3b"] {
        let a = h
            .post(
                "/api/chat",
                json!({"model": model, "stream": false, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        assert_eq!(a.header("x-switchyard-model"), Some("llama3.2:3b"), "{model}");
        assert_eq!(a.json()["model"], model, "the client's own spelling is echoed, as Ollama does");
    }
    let openai = h
        .post(
            "/v1/chat/completions",
            json!({"model": "Qwen2.5-Coder:7B", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(openai.status, 200, "{}", openai.text());
    assert_eq!(openai.header("x-switchyard-model"), Some("qwen2.5-coder:7b"));
    let vram = h.get("/admin/vram").await.json();
    let names: Vec<&str> = vram["models"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(!names.iter().any(|n| n.chars().any(|c| c.is_ascii_uppercase())), "one ledger entry per model: {names:?}");
    let missing =
        h.post("/api/chat", json!({"model": "Llama9:3b", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    let narrator = h
        .post(
            "/api/chat",
            json!({"model": "llama3.2:3b", "stream": false,
                   "messages": [{"role": "narrator", "content": "The scene is a ship."}, {"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(narrator.status, 200, "{}", narrator.text());
    h.stop().await;
}

/// An empty batch to embed under `auto` (LangChain's `embed_documents([])`) gets no vectors from an embedding model,
/// as an empty text does and as Ollama answers a named model; an empty chat under `auto` is still a 400 that says why.
#[tokio::test]
async fn auto_answers_an_empty_embedding_batch_with_no_vectors() {
    let h = start().await;
    for input in [json!([]), json!("")] {
        let a = h.post("/api/embed", json!({"model": "auto", "input": input})).await;
        assert_eq!(a.status, 200, "{input}: {}", a.text());
        let v = a.json();
        assert_eq!(v["embeddings"], json!([]), "{v}");
        assert!(v["model"].as_str().unwrap().starts_with("nomic-embed-text"), "{v}");
    }
    let a = h.post("/api/chat", json!({"model": "auto", "messages": []})).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("auto needs a prompt"), "{}", a.text());
    let a = h.post("/api/embed", json!({"model": "auto", "input": [], "keep_alive": 0})).await;
    assert_eq!(a.status, 400, "an unload of nothing in particular: {}", a.text());
    h.stop().await;
}
