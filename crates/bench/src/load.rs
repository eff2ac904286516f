//! The closed-loop load generator: `concurrency` workers each send one request, read the whole answer, and send the
//! next, for a fixed time. Samples from the warm-up at the start are dropped.
//!
//! Per request it records the latency to the last byte and, for streams, to the first data frame (the time to
//! first chunk). Requests go through the same pooled hyper client Switchyard uses upstream, with enough idle
//! connections kept per host for every worker.

use crate::stats::Summary;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_core::http::{HttpClient, HttpClientOptions, build_request};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A client whose pool keeps a connection for each of `concurrency` workers.
pub fn client(concurrency: usize) -> HttpClient {
    HttpClient::new(&HttpClientOptions {
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: Duration::from_secs(300),
        pool_max_idle_per_host: concurrency.max(16) * 2,
        extra_roots: Vec::new(),
    })
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to POST (`http://ADDR/api/chat`).
    pub url: String,
    /// The body of every request.
    pub body: Bytes,
    /// Workers, each with one request in flight.
    pub concurrency: usize,
    /// Requests in this first stretch are not measured.
    pub warmup: Duration,
    /// Measured stretch after the warm-up.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Latency to the last byte of each successful request started after the warm-up.
    pub latencies: Vec<Duration>,
    /// Time to the first data frame of the same requests.
    pub first_chunk: Vec<Duration>,
    /// Successful requests that ended inside the measured stretch.
    pub completed: usize,
    /// Successful requests over the whole run, warm-up included.
    pub succeeded: usize,
    /// Failed requests (connection errors, non-200 answers, broken bodies) over the whole run.
    pub errors: usize,
    /// Successful requests by the model that served them (`x-switchyard-model`), when the router says.
    pub served_by: BTreeMap<String, usize>,
    /// One error message, to show what went wrong.
    pub error_sample: Option<String>,
    /// Length of the measured stretch.
    pub window: Duration,
}

impl LoadResult {
    /// Requests per second over the measured stretch.
    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 { self.completed as f64 / secs } else { 0.0 }
    }

    fn merge(&mut self, other: LoadResult) {
        self.latencies.extend(other.latencies);
        self.first_chunk.extend(other.first_chunk);
        self.completed += other.completed;
        self.succeeded += other.succeeded;
        self.errors += other.errors;
        for (model, n) in other.served_by {
            *self.served_by.entry(model).or_default() += n;
        }
        if self.error_sample.is_none() {
            self.error_sample = other.error_sample;
        }
    }
}

/// Figures of one run, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// Latency to the last byte, ms.
    pub latency: Summary,
    /// Time to first chunk, ms.
    pub first_chunk: Summary,
    /// Requests per second.
    pub throughput: f64,
    pub errors: usize,
    /// CPU time the router used per successful request, microseconds (when it runs as its own process).
    pub router_cpu_us: Option<f64>,
    /// CPU time the simulator used per successful request, microseconds (when it is hosted in this process).
    pub sim_cpu_us: Option<f64>,
    /// Successful requests by serving model, through the router.
    pub served_by: BTreeMap<String, usize>,
}

impl RunFigures {
    pub fn of(result: &LoadResult) -> Self {
        Self {
            latency: Summary::of_durations(&result.latencies),
            first_chunk: Summary::of_durations(&result.first_chunk),
            throughput: result.throughput(),
            errors: result.errors,
            router_cpu_us: None,
            sim_cpu_us: None,
            served_by: result.served_by.clone(),
        }
    }
}

/// Runs `spec` with `client` and returns what every worker measured.
pub async fn run(client: &HttpClient, spec: &LoadSpec) -> Result<LoadResult> {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut workers = JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let client = client.clone();
        let url = spec.url.clone();
        let body = spec.body.clone();
        workers.spawn(worker(client, url, body, measure_from, end));
    }
    let mut total = LoadResult { window: spec.duration, ..LoadResult::default() };
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a load worker panicked")?);
    }
    Ok(total)
}

/// What one successful request measured.
struct Measured {
    latency: Duration,
    first_chunk: Duration,
    /// `x-switchyard-model`, when the router answered.
    model: Option<String>,
}

/// One request, or why it failed.
async fn one(client: &HttpClient, url: &str, body: Bytes) -> Result<Measured, String> {
    let started = Instant::now();
    let request = build_request(Method::POST, url, Some(body)).map_err(|e| e.to_string())?;
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let model = response.headers().get("x-switchyard-model").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut body = response.into_body();
    let mut first = None;
    let mut bytes = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body broke: {e}"))?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            first.get_or_insert_with(|| started.elapsed());
            bytes += data.len();
        }
    }
    let latency = started.elapsed();
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    if bytes == 0 {
        return Err("empty answer".to_string());
    }
    Ok(Measured { latency, first_chunk: first.unwrap_or(latency), model })
}

async fn worker(client: HttpClient, url: String, body: Bytes, measure_from: Instant, end: Instant) -> LoadResult {
    let mut result = LoadResult::default();
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        match one(&client, &url, body.clone()).await {
            Ok(measured) => {
                let finished = Instant::now();
                result.succeeded += 1;
                if let Some(model) = measured.model {
                    *result.served_by.entry(model).or_default() += 1;
                }
                if started >= measure_from {
                    result.latencies.push(measured.latency);
                    result.first_chunk.push(measured.first_chunk);
                }
                if finished >= measure_from && finished <= end {
                    result.completed += 1;
                }
            }
            Err(message) => {
                result.errors += 1;
                result.error_sample.get_or_insert(message);
                // A refused connection fails at once; do not spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    result
}
