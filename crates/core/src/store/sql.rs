//! The SQL store, on SQLite or Postgres through sqlx's `Any` driver.
//!
//! The statements are written once, in the dialect both engines share (`$N` parameters, `ON CONFLICT` upserts,
//! BIGINT/DOUBLE columns); only the migrations differ per engine. Unsigned figures are stored as BIGINT and
//! timestamps as milliseconds, the types both engines map the same way.

use super::Store;
use super::records::{
    CacheRecord, DecisionRecord, ItemResult, LoadEvent, ModelRecord, ProfileRun, RunStatus, ScoreRecord, now_ms,
};
use crate::error::CoreError;
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The database engine behind a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a URL names.
    pub fn from_url(url: &str) -> Result<Self, CoreError> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            Err(CoreError::config("database.url", "must start with sqlite: or postgres://"))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// The store on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    /// This node's name in a fleet sharing the store (`server.node_name`); empty for a router on its own. A named
    /// node keeps its speeds, load measurements and pins in rows of its own, and shares quality.
    node: String,
}

static DRIVERS: Once = Once::new();

impl SqlStore {
    /// Connects to `url` (creating a SQLite file and its directory when missing) and runs pending migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, CoreError> {
        let store = Self::connect(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating (for `switchyard migrate`, which reports what it applies).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, CoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let engine = Engine::from_url(url)?;
        let url = match engine {
            Engine::Sqlite => prepare_sqlite_url(url)?,
            Engine::Postgres => url.to_string(),
        };
        let mut options =
            AnyPoolOptions::new().max_connections(max_connections.max(1)).acquire_timeout(Duration::from_secs(5));
        if engine == Engine::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; NORMAL keeps every commit across a process kill.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| CoreError::Store(format!("cannot open {}: {e}", redact_url(&url))))?;
        Ok(Self { pool, engine, node: String::new() })
    }

    /// Makes this store a fleet node's view: speeds, load measurements and pins are written to and read from `node`'s
    /// own rows (over the shared ones); quality stays shared. An empty name keeps the shared rows only.
    pub fn with_node(mut self, node: &str) -> Self {
        self.node = node.to_string();
        self
    }

    /// The node's own load measurements, by model.
    async fn node_measurements(&self) -> Result<HashMap<String, (Option<f64>, Option<u64>, Option<u64>)>, CoreError> {
        let rows = sqlx::query("SELECT * FROM node_measurements WHERE node = $1")
            .bind(&self.node)
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for row in &rows {
            out.insert(
                row.try_get::<String, _>("model")?,
                (row.try_get("load_seconds")?, opt_u64(row, "vram_bytes")?, opt_u64(row, "vram_num_ctx")?),
            );
        }
        Ok(out)
    }

    /// Records a measured load in the node's own row, keeping what `load_seconds` or `vram_bytes` leave unset.
    async fn put_node_measurement(
        &self,
        model: &str,
        load_seconds: Option<f64>,
        vram_bytes: Option<u64>,
        num_ctx: Option<u64>,
    ) -> Result<(), CoreError> {
        sqlx::query(
            "INSERT INTO node_measurements (node, model, load_seconds, vram_bytes, vram_num_ctx, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (node, model) DO UPDATE SET \
             load_seconds = COALESCE(excluded.load_seconds, node_measurements.load_seconds), \
             vram_bytes = COALESCE(excluded.vram_bytes, node_measurements.vram_bytes), \
             vram_num_ctx = COALESCE(excluded.vram_num_ctx, node_measurements.vram_num_ctx), \
             updated_at = excluded.updated_at",
        )
        .bind(&self.node)
        .bind(model)
        .bind(load_seconds)
        .bind(opt_i64(vram_bytes))
        .bind(opt_i64(num_ctx))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, CoreError> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        };
        let applied_before = self.applied_migrations().await.unwrap_or(0);
        migrator.run(&self.pool).await?;
        let applied_after = self.applied_migrations().await.unwrap_or(applied_before);
        Ok(applied_after.saturating_sub(applied_before))
    }

    async fn applied_migrations(&self) -> Result<usize, CoreError> {
        let row =
            sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)? as usize)
    }

    /// The pool, for tests that inspect tables directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Hides a password in a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Creates the directory of a SQLite file and asks sqlx to create the file.
