//! Task rules, cascades and conversation affinity end to end, against the simulator: each rule field on both
//! surfaces, cascades that escalate exactly when a validator (or the judge) refuses an answer and stop at the first
//! pass, streams a cascade never cuts or duplicates, and conversations that stay on their model until another is
//! much better or theirs is unloaded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Answer, Harness, seed_profiles, start_with};
use http::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use switchyard_core::config::{CascadeSteps, Config, TaskRule};
use switchyard_core::{Category, ModelName};
use switchyard_sim::{Fleet, SimOptions};

const SMALL: &str = "llama3.2:3b";
const MID: &str = "llama3.1:8b";
const CODER: &str = "qwen2.5-coder:7b";

fn cascade_task(models: &[&str]) -> TaskRule {
    TaskRule {
        cascade: Some(CascadeSteps::List(models.iter().map(ToString::to_string).collect())),
        ..TaskRule::default()
    }
}

async fn with_tasks(tasks: Vec<(&str, TaskRule)>, tweak: impl FnOnce(&mut Config)) -> Harness {
    start_with(SimOptions::default(), |c| {
        for (name, rule) in tasks {
            c.tasks.insert(name.to_string(), rule);
        }
        tweak(c);
    })
    .await
}

async fn post_with(h: &Harness, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    h.call(Method::POST, &h.url(path), Some(body.to_string().into()), headers).await
}

async fn sim_requests(h: &Harness) -> u64 {
    let a = h.call(Method::GET, &format!("{}/sim/stats", h.sim.url()), None, &[]).await;
    a.json()["inference_requests"].as_u64().unwrap()
}

async fn clear_faults(h: &Harness) {
    let a = h.call(Method::DELETE, &format!("{}/sim/faults", h.sim.url()), None, &[]).await;
    assert!(a.status.is_success());
}

/// The value of the series of `name` whose labels include every one of `labels` (`key="value"`, comma-separated).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && labels.split(',').all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "stream": false, "messages": [{"role": "user", "content": content}]})
}

