//! The simulator's HTTP surfaces against Ollama's and OpenAI's shapes: every route, streaming framing, defaults,
//! answers (deterministic, skill-rated, tool calls, formats) and error shapes. In-process with `oneshot`, time scale
//! 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode, header};
use common::{Sim, frames, ndjson, sse};
use serde_json::{Value, json};

#[tokio::test]
async fn root_version_and_unknown_routes() {
    let sim = Sim::default();
    let (status, headers, body) = sim.call(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"Ollama is running");
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let (status, _, _) = sim.call(Method::HEAD, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = sim.get("/api/version").await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["version"].as_str().unwrap().split('.').count() == 3);
    let (status, _, body) = sim.call(Method::GET, "/api/nothing", None).await;
    assert_eq!((status, &body[..]), (StatusCode::NOT_FOUND, &b"404 page not found"[..]));
}

#[tokio::test]
async fn tags_list_the_fleet_with_details() {
    let sim = Sim::default();
    let (status, v) = sim.get("/api/tags").await;
    assert_eq!(status, StatusCode::OK);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 7);
    let llama = models.iter().find(|m| m["name"] == "llama3.2:3b").unwrap();
    assert_eq!(llama["model"], "llama3.2:3b");
    assert_eq!(llama["size"], 2_019_393_189u64);
    assert_eq!(llama["digest"].as_str().unwrap().len(), 64);
    assert!(llama["modified_at"].as_str().unwrap().ends_with('Z'));
    let d = &llama["details"];
    assert_eq!((d["format"].as_str(), d["family"].as_str()), (Some("gguf"), Some("llama")));
    assert_eq!(d["families"], json!(["llama"]));
    assert_eq!((d["parameter_size"].as_str(), d["quantization_level"].as_str()), (Some("3.2B"), Some("Q4_K_M")));
    assert_eq!(d["parent_model"], "");
}

