//! `auto` routing with seeded profiles: the router picks the model the utility formula says for each category and
//! each quality preference, and prefers a loaded model when a cold one is only marginally better; `/admin/explain`
//! and real routing decide alike over the labelled prompt sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Harness, start_with};
use serde_json::{Value, json};
use std::path::Path;
use switchyard::classify::expected_output_tokens;
use switchyard_core::Category;
use switchyard_core::store::{ScoreRecord, SqlStore, Store};
use switchyard_core::text::estimate_tokens;
use switchyard_sim::SimOptions;

const GIB: u64 = 1024 * 1024 * 1024;

/// (model, prefill tok/s, decode tok/s, load s, quality per category in Category::PROFILED order)
const SEED: [(&str, f64, f64, f64, [f64; 6]); 6] = [
    ("llama3.2:3b", 4200.0, 165.0, 1.6, [0.30, 0.25, 0.30, 0.45, 0.50, 0.45]),
    ("llama3.1:8b", 2600.0, 112.0, 3.1, [0.50, 0.45, 0.50, 0.65, 0.70, 0.60]),
    ("qwen2.5-coder:7b", 2800.0, 104.0, 2.9, [0.85, 0.55, 0.45, 0.40, 0.35, 0.70]),
    ("deepseek-r1:14b", 1300.0, 52.0, 5.8, [0.60, 0.90, 0.85, 0.50, 0.45, 0.55]),
    ("llama3.3:70b", 380.0, 17.0, 24.0, [0.80, 0.80, 0.88, 0.92, 0.90, 0.88]),
    ("llava:7b", 1900.0, 96.0, 3.6, [0.20, 0.15, 0.25, 0.40, 0.40, 0.35]),
];

const N: u32 = 40;

const PROMPTS: [(Category, &str); 6] = [
    (Category::Coding, "Write a Python function that merges two sorted lists into one sorted list."),
    (Category::Math, "Solve for x: 3x + 7 = 22. Show the steps."),
    (
        Category::Reasoning,
        "If all bloops are razzies and all razzies are lazzies, are all bloops definitely lazzies? Explain the logic step by step.",
    ),
    (Category::Factual, "What is the capital city of Australia?"),
    (Category::Creative, "Write a short poem about autumn leaves falling on a quiet river."),
    (
        Category::Extraction,
        "Extract the names and email addresses from this text as JSON: Contact Ana Lopez at ana@example.com or Bo Chen at bo@example.org.",
    ),
];

async fn seed(h: &Harness, quality: impl Fn(&str, usize) -> f64) {
    let rows: Vec<(&str, f64, f64, f64)> = SEED.iter().map(|(n, p, d, l, _)| (*n, *p, *d, *l)).collect();
    common::seed_profiles(h, &rows, N, quality).await;
}

/// The utility formula of the routing design, computed independently: U = w*q + (1-w) * Lmin / L.
fn oracle(
    category: Category,
    prompt: &str,
    w: f64,
    quality: impl Fn(&str, usize) -> f64,
    loaded: &[&str],
) -> (String, f64) {
    let prior = 0.4;
    let k = 4.0;
    let c = Category::PROFILED.iter().position(|p| *p == category).unwrap();
    let prompt_tokens = estimate_tokens(prompt) as f64;
    let out = expected_output_tokens(category) as f64;
    let rows: Vec<(String, f64, f64)> = SEED
        .iter()
        .map(|(name, prefill, decode, load, _)| {
            let successes = (quality(name, c) * f64::from(N)).round();
            let q = (successes + prior * k) / (f64::from(N) + k);
            let cold = if loaded.contains(name) { 0.0 } else { *load };
            (name.to_string(), q, cold + prompt_tokens / prefill + out / decode)
        })
        .collect();
    let fastest = rows.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let mut scored: Vec<(String, f64)> =
        rows.into_iter().map(|(n, q, l)| (n, w * q + (1.0 - w) * fastest / l)).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let margin = scored[0].1 - scored[1].1;
    (scored[0].0.clone(), margin)
}

fn seeded_quality(name: &str, c: usize) -> f64 {
    SEED.iter().find(|s| s.0 == name).unwrap().4[c]
}