#[tokio::test]
async fn each_rule_field_applies_on_both_surfaces() {
    let summarizer = TaskRule {
        category: Some(Category::Extraction),
        quality_preference: Some(0.3),
        models: Some(vec![MID.into(), CODER.into()]),
        max_tokens: Some(8),
        temperature: Some(0.0),
        ..TaskRule::default()
    };
    let reviewer = TaskRule { model: Some(CODER.into()), ..TaskRule::default() };
    let h = with_tasks(vec![("summarizer", summarizer), ("reviewer", reviewer)], |c| c.cache.enabled = true).await;
    let prose = "Write a long story about a lighthouse keeper and the storm that changed her life.";

    // Ollama's surface, by virtual model: category fixed, model from the allow-list, tokens capped.
    let mut body = chat("auto:summarizer", prose);
    body["options"] = json!({"num_predict": 500, "temperature": 0.9});
    let a = h.post("/api/chat", body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-switchyard-category"), Some("extraction"));
    let model = a.header("x-switchyard-model").unwrap().to_string();
    assert!([MID, CODER].contains(&model.as_str()), "{model}");
    assert_eq!(a.json()["eval_count"], 8);
    assert_eq!(a.json()["done_reason"], "length");
    // The rule's temperature 0 replaced the client's 0.9: the answer is deterministic, so the cache keeps it.
    assert_eq!(a.header("x-switchyard-cache"), Some("miss"));
    let again = h.post("/api/chat", body).await;
    assert_eq!(again.header("x-switchyard-cache"), Some("hit"));

    // OpenAI's surface, by header: the same rule.
    let body = json!({"model": "auto", "max_tokens": 500, "temperature": 0.9,
                      "messages": [{"role": "user", "content": prose}]});
    let o = post_with(&h, "/v1/chat/completions", &body, &[("x-switchyard-task", "summarizer")]).await;
    assert_eq!(o.status, 200, "{}", o.text());
    assert_eq!(o.header("x-switchyard-category"), Some("extraction"));
    assert!([MID, CODER].contains(&o.header("x-switchyard-model").unwrap()));
    assert_eq!(o.json()["usage"]["completion_tokens"], 8);
    assert_eq!(o.json()["choices"][0]["finish_reason"], "length");
    let again = post_with(&h, "/v1/chat/completions", &body, &[("x-switchyard-task", "summarizer")]).await;
    assert_eq!(again.header("x-switchyard-cache"), Some("hit"));

    // One model: every auto request of the task goes to it, on both surfaces.
    let a = h.post("/api/generate", json!({"model": "auto:reviewer", "prompt": "What is 2+2?", "stream": false})).await;
    assert_eq!(a.header("x-switchyard-model"), Some(CODER), "{}", a.text());
    let o = post_with(&h, "/v1/completions", &json!({"model": "auto:reviewer", "prompt": "What is 2+2?"}), &[]).await;
    assert_eq!(o.header("x-switchyard-model"), Some(CODER), "{}", o.text());
    assert_eq!(o.json()["model"], CODER);

    // An embedding request with the task header keeps the embedding models (the task's models are chat models).
    let embed = post_with(
        &h,
        "/api/embed",
        &json!({"model": "auto", "input": "hello"}),
        &[("x-switchyard-task", "summarizer")],
    )
    .await;
    assert_eq!(embed.status, 200, "{}", embed.text());

    // Clients with a model picker see each task as a virtual model, on both surfaces.
    let tags = h.get("/api/tags").await.json();
    assert!(tags["models"].as_array().unwrap().iter().any(|m| m["name"] == "auto:summarizer"), "{tags}");
    let listed = h.get("/v1/models").await.json();
    assert!(listed["data"].as_array().unwrap().iter().any(|m| m["id"] == "auto:reviewer"), "{listed}");
    let show = h.post("/api/show", json!({"model": "auto:reviewer"})).await;
    assert_eq!(show.status, 200, "{}", show.text());
    assert_eq!(h.get("/v1/models/auto:reviewer").await.status, 200);

    // The decision records the rule; explain shows it.
    let decisions = h.get("/admin/decisions?limit=50").await.json();
    let tasks: Vec<&str> =
        decisions["decisions"].as_array().unwrap().iter().filter_map(|d| d["task"].as_str()).collect();
    assert!(tasks.contains(&"summarizer") && tasks.contains(&"reviewer"), "{decisions}");
    // The rule's quality preference, on both surfaces (one chat decision each: the repeats were cache hits).
    let summarized: Vec<&Value> = decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["task"] == "summarizer" && d["scoring"]["category"] == "extraction")
        .collect();
    assert_eq!(summarized.len(), 2, "{decisions}");
    assert!(summarized.iter().all(|d| d["scoring"]["preference"] == 0.3), "{decisions}");
    assert_eq!(summarized.iter().filter(|d| d["surface"] == "openai").count(), 1);
    let e = h.get("/admin/explain?prompt=Write%20a%20poem&task=summarizer").await;
    assert_eq!(e.status, 200, "{}", e.text());
    let e = e.json();
    assert_eq!(e["task"]["name"], "summarizer");
    assert_eq!(e["classifier"], "task");
    assert_eq!(e["category"], "extraction");
    assert!([MID, CODER].contains(&e["chosen"].as_str().unwrap()));
    let excluded = e["scoring"]["candidates"].as_array().unwrap().iter().find(|c| c["model"] == SMALL).unwrap();
    assert_eq!(excluded["excluded"], "not among the task's models");
    h.stop().await;
}

#[tokio::test]
async fn unknown_tasks_are_a_400_in_each_surfaces_shape_or_plain_auto() {
    let h = with_tasks(vec![("planner", TaskRule::default())], |_| {}).await;
    let a = h.post("/api/chat", chat("auto:plannr", "hi")).await;
    assert_eq!(a.status, 400);
    let message = a.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("unknown task \"plannr\"") && message.contains("planner"), "{message}");
    let o = post_with(&h, "/v1/chat/completions", &chat("auto", "hi"), &[("x-switchyard-task", "plannr")]).await;
    assert_eq!(o.status, 400);
    assert_eq!(o.json()["error"]["type"], "invalid_request_error");
    assert_eq!(o.json()["error"]["param"], "x-switchyard-task");
    let bad = post_with(&h, "/api/chat", &chat("auto", "hi"), &[("x-switchyard-cascade", "always")]).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    h.stop().await;

    let lenient = with_tasks(vec![], |c| c.routing.unknown_task = switchyard_core::config::UnknownTask::Auto).await;
    let a = lenient.post("/api/chat", chat("auto:plannr", "hi")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    lenient.stop().await;
}

