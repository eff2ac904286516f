//! The `switchyard` command line: parsing, configuration layering from flags, and dispatch to each command.
//!
//! `main.rs` only calls [`main`]; every command's work lives in a module here or in the library.

mod client;
#[cfg(feature = "demo")]
mod demo;
pub mod profile;

use crate::error::RouterError;
use crate::server;
use crate::telemetry;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::{ConfigSources, FlagValue, load};
use switchyard_core::store::SqlStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The top-level help's first example, listed only where the binary has the command (the `demo` feature).
const DEMO_EXAMPLE: &str =
    "  switchyard demo                           # simulator + router, no Ollama or GPU needed\n";

/// The rest of the top-level help after the `demo` example: the other examples, and how configuration is layered.
const AFTER_HELP_TAIL: &str = concat!(
    "  switchyard serve                          # route to the Ollama at http://127.0.0.1:11434\n",
    "  switchyard serve --preset gpu-24gb --ollama http://10.0.0.5:11434\n",
    "  switchyard profile --models llama3.2:3b,qwen2.5-coder:7b\n",
    "  switchyard vram status\n",
    "  switchyard explain \"Prove that the square root of 2 is irrational\"\n",
    "\n",
    "Configuration: built-in defaults < --preset < --config FILE < SWITCHYARD_* environment < flags.\n",
    "`switchyard config show` prints the effective configuration and where each value came from."
);

/// The top-level help's examples and configuration note.
fn after_help() -> String {
    let demo = if cfg!(feature = "demo") { DEMO_EXAMPLE } else { "" };
    format!("Examples:\n{demo}{AFTER_HELP_TAIL}")
}

/// Switchyard: a local LLM router beside Ollama. It picks the best local model for each request, keeps the GPU
/// from running out of memory, and speaks Ollama's and OpenAI's APIs.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, after_help = after_help(), propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). See docs/configuration.md.
    #[arg(long, global = true, value_name = "FILE", env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Tuning preset: balanced, low-latency, high-throughput, high-quality, gpu-8gb, gpu-24gb, gpu-80gb.
    #[arg(long, global = true, value_name = "NAME")]
    pub preset: Option<String>,

    /// Log format on stderr (RUST_LOG sets the level).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router (the main command).
    #[command(after_help = "Example:\n  switchyard serve --listen 127.0.0.1:11435 --ollama http://127.0.0.1:11434")]
    Serve(ServeArgs),
    /// Start the Ollama simulator and the router together, profile the simulated models, and print how to talk to it.
    #[cfg(feature = "demo")]
    #[command(
        after_help = "Example:\n  switchyard demo\n  curl http://127.0.0.1:11435/api/chat -d '{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":false}'"
    )]
    Demo(demo::DemoArgs),
    /// Benchmark local models per task category (quality, latency, tokens/s, load time, VRAM) into the store.
    #[command(
        after_help = "Examples:\n  switchyard profile\n  switchyard profile --models llama3.2:3b --categories math,coding --items-per-category 10\n  switchyard profile --force --judge llama3.1:8b\n  switchyard profile --backend llamacpp --items-per-category 5"
    )]
    Profile(profile::ProfileArgs),
    /// Show or change what is loaded on the GPU, through a running server.
    #[command(
        after_help = "Examples:\n  switchyard vram status\n  switchyard vram pin llama3.2:3b\n  switchyard vram unload llama3.3:70b"
    )]
    Vram(client::VramArgs),
    /// List models with per-category quality, speed and VRAM, from a running server.
    #[command(after_help = "Example:\n  switchyard models")]
    Models(client::ServerArgs),
    /// List the backends (the local Ollama and every [[backends]] entry): health, models, load, latency, spend.
    #[command(after_help = "Example:\n  switchyard backends\n  switchyard backends --json")]
    Backends(client::ServerArgs),
    /// Show or clear the response cache of a running server.
    #[command(after_help = "Examples:\n  switchyard cache status\n  switchyard cache clear --model llama3.2:3b")]
    Cache(client::CacheArgs),
    /// Show how `auto` would route a prompt: every candidate's quality, latency and utility.
    #[command(
        after_help = "Examples:\n  switchyard explain \"Write a haiku about trains\"\n  switchyard explain --quality 0.2 \"What is 17 * 23?\"\n  switchyard explain --task balanced \"Summarise this report\""
    )]
    Explain(client::ExplainArgs),
    /// Apply the database migrations (they also run at every start).
    #[command(
        after_help = "Example:\n  SWITCHYARD_DATABASE_URL=postgres://switchyard@db/switchyard switchyard migrate"
    )]
    Migrate,
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value came from (secrets redacted).
    #[command(after_help = "Example:\n  switchyard --preset gpu-8gb config show")]
    Show,
}

