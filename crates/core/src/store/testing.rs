//! Stores for tests: one SQLite file in a temporary directory and, when a Postgres server is given, a fresh
//! Postgres database, so that every store test runs against both engines.
//!
//! The Postgres server comes from `SY_TEST_POSTGRES_URL` (the test command starts a throwaway one). When
//! `SY_REQUIRE_POSTGRES=1` (set by CI) a missing or unreachable server is an error, not a skip.

use super::{SqlStore, Store};
use crate::error::CoreError;
use sqlx::any::AnyPoolOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A store under test, with what keeps it alive.
#[derive(Debug)]
pub struct TestStore {
    /// `sqlite` or `postgres`, for assertion messages.
    pub engine: &'static str,
    pub store: Arc<dyn Store>,
    /// The URL the store was opened with (to reopen it, e.g. after a simulated crash).
    pub url: String,
    /// Removes the SQLite directory on drop.
    _dir: Option<TempDir>,
}

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}_{}_{}", std::process::id(), n, nanos)
}

/// A new empty SQLite store in its own temporary directory.
pub async fn sqlite() -> Result<TestStore, CoreError> {
    let dir = std::env::temp_dir().join(format!("switchyard-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).map_err(|source| CoreError::Io { path: dir.display().to_string(), source })?;
    let url = format!("sqlite://{}", dir.join("switchyard.db").display());
    let store = SqlStore::open(&url, 4).await?;
    Ok(TestStore { engine: "sqlite", store: Arc::new(store), url, _dir: Some(TempDir(dir)) })
}

/// A URL for a new, empty Postgres database on the test server, or `None` when no server is configured and none is
/// required.
pub async fn postgres_url() -> Result<Option<String>, CoreError> {
    let required = std::env::var("SY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let Some(admin) = std::env::var("SY_TEST_POSTGRES_URL").ok().filter(|v| !v.is_empty()) else {
        if required {
            return Err(CoreError::Store(
                "SY_REQUIRE_POSTGRES=1 but SY_TEST_POSTGRES_URL is not set; run the tests through scripts/test.sh"
                    .into(),
            ));
        }
        eprintln!("note: SY_TEST_POSTGRES_URL is not set; Postgres store tests are skipped (scripts/test.sh sets it)");
        return Ok(None);
    };
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .map_err(|e| CoreError::Store(format!("cannot reach the test Postgres server: {e}")))?;
    let name = format!("sy_test_{}", unique_suffix());
    // A database name cannot be a bind parameter; `name` is built from digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await?;
    pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Ok(Some(format!("{base}/{name}")))
}

/// A new empty Postgres store, or `None` when no server is configured and none is required.
pub async fn postgres() -> Result<Option<TestStore>, CoreError> {
    let Some(url) = postgres_url().await? else { return Ok(None) };
    let store = SqlStore::open(&url, 4).await?;
    Ok(Some(TestStore { engine: "postgres", store: Arc::new(store), url, _dir: None }))
}

/// Every engine available to this test run: SQLite always, Postgres when configured.
pub async fn all() -> Result<Vec<TestStore>, CoreError> {
    let mut stores = vec![sqlite().await?];
    if let Some(pg) = postgres().await? {
        stores.push(pg);
    }
    Ok(stores)
}