#[tokio::test]
async fn a_cascade_escalates_exactly_when_a_validator_fails_and_stops_at_the_first_pass() {
    let h = with_tasks(vec![("agent", cascade_task(&[SMALL, MID, CODER]))], |_| {}).await;
    let ask = |content: &str| chat("auto:agent", content);

    // Loaded first, so that counting the simulator's requests counts answers only.
    for m in [SMALL, MID, CODER] {
        assert_eq!(h.post("/api/chat", chat(m, "warm up")).await.status, 200);
    }
    // Every validator passes: the first step answers, one model request.
    let before = sim_requests(&h).await;
    let a = h.post("/api/chat", ask("Say hello to the team.")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("1/3"));
    assert_eq!(a.header("x-switchyard-model"), Some(SMALL));
    assert_eq!(a.header("x-switchyard-cascade-escalations"), None);
    assert_eq!(sim_requests(&h).await - before, 1);

    // Each way of answering badly escalates with its reason; the next step's good answer is the one returned.
    let cases: [(&str, Value, &str); 5] = [
        ("refusal", ask("Say hello to the team."), "refusal"),
        ("empty", ask("Say hello to the team."), "empty"),
        ("truncated", ask("Say hello to the team."), "truncated"),
        (
            "invalid_json",
            {
                let mut b = ask("Give me a JSON object with a greeting.");
                b["format"] = json!("json");
                b
            },
            "invalid_json",
        ),
        ("bad_code", ask("Write a Python function that adds two numbers."), "code_syntax"),
    ];
    for (fault, body, reason) in cases {
        h.fault(json!({"model": SMALL, "bad_answer": fault})).await;
        let before = sim_requests(&h).await;
        let a = h.post("/api/chat", body.clone()).await;
        assert_eq!(a.status, 200, "{fault}: {}", a.text());
        assert_eq!(a.header("x-switchyard-cascade-step"), Some("2/3"), "{fault}");
        assert_eq!(a.header("x-switchyard-model"), Some(MID), "{fault}");
        assert_eq!(a.header("x-switchyard-cascade-escalations"), Some(format!("{SMALL}={reason}").as_str()));
        assert_eq!(sim_requests(&h).await - before, 2, "{fault}");
        // What the client got is what the second model says to the request, not the refused answer.
        let direct = h
            .post("/api/chat", {
                let mut b = body.clone();
                b["model"] = json!(MID);
                b
            })
            .await;
        assert_eq!(a.json()["message"], direct.json()["message"], "{fault}");
        clear_faults(&h).await;
    }

    // JSON that parses but breaks the schema of OpenAI's `response_format` (translated to Ollama's `format`).
    h.fault(json!({"model": SMALL, "bad_answer": "schema_mismatch"})).await;
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]});
    let mut structured = chat("auto:agent", "Alice is 31. Give her name and age.");
    structured["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}});
    let before = sim_requests(&h).await;
    let o = post_with(&h, "/v1/chat/completions", &structured, &[]).await;
    assert_eq!(o.status, 200, "{}", o.text());
    assert_eq!(o.header("x-switchyard-cascade-step"), Some("2/3"));
    assert_eq!(o.header("x-switchyard-cascade-escalations"), Some(format!("{SMALL}=schema_mismatch").as_str()));
    assert_eq!(sim_requests(&h).await - before, 2);
    let content: Value = serde_json::from_str(o.json()["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(content["name"].is_string() && content["age"].is_i64(), "{content}");
    clear_faults(&h).await;

    // Tool-call arguments that miss a required parameter.
    let mut tools = ask("What is the weather in Paris?");
    tools["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    h.fault(json!({"model": SMALL, "bad_answer": "bad_tool_args"})).await;
    let a = h.post("/api/chat", tools.clone()).await;
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("2/3"), "{}", a.text());
    assert_eq!(
        a.json()["message"]["tool_calls"][0]["function"]["arguments"]["city"].as_str().map(str::is_empty),
        Some(false)
    );
    // Two steps fail: the third answers; all fail: the last answer is returned, marked.
    h.fault(json!({"model": MID, "bad_answer": "bad_tool_args"})).await;
    let a = h.post("/api/chat", tools.clone()).await;
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("3/3"));
    assert_eq!(
        a.header("x-switchyard-cascade-escalations"),
        Some(format!("{SMALL}=bad_tool_call, {MID}=bad_tool_call").as_str())
    );
    assert_eq!(a.header("x-switchyard-cascade-unvalidated"), None);
    h.fault(json!({"model": CODER, "bad_answer": "bad_tool_args"})).await;
    let a = h.post("/api/chat", tools).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("3/3"));
    assert_eq!(a.header("x-switchyard-cascade-unvalidated"), Some("bad_tool_call"));
    clear_faults(&h).await;

    // A refused answer is still returned, marked, when every later step fails to answer.
    h.fault(json!({"model": SMALL, "bad_answer": "refusal"})).await;
    h.fault(json!({"model": MID, "error_status": 500})).await;
    h.fault(json!({"model": CODER, "error_status": 500})).await;
    let a = h.post("/api/chat", ask("Say hello to the team.")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("1/3"));
    assert_eq!(a.header("x-switchyard-cascade-unvalidated"), Some("refusal"));
    assert_eq!(
        a.header("x-switchyard-cascade-escalations"),
        Some(format!("{SMALL}=refusal, {MID}=error, {CODER}=error").as_str())
    );
    clear_faults(&h).await;

    // A failing step (an error, not a bad answer) escalates too.
    h.fault(json!({"model": SMALL, "error_status": 500})).await;
    let a = h.post("/api/chat", ask("Say hello to the team.")).await;
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("2/3"), "{}", a.text());
    assert_eq!(a.header("x-switchyard-cascade-escalations"), Some(format!("{SMALL}=error").as_str()));
    clear_faults(&h).await;

    // The same on OpenAI's surface, by header.
    h.fault(json!({"model": SMALL, "bad_answer": "refusal"})).await;
    let o = post_with(
        &h,
        "/v1/chat/completions",
        &chat("auto", "Say hello to the team."),
        &[("x-switchyard-task", "agent")],
    )
    .await;
    assert_eq!(o.status, 200, "{}", o.text());
    assert_eq!(o.header("x-switchyard-cascade-step"), Some("2/3"));
    assert_eq!(o.json()["model"], MID);
    assert!(!o.json()["choices"][0]["message"]["content"].as_str().unwrap().starts_with("I'm sorry"));
    // Ollama's generate and OpenAI's completions and Responses API cascade alike.
    let g = h.post("/api/generate", json!({"model": "auto:agent", "prompt": "Say hello.", "stream": false})).await;
    assert_eq!(g.header("x-switchyard-cascade-step"), Some("2/3"), "{}", g.text());
    assert!(!g.json()["response"].as_str().unwrap().starts_with("I'm sorry"));
    let c = post_with(&h, "/v1/completions", &json!({"model": "auto:agent", "prompt": "Say hello."}), &[]).await;
    assert_eq!(c.header("x-switchyard-cascade-step"), Some("2/3"), "{}", c.text());
    let r = post_with(&h, "/v1/responses", &json!({"model": "auto:agent", "input": "Say hello."}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-cascade-step"), Some("2/3"));
    assert_eq!(r.json()["model"], MID);
    clear_faults(&h).await;

    let metrics = h.get("/metrics").await.text();
    assert!(
        metric(&metrics, "switchyard_cascade_escalations_total", "reason=\"refusal\",step=\"1\"") >= 2.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "switchyard_cascade_escalations_total", "reason=\"bad_tool_call\",step=\"2\""), 2.0);
    assert_eq!(metric(&metrics, "switchyard_cascade_escalations_total", "reason=\"schema_mismatch\",step=\"1\""), 1.0);
    assert!(metric(&metrics, "switchyard_cascade_requests_total", "step=\"1\"") >= 1.0);
    assert!(metric(&metrics, "switchyard_cascade_model_seconds_total", "work=\"answer\"") > 0.0);
    let decisions = h.get("/admin/decisions?limit=1").await.json();
    assert_eq!(decisions["decisions"][0]["cascade"], json!([SMALL, MID, CODER]));
    h.stop().await;
}

