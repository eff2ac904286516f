//! Commands that talk to a running server's admin routes: `vram`, `models`, `explain`. They print readable tables
//! (or the raw JSON with `--json`).

use crate::api::admin::ModelInfoView;
use crate::error::RouterError;
use clap::{Args, Subcommand};
use http::{HeaderValue, Method, header};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_core::config::Config;
use switchyard_core::http::{HttpClient, build_request, error_message};
use switchyard_core::size::Bytes;
use switchyard_vram::view::{ModelView, VramStatus};

/// Where the server is.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// URL of a running Switchyard, or HOST:PORT for plain HTTP (default: http:// + server.listen).
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `switchyard vram`.
#[derive(Debug, Args)]
pub struct VramArgs {
    #[command(subcommand)]
    pub action: VramAction,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum VramAction {
    /// GPUs (with used/free bars), budget, and every loaded model.
    #[command(
        after_help = "Examples:\n  switchyard vram status\n  switchyard vram status --json --server http://gpu-box:11435"
    )]
    Status,
    /// Load a model now.
    #[command(after_help = "Example:\n  switchyard vram load qwen2.5-coder:7b")]
    Load { model: String },
    /// Unload a model now (unpins it first).
    #[command(after_help = "Example:\n  switchyard vram unload llama3.3:70b")]
    Unload { model: String },
    /// Pin a model: load it and never evict it, also across restarts. Refused when pinned models alone would exceed
    /// the budget.
    #[command(after_help = "Example:\n  switchyard vram pin llama3.2:3b")]
    Pin { model: String },
    /// Unpin a model (it stays loaded until evicted or idle).
    #[command(after_help = "Example:\n  switchyard vram unpin llama3.2:3b")]
    Unpin { model: String },
}

/// `switchyard cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Entries, bytes, limits, hits, misses and evictions of the response cache.
    #[command(after_help = "Examples:\n  switchyard cache status\n  switchyard cache status --json")]
    Status,
    /// Drop cached answers: all of them, or those of one model, or those older than some seconds.
    #[command(
        after_help = "Examples:\n  switchyard cache clear\n  switchyard cache clear --model llama3.2:3b\n  switchyard cache clear --older-than-secs 3600"
    )]
    Clear {
        /// Only this model's answers.
        #[arg(long)]
        model: Option<String>,
        /// Only answers stored more than this many seconds ago.
        #[arg(long, value_name = "SECS")]
        older_than_secs: Option<u64>,
    },
}

/// `switchyard explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The prompt to route.
    pub prompt: String,
    /// auto, auto:fast, auto:quality or auto:TASK.
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Apply a task rule ([tasks.NAME] or a preset: fast, balanced, quality), as x-switchyard-task does.
    #[arg(long)]
    pub task: Option<String>,
    /// Quality preference override, 0 (fastest) to 1 (best).
    #[arg(long)]
    pub quality: Option<f64>,
    /// Pretend the request carries tools.
    #[arg(long)]
    pub tools: bool,
    /// Pretend the request carries images.
    #[arg(long)]
    pub images: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn base_url(config: &Config, args: &ServerArgs) -> String {
    if let Some(server) = &args.server {
        // `--server 127.0.0.1:11435` means plain HTTP, as `curl` reads it.
        return if server.contains("://") { server.clone() } else { format!("http://{server}") };
    }
    let addr = config.server.listen;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    format!("http://{host}:{}", addr.port())
}

