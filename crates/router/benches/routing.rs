//! Micro benchmarks of the routing decision: rule classification of typical prompts, scoring a 50-model catalog,
//! and the two together as `auto` runs them on every request.
//!
//! Criterion reports means; after it, a plain loop times classify + score one call at a time and prints p50, p99
//! and p99.9, because the target (p99 <= 20 us for 50 models) is about the tail. `cargo bench --bench routing`
//! runs 100 000 iterations of that loop; `cargo test --benches` only a few, as a smoke test.

use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchyard::classify::{Classification, Classifier, ClassifyInput, Role, Turn};
use switchyard::profiles::{CategoryQuality, LiveStats, ModelProfile, ProfileTable};
use switchyard::score::{FleetView, ScoreContext, ScoreRequest, score};
use switchyard_core::catalog::{Catalog, ModelSpec};
use switchyard_core::config::{Config, Strategy, VramLimit};
use switchyard_core::ollama::Timings;
use switchyard_core::ollama::types::ModelDetails;
use switchyard_core::{Capabilities, Category, ModelName};
use switchyard_vram::Shares;
use switchyard_vram::ledger::{GpuState, Ledger, LedgerConfig};

const GIB: u64 = 1024 * 1024 * 1024;
/// Models in the synthetic catalog.
const MODELS: usize = 50;

/// The prompts a router sees most: small talk, a code question with a fence, a math problem, a pasted document.
fn prompts() -> Vec<(&'static str, String)> {
    let mut document = String::new();
    for i in 0..220 {
        document.push_str(&format!(
            "Section {i}. The quarterly report notes that revenue in the northern region grew while shipping costs \
             fell, and that the supplier contracts signed in March were renegotiated after the audit. "
        ));
    }
    document.push_str("\n\nSummarize the document above in three bullet points.");
    vec![
        ("short_chat", "Hi! How are you doing today? Any plans for the weekend?".to_string()),
        (
            "code_fence",
            "Why does this panic, and how do I fix it?\n```rust\nfn main() {\n    let v = vec![1, 2, 3];\n    \
             println!(\"{}\", v[5]);\n}\n```\nThe error says index out of bounds."
                .to_string(),
        ),
        ("math", "Solve for x: 3x^2 - 12x + 9 = 0. Show each step and check both roots.".to_string()),
        ("long_document", document),
    ]
}

/// A catalog of `MODELS` chat models of assorted sizes and capabilities, with profiles, live averages, and a
/// two-GPU ledger in which three of them are loaded.
struct World {
    config: Config,
    catalog: Catalog,
    profiles: ProfileTable,
    live: LiveStats,
    ledger: Ledger,
}

fn world() -> anyhow::Result<World> {
    let mut catalog = Catalog::default();
    let mut profiles = ProfileTable::default();
    let live = LiveStats::default();
    for i in 0..MODELS {
        let name = ModelName::parse(&format!("model-{i:02}:{}b", 1 + i % 30))?;
        let gib = 1 + (i as u64 * 7) % 20;
        let caps: &[&str] = match i % 5 {
            0 => &["completion", "tools"],
            1 => &["completion", "vision"],
            2 => &["completion", "tools", "insert"],
            _ => &["completion"],
        };
        catalog.models.insert(
            name.clone(),
            ModelSpec {
                name: name.clone(),
                digest: format!("{i:064x}"),
                size_bytes: gib * GIB,
                details: ModelDetails::default(),
                capabilities: Capabilities::from_names(caps.iter().copied()),
                context_length: Some(if i % 4 == 0 { 8192 } else { 131_072 }),
                kv_bytes_per_token: Some(64 * 1024 + 4096 * (i as u64 % 16)),
                block_count: Some(32),
                backend: None,
                cloud: false,
            },
        );
        // Two models in five are unprofiled, as on a box where some models were pulled after the last profile run.
        if i % 5 < 3 {
            let mut p = ModelProfile {
                decode_tps: Some(20.0 + (i as f64 * 13.0) % 150.0),
                prefill_tps: Some(800.0 + (i as f64 * 211.0) % 4000.0),
                load_seconds: Some(1.0 + gib as f64 * 0.4),
                ..Default::default()
            };
            for c in Category::PROFILED {
                let n = 40;
                let successes = (7 * i as u32 + 3 * c.index() as u32) % n;
                p.categories[c.index()] =
                    Some(CategoryQuality { n, successes, ci_low: 0.0, ci_high: 1.0, mean_output_tokens: Some(250.0) });
            }
            profiles.models.insert(name.clone(), p);
        }
        if i % 3 == 0 {
            let t = Timings {
                total_ns: 2_000_000_000,
                load_ns: 10_000_000,
                prompt_eval_count: 200,
                prompt_eval_ns: 100_000_000,
                eval_count: 150,
                eval_ns: 1_500_000_000,
            };
            live.observe(&name, &t, 0.2);
        }
    }
    let gpus = (0..2)
        .map(|index| GpuState { index, name: format!("GPU {index}"), total: 24 * GIB, used: 0, foreign: GIB })
        .collect();
    let mut ledger = Ledger::new(
        LedgerConfig {
            limit: VramLimit::Percent(100.0),
            headroom: 512 * 1024 * 1024,
            unload_threshold_pct: 90.0,
            threshold_min_idle: Duration::from_secs(60),
            strategy: Strategy::Cost,
            max_loaded: 6,
            idle_ttl: Some(Duration::from_secs(1800)),
            cost_half_life: Duration::from_secs(3600),
        },
        gpus,
    );
    let now = tokio::time::Instant::now();
    for (i, name) in catalog.models.keys().enumerate().filter(|(i, _)| [3, 17, 31].contains(i)) {
        let bytes = catalog.models[name].estimate_vram(4096);
        ledger.begin_load(name, Shares::one((i % 2) as u32, bytes), None, now);
        ledger.finish_load(name, Ok((2.5, None)), now);
        ledger.acquire(name, now);
        ledger.release(name, now);
    }
    Ok(World { config: Config::default(), catalog, profiles, live, ledger })
}