#[tokio::test]
async fn an_auto_cascade_climbs_from_the_cheapest_adequate_model_and_a_list_stops_at_its_most_steps() {
    let chain = TaskRule {
        category: Some(Category::Factual),
        cascade: Some(CascadeSteps::Auto("auto".into())),
        ..TaskRule::default()
    };
    let short = TaskRule { cascade_max_steps: Some(2), ..cascade_task(&[SMALL, MID, CODER]) };
    let h = with_tasks(vec![("chain", chain), ("short", short)], |c| c.vram.num_ctx = 16384).await;
    for m in [SMALL, MID, CODER] {
        assert_eq!(h.post("/api/chat", chat(m, "warm up")).await.status, 200);
    }
    // Quality climbs as speed falls; the other models (not loaded, slow to load) are far behind.
    let rows = [(SMALL, 4000.0, 200.0, 1.6), (MID, 2600.0, 112.0, 3.1), (CODER, 2000.0, 60.0, 2.9)];
    seed_profiles(&h, &rows, 100, |name, _| match name {
        SMALL => 0.5,
        MID => 0.7,
        _ => 0.9,
    })
    .await;

    // Explain lists the steps the scorer picked: cheapest adequate first, each better than the one before.
    let explain = h.get("/admin/explain?prompt=Who%20wrote%20Hamlet%3F&task=chain").await.json();
    assert_eq!(explain["cascade"], json!([SMALL, MID, CODER]), "{explain}");
    let ask = |task: &str| chat(&format!("auto:{task}"), "Who wrote Hamlet?");
    let a = h.post("/api/chat", ask("chain")).await;
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("1/3"), "{}", a.text());
    assert_eq!(a.header("x-switchyard-model"), Some(SMALL));
    h.fault(json!({"model": SMALL, "bad_answer": "refusal"})).await;
    let a = h.post("/api/chat", ask("chain")).await;
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("2/3"), "{}", a.text());
    assert_eq!(a.header("x-switchyard-model"), Some(MID));

    // A listed cascade cut to two steps: the second answers for the first, and there is no third.
    h.fault(json!({"model": MID, "bad_answer": "refusal"})).await;
    let before = sim_requests(&h).await;
    let a = h.post("/api/chat", ask("short")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(sim_requests(&h).await - before, 2, "two steps asked, not three");
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("2/2"));
    assert_eq!(a.header("x-switchyard-model"), Some(MID));
    assert_eq!(a.header("x-switchyard-cascade-unvalidated"), Some("refusal"));
    clear_faults(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn streams_are_never_cut_or_duplicated_by_a_cascade() {
    let h = with_tasks(vec![("agent", cascade_task(&[SMALL, MID]))], |_| {}).await;
    h.fault(json!({"model": SMALL, "bad_answer": "refusal"})).await;
    let mut body = chat("auto:agent", "Say hello to the team.");
    body["stream"] = json!(true);

    // Without opting in, a stream is routed as the task's plain auto request: no cascade, relayed as it comes.
    let plain = h.post("/api/chat", body.clone()).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("x-switchyard-cascade-step"), None);
    assert!(plain.lines().len() > 2);

    // Opted in: the accepted answer only, once, as a stream in each surface's shape.
    let buffered = post_with(&h, "/api/chat", &body, &[("x-switchyard-cascade", "buffer")]).await;
    assert_eq!(buffered.status, 200, "{}", buffered.text());
    assert_eq!(buffered.header("x-switchyard-cascade-step"), Some("2/2"));
    assert_eq!(buffered.header("content-type"), Some("application/x-ndjson"));
    let lines = buffered.lines();
    assert_eq!(lines.iter().filter(|l| l["done"] == true).count(), 1);
    assert_eq!(lines.last().unwrap()["done"], true);
    let text: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    let mut direct = body.clone();
    direct["model"] = json!(MID);
    direct["stream"] = json!(false);
    let direct = h.post("/api/chat", direct).await.json();
    assert_eq!(text, direct["message"]["content"].as_str().unwrap());
    assert!(!text.contains("sorry"));

    let sse = post_with(
        &h,
        "/v1/chat/completions",
        &json!({"model": "auto:agent", "stream": true,
        "messages": [{"role": "user", "content": "Say hello to the team."}]}),
        &[("x-switchyard-cascade", "buffer")],
    )
    .await;
    assert_eq!(sse.status, 200, "{}", sse.text());
    let events = sse.events();
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    let text: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, direct["message"]["content"].as_str().unwrap());

    // `off` skips the cascade for a buffered request too; the small model's refusal is what it gets.
    let off = post_with(&h, "/api/chat", &chat("auto:agent", "Say hello."), &[("x-switchyard-cascade", "off")]).await;
    assert_eq!(off.header("x-switchyard-cascade-step"), None);
    h.stop().await;
}