async fn call(
    config: &Config,
    args: &ServerArgs,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, RouterError> {
    let base = base_url(config, args);
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let bytes = body.map(|b| bytes::Bytes::from(b.to_string()));
    let mut request = build_request(method, &url, bytes)?;
    if !config.server.admin_key.is_empty() {
        let value = HeaderValue::from_str(&format!("Bearer {}", config.server.admin_key))
            .map_err(|_| RouterError::bad("the admin key is not a valid header value", None))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let answer = HttpClient::default().send_buffered(request, Duration::from_secs(600)).await.map_err(|e| match e {
        switchyard_core::CoreError::Unreachable { .. } | switchyard_core::CoreError::Refused { .. } => {
            RouterError::Unreachable(format!(
                "cannot reach Switchyard at {base}: start it with `switchyard serve` (or pass --server URL)"
            ))
        }
        other => other.into(),
    })?;
    if answer.status == http::StatusCode::UNAUTHORIZED {
        return Err(RouterError::Unauthorized(format!(
            "{base} needs its admin key: set SWITCHYARD_ADMIN_KEY (or server.admin_key in the configuration) to the \
             key the server was started with"
        )));
    }
    if !answer.status.is_success() {
        return Err(RouterError::UpstreamFailed(format!(
            "{} {}: {}",
            answer.status.as_u16(),
            path,
            error_message(&answer.body)
        )));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| RouterError::UpstreamFailed(format!("unexpected answer from {url}: {e}")))
}

/// `switchyard vram ...`.
pub async fn vram(config: &Config, args: VramArgs) -> Result<(), RouterError> {
    let (op, model) = match args.action {
        VramAction::Status => {
            let value = call(config, &args.server, Method::GET, "/admin/vram", None).await?;
            if args.server.json {
                println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
                return Ok(());
            }
            let status: VramStatus =
                serde_json::from_value(value).map_err(|e| RouterError::UpstreamFailed(e.to_string()))?;
            print!("{}", render_vram(&status));
            return Ok(());
        }
        VramAction::Load { model } => ("load", model),
        VramAction::Unload { model } => ("unload", model),
        VramAction::Pin { model } => ("pin", model),
        VramAction::Unpin { model } => ("unpin", model),
    };
    let value =
        call(config, &args.server, Method::POST, &format!("/admin/vram/{op}"), Some(json!({ "model": model }))).await?;
    if args.server.json {
        println!("{value}");
    } else {
        println!("{}", value.get("status").and_then(Value::as_str).unwrap_or("done"));
    }
    Ok(())
}

fn bar(used: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 { 0 } else { ((used as f64 / total as f64) * width as f64).round() as usize }.min(width);
    format!("[{}{}]", "█".repeat(filled), "░".repeat(width - filled))
}

/// The GPU a model is on, or every GPU of a split (`0+1`).
fn gpu_column(m: &ModelView) -> String {
    match m.shares.as_slice() {
        [] => m.gpu.map_or_else(|| "-".to_string(), |g| g.to_string()),
        shares => shares.iter().map(|s| s.gpu.to_string()).collect::<Vec<_>>().join("+"),
    }
}

/// The `vram status` table.
pub fn render_vram(s: &VramStatus) -> String {
    let mut out = String::new();
    for g in &s.gpus {
        out.push_str(&format!(
            "GPU {}  {:<24} {} {:>9} / {:<9} used  (budget {}, models {}, other processes {})\n",
            g.index,
            g.name,
            bar(g.used_bytes, g.total_bytes, 30),
            Bytes(g.used_bytes).to_string(),
            Bytes(g.total_bytes).to_string(),
            Bytes(g.budget_bytes),
            Bytes(g.models_bytes),
            Bytes(g.foreign_bytes)
        ));
    }
    out.push_str(&format!(
        "source: {}   strategy: {}   limit: {}   headroom: {}   unload above: {}%   max loaded: {}\n\n",
        s.source,
        s.strategy,
        s.budget.limit,
        Bytes(s.budget.headroom_bytes),
        s.budget.unload_threshold_pct,
        s.budget.max_loaded_models
    ));
    if s.models.is_empty() {
        out.push_str("no models loaded\n");
    } else {
        out.push_str(&format!(
            "{:<28} {:<10} {:>5} {:>10} {:>7} {:>9} {:>6} {:>7} {:>8}\n",
            "MODEL", "STATE", "GPU", "VRAM", "PINNED", "IN-FLIGHT", "USES", "LOAD s", "IDLE s"
        ));
        for m in &s.models {
            out.push_str(&format!(
                "{:<28} {:<10} {:>5} {:>10} {:>7} {:>9} {:>6} {:>7} {:>8}\n",
                m.name,
                m.state,
                gpu_column(m),
                Bytes(if m.size_vram > 0 { m.size_vram } else { m.expected_bytes }).to_string(),
                if m.pinned { "yes" } else { "no" },
                m.in_flight,
                m.uses,
                m.load_seconds.map_or_else(|| "-".to_string(), |s| format!("{s:.1}")),
                m.idle_secs.map_or_else(|| "-".to_string(), |s| format!("{s:.0}")),
            ));
        }
    }
    if s.bypass.deferred > 0 {
        out.push_str(&format!(
            "passed over: {} requests waiting for room, {} leases granted ahead of them, longest wait when passed \
             over {:.0} ms (bound {} ms)\n",
            s.bypass.deferred, s.bypass.bypasses, s.bypass.longest_passed_over_ms, s.bypass.max_bypass_ms
        ));
    }
    for w in &s.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// `switchyard models`.
pub async fn models(config: &Config, args: ServerArgs) -> Result<(), RouterError> {
    let value = call(config, &args, Method::GET, "/admin/models", None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(());
    }
    let models: Vec<ModelInfoView> = serde_json::from_value(value.get("models").cloned().unwrap_or(Value::Null))
        .map_err(|e| RouterError::UpstreamFailed(e.to_string()))?;
    print!("{}", render_models(&models));
    Ok(())
}

/// `switchyard backends`.
pub async fn cache(config: &Config, args: CacheArgs) -> Result<(), RouterError> {
    let value = match args.action {
        CacheAction::Status => call(config, &args.server, Method::GET, "/admin/cache", None).await?,
        CacheAction::Clear { model, older_than_secs } => {
            let body = json!({ "model": model, "older_than_secs": older_than_secs });
            call(config, &args.server, Method::POST, "/admin/cache/invalidate", Some(body)).await?
        }
    };
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        print!("{}", render_cache(&value));
    }
    Ok(())
}

/// `cache status` and `cache clear` as text.
pub fn render_cache(v: &Value) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    if v.get("dropped").is_some() {
        let mut out = format!("dropped {} cached answers from memory", n("dropped"));
        if let Some(stored) = v["dropped_from_store"].as_u64() {
            out.push_str(&format!(" and {stored} from the store"));
        }
        if let Some(e) = v["store_error"].as_str() {
            out.push_str(&format!(" (the store failed: {e})"));
        }
        out.push('\n');
        return out;
    }
    if v["enabled"] != json!(true) {
        return "the response cache is off (set cache.enabled = true, or use the low-latency or high-throughput preset)\n"
            .into();
    }
    let ttl = match n("ttl_secs") {
        0 => "none".to_string(),
        s => format!("{s} s"),
    };
    format!(
        "entries     {} of {} ({} of {}), ttl {ttl}\n\
         semantic    {}\n\
         persisted   {} ({} written, {} store errors)\n\
         hits        {} exact, {} semantic, {} misses, {} bypassed: hit rate {:.1} %\n\
         evictions   {} for room, {} expired\n",
        n("entries"),
        n("max_entries"),
        Bytes(n("bytes")),
        Bytes(n("max_bytes")),
        if v["semantic"] == json!(true) { "on" } else { "off" },
        if v["persist"] == json!(true) { "yes" } else { "no" },
        n("stored"),
        n("store_errors"),
        n("hits"),
        n("semantic_hits"),
        n("misses"),
        n("bypasses"),
        v["hit_rate"].as_f64().unwrap_or(0.0) * 100.0,
        n("evictions"),
        n("expired"),
    )
}

pub async fn backends(config: &Config, args: ServerArgs) -> Result<(), RouterError> {
    let value = call(config, &args, Method::GET, "/admin/backends", None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(());
    }
    print!("{}", render_backends(&value));
    Ok(())
}

/// The `backends` table: one row per backend.
pub fn render_backends(value: &Value) -> String {
    let mut out = format!(
        "{:<14} {:<10} {:<8} {:>6} {:>9} {:>9} {:>10} {:>10} {:>9}  {}\n",
        "BACKEND", "KIND", "HEALTH", "MODELS", "IN FLIGHT", "LATENCY", "TOKENS IN", "TOKENS OUT", "SPEND", "URL"
    );
    let list = value.get("backends").and_then(Value::as_array).cloned().unwrap_or_default();
    for b in &list {
        let text = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let num = |k: &str| b.get(k).and_then(Value::as_u64).map_or_else(|| "-".to_string(), |n| n.to_string());
        let health = match b.get("healthy").and_then(Value::as_bool) {
            Some(true) if b.get("breaker_open").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) => "breaker",
            Some(true) => "up",
            Some(false) => "down",
            None => "-",
        };
        let models = b.get("models").and_then(Value::as_array).map_or(0, Vec::len);
        // A fleet node has no slot limit of the front's (its own VRAM manager admits).
        let in_flight = match b.get("max_concurrency").and_then(Value::as_u64).filter(|m| *m > 0) {
            Some(max) => format!("{}/{max}", num("in_flight")),
            None => num("in_flight"),
        };
        let latency =
            b.get("latency_ms").and_then(Value::as_f64).map_or_else(|| "-".to_string(), |ms| format!("{ms:.0} ms"));
        let spend = if b.get("priced").and_then(Value::as_bool) == Some(true) {
            b.get("spend").and_then(Value::as_f64).map_or_else(|| "-".to_string(), |s| format!("{s:.4}"))
        } else {
            "free".to_string()
        };
        out.push_str(&format!(
            "{:<14} {:<10} {:<8} {:>6} {:>9} {:>9} {:>10} {:>10} {:>9}  {}\n",
            text("name"),
            text("kind"),
            health,
            models,
            in_flight,
            latency,
            num("input_tokens"),
            num("output_tokens"),
            spend,
            text("url")
        ));
        if let Some(error) = b.get("error").and_then(Value::as_str) {
            out.push_str(&format!("  {}: {error}\n", text("name")));
        }
    }
    if let Some(policy) = value.get("remote_policy").and_then(Value::as_str) {
        out.push_str(&format!("priced backends for auto: routing.remote = \"{policy}\"\n"));
    }
    out
}

