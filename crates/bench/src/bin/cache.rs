//! `switchyard-cache-bench`: what the response cache costs and finds.
//!
//! 1. Exact hits: the simulator answering at once (time scale 0) straight, against the release router answering the
//!    same request from its cache, closed-loop at each concurrency, buffered and streamed, alternating, repeated.
//! 2. The semantic search: one scan of a group of 10 000 and 100 000 stored questions (768 dimensions), in process.
//! 3. Labelled pairs (`crates/bench/data/paraphrase_pairs.jsonl`): the cosine similarity of each pair through the
//!    embedding model, and at each threshold how many paraphrases would hit and how many different questions would
//!    (false hits).
//! 4. A replayed trace with repeats and paraphrases through the router with the semantic cache on: exact and
//!    semantic hits, and false hits (a semantic hit whose answer is another question's).
//!
//! Prints markdown and writes JSON to `--out`.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::Method;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchyard::cache::dot;
use switchyard::cache::index::Group;
use switchyard_bench::load::{self, LoadSpec, RunFigures};
use switchyard_bench::process::sibling_binary;
use switchyard_bench::stack::{Stack, StackOptions};
use switchyard_bench::stats::Summary;
use switchyard_core::config::CacheConfig;
use switchyard_core::http::{HttpClient, build_request};