#[tokio::test]
async fn the_cache_keeps_only_answers_the_cascade_validated() {
    let h = with_tasks(vec![("agent", cascade_task(&[SMALL, MID]))], |c| {
        c.cache.enabled = true;
        // Plain auto routing of the task goes to the small model, which answers badly.
        c.routing.quality_preference = 0.0;
    })
    .await;
    h.fault(json!({"model": SMALL, "bad_answer": "refusal"})).await;
    let mut body = chat("auto:agent", "Say hello to the team.");
    body["options"] = json!({"temperature": 0});

    // Served without the cascade (a stream that did not opt in, or `off`): not stored.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let plain = h.post("/api/chat", streamed).await;
    assert_eq!(plain.header("x-switchyard-model"), Some(SMALL));
    let off = post_with(&h, "/api/chat", &body, &[("x-switchyard-cascade", "off")]).await;
    assert!(off.json()["message"]["content"].as_str().unwrap().starts_with("I'm sorry"), "{}", off.text());

    // The cascade's validated answer is, and is what a repeat gets.
    let first = h.post("/api/chat", body.clone()).await;
    assert_eq!(first.header("x-switchyard-cache"), Some("miss"));
    assert_eq!(first.header("x-switchyard-cascade-step"), Some("2/2"));
    let again = h.post("/api/chat", body).await;
    assert_eq!(again.header("x-switchyard-cache"), Some("hit"));
    assert_eq!(again.json()["message"], first.json()["message"]);
    h.stop().await;
}

