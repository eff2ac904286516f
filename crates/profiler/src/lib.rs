//! Switchyard's profiler: measures every local model per task category on the user's own GPU.
//!
//! `suite` loads the per-category item files (embedded from `suites/`, or a directory given with `--suite-dir`);
//! `plan` turns the configuration into a run's suites, judge and options; `check` decides whether an answer is
//! correct without a judge; `judge` scores open-ended items with an optional LLM judge; `runner` profiles models
//! through the VRAM manager and writes results as they come, sending its chat calls through `client`; `stats`
//! turns results into per-category scores with Wilson intervals; `report` prints a run's summary as a table.

pub mod check;
mod client;
pub mod error;
pub mod judge;
pub mod plan;
pub mod report;
pub mod runner;
pub mod stats;
pub mod suite;

pub use error::ProfileError;
pub use runner::{JudgeTarget, ModelOutcome, Progress, ProgressSink, RunOptions, Runner, Summary};
pub use suite::{Item, Suite};