/// Measures the response cache.
#[derive(Debug, Parser)]
#[command(name = "switchyard-cache-bench", version)]
struct Cli {
    /// Concurrencies of the exact-hit runs.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Repeats of each (path, mode, concurrency).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Requests in the replayed trace.
    #[arg(long, default_value_t = 600)]
    trace_requests: usize,
    /// The labelled pairs.
    #[arg(long, default_value = "crates/bench/data/paraphrase_pairs.jsonl")]
    pairs: PathBuf,
    /// The `switchyard` release binary (default: next to this one).
    #[arg(long)]
    router_bin: Option<PathBuf>,
    /// A short smoke run.
    #[arg(long)]
    quick: bool,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One exact-hit comparison.
#[derive(Debug, Serialize)]
struct HitRow {
    mode: &'static str,
    concurrency: usize,
    direct: RunFigures,
    hit: RunFigures,
}

/// One semantic search size.
#[derive(Debug, Serialize)]
struct SearchRow {
    entries: usize,
    dims: usize,
    /// Microseconds per scan.
    scan_us: Summary,
    /// Memory of the vectors scanned, MiB.
    vectors_mib: f64,
}

/// One threshold over the labelled pairs.
#[derive(Debug, Serialize)]
struct ThresholdRow {
    threshold: f64,
    surface_hits: f64,
    reworded_hits: f64,
    false_hits: f64,
}

/// The replayed trace.
#[derive(Debug, Default, Serialize)]
struct TraceResult {
    requests: usize,
    /// Requests whose question was asked before (the most any cache could answer).
    repeats: usize,
    /// Of those, asked in other words than any earlier time.
    reworded_repeats: usize,
    exact_hits: usize,
    semantic_hits: usize,
    false_hits: usize,
    misses: usize,
    errors: usize,
    /// The wording asked and the question whose answer it got, for each false hit.
    false_hit_questions: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    hits: Vec<HitRow>,
    search: Vec<SearchRow>,
    pairs: Vec<ThresholdRow>,
    similarities: Vec<(String, f64)>,
    trace: TraceResult,
}

#[derive(Debug, Clone, Deserialize)]
struct Pair {
    kind: String,
    a: String,
    b: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let router_bin = match &cli.router_bin {
        Some(p) => p.clone(),
        None => sibling_binary("switchyard")?,
    };
    let pairs: Vec<Pair> = std::fs::read_to_string(&cli.pairs)
        .with_context(|| format!("reading {}", cli.pairs.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a line of the pairs file")?;
    let (seconds, repeats) = if cli.quick { (1.0, 1) } else { (cli.seconds, cli.repeats) };
    let hits = exact_hits(&router_bin, &cli.concurrency, seconds, repeats).await?;
    let search = search_cost(if cli.quick { 20 } else { 200 });
    let semantic = CacheConfig {
        enabled: true,
        semantic: true,
        embedding_model: "nomic-embed-text".into(),
        ..CacheConfig::default()
    };
    let stack = Stack::start(&options(&router_bin, semantic.clone())).await?;
    let (pairs_rows, similarities) = threshold_table(&stack, &pairs).await?;
    let trace_requests = if cli.quick { 120 } else { cli.trace_requests };
    let trace = replay_trace(&stack, &pairs, trace_requests).await?;
    stack.stop().await?;
    let report = Report { hits, search, pairs: pairs_rows, similarities, trace };
    print!("{}", markdown(&report, semantic.similarity_threshold));
    if let Some(out) = &cli.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn options(router_bin: &std::path::Path, cache: CacheConfig) -> StackOptions {
    StackOptions {
        time_scale: 0.0,
        num_parallel: 4,
        gpu_vram: "24GiB".into(),
        router_bin: Some(router_bin.to_path_buf()),
        sim_bin: None,
        cache,
    }
}

/// A chat request the cache keeps (temperature 0).
fn chat(question: &str, stream: bool) -> Value {
    json!({"model": "llama3.2:3b", "stream": stream, "options": {"temperature": 0, "num_predict": 32},
           "messages": [{"role": "user", "content": question}]})
}

/// Straight to the simulator against cache hits through the router, alternating.
async fn exact_hits(
    router_bin: &std::path::Path,
    concurrency: &[usize],
    seconds: f64,
    repeats: usize,
) -> Result<Vec<HitRow>> {
    let stack = Stack::start(&options(router_bin, CacheConfig { enabled: true, ..CacheConfig::default() })).await?;
    let mut rows = Vec::new();
    // The first request through the router stores the answer; every measured one, buffered or streamed (`stream` is
    // not part of the key), is a hit.
    let first = Bytes::from(chat("What is the capital of France?", false).to_string());
    let (status, cache) = post(&load::client(1), &format!("{}/api/chat", stack.router_url()), first).await?;
    if status != 200 || cache.as_deref() != Some("miss") {
        bail!("priming the cache gave {status} {cache:?}: {}", stack.router_log_tail());
    }
    for stream in [false, true] {
        let body = Bytes::from(chat("What is the capital of France?", stream).to_string());
        for &c in concurrency {
            let client = load::client(c);
            let mut direct = load::LoadResult::default();
            let mut hit = load::LoadResult::default();
            for _ in 0..repeats {
                for (target, into) in [(stack.sim_url(), &mut direct), (stack.router_url(), &mut hit)] {
                    let spec = LoadSpec {
                        url: format!("{target}/api/chat"),
                        body: body.clone(),
                        concurrency: c,
                        warmup: Duration::from_millis(300),
                        duration: Duration::from_secs_f64(seconds),
                    };
                    let r = load::run(&client, &spec).await?;
                    into.latencies.extend(r.latencies.iter().copied());
                    into.first_chunk.extend(r.first_chunk.iter().copied());
                    into.completed += r.completed;
                    into.errors += r.errors;
                    into.window += r.window;
                }
            }
            rows.push(HitRow {
                mode: if stream { "streamed" } else { "buffered" },
                concurrency: c,
                direct: RunFigures::of(&direct),
                hit: RunFigures::of(&hit),
            });
        }
    }
    let stats = get_json(&load::client(1), &format!("{}/admin/cache", stack.router_url())).await?;
    if stats["misses"].as_u64() != Some(1) {
        bail!("expected every measured request to be a hit, the cache says {stats}");
    }
    stack.stop().await?;
    Ok(rows)
}

/// POSTs `body`; the status and the `x-switchyard-cache` header.
async fn post(client: &HttpClient, url: &str, body: Bytes) -> Result<(u16, Option<String>)> {
    let request = build_request(Method::POST, url, Some(body))?;
    let response = client.send(request).await.context("sending")?;
    let status = response.status().as_u16();
    let cache = response.headers().get("x-switchyard-cache").and_then(|v| v.to_str().ok()).map(str::to_string);
    response.into_body().collect().await.context("reading the answer")?;
    Ok((status, cache))
}

async fn get_json(client: &HttpClient, url: &str) -> Result<Value> {
    let response = client.send(build_request(Method::GET, url, None)?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// A deterministic pseudo-random unit vector.
fn unit_vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= norm);
    v
}

/// Times the semantic cache's scan of one group at 10 000 and 100 000 entries.
fn search_cost(queries: usize) -> Vec<SearchRow> {
    let dims = 768;
    [10_000usize, 100_000]
        .into_iter()
        .map(|n| {
            let mut members = Group::default();
            for i in 0..n {
                members.push([0u8; 32], &unit_vector(i as u64 + 1, dims));
            }
            let mut samples = Vec::with_capacity(queries);
            let mut sink = 0f32;
            for q in 0..queries {
                let query = unit_vector(1_000_000 + q as u64, dims);
                let started = Instant::now();
                let best = members.nearest(&query);
                samples.push(started.elapsed());
                sink += best.map_or(0.0, |(_, s)| s);
            }
            std::hint::black_box(sink);
            let us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
            SearchRow {
                entries: n,
                dims,
                scan_us: Summary::of(us),
                vectors_mib: (n * dims * 4) as f64 / (1 << 20) as f64,
            }
        })
        .collect()
}

/// The similarity of each labelled pair through the stack's embedding model, and what each threshold would do.
async fn threshold_table(stack: &Stack, pairs: &[Pair]) -> Result<(Vec<ThresholdRow>, Vec<(String, f64)>)> {
    let client = load::client(1);
    let url = format!("{}/api/embed", stack.sim_url());
    let mut sims: Vec<(String, f64)> = Vec::new();
    for p in pairs {
        let body = json!({"model": "nomic-embed-text", "input": [p.a, p.b]}).to_string();
        let response = client.send(build_request(Method::POST, &url, Some(Bytes::from(body)))?).await?;
        let v: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
        let vec = |i: usize| -> Vec<f32> {
            v["embeddings"][i]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect())
                .unwrap_or_default()
        };
        sims.push((p.kind.clone(), f64::from(dot(&vec(0), &vec(1)))));
    }
    let share = |kind: &str, t: f64| {
        let of: Vec<f64> = sims.iter().filter(|(k, _)| k == kind).map(|(_, s)| *s).collect();
        if of.is_empty() { 0.0 } else { of.iter().filter(|s| **s >= t).count() as f64 / of.len() as f64 }
    };
    let rows = [0.80, 0.85, 0.90, 0.95, 0.98]
        .into_iter()
        .map(|t| ThresholdRow {
            threshold: t,
            surface_hits: share("surface", t),
            reworded_hits: share("reworded", t),
            false_hits: share("different", t),
        })
        .collect();
    Ok((rows, sims))
}

/// Replays a trace of questions with Zipf popularity; a repeat comes verbatim, or as a paraphrase when the pairs
/// give one; the near-miss questions of the pairs are questions of their own.
async fn replay_trace(stack: &Stack, pairs: &[Pair], requests: usize) -> Result<TraceResult> {
    // Question ids: each distinct `a` and each `different` pair's `b`; the `surface` and `reworded` b's are other
    // wordings of their a.
    let mut wordings: Vec<Vec<String>> = Vec::new();
    let mut id_of: HashMap<String, usize> = HashMap::new();
    for p in pairs {
        let a = *id_of.entry(p.a.clone()).or_insert_with(|| {
            wordings.push(vec![p.a.clone()]);
            wordings.len() - 1
        });
        if p.kind == "different" {
            id_of.entry(p.b.clone()).or_insert_with(|| {
                wordings.push(vec![p.b.clone()]);
                wordings.len() - 1
            });
        } else {
            wordings[a].push(p.b.clone());
        }
    }
    // Zipf (s = 1) over the questions, a fixed seed.
    let weights: Vec<f64> = (1..=wordings.len()).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut x: u64 = 0x5eed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let client = load::client(1);
    let url = format!("{}/api/chat", stack.router_url());
    let mut result = TraceResult { requests, ..TraceResult::default() };
    let mut first_answer: HashMap<usize, String> = HashMap::new();
    let mut asked: HashMap<usize, Vec<usize>> = HashMap::new();
    for _ in 0..requests {
        let mut pick = next() * total;
        let id = weights.iter().position(|w| {
            pick -= w;
            pick <= 0.0
        });
        let id = id.unwrap_or(wordings.len() - 1);
        let variants = &wordings[id];
        // Half the repeats of a question that has other wordings use one of them.
        let variant =
            if variants.len() > 1 && next() < 0.5 { 1 + (next() * (variants.len() - 1) as f64) as usize } else { 0 };
        let seen = asked.entry(id).or_default();
        if !seen.is_empty() {
            result.repeats += 1;
            if !seen.contains(&variant) {
                result.reworded_repeats += 1;
            }
        }
        seen.push(variant);
        let body = Bytes::from(chat(&variants[variant.min(variants.len() - 1)], false).to_string());
        let request = build_request(Method::POST, &url, Some(body))?;
        let response = client.send(request).await?;
        let status = response.status().as_u16();
        let cache = response.headers().get("x-switchyard-cache").and_then(|v| v.to_str().ok()).map(str::to_string);
        let answer: Value =
            serde_json::from_slice(&response.into_body().collect().await?.to_bytes()).unwrap_or_default();
        if status != 200 {
            result.errors += 1;
            continue;
        }
        let text = answer["message"]["content"].as_str().unwrap_or_default().to_string();
        match cache.as_deref() {
            Some("hit") => result.exact_hits += 1,
            Some(h) if h.starts_with("semantic-hit") => {
                result.semantic_hits += 1;
                if first_answer.get(&id) != Some(&text) {
                    result.false_hits += 1;
                    let answered_for =
                        first_answer.iter().find(|(_, t)| **t == text).map(|(q, _)| wordings[*q][0].clone());
                    result.false_hit_questions.push(format!(
                        "{:?} got the answer of {:?}",
                        variants[variant.min(variants.len() - 1)],
                        answered_for.unwrap_or_default()
                    ));
                }
            }
            _ => {
                result.misses += 1;
                first_answer.entry(id).or_insert(text);
            }
        }
    }
    Ok(result)
}

fn markdown(r: &Report, threshold: f64) -> String {
    let mut out =
        String::from("### Exact hits against the simulator's instant answer (ms, latency to the last byte)\n\n");
    out.push_str("| mode | concurrency | direct p50 | direct p99 | hit p50 | hit p99 | direct req/s | hit req/s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &r.hits {
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} |\n",
            row.mode,
            row.concurrency,
            row.direct.latency.p50,
            row.direct.latency.p99,
            row.hit.latency.p50,
            row.hit.latency.p99,
            row.direct.throughput,
            row.hit.throughput
        ));
    }
    out.push_str("\n### Semantic search: one scan of a group (768 dimensions)\n\n| entries | p50 us | p99 us | vectors scanned, MiB |\n|---:|---:|---:|---:|\n");
    for row in &r.search {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} |\n",
            row.entries, row.scan_us.p50, row.scan_us.p99, row.vectors_mib
        ));
    }
    let count = |k: &str| r.similarities.iter().filter(|(kind, _)| kind == k).count();
    out.push_str(&format!(
        "\n### Labelled pairs ({} surface variants, {} reworded, {} different questions sharing words)\n\n| threshold | surface variants that hit | reworded that hit | different questions that hit (false hits) |\n|---:|---:|---:|---:|\n",
        count("surface"),
        count("reworded"),
        count("different")
    ));
    for row in &r.pairs {
        let mark = if (row.threshold - threshold).abs() < 1e-9 { " (default)" } else { "" };
        out.push_str(&format!(
            "| {:.2}{mark} | {:.0} % | {:.0} % | {:.0} % |\n",
            row.threshold,
            row.surface_hits * 100.0,
            row.reworded_hits * 100.0,
            row.false_hits * 100.0
        ));
    }
    let t = &r.trace;
    let pct = |n: usize| if t.requests == 0 { 0.0 } else { n as f64 * 100.0 / t.requests as f64 };
    out.push_str(&format!(
        "\n### Replayed trace ({} requests, threshold {threshold})\n\n| repeats (most a cache could answer) | of them reworded | exact hits | semantic hits | false hits | misses | errors |\n|---:|---:|---:|---:|---:|---:|---:|\n| {} ({:.1} %) | {} | {} ({:.1} %) | {} ({:.1} %) | {} | {} | {} |\n",
        t.requests,
        t.repeats,
        pct(t.repeats),
        t.reworded_repeats,
        t.exact_hits,
        pct(t.exact_hits),
        t.semantic_hits,
        pct(t.semantic_hits),
        t.false_hits,
        t.misses,
        t.errors
    ));
    for q in &t.false_hit_questions {
        out.push_str(&format!("\nfalse hit: {q}\n"));
    }
    out
}
