//! The response cache end to end, against the simulator: hits on both surfaces (the simulator sees one request),
//! replays in each surface's shape, what misses, the per-request directives, eviction, invalidation, persistence
//! across restarts and replicas, and a store that dies under it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{Harness, start_with};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchyard::server;
use switchyard_core::config::Config;
use switchyard_sim::SimOptions;

async fn cached(tweak: impl FnOnce(&mut Config)) -> Harness {
    start_with(SimOptions::default(), |c| {
        c.cache.enabled = true;
        tweak(c);
    })
    .await
}

async fn sim_requests(h: &Harness) -> u64 {
    let a = h.call(Method::GET, &format!("{}/sim/stats", h.sim.url()), None, &[]).await;
    a.json()["inference_requests"].as_u64().unwrap()
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "llama3.2:3b", "stream": stream, "options": {"temperature": 0},
           "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]})
}

/// The answer without the fields that differ between two answers to one request.
fn comparable(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("created_at");
    v.as_object_mut().unwrap().remove("created");
    v.as_object_mut().unwrap().remove("id");
    v
}

/// `chat` with OpenAI's default `top_p` (1, where Ollama's is 0.9), so that the same question asked through
/// OpenAI's API with `temperature: 0` is the same request.
fn chat_as_openai(content: &str, stream: bool) -> Value {
    let mut v = chat(content, stream);
    v["options"]["top_p"] = json!(1.0);
    v
}

