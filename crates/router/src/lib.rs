//! The Switchyard router: Ollama and OpenAI surfaces, auto routing by quality and latency, VRAM admission and a
//! streaming forwarder.
//!
//! A request's way through: a surface in `api` parses it (`request`, `translate`) and hands it to
//! `engine::Engine::serve`, which owns the rest: classification (`classify`), the decision (`score`), admission
//! through a VRAM lease (or a slot of an OpenAI-compatible backend, `backends`), forwarding (`forward`) with
//! fallback across models and backends, and the finishing of the answer (metrics, breaker,
//! learning into `profiles`' live averages). The surface encodes the outcome in its own shape.
//!
//! The response cache (`cache`) answers repeated requests before any of that.
//!
//! The public face is what the binary, the benchmarks and the tests use: `server::spawn` and `cli::main` to run it,
//! and the pure parts (`classify`, `score`, `profiles`, `request`, `translate`) to measure and fuzz them.

mod affinity;
mod api;
mod backends;
mod breaker;
pub mod cache;
mod cascade;
pub mod classify;
pub mod cli;
mod cors;
mod decisions;
mod engine;
mod error;
mod forward;
mod jobs;
mod limit;
mod metrics;
pub mod profiles;
pub mod request;
pub mod score;
pub mod server;
mod state;
mod tasks;
pub mod telemetry;
pub mod translate;
mod writer;

pub use error::RouterError;
