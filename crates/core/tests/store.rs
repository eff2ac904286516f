//! The store's contract, run against SQLite and (when the test command started one) Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_core::store::testing::{self, TestStore};
use switchyard_core::store::{
    CacheRecord, DecisionRecord, ItemResult, LoadEvent, ModelRecord, ProfileRun, RunStatus, ScoreRecord, SqlStore,
};

fn model(name: &str) -> ModelRecord {
    ModelRecord {
        name: name.into(),
        digest: "a".repeat(64),
        size_bytes: 2_019_393_189,
        family: "llama".into(),
        parameter_size: "3.2B".into(),
        quantization: "Q4_K_M".into(),
        capabilities: vec!["completion".into(), "tools".into()],
        context_length: Some(131_072),
        kv_bytes_per_token: Some(114_688),
        ..Default::default()
    }
}

fn run(id: &str, model: &str, started_at: i64) -> ProfileRun {
    ProfileRun {
        id: id.into(),
        model: model.into(),
        digest: "d1".into(),
        suite_version: "math=v1-x".into(),
        categories: "math".into(),
        items_per_category: 10,
        status: RunStatus::Running,
        started_at,
        finished_at: None,
        load_seconds: None,
        vram_bytes: None,
        vram_probe_delta: None,
        error: None,
    }
}

fn result(item: &str, category: &str, correct: bool) -> ItemResult {
    ItemResult {
        model: "m:latest".into(),
        digest: "d1".into(),
        category: category.into(),
        item_id: item.into(),
        suite_version: "v1-x".into(),
        run_id: "r1".into(),
        correct,
        score: if correct { 1.0 } else { 0.0 },
        ttft_ms: Some(12.5),
        prefill_tps: Some(2000.0),
        decode_tps: Some(110.0),
        prompt_tokens: Some(40),
        output_tokens: Some(3),
        total_ms: Some(60.0),
        error: None,
        created_at: 1,
    }
}

async fn engines() -> Vec<TestStore> {
    testing::all().await.expect("test stores")
}

#[tokio::test]
async fn models_round_trip_and_measurements_are_kept() {
    for t in engines().await {
        let s = &t.store;
        s.upsert_model(&model("llama3.2:3b")).await.unwrap();
        s.record_model_measurement("llama3.2:3b", Some(1.25), Some(3_000_000_000), Some(4096)).await.unwrap();
        // A catalog refresh (no measurements) keeps the measured figures.
        let mut refreshed = model("llama3.2:3b");
        refreshed.digest = "b".repeat(64);
        s.upsert_model(&refreshed).await.unwrap();
        let models = s.models().await.unwrap();
        assert_eq!(models.len(), 1, "{}", t.engine);
        let m = &models[0];
        assert_eq!(m.digest, "b".repeat(64), "{}", t.engine);
        assert_eq!(m.capabilities, vec!["completion", "tools"], "{}", t.engine);
        assert_eq!(m.kv_bytes_per_token, Some(114_688), "{}", t.engine);
        assert_eq!(m.load_seconds, Some(1.25), "{}", t.engine);
        assert_eq!(m.vram_bytes, Some(3_000_000_000), "{}", t.engine);
        assert_eq!(m.vram_num_ctx, Some(4096), "{}", t.engine);
    }
}

