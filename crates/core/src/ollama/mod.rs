//! Ollama's wire vocabulary and a client for its control calls.
//!
//! `types` holds the response shapes of the control endpoints (tags, ps, show, version) shared by the router, the
//! VRAM probes, the profiler and the simulator, so that all of them agree on one reading of Ollama's API.
//! `keep_alive` parses Ollama's duration syntax. [`OllamaClient`] wraps the pooled [`HttpClient`] for the control
//! calls; the request path forwards bytes itself and does not go through these helpers.

mod client;
pub mod keep_alive;
pub mod types;

pub use client::{LoadOutcome, OllamaClient};
pub use keep_alive::KeepAlive;