fn prepare_sqlite_url(url: &str) -> Result<String, CoreError> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_string());
    }
    let file = PathBuf::from(path);
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| CoreError::Io { path: dir.display().to_string(), source })?;
    }
    let query = match query {
        Some(q) if q.contains("mode=") => q.to_string(),
        Some(q) => format!("{q}&mode=rwc"),
        None => "mode=rwc".to_string(),
    };
    Ok(format!("sqlite://{path}?{query}"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(to_i64)
}

fn opt_u64(row: &AnyRow, col: &str) -> Result<Option<u64>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(|v| v.max(0) as u64))
}

fn get_u64(row: &AnyRow, col: &str) -> Result<u64, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)?.max(0) as u64)
}

fn model_from_row(row: &AnyRow) -> Result<ModelRecord, sqlx::Error> {
    let capabilities: String = row.try_get("capabilities")?;
    Ok(ModelRecord {
        name: row.try_get("name")?,
        digest: row.try_get("digest")?,
        size_bytes: get_u64(row, "size_bytes")?,
        family: row.try_get("family")?,
        parameter_size: row.try_get("parameter_size")?,
        quantization: row.try_get("quantization")?,
        capabilities: capabilities.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        context_length: opt_u64(row, "context_length")?,
        kv_bytes_per_token: opt_u64(row, "kv_bytes_per_token")?,
        load_seconds: row.try_get("load_seconds")?,
        vram_bytes: opt_u64(row, "vram_bytes")?,
        vram_num_ctx: opt_u64(row, "vram_num_ctx")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn run_from_row(row: &AnyRow) -> Result<ProfileRun, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(ProfileRun {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        digest: row.try_get("digest")?,
        suite_version: row.try_get("suite_version")?,
        categories: row.try_get("categories")?,
        items_per_category: get_u64(row, "items_per_category")? as u32,
        status: RunStatus::parse(&status),
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        load_seconds: row.try_get("load_seconds")?,
        vram_bytes: opt_u64(row, "vram_bytes")?,
        vram_probe_delta: opt_u64(row, "vram_probe_delta")?,
        error: row.try_get("error")?,
    })
}

fn result_from_row(row: &AnyRow) -> Result<ItemResult, sqlx::Error> {
    Ok(ItemResult {
        model: row.try_get("model")?,
        digest: row.try_get("digest")?,
        category: row.try_get("category")?,
        item_id: row.try_get("item_id")?,
        suite_version: row.try_get("suite_version")?,
        run_id: row.try_get("run_id")?,
        correct: row.try_get::<i64, _>("correct")? != 0,
        score: row.try_get("score")?,
        ttft_ms: row.try_get("ttft_ms")?,
        prefill_tps: row.try_get("prefill_tps")?,
        decode_tps: row.try_get("decode_tps")?,
        prompt_tokens: opt_u64(row, "prompt_tokens")?,
        output_tokens: opt_u64(row, "output_tokens")?,
        total_ms: row.try_get("total_ms")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
    })
}

fn score_from_row(row: &AnyRow) -> Result<ScoreRecord, sqlx::Error> {
    Ok(ScoreRecord {
        model: row.try_get("model")?,
        category: row.try_get("category")?,
        digest: row.try_get("digest")?,
        suite_version: row.try_get("suite_version")?,
        n: get_u64(row, "n")? as u32,
        successes: get_u64(row, "successes")? as u32,
        mean: row.try_get("mean")?,
        ci_low: row.try_get("ci_low")?,
        ci_high: row.try_get("ci_high")?,
        ttft_p50_ms: row.try_get("ttft_p50_ms")?,
        ttft_p95_ms: row.try_get("ttft_p95_ms")?,
        latency_p50_ms: row.try_get("latency_p50_ms")?,
        latency_p95_ms: row.try_get("latency_p95_ms")?,
        prefill_tps: row.try_get("prefill_tps")?,
        decode_tps: row.try_get("decode_tps")?,
        mean_output_tokens: row.try_get("mean_output_tokens")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn decision_from_row(row: &AnyRow) -> Result<DecisionRecord, sqlx::Error> {
    Ok(DecisionRecord {
        id: Some(row.try_get("id")?),
        request_id: row.try_get("request_id")?,
        at: row.try_get("at")?,
        surface: row.try_get("surface")?,
        category: row.try_get("category")?,
        requested: row.try_get("requested")?,
        chosen: row.try_get("chosen")?,
        quality_preference: row.try_get("quality_preference")?,
        decision_us: row.try_get("decision_us")?,
        candidates_json: row.try_get("candidates_json")?,
    })
}

fn load_event_from_row(row: &AnyRow) -> Result<LoadEvent, sqlx::Error> {
    Ok(LoadEvent {
        id: Some(row.try_get("id")?),
        at: row.try_get("at")?,
        model: row.try_get("model")?,
        kind: row.try_get("kind")?,
        reason: row.try_get("reason")?,
        strategy: row.try_get("strategy")?,
        duration_ms: row.try_get("duration_ms")?,
        bytes: opt_u64(row, "bytes")?,
        ok: row.try_get::<i64, _>("ok")? != 0,
        error: row.try_get("error")?,
    })
}

/// Rows per multi-row `INSERT` of decisions: 9 parameters each stays far below SQLite's oldest limit of 999
/// parameters per statement.
const DECISIONS_PER_STATEMENT: usize = 64;

/// `head` followed by `rows` groups of `columns` numbered placeholders: `($1, $2), ($3, $4)`.
fn multi_row_insert(head: &str, columns: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * columns * 5);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> Engine {
        self.engine
    }

    async fn ping(&self) -> Result<(), CoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn upsert_model(&self, m: &ModelRecord) -> Result<(), CoreError> {
        sqlx::query(
            "INSERT INTO models (name, digest, size_bytes, family, parameter_size, quantization, capabilities, \
             context_length, kv_bytes_per_token, load_seconds, vram_bytes, vram_num_ctx, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, size_bytes = excluded.size_bytes, \
             family = excluded.family, parameter_size = excluded.parameter_size, \
             quantization = excluded.quantization, capabilities = excluded.capabilities, \
             context_length = excluded.context_length, kv_bytes_per_token = excluded.kv_bytes_per_token, \
             load_seconds = COALESCE(excluded.load_seconds, models.load_seconds), \
             vram_bytes = COALESCE(excluded.vram_bytes, models.vram_bytes), \
             vram_num_ctx = COALESCE(excluded.vram_num_ctx, models.vram_num_ctx), \
             updated_at = excluded.updated_at",
        )
        .bind(&m.name)
        .bind(&m.digest)
        .bind(to_i64(m.size_bytes))
        .bind(&m.family)
        .bind(&m.parameter_size)
        .bind(&m.quantization)
        .bind(m.capabilities.join(","))
        .bind(opt_i64(m.context_length))
        .bind(opt_i64(m.kv_bytes_per_token))
        .bind(m.load_seconds)
        .bind(opt_i64(m.vram_bytes))
        .bind(opt_i64(m.vram_num_ctx))
        .bind(if m.updated_at == 0 { now_ms() } else { m.updated_at })
        .execute(&self.pool)
        .await?;
        if !self.node.is_empty() && (m.load_seconds.is_some() || m.vram_bytes.is_some()) {
            self.put_node_measurement(&m.name, m.load_seconds, m.vram_bytes, m.vram_num_ctx).await?;
        }
        Ok(())
    }

    async fn models(&self) -> Result<Vec<ModelRecord>, CoreError> {
        let rows = sqlx::query("SELECT * FROM models ORDER BY name").fetch_all(&self.pool).await?;
        let mut models: Vec<ModelRecord> = rows.iter().map(model_from_row).collect::<Result<_, _>>()?;
        if !self.node.is_empty() {
            // A node's own measurements, and nothing measured elsewhere: another box's GPU loads differently.
            let own = self.node_measurements().await?;
            for m in &mut models {
                let (load_seconds, vram_bytes, vram_num_ctx) = own.get(&m.name).copied().unwrap_or_default();
                m.load_seconds = load_seconds;
                m.vram_bytes = vram_bytes;
                m.vram_num_ctx = vram_num_ctx;
            }
        }
        Ok(models)
    }

    async fn record_model_measurement(
        &self,
        name: &str,
        load_seconds: Option<f64>,
        vram_bytes: Option<u64>,
        num_ctx: Option<u64>,
    ) -> Result<(), CoreError> {
        sqlx::query(
            "INSERT INTO models (name, load_seconds, vram_bytes, vram_num_ctx, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET load_seconds = COALESCE(excluded.load_seconds, models.load_seconds), \
             vram_bytes = COALESCE(excluded.vram_bytes, models.vram_bytes), \
             vram_num_ctx = COALESCE(excluded.vram_num_ctx, models.vram_num_ctx), updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(load_seconds)
        .bind(opt_i64(vram_bytes))
        .bind(opt_i64(num_ctx))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if !self.node.is_empty() {
            self.put_node_measurement(name, load_seconds, vram_bytes, num_ctx).await?;
        }
        Ok(())
    }

    async fn insert_run(&self, r: &ProfileRun) -> Result<(), CoreError> {
        sqlx::query(
            "INSERT INTO profile_runs (id, model, digest, suite_version, categories, items_per_category, status, \
             started_at, finished_at, load_seconds, vram_bytes, vram_probe_delta, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&r.id)
        .bind(&r.model)
        .bind(&r.digest)
        .bind(&r.suite_version)
        .bind(&r.categories)
        .bind(i64::from(r.items_per_category))
        .bind(r.status.as_str())
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(r.load_seconds)
        .bind(opt_i64(r.vram_bytes))
        .bind(opt_i64(r.vram_probe_delta))
        .bind(&r.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_run(&self, r: &ProfileRun) -> Result<(), CoreError> {
        sqlx::query(
            "UPDATE profile_runs SET status = $2, finished_at = $3, load_seconds = $4, vram_bytes = $5, \
             vram_probe_delta = $6, error = $7 WHERE id = $1",
        )
        .bind(&r.id)
        .bind(r.status.as_str())
        .bind(r.finished_at)
        .bind(r.load_seconds)
        .bind(opt_i64(r.vram_bytes))
        .bind(opt_i64(r.vram_probe_delta))
        .bind(&r.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn unfinished_run(
        &self,
        model: &str,
        digest: &str,
        suite_version: &str,
    ) -> Result<Option<ProfileRun>, CoreError> {
        let row = sqlx::query(
            "SELECT * FROM profile_runs WHERE model = $1 AND digest = $2 AND suite_version = $3 AND status = 'running' \
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(model)
        .bind(digest)
        .bind(suite_version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(run_from_row).transpose()?)
    }

    async fn runs(&self, model: Option<&str>) -> Result<Vec<ProfileRun>, CoreError> {
        let rows = match model {
            Some(m) => {
                sqlx::query("SELECT * FROM profile_runs WHERE model = $1 ORDER BY started_at DESC, id")
                    .bind(m)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM profile_runs ORDER BY started_at DESC, id").fetch_all(&self.pool).await?
            }
        };
        Ok(rows.iter().map(run_from_row).collect::<Result<_, _>>()?)
    }

    async fn insert_result(&self, r: &ItemResult) -> Result<bool, CoreError> {
        let done = sqlx::query(
            "INSERT INTO profile_results (model, digest, category, item_id, suite_version, run_id, correct, score, \
             ttft_ms, prefill_tps, decode_tps, prompt_tokens, output_tokens, total_ms, error, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (model, digest, suite_version, item_id) DO NOTHING",
        )
        .bind(&r.model)
        .bind(&r.digest)
        .bind(&r.category)
        .bind(&r.item_id)
        .bind(&r.suite_version)
        .bind(&r.run_id)
        .bind(i64::from(r.correct))
        .bind(r.score)
        .bind(r.ttft_ms)
        .bind(r.prefill_tps)
        .bind(r.decode_tps)
        .bind(opt_i64(r.prompt_tokens))
        .bind(opt_i64(r.output_tokens))
        .bind(r.total_ms)
        .bind(&r.error)
        .bind(r.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn results(
        &self,
        model: &str,
        digest: &str,
        category: &str,
        suite_version: &str,
    ) -> Result<Vec<ItemResult>, CoreError> {
        let rows = sqlx::query(
            "SELECT * FROM profile_results WHERE model = $1 AND digest = $2 AND category = $3 AND suite_version = $4 \
             ORDER BY item_id",
        )
        .bind(model)
        .bind(digest)
        .bind(category)
        .bind(suite_version)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(result_from_row).collect::<Result<_, _>>()?)
    }

    async fn delete_results(&self, model: &str) -> Result<u64, CoreError> {
        let done = sqlx::query("DELETE FROM profile_results WHERE model = $1").bind(model).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn upsert_score(&self, s: &ScoreRecord) -> Result<(), CoreError> {
        sqlx::query(
            "INSERT INTO profile_scores (model, category, digest, suite_version, n, successes, mean, ci_low, ci_high, \
             ttft_p50_ms, ttft_p95_ms, latency_p50_ms, latency_p95_ms, prefill_tps, decode_tps, mean_output_tokens, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (model, category) DO UPDATE SET digest = excluded.digest, \
             suite_version = excluded.suite_version, n = excluded.n, successes = excluded.successes, \
             mean = excluded.mean, ci_low = excluded.ci_low, ci_high = excluded.ci_high, \
             ttft_p50_ms = excluded.ttft_p50_ms, ttft_p95_ms = excluded.ttft_p95_ms, \
             latency_p50_ms = excluded.latency_p50_ms, latency_p95_ms = excluded.latency_p95_ms, \
             prefill_tps = excluded.prefill_tps, decode_tps = excluded.decode_tps, \
             mean_output_tokens = excluded.mean_output_tokens, updated_at = excluded.updated_at",
        )
        .bind(&s.model)
        .bind(&s.category)
        .bind(&s.digest)
        .bind(&s.suite_version)
        .bind(i64::from(s.n))
        .bind(i64::from(s.successes))
        .bind(s.mean)
        .bind(s.ci_low)
        .bind(s.ci_high)
        .bind(s.ttft_p50_ms)
        .bind(s.ttft_p95_ms)
        .bind(s.latency_p50_ms)
        .bind(s.latency_p95_ms)
        .bind(s.prefill_tps)
        .bind(s.decode_tps)
        .bind(s.mean_output_tokens)
        .bind(s.updated_at)
        .execute(&self.pool)
        .await?;
        if !self.node.is_empty() {
            sqlx::query(
                "INSERT INTO node_speeds (node, model, category, ttft_p50_ms, ttft_p95_ms, latency_p50_ms, \
                 latency_p95_ms, prefill_tps, decode_tps, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (node, model, category) DO UPDATE SET ttft_p50_ms = excluded.ttft_p50_ms, \
                 ttft_p95_ms = excluded.ttft_p95_ms, latency_p50_ms = excluded.latency_p50_ms, \
                 latency_p95_ms = excluded.latency_p95_ms, prefill_tps = excluded.prefill_tps, \
                 decode_tps = excluded.decode_tps, updated_at = excluded.updated_at",
            )
            .bind(&self.node)
            .bind(&s.model)
            .bind(&s.category)
            .bind(s.ttft_p50_ms)
            .bind(s.ttft_p95_ms)
            .bind(s.latency_p50_ms)
            .bind(s.latency_p95_ms)
            .bind(s.prefill_tps)
            .bind(s.decode_tps)
            .bind(s.updated_at)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn scores(&self) -> Result<Vec<ScoreRecord>, CoreError> {
        let rows = sqlx::query("SELECT * FROM profile_scores ORDER BY model, category").fetch_all(&self.pool).await?;
        let mut scores: Vec<ScoreRecord> = rows.iter().map(score_from_row).collect::<Result<_, _>>()?;
        if !self.node.is_empty() {
            // Quality is the model's, wherever it was measured; speeds are this node's own, or unknown.
            let rows =
                sqlx::query("SELECT * FROM node_speeds WHERE node = $1").bind(&self.node).fetch_all(&self.pool).await?;
            let mut own: HashMap<(String, String), AnyRow> = HashMap::new();
            for row in rows {
                own.insert((row.try_get("model")?, row.try_get("category")?), row);
            }
            for s in &mut scores {
                let row = own.get(&(s.model.clone(), s.category.clone()));
                let get = |column: &str| -> Result<Option<f64>, sqlx::Error> {
                    row.map_or(Ok(None), |r| r.try_get::<Option<f64>, _>(column))
                };
                s.ttft_p50_ms = get("ttft_p50_ms")?;
                s.ttft_p95_ms = get("ttft_p95_ms")?;
                s.latency_p50_ms = get("latency_p50_ms")?;
                s.latency_p95_ms = get("latency_p95_ms")?;
                s.prefill_tps = get("prefill_tps")?;
                s.decode_tps = get("decode_tps")?;
            }
        }
        Ok(scores)
    }

    async fn scores_version(&self) -> Result<(i64, i64), CoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(MAX(updated_at), 0) AS latest FROM profile_scores")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get::<i64, _>("n")?, row.try_get::<i64, _>("latest")?))
    }

    async fn insert_decisions(&self, decisions: &[DecisionRecord]) -> Result<(), CoreError> {
        // One multi-row statement per chunk: a batch costs a few round trips to the database and one commit instead
        // of one of each per row. A single statement commits on its own; more are wrapped in one transaction.
        let statements = decisions.chunks(DECISIONS_PER_STATEMENT).map(|chunk| {
            let sql = multi_row_insert(
                "INSERT INTO routing_decisions (request_id, at, surface, category, requested, chosen, \
                 quality_preference, decision_us, candidates_json) VALUES ",
                9,
                chunk.len(),
            );
            // Only the statement's own text and numbered placeholders: every value is bound.
            chunk.iter().fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |query, d| {
                query
                    .bind(&d.request_id)
                    .bind(d.at)
                    .bind(&d.surface)
                    .bind(&d.category)
                    .bind(&d.requested)
                    .bind(&d.chosen)
                    .bind(d.quality_preference)
                    .bind(d.decision_us)
                    .bind(&d.candidates_json)
            })
        });
        if decisions.len() <= DECISIONS_PER_STATEMENT {
            for query in statements {
                query.execute(&self.pool).await?;
            }
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for query in statements {
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn decisions(&self, limit: u32) -> Result<Vec<DecisionRecord>, CoreError> {
        let rows = sqlx::query("SELECT * FROM routing_decisions ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(decision_from_row).collect::<Result<_, _>>()?)
    }

    async fn insert_load_event(&self, e: &LoadEvent) -> Result<(), CoreError> {
        sqlx::query(
            "INSERT INTO load_events (at, model, kind, reason, strategy, duration_ms, bytes, ok, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.at)
        .bind(&e.model)
        .bind(&e.kind)
        .bind(&e.reason)
        .bind(&e.strategy)
        .bind(e.duration_ms)
        .bind(opt_i64(e.bytes))
        .bind(i64::from(e.ok))
        .bind(&e.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_events(&self, model: Option<&str>, limit: u32) -> Result<Vec<LoadEvent>, CoreError> {
        let rows = match model {
            Some(m) => {
                sqlx::query("SELECT * FROM load_events WHERE model = $1 ORDER BY id DESC LIMIT $2")
                    .bind(m)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM load_events ORDER BY id DESC LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(load_event_from_row).collect::<Result<_, _>>()?)
    }

    async fn pins(&self) -> Result<Vec<String>, CoreError> {
        let rows = sqlx::query("SELECT model FROM pins WHERE node = $1 ORDER BY model")
            .bind(&self.node)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.try_get::<String, _>("model")).collect::<Result<_, _>>()?)
    }

    async fn set_pinned(&self, model: &str, pinned: bool) -> Result<(), CoreError> {
        if pinned {
            sqlx::query(
                "INSERT INTO pins (node, model, pinned_at) VALUES ($1, $2, $3) ON CONFLICT (node, model) DO NOTHING",
            )
            .bind(&self.node)
            .bind(model)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query("DELETE FROM pins WHERE node = $1 AND model = $2")
                .bind(&self.node)
                .bind(model)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn cache_get(&self, key: &str, created_after: i64) -> Result<Option<CacheRecord>, CoreError> {
        let row = sqlx::query("SELECT * FROM response_cache WHERE key = $1 AND created_at >= $2")
            .bind(key)
            .bind(created_after)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(cache_from_row).transpose()?)
    }

    async fn cache_put(&self, r: &CacheRecord) -> Result<(), CoreError> {
        sqlx::query(
            "INSERT INTO response_cache (key, model, digest, endpoint, semantic_key, embedding, answer, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO UPDATE SET model = excluded.model, \
             digest = excluded.digest, endpoint = excluded.endpoint, semantic_key = excluded.semantic_key, \
             embedding = excluded.embedding, answer = excluded.answer, created_at = excluded.created_at",
        )
        .bind(&r.key)
        .bind(&r.model)
        .bind(&r.digest)
        .bind(&r.endpoint)
        .bind(&r.semantic_key)
        .bind(&r.embedding)
        .bind(&r.answer)
        .bind(r.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn cache_recent(&self, created_after: i64, limit: u32) -> Result<Vec<CacheRecord>, CoreError> {
        let rows =
            sqlx::query("SELECT * FROM response_cache WHERE created_at >= $1 ORDER BY created_at DESC, key LIMIT $2")
                .bind(created_after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(cache_from_row).collect::<Result<_, _>>()?)
    }

    async fn cache_delete(&self, model: Option<&str>, created_before: Option<i64>) -> Result<u64, CoreError> {
        let before = created_before.unwrap_or(i64::MAX);
        let done = match model {
            Some(m) => {
                sqlx::query("DELETE FROM response_cache WHERE model = $1 AND created_at < $2")
                    .bind(m)
                    .bind(before)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM response_cache WHERE created_at < $1").bind(before).execute(&self.pool).await?
            }
        };
        Ok(done.rows_affected())
    }

    async fn cache_prune(&self, keep: u64, created_before: i64) -> Result<u64, CoreError> {
        let old = sqlx::query("DELETE FROM response_cache WHERE created_at < $1")
            .bind(created_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        // The created_at of the `keep`-th newest answer: everything older goes (NULL, so nothing, when there are
        // fewer). Answers stored in the same millisecond as that one stay, so a few more than `keep` may remain.
        let over = sqlx::query(
            "DELETE FROM response_cache WHERE created_at < (SELECT created_at FROM response_cache \
             ORDER BY created_at DESC LIMIT 1 OFFSET $1)",
        )
        .bind(to_i64(keep.saturating_sub(1)))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(old + over)
    }
}

fn cache_from_row(row: &AnyRow) -> Result<CacheRecord, sqlx::Error> {
    Ok(CacheRecord {
        key: row.try_get("key")?,
        model: row.try_get("model")?,
        digest: row.try_get("digest")?,
        endpoint: row.try_get("endpoint")?,
        semantic_key: row.try_get("semantic_key")?,
        embedding: row.try_get("embedding")?,
        answer: row.try_get("answer")?,
        created_at: row.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.db");
        let url = prepare_sqlite_url(&format!("sqlite://{}", path.display())).unwrap();
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(path.parent().unwrap().is_dir());
    }
}
