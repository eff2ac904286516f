//! The profiler against the simulator's default fleet: measured accuracy agrees with the configured skills, the
//! ranking per category matches, a run killed with SIGKILL and restarted ends with exactly the rows of a clean run,
//! on SQLite and on Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::catalog::Catalog;
use switchyard_core::config::{Config, ProbeKind};
use switchyard_core::http::HttpClient;
use switchyard_core::ollama::OllamaClient;
use switchyard_core::store::Store;
use switchyard_core::store::testing;
use switchyard_profiler::plan::{options, suites};
use switchyard_profiler::{Progress, ProgressSink, Runner};
use switchyard_sim::SimOptions;
use switchyard_vram::probe::SimProbe;
use switchyard_vram::{ManagerIo, ManagerOptions, NoopSink, VramManager};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Silent;

impl ProgressSink for Silent {
    fn event(&self, _event: &Progress) {}
}

/// The simulator, a VRAM manager on it, and a runner writing into `store`.
struct Setup {
    sim: switchyard_sim::SimHandle,
    client: OllamaClient,
    catalog: Arc<Catalog>,
    vram: VramManager,
    runner: Runner,
    config: Arc<Config>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

async fn setup(store: Arc<dyn Store>, items_per_category: u32) -> Setup {
    setup_fleet(store, items_per_category, switchyard_sim::Fleet::builtin()).await
}

async fn setup_fleet(store: Arc<dyn Store>, items_per_category: u32, fleet: switchyard_sim::Fleet) -> Setup {
    let sim = switchyard_sim::spawn(SimOptions { fleet, ..SimOptions::default() }).await.unwrap();
    let mut config = Config::default();
    config.ollama.url = sim.url();
    config.vram.probe = ProbeKind::Sim;
    config.profiler.items_per_category = items_per_category;
    let config = Arc::new(config);
    let client = OllamaClient::new(HttpClient::default(), sim.url());
    let catalog = Arc::new(Catalog::fetch(&client, &Catalog::default()).await.unwrap());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let io = ManagerIo {
        client: client.clone(),
        probe: Arc::new(SimProbe::new(client.clone())),
        catalog: Arc::new(catalog.resident()),
        sink: Arc::new(NoopSink),
        metrics: None,
    };
    let vram = VramManager::start(ManagerOptions::from_config(Arc::clone(&config), 1), io, shutdown.clone(), &tracker)
        .await
        .unwrap();
    let runner = Runner {
        client: client.clone(),
        store,
        vram: vram.clone(),
        config: Arc::clone(&config),
        suites: Arc::new(suites(&config).unwrap()),
        cancel: shutdown.clone(),
    };
    Setup { sim, client, catalog, vram, runner, config, shutdown, tracker }
}

impl Setup {
    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.sim.shutdown().await;
    }
}

async fn profile_fleet(
    store: Arc<dyn Store>,
    items_per_category: u32,
) -> (Vec<switchyard_core::store::ScoreRecord>, Value) {
    let s = setup(Arc::clone(&store), items_per_category).await;
    let opts = options(&s.config, &[], &[], false).unwrap();
    let summary = s.runner.run(&s.catalog, &opts, &Silent).await.unwrap();
    assert!(summary.items_run > 0);
    let fleet: Value = s.client.http().get_json(&s.client.url("/sim/fleet"), Duration::from_secs(5)).await.unwrap();
    s.stop().await;
    (store.scores().await.unwrap(), fleet)
}