fn classify(classifier: &Classifier, text: &str) -> Classification {
    let turns = [
        Turn { role: Role::System, text: "You are a helpful assistant.", images: 0 },
        Turn { role: Role::User, text, images: 0 },
    ];
    classifier.classify(&ClassifyInput::text(&turns))
}

fn decide(w: &World, classifier: &Classifier, text: &str) -> usize {
    let c = classify(classifier, text);
    let req = ScoreRequest {
        category: c.category,
        needs: &c.needs,
        embedding: false,
        preference: 0.5,
        prompt_tokens: c.needs.context_tokens.max(1),
        max_output_tokens: None,
        blend: (f64::from(c.confidence) < w.config.routing.blend_below).then_some(c.scores),
        allow: None,
        affinity: None,
    };
    let cx = ScoreContext {
        config: &w.config,
        catalog: &w.catalog,
        profiles: &w.profiles,
        live: &w.live,
        ledger: &w.ledger,
        open_breakers: &[],
        backends: &[],
        cold_remote: &[],
        fleet: &FleetView::default(),
    };
    score(&req, &cx).eligible().count()
}

fn bench_classify(c: &mut Criterion, classifier: &Classifier) {
    let mut group = c.benchmark_group("classify");
    for (name, text) in prompts() {
        group.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, text| {
            b.iter(|| classify(classifier, black_box(text)))
        });
    }
    group.finish();
}

fn bench_score(c: &mut Criterion, w: &World) {
    let mut group = c.benchmark_group("score_50_models");
    let needs = switchyard::classify::Needs { context_tokens: 900, ..Default::default() };
    for category in Category::ALL {
        group.bench_with_input(BenchmarkId::from_parameter(category.as_str()), &category, |b, category| {
            b.iter(|| {
                let req = ScoreRequest {
                    category: *category,
                    needs: &needs,
                    embedding: false,
                    preference: 0.5,
                    prompt_tokens: 300,
                    max_output_tokens: None,
                    blend: None,
                    allow: None,
                    affinity: None,
                };
                let cx = ScoreContext {
                    config: &w.config,
                    catalog: &w.catalog,
                    profiles: &w.profiles,
                    live: &w.live,
                    ledger: &w.ledger,
                    open_breakers: &[],
                    backends: &[],
                    cold_remote: &[],
                    fleet: &FleetView::default(),
                };
                score(black_box(&req), &cx)
            })
        });
    }
    group.finish();
}

fn bench_decision(c: &mut Criterion, w: &World, classifier: &Classifier) {
    let mut group = c.benchmark_group("decision_classify_and_score");
    for (name, text) in prompts() {
        group.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, text| {
            b.iter(|| decide(w, classifier, black_box(text)))
        });
    }
    group.finish();
}

/// p-th percentile (0..=100) of sorted nanoseconds.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Times each decision on its own and prints the distribution per prompt.
fn tail_latency(w: &World, classifier: &Classifier, iterations: usize) {
    println!();
    println!("routing decision (classify + score, {MODELS} models), {iterations} single calls per prompt:");
    println!("| prompt | p50 us | p99 us | p99.9 us | max us | target p99 (20 us; 40 us for the 42 KB document) |");
    println!("|---|---:|---:|---:|---:|---|");
    for (name, text) in prompts() {
        for _ in 0..iterations.min(1000) {
            black_box(decide(w, classifier, &text));
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            black_box(decide(w, classifier, black_box(&text)));
            samples.push(start.elapsed().as_nanos() as u64);
        }
        samples.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        let p99 = us(percentile(&samples, 99.0));
        let target = if text.len() > 10_000 { 40.0 } else { 20.0 };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            us(percentile(&samples, 50.0)),
            p99,
            us(percentile(&samples, 99.9)),
            us(*samples.last().unwrap_or(&0)),
            if p99 <= target { "met" } else { "MISSED" }
        );
    }
}

fn main() -> anyhow::Result<()> {
    let w = world()?;
    let classifier = Classifier::new();
    let mut criterion = Criterion::default().configure_from_args();
    bench_classify(&mut criterion, &classifier);
    bench_score(&mut criterion, &w);
    bench_decision(&mut criterion, &w, &classifier);
    criterion.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not and only wants a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let iterations = std::env::var("ROUTING_TAIL_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full {
        100_000
    } else {
        200
    });
    tail_latency(&w, &classifier, iterations);
    Ok(())
}