/// The `models` table: per-category quality (mean over n), speed, load time, VRAM.
pub fn render_models(models: &[ModelInfoView]) -> String {
    use switchyard_core::Category;
    let mut out = format!("{:<26} {:>6} {:<8} {:<9}", "MODEL", "PARAMS", "STATE", "CAPS");
    for c in Category::PROFILED {
        out.push_str(&format!(" {:>10}", c.as_str()));
    }
    out.push_str(&format!(" {:>7} {:>7} {:>9}\n", "tok/s", "load s", "VRAM"));
    for m in models {
        let caps: String = m
            .capabilities
            .iter()
            .filter_map(|c| match c.as_str() {
                "tools" => Some('T'),
                "vision" => Some('V'),
                "embedding" => Some('E'),
                "thinking" => Some('R'),
                "insert" => Some('I'),
                "completion" => Some('C'),
                _ => None,
            })
            .collect();
        let state = if m.pinned { format!("{}*", m.state) } else { m.state.clone() };
        out.push_str(&format!("{:<26} {:>6} {:<8} {:<9}", m.name, m.parameter_size, state, caps));
        for c in Category::PROFILED {
            let cell = m
                .categories
                .iter()
                .find(|q| q.category == c)
                .map_or_else(|| "-".to_string(), |q| format!("{:.2}/{}", q.mean, q.n));
            out.push_str(&format!(" {cell:>10}"));
        }
        out.push_str(&format!(
            " {:>7} {:>7} {:>9}{}\n",
            m.decode_tps.map_or_else(|| "-".to_string(), |t| format!("{t:.0}")),
            m.load_seconds.map_or_else(|| "-".to_string(), |s| format!("{s:.1}")),
            m.vram_bytes.map_or_else(|| "-".to_string(), |b| Bytes(b).to_string()),
            if m.stale {
                "  (stale profile)"
            } else if !m.profiled {
                "  (not profiled)"
            } else {
                ""
            }
        ));
    }
    out.push_str(
        "quality is mean/items; caps: C completion, T tools, V vision, E embedding, R thinking, I insert; * pinned;\n\
         VRAM is the memory a model needs loaded (Ollama's `size`; on a GPU too small for it, part is CPU memory)\n",
    );
    out
}

