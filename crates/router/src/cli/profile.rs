//! `switchyard profile`: profiles local models in this process, with progress bars on a terminal and plain log
//! lines otherwise, then prints the summary table.

use super::flag;
use crate::error::RouterError;
use crate::server;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use switchyard_core::Category;
use switchyard_core::config::{Config, FlagValue};
use switchyard_profiler::plan::{options, suites};
use switchyard_profiler::report::render_table;
use switchyard_profiler::{Progress, ProgressSink, Runner};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// `switchyard profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Models to profile, comma-separated (default: every local model that generates text; an Ollama cloud model
    /// only when named here, since its items run on ollama.com against the account's allowance).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub models: Vec<String>,
    /// Categories, comma-separated: coding, math, reasoning, factual, creative, extraction (default: all).
    #[arg(long, value_delimiter = ',', value_name = "C,D")]
    pub categories: Vec<String>,
    /// Items per category (0 = the whole suite; default profiler.items_per_category).
    #[arg(long, value_name = "N")]
    pub items_per_category: Option<u32>,
    /// Re-profile models whose profiles are fresh.
    #[arg(long)]
    pub force: bool,
    /// Local Ollama model that scores open-ended items (default: none; those items are skipped).
    #[arg(long, value_name = "MODEL")]
    pub judge: Option<String>,
    /// Directory of suite files to use instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub suite_dir: Option<String>,
    /// Ollama's base URL.
    #[arg(long, value_name = "URL")]
    pub ollama: Option<String>,
    /// Profile the models of this `[[backends]]` entry instead of the local Ollama's (requests go through an
    /// in-process router, translated as in serving; no cold load or VRAM is measured for them).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// Spend money: profiling a priced backend first prints the estimated tokens and cost and stops without this.
    #[arg(long)]
    pub yes: bool,
}

/// Flags that set configuration keys.
pub fn flags(args: &ProfileArgs) -> Vec<FlagValue> {
    let mut flags = Vec::new();
    if let Some(n) = args.items_per_category {
        flags.push(flag("profiler.items_per_category", "--items-per-category", n.to_string()));
    }
    if let Some(j) = &args.judge {
        flags.push(flag("profiler.judge", "--judge", j));
    }
    if let Some(d) = &args.suite_dir {
        flags.push(flag("profiler.suite_dir", "--suite-dir", d));
    }
    if let Some(u) = &args.ollama {
        flags.push(flag("ollama.url", "--ollama", u));
    }
    flags
}

/// Progress bars on a terminal: one overall bar (with ETA) and one per model.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    current: Mutex<Option<ProgressBar>>,
    correct: Mutex<HashMap<String, (u32, u32)>>,
}

impl ProgressSink for Bars {
    fn event(&self, event: &Progress) {
        match event {
            Progress::Plan { models } => {
                self.overall.set_length(models.iter().map(|(_, n)| *n as u64).sum());
                self.overall.set_message(format!("{} model(s)", models.len()));
            }
            Progress::ModelStarted { model, items, resumed } => {
                let bar = self.multi.add(ProgressBar::new(*items as u64));
                bar.set_style(style("  {prefix:<24} [{bar:30.green/white}] {pos}/{len} {msg}"));
                bar.set_prefix(model.clone());
                if *resumed > 0 {
                    bar.set_message(format!("resuming after {resumed} stored results"));
                } else {
                    bar.set_message("loading");
                }
                if let Ok(mut current) = self.current.lock() {
                    *current = Some(bar);
                }
            }
            Progress::Loaded { seconds, .. } => {
                self.with_current(|b| b.set_message(format!("loaded in {seconds:.1} s")))
            }
            Progress::Item { model, category, correct, .. } => {
                self.overall.inc(1);
                let (right, total) = self
                    .correct
                    .lock()
                    .map(|mut c| {
                        let e = c.entry(model.clone()).or_insert((0, 0));
                        e.0 += u32::from(*correct);
                        e.1 += 1;
                        *e
                    })
                    .unwrap_or((0, 0));
                self.with_current(|b| {
                    b.inc(1);
                    b.set_message(format!("{category}: {right}/{total} correct"));
                });
            }
            Progress::ModelDone { .. } => self.with_current(|b| b.finish()),
            Progress::ModelSkipped { model, reason } => {
                let _ = self.multi.println(format!("  {model:<24} skipped: {reason}"));
            }
            Progress::ModelFailed { model, error } => {
                self.with_current(|b| b.abandon_with_message(format!("failed: {error}")));
                let _ = self.multi.println(format!("  {model:<24} failed: {error}"));
            }
        }
    }
}

