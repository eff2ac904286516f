//! `switchyard-engine-bench`: what Switchyard adds in front of a real engine. Starts llama.cpp's `llama-server`
//! (built by `scripts/llama-server.sh`) with a tiny model, the simulator as the local Ollama, and the release router
//! with the engine as an `openai` backend; then sends the same greedy chat request straight to the engine and
//! through the router, alternating, one at a time: buffered (whole answer) and streamed (time to the first token
//! and to the end), on the OpenAI surface and on Ollama's (translated both ways). Prints a markdown table and
//! writes JSON to `--out`.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::Method;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchyard_bench::process::{Server, sibling_binary};
use switchyard_bench::stats::Summary;
use switchyard_core::http::{HttpClient, build_request};

/// Measures the latency Switchyard adds in front of llama.cpp's llama-server.
#[derive(Debug, Parser)]
#[command(name = "switchyard-engine-bench", version)]
struct Cli {
    /// Where scripts/llama-server.sh put bin/llama-server and models/.
    #[arg(long, default_value = "target/llama")]
    llama_dir: PathBuf,
    /// The model file under models/ (without .gguf).
    #[arg(long, default_value = "tiny-chat")]
    model: String,
    /// Measured requests per path and mode.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Unmeasured requests per path and mode first.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Tokens per answer.
    #[arg(long, default_value_t = 16)]
    max_tokens: u64,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One measured request.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Until the first token (streams only).
    first: Option<Duration>,
    total: Duration,
}

#[derive(Debug, Serialize)]
struct Row {
    mode: &'static str,
    direct_total: Summary,
    through_total: Summary,
    direct_first: Option<Summary>,
    through_first: Option<Summary>,
}

/// How a request is sent and read.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `/v1/chat/completions`, `stream: false`, both sides.
    Buffered,
    /// `/v1/chat/completions`, `stream: true`, both sides.
    Streamed,
    /// Direct: the engine's streamed OpenAI chat; through: Ollama's `/api/chat` (translated both ways).
    NativeStreamed,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Buffered => "OpenAI chat, buffered",
            Mode::Streamed => "OpenAI chat, streamed",
            Mode::NativeStreamed => "Ollama /api/chat, streamed (through) vs OpenAI stream (direct)",
        }
    }
}

fn openai_body(model: &str, max_tokens: u64, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "temperature": 0, "seed": 1, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "Name three colours."}]})
}

fn native_body(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "stream": true, "options": {"temperature": 0, "seed": 1, "num_predict": max_tokens},
           "messages": [{"role": "user", "content": "Name three colours."}]})
}

/// True when a chunk of a stream carries a token (an SSE delta or an NDJSON message with content).
fn has_token(chunk: &[u8]) -> bool {
    let text = String::from_utf8_lossy(chunk);
    text.lines().any(|line| {
        let payload = line.strip_prefix("data: ").unwrap_or(line);
        serde_json::from_str::<Value>(payload).ok().is_some_and(|v| {
            let delta = &v["choices"][0]["delta"]["content"];
            let message = &v["message"]["content"];
            delta.as_str().is_some_and(|s| !s.is_empty()) || message.as_str().is_some_and(|s| !s.is_empty())
        })
    })
}