/// `switchyard explain`.
pub async fn explain(config: &Config, args: ExplainArgs) -> Result<(), RouterError> {
    // A JSON body, not a query string: a long prompt would not fit in a URL.
    let body = serde_json::json!({
        "prompt": args.prompt, "model": args.model, "task": args.task, "quality": args.quality, "tools": args.tools,
        "images": args.images,
    });
    let value = call(config, &args.server, Method::POST, "/admin/explain", Some(body)).await?;
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(());
    }
    print!("{}", render_explain(&value));
    Ok(())
}

/// The `explain` table.
pub fn render_explain(v: &Value) -> String {
    let mut out = format!(
        "category: {} (confidence {:.2})   preference w = {:.2}   chosen: {}\n",
        v["category"].as_str().unwrap_or("?"),
        v["confidence"].as_f64().unwrap_or(0.0),
        v["scoring"]["preference"].as_f64().unwrap_or(0.0),
        v["chosen"].as_str().unwrap_or("none")
    );
    let top: Vec<String> = v["top_categories"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|t| format!("{} {:.2}", t["category"].as_str().unwrap_or("?"), t["probability"].as_f64().unwrap_or(0.0)))
        .collect();
    if let Some(task) = v["task"]["name"].as_str() {
        let steps: Vec<&str> =
            v["cascade"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().filter_map(Value::as_str).collect();
        let cascade = if steps.is_empty() { String::new() } else { format!("   cascade: {}", steps.join(" -> ")) };
        out.push_str(&format!("task: {task}{cascade}\n"));
    }
    if !top.is_empty() {
        let blended = if v["blended"].as_bool().unwrap_or(false) {
            "   (unsure: quality blended over the categories by these probabilities)"
        } else {
            ""
        };
        out.push_str(&format!("top categories: {}{blended}\n", top.join(", ")));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<26} {:>7} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}  {}\n",
        "MODEL", "UTILITY", "QUALITY (n)", "LAT s", "LOAD s", "EVICT s", "GEN s", "LOADED", "NOTE"
    ));
    for c in v["scoring"]["candidates"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let lat = &c["latency"];
        let note = match c["excluded"].as_str() {
            Some(reason) => format!("excluded: {reason}"),
            None if !c["profiled"].as_bool().unwrap_or(false) => "unprofiled (prior)".to_string(),
            None if c["stale"].as_bool().unwrap_or(false) => "stale profile".to_string(),
            None => String::new(),
        };
        out.push_str(&format!(
            "{:<26} {:>7.3} {:>7.2} ({:>2}) {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8}  {}\n",
            c["model"].as_str().unwrap_or("?"),
            c["utility"].as_f64().unwrap_or(0.0),
            c["quality"].as_f64().unwrap_or(0.0),
            c["samples"].as_u64().unwrap_or(0),
            lat["total"].as_f64().unwrap_or(0.0),
            lat["load"].as_f64().unwrap_or(0.0),
            lat["eviction"].as_f64().unwrap_or(0.0),
            lat["prefill"].as_f64().unwrap_or(0.0) + lat["decode"].as_f64().unwrap_or(0.0),
            if c["loaded"].as_bool().unwrap_or(false) { "yes" } else { "no" },
            note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_the_task_and_its_cascade() {
        let v = serde_json::json!({"category": "coding", "confidence": 1.0, "chosen": "a:1b",
            "task": {"name": "programmer"}, "cascade": ["a:1b", "b:7b"], "scoring": {"preference": 0.7, "candidates": []}});
        let out = render_explain(&v);
        assert!(out.contains("task: programmer   cascade: a:1b -> b:7b"), "{out}");
        let plain = render_explain(&serde_json::json!({"category": "math", "scoring": {"candidates": []}}));
        assert!(!plain.contains("task:"), "{plain}");
    }
}
