//! Shared vocabulary of Switchyard.
//!
//! Everything the other crates agree on lives here: model names and capabilities, task categories, byte sizes,
//! GPU snapshots, the layered configuration, the HTTP client used to talk to Ollama, and the `Store` with its
//! SQLite and Postgres backends. Nothing in this crate knows about axum or about routing policy.

pub mod catalog;
pub mod category;
pub mod config;
pub mod error;
pub mod fleet;
pub mod gpu;
pub mod http;
pub mod model;
pub mod ndjson;
pub mod ollama;
pub mod size;
pub mod store;
pub mod text;

pub use category::Category;
pub use error::CoreError;
pub use model::{Capabilities, ModelName};