impl Bars {
    fn with_current(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(current) = self.current.lock()
            && let Some(bar) = current.as_ref()
        {
            f(bar);
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

/// Plain log lines when stderr is not a terminal.
struct Lines;

impl ProgressSink for Lines {
    fn event(&self, event: &Progress) {
        match event {
            Progress::Plan { models } => tracing::info!(
                models = models.len(),
                items = models.iter().map(|(_, n)| n).sum::<usize>(),
                "profiling plan"
            ),
            Progress::ModelStarted { model, items, resumed } => {
                tracing::info!(model, items, resumed, "profiling model")
            }
            Progress::Loaded { model, seconds, vram_bytes } => {
                tracing::info!(model, seconds, vram_bytes, "model loaded cold")
            }
            Progress::Item { model, category, item, correct, error } => {
                tracing::info!(model, %category, item, correct, error, "item")
            }
            Progress::ModelDone { model } => tracing::info!(model, "model profiled"),
            Progress::ModelSkipped { model, reason } => tracing::info!(model, reason, "model skipped"),
            Progress::ModelFailed { model, error } => tracing::warn!(model, error, "model failed"),
        }
    }
}

/// Runs `switchyard profile`.
pub async fn run(config: Arc<Config>, args: ProfileArgs) -> Result<(), RouterError> {
    if !config.ollama.enabled && args.backend.is_none() {
        return Err(RouterError::bad(
            "ollama.enabled = false: there are no local models to profile; run `switchyard profile` on the nodes \
             (against the shared store), or name an OpenAI-compatible backend with --backend",
            None,
        ));
    }
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    super::cancel_on_signal(shutdown.clone());
    let mut base = server::build_base(Arc::clone(&config), shutdown.clone(), &tracker).await?;
    if base.catalog.models.is_empty() && args.backend.is_none() {
        base.refresh_catalog().await?;
    }
    let suites = suites(&config)?;
    let options = options(&config, &args.models, &args.categories, args.force)?;
    let runner = Runner {
        client: base.ollama.clone(),
        store: Arc::clone(&base.store),
        vram: base.vram.clone(),
        config: Arc::clone(&config),
        suites: Arc::new(suites),
        cancel: shutdown.clone(),
    };
    let mut runner = runner;
    let mut catalog = Arc::clone(&base.catalog);
    // With --backend: that backend's models, reached through a router in this process.
    let mut via_router = None;
    if let Some(name) = &args.backend {
        let (router, models) = backend_target(&config, name).await?;
        if let Some(stop) = priced_guard(&config, name, &models, &runner, &options, args.yes) {
            router.stop().await;
            shutdown.cancel();
            tracker.close();
            return stop;
        }
        runner.client = switchyard_core::ollama::OllamaClient::new(base.http.clone(), router.url()).with_timeouts(
            std::time::Duration::from_secs(config.ollama.control_timeout_secs),
            std::time::Duration::from_secs(config.ollama.load_timeout_secs),
        );
        catalog = Arc::new(models);
        via_router = Some(router);
    }
    let categories: Vec<Category> = if options.categories.is_empty() {
        runner.suites.iter().map(|s| s.category).collect()
    } else {
        options.categories.clone()
    };
    let result = if std::io::stderr().is_terminal() {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(style("{msg:<26} [{bar:30.cyan/white}] {pos}/{len} items  {elapsed} elapsed, ETA {eta}"));
        let bars = Bars { multi, overall, current: Mutex::new(None), correct: Mutex::new(HashMap::new()) };
        let r = runner.run(&catalog, &options, &bars).await;
        bars.overall.finish();
        r
    } else {
        runner.run(&catalog, &options, &Lines).await
    };
    if let Some(router) = via_router {
        router.stop().await;
    }
    shutdown.cancel();
    tracker.close();
    let summary = result?;
    println!();
    print!("{}", render_table(&summary, &categories));
    println!(
        "{} item(s) run in {:.1} s; quality is the share correct with its Wilson 95% interval",
        summary.items_run,
        summary.elapsed.as_secs_f64()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait()).await;
    Ok(())
}

/// Starts a router in this process (on a free loopback port) and returns it with the text models of backend `name`.
async fn backend_target(
    config: &Arc<Config>,
    name: &str,
) -> Result<(server::Running, switchyard_core::catalog::Catalog), RouterError> {
    // Models name their backend by its position among the `openai` entries (fleet nodes are the fleet's).
    let openai = || config.backends.iter().filter(|b| b.kind != switchyard_core::config::BackendKind::Switchyard);
    let Some(index) = openai().position(|b| b.name == name) else {
        let names: Vec<&str> = openai().map(|b| b.name.as_str()).collect();
        return Err(RouterError::bad(
            format!(
                "no OpenAI-compatible [[backends]] entry is named {name:?} (configured: {}); a fleet node is \
                 profiled on the node itself",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ),
            Some("backend".into()),
        ));
    };
    let mut local = Config::clone(config);
    local.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    // Only this command talks to it: no keys, no rate limits, and no pins or preloads of its own.
    local.server.admin_key.clear();
    local.server.client_keys.clear();
    local.limits.per_ip_rps = 0.0;
    local.limits.per_key_rps = 0.0;
    local.vram.pins.clear();
    local.vram.preload.clear();
    local.vram.pin_fastest = false;
    let router = server::spawn(Arc::new(local)).await?;
    let catalog = router.state.catalog.load();
    let models = catalog
        .models
        .iter()
        .filter(|(_, s)| s.backend.as_ref().is_some_and(|b| !b.fleet && b.index == index) && s.capabilities.completion)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((router, switchyard_core::catalog::Catalog { models }))
}

/// For a priced backend: prints the estimated tokens and cost of the run and, without `--yes`, the error that stops
/// it. `None` lets the run go on.
fn priced_guard(
    config: &Config,
    name: &str,
    models: &switchyard_core::catalog::Catalog,
    runner: &Runner,
    options: &switchyard_profiler::RunOptions,
    yes: bool,
) -> Option<Result<(), RouterError>> {
    let backend = config.backends.iter().find(|b| b.name == name)?;
    if !backend.priced() {
        return None;
    }
    let chosen: Vec<_> =
        models.models.keys().filter(|m| options.models.is_empty() || options.models.contains(m)).collect();
    let (mut input, mut output) = (0u64, 0u64);
    for suite in runner.suites.iter() {
        if !options.categories.is_empty() && !options.categories.contains(&suite.category) {
            continue;
        }
        let n = if options.items_per_category == 0 { suite.items.len() } else { options.items_per_category };
        for item in suite.items.iter().take(n) {
            input += switchyard_core::text::estimate_tokens(&item.prompt)
                + item.system.as_deref().map_or(0, switchyard_core::text::estimate_tokens);
            output += u64::from(item.max_tokens.unwrap_or(options.max_output_tokens));
        }
    }
    let models_n = chosen.len() as u64;
    let (input, output) = (input * models_n, output * models_n);
    let cost = (input as f64 * backend.price_input_per_mtok + output as f64 * backend.price_output_per_mtok) / 1e6;
    println!(
        "backend {name} is priced: profiling {models_n} model(s) sends about {input} input tokens and at most {output} \
         output tokens, about {cost:.4} at its prices ({} / {} per million)",
        backend.price_input_per_mtok, backend.price_output_per_mtok
    );
    if yes {
        return None;
    }
    Some(Err(RouterError::bad(
        format!("profiling backend {name} costs money: run again with --yes to spend about {cost:.4}"),
        Some("yes".into()),
    )))
}