#[tokio::test]
async fn a_repeated_request_is_answered_from_the_cache_on_both_surfaces() {
    let h = cached(|_| {}).await;
    let chat = chat_as_openai;
    let first = h.post("/api/chat", chat("What is the capital of France?", false)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.header("x-switchyard-cache"), Some("miss"));
    let reached = sim_requests(&h).await;

    // Buffered again: the same answer (but for its time), the model that answered in the header.
    let again = h.post("/api/chat", chat("What is the capital of France?", false)).await;
    assert_eq!(again.header("x-switchyard-cache"), Some("hit"));
    assert_eq!(again.header("x-switchyard-model"), Some("llama3.2:3b"));
    assert_eq!(comparable(again.json()), comparable(first.json()));
    assert_ne!(again.json()["created_at"], Value::Null);

    // Streamed: NDJSON with the whole text, then the final chunk with the original counts and timings.
    let streamed = h.post("/api/chat", chat("What is the capital of France?", true)).await;
    assert_eq!(streamed.header("x-switchyard-cache"), Some("hit"));
    assert_eq!(streamed.header("content-type"), Some("application/x-ndjson"));
    let lines = streamed.lines();
    let text: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    assert_eq!(text, first.json()["message"]["content"].as_str().unwrap());
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    for k in ["eval_count", "prompt_eval_count", "total_duration", "done_reason"] {
        assert_eq!(last[k], first.json()[k], "{k}");
    }
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));

    // The same question through OpenAI's API finds the same entry; both shapes, with usage and [DONE].
    let oa = json!({"model": "llama3.2:3b", "temperature": 0,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]});
    let a = h.post("/v1/chat/completions", oa.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-switchyard-cache"), Some("hit"), "the key does not depend on the surface");
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], first.json()["message"]["content"]);
    assert_eq!(v["usage"]["completion_tokens"], first.json()["eval_count"]);
    let mut streaming = oa;
    streaming["stream"] = json!(true);
    streaming["stream_options"] = json!({"include_usage": true});
    let a = h.post("/v1/chat/completions", streaming).await;
    assert_eq!(a.header("x-switchyard-cache"), Some("hit"));
    assert!(a.header("content-type").unwrap().starts_with("text/event-stream"));
    let events = a.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, first.json()["message"]["content"].as_str().unwrap());
    assert!(chunks.iter().any(|c| c["usage"]["completion_tokens"] == first.json()["eval_count"]), "{chunks:?}");
    assert_eq!(sim_requests(&h).await, reached, "every repeat was answered by the cache");

    let stats = h.get("/admin/cache").await.json();
    assert_eq!(
        (stats["entries"].as_u64(), stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(4), Some(1))
    );
    let metrics = h.get("/metrics").await.text();
    assert!(metrics.contains("switchyard_cache_requests_total{result=\"hit\"} 4"), "{metrics}");
    assert!(metrics.contains("switchyard_cache_entries 1"));
    let sampled = json!({"model": "llama3.2:3b", "stream": false, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(h.post("/api/chat", sampled).await.header("x-switchyard-cache"), Some("bypass"));
    let metrics = h.get("/metrics").await.text();
    assert!(metrics.contains("switchyard_cache_requests_total{result=\"bypass\"} 1"), "{metrics}");
    h.stop().await;
}

#[tokio::test]
async fn a_streamed_answer_is_stored_and_auto_remembers_the_model_that_answered() {
    let h = cached(|_| {}).await;
    let body = |stream: bool| {
        json!({"model": "auto", "stream": stream, "options": {"seed": 7},
               "messages": [{"role": "user", "content": "Write a Python function that reverses a string."}]})
    };
    let first = h.post("/api/chat", body(true)).await;
    assert_eq!(first.header("x-switchyard-cache"), Some("miss"));
    let model = first.header("x-switchyard-model").unwrap().to_string();
    let text: String = first.lines().iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    let again = h.post("/api/chat", body(false)).await;
    assert_eq!(again.header("x-switchyard-cache"), Some("hit"), "a stream is stored once it completed");
    assert_eq!(again.header("x-switchyard-model"), Some(model.as_str()));
    assert_eq!(again.json()["model"], model, "auto answers name the model that answered");
    assert_eq!(again.json()["message"]["content"], text);
    // auto:fast is another target: its own entry.
    let mut fast = body(false);
    fast["model"] = json!("auto:fast");
    assert_eq!(h.post("/api/chat", fast).await.header("x-switchyard-cache"), Some("miss"));
    // Generate too.
    let g = json!({"model": "llama3.2:3b", "prompt": "Say hi.", "stream": false, "options": {"temperature": 0}});
    assert_eq!(h.post("/api/generate", g.clone()).await.header("x-switchyard-cache"), Some("miss"));
    let hit = h.post("/api/generate", g).await;
    assert_eq!(hit.header("x-switchyard-cache"), Some("hit"));
    assert!(hit.json()["response"].as_str().is_some_and(|r| !r.is_empty()));
    h.stop().await;
}

#[tokio::test]
async fn what_changes_the_answer_misses_and_the_directives_are_followed() {
    let h = cached(|_| {}).await;
    let q = "Name three prime numbers.";
    assert_eq!(h.post("/api/chat", chat(q, false)).await.header("x-switchyard-cache"), Some("miss"));
    let mut other_option = chat(q, false);
    other_option["options"]["top_p"] = json!(0.5);
    let mut other_system = chat(q, false);
    other_system["messages"][0]["content"] = json!("Be verbose.");
    let mut other_model = chat(q, false);
    other_model["model"] = json!("qwen2.5-coder:7b");
    for changed in [other_option, other_system, other_model] {
        assert_eq!(h.post("/api/chat", changed.clone()).await.header("x-switchyard-cache"), Some("miss"), "{changed}");
    }
    // What does not change the answer does not matter: keep_alive, num_ctx (set by Switchyard), the model's tag.
    let mut same = chat(q, false);
    same["keep_alive"] = json!("10m");
    same["options"]["num_ctx"] = json!(2048);
    assert_eq!(h.post("/api/chat", same).await.header("x-switchyard-cache"), Some("hit"));

    // Sampled answers are not cached by default.
    let mut sampled = chat(q, false);
    sampled["options"] = json!({"temperature": 0.8});
    let before = sim_requests(&h).await;
    for _ in 0..2 {
        assert_eq!(h.post("/api/chat", sampled.clone()).await.header("x-switchyard-cache"), Some("bypass"));
    }
    assert_eq!(sim_requests(&h).await, before + 2);

    // no-cache: not read, but written; no-store: read, not written.
    let fresh = chat("List two colours.", false);
    let body = Bytes::from(fresh.to_string());
    let a = h.call(Method::POST, &h.url("/api/chat"), Some(body.clone()), &[("cache-control", "no-store")]).await;
    assert_eq!(a.header("x-switchyard-cache"), Some("miss"));
    let a = h.call(Method::POST, &h.url("/api/chat"), Some(body.clone()), &[("cache-control", "no-cache")]).await;
    assert_eq!(a.header("x-switchyard-cache"), Some("bypass"), "no-store kept it out, no-cache did not read");
    let a = h.call(Method::POST, &h.url("/api/chat"), Some(body), &[]).await;
    assert_eq!(a.header("x-switchyard-cache"), Some("hit"), "no-cache still wrote it");

    // Errors are never cached.
    let missing = json!({"model": "no-such:1b", "stream": false, "options": {"temperature": 0},
                         "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(h.post("/api/chat", missing.clone()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.post("/api/chat", missing).await.status, StatusCode::NOT_FOUND);
    // Embeddings and loads are not cached.
    let e = h.post("/api/embed", json!({"model": "nomic-embed-text", "input": "x"})).await;
    assert_eq!(e.header("x-switchyard-cache"), Some("bypass"));
    h.stop().await;
}

#[tokio::test]
async fn tool_call_answers_are_kept_only_when_configured() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let body = json!({"model": "llama3.1:8b", "stream": false, "options": {"temperature": 0}, "tools": tools,
                      "messages": [{"role": "user", "content": "What is the weather in Paris?"}]});
    for (allowed, second) in [(false, "miss"), (true, "hit")] {
        let h = cached(|c| c.cache.cache_tool_calls = allowed).await;
        let first = h.post("/api/chat", body.clone()).await;
        assert!(first.json()["message"]["tool_calls"].as_array().is_some_and(|c| !c.is_empty()), "{}", first.text());
        assert_eq!(h.post("/api/chat", body.clone()).await.header("x-switchyard-cache"), Some(second));
        h.stop().await;
    }
}

#[tokio::test]
async fn entries_are_evicted_for_room_and_invalidated_by_model_and_on_a_new_digest() {
    let h = cached(|c| c.cache.max_entries = 2).await;
    for q in ["one?", "two?", "three?"] {
        assert_eq!(h.post("/api/chat", chat(q, false)).await.header("x-switchyard-cache"), Some("miss"));
    }
    assert_eq!(h.post("/api/chat", chat("one?", false)).await.header("x-switchyard-cache"), Some("miss"), "evicted");
    assert_eq!(h.post("/api/chat", chat("three?", false)).await.header("x-switchyard-cache"), Some("hit"));
    let stats = h.get("/admin/cache").await.json();
    assert_eq!(stats["entries"], 2);
    assert!(stats["evictions"].as_u64().unwrap() >= 2, "{stats}");

    // By model: the other model's entry stays.
    let mut qwen = chat("three?", false);
    qwen["model"] = json!("qwen2.5-coder:7b");
    h.post("/api/chat", qwen.clone()).await;
    let a = h.post("/admin/cache/invalidate", json!({"model": "llama3.2:3b"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.json()["dropped"].as_u64().unwrap() >= 1);
    assert_eq!(h.post("/api/chat", chat("three?", false)).await.header("x-switchyard-cache"), Some("miss"));
    assert_eq!(h.post("/api/chat", qwen.clone()).await.header("x-switchyard-cache"), Some("hit"));
    let a = h.post("/admin/cache/invalidate", json!({"model": 5})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());

    // Re-pulled (a new digest): its answers go at the next catalog read.
    let a = h
        .call(
            Method::POST,
            &format!("{}/sim/repull", h.sim.url()),
            Some(Bytes::from(r#"{"model":"qwen2.5-coder:7b"}"#)),
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // A pull through the router reads the catalog again; so does the periodic refresh.
    h.post("/api/pull", json!({"model": "llama3.2:3b", "stream": false})).await;
    assert_eq!(
        h.post("/api/chat", qwen).await.header("x-switchyard-cache"),
        Some("miss"),
        "the re-pulled model's answers went"
    );

    // All.
    let a = h.call(Method::POST, &h.url("/admin/cache/invalidate"), None, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(h.get("/admin/cache").await.json()["entries"], 0);
    h.stop().await;
}

#[tokio::test]
async fn a_paraphrase_is_a_semantic_hit_and_another_question_is_not() {
    let h = cached(|c| {
        c.cache.semantic = true;
        c.cache.embedding_model = "nomic-embed-text".into();
    })
    .await;
    assert_eq!(
        h.post("/api/chat", chat("What is the capital of France?", false)).await.header("x-switchyard-cache"),
        Some("miss")
    );
    let a = h.post("/api/chat", chat("what is the capital of france", false)).await;
    let header = a.header("x-switchyard-cache").unwrap().to_string();
    assert!(header.starts_with("semantic-hit; similarity="), "{header}");
    let similarity: f64 = header.rsplit('=').next().unwrap().parse().unwrap();
    assert!(similarity >= 0.95, "{similarity}");
    let a = h.post("/api/chat", chat("what is the capital of france", false)).await;
    assert_eq!(a.header("x-switchyard-cache"), Some("hit"), "the paraphrase is kept under its own key too");
    assert_eq!(
        h.post("/api/chat", chat("What is the capital of Germany?", false)).await.header("x-switchyard-cache"),
        Some("miss")
    );
    // Another system prompt is another group: never answered from this one.
    let mut other = chat("What is the capital of France?", false);
    other["messages"][0]["content"] = json!("Answer in French.");
    assert_eq!(h.post("/api/chat", other).await.header("x-switchyard-cache"), Some("miss"));
    assert_eq!(h.get("/admin/cache").await.json()["semantic_hits"], 1);
    h.stop().await;
}

/// Waits until `h` has written `n` cache entries to its store.
async fn stored(h: &Harness, n: u64) {
    let ok = common::eventually(Duration::from_secs(10), || async {
        h.get("/admin/cache").await.json()["stored"].as_u64() >= Some(n)
    })
    .await;
    assert!(ok, "the cache entry reached the store");
}

#[tokio::test]
async fn persisted_answers_survive_a_restart() {
    let mut h = cached(|c| c.cache.persist = true).await;
    h.post("/api/chat", chat("What is 2 + 2?", false)).await;
    stored(&h, 1).await;
    let reached = sim_requests(&h).await;
    let config = Arc::new(h.router.config().clone());
    h.router.stop().await;
    h.router = server::spawn(config).await.unwrap();
    let ok =
        common::eventually(Duration::from_secs(10), || async { h.get("/admin/cache").await.json()["entries"] == 1 })
            .await;
    assert!(ok, "the store's entries are loaded at start");
    let a = h.post("/api/chat", chat("What is 2 + 2?", false)).await;
    assert_eq!(a.header("x-switchyard-cache"), Some("hit"));
    assert_eq!(sim_requests(&h).await, reached);

    // Re-pulled while the router was down: the stored answers are stale and are not served.
    let config = Arc::new(h.router.config().clone());
    h.router.stop().await;
    let body = Some(Bytes::from(r#"{"model":"llama3.2:3b"}"#));
    let repull = switchyard_core::http::build_request(Method::POST, &format!("{}/sim/repull", h.sim.url()), body);
    assert_eq!(h.http.send(repull.unwrap()).await.unwrap().status(), StatusCode::OK);
    h.router = server::spawn(config).await.unwrap();
    let ok =
        common::eventually(Duration::from_secs(10), || async { h.get("/admin/cache").await.json()["entries"] == 1 })
            .await;
    assert!(ok, "loaded at start");
    let a = h.post("/api/chat", chat("What is 2 + 2?", false)).await;
    assert_eq!(a.header("x-switchyard-cache"), Some("miss"), "the model changed since that answer");
    assert_eq!(h.post("/api/chat", chat("What is 2 + 2?", false)).await.header("x-switchyard-cache"), Some("hit"));
    h.stop().await;
}

/// A fresh Postgres database and the server's admin URL, when the test command started one.
async fn postgres() -> Option<(String, String)> {
    let url = switchyard_core::store::testing::postgres_url().await.unwrap()?;
    let admin = std::env::var("SY_TEST_POSTGRES_URL").unwrap();
    Some((url, admin))
}

#[tokio::test]
async fn two_routers_on_one_postgres_share_answers_and_a_dead_store_fails_no_request() {
    let Some((url, admin)) = postgres().await else {
        eprintln!("SKIPPED: no Postgres (SY_TEST_POSTGRES_URL)");
        return;
    };
    let a = cached(|c| {
        c.cache.persist = true;
        c.database.url = url.clone();
    })
    .await;
    let mut config_b = a.router.config().clone();
    config_b.server.listen = "127.0.0.1:0".parse().unwrap();
    let b = server::spawn(Arc::new(config_b)).await.unwrap();
    let via_b = |body: Value| {
        let url = format!("{}/api/chat", b.url());
        let http = a.http.clone();
        async move {
            let request =
                switchyard_core::http::build_request(Method::POST, &url, Some(Bytes::from(body.to_string()))).unwrap();
            let response = http.send(request).await.unwrap();
            let status = response.status();
            let cache = response.headers().get("x-switchyard-cache").map(|v| v.to_str().unwrap().to_string());
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            (status, cache)
        }
    };
    assert_eq!(a.post("/api/chat", chat("Shared question?", false)).await.header("x-switchyard-cache"), Some("miss"));
    stored(&a, 1).await;
    let reached = sim_requests(&a).await;
    assert_eq!(
        via_b(chat("Shared question?", false)).await,
        (StatusCode::OK, Some("hit".into())),
        "B reads A's answer"
    );
    assert_eq!(sim_requests(&a).await, reached);

    // The store goes away under both routers: every request is still answered, from memory or by a model.
    let db = url.rsplit('/').next().unwrap().to_string();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).execute(&pool).await.unwrap();
    assert_eq!(a.post("/api/chat", chat("Shared question?", false)).await.header("x-switchyard-cache"), Some("hit"));
    for q in ["New one?", "Another?"] {
        let r = a.post("/api/chat", chat(q, false)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchyard-cache"), Some("miss"));
        assert_eq!(
            a.post("/api/chat", chat(q, false)).await.header("x-switchyard-cache"),
            Some("hit"),
            "kept in memory"
        );
        assert_eq!(via_b(chat(q, false)).await.0, StatusCode::OK);
    }
    let errors = common::eventually(Duration::from_secs(10), || async {
        a.get("/admin/cache").await.json()["store_errors"].as_u64() > Some(0)
    })
    .await;
    assert!(errors, "the failures are counted");
    b.stop().await;
    a.stop().await;
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SWITCHYARD_")) {
        cmd.env_remove(k);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cache_command_shows_and_clears_the_cache() {
    let h = cached(|_| {}).await;
    let url = h.router.url();
    h.post("/api/chat", chat("Why is the sky blue?", false)).await;
    h.post("/api/chat", chat("Why is the sky blue?", false)).await;
    let (ok, out, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || cli(&["cache", "status", "--server", &url])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("entries     1 of 10000"), "{out}");
    assert!(out.contains("1 exact, 0 semantic, 1 misses") && out.contains("hit rate 50.0 %"), "{out}");
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || cli(&["cache", "clear", "--model", "llama3.2:3b", "--server", &url]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "dropped 1 cached answers from memory\n");
    assert_eq!(h.get("/admin/cache").await.json()["entries"], 0);
    h.stop().await;
}

#[tokio::test]
async fn a_stream_that_broke_is_not_stored() {
    // Tokens are spaced in time (time scale > 0) so that the first chunks reach the client before the cut.
    let h = start_with(SimOptions { time_scale: 0.05, ..SimOptions::default() }, |c| c.cache.enabled = true).await;
    let load = h.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": ""})).await;
    assert_eq!(load.status, StatusCode::OK, "{}", load.text());
    h.fault(json!({"model": "llama3.2:3b", "disconnect_after_chunks": 3, "fail_times": 1})).await;
    let broken = h.post("/api/chat", chat("Tell me about trains.", true)).await;
    assert_eq!(broken.status, StatusCode::OK, "the stream had started");
    assert!(broken.lines().iter().any(|l| l.get("error").is_some()), "{}", broken.text());
    assert_eq!(h.get("/admin/cache").await.json()["entries"], 0, "a broken stream is never stored");
    let whole = h.post("/api/chat", chat("Tell me about trains.", true)).await;
    assert_eq!(whole.header("x-switchyard-cache"), Some("miss"));
    assert_eq!(whole.lines().last().unwrap()["done"], true);
    let again = h.post("/api/chat", chat("Tell me about trains.", true)).await;
    assert_eq!(again.header("x-switchyard-cache"), Some("hit"));
    h.stop().await;
}
