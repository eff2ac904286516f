//! The Switchyard router: Ollama and OpenAI surfaces, auto routing by quality and latency, VRAM admission and a
//! streaming forwarder.
//!
//! A request's way through: `api` parses it (`request`, `translate`) -> `route` picks candidates (`classify`,
//! `score`) and admits one through a VRAM lease -> `forward` sends it to Ollama and relays the answer -> the
//! response's own timings update `profiles`' live averages.

pub mod api;
pub mod breaker;
pub mod classify;
pub mod cli;
pub mod decisions;
pub mod error;
pub mod forward;
pub mod jobs;
pub mod limit;
pub mod metrics;
pub mod profiles;
pub mod request;
pub mod route;
pub mod score;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod translate;
pub mod writer;

pub use error::RouterError;