fn skills(fleet: &Value) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for m in fleet["models"].as_array().unwrap() {
        if let Some(skills) = m["skills"].as_object() {
            for (category, skill) in skills {
                out.insert((m["name"].as_str().unwrap().to_string(), category.clone()), skill.as_f64().unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn measured_quality_agrees_with_the_configured_skills_on_every_engine() {
    for t in testing::all().await.unwrap() {
        let (scores, fleet) = profile_fleet(Arc::clone(&t.store), 0).await;
        let skills = skills(&fleet);
        let mut inside = 0;
        let mut cells = 0;
        for s in &scores {
            let Some(skill) = skills.get(&(s.model.clone(), s.category.clone())) else { continue };
            cells += 1;
            if (s.ci_low..=s.ci_high).contains(skill) {
                inside += 1;
            } else {
                eprintln!(
                    "{} / {}: skill {skill} outside [{:.3}, {:.3}] (mean {:.3}, n {})",
                    s.model, s.category, s.ci_low, s.ci_high, s.mean, s.n
                );
            }
            assert!(s.n >= 25, "{} / {} has only {} items", s.model, s.category, s.n);
        }
        assert_eq!(cells, 36, "{}: six chat models x six categories", t.engine);
        let share = f64::from(inside) / f64::from(cells);
        println!(
            "{}: configured skill inside the Wilson 95% interval in {inside}/{cells} cells ({:.0}%)",
            t.engine,
            share * 100.0
        );
        assert!(share >= 0.95, "{}: only {inside}/{cells} cells agree", t.engine);

        // Ranking: wherever two models' skills differ by 0.15 or more, the measured means are in the same order.
        let mut checked = 0;
        for a in &scores {
            for b in &scores {
                if a.category != b.category || a.model >= b.model {
                    continue;
                }
                let (Some(sa), Some(sb)) = (
                    skills.get(&(a.model.clone(), a.category.clone())),
                    skills.get(&(b.model.clone(), b.category.clone())),
                ) else {
                    continue;
                };
                if (sa - sb).abs() >= 0.15 {
                    checked += 1;
                    assert_eq!(
                        sa > sb,
                        a.mean > b.mean,
                        "{}: {} ({sa}) vs {} ({sb}) measured {} vs {}",
                        a.category,
                        a.model,
                        b.model,
                        a.mean,
                        b.mean
                    );
                }
            }
        }
        assert!(checked > 20, "only {checked} pairs compared");
    }
}

/// An Ollama cloud model runs its items on ollama.com: a run over every model leaves it out, and one that names it
/// profiles it without a cold load (there is no VRAM of it to measure).
#[tokio::test]
async fn cloud_models_are_profiled_only_when_named_and_never_loaded() {
    let mut fleet = switchyard_sim::Fleet::builtin();
    let mut cloud = fleet.models.iter().find(|m| m.name.as_str() == "llama3.1:8b").unwrap().clone();
    cloud.name = switchyard_core::ModelName::parse("gpt-oss:20b-cloud").unwrap();
    cloud.remote_host = Some("https://ollama.com:443".into());
    fleet.models.push(cloud);
    let t = testing::sqlite().await.unwrap();
    let s = setup_fleet(Arc::clone(&t.store), 2, fleet).await;
    assert!(s.catalog.get(&switchyard_core::ModelName::parse("gpt-oss:20b-cloud").unwrap()).unwrap().cloud);
    let all = options(&s.config, &[], &["math".to_string()], false).unwrap();
    let summary = s.runner.run(&s.catalog, &all, &Silent).await.unwrap();
    let profiled: Vec<&str> = summary.models.iter().map(|m| m.model.as_str()).collect();
    assert!(profiled.contains(&"llama3.1:8b") && !profiled.contains(&"gpt-oss:20b-cloud"), "{profiled:?}");
    let named = options(&s.config, &["gpt-oss:20b-cloud".to_string()], &["math".to_string()], false).unwrap();
    let summary = s.runner.run(&s.catalog, &named, &Silent).await.unwrap();
    assert_eq!(summary.items_run, 2);
    assert_eq!(summary.models[0].model, "gpt-oss:20b-cloud");
    assert_eq!(summary.models[0].load_seconds, None, "no cold load of a cloud model");
    s.stop().await;
}

#[tokio::test]
async fn a_second_run_skips_fresh_models_and_a_repull_makes_them_stale() {
    let t = testing::sqlite().await.unwrap();
    let s = setup(Arc::clone(&t.store), 20).await;
    let (runner, client, config, vram) = (&s.runner, &s.client, &s.config, &s.vram);
    let catalog = Arc::clone(&s.catalog);
    let models = vec!["llama3.2:3b".to_string()];
    let mut opts = options(config, &models, &["math".to_string()], false).unwrap();
    opts.items_per_category = 5;
    let first = runner.run(&catalog, &opts, &Silent).await.unwrap();
    assert_eq!(first.items_run, 5);
    let second = runner.run(&catalog, &opts, &Silent).await.unwrap();
    assert_eq!(second.items_run, 0, "fresh results are reused");
    assert!(matches!(second.models[0].outcome, switchyard_profiler::ModelOutcome::Skipped(_)));
    // A new digest (the model was pulled again) makes the profile stale: it is profiled again.
    let _: Value = client
        .http()
        .post_json(&client.url("/sim/repull"), &serde_json::json!({"model": "llama3.2:3b"}), Duration::from_secs(5))
        .await
        .unwrap();
    let catalog = Arc::new(Catalog::fetch(client, &catalog).await.unwrap());
    vram.set_catalog(Arc::clone(&catalog));
    let third = runner.run(&catalog, &opts, &Silent).await.unwrap();
    assert_eq!(third.items_run, 5, "a re-pulled model is profiled again");
    // --force re-profiles a fresh model.
    opts.force = true;
    let forced = runner.run(&catalog, &opts, &Silent).await.unwrap();
    assert_eq!(forced.items_run, 5);
    s.stop().await;
}

#[tokio::test]
async fn open_ended_items_are_scored_by_the_judge_when_one_is_set() {
    let t = testing::sqlite().await.unwrap();
    let s = setup(Arc::clone(&t.store), 0).await;
    let mut opts = options(&s.config, &["llama3.2:3b".to_string()], &["creative".to_string()], false).unwrap();
    let without = s.runner.run(&s.catalog, &opts, &Silent).await.unwrap();
    let suites = suites(&s.config).unwrap();
    let creative = suites.iter().find(|x| x.category == switchyard_core::Category::Creative).unwrap();
    let judged = creative.items.iter().filter(|i| i.check.needs_judge()).count();
    assert!(judged > 0);
    assert_eq!(without.items_run, creative.items.len() - judged, "judged items are skipped without a judge");
    opts.judge =
        Some(switchyard_profiler::JudgeTarget::Local(switchyard_core::ModelName::parse("llama3.1:8b").unwrap()));
    let with = s.runner.run(&s.catalog, &opts, &Silent).await.unwrap();
    assert_eq!(with.items_run, judged, "only the judged items were left to run");
    let spec = s.catalog.models.values().find(|m| m.name.as_str() == "llama3.2:3b").unwrap();
    let results = t.store.results("llama3.2:3b", &spec.digest, "creative", &creative.version).await.unwrap();
    let judged_results: Vec<_> =
        results.iter().filter(|r| creative.items.iter().any(|i| i.id == r.item_id && i.check.needs_judge())).collect();
    assert_eq!(judged_results.len(), judged);
    assert!(judged_results.iter().all(|r| r.error.is_none() && (0.0..=1.0).contains(&r.score)), "{judged_results:?}");
    s.stop().await;
}

#[tokio::test]
async fn profiling_a_pinned_model_keeps_it_pinned() {
    let t = testing::sqlite().await.unwrap();
    let s = setup(Arc::clone(&t.store), 20).await;
    let model = switchyard_core::ModelName::parse("llama3.2:3b").unwrap();
    s.vram.admin(switchyard_vram::AdminOp::Pin, &model).await.unwrap();
    let mut opts = options(&s.config, &["llama3.2:3b".to_string()], &["math".to_string()], true).unwrap();
    opts.items_per_category = 2;
    let report = s.runner.run(&s.catalog, &opts, &Silent).await.unwrap();
    assert_eq!(report.items_run, 2);
    let entry = s.vram.ledger().entry(&model).cloned().unwrap();
    assert!(entry.pinned, "the cold-load measurement unloads it, and must pin it again");
}
