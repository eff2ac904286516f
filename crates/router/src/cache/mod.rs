//! The response cache: answers kept by a hash of everything that decides them, answered again without a model.
//!
//! The key is a SHA-256 of the native request (both surfaces translate to it, so one question asked through
//! Ollama's API and OpenAI's finds the same entry) with what does not change the answer left out (`model`, which
//! the resolved target replaces, `stream`, `keep_alive`, and the load-time options Switchyard sets itself). Entries
//! hold the whole answer in Ollama's buffered shape; a stream is replayed from it ([`replay`]). The memory part is
//! an LRU bounded by entries and bytes; with `cache.persist` every entry is also written to the store, read back on
//! a memory miss (so replicas sharing a Postgres share entries) and loaded at start. The store is never needed:
//! when it fails, the cache keeps working from memory.
//!
//! With `cache.semantic`, a request that misses is embedded (its last user turn, through `cache.embedding_model`
//! under a VRAM lease) and answered from the most similar stored question whose request is otherwise the same
//! (the "group": the key of the request without its last user turn), when the cosine similarity reaches
//! `cache.similarity_threshold`.

pub mod index;
pub(crate) mod replay;

use crate::metrics::Metrics;
use crate::request::{Endpoint, LOAD_TIME_OPTIONS, Prepared, Target};
use crate::state::AppState;
use crate::writer::Write;
use axum::http::HeaderMap;
use base64::Engine as _;
use bytes::Bytes;
use hashlink::LruCache;
use index::Group;
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use switchyard_core::ModelName;
use switchyard_core::config::CacheConfig;
use switchyard_core::store::{CacheRecord, Store, now_ms};

/// A SHA-256 of a request.
pub type Key = [u8; 32];

/// How long a store read may take before the cache answers from memory alone.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed store read, how long the store is not asked again.
const STORE_BACKOFF_MS: i64 = 5_000;
/// How long a semantic lookup waits for the embedding model's lease.
const EMBED_LEASE_WAIT: Duration = Duration::from_secs(2);
/// Deadline of the embedding call.
const EMBED_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest last user turn the semantic cache embeds (longer ones get exact hits only).
const EMBED_BYTES: usize = 4096;
/// Bytes an entry costs beyond its answer and vector (key, model name, bookkeeping).
const ENTRY_OVERHEAD: u64 = 160;
/// Every this many stored entries, the store is pruned to `cache.max_entries` and `cache.ttl_secs`.
const PRUNE_EVERY: u64 = 64;

/// What the cache did for one answer, for the `x-switchyard-cache` header and the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CacheStatus {
    /// The cache is off.
    Off,
    Hit,
    /// A paraphrase's answer, with the similarity of the two questions.
    SemanticHit(f32),
    Miss,
    /// The cache was not read: the request asked not to (`Cache-Control: no-cache`) or is not cacheable.
    Bypass,
}

impl CacheStatus {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CacheStatus::Off => "off",
            CacheStatus::Hit => "hit",
            CacheStatus::SemanticHit(_) => "semantic_hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }

    /// The `x-switchyard-cache` header value; none when the cache is off.
    pub(crate) fn header(self) -> Option<String> {
        match self {
            CacheStatus::Off => None,
            CacheStatus::Hit => Some("hit".into()),
            CacheStatus::SemanticHit(s) => Some(format!("semantic-hit; similarity={s:.4}")),
            CacheStatus::Miss => Some("miss".into()),
            CacheStatus::Bypass => Some("bypass".into()),
        }
    }
}

/// What a request's `Cache-Control` (and `Pragma`) allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directives {
    /// Answer from the cache (not `no-cache`).
    pub read: bool,
    /// Store the answer (not `no-store`).
    pub write: bool,
}

impl Default for Directives {
    fn default() -> Self {
        Self { read: true, write: true }
    }
}

impl Directives {
    /// Reads `Cache-Control: no-cache` / `no-store` (and HTTP/1.0's `Pragma: no-cache`).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        let tokens = headers
            .get_all(axum::http::header::CACHE_CONTROL)
            .iter()
            .chain(headers.get_all(axum::http::header::PRAGMA).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase());
        for token in tokens {
            match token.as_str() {
                "no-cache" | "max-age=0" => d.read = false,
                "no-store" => d.write = false,
                _ => {}
            }
        }
        d
    }
}

/// What the cache will do for one request: its key, whether it is read and written, and what the semantic cache
/// needs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub key: Key,
    pub read: bool,
    pub write: bool,
    /// The request's key without its last user turn, and that turn's text (semantic cache only).
    semantic: Option<(Key, String)>,
    /// The embedding of that text, once computed.
    embedding: Option<Arc<[f32]>>,
}

impl Plan {
    /// The status of a request that was not answered from the cache.
    pub(crate) fn missed(&self) -> CacheStatus {
        if self.read { CacheStatus::Miss } else { CacheStatus::Bypass }
    }
}