#[tokio::test]
async fn runs_resume_from_the_newest_unfinished_one() {
    for t in engines().await {
        let s = &t.store;
        s.insert_run(&run("old", "m:latest", 1)).await.unwrap();
        s.insert_run(&run("new", "m:latest", 2)).await.unwrap();
        let open = s.unfinished_run("m:latest", "d1", "math=v1-x").await.unwrap().unwrap();
        assert_eq!(open.id, "new", "{}", t.engine);
        assert!(s.unfinished_run("m:latest", "d2", "math=v1-x").await.unwrap().is_none(), "{}", t.engine);

        let mut done = open.clone();
        done.status = RunStatus::Complete;
        done.finished_at = Some(3);
        done.load_seconds = Some(2.5);
        done.vram_bytes = Some(5_000_000_000);
        s.update_run(&done).await.unwrap();
        let open = s.unfinished_run("m:latest", "d1", "math=v1-x").await.unwrap().unwrap();
        assert_eq!(open.id, "old", "{}", t.engine);
        let runs = s.runs(Some("m:latest")).await.unwrap();
        assert_eq!(runs.len(), 2, "{}", t.engine);
        assert_eq!(runs[0], done, "{}", t.engine);
        assert!(s.runs(Some("other")).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn results_are_never_counted_twice() {
    for t in engines().await {
        let s = &t.store;
        assert!(s.insert_result(&result("math-001", "math", true)).await.unwrap(), "{}", t.engine);
        assert!(!s.insert_result(&result("math-001", "math", false)).await.unwrap(), "{}", t.engine);
        assert!(s.insert_result(&result("math-002", "math", false)).await.unwrap());
        assert!(s.insert_result(&result("coding-001", "coding", true)).await.unwrap());
        let math = s.results("m:latest", "d1", "math", "v1-x").await.unwrap();
        assert_eq!(math.len(), 2, "{}", t.engine);
        assert_eq!(math[0], result("math-001", "math", true), "{}", t.engine);
        assert!(!math[1].correct);
        assert!(s.results("m:latest", "d1", "math", "v2-y").await.unwrap().is_empty());
        assert_eq!(s.delete_results("m:latest").await.unwrap(), 3, "{}", t.engine);
        assert!(s.results("m:latest", "d1", "math", "v1-x").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn scores_are_replaced_per_model_and_category() {
    for t in engines().await {
        let s = &t.store;
        let mut score = ScoreRecord {
            model: "m:latest".into(),
            category: "math".into(),
            digest: "d1".into(),
            suite_version: "v1-x".into(),
            n: 10,
            successes: 7,
            mean: 0.7,
            ci_low: 0.397,
            ci_high: 0.892,
            ttft_p50_ms: Some(20.0),
            ttft_p95_ms: Some(40.0),
            latency_p50_ms: Some(300.0),
            latency_p95_ms: Some(900.0),
            prefill_tps: Some(1500.0),
            decode_tps: Some(100.0),
            mean_output_tokens: Some(42.0),
            updated_at: 5,
        };
        assert_eq!(s.scores_version().await.unwrap(), (0, 0), "{}", t.engine);
        s.upsert_score(&score).await.unwrap();
        assert_eq!(s.scores_version().await.unwrap(), (1, 5), "{}", t.engine);
        score.n = 20;
        score.successes = 15;
        score.updated_at = 9;
        s.upsert_score(&score).await.unwrap();
        let scores = s.scores().await.unwrap();
        assert_eq!(scores, vec![score.clone()], "{}", t.engine);
        assert_eq!(s.scores_version().await.unwrap(), (1, 9), "a replaced score moves the version: {}", t.engine);
    }
}

#[tokio::test]
async fn decisions_and_load_events_newest_first() {
    for t in engines().await {
        let s = &t.store;
        for i in 0..5 {
            s.insert_decision(&DecisionRecord {
                id: None,
                request_id: format!("req-{i}"),
                at: i,
                surface: "openai".into(),
                category: "coding".into(),
                requested: "auto".into(),
                chosen: "qwen2.5-coder:7b".into(),
                quality_preference: 0.7,
                decision_us: 4.2,
                candidates_json: "[]".into(),
            })
            .await
            .unwrap();
        }
        let recent = s.decisions(3).await.unwrap();
        assert_eq!(
            recent.iter().map(|d| d.request_id.as_str()).collect::<Vec<_>>(),
            ["req-4", "req-3", "req-2"],
            "{}",
            t.engine
        );
        // A batch longer than one statement's rows goes in whole and in order, each row with its own values.
        let batch: Vec<DecisionRecord> = (0..150)
            .map(|i| DecisionRecord {
                id: None,
                request_id: format!("batch-{i}"),
                at: 100 + i,
                surface: if i % 2 == 0 { "ollama" } else { "openai" }.into(),
                category: "math".into(),
                requested: "auto".into(),
                chosen: format!("model-{i}"),
                quality_preference: i as f64 / 150.0,
                decision_us: i as f64,
                candidates_json: format!("[{i}]"),
            })
            .collect();
        s.insert_decisions(&batch).await.unwrap();
        let mut stored = s.decisions(200).await.unwrap();
        assert_eq!(stored.len(), 155, "{}", t.engine);
        stored.truncate(150);
        stored.reverse();
        for (got, want) in stored.iter().zip(&batch) {
            assert_eq!(DecisionRecord { id: None, ..got.clone() }, *want, "{}", t.engine);
        }

        for (model, kind) in [("a:latest", "load"), ("b:latest", "load"), ("a:latest", "evict")] {
            s.insert_load_event(&LoadEvent {
                id: None,
                at: 1,
                model: model.into(),
                kind: kind.into(),
                reason: "request".into(),
                strategy: Some("cost".into()),
                duration_ms: Some(1500.0),
                bytes: Some(3_000_000_000),
                ok: true,
                error: None,
            })
            .await
            .unwrap();
        }
        let a = s.load_events(Some("a:latest"), 10).await.unwrap();
        assert_eq!(a.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["evict", "load"], "{}", t.engine);
        assert_eq!(s.load_events(None, 10).await.unwrap().len(), 3);
    }
}

#[tokio::test]
async fn runtime_pins_are_kept() {
    for t in engines().await {
        let s = &t.store;
        s.set_pinned("a:latest", true).await.unwrap();
        s.set_pinned("a:latest", true).await.unwrap();
        s.set_pinned("b:latest", true).await.unwrap();
        s.set_pinned("b:latest", false).await.unwrap();
        assert_eq!(s.pins().await.unwrap(), vec!["a:latest".to_string()], "{}", t.engine);
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_data_survives_reopening() {
    for t in engines().await {
        t.store.upsert_model(&model("x:latest")).await.unwrap();
        let reopened = SqlStore::connect(&t.url, 2).await.unwrap();
        assert_eq!(reopened.migrate().await.unwrap(), 0, "{}", t.engine);
        use switchyard_core::store::Store;
        assert_eq!(reopened.models().await.unwrap().len(), 1, "{}", t.engine);
    }
}

fn cached(key: &str, model: &str, created_at: i64) -> CacheRecord {
    CacheRecord {
        key: key.into(),
        model: model.into(),
        digest: "d1".into(),
        endpoint: "/api/chat".into(),
        semantic_key: Some(format!("s-{key}")),
        embedding: Some("AACAPw==".into()),
        answer: format!("{{\"model\":\"{model}\",\"done\":true}}"),
        created_at,
    }
}

#[tokio::test]
async fn cached_answers_are_read_replaced_expired_deleted_and_pruned() {
    for t in engines().await {
        let s = &t.store;
        for (i, key) in ["k1", "k2", "k3", "k4"].iter().enumerate() {
            let model = if i % 2 == 0 { "llama3.2:3b" } else { "qwen2.5:7b" };
            s.cache_put(&cached(key, model, 1000 + i as i64)).await.unwrap();
        }
        assert_eq!(s.cache_get("k1", 0).await.unwrap(), Some(cached("k1", "llama3.2:3b", 1000)), "{}", t.engine);
        assert_eq!(s.cache_get("k1", 1001).await.unwrap(), None, "{}: older than asked for", t.engine);
        assert_eq!(s.cache_get("nope", 0).await.unwrap(), None);
        // Replaced in place.
        s.cache_put(&cached("k1", "llama3.2:3b", 2000)).await.unwrap();
        assert_eq!(s.cache_get("k1", 1500).await.unwrap().unwrap().created_at, 2000);
        let recent: Vec<String> = s.cache_recent(0, 2).await.unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(recent, ["k1", "k4"], "{}: newest first", t.engine);
        // By model, then by age.
        assert_eq!(s.cache_delete(Some("qwen2.5:7b"), None).await.unwrap(), 2, "{}", t.engine);
        assert_eq!(s.cache_delete(None, Some(1500)).await.unwrap(), 1, "{}: k3 is older", t.engine);
        assert_eq!(s.cache_recent(0, 10).await.unwrap().len(), 1);
        // Pruned to the newest `keep`, and by age.
        for i in 0..5 {
            s.cache_put(&cached(&format!("p{i}"), "llama3.2:3b", 3000 + i)).await.unwrap();
        }
        assert_eq!(s.cache_prune(3, 0).await.unwrap(), 3, "{}: six kept to three", t.engine);
        let left: Vec<String> = s.cache_recent(0, 10).await.unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(left, ["p4", "p3", "p2"], "{}", t.engine);
        assert_eq!(s.cache_prune(10, 3003).await.unwrap(), 1, "{}: p2 expired", t.engine);
        // Answers of the same millisecond as the last one kept all stay.
        for key in ["t1", "t2", "t3"] {
            s.cache_put(&cached(key, "llama3.2:3b", 5000)).await.unwrap();
        }
        assert_eq!(s.cache_prune(2, 0).await.unwrap(), 2, "{}: p3 and p4 go, the tie stays", t.engine);
        assert_eq!(s.cache_recent(0, 10).await.unwrap().len(), 3);
        assert_eq!(s.cache_delete(None, None).await.unwrap(), 3);
    }
}

#[tokio::test]
async fn fleet_nodes_on_one_store_share_quality_and_keep_their_own_speeds_and_pins() {
    use switchyard_core::store::Store;
    for t in engines().await {
        let a = SqlStore::connect(&t.url, 2).await.unwrap().with_node("gpu-a");
        let b = SqlStore::connect(&t.url, 2).await.unwrap().with_node("gpu-b");
        let plain = &t.store;
        // A box on its own pinned a model before the fleet existed: its pin stays its own.
        plain.set_pinned("old:latest", true).await.unwrap();
        a.set_pinned("m:latest", true).await.unwrap();
        b.set_pinned("n:latest", true).await.unwrap();
        assert_eq!(a.pins().await.unwrap(), vec!["m:latest".to_string()], "{}", t.engine);
        assert_eq!(b.pins().await.unwrap(), vec!["n:latest".to_string()], "{}", t.engine);
        assert_eq!(plain.pins().await.unwrap(), vec!["old:latest".to_string()], "{}", t.engine);
        b.set_pinned("m:latest", false).await.unwrap();
        assert_eq!(a.pins().await.unwrap(), vec!["m:latest".to_string()], "b's unpin leaves a's pin: {}", t.engine);

        // Node a profiles the model: everyone sees its quality; only a sees its speeds and load time.
        a.upsert_model(&model("m:latest")).await.unwrap();
        a.record_model_measurement("m:latest", Some(4.5), Some(6_000_000_000), Some(4096)).await.unwrap();
        let score = ScoreRecord {
            model: "m:latest".into(),
            category: "coding".into(),
            digest: "d1".into(),
            suite_version: "1".into(),
            n: 10,
            successes: 7,
            mean: 0.7,
            ci_low: 0.4,
            ci_high: 0.9,
            ttft_p50_ms: Some(80.0),
            ttft_p95_ms: Some(120.0),
            latency_p50_ms: Some(900.0),
            latency_p95_ms: Some(1500.0),
            prefill_tps: Some(2000.0),
            decode_tps: Some(60.0),
            mean_output_tokens: Some(30.0),
            updated_at: 5,
        };
        a.upsert_score(&score).await.unwrap();
        let seen_by_a = a.scores().await.unwrap();
        let seen_by_b = b.scores().await.unwrap();
        assert_eq!((seen_by_a[0].successes, seen_by_b[0].successes), (7, 7), "quality is shared: {}", t.engine);
        assert_eq!(seen_by_a[0].decode_tps, Some(60.0), "{}", t.engine);
        assert_eq!(seen_by_b[0].decode_tps, None, "b has not measured its own speed: {}", t.engine);
        assert_eq!(seen_by_b[0].prefill_tps, None, "{}", t.engine);
        let m_a = a.models().await.unwrap().into_iter().find(|m| m.name == "m:latest").unwrap();
        let m_b = b.models().await.unwrap().into_iter().find(|m| m.name == "m:latest").unwrap();
        assert_eq!((m_a.load_seconds, m_a.vram_bytes), (Some(4.5), Some(6_000_000_000)), "{}", t.engine);
        assert_eq!((m_b.load_seconds, m_b.vram_bytes), (None, None), "{}", t.engine);

        // b measures its own, slower GPU: each keeps its figure.
        b.upsert_score(&ScoreRecord { decode_tps: Some(20.0), ..score.clone() }).await.unwrap();
        b.record_model_measurement("m:latest", Some(9.0), None, None).await.unwrap();
        assert_eq!(a.scores().await.unwrap()[0].decode_tps, Some(60.0), "{}", t.engine);
        assert_eq!(b.scores().await.unwrap()[0].decode_tps, Some(20.0), "{}", t.engine);
        let m_a = a.models().await.unwrap().into_iter().find(|m| m.name == "m:latest").unwrap();
        let m_b = b.models().await.unwrap().into_iter().find(|m| m.name == "m:latest").unwrap();
        assert_eq!((m_a.load_seconds, m_b.load_seconds), (Some(4.5), Some(9.0)), "{}", t.engine);
    }
}
