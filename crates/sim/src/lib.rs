//! switchyard-sim: an Ollama-compatible HTTP server with a simulated GPU.
//!
//! Every test, benchmark and the demo of Switchyard run against it, on machines with no GPU and no Ollama. It
//! speaks Ollama's native API and its OpenAI-compatible API with the same shapes, defaults and errors; its models
//! come from a fleet file (sizes, load time, prefill and decode rates, capabilities, skill per task category); and
//! it reproduces Ollama's scheduler: one FIFO queue, one load at a time, eviction by shortest keep_alive, 80% fit
//! against the free memory Ollama believes it has, partial CPU offload, out-of-memory when other processes hold
//! memory. `--time-scale` makes every simulated delay faster (0 = instant) while responses keep reporting the
//! simulated durations. `/sim/*` routes expose the simulated GPU and inject faults.
//!
//! Start it in-process with [`spawn`] (port 0 in tests), or build a [`SimState`] and test [`app`] with `oneshot`.
//!
//! Where things live: `fleet` (the models), `scheduler` and `gpu` (Ollama's scheduling and placement), `engine`
//! (state and the request path), `answer`, `items`, `schema`, `filler` and `embed` (what models say),
//! `generation` (pacing a stream), `faults`, `clock` (time scale), `api` (the HTTP surfaces).

mod answer;
mod api;
mod clock;
mod embed;
mod engine;
pub mod error;
pub mod faults;
mod filler;
pub mod fleet;
mod generation;
mod gpu;
mod items;
mod scheduler;
mod schema;

pub use engine::SimState;
pub use error::SimError;
pub use faults::FaultSpec;
pub use fleet::{Fleet, FleetModel};
pub use scheduler::Counters;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long [`SimHandle::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where to listen; port 0 picks a free port (read it back with [`SimHandle::addr`]).
    pub listen: SocketAddr,
    /// The simulated models.
    pub fleet: Fleet,
    /// Memory of each simulated GPU, in bytes.
    pub gpus: Vec<u64>,
    /// Real seconds per simulated second for every delay (0 = instant). keep_alive expiry is scaled too when
    /// positive, and runs in real time at 0.
    pub time_scale: f64,
    /// Most models loaded at once; `None` is 3 x GPUs, like `OLLAMA_MAX_LOADED_MODELS`.
    pub max_loaded_models: Option<usize>,
    /// Concurrent requests per loaded model (`OLLAMA_NUM_PARALLEL`).
    pub num_parallel: usize,
    /// Most requests waiting; more are answered 503 (`OLLAMA_MAX_QUEUE`).
    pub max_queue: usize,
    /// keep_alive of a model loaded by a request that sends none (`OLLAMA_KEEP_ALIVE`).
    pub default_keep_alive: Duration,
    /// When set, every route but `/sim/*` needs `Authorization: Bearer <key>` (a provider stand-in); a request
    /// without it is a 401 in OpenAI's error shape.
    pub api_key: Option<String>,
    /// Request fields `/v1/chat/completions` refuses with a 400 in OpenAI's `unsupported_parameter` shape, as OpenAI's
    /// reasoning models refuse `max_tokens` (its message then names `max_completion_tokens`) and `temperature`.
    pub refused_params: Vec<String>,
    /// Fill-in-the-middle as older llama-server releases do it: `/v1/completions` refuses a `suffix` with a 400
    /// ("Unsupported param: suffix") and `POST /infill` serves it in llama.cpp's own shape (a model without the
    /// `insert` capability gets its 501). `/v1/models` is unchanged, as a proxy in front of llama-server lists it.
    pub llama_infill: bool,
}

impl Default for SimOptions {
    /// 127.0.0.1:0, the built-in fleet, one 24 GiB GPU, time scale 0, Ollama's defaults for the rest.
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            fleet: Fleet::builtin(),
            gpus: vec![24 * 1024 * 1024 * 1024],
            time_scale: 0.0,
            max_loaded_models: None,
            num_parallel: 1,
            max_queue: 512,
            default_keep_alive: Duration::from_secs(300),
            api_key: None,
            refused_params: Vec::new(),
            llama_infill: false,
        }
    }
}

/// The router with every route, for `oneshot` tests.
pub fn app(state: SimState) -> axum::Router {
    api::router(state)
}

/// Binds `opts.listen` and serves in the background until [`SimHandle::shutdown`].
pub async fn spawn(opts: SimOptions) -> Result<SimHandle, SimError> {
    let state = SimState::new(&opts)?;
    let bind_error = |source| SimError::Bind { addr: opts.listen, source };
    let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let cancel = state.cancel_token();
    let router = app(state.clone());
    // Like Ollama's server: streamed tokens are small writes that must not wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(cancel.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the simulator's server failed");
        }
    });
    tracing::info!(%addr, "switchyard-sim serving");
    Ok(SimHandle { addr, state, server })
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    /// The address actually bound.
    addr: SocketAddr,
    /// The simulator's state (shared with the server).
    state: SimState,
    /// The server task, joined at shutdown.
    server: JoinHandle<()>,
}

impl SimHandle {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL (`http://127.0.0.1:PORT`; a wildcard bind is reached through the loopback address).
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            match self.addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The simulator's state: counters, queue length.
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Stops serving: requests in progress end, background tasks stop, and the server task is joined. A client
    /// that keeps a connection open without reading cannot hold this up for more than a few seconds: the server
    /// task is then aborted.
    pub async fn shutdown(mut self) {
        self.state.shutdown().await;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the simulator's server task failed"),
            Err(_) => {
                tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
                self.server.abort();
            }
        }
    }
}