/// One cached answer.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The model that answered.
    pub model: ModelName,
    pub endpoint: Endpoint,
    /// The whole answer, in Ollama's buffered shape.
    pub answer: Bytes,
    /// Its `model` field.
    pub shown: String,
    /// The answer as a native stream, made at its first streamed replay.
    pub lines: OnceLock<Bytes>,
    /// When it was stored (ms since the epoch).
    pub created_ms: i64,
    /// The model's digest when it answered.
    pub digest: String,
    /// The group and the last user turn's unit vector (semantic cache).
    semantic: Option<(Key, Arc<[f32]>)>,
}

impl Entry {
    fn cost(&self) -> u64 {
        // The answer may be held twice (whole, and as the stream made at its first streamed replay), and so is the
        // vector (by the entry, for the store, and by its group's block, for the scan).
        self.answer.len() as u64 * 2
            + self.semantic.as_ref().map_or(0, |(_, v)| v.len() as u64 * 8 + 64)
            + ENTRY_OVERHEAD
    }
}

/// A cache hit.
#[derive(Debug)]
pub(crate) struct Hit {
    pub entry: Arc<Entry>,
    pub status: CacheStatus,
}

/// The in-memory part.
#[derive(Default)]
struct Memory {
    lru: Option<LruCache<Key, Arc<Entry>>>,
    bytes: u64,
    /// Semantic groups: the entries' keys and vectors, per request-without-its-last-turn.
    groups: HashMap<Key, Arc<Group>>,
}

impl Memory {
    fn lru(&mut self) -> &mut LruCache<Key, Arc<Entry>> {
        self.lru.get_or_insert_with(LruCache::new_unbounded)
    }

    fn remove(&mut self, key: &Key) -> Option<Arc<Entry>> {
        let entry = self.lru().remove(key)?;
        self.forget(key, &entry);
        Some(entry)
    }

    fn forget(&mut self, key: &Key, entry: &Entry) {
        self.bytes = self.bytes.saturating_sub(entry.cost());
        if let Some((group, _)) = &entry.semantic
            && let Some(members) = self.groups.get_mut(group)
        {
            Arc::make_mut(members).remove(key);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }
}

/// Counters of `GET /admin/cache`.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    semantic_hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    expired: AtomicU64,
    store_errors: AtomicU64,
    /// Entries queued for the store.
    queued: AtomicU64,
}

/// What `GET /admin/cache` shows.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub semantic: bool,
    pub persist: bool,
    pub entries: u64,
    pub bytes: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub ttl_secs: u64,
    pub hits: u64,
    pub semantic_hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    /// Hits (exact and semantic) over hits and misses.
    pub hit_rate: f64,
    pub evictions: u64,
    pub expired: u64,
    /// Entries written to the store (with `persist`).
    pub stored: u64,
    /// Store reads and writes that failed (the cache then works from memory).
    pub store_errors: u64,
}