/// The built-in fleet and a judge that is never wrong.
fn fleet_with_oracle() -> Fleet {
    let mut fleet = Fleet::builtin();
    let mut oracle = fleet.models.iter().find(|m| m.name.as_str() == MID).unwrap().clone();
    oracle.name = ModelName::parse("oracle:8b").unwrap();
    oracle.digest = None;
    oracle.skills = Category::PROFILED.iter().map(|c| (*c, 1.0)).collect::<BTreeMap<_, _>>();
    fleet.models.push(oracle);
    fleet
}

#[tokio::test]
async fn a_judge_escalates_wrong_answers_and_accepts_right_ones() {
    let rule = TaskRule {
        cascade: Some(CascadeSteps::List(vec![SMALL.into(), "oracle:8b".into()])),
        judge_model: Some("oracle:8b".into()),
        ..TaskRule::default()
    };
    let h = start_with(SimOptions { fleet: fleet_with_oracle(), ..SimOptions::default() }, |c| {
        c.tasks.insert("graded".into(), rule);
    })
    .await;
    let suites = switchyard_profiler::suite::builtin().unwrap();
    let math = suites.iter().find(|s| s.category == Category::Math).unwrap();
    let mut escalated = 0;
    for item in math.items.iter().filter(|i| i.system.is_none()).take(8) {
        // What the small model says alone decides: the cascade escalates exactly when that is wrong.
        let alone = h.post("/api/chat", chat(SMALL, &item.prompt)).await.json();
        let right = item.check.evaluate(alone["message"]["content"].as_str().unwrap()).correct() == Some(true);
        let a = h.post("/api/chat", chat("auto:graded", &item.prompt)).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let step = a.header("x-switchyard-cascade-step").unwrap();
        assert_eq!(step, if right { "1/2" } else { "2/2" }, "{}: {}", item.id, a.text());
        if !right {
            escalated += 1;
            assert_eq!(a.header("x-switchyard-cascade-escalations"), Some(format!("{SMALL}=judge").as_str()));
            let content = a.json()["message"]["content"].as_str().unwrap().to_string();
            assert_eq!(item.check.evaluate(&content).correct(), Some(true), "{}", item.id);
        }
    }
    assert!(escalated > 0, "the small model answered every item right; pick harder items");
    // A tool call is checked by the tools validator, not by a judge reading its (empty) text.
    let mut tools = chat("auto:graded", "What is the weather in Paris?");
    tools["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let a = h.post("/api/chat", tools).await;
    assert_eq!(a.header("x-switchyard-cascade-step"), Some("1/2"), "{}", a.text());
    assert!(a.json()["message"]["tool_calls"].is_array());
    let metrics = h.get("/metrics").await.text();
    assert!(metric(&metrics, "switchyard_cascade_model_seconds_total", "work=\"judge\"") > 0.0);
    h.stop().await;
}

/// A conversation's first `turns` exchanges and a new question: each assistant turn is long, so that
/// reprocessing the history costs more than the answer.
fn history(first: &str, turns: usize) -> Vec<Value> {
    let filler = "The committee reviewed the quarterly figures, compared them with the forecast, and noted where \
                  the two diverged and why. ";
    let mut messages = vec![
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": first}),
    ];
    for i in 0..turns {
        messages.push(json!({"role": "assistant", "content": filler.repeat(60)}));
        messages.push(json!({"role": "user", "content": format!("Question {i}: what about the figures?")}));
    }
    messages
}

#[tokio::test]
async fn a_conversation_stays_on_its_model_until_another_is_much_better_or_its_model_is_unloaded() {
    let talk = TaskRule {
        category: Some(Category::Factual),
        models: Some(vec![MID.into(), CODER.into()]),
        quality_preference: Some(0.7),
        ..TaskRule::default()
    };
    let h = with_tasks(vec![("talk", talk)], |c| c.vram.num_ctx = 16384).await;
    // Both models loaded, their speeds measured.
    for m in [MID, CODER] {
        assert_eq!(h.post("/api/chat", chat(m, "warm up")).await.status, 200);
    }
    let rows = [(MID, 2600.0, 112.0, 3.1), (CODER, 2800.0, 104.0, 2.9)];
    let factual = Category::PROFILED.iter().position(|c| *c == Category::Factual).unwrap();
    let seed = |mid: f64, coder: f64| {
        let h = &h;
        async move {
            seed_profiles(h, &rows, 100, |name, c| {
                if c != factual {
                    0.5
                } else if name == MID {
                    mid
                } else {
                    coder
                }
            })
            .await;
        }
    };
    let turn =
        |first: &str, turns: usize| json!({"model": "auto:talk", "stream": false, "messages": history(first, turns)});
    let served = |a: &Answer| a.header("x-switchyard-model").unwrap().to_string();

    // The first turn goes to the better model.
    let opening = "Tell me about the quarterly review.";
    seed(0.8, 0.5).await;
    let a = h.post("/api/chat", turn(opening, 0)).await;
    assert_eq!(served(&a), MID, "{}", a.text());

    // The other model becomes marginally better: a new conversation goes there, this one stays.
    seed(0.7, 0.8).await;
    let fresh = h.post("/api/chat", turn("Another conversation entirely.", 1)).await;
    assert_eq!(served(&fresh), CODER);
    let a = h.post("/api/chat", turn(opening, 1)).await;
    assert_eq!(served(&a), MID);
    let decision = &h.get("/admin/decisions?limit=1").await.json()["decisions"][0];
    let kept = decision["scoring"]["candidates"].as_array().unwrap().iter().find(|c| c["model"] == MID).unwrap();
    assert!(kept["cached_prefix_tokens"].as_u64().unwrap() > 1000, "{decision}");

    // Much better: it moves, and stays on the new model from then on.
    seed(0.1, 0.9).await;
    let a = h.post("/api/chat", turn(opening, 2)).await;
    assert_eq!(served(&a), CODER);
    seed(0.8, 0.7).await;
    let a = h.post("/api/chat", turn(opening, 3)).await;
    assert_eq!(served(&a), CODER);

    // Its model unloaded: its cache went with it, and the better model takes the conversation.
    let unload = h.post("/api/generate", json!({"model": CODER, "keep_alive": 0})).await;
    assert_eq!(unload.status, 200, "{}", unload.text());
    let a = h.post("/api/chat", turn(opening, 4)).await;
    assert_eq!(served(&a), MID);

    // An explicit conversation id works the same whatever the first turn says.
    assert_eq!(h.post("/api/chat", chat(CODER, "warm up again")).await.status, 200);
    let id = [("x-switchyard-conversation", "thread-42")];
    let first = post_with(&h, "/api/chat", &turn("One opening.", 1), &id).await;
    let model = served(&first);
    let other = if model == MID { CODER } else { MID };
    seed(if model == MID { 0.7 } else { 0.8 }, if model == MID { 0.8 } else { 0.7 }).await;
    let next = post_with(&h, "/api/chat", &turn("A different opening.", 4), &id).await;
    assert_eq!(served(&next), model);
    let elsewhere =
        post_with(&h, "/api/chat", &turn("A different opening.", 4), &[("x-switchyard-conversation", "thread-43")])
            .await;
    assert_eq!(served(&elsewhere), other);
    h.stop().await;
}

/// Ollama's deprecated generate memory: `context` holds token ids only the model that wrote them can read.
#[tokio::test]
async fn a_generate_context_goes_back_to_the_model_that_wrote_it_and_no_other_model_reads_it() {
    let talk = TaskRule {
        category: Some(Category::Factual),
        models: Some(vec![MID.into(), CODER.into()]),
        quality_preference: Some(0.7),
        ..TaskRule::default()
    };
    let h = with_tasks(vec![("talk", talk)], |_| {}).await;
    for m in [MID, CODER] {
        assert_eq!(h.post("/api/chat", chat(m, "warm up")).await.status, 200);
    }
    let rows = [(MID, 2600.0, 112.0, 3.1), (CODER, 2800.0, 104.0, 2.9)];
    let seed = |mid: f64, coder: f64| {
        let h = &h;
        async move { seed_profiles(h, &rows, 100, |name, _| if name == MID { mid } else { coder }).await }
    };
    let generate = |prompt: &str, context: Option<&Value>| {
        let mut body = json!({"model": "auto:talk", "prompt": prompt, "stream": false});
        if let Some(c) = context {
            body["context"] = c.clone();
        }
        body
    };
    let served = |a: &Answer| a.header("x-switchyard-model").unwrap().to_string();
    let prompt_tokens = |a: &Answer| a.json()["prompt_eval_count"].as_u64().unwrap();

    seed(0.8, 0.5).await;
    // Streamed: the context comes in the last line.
    let mut streamed = generate("Tell me about the quarterly review.", None);
    streamed["stream"] = json!(true);
    let first = h.post("/api/generate", streamed).await;
    assert_eq!(served(&first), MID, "{}", first.text());
    let context = first.lines().last().unwrap()["context"].clone();
    let ids = context.as_array().unwrap().len() as u64;
    assert!(ids > 0, "{}", first.text());

    // The other model becomes much better: a new generate goes there, the one carrying MID's context stays with MID,
    // which reads it (Ollama counts its tokens as prompt).
    seed(0.1, 0.9).await;
    let next = "And what about the next quarter?";
    let fresh = h.post("/api/generate", generate(next, None)).await;
    assert_eq!(served(&fresh), CODER, "{}", fresh.text());
    let kept = h.post("/api/generate", generate(next, Some(&context))).await;
    assert_eq!(served(&kept), MID, "{}", kept.text());
    assert_eq!(prompt_tokens(&kept), prompt_tokens(&fresh) + ids, "{}", kept.text());

    // Its writer failing, the request still gets an answer: from the other model, which is not sent the context.
    h.fault(json!({"model": MID, "error_status": 500, "error_message": "model crashed"})).await;
    let moved = h.post("/api/generate", generate(next, Some(&context))).await;
    assert_eq!(served(&moved), CODER, "{}", moved.text());
    assert_eq!(prompt_tokens(&moved), prompt_tokens(&fresh), "{}", moved.text());
    clear_faults(&h).await;

    // The answer's own context is remembered in turn; a context whose writer is not known (written before a restart)
    // and one sent to a model named explicitly go as sent.
    let again = h.post("/api/generate", generate(next, Some(&moved.json()["context"]))).await;
    assert_eq!(served(&again), CODER);
    assert_eq!(prompt_tokens(&again), prompt_tokens(&fresh) + moved.json()["context"].as_array().unwrap().len() as u64);
    let unknown = h.post("/api/generate", generate(next, Some(&json!([7, 7, 7])))).await;
    assert_eq!(prompt_tokens(&unknown), prompt_tokens(&fresh) + 3, "{}", unknown.text());
    let named = json!({"model": MID, "prompt": next, "stream": false, "context": [7, 7, 7]});
    let named = h.post("/api/generate", named).await;
    assert_eq!(prompt_tokens(&named), prompt_tokens(&fresh) + 3, "{}", named.text());
    h.stop().await;
}
