//! Ollama's wire vocabulary and a client for its control calls.
//!
//! `types` holds the response shapes of the control endpoints (tags, ps, show, version) shared by the router, the
//! VRAM probes, the profiler and the simulator, so that all of them agree on one reading of Ollama's API.
//! `keep_alive` parses Ollama's duration syntax. [`OllamaClient`] wraps the pooled [`HttpClient`] for the control
//! calls; the request path forwards bytes itself and does not go through these helpers.

mod client;
pub mod keep_alive;
mod timings;
pub mod types;

pub use client::{LoadOutcome, OllamaClient};
pub use keep_alive::KeepAlive;
pub use timings::Timings;

use serde_json::{Map, Value};

/// The load-time options a model instance is loaded with. Ollama reloads a model when a request's load-time options
/// differ from its instance's, so every request to the instance must send exactly these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Context length; `None` for embedding-only models, which are loaded with their own.
    pub num_ctx: Option<u64>,
    /// Layers on the GPU for a model partly offloaded to the CPU; `None` leaves it to Ollama.
    pub num_gpu: Option<u32>,
}

impl LoadOptions {
    /// Sets these options in a request's `options` object.
    pub fn write_to(&self, options: &mut Map<String, Value>) {
        if let Some(ctx) = self.num_ctx {
            options.insert("num_ctx".into(), Value::from(ctx));
        }
        if let Some(layers) = self.num_gpu {
            options.insert("num_gpu".into(), Value::from(layers));
        }
    }

    /// These options as an `options` object.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        self.write_to(&mut map);
        map
    }
}