async fn explain(h: &Harness, prompt: &str, w: f64) -> Value {
    let a = h.get(&format!("/admin/explain?prompt={}&quality={w}", encode(prompt))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
}

#[tokio::test]
async fn auto_picks_what_the_utility_says_for_each_category_and_preference() {
    let h = start_with(SimOptions { gpus: vec![80 * GIB], ..SimOptions::default() }, |_| {}).await;
    seed(&h, seeded_quality).await;
    let mut checked = 0;
    for (category, prompt) in PROMPTS {
        for w in [0.05, 0.5, 0.95] {
            let v = explain(&h, prompt, w).await;
            assert_eq!(v["category"], category.as_str(), "{prompt}");
            let (want, margin) = oracle(category, prompt, w, seeded_quality, &[]);
            if margin < 1e-6 {
                continue;
            }
            assert_eq!(
                v["chosen"],
                want.as_str(),
                "{category} at w={w}: {}",
                serde_json::to_string_pretty(&v["scoring"]).unwrap()
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} unambiguous cases");
    // Quality first picks the category's best; speed first picks the fastest.
    assert_eq!(explain(&h, PROMPTS[1].1, 0.95).await["chosen"], "deepseek-r1:14b");
    assert_eq!(explain(&h, PROMPTS[0].1, 0.95).await["chosen"], "qwen2.5-coder:7b");
    assert_eq!(explain(&h, PROMPTS[3].1, 0.05).await["chosen"], "llama3.2:3b");
    // A real request goes where the explanation says, and says so in its headers.
    let a = h
        .call(
            http::Method::POST,
            &h.url("/api/chat"),
            Some(
                json!({"model": "auto", "stream": false, "messages": [{"role": "user", "content": PROMPTS[1].1}]})
                    .to_string()
                    .into(),
            ),
            &[("x-switchyard-quality", "0.95")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-switchyard-model"), Some("deepseek-r1:14b"));
    assert_eq!(a.header("x-switchyard-category"), Some("math"));
    assert_eq!(a.json()["model"], "deepseek-r1:14b");
    // auto:fast and auto:quality use their configured preferences.
    let fast = h
        .post(
            "/api/chat",
            json!({"model": "auto:fast", "stream": false, "messages": [{"role": "user", "content": PROMPTS[3].1}]}),
        )
        .await;
    assert_eq!(fast.header("x-switchyard-model"), Some("llama3.2:3b"));
    h.stop().await;
}

#[tokio::test]
async fn a_loaded_model_wins_over_a_marginally_better_cold_one() {
    let h = start_with(SimOptions { gpus: vec![80 * GIB], ..SimOptions::default() }, |_| {}).await;
    // In coding, llama3.1:8b is loaded and barely worse than the cold coder; at w = 0.7 the load is not worth it.
    let close = |name: &str, c: usize| match (name, c) {
        ("qwen2.5-coder:7b", 0) => 0.72,
        ("llama3.1:8b", 0) => 0.70,
        _ => seeded_quality(name, c) * 0.5,
    };
    seed(&h, close).await;
    let a = h.post("/admin/vram/load", json!({"model": "llama3.1:8b"})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = explain(&h, PROMPTS[0].1, 0.7).await;
    assert_eq!(oracle(Category::Coding, PROMPTS[0].1, 0.7, close, &["llama3.1:8b"]).0, "llama3.1:8b");
    assert_eq!(v["chosen"], "llama3.1:8b", "{}", serde_json::to_string_pretty(&v["scoring"]).unwrap());
    let coder = v["scoring"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "qwen2.5-coder:7b")
        .unwrap()
        .clone();
    assert!(coder["quality"].as_f64().unwrap() > v["scoring"]["candidates"][0]["quality"].as_f64().unwrap());
    assert!(coder["latency"]["load"].as_f64().unwrap() > 0.0);

    // When the cold model is clearly better, it is worth loading.
    let far = |name: &str, c: usize| match (name, c) {
        ("qwen2.5-coder:7b", 0) => 0.95,
        ("llama3.1:8b", 0) => 0.40,
        _ => seeded_quality(name, c) * 0.5,
    };
    seed(&h, far).await;
    let v = explain(&h, PROMPTS[0].1, 0.7).await;
    assert_eq!(v["chosen"], "qwen2.5-coder:7b");
    h.stop().await;
}

#[tokio::test]
async fn pin_fastest_pins_a_small_chat_model_at_start() {
    let h = start_with(SimOptions::default(), |c| c.vram.pin_fastest = true).await;
    let pinned = common::eventually(std::time::Duration::from_secs(20), || async {
        let v = h.get("/admin/vram").await.json();
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["pinned"] == true && m["state"] == "loaded" && m["name"] == "llama3.2:3b")
    })
    .await;
    assert!(pinned, "{}", h.get("/admin/vram").await.text());
    h.stop().await;
}

#[tokio::test]
async fn the_embedding_classifier_routes_through_the_embedding_model() {
    let h = start_with(SimOptions::default(), |c| {
        c.routing.classifier = switchyard_core::config::ClassifierKind::Embedding;
        c.routing.embedding_model = "nomic-embed-text".into();
    })
    .await;
    let ready = common::eventually(std::time::Duration::from_secs(30), || async {
        h.get("/admin/explain?prompt=Write%20a%20Python%20function%20that%20sorts%20a%20list").await.json()["classifier"] == "embedding"
    })
    .await;
    assert!(ready, "the embedding classifier never became ready");
    let a = h.post("/api/chat", json!({"model": "auto", "stream": false, "messages": [{"role": "user", "content": "Write a Python function that sorts a list"}]})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-switchyard-category"), Some("coding"));
    let vram = h.get("/admin/vram").await.json();
    let embed =
        vram["models"].as_array().unwrap().iter().find(|m| m["name"] == "nomic-embed-text:latest").cloned().unwrap();
    assert!(embed["uses"].as_u64().unwrap() >= 2, "the embedding model was admitted for the classification: {embed}");
    h.stop().await;
}

/// The single-prompt lines of the labelled prompt sets.
fn prompts() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let mut out = Vec::new();
    for name in ["classifier-prompts.jsonl", "classifier-holdout.jsonl"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(p) = v["prompt"].as_str() {
                out.push(p.to_string());
            }
        }
    }
    out
}

/// Percent-encodes every byte but ASCII letters and digits, for a query string.
fn encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn explain_and_routing_decide_alike_over_the_labelled_prompts() {
    // Room for a few models but not all: load costs and evictions vary as it runs.
    let h = start_with(SimOptions { gpus: vec![32 * GIB], ..SimOptions::default() }, |_| {}).await;
    seed(&h, seeded_quality).await;
    let prompts = prompts();
    assert!(prompts.len() > 300, "the labelled sets hold {} single prompts", prompts.len());
    let models = ["auto", "auto:fast", "auto:quality"];
    let qualities = [None, Some(0.1), Some(0.9)];
    let mut chosen_models = std::collections::BTreeSet::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let model = models[i % models.len()];
        let quality = qualities[(i / models.len()) % qualities.len()];
        let mut path = format!("/admin/explain?prompt={}&model={}", encode(prompt), encode(model));
        if let Some(q) = quality {
            path.push_str(&format!("&quality={q}"));
        }
        let explained = h.get(&path).await;
        assert_eq!(explained.status, 200, "{}", explained.text());
        let explained = explained.json();

        let body = json!({"model": model, "stream": false, "messages": [{"role": "user", "content": prompt}]});
        let q = quality.map(|q| q.to_string());
        let headers: Vec<(&str, &str)> = q.iter().map(|q| ("x-switchyard-quality", q.as_str())).collect();
        let routed = h.call(http::Method::POST, &h.url("/api/chat"), Some(body.to_string().into()), &headers).await;
        assert_eq!(routed.status, 200, "{prompt}: {}", routed.text());
        let decision = h.get("/admin/decisions?limit=1").await.json()["decisions"][0].clone();

        let what = format!("prompt {i} ({model}, quality {quality:?}): {prompt}");
        assert_eq!(routed.header("x-switchyard-category"), explained["category"].as_str(), "{what}");
        assert_eq!(routed.header("x-switchyard-model"), explained["chosen"].as_str(), "{what}");
        assert_eq!(decision["chosen"], explained["chosen"], "{what}");
        assert_eq!(decision["confidence"], explained["confidence"], "{what}");
        assert_eq!(decision["requested"], model, "{what}");
        assert_eq!(
            decision["scoring"],
            explained["scoring"],
            "{what}\nrouted: {}\nexplained: {}",
            serde_json::to_string_pretty(&decision["scoring"]).unwrap(),
            serde_json::to_string_pretty(&explained["scoring"]).unwrap()
        );
        chosen_models.insert(explained["chosen"].as_str().unwrap_or("none").to_string());
    }
    // The comparison covered more than one outcome.
    assert!(chosen_models.len() >= 3, "every prompt went to one of {chosen_models:?}");
}

#[tokio::test]
async fn a_running_server_picks_up_profiles_written_to_the_store() {
    let h = start_with(SimOptions::default(), |c| c.database.profile_refresh_secs = 1).await;
    let profiled = |v: &Value| -> bool {
        v["models"].as_array().unwrap().iter().any(|m| m["name"] == "llama3.1:8b" && m["profiled"] == true)
    };
    assert!(!profiled(&h.get("/admin/models").await.json()));
    // What `switchyard profile` in another process does: write scores to the store, nothing else.
    let store = SqlStore::open(&h.router.config().database.resolved_url(), 1).await.unwrap();
    let digest = h.router.catalog().models.values().find(|s| s.name.as_str() == "llama3.1:8b").unwrap().digest.clone();
    for c in Category::PROFILED {
        store
            .upsert_score(&ScoreRecord {
                model: "llama3.1:8b".into(),
                category: c.as_str().into(),
                digest: digest.clone(),
                suite_version: "v1-test".into(),
                n: N,
                successes: N / 2,
                mean: 0.5,
                ci_low: 0.3,
                ci_high: 0.7,
                ttft_p50_ms: None,
                ttft_p95_ms: None,
                latency_p50_ms: None,
                latency_p95_ms: None,
                prefill_tps: Some(2600.0),
                decode_tps: Some(112.0),
                mean_output_tokens: Some(3.0),
                updated_at: 1,
            })
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if profiled(&h.get("/admin/models").await.json()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server never reloaded the profiles");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn explain_names_the_classifier_and_its_three_likeliest_categories_and_blends_when_unsure() {
    let h = start_with(SimOptions::default(), |_| {}).await;
    let sure = h.get("/admin/explain?prompt=Write%20a%20haiku%20about%20the%20first%20snow").await.json();
    assert_eq!(sure["classifier"], "learned");
    let top = sure["top_categories"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["category"], sure["category"]);
    let p: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().unwrap()).collect();
    assert!(p[0] >= p[1] && p[1] >= p[2] && p.iter().sum::<f64>() <= 1.0 + 1e-6, "{p:?}");
    assert_eq!(sure["blended"], sure["confidence"].as_f64().unwrap() < 0.6);
    h.stop().await;

    // Blending always (blend_below = 1) and never (0) shows in the decision.
    for (threshold, blended) in [(1.0, true), (0.0, false)] {
        let h = start_with(SimOptions::default(), move |c| c.routing.blend_below = threshold).await;
        let v = h.get("/admin/explain?prompt=What%20is%2017%20*%2023%3F").await.json();
        assert_eq!(v["blended"], blended, "{threshold}");
        assert_eq!(v["scoring"]["blended"], blended, "{threshold}");
        h.stop().await;
    }

    let h = start_with(SimOptions::default(), |c| {
        c.routing.classifier = switchyard_core::config::ClassifierKind::Rules;
    })
    .await;
    let v = h.get("/admin/explain?prompt=Write%20a%20haiku%20about%20the%20first%20snow").await.json();
    assert_eq!(v["classifier"], "rules");
    h.stop().await;
}

/// An Ollama cloud model (`remote_host` in Ollama's listing) runs on ollama.com: the router lists it as Ollama does,
/// forwards it without a VRAM lease or load, never counts it on the GPU, and under `routing.remote = "fallback"` (the
/// default) `auto` keeps the user's prompts on the machine while a local model can serve them, however good the
/// cloud model scored.
#[tokio::test]
async fn cloud_models_take_no_vram_and_auto_keeps_prompts_local() {
    let mut fleet = switchyard_sim::Fleet::builtin();
    let mut cloud = fleet.models.iter().find(|m| m.name.as_str() == "llama3.3:70b").unwrap().clone();
    cloud.name = switchyard_core::ModelName::parse("gpt-oss:120b-cloud").unwrap();
    cloud.family = "gptoss".into();
    cloud.load_seconds = 0.0;
    cloud.remote_host = Some("https://ollama.com:443".into());
    cloud.capabilities = vec!["completion".into(), "tools".into(), "thinking".into()];
    fleet.models.push(cloud);
    let h = start_with(SimOptions { fleet, gpus: vec![24 * GIB], ..SimOptions::default() }, |_| {}).await;
    let tags = h.get("/api/tags").await.json();
    let entry = tags["models"].as_array().unwrap().iter().find(|m| m["name"] == "gpt-oss:120b-cloud").unwrap();
    assert_eq!(entry["remote_host"], "https://ollama.com:443", "{entry}");
    assert_eq!(entry["remote_model"], "gpt-oss:120b");
    let local_entry = tags["models"].as_array().unwrap().iter().find(|m| m["name"] == "llama3.2:3b").unwrap();
    assert!(local_entry.get("remote_host").is_none(), "{local_entry}");

    let chat = |model: &str| json!({"model": model, "stream": false, "think": "high", "messages": [{"role": "user", "content": "hi"}]});
    let a = h.post("/api/chat", chat("gpt-oss:120b-cloud")).await;
    assert_eq!(a.status, 200, "a level is gpt-oss's own: {}", a.text());
    let load = h.post("/api/generate", json!({"model": "gpt-oss:120b-cloud", "prompt": ""})).await;
    assert_eq!(load.status, 200, "{}", load.text());
    assert_eq!(load.json()["done_reason"], "load");
    let vram = h.get("/admin/vram").await.json();
    let names: Vec<&str> = vram["models"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(!names.contains(&"gpt-oss:120b-cloud"), "no ledger entry: {names:?}");
    assert_eq!(h.sim_gpu().await["gpus"][0]["used_bytes"], 0, "nothing took GPU memory for it");

    // Scored far above every local model in every category, it is still not chosen while a local one can serve.
    let rows = [
        ("gpt-oss:120b-cloud", 5000.0, 500.0, 0.0),
        ("llama3.2:3b", 2000.0, 100.0, 2.0),
        ("llama3.1:8b", 1500.0, 80.0, 3.0),
    ];
    common::seed_profiles(&h, &rows, 50, |m, _| if m == "gpt-oss:120b-cloud" { 0.98 } else { 0.3 }).await;
    for prompt in ["What is the capital of Peru?", "Write a haiku about rain"] {
        let a = h
            .post(
                "/api/chat",
                json!({"model": "auto", "stream": false, "messages": [{"role": "user", "content": prompt}]}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_ne!(a.header("x-switchyard-model"), Some("gpt-oss:120b-cloud"), "{prompt}");
    }
    let explain = explain(&h, "What is the capital of Peru?", 0.9).await;
    let candidate =
        explain["scoring"]["candidates"].as_array().unwrap().iter().find(|c| c["model"] == "gpt-oss:120b-cloud");
    let candidate = candidate.unwrap_or_else(|| panic!("the cloud model is a candidate: {explain}"));
    assert_eq!(candidate["loaded"], true, "nothing to load: {candidate}");
    assert_eq!(candidate["fallback_only"], true, "{candidate}");

    // Signed out (401) or out of allowance (429): told as Ollama tells it, and the model is not paused for it.
    let cloud_chat =
        json!({"model": "gpt-oss:120b-cloud", "stream": false, "messages": [{"role": "user", "content": "hi"}]});
    h.fault(json!({"model": "gpt-oss:120b-cloud", "error_status": 401, "error_message": "unauthorized"})).await;
    for _ in 0..8 {
        let a = h.post("/api/chat", cloud_chat.clone()).await;
        assert_eq!(a.status, 401, "{}", a.text());
        assert!(a.text().contains("unauthorized"), "{}", a.text());
    }
    h.fault(json!({"model": "gpt-oss:120b-cloud", "error_status": 429, "retry_after_secs": 30})).await;
    let limited = h.post("/api/chat", cloud_chat.clone()).await;
    assert_eq!(limited.status, 503, "{}", limited.text());
    assert_eq!(limited.header("retry-after"), Some("30"));
    h.fault(json!({"model": "gpt-oss:120b-cloud"})).await;
    let after = h.post("/api/chat", cloud_chat).await;
    assert_eq!(after.status, 200, "no circuit breaker opened: {}", after.text());
    let admin = h.post("/admin/vram/pin", json!({"model": "gpt-oss:120b-cloud"})).await;
    assert_eq!(admin.status, 400, "{}", admin.text());
    assert!(admin.text().contains("cloud model"), "{}", admin.text());
    h.stop().await;
}