async fn send(http: &HttpClient, url: &str, body: &Value) -> Result<Sample> {
    let started = Instant::now();
    let req = build_request(Method::POST, url, Some(Bytes::from(body.to_string())))?;
    let resp = http.send(req).await?;
    if !resp.status().is_success() {
        bail!("{url} answered {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        let data = frame?.into_data().unwrap_or_default();
        if first.is_none() && has_token(&data) {
            first = Some(started.elapsed());
        }
    }
    Ok(Sample { first, total: started.elapsed() })
}

async fn start_engine(cli: &Cli) -> Result<(tokio::process::Child, String)> {
    let bin = cli.llama_dir.join("bin/llama-server");
    let model = cli.llama_dir.join(format!("models/{}.gguf", cli.model));
    if !bin.exists() || !model.exists() {
        bail!("no {} or {} (run scripts/llama-server.sh)", bin.display(), model.display());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = tokio::process::Command::new(&bin)
        .args(["-m", &model.display().to_string(), "--alias", &cli.model, "-t", "1", "-c", "2048", "--no-webui"])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let http = HttpClient::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(resp) = http.send(build_request(Method::GET, &format!("{url}/health"), None)?).await
            && resp.status().is_success()
        {
            return Ok((child, url));
        }
        if Instant::now() > deadline {
            bail!("llama-server did not become healthy");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn summaries(samples: &[Sample]) -> (Summary, Option<Summary>) {
    let total = Summary::of_durations(&samples.iter().map(|s| s.total).collect::<Vec<_>>());
    let firsts: Vec<Duration> = samples.iter().filter_map(|s| s.first).collect();
    (total, (!firsts.is_empty()).then(|| Summary::of_durations(&firsts)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (mut engine, engine_url) = start_engine(&cli).await?;
    let sim = Server::start(
        "switchyard-sim",
        &sibling_binary("switchyard-sim")?,
        &["--listen".into(), "127.0.0.1:0".into(), "--time-scale".into(), "0".into()],
        &[],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, format!("[[backends]]\nname = \"llamacpp\"\nurl = \"{engine_url}\"\n"))?;
    let db = format!("sqlite://{}", dir.path().join("switchyard.db").display());
    let router = Server::start(
        "switchyard",
        &sibling_binary("switchyard")?,
        &[
            "--config".into(),
            config.display().to_string(),
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--ollama".into(),
            sim.url().to_string(),
        ],
        &[("SWITCHYARD_VRAM_PROBE", "sim"), ("SWITCHYARD_DATABASE_URL", &db), ("RUST_LOG", "warn")],
    )
    .await?;
    let http = HttpClient::default();
    let mut rows = Vec::new();
    for mode in [Mode::Buffered, Mode::Streamed, Mode::NativeStreamed] {
        let (direct_body, through_body, through_path) = match mode {
            Mode::Buffered => (
                openai_body(&cli.model, cli.max_tokens, false),
                openai_body(&cli.model, cli.max_tokens, false),
                "/v1/chat/completions",
            ),
            Mode::Streamed => (
                openai_body(&cli.model, cli.max_tokens, true),
                openai_body(&cli.model, cli.max_tokens, true),
                "/v1/chat/completions",
            ),
            Mode::NativeStreamed => {
                (openai_body(&cli.model, cli.max_tokens, true), native_body(&cli.model, cli.max_tokens), "/api/chat")
            }
        };
        let direct_url = format!("{engine_url}/v1/chat/completions");
        let through_url = format!("{}{through_path}", router.url());
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for i in 0..(cli.warmup + cli.requests) {
            // Alternate which side goes first, so that drift hits both alike.
            let (d, t) = if i % 2 == 0 {
                let d = send(&http, &direct_url, &direct_body).await?;
                (d, send(&http, &through_url, &through_body).await?)
            } else {
                let t = send(&http, &through_url, &through_body).await?;
                (send(&http, &direct_url, &direct_body).await?, t)
            };
            if i >= cli.warmup {
                direct.push(d);
                through.push(t);
            }
        }
        let (direct_total, direct_first) = summaries(&direct);
        let (through_total, through_first) = summaries(&through);
        rows.push(Row { mode: mode.label(), direct_total, through_total, direct_first, through_first });
    }
    println!(
        "| mode | direct p50 / p99 ms | through p50 / p99 ms | added p50 ms | added p99 ms | first token direct p50 / p99 ms | first token through p50 / p99 ms | added first token p50 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let first = |s: &Option<Summary>| s.map_or_else(|| "-".to_string(), |s| format!("{:.3} / {:.3}", s.p50, s.p99));
        let added_first = match (r.direct_first, r.through_first) {
            (Some(d), Some(t)) => format!("{:.3}", t.p50 - d.p50),
            _ => "-".to_string(),
        };
        println!(
            "| {} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} | {:.3} | {} | {} | {} |",
            r.mode,
            r.direct_total.p50,
            r.direct_total.p99,
            r.through_total.p50,
            r.through_total.p99,
            r.through_total.p50 - r.direct_total.p50,
            r.through_total.p99 - r.direct_total.p99,
            first(&r.direct_first),
            first(&r.through_first),
            added_first
        );
    }
    println!("{} requests per path and mode, {} tokens per answer, model {}", cli.requests, cli.max_tokens, cli.model);
    if let Some(out) = &cli.out {
        std::fs::write(out, serde_json::to_vec_pretty(&rows)?)?;
    }
    router.stop().await?;
    sim.stop().await?;
    let _ = engine.kill().await;
    Ok(())
}