#[tokio::test]
async fn show_reports_gguf_metadata_and_capabilities() {
    let sim = Sim::default();
    let (status, v) = sim.post("/api/show", json!({"model": "llama3.2:3b"})).await;
    assert_eq!(status, StatusCode::OK);
    let info = &v["model_info"];
    assert_eq!(info["general.architecture"], "llama");
    assert_eq!(info["general.parameter_count"], 3_200_000_000u64);
    assert_eq!(info["llama.context_length"], 131072);
    assert_eq!(info["llama.block_count"], 28);
    assert_eq!(info["llama.embedding_length"], 3072);
    assert_eq!(info["llama.attention.head_count"], 24);
    assert_eq!(info["llama.attention.head_count_kv"], 8);
    assert_eq!(v["capabilities"], json!(["completion", "tools"]));
    for key in ["modelfile", "parameters", "template", "modified_at"] {
        assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    // The core crate reads the KV size from exactly these keys.
    let show: switchyard_core::ollama::types::ShowResponse = serde_json::from_value(v).unwrap();
    assert_eq!(show.kv_bytes_per_token(), Some(112 * 1024));

    let (_, v) = sim.post("/api/show", json!({"name": "nomic-embed-text"})).await;
    assert_eq!(v["capabilities"], json!(["embedding"]));
    assert_eq!(v["model_info"]["nomic-bert.embedding_length"], 768);

    let (status, v) = sim.post("/api/show", json!({"model": "nope:1b"})).await;
    assert_eq!((status, v), (StatusCode::NOT_FOUND, json!({"error": "model 'nope:1b' not found"})));
    let (status, v) = sim.post("/api/show", json!({})).await;
    assert_eq!((status, v), (StatusCode::BAD_REQUEST, json!({"error": "model is required"})));
}

#[tokio::test]
async fn generate_streams_ndjson_by_default() {
    let sim = Sim::default();
    let body = json!({"model": "llama3.2:3b", "prompt": "Tell me about trains.", "options": {"num_predict": 12}});
    let (status, headers, bytes) = sim.call(Method::POST, "/api/generate", Some(body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines = ndjson(&bytes);
    assert_eq!(lines.len(), 13, "one line per token and a final line");
    for line in &lines[..12] {
        assert_eq!(line["model"], "llama3.2:3b");
        assert_eq!(line["done"], false);
        assert!(line["response"].as_str().is_some());
        assert!(line["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let last = &lines[12];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["response"], "");
    assert_eq!(last["eval_count"], 12);
    assert!(last["context"].as_array().is_some_and(|c| !c.is_empty()));
    for key in ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"] {
        assert!(last[key].as_u64().is_some_and(|n| n > 0), "{key}");
    }
    // Simulated timings: tokens/s is the fleet's decode rate, at any time scale.
    let tps = 12.0 / (last["eval_duration"].as_u64().unwrap() as f64 / 1e9);
    assert!((tps - 165.0).abs() < 0.5, "{tps}");
    // The model was loaded by this request: load_duration includes the simulated 1.6 s load.
    assert!(last["load_duration"].as_u64().unwrap() >= 1_600_000_000);
    let total = last["total_duration"].as_u64().unwrap();
    assert!(total >= last["load_duration"].as_u64().unwrap() + last["eval_duration"].as_u64().unwrap());
}

#[tokio::test]
async fn generate_without_streaming_answers_one_object_and_echoes_the_name() {
    let sim = Sim::default();
    let (status, v) =
        sim.post("/api/generate", json!({"model": "library/llama3.2:3b", "prompt": "Hi there", "stream": false})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["model"], "library/llama3.2:3b");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    let eval_count = v["eval_count"].as_u64().unwrap();
    assert!((20..=200).contains(&eval_count));
    assert_eq!(v["response"].as_str().unwrap().split_whitespace().count() as u64, eval_count);
    // A warm model reports a few milliseconds of load.
    let (_, again) = sim.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": "Hi", "stream": false})).await;
    assert!(again["load_duration"].as_u64().unwrap() < 10_000_000);
}

#[tokio::test]
async fn answers_are_deterministic_per_model_prompt_and_seed() {
    let sim = Sim::default();
    let ask = |model: &str, seed: i64| json!({"model": model, "prompt": "Describe a railway yard.", "stream": false, "options": {"seed": seed}});
    let a = sim.post("/api/generate", ask("llama3.1:8b", 1)).await.1["response"].clone();
    let b = sim.post("/api/generate", ask("llama3.1:8b", 1)).await.1["response"].clone();
    let c = sim.post("/api/generate", ask("llama3.1:8b", 2)).await.1["response"].clone();
    let d = sim.post("/api/generate", ask("llama3.2:3b", 1)).await.1["response"].clone();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
}

#[tokio::test]
async fn profiling_items_get_the_reference_or_a_rejected_answer() {
    let sim = Sim::default();
    let suites = switchyard_profiler::suite::builtin().unwrap();
    let fleet = switchyard_sim::Fleet::builtin();
    let mut right = std::collections::HashMap::<String, usize>::new();
    for suite in &suites {
        for item in suite.take(20) {
            for model in fleet.models.iter().filter(|m| m.caps().completion) {
                let mut messages = Vec::new();
                if let Some(system) = &item.system {
                    messages.push(json!({"role": "system", "content": system}));
                }
                messages.push(json!({"role": "user", "content": item.prompt}));
                let body = json!({"model": model.name.as_str(), "messages": messages, "stream": false,
                    "think": model.caps().thinking.then_some(false)});
                let (status, v) = sim.post("/api/chat", body).await;
                assert_eq!(status, StatusCode::OK, "{v}");
                let answer = v["message"]["content"].as_str().unwrap();
                let correct = answer == item.reference;
                assert!(correct || answer == item.check.incorrect_answer(), "{}: {answer:?}", item.id);
                if let Some(verdict) = item.check.evaluate(answer).correct() {
                    assert_eq!(verdict, correct, "{}: the checker must agree with the simulator ({answer:?})", item.id);
                }
                *right.entry(model.name.to_string()).or_default() += usize::from(correct);
            }
        }
    }
    // The same prompt through /api/generate gets the same verdict.
    let item = &suites[0].items[0];
    let (_, chat) = sim
        .post(
            "/api/chat",
            json!({"model": "llama3.3:70b", "messages": [{"role": "user", "content": item.prompt}],
            "stream": false}),
        )
        .await;
    let (_, generate) =
        sim.post("/api/generate", json!({"model": "llama3.3:70b", "prompt": item.prompt, "stream": false})).await;
    assert_eq!(chat["message"]["content"], generate["response"]);
    // Stronger models get more items right.
    assert!(right["llama3.3:70b"] > right["llama3.2:3b"], "{right:?}");

    // A judge prompt from the profiler is answered with a score that agrees with the answer's correctness.
    let judge = |answer: &str| switchyard_profiler::judge::judge_prompt(item, answer);
    for (answer, good) in [(item.reference.clone(), true), (item.check.incorrect_answer(), false)] {
        let (_, v) = sim
            .post(
                "/api/chat",
                json!({"model": "llama3.1:8b", "stream": false,
                "messages": [{"role": "user", "content": judge(&answer)}]}),
            )
            .await;
        let score = switchyard_profiler::judge::parse_judge_reply(v["message"]["content"].as_str().unwrap()).unwrap();
        assert_eq!(score >= switchyard_profiler::judge::PASS_SCORE, good);
    }
}

#[tokio::test]
async fn answer_judge_prompts_are_scored_like_item_judge_prompts() {
    use switchyard_profiler::judge::{PASS_SCORE, answer_judge_prompt, parse_judge_reply};
    // A judge with skill 1.0 everywhere never errs.
    let mut fleet = switchyard_sim::Fleet::builtin();
    let judge = fleet.models.iter_mut().find(|m| m.name.as_str() == "llama3.1:8b").unwrap();
    judge.skills = switchyard_core::Category::PROFILED.into_iter().map(|c| (c, 1.0)).collect();
    let sim = Sim::new(switchyard_sim::SimOptions { fleet, ..Default::default() });
    let score = |task: String, answer: String, chat: bool| {
        let prompt = answer_judge_prompt(&task, &answer);
        let sim = &sim;
        async move {
            let (status, v) = if chat {
                sim.post(
                    "/api/chat",
                    json!({"model": "llama3.1:8b", "stream": false,
                    "messages": [{"role": "user", "content": prompt}]}),
                )
                .await
            } else {
                sim.post("/api/generate", json!({"model": "llama3.1:8b", "stream": false, "prompt": prompt})).await
            };
            assert_eq!(status, StatusCode::OK, "{v}");
            let reply = if chat { &v["message"]["content"] } else { &v["response"] };
            parse_judge_reply(reply.as_str().unwrap()).unwrap()
        }
    };

    let suites = switchyard_profiler::suite::builtin().unwrap();
    for suite in &suites {
        let item = &suite.items[0];
        for chat in [true, false] {
            for task in [item.prompt.clone(), format!("Answer carefully.\n\n{}", item.prompt)] {
                let good = score(task.clone(), item.reference.clone(), chat).await;
                assert!(good >= 0.8, "{}: the reference scores {good}", item.id);
                let bad = score(task, item.check.incorrect_answer(), chat).await;
                assert!(bad <= 0.3, "{}: the incorrect answer scores {bad}", item.id);
            }
        }
    }

    // Any other task: a normal answer passes, an empty one or a refusal does not.
    let task = "Write a haiku about trains.";
    let (_, v) = sim
        .post(
            "/api/chat",
            json!({"model": "llama3.2:3b", "stream": false,
            "messages": [{"role": "user", "content": task}]}),
        )
        .await;
    let normal = v["message"]["content"].as_str().unwrap().to_string();
    assert!(score(task.to_string(), normal, true).await >= PASS_SCORE);
    for bad in ["", "I'm sorry, but I can't help with that request.", "I cannot write poems."] {
        assert!(score(task.to_string(), bad.to_string(), true).await < PASS_SCORE, "{bad:?}");
    }
}

#[tokio::test]
async fn chat_streams_and_answers_whole() {
    let sim = Sim::default();
    let messages = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]);
    let (status, headers, bytes) = sim
        .call(Method::POST, "/api/chat", Some(json!({"model": "llama3.1:8b", "messages": messages}).to_string()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines = ndjson(&bytes);
    let (last, chunks) = lines.split_last().unwrap();
    assert!(chunks.iter().all(|l| l["message"]["role"] == "assistant" && l["done"] == false));
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
    assert!(last.get("context").is_none());
    let streamed: String = chunks.iter().map(|l| l["message"]["content"].as_str().unwrap()).collect();

    let (status, v) =
        sim.post("/api/chat", json!({"model": "llama3.1:8b", "messages": messages, "stream": false})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["message"]["content"], streamed.as_str());
    assert_eq!(v["eval_count"], last["eval_count"]);
}

#[tokio::test]
async fn thinking_models_think_unless_told_not_to() {
    let sim = Sim::default();
    let ask = |think: Value| {
        json!({"model": "deepseek-r1:14b", "messages": [{"role": "user", "content": "Why?"}], "stream": false,
            "think": think})
    };
    let (_, v) = sim.post("/api/chat", ask(json!(true))).await;
    assert!(v["message"]["thinking"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(!v["message"]["content"].as_str().unwrap().is_empty());
    let (_, v) = sim.post("/api/chat", ask(Value::Null)).await;
    assert!(v["message"]["thinking"].is_string(), "thinking is on by default for thinking models");
    let (_, v) = sim.post("/api/chat", ask(json!(false))).await;
    assert!(v["message"].get("thinking").is_none());
    let (status, v) = sim
        .post(
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "Why?"}],
            "think": true}),
        )
        .await;
    assert_eq!((status, v), (StatusCode::BAD_REQUEST, json!({"error": "\"llama3.2:3b\" does not support thinking"})));
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_current_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"]}}})
}

fn time_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_time", "description": "Current time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}})
}

