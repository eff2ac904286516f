//! Durable state: models, profile runs and results, scores, routing decisions and load events.
//!
//! [`Store`] is the interface the other crates use; [`SqlStore`] implements it on SQLite (the default: one file
//! under the data directory, WAL journal) and on Postgres, through sqlx's runtime-selected driver with one set of
//! migrations per engine in `migrations/<engine>/`. Every statement binds its parameters.

mod records;
mod sql;
pub mod testing;

pub use records::{
    CacheRecord, DecisionRecord, ItemResult, LoadEvent, ModelRecord, ProfileRun, RunStatus, ScoreRecord, now_ms,
};
pub use sql::{Engine, SqlStore, redact_url};

use crate::error::CoreError;
use async_trait::async_trait;

/// Everything Switchyard persists. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which engine backs this store (for logs and `config show`).
    fn engine(&self) -> Engine;

    /// Checks the store answers.
    async fn ping(&self) -> Result<(), CoreError>;

    /// Inserts or updates a model's catalog entry (digest, sizes, capabilities), keeping measured figures that
    /// `model` leaves unset.
    async fn upsert_model(&self, model: &ModelRecord) -> Result<(), CoreError>;

    /// Every known model.
    async fn models(&self) -> Result<Vec<ModelRecord>, CoreError>;

    /// Records a measured load: seconds, VRAM bytes at a context length.
    async fn record_model_measurement(
        &self,
        name: &str,
        load_seconds: Option<f64>,
        vram_bytes: Option<u64>,
        num_ctx: Option<u64>,
    ) -> Result<(), CoreError>;

    /// Creates a profile run.
    async fn insert_run(&self, run: &ProfileRun) -> Result<(), CoreError>;

    /// Updates a run's status, end time, measurements and error.
    async fn update_run(&self, run: &ProfileRun) -> Result<(), CoreError>;

    /// The newest unfinished run for (model, digest, suite version), to resume after a crash.
    async fn unfinished_run(
        &self,
        model: &str,
        digest: &str,
        suite_version: &str,
    ) -> Result<Option<ProfileRun>, CoreError>;

    /// Every run of `model`, newest first.
    async fn runs(&self, model: Option<&str>) -> Result<Vec<ProfileRun>, CoreError>;

    /// Stores one item's result. Returns false when a result for the same (model, digest, suite version, item)
    /// already exists: results are never counted twice.
    async fn insert_result(&self, result: &ItemResult) -> Result<bool, CoreError>;

    /// Results of `model` (at `digest`) for one category's suite version.
    async fn results(
        &self,
        model: &str,
        digest: &str,
        category: &str,
        suite_version: &str,
    ) -> Result<Vec<ItemResult>, CoreError>;

    /// Deletes every result of `model` (used by `--force` before re-profiling).
    async fn delete_results(&self, model: &str) -> Result<u64, CoreError>;

    /// Inserts or replaces the score of (model, category).
    async fn upsert_score(&self, score: &ScoreRecord) -> Result<(), CoreError>;

    /// Every score.
    async fn scores(&self) -> Result<Vec<ScoreRecord>, CoreError>;

    /// A cheap fingerprint of the scores: their count and the latest `updated_at`; it changes whenever a score is
    /// written.
    async fn scores_version(&self) -> Result<(i64, i64), CoreError>;

    /// Appends routing decisions, in order, all or none.
    async fn insert_decisions(&self, decisions: &[DecisionRecord]) -> Result<(), CoreError>;

    /// Appends a routing decision.
    async fn insert_decision(&self, decision: &DecisionRecord) -> Result<(), CoreError> {
        self.insert_decisions(std::slice::from_ref(decision)).await
    }

    /// The newest `limit` decisions, newest first.
    async fn decisions(&self, limit: u32) -> Result<Vec<DecisionRecord>, CoreError>;

    /// Appends a load, unload or eviction.
    async fn insert_load_event(&self, event: &LoadEvent) -> Result<(), CoreError>;

    /// The newest `limit` load events (of `model` when given), newest first.
    async fn load_events(&self, model: Option<&str>, limit: u32) -> Result<Vec<LoadEvent>, CoreError>;

    /// Pins set at run time, to apply again after a restart.
    async fn pins(&self) -> Result<Vec<String>, CoreError>;

    /// Records that `model` was pinned (`true`) or unpinned at run time.
    async fn set_pinned(&self, model: &str, pinned: bool) -> Result<(), CoreError>;

    /// The cached answer under `key`, when one was stored at or after `created_after` (ms).
    async fn cache_get(&self, key: &str, created_after: i64) -> Result<Option<CacheRecord>, CoreError>;

    /// Stores (or replaces) a cached answer.
    async fn cache_put(&self, record: &CacheRecord) -> Result<(), CoreError>;

    /// The newest `limit` cached answers stored at or after `created_after`, newest first (to warm the memory).
    async fn cache_recent(&self, created_after: i64, limit: u32) -> Result<Vec<CacheRecord>, CoreError>;

    /// Deletes cached answers: of `model` when given, stored before `created_before` (ms) when given, else all.
    /// Returns how many went.
    async fn cache_delete(&self, model: Option<&str>, created_before: Option<i64>) -> Result<u64, CoreError>;

    /// Deletes all but the newest `keep` cached answers, and those stored before `created_before`.
    async fn cache_prune(&self, keep: u64, created_before: i64) -> Result<u64, CoreError>;
}
