//! The simulator hosted by a benchmark on a runtime of its own, serving with `TCP_NODELAY` on every connection.
//!
//! Ollama (Go's net/http) disables Nagle's algorithm on every connection; a server that does not makes a stream's
//! second small write wait for the client's delayed ACK (about 40 ms on Linux), which would be measured as the
//! backend's latency. Hosting the simulator here, on its own threads, keeps it apart from the load generator's
//! runtime like a separate process would, while answering the way Ollama does.

use anyhow::{Context, Result};
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use switchyard_sim::{SimOptions, SimState};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Name of the hosted simulator's threads (CPU time is read per thread name).
pub const SIM_THREAD: &str = "switchyard-sim";

/// A simulator serving on its own runtime.
#[derive(Debug)]
pub struct HostedSim {
    /// The simulator's runtime; shut down in the background at `stop`.
    runtime: Option<Runtime>,
    /// The state (counters, shutdown).
    state: SimState,
    /// The server task, joined at `stop`.
    server: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl HostedSim {
    /// Builds the simulator for `opts` and serves it on `opts.listen` with `worker_threads` threads of its own.
    pub fn start(opts: &SimOptions, worker_threads: usize) -> Result<HostedSim> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name(SIM_THREAD)
            .enable_all()
            .build()
            .context("starting the simulator's runtime")?;
        let std_listener = std::net::TcpListener::bind(opts.listen).context("binding the simulator")?;
        std_listener.set_nonblocking(true).context("configuring the simulator's socket")?;
        let addr = std_listener.local_addr().context("reading the simulator's address")?;
        // The state starts its scheduler tasks: build it inside the simulator's runtime.
        let state = {
            let _guard = runtime.enter();
            SimState::new(opts).context("building the simulator")?
        };
        let app = switchyard_sim::app(state.clone());
        let cancel = state.cancel_token();
        let server = runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("the simulator cannot listen: {e}");
                    return;
                }
            };
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await {
                eprintln!("the simulator's server failed: {e}");
            }
        });
        Ok(HostedSim { runtime: Some(runtime), state, server: Some(server), addr })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulator's state: counters, queue length.
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Stops serving, joins the server task, and shuts the runtime down.
    pub async fn stop(mut self) {
        self.state.shutdown().await;
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for HostedSim {
    fn drop(&mut self) {
        // Dropping a runtime may block; from inside another runtime it must not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