/// The response cache, shared by every request.
pub struct ResponseCache {
    config: CacheConfig,
    memory: Mutex<Memory>,
    counters: Counters,
    entries: IntGauge,
    bytes: IntGauge,
    evictions: IntCounter,
    store_writes: IntCounterVec,
    /// Store reads are skipped until this time (ms) after one failed.
    store_down_until: AtomicU64,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ResponseCache {
    pub(crate) fn new(config: CacheConfig, metrics: &Metrics) -> Self {
        Self {
            config,
            memory: Mutex::new(Memory::default()),
            counters: Counters::default(),
            entries: metrics.cache_entries.clone(),
            bytes: metrics.cache_bytes.clone(),
            evictions: metrics.cache_evictions.clone(),
            store_writes: metrics.cache_store_writes.clone(),
            store_down_until: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn persist(&self) -> bool {
        self.config.enabled && self.config.persist
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest creation time (ms) still valid.
    fn valid_after(&self) -> i64 {
        if self.config.ttl_secs == 0 {
            i64::MIN
        } else {
            now_ms() - i64::try_from(self.config.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
        }
    }

    /// What the cache does for `prepared`; `None` when the cache is off.
    pub(crate) fn plan(&self, prepared: &Prepared, directives: Directives) -> Option<Plan> {
        if !self.config.enabled {
            return None;
        }
        let cacheable = matches!(prepared.endpoint, Endpoint::Chat | Endpoint::Generate)
            && prepared.control.is_none()
            && (self.config.cache_sampled || deterministic(&prepared.body));
        if !cacheable {
            // Most requests (sampled ones) end here: nothing is hashed for them.
            return Some(Plan { key: [0; 32], read: false, write: false, semantic: None, embedding: None });
        }
        let (read, write) = (directives.read, directives.write);
        if !read && !write {
            return Some(Plan { key: [0; 32], read, write, semantic: None, embedding: None });
        }
        let task = prepared.task.as_ref().map(|t| t.fingerprint);
        let key = request_key(prepared.endpoint, (&prepared.target, task), &prepared.body, None);
        let semantic =
            self.config.semantic.then(|| last_user_text(prepared.endpoint, &prepared.body)).flatten().map(|text| {
                let group = request_key(prepared.endpoint, (&prepared.target, task), &prepared.body, Some(()));
                (group, text)
            });
        Some(Plan { key, read, write, semantic, embedding: None })
    }

    /// The entry under `key` in memory, when it is still valid (an expired one is dropped).
    fn memory_get(&self, key: &Key) -> Option<Arc<Entry>> {
        let valid_after = self.valid_after();
        let mut memory = self.memory();
        let entry = memory.lru().get(key).cloned()?;
        if entry.created_ms < valid_after {
            memory.remove(key);
            self.publish(&mut memory);
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(entry)
    }

    /// Puts an entry in memory and evicts the least recently used beyond the limits.
    fn memory_put(&self, key: Key, entry: Arc<Entry>) {
        let mut memory = self.memory();
        if let Some(old) = memory.lru().insert(key, Arc::clone(&entry)) {
            memory.forget(&key, &old);
        }
        memory.bytes += entry.cost();
        if let Some((group, vector)) = &entry.semantic {
            Arc::make_mut(memory.groups.entry(*group).or_default()).push(key, vector);
        }
        while memory.lru().len() as u64 > self.config.max_entries || memory.bytes > self.config.max_bytes.0 {
            let Some((k, e)) = memory.lru().remove_lru() else { break };
            memory.forget(&k, &e);
            self.evictions.inc();
        }
        self.publish(&mut memory);
    }

    /// Sets the entries and bytes gauges.
    fn publish(&self, memory: &mut Memory) {
        self.entries.set(i64::try_from(memory.lru().len()).unwrap_or(i64::MAX));
        self.bytes.set(i64::try_from(memory.bytes).unwrap_or(i64::MAX));
    }

    /// The most similar entry of `group` to `vector`, at or above the threshold. The group is scanned outside the
    /// lock.
    fn nearest(&self, group: &Key, vector: &[f32]) -> Option<(Arc<Entry>, f32)> {
        let members = Arc::clone(self.memory().groups.get(group)?);
        let (key, similarity) = members.nearest(vector)?;
        if f64::from(similarity) < self.config.similarity_threshold {
            return None;
        }
        self.memory_get(&key).map(|entry| (entry, similarity))
    }

    fn count(&self, status: CacheStatus) {
        let c = &self.counters;
        let counter = match status {
            CacheStatus::Off => return,
            CacheStatus::Hit => &c.hits,
            CacheStatus::SemanticHit(_) => &c.semantic_hits,
            CacheStatus::Miss => &c.misses,
            CacheStatus::Bypass => &c.bypasses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn store_up(&self) -> bool {
        u64::try_from(now_ms()).unwrap_or(0) >= self.store_down_until.load(Ordering::Relaxed)
    }

    fn store_failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        let until = u64::try_from(now_ms() + STORE_BACKOFF_MS).unwrap_or(0);
        self.store_down_until.store(until, Ordering::Relaxed);
        tracing::warn!(%error, "response cache: the store failed ({what}); answering from memory");
    }

    /// Looks `key` up in the store (with `persist`), bringing a found entry into memory.
    async fn store_get(&self, store: &dyn Store, key: &Key) -> Option<Arc<Entry>> {
        if !self.persist() || !self.store_up() {
            return None;
        }
        let hex = to_hex(key);
        match tokio::time::timeout(STORE_TIMEOUT, store.cache_get(&hex, self.valid_after())).await {
            Ok(Ok(Some(record))) => {
                let entry = Arc::new(entry_from_record(record)?);
                self.memory_put(*key, Arc::clone(&entry));
                Some(entry)
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                self.store_failed("read", &e);
                None
            }
            Err(_) => {
                self.store_failed("read", &"timed out");
                None
            }
        }
    }

    /// The largest answer stored: counted twice (whole, and as its replay stream), one answer never takes more than a
    /// quarter of `cache.max_bytes` (it would evict everything else).
    pub(crate) fn max_answer_bytes(&self) -> u64 {
        self.config.max_bytes.0 / 8
    }

    /// Drops the entry under `key` from memory.
    fn discard(&self, key: &Key) {
        let mut memory = self.memory();
        memory.remove(key);
        self.publish(&mut memory);
    }

    /// Stores `answer` (Ollama's buffered shape) from `model` under `plan`, when the plan allows it and the answer
    /// is one worth keeping: complete, not a load, and without tool calls unless `cache.cache_tool_calls`.
    pub(crate) fn insert(&self, state: &AppState, plan: &Plan, endpoint: Endpoint, model: &ModelName, answer: Bytes) {
        if !plan.write {
            return;
        }
        if answer.len() as u64 > self.max_answer_bytes() {
            return;
        }
        let Some(shown) = cacheable_answer(&answer, self.config.cache_tool_calls) else { return };
        let semantic = match (&plan.semantic, &plan.embedding) {
            (Some((group, _)), Some(vector)) => Some((*group, Arc::clone(vector))),
            _ => None,
        };
        let entry = Arc::new(Entry {
            model: model.clone(),
            endpoint,
            answer,
            shown,
            lines: OnceLock::new(),
            created_ms: now_ms(),
            digest: digest_of(state, model),
            semantic,
        });
        if self.persist() {
            let record = record_of(&plan.key, &entry);
            state.writer.write(Write::CachePut(record));
            let n = self.counters.queued.fetch_add(1, Ordering::Relaxed);
            if n % PRUNE_EVERY == PRUNE_EVERY - 1 {
                let before = if self.config.ttl_secs == 0 { i64::MIN } else { self.valid_after() };
                state.writer.write(Write::CachePrune { keep: self.config.max_entries, before });
            }
        }
        self.memory_put(plan.key, entry);
    }

    /// After a semantic hit, keeps the answer under the request's own key too, so that the same wording next time is
    /// an exact hit (no embedding call). The alias has no vector of its own: it never answers other paraphrases.
    pub(crate) fn alias(&self, state: &AppState, plan: &Plan, entry: &Entry) {
        if !plan.write {
            return;
        }
        let alias = Arc::new(Entry {
            model: entry.model.clone(),
            endpoint: entry.endpoint,
            answer: entry.answer.clone(),
            shown: entry.shown.clone(),
            lines: OnceLock::new(),
            created_ms: entry.created_ms,
            digest: entry.digest.clone(),
            semantic: None,
        });
        if self.persist() {
            state.writer.write(Write::CachePut(record_of(&plan.key, &alias)));
        }
        self.memory_put(plan.key, alias);
    }

    /// Drops entries from memory: of `model` when given, older than `older_than` when given, else all. Returns how
    /// many went.
    pub(crate) fn invalidate_memory(&self, model: Option<&str>, older_than: Option<Duration>) -> u64 {
        let before = older_than.map(cutoff);
        let mut memory = self.memory();
        let doomed: Vec<Key> = memory
            .lru()
            .iter()
            .filter(|(_, e)| model.is_none_or(|m| e.model.as_str() == m) && before.is_none_or(|b| e.created_ms < b))
            .map(|(k, _)| *k)
            .collect();
        for key in &doomed {
            memory.remove(key);
        }
        self.publish(&mut memory);
        doomed.len() as u64
    }

    /// Loads the newest stored entries into memory (at start, with `persist`).
    pub(crate) async fn warm(&self, store: &dyn Store) {
        let limit = u32::try_from(self.config.max_entries).unwrap_or(u32::MAX);
        match store.cache_recent(self.valid_after(), limit).await {
            Ok(records) => {
                let n = records.len();
                // Oldest first, so that the newest end up most recently used.
                for record in records.into_iter().rev() {
                    let Some(key) = from_hex(&record.key) else { continue };
                    if let Some(entry) = entry_from_record(record) {
                        self.memory_put(key, Arc::new(entry));
                    }
                }
                tracing::info!(entries = n, "response cache loaded from the store");
            }
            Err(e) => self.store_failed("load at start", &e),
        }
    }

    /// The figures of `GET /admin/cache`.
    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = {
            let mut memory = self.memory();
            (memory.lru().len() as u64, memory.bytes)
        };
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (hits, semantic_hits, misses) = (get(&c.hits), get(&c.semantic_hits), get(&c.misses));
        let looked = hits + semantic_hits + misses;
        CacheStats {
            enabled: self.config.enabled,
            semantic: self.config.semantic,
            persist: self.config.persist,
            entries,
            bytes,
            max_entries: self.config.max_entries,
            max_bytes: self.config.max_bytes.0,
            ttl_secs: self.config.ttl_secs,
            hits,
            semantic_hits,
            misses,
            bypasses: get(&c.bypasses),
            hit_rate: if looked == 0 { 0.0 } else { (hits + semantic_hits) as f64 / looked as f64 },
            evictions: self.evictions.get(),
            expired: get(&c.expired),
            stored: self.store_writes.with_label_values(&["ok"]).get(),
            store_errors: get(&c.store_errors) + self.store_writes.with_label_values(&["error"]).get(),
        }
    }
}

/// Looks `plan` up: memory, then the store, then (semantic cache) the nearest paraphrase. Counts the outcome, and
/// keeps the request's embedding in `plan` for storing its answer.
pub(crate) async fn lookup(state: &AppState, plan: &mut Plan) -> Option<Hit> {
    let cache = &state.cache;
    if !plan.read {
        count_bypass(state);
        return None;
    }
    let started = Instant::now();
    // A stale exact entry is dropped; the key is this request's own.
    let current = |entry: &Arc<Entry>| {
        current(state, entry) || {
            cache.discard(&plan.key);
            false
        }
    };
    let found = match cache.memory_get(&plan.key).filter(current) {
        Some(entry) => Some(Hit { entry, status: CacheStatus::Hit }),
        None => match cache.store_get(state.store.as_ref(), &plan.key).await.filter(current) {
            Some(entry) => Some(Hit { entry, status: CacheStatus::Hit }),
            None => semantic_lookup(state, plan).await,
        },
    };
    let status = found.as_ref().map_or(CacheStatus::Miss, |h| h.status);
    cache.count(status);
    state.metrics.cache_requests.with_label_values(&[status.label()]).inc();
    state.metrics.cache_lookup.observe(started.elapsed().as_secs_f64());
    found
}

/// The digest the catalog has for `model` now (empty when unknown).
fn digest_of(state: &AppState, model: &ModelName) -> String {
    state.catalog.load().get(model).map(|s| s.digest.clone()).unwrap_or_default()
}

/// False for an answer of a model that was re-pulled since (its digest changed, perhaps while the router was down,
/// which the catalog refresh cannot see for answers loaded from the store).
fn current(state: &AppState, entry: &Entry) -> bool {
    entry.digest.is_empty()
        || state.catalog.load().get(&entry.model).is_none_or(|s| s.digest.is_empty() || s.digest == entry.digest)
}

/// Counts a request the cache did not read.
pub(crate) fn count_bypass(state: &AppState) {
    state.cache.count(CacheStatus::Bypass);
    state.metrics.cache_requests.with_label_values(&[CacheStatus::Bypass.label()]).inc();
}

/// Embeds the request's last user turn and finds the nearest cached paraphrase.
async fn semantic_lookup(state: &AppState, plan: &mut Plan) -> Option<Hit> {
    let (group, text) = plan.semantic.as_ref()?;
    let vector = embed_text(state, text).await?;
    plan.embedding = Some(Arc::clone(&vector));
    let (entry, similarity) = state.cache.nearest(group, &vector)?;
    if !current(state, &entry) {
        return None;
    }
    Some(Hit { entry, status: CacheStatus::SemanticHit(similarity) })
}

/// The unit vector of `text` from `cache.embedding_model`, admitted through the VRAM manager; none on any failure
/// (the request is then served as a miss).
async fn embed_text(state: &AppState, text: &str) -> Option<Arc<[f32]>> {
    let name = &state.config.cache.embedding_model;
    let model = ModelName::parse(name).ok()?;
    let _lease = match state.vram.acquire_within(&model, EMBED_LEASE_WAIT).await {
        Ok(lease) => lease,
        Err(e) => {
            tracing::debug!(error = %e, "semantic cache: no lease on the embedding model");
            return None;
        }
    };
    let url = switchyard_core::http::join_url(state.ollama.base_url(), "/api/embed");
    let http = state.ollama.http();
    match crate::classify::embed(http, &url, name, &[text], EMBED_TIMEOUT).await {
        Ok(mut vectors) => {
            let mut v = vectors.pop()?;
            crate::classify::normalize(&mut v).then(|| Arc::from(v))
        }
        Err(e) => {
            tracing::debug!(error = %e, "semantic cache: embedding failed");
            None
        }
    }
}

/// The creation time (ms) before which an answer is older than `age` (the epoch's start for absurd ages).
pub(crate) fn cutoff(age: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

/// True when sampling cannot change the answer: temperature 0, or a fixed seed.
fn deterministic(body: &Map<String, Value>) -> bool {
    let Some(Value::Object(options)) = body.get("options") else { return false };
    let zero = options.get("temperature").and_then(Value::as_f64) == Some(0.0);
    let seeded = options.get("seed").is_some_and(|s| s.is_i64() || s.is_u64());
    zero || seeded
}

/// For an answer worth keeping, its `model` field: a complete answer (`done: true`, not a load or unload), with no
/// tool calls unless `tool_calls` allows them.
pub(crate) fn cacheable_answer(answer: &[u8], tool_calls: bool) -> Option<String> {
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(answer) else { return None };
    if v.get("done").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    if matches!(v.get("done_reason").and_then(Value::as_str), Some("load" | "unload")) {
        return None;
    }
    let calls =
        v.get("message").and_then(|m| m.get("tool_calls")).is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()));
    (tool_calls || !calls).then(|| v.get("model").and_then(Value::as_str).unwrap_or_default().to_string())
}

/// The key of a request: the endpoint, the resolved target and the body without what does not decide the answer.
/// With `without_last_turn`, the last user turn's text is left out too (the semantic group).
fn request_key(
    endpoint: Endpoint,
    (target, task): (&Target, Option<u64>),
    body: &Map<String, Value>,
    without_last_turn: Option<()>,
) -> Key {
    let mut h = Sha256::new();
    h.update(b"switchyard-cache-v1\0");
    h.update(endpoint.path().as_bytes());
    h.update(b"\0");
    match target {
        Target::Model(name) => {
            h.update(b"model:");
            h.update(name.as_str().as_bytes());
        }
        Target::Auto { preference, .. } => {
            h.update(b"auto:");
            h.update(preference.to_bits().to_le_bytes());
        }
    }
    // A task may restrict the models or run a cascade: its answers are its own, and an edited rule's are new.
    if let Some(task) = task {
        h.update(b"\0task:");
        h.update(task.to_le_bytes());
    }
    h.update(b"\0");
    let last_user = without_last_turn.and_then(|()| last_user_index(endpoint, body));
    let mut keys: Vec<&String> = body.keys().collect();
    keys.sort();
    for k in keys {
        if matches!(k.as_str(), "model" | "stream" | "keep_alive") {
            continue;
        }
        let Some(v) = body.get(k) else { continue };
        feed_str(&mut h, k);
        match (k.as_str(), v) {
            ("options", Value::Object(options)) => {
                let kept: Map<String, Value> = options
                    .iter()
                    .filter(|(k, v)| !LOAD_TIME_OPTIONS.contains(&k.as_str()) && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                feed(&mut h, &Value::Object(kept));
            }
            ("prompt", v) if without_last_turn.is_some() && endpoint == Endpoint::Generate => {
                feed_numbers(&mut h, v.as_str().unwrap_or_default());
            }
            ("messages", Value::Array(messages)) if last_user.is_some() => {
                h.update(b"[");
                for (i, m) in messages.iter().enumerate() {
                    match (Some(i) == last_user, m) {
                        (true, Value::Object(m)) => {
                            let mut m = m.clone();
                            let content = m.remove("content");
                            feed(&mut h, &Value::Object(m));
                            feed_numbers(&mut h, content.as_ref().and_then(Value::as_str).unwrap_or_default());
                        }
                        _ => feed(&mut h, m),
                    }
                }
                h.update(b"]");
            }
            _ => feed(&mut h, v),
        }
    }
    h.finalize().into()
}

/// The index of the last message when it is the user's and carries no images.
fn last_user_index(endpoint: Endpoint, body: &Map<String, Value>) -> Option<usize> {
    if endpoint != Endpoint::Chat {
        return None;
    }
    let messages = body.get("messages")?.as_array()?;
    let last = messages.last()?.as_object()?;
    let images = last.get("images").is_some_and(|i| i.as_array().is_some_and(|a| !a.is_empty()));
    (last.get("role").and_then(Value::as_str) == Some("user") && !images).then(|| messages.len() - 1)
}

/// The text of the last user turn (chat) or the prompt (generate) that the semantic cache embeds.
fn last_user_text(endpoint: Endpoint, body: &Map<String, Value>) -> Option<String> {
    let text = match endpoint {
        Endpoint::Generate => {
            let images = body.get("images").is_some_and(|i| i.as_array().is_some_and(|a| !a.is_empty()));
            if images {
                return None;
            }
            body.get("prompt")?.as_str()?
        }
        Endpoint::Chat => {
            let i = last_user_index(endpoint, body)?;
            body.get("messages")?.get(i)?.get("content")?.as_str()?
        }
        _ => return None,
    };
    let text = text.trim();
    // A longer turn would be embedded cut short, and two turns that differ only past the cut would look identical:
    // such requests get exact hits only.
    if text.is_empty() || text.len() > EMBED_BYTES {
        return None;
    }
    Some(text.to_string())
}

/// Hashes a JSON value canonically: object keys sorted, each value tagged by its type.
fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            // 1 and 1.0 are the same option value.
            let text = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (_, Some(u), _) => u.to_string(),
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
                (_, _, Some(f)) => format!("{f:e}"),
                _ => n.to_string(),
            };
            feed_str(h, &text);
        }
        Value::String(s) => {
            h.update(b"s");
            feed_str(h, s);
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update((a.len() as u64).to_le_bytes());
            for x in a {
                feed(h, x);
            }
        }
        Value::Object(o) => {
            h.update(b"{");
            h.update((o.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for k in keys {
                feed_str(h, k);
                if let Some(x) = o.get(k) {
                    feed(h, x);
                }
            }
        }
    }
}

/// Hashes the numbers of a question (sorted), which a paraphrase keeps: "17 times 23" and "17 times 24" are close
/// for any embedding model, but never the same question. They go into the semantic group, so that questions with
/// other numbers are never compared.
fn feed_numbers(h: &mut Sha256, text: &str) {
    let mut numbers: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .map(|n| n.trim_matches(|c| c == '.' || c == ','))
        .filter(|n| n.chars().any(|c| c.is_ascii_digit()))
        .collect();
    numbers.sort_unstable();
    h.update(b"#numbers");
    for n in numbers {
        feed_str(h, n);
    }
}

/// Hashes a string with its length, so that concatenations cannot collide.
fn feed_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

/// The dot product, in eight lanes so that it vectorises.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn to_hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Key> {
    let mut key = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, out) in key.iter_mut().enumerate() {
        *out = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

fn record_of(key: &Key, entry: &Entry) -> CacheRecord {
    let (semantic_key, embedding) = match &entry.semantic {
        Some((group, vector)) => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            (Some(to_hex(group)), Some(base64::engine::general_purpose::STANDARD.encode(bytes)))
        }
        None => (None, None),
    };
    CacheRecord {
        key: to_hex(key),
        model: entry.model.to_string(),
        endpoint: entry.endpoint.path().to_string(),
        semantic_key,
        embedding,
        answer: String::from_utf8_lossy(&entry.answer).into_owned(),
        created_at: entry.created_ms,
        digest: entry.digest.clone(),
    }
}

fn entry_from_record(record: CacheRecord) -> Option<Entry> {
    let endpoint = match record.endpoint.as_str() {
        "/api/chat" => Endpoint::Chat,
        "/api/generate" => Endpoint::Generate,
        _ => return None,
    };
    let semantic = match (record.semantic_key.as_deref().and_then(from_hex), record.embedding) {
        (Some(group), Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Some((group, Arc::from(v)))
        }
        _ => None,
    };
    let shown = cacheable_answer(record.answer.as_bytes(), true)?;
    Some(Entry {
        model: ModelName::parse(&record.model).ok()?,
        endpoint,
        answer: Bytes::from(record.answer),
        shown,
        lines: OnceLock::new(),
        created_ms: record.created_at,
        digest: record.digest,
        semantic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics() -> Metrics {
        Metrics::new().unwrap()
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn key(v: Value) -> Key {
        request_key(Endpoint::Chat, (&Target::Model(ModelName::parse("llama3.2:3b").unwrap()), None), &body(v), None)
    }

    #[test]
    fn the_key_ignores_what_does_not_decide_the_answer() {
        let a = json!({"model": "llama3.2", "stream": true, "keep_alive": "5m",
            "messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 0, "num_ctx": 8192}});
        let b =
            json!({"messages": [{"content": "hi", "role": "user"}], "options": {"temperature": 0.0}, "stream": false});
        assert_eq!(key(a.clone()), key(b));
        for changed in [
            json!({"messages": [{"role": "user", "content": "hi!"}], "options": {"temperature": 0}}),
            json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], "options": {"temperature": 0}}),
            json!({"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 0, "top_p": 0.5}}),
            json!({"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 0}, "format": "json"}),
            json!({"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 0}, "tools": []}),
        ] {
            assert_ne!(key(a.clone()), key(changed.clone()), "{changed}");
        }
        let auto = |w: f64| {
            request_key(Endpoint::Chat, (&Target::Auto { preference: w, label: "auto" }, None), &body(a.clone()), None)
        };
        assert_ne!(auto(0.7), auto(0.2), "a different preference is a different target");
        assert_ne!(auto(0.7), key(a.clone()), "auto is not the explicit model");
        // A string that looks like the concatenation of two others does not collide.
        assert_ne!(key(json!({"prompt": "ab", "system": "c"})), key(json!({"prompt": "a", "system": "bc"})));
    }

    #[test]
    fn the_group_leaves_out_only_the_last_user_turn() {
        let group = |v: Value| {
            request_key(Endpoint::Chat, (&Target::Model(ModelName::parse("m:1b").unwrap()), None), &body(v), Some(()))
        };
        let q =
            |text: &str| json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": text}]});
        assert_eq!(group(q("What is the capital of France?")), group(q("France's capital city?")));
        assert_eq!(group(q("What is 17 times 23?")), group(q("Compute 23 x 17.")), "the same numbers");
        assert_ne!(group(q("What is 17 times 23?")), group(q("What is 17 times 24?")), "other numbers");
        assert_ne!(group(q("Is 2.5 more than 2?")), group(q("Is 25 more than 2?")));
        let other_system = json!({"messages": [{"role": "system", "content": "T"}, {"role": "user", "content": "x"}]});
        assert_ne!(group(q("x")), group(other_system));
        assert_eq!(last_user_text(Endpoint::Chat, &body(q("  hello "))), Some("hello".into()));
        let tool_last = json!({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "42"}]});
        assert_eq!(last_user_text(Endpoint::Chat, &body(tool_last)), None);
    }

    #[test]
    fn only_deterministic_requests_and_complete_answers_are_kept() {
        assert!(deterministic(&body(json!({"options": {"temperature": 0}}))));
        assert!(deterministic(&body(json!({"options": {"seed": 42, "temperature": 0.8}}))));
        assert!(!deterministic(&body(json!({"options": {"temperature": 0.7}}))));
        assert!(!deterministic(&body(json!({}))));
        assert!(!deterministic(&body(json!({"options": {"seed": null}}))));
        let ok = br#"{"model": "m", "done": true, "done_reason": "stop", "message": {"content": "x"}}"#;
        assert_eq!(cacheable_answer(ok, false).as_deref(), Some("m"));
        assert!(cacheable_answer(br#"{"done": false}"#, false).is_none());
        assert!(cacheable_answer(br#"{"done": true, "done_reason": "load"}"#, false).is_none());
        let calls = br#"{"done": true, "message": {"content": "", "tool_calls": [{"function": {"name": "f"}}]}}"#;
        assert!(cacheable_answer(calls, false).is_none());
        assert!(cacheable_answer(calls, true).is_some());
    }

    #[test]
    fn directives_come_from_cache_control_and_pragma() {
        let mut h = HeaderMap::new();
        assert_eq!(Directives::from_headers(&h), Directives { read: true, write: true });
        h.insert("cache-control", "No-Cache".parse().unwrap());
        assert_eq!(Directives::from_headers(&h), Directives { read: false, write: true });
        h.insert("cache-control", "max-age=60, no-store".parse().unwrap());
        assert_eq!(Directives::from_headers(&h), Directives { read: true, write: false });
        h.remove("cache-control");
        h.insert("pragma", "no-cache".parse().unwrap());
        assert!(!Directives::from_headers(&h).read);
    }

    fn entry(model: &str, answer: &str, semantic: Option<(Key, Vec<f32>)>) -> Arc<Entry> {
        Arc::new(Entry {
            model: ModelName::parse(model).unwrap(),
            endpoint: Endpoint::Chat,
            answer: Bytes::from(answer.to_string()),
            shown: model.to_string(),
            lines: OnceLock::new(),
            created_ms: now_ms(),
            digest: String::new(),
            semantic: semantic.map(|(g, v)| (g, Arc::from(v))),
        })
    }

    #[test]
    fn memory_is_bounded_by_entries_and_bytes_least_recently_used_first() {
        let config = CacheConfig { enabled: true, max_entries: 3, ..CacheConfig::default() };
        let cache = ResponseCache::new(config, &metrics());
        for i in 0..3u8 {
            cache.memory_put([i; 32], entry("a:1b", "x", None));
        }
        assert!(cache.memory_get(&[0; 32]).is_some(), "touching 0 makes 1 the least recently used");
        cache.memory_put([3; 32], entry("a:1b", "x", None));
        assert!(cache.memory_get(&[1; 32]).is_none());
        assert!(cache.memory_get(&[0; 32]).is_some());
        assert_eq!(cache.stats().evictions, 1);

        let config =
            CacheConfig { enabled: true, max_bytes: switchyard_core::config::ByteSize(2048), ..CacheConfig::default() };
        let cache = ResponseCache::new(config, &metrics());
        let big = "y".repeat(300); // 2 x 300 + 160 bytes each: two fit in 2 KiB, three do not
        for i in 0..4u8 {
            cache.memory_put([i; 32], entry("a:1b", &big, None));
        }
        let stats = cache.stats();
        assert!(stats.bytes <= 2048 && stats.entries == 2, "{stats:?}");
    }

    #[test]
    fn expired_entries_are_dropped_and_invalidation_picks_by_model() {
        let cache =
            ResponseCache::new(CacheConfig { enabled: true, ttl_secs: 60, ..CacheConfig::default() }, &metrics());
        let old = Arc::new(Entry {
            model: ModelName::parse("a:1b").unwrap(),
            endpoint: Endpoint::Chat,
            answer: Bytes::from_static(b"{}"),
            shown: String::new(),
            lines: OnceLock::new(),
            created_ms: now_ms() - 61_000,
            digest: String::new(),
            semantic: None,
        });
        cache.memory_put([9; 32], old);
        assert!(cache.memory_get(&[9; 32]).is_none());
        assert_eq!(cache.stats().expired, 1);
        cache.memory_put([1; 32], entry("a:1b", "x", Some(([7; 32], vec![1.0, 0.0]))));
        cache.memory_put([2; 32], entry("b:1b", "x", None));
        assert_eq!(cache.invalidate_memory(Some("a:1b"), None), 1);
        assert!(cache.memory().groups.is_empty(), "the semantic group went with its entry");
        assert_eq!(cache.invalidate_memory(None, Some(Duration::from_secs(3600))), 0, "nothing is that old");
        assert_eq!(cache.invalidate_memory(None, None), 1);
    }

    #[test]
    fn the_nearest_paraphrase_answers_at_or_above_the_threshold() {
        let config = CacheConfig { enabled: true, semantic: true, similarity_threshold: 0.9, ..CacheConfig::default() };
        let cache = ResponseCache::new(config, &metrics());
        let unit = |a: f32| vec![a.cos(), a.sin()];
        cache.memory_put([1; 32], entry("a:1b", "near", Some(([7; 32], unit(0.1)))));
        cache.memory_put([2; 32], entry("a:1b", "far", Some(([7; 32], unit(1.2)))));
        let (hit, s) = cache.nearest(&[7; 32], &unit(0.0)).unwrap();
        assert_eq!(hit.answer, Bytes::from_static(b"near"));
        assert!((s - 0.1f32.cos()).abs() < 1e-6);
        assert!(cache.nearest(&[7; 32], &unit(0.6)).is_none(), "cos 0.5 = 0.88 is below 0.9");
        assert!(cache.nearest(&[8; 32], &unit(0.1)).is_none(), "another group never answers");
    }

    #[test]
    fn records_round_trip() {
        let e = entry("a:1b", r#"{"model":"a:1b","done":true}"#, Some(([7; 32], vec![0.6, 0.8])));
        let r = record_of(&[5; 32], &e);
        assert_eq!(from_hex(&r.key), Some([5; 32]));
        let back = entry_from_record(r).unwrap();
        assert_eq!(back.answer, e.answer);
        assert_eq!(back.semantic.as_ref().map(|(g, v)| (*g, v.to_vec())), Some(([7; 32], vec![0.6, 0.8])));
        assert!((dot(&[1.0; 19], &[2.0; 19]) - 38.0).abs() < 1e-5);
    }
}
