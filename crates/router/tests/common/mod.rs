//! Shared test harness: the simulator and the router, both in this process on port 0, with a SQLite store in a
//! temporary directory, and a small HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use switchyard::server::{self, Running};
use switchyard_core::config::{Config, ProbeKind};
use switchyard_core::http::{HttpClient, build_request};
use switchyard_sim::{SimHandle, SimOptions};

pub struct Harness {
    pub sim: SimHandle,
    pub router: Running,
    pub http: HttpClient,
    pub dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// NDJSON lines as JSON values.
    pub fn lines(&self) -> Vec<Value> {
        self.text().lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// SSE `data:` payloads.
    pub fn events(&self) -> Vec<String> {
        self.text().split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_string).collect()
    }
}

/// A configuration pointing at `sim_url`, with a store in `dir`.
pub fn config(sim_url: &str, dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.ollama.url = sim_url.to_string();
    config.vram.probe = ProbeKind::Sim;
    config.vram.poll_interval_ms = 200;
    config.database.url = format!("sqlite://{}", dir.join("switchyard.db").display());
    config.routing.decision_sample_rate = 1.0;
    config
}

pub async fn start_with(sim: SimOptions, tweak: impl FnOnce(&mut Config)) -> Harness {
    let sim = switchyard_sim::spawn(sim).await.expect("simulator");
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sim.url(), dir.path());
    tweak(&mut config);
    config.validate().expect("valid test config");
    let router = server::spawn(Arc::new(config)).await.expect("router");
    Harness { sim, router, http: HttpClient::default(), dir }
}

pub async fn start() -> Harness {
    start_with(SimOptions::default(), |_| {}).await
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.router.url())
    }

    pub async fn call(&self, method: Method, url: &str, body: Option<Bytes>, headers: &[(&str, &str)]) -> Answer {
        let mut request = build_request(method, url, body).unwrap();
        for (k, v) in headers {
            request.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let response = self.http.send(request).await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let body =
            http_body_util::BodyExt::collect(response.into_body()).await.map(|c| c.to_bytes()).unwrap_or_default();
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, &self.url(path), None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, &self.url(path), Some(Bytes::from(body.to_string())), &[]).await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
        self.call(Method::POST, &self.url(path), Some(Bytes::copy_from_slice(body)), headers).await
    }

    /// Sets a fault on the simulator.
    pub async fn fault(&self, spec: Value) {
        let a = self
            .call(Method::POST, &format!("{}/sim/faults", self.sim.url()), Some(Bytes::from(spec.to_string())), &[])
            .await;
        assert!(a.status.is_success(), "fault not set: {}", a.text());
    }

    pub async fn sim_gpu(&self) -> Value {
        self.call(Method::GET, &format!("{}/sim/gpu", self.sim.url()), None, &[]).await.json()
    }

    /// Leases `model` holds now, from `/admin/vram`.
    pub async fn in_flight(&self, model: &str) -> u64 {
        let vram = self.get("/admin/vram").await.json();
        vram["models"].as_array().unwrap().iter().find(|m| m["name"] == model).unwrap()["in_flight"].as_u64().unwrap()
    }

    pub async fn stop(self) {
        self.router.stop().await;
        self.sim.shutdown().await;
    }
}

/// Writes profiles to the router's store and has it read them: for each (model, prefill tok/s, decode tok/s, load s)
/// of `rows`, `n` items per category of which `quality(model, i)` (i in `Category::PROFILED` order) succeeded.
pub async fn seed_profiles(h: &Harness, rows: &[(&str, f64, f64, f64)], n: u32, quality: impl Fn(&str, usize) -> f64) {
    use switchyard_core::Category;
    use switchyard_core::store::{ModelRecord, ScoreRecord, SqlStore, Store};
    let store = SqlStore::open(&h.router.config().database.resolved_url(), 1).await.unwrap();
    let catalog = h.router.catalog();
    for &(name, prefill, decode, load) in rows {
        let spec = catalog.models.values().find(|s| s.name.as_str() == name).unwrap();
        store
            .upsert_model(&ModelRecord {
                name: name.into(),
                digest: spec.digest.clone(),
                load_seconds: Some(load),
                ..Default::default()
            })
            .await
            .unwrap();
        for (i, c) in Category::PROFILED.iter().enumerate() {
            let successes = (quality(name, i) * f64::from(n)).round() as u32;
            store
                .upsert_score(&ScoreRecord {
                    model: name.into(),
                    category: c.as_str().into(),
                    digest: spec.digest.clone(),
                    suite_version: "v1-test".into(),
                    n,
                    successes,
                    mean: f64::from(successes) / f64::from(n),
                    ci_low: 0.0,
                    ci_high: 1.0,
                    ttft_p50_ms: None,
                    ttft_p95_ms: None,
                    latency_p50_ms: None,
                    latency_p95_ms: None,
                    prefill_tps: Some(prefill),
                    decode_tps: Some(decode),
                    mean_output_tokens: Some(3.0),
                    updated_at: 1,
                })
                .await
                .unwrap();
        }
    }
    h.router.reload_profiles().await.unwrap();
}

/// Polls `check` until it is true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The real `switchyard serve` binary, started on port 0 in front of `sim_url`.
pub struct Binary {
    pub child: tokio::process::Child,
    pub url: String,
    /// What the process wrote to stderr, collected in the background.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Binary {
    /// Starts the binary with `args` after `serve` and `env` (on top of a store in `dir`); `None` when it exits
    /// before announcing its address (with what it printed).
    pub async fn start(
        sim_url: &str,
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Binary, String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SWITCHYARD_")) {
            cmd.env_remove(k);
        }
        cmd.arg("serve")
            .args(args)
            .env("SWITCHYARD_OLLAMA_URL", sim_url)
            .env("SWITCHYARD_VRAM_PROBE", "sim")
            .env("SWITCHYARD_VRAM_POLL_INTERVAL_MS", "100")
            .env("SWITCHYARD_DATABASE_URL", format!("sqlite://{}", dir.join("switchyard.db").display()))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| "no announcement".to_string())?;
        match first {
            Ok(Some(line)) if line.starts_with("switchyard listening on ") => {
                let url = line.trim_start_matches("switchyard listening on ").trim().to_string();
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok(Binary { child, url, stderr })
            }
            _ => {
                let _ = child.wait().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(stderr.lock().unwrap().clone())
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Sends a signal (`TERM`, `KILL`) to the process.
    pub async fn signal(&self, signal: &str) {
        let status = tokio::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}