#[tokio::test]
async fn tool_calls_on_the_native_api() {
    let sim = Sim::default();
    let body = json!({"model": "llama3.1:8b", "stream": false, "tools": [time_tool(), weather_tool()],
        "messages": [{"role": "user", "content": "What is the weather in Lisbon?"}]});
    let (status, v) = sim.post("/api/chat", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let calls = v["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "get_current_weather");
    assert_eq!(calls[0]["function"]["arguments"], json!({"city": "Lisbon", "unit": "celsius"}));
    assert_eq!(v["message"]["content"], "");

    // Streaming sends the call in one chunk.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (_, _, bytes) = sim.call(Method::POST, "/api/chat", Some(streamed.to_string())).await;
    let lines = ndjson(&bytes);
    let with_calls: Vec<&Value> = lines.iter().filter(|l| l["message"]["tool_calls"].is_array()).collect();
    assert_eq!(with_calls.len(), 1);
    assert!(with_calls[0]["message"]["tool_calls"][0]["function"]["arguments"].is_object());

    // After a tool result the model answers in text.
    let body = json!({"model": "llama3.1:8b", "stream": false, "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "What is the weather in Lisbon?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_current_weather",
                "arguments": {"city": "Lisbon", "unit": "celsius"}}}]},
            {"role": "tool", "content": "21 degrees and sunny", "tool_name": "get_current_weather"}]});
    let (_, v) = sim.post("/api/chat", body).await;
    assert!(v["message"].get("tool_calls").is_none());
    assert!(v["message"]["content"].as_str().unwrap().contains("21 degrees and sunny"));

    // A model without the tools capability refuses.
    let body = json!({"model": "deepseek-r1:14b", "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "Weather?"}]});
    let (status, v) = sim.post("/api/chat", body).await;
    assert_eq!((status, v), (StatusCode::BAD_REQUEST, json!({"error": "deepseek-r1:14b does not support tools"})));
}

#[tokio::test]
async fn formats_produce_json() {
    let sim = Sim::default();
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age", "tags"]});
    let (_, v) = sim
        .post(
            "/api/generate",
            json!({"model": "llama3.1:8b", "prompt": "Bob is 42 and likes trains.",
            "format": schema, "stream": false}),
        )
        .await;
    let answer: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
    assert!(answer["name"].is_string() && answer["age"].is_i64() && answer["tags"].is_array(), "{answer}");
    assert_eq!(answer["age"], 42);
    let (_, v) = sim
        .post("/api/generate", json!({"model": "llama3.1:8b", "prompt": "x", "format": "json", "stream": false}))
        .await;
    assert!(serde_json::from_str::<Value>(v["response"].as_str().unwrap()).unwrap().is_object());
    let (status, _) = sim.post("/api/generate", json!({"model": "llama3.1:8b", "prompt": "x", "format": "yaml"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn embed_is_normalised_and_meaningful() {
    let sim = Sim::default();
    let inputs = ["sort a list in python", "python code to sort a list", "the capital of france"];
    let (status, v) = sim.post("/api/embed", json!({"model": "nomic-embed-text", "input": inputs})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["model"], "nomic-embed-text");
    let vectors: Vec<Vec<f64>> = serde_json::from_value(v["embeddings"].clone()).unwrap();
    assert_eq!(vectors.len(), 3);
    for e in &vectors {
        assert_eq!(e.len(), 768);
        assert!((e.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-3);
    }
    let cos = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!(cos(&vectors[0], &vectors[1]) > cos(&vectors[0], &vectors[2]));
    let tokens: u64 = inputs.iter().map(|i| switchyard_core::text::estimate_tokens(i)).sum();
    assert_eq!(v["prompt_eval_count"], tokens);
    assert!(v["total_duration"].as_u64().unwrap() > 0 && v["load_duration"].as_u64().unwrap() > 0);

    let (_, one) = sim.post("/api/embed", json!({"model": "nomic-embed-text", "input": inputs[0]})).await;
    assert_eq!(one["embeddings"][0], v["embeddings"][0]);
    let (_, short) = sim.post("/api/embed", json!({"model": "nomic-embed-text", "input": "x", "dimensions": 64})).await;
    assert_eq!(short["embeddings"][0].as_array().unwrap().len(), 64);

    let (status, legacy) = sim.post("/api/embeddings", json!({"model": "nomic-embed-text", "prompt": inputs[0]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(legacy["embedding"].as_array().unwrap().len(), 768);

    // Load without input; errors in the embed wording.
    let (status, v) = sim.post("/api/embed", json!({"model": "nomic-embed-text"})).await;
    assert_eq!((status, &v["embeddings"]), (StatusCode::OK, &json!([])));
    let (status, v) = sim.post("/api/embed", json!({"model": "nope", "input": "x"})).await;
    assert_eq!(
        (status, v),
        (StatusCode::NOT_FOUND, json!({"error": "model \"nope\" not found, try pulling it first"}))
    );
    let (status, v) = sim.post("/api/embed", json!({"model": "llama3.2:3b", "input": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("does not support embeddings"));
    let (status, v) = sim.post("/api/embed", json!({"model": "nomic-embed-text", "input": [1, 2]})).await;
    assert_eq!((status, v), (StatusCode::BAD_REQUEST, json!({"error": "invalid input type"})));
    let (status, v) = sim.post("/api/generate", json!({"model": "nomic-embed-text", "prompt": "hi"})).await;
    assert_eq!(
        (status, v),
        (StatusCode::BAD_REQUEST, json!({"error": "\"nomic-embed-text\" does not support generate"}))
    );
}

#[tokio::test]
async fn bad_requests_get_ollamas_error_shapes() {
    let sim = Sim::default();
    let cases: Vec<(&str, &str, StatusCode, &str)> = vec![
        ("/api/generate", "{", StatusCode::BAD_REQUEST, "invalid JSON"),
        ("/api/generate", "", StatusCode::BAD_REQUEST, "missing request body"),
        ("/api/generate", "[1,2]", StatusCode::BAD_REQUEST, "expected a JSON object"),
        ("/api/generate", r#"{"model":"llama3.2:3b","stream":"yes"}"#, StatusCode::BAD_REQUEST, "`stream`"),
        ("/api/chat", r#"{"model":"llama3.2:3b","messages":"hi"}"#, StatusCode::BAD_REQUEST, "`messages`"),
        (
            "/api/generate",
            r#"{"model":"llama3.2:3b","prompt":"x","options":{"num_ctx":"big"}}"#,
            StatusCode::BAD_REQUEST,
            "num_ctx",
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2:3b","prompt":"x","options":{"temperature":"hot"}}"#,
            StatusCode::BAD_REQUEST,
            "temperature",
        ),
        ("/api/generate", r#"{"prompt":"x"}"#, StatusCode::BAD_REQUEST, "model is required"),
        ("/api/chat", r#"{"model":"","messages":[]}"#, StatusCode::BAD_REQUEST, "model is required"),
        ("/api/generate", r#"{"model":"ghost:7b","prompt":"x"}"#, StatusCode::NOT_FOUND, "model 'ghost:7b' not found"),
        ("/api/chat", r#"{"model":"../etc","messages":[]}"#, StatusCode::NOT_FOUND, "model '../etc' not found"),
        ("/api/generate", r#"{"model":"llama3.2:3b","keep_alive":"300"}"#, StatusCode::BAD_REQUEST, "missing unit"),
        ("/api/generate", r#"{"model":"llama3.2:3b","keep_alive":true}"#, StatusCode::BAD_REQUEST, "keep_alive"),
        ("/api/chat", r#"{"model":"llama3.2:3b","messages":[],"think":"very"}"#, StatusCode::BAD_REQUEST, "think"),
        (
            "/api/generate",
            r#"{"model":"llama3.2:3b","prompt":"x","images":["aGk="]}"#,
            StatusCode::BAD_REQUEST,
            "does not support vision",
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2:3b","prompt":"x","suffix":"y"}"#,
            StatusCode::BAD_REQUEST,
            "does not support insert",
        ),
    ];
    for (path, body, want_status, needle) in cases {
        let (status, v) = sim.post_raw(path, body).await;
        assert_eq!(status, want_status, "{path} {body}: {v}");
        let message = v["error"].as_str().unwrap_or_else(|| panic!("{path} {body}: no error field in {v}"));
        assert!(message.contains(needle), "{path} {body}: {message:?} lacks {needle:?}");
        assert_eq!(v.as_object().unwrap().len(), 1, "only `error`");
    }
    assert_eq!(sim.counters().await["requests"], 0, "rejected requests never reach the scheduler");
}

#[tokio::test]
async fn openai_models_and_errors() {
    let sim = Sim::default();
    let (status, v) = sim.get("/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "list");
    let first = &v["data"][0];
    assert_eq!((first["object"].as_str(), first["owned_by"].as_str()), (Some("model"), Some("library")));
    assert!(first["created"].as_i64().unwrap() > 0);
    let (status, v) = sim.get("/v1/models/llama3.2:3b").await;
    assert_eq!((status, v["id"].as_str()), (StatusCode::OK, Some("llama3.2:3b")));

    let (status, v) = sim
        .post(
            "/v1/chat/completions",
            json!({"model": "ghost", "messages": [{"role": "user",
        "content": "x"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(v["error"]["param"], Value::Null);
    assert_eq!(v["error"]["code"], Value::Null);
    assert!(v["error"]["message"].as_str().unwrap().contains("ghost"));
    let (status, v) = sim.post_raw("/v1/chat/completions", "{nope").await;
    assert_eq!((status, v["error"]["type"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request_error")));
    let (status, v) = sim.post("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!((status, v["error"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some("model is required")));
    let (status, v) = sim
        .post(
            "/v1/chat/completions",
            json!({"model": "llama3.2:3b", "temperature": "warm",
            "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!((status, v["error"]["type"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request_error")));
}

#[tokio::test]
async fn openai_chat_whole_and_streamed() {
    let sim = Sim::default();
    let messages = json!([{"role": "user", "content": [{"type": "text", "text": "Say something."}]}]);
    let (status, v) =
        sim.post("/v1/chat/completions", json!({"model": "llama3.2:3b", "messages": messages, "max_tokens": 9})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "llama3.2:3b");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 9);
    let usage = &v["usage"];
    assert_eq!(usage["total_tokens"], usage["prompt_tokens"].as_u64().unwrap() + 9);
    let whole = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();

    let body = json!({"model": "llama3.2:3b", "messages": messages, "max_tokens": 9, "stream": true,
        "stream_options": {"include_usage": true}});
    let (status, headers, bytes) = sim.call(Method::POST, "/v1/chat/completions", Some(body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let events = sse(&bytes);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 9);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert_eq!(finish["choices"][0]["delta"]["content"], "");
    let text: String = chunks[..chunks.len() - 2]
        .iter()
        .inspect(|c| assert_eq!(c["choices"][0]["finish_reason"], Value::Null))
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, whole);

    // Without include_usage there is no usage chunk.
    let body = json!({"model": "llama3.2:3b", "messages": messages, "max_tokens": 3, "stream": true});
    let (_, _, bytes) = sim.call(Method::POST, "/v1/chat/completions", Some(body.to_string())).await;
    let events = sse(&bytes);
    assert_eq!(events.len(), 3 + 1 + 1);
}

#[tokio::test]
async fn openai_tool_calls_have_string_arguments() {
    let sim = Sim::default();
    let body = json!({"model": "llama3.1:8b", "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "How is the weather in Oslo today?"}]});
    let (status, v) = sim.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_current_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Oslo", "unit": "celsius"}));

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (_, _, bytes) = sim.call(Method::POST, "/v1/chat/completions", Some(streamed.to_string())).await;
    let events = sse(&bytes);
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let call_chunk = chunks.iter().find(|c| c["choices"][0]["delta"]["tool_calls"].is_array()).unwrap();
    assert!(call_chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].is_string());
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn openai_completions_and_embeddings() {
    let sim = Sim::default();
    let (status, v) = sim
        .post("/v1/completions", json!({"model": "qwen2.5-coder:7b", "prompt": "def add(a, b):", "max_tokens": 5}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let body = json!({"model": "qwen2.5-coder:7b", "prompt": "def add(a, b):", "max_tokens": 5, "stream": true});
    let (_, _, bytes) = sim.call(Method::POST, "/v1/completions", Some(body.to_string())).await;
    let events = sse(&bytes);
    assert_eq!(events.len(), 5 + 1 + 1);
    let finish: Value = serde_json::from_str(&events[5]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");

    let (status, v) = sim.post("/v1/embeddings", json!({"model": "nomic-embed-text", "input": ["a b", "c d"]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 768);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let (_, b64) = sim
        .post("/v1/embeddings", json!({"model": "nomic-embed-text", "input": "a b", "encoding_format": "base64"}))
        .await;
    assert_eq!(b64["data"][0]["embedding"].as_str().unwrap().len(), 768 * 4 / 3 * 4);
}

#[tokio::test]
async fn sim_routes_report_gpu_fleet_and_repull() {
    let sim = Sim::default();
    sim.load("llama3.2:3b", Value::Null).await;
    let (status, v) = sim.get("/sim/gpu").await;
    assert_eq!(status, StatusCode::OK);
    let gpu = &v["gpus"][0];
    assert_eq!(gpu["index"], 0);
    assert_eq!(gpu["name"], "Simulated GPU 0");
    assert_eq!(gpu["total_bytes"], 24 * common::GIB);
    let used = gpu["used_bytes"].as_u64().unwrap();
    assert_eq!(gpu["free_bytes"].as_u64().unwrap() + used, 24 * common::GIB);
    assert_eq!(gpu["foreign_bytes"], 0);
    assert_eq!(v["models"][0]["name"], "llama3.2:3b");
    assert_eq!(v["models"][0]["gpu"], 0);
    assert_eq!(v["models"][0]["size_vram"].as_u64().unwrap(), used);
    assert_eq!(v["processes"][0]["name"], "ollama");
    assert_eq!(v["processes"][0]["used_bytes"].as_u64().unwrap(), used);
    let counters = &v["counters"];
    for key in ["oom_events", "loads", "unloads", "evictions", "requests", "rejected_queue_full"] {
        assert!(counters[key].is_u64(), "{key}");
    }
    assert_eq!((counters["loads"].as_u64(), counters["requests"].as_u64()), (Some(1), Some(1)));

    let (_, fleet) = sim.get("/sim/fleet").await;
    let coder = fleet["models"].as_array().unwrap().iter().find(|m| m["name"] == "qwen2.5-coder:7b").unwrap();
    assert!(coder["skills"]["coding"].as_f64().unwrap() > 0.7);
    assert_eq!(coder["decode_tps"], 104.0);

    // A re-pull changes the digest, and the loaded old version is reloaded by the next request.
    let digest_of = |tags: &Value| {
        tags["models"].as_array().unwrap().iter().find(|m| m["name"] == "llama3.2:3b").unwrap()["digest"].clone()
    };
    let before = digest_of(&sim.get("/api/tags").await.1);
    let (status, v) = sim.post("/sim/repull", json!({"model": "llama3.2:3b"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(v["digest"], before);
    assert_eq!(digest_of(&sim.get("/api/tags").await.1), v["digest"]);
    sim.load("llama3.2:3b", Value::Null).await;
    assert_eq!(sim.counters().await["loads"], 2);
    let (_, ps) = sim.get("/api/ps").await;
    assert_eq!(ps["models"][0]["digest"], v["digest"]);
    let (status, _) = sim.post("/sim/repull", json!({"model": "ghost"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_client_that_goes_away_releases_the_model() {
    let sim = Sim::new(switchyard_sim::SimOptions { max_loaded_models: Some(1), ..Default::default() });
    let held = sim.hold("llama3.2:3b").await;
    let (body, complete) = frames(held).await;
    assert!(complete && !body.is_empty());
    let held = sim.hold("llama3.2:3b").await;
    drop(held);
    // The model is idle again, so another model can replace it at once.
    sim.load("llama3.1:8b", Value::Null).await;
    assert_eq!(sim.ps_names().await, vec!["llama3.1:8b"]);
}

#[tokio::test]
async fn no_field_value_makes_the_server_fail() {
    let sim = Sim::default();
    let values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(""),
        json!("x"),
        json!([]),
        json!([1, "a"]),
        json!({}),
        json!({"a": [1]}),
    ];
    let bases = [
        (
            "/api/generate",
            json!({"model": "llama3.2:3b", "prompt": "hello", "options": {"num_predict": 3}}),
            vec![
                "model",
                "prompt",
                "suffix",
                "system",
                "raw",
                "stream",
                "format",
                "keep_alive",
                "images",
                "think",
                "options",
                "context",
                "template",
            ],
        ),
        (
            "/api/chat",
            json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 3}}),
            vec!["model", "messages", "tools", "format", "options", "stream", "keep_alive", "think"],
        ),
        (
            "/api/embed",
            json!({"model": "nomic-embed-text", "input": "hi"}),
            vec!["model", "input", "truncate", "dimensions", "options", "keep_alive"],
        ),
        ("/api/embeddings", json!({"model": "nomic-embed-text", "prompt": "hi"}), vec!["model", "prompt", "options"]),
        ("/api/show", json!({"model": "llama3.2:3b"}), vec!["model", "name", "verbose"]),
        (
            "/v1/chat/completions",
            json!({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3}),
            vec![
                "model",
                "messages",
                "stream",
                "stream_options",
                "max_tokens",
                "seed",
                "stop",
                "temperature",
                "response_format",
                "tools",
                "reasoning_effort",
            ],
        ),
        (
            "/v1/completions",
            json!({"model": "llama3.2:3b", "prompt": "hi", "max_tokens": 3}),
            vec!["model", "prompt", "suffix", "stream", "max_tokens", "stop"],
        ),
        (
            "/v1/embeddings",
            json!({"model": "nomic-embed-text", "input": "hi"}),
            vec!["model", "input", "encoding_format", "dimensions"],
        ),
        (
            "/sim/faults",
            json!({"model": "llama3.2:3b"}),
            vec!["model", "error_status", "latency_ms", "hang", "fail_times", "foreign_vram"],
        ),
    ];
    for (path, base, fields) in bases {
        for field in fields {
            for value in &values {
                let mut body = base.clone();
                body[field] = value.clone();
                let (status, _, bytes) = sim.call(Method::POST, path, Some(body.to_string())).await;
                assert!(status.as_u16() < 500, "{path} {body} answered {status}: {}", String::from_utf8_lossy(&bytes));
                // Keep the simulator clean of faults a fuzzed body may have set.
                sim.call(Method::DELETE, "/sim/faults", None).await;
            }
        }
    }
    let reached = sim.counters().await["requests"].as_u64().unwrap();
    assert!(reached > 100, "only {reached} bodies reached the engine");
    // Extreme values are bounded: a huge num_predict stops at the context, a huge keep_alive shows a sane expiry.
    let (status, v) = sim
        .post(
            "/api/generate",
            json!({"model": "llava:7b", "prompt": "x", "stream": false,
            "options": {"num_predict": 1_000_000_000_000u64}, "keep_alive": 1e18}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((v["eval_count"].as_u64(), v["done_reason"].as_str()), (Some(4096), Some("length")));
    let (_, ps) = sim.get("/api/ps").await;
    let llava = ps["models"].as_array().unwrap().iter().find(|m| m["name"] == "llava:7b").unwrap().clone();
    assert!(llava["expires_at"].as_str().unwrap()[..4].parse::<i32>().unwrap() <= 2400);
}