/// `switchyard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:11435).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Ollama's base URL (default http://127.0.0.1:11434).
    #[arg(long, value_name = "URL")]
    pub ollama: Option<String>,
    /// Database URL: sqlite:///path/file.db or postgres://... (default: SQLite in the data directory).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Allow a non-loopback --listen without SWITCHYARD_ADMIN_KEY (the admin routes are then open to the network).
    #[arg(long)]
    pub allow_open_admin: bool,
}

impl Cli {
    fn sources(&self, flags: Vec<FlagValue>) -> ConfigSources {
        let mut flags = flags;
        if let Some(format) = self.log_format {
            let value = match format {
                LogFormatArg::Pretty => "pretty",
                LogFormatArg::Json => "json",
            };
            flags.push(flag("server.log_format", "--log-format", value));
        }
        ConfigSources { preset: self.preset.clone(), file: self.config.clone(), env: Vec::new(), flags }
            .with_process_env()
    }
}

pub(crate) fn flag(key: &'static str, name: &'static str, value: impl Into<String>) -> FlagValue {
    FlagValue { key, flag: name, value: value.into() }
}

fn serve_flags(args: &ServeArgs) -> Vec<FlagValue> {
    let mut flags = Vec::new();
    if let Some(v) = &args.listen {
        flags.push(flag("server.listen", "--listen", v));
    }
    if let Some(v) = &args.ollama {
        flags.push(flag("ollama.url", "--ollama", v));
    }
    if let Some(v) = &args.database_url {
        flags.push(flag("database.url", "--database-url", v));
    }
    if args.allow_open_admin {
        flags.push(flag("server.allow_open_admin", "--allow-open-admin", "true"));
    }
    flags
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), RouterError> {
    let flags = match &cli.command {
        Command::Serve(args) => serve_flags(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::flags(args),
        Command::Profile(args) => profile::flags(args),
        _ => Vec::new(),
    };
    let loaded = load(&cli.sources(flags)).map_err(|e| RouterError::Startup(e.to_string()))?;
    let config = Arc::new(loaded.config.clone());
    let quiet = match &cli.command {
        Command::Vram(_)
        | Command::Models(_)
        | Command::Backends(_)
        | Command::Cache(_)
        | Command::Explain(_)
        | Command::Config(_) => true,
        #[cfg(feature = "demo")]
        Command::Demo(_) => true,
        Command::Serve(_) | Command::Profile(_) | Command::Migrate => false,
    };
    telemetry::init(config.server.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Serve(_) => serve(config).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(config, args).await,
        Command::Profile(args) => profile::run(config, args).await,
        Command::Vram(args) => client::vram(&config, args).await,
        Command::Models(args) => client::models(&config, args).await,
        Command::Backends(args) => client::backends(&config, args).await,
        Command::Cache(args) => client::cache(&config, args).await,
        Command::Explain(args) => client::explain(&config, args).await,
        Command::Migrate => migrate(&config).await,
        Command::Config(ConfigCommand::Show) => {
            println!("{}", loaded.render().map_err(|e| RouterError::Startup(e.to_string()))?);
            Ok(())
        }
    }
}

/// Waits for SIGINT or SIGTERM, then cancels `token`.
pub(crate) fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}

async fn serve(config: Arc<switchyard_core::config::Config>) -> Result<(), RouterError> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    cancel_on_signal(shutdown.clone());
    let listener = TcpListener::bind(config.server.listen).await.map_err(|e| {
        RouterError::Startup(format!(
            "cannot listen on {}: {e} (is another process using the port?)",
            config.server.listen
        ))
    })?;
    let addr = listener.local_addr().map_err(|e| RouterError::Startup(e.to_string()))?;
    let state = server::build_state(Arc::clone(&config), shutdown.clone(), tracker.clone()).await?;
    // Tests and scripts read the address from this line.
    println!("switchyard listening on http://{addr}");
    tracing::info!(%addr, ollama = %config.ollama.url, store = state.store.engine().as_str(), "serving");
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    server::serve(listener, state, shutdown.clone(), grace).await.map_err(|e| RouterError::Startup(e.to_string()))?;
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await.is_err() {
        tracing::warn!("background tasks did not stop within 5 s");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: &switchyard_core::config::Config) -> Result<(), RouterError> {
    let url = config.database.resolved_url();
    let store = SqlStore::connect(&url, 1).await.map_err(|e| RouterError::Startup(e.to_string()))?;
    let applied = store.migrate().await.map_err(|e| RouterError::Startup(e.to_string()))?;
    println!("{} migration(s) applied to {}", applied, switchyard_core::store::redact_url(&url));
    Ok(())
}

/// Parses `--listen`-style flags for tests.
pub fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(args)
}
