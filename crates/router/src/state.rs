//! The server's shared state: a cheap-to-clone handle on everything a handler needs.
//!
//! Values read on every request (catalog, profiles, the VRAM ledger) are behind `ArcSwap`s or atomics, so the
//! request path takes no lock that a slow task could hold.

use crate::backends::{Backends, OllamaBackend};
use crate::breaker::Breaker;
use crate::cache::ResponseCache;
use crate::classify::{Classifier, EmbeddingClassifier};
use crate::decisions::Decisions;
use crate::forward::Forwarder;
use crate::jobs::ProfileJobs;
use crate::limit::RateLimiter;
use crate::metrics::Metrics;
use crate::profiles::{LiveStats, ProfileTable};
use crate::writer::StoreWriter;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard_core::catalog::{Catalog, ModelSpec};
use switchyard_core::config::Config;
use switchyard_core::ollama::OllamaClient;
use switchyard_core::store::Store;
use switchyard_vram::VramManager;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything shared by handlers and background tasks.
#[derive(Debug)]
pub struct Inner {
    pub config: Arc<Config>,
    /// Pulled models, refreshed from `/api/tags` and `/api/show`.
    pub catalog: ArcSwap<Catalog>,
    /// Profiled quality and speed per model.
    pub profiles: ArcSwap<ProfileTable>,
    /// Live speed averages from responses.
    pub live: LiveStats,
    pub vram: VramManager,
    /// The local Ollama as a backend (the VRAM manager and the forwarder).
    pub local: OllamaBackend,
    /// The local Ollama's cloud models, forwarded without a VRAM lease.
    pub(crate) cloud: crate::backends::OllamaCloud,
    /// The `[[backends]]` beside the local Ollama.
    pub backends: Backends,
    /// The fleet nodes (`[[backends]] kind = "switchyard"`) of a front.
    pub(crate) fleet: crate::backends::fleet::Fleet,
    /// Control calls to Ollama (tags, ps, show, version).
    pub ollama: OllamaClient,
    pub breaker: Breaker,
    /// The response cache.
    pub cache: ResponseCache,
    /// Task rules by name.
    pub(crate) tasks: crate::tasks::Tasks,
    /// The models that wrote the generate contexts `auto` answered with.
    pub(crate) contexts: crate::affinity::Contexts,
    /// The models that refuse thinking levels (`think: "high"`).
    pub(crate) think_levels: crate::engine::think::ThinkLevels,
    /// The model that answered each recent conversation's last turn.
    pub(crate) conversations: crate::affinity::Conversations,
    pub classifier: Classifier,
    /// The optional embedding classifier, once built.
    pub embedding_classifier: ArcSwap<Option<EmbeddingClassifier>>,
    pub metrics: Metrics,
    pub decisions: Decisions,
    pub writer: StoreWriter,
    pub store: Arc<dyn Store>,
    /// The profiling job registry.
    pub jobs: ProfileJobs,
    pub limiter: RateLimiter,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub started: Instant,
    /// Counter for request ids.
    next_request: AtomicU64,
    /// Unix time of the last catalog refresh forced by an unknown model name (rate-limits such refreshes).
    last_forced_refresh: AtomicU64,
    /// The last forced refresh could not reach Ollama (answered again while refreshes are rate-limited).
    last_refresh_unreachable: AtomicBool,
    /// Process-unique prefix of request ids.
    request_prefix: String,
}

/// The local Ollama's models of `catalog`.
fn local_part(catalog: &Catalog) -> Catalog {
    Catalog {
        models: catalog
            .models
            .iter()
            .filter(|(_, s)| s.backend.is_none())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Adds backends' models to `catalog`; on a name clash the local Ollama's model (or the earlier backend's) wins.
fn merge_remote(catalog: &mut Catalog, remote: Vec<ModelSpec>) {
    for spec in remote {
        match catalog.models.entry(spec.name.clone()) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(spec);
            }
            std::collections::btree_map::Entry::Occupied(taken) => tracing::debug!(
                model = %spec.name,
                backend = spec.backend_name(),
                served_by = taken.get().backend_name(),
                "a backend's model has the name of another; the first one keeps it"
            ),
        }
    }
}

/// The handle handlers receive.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The parts `AppState::new` assembles.
#[derive(Debug)]
pub struct Parts {
    pub config: Arc<Config>,
    pub catalog: Catalog,
    pub profiles: ProfileTable,
    pub vram: VramManager,
    pub ollama: OllamaClient,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
    pub writer: StoreWriter,
    pub store: Arc<dyn Store>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

impl AppState {
    pub fn new(p: Parts) -> Self {
        let config = p.config;
        let limiter = RateLimiter::new(config.limits.per_ip_rps, config.limits.per_key_rps, config.limits.burst);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let backends = Backends::new(&config.backends, config.limits.queue_per_model, &p.metrics);
        let fleet = crate::backends::fleet::Fleet::new(&config.backends, &p.metrics);
        let local = OllamaBackend { vram: p.vram.clone(), forwarder: p.forwarder.clone() };
        let cloud = crate::backends::OllamaCloud { forwarder: p.forwarder.clone() };
        Self(Arc::new(Inner {
            local,
            cloud,
            backends,
            fleet,
            breaker: Breaker::new(config.breaker.failure_threshold, Duration::from_secs(config.breaker.cooldown_secs)),
            decisions: Decisions::new(config.routing.decisions_kept),
            catalog: ArcSwap::from_pointee(p.catalog),
            profiles: ArcSwap::from_pointee(p.profiles),
            live: LiveStats::default(),
            vram: p.vram,
            ollama: p.ollama,
            classifier: if config.routing.classifier == switchyard_core::config::ClassifierKind::Rules {
                Classifier::rules()
            } else {
                Classifier::new()
            },
            embedding_classifier: ArcSwap::from_pointee(None),
            cache: ResponseCache::new(config.cache.clone(), &p.metrics),
            tasks: crate::tasks::Tasks::from_config(&config),
            contexts: crate::affinity::Contexts::new(),
            think_levels: Default::default(),
            conversations: crate::affinity::Conversations::new(
                config.routing.affinity,
                config.routing.affinity_conversations,
            ),
            metrics: p.metrics,
            writer: p.writer,
            store: p.store,
            jobs: ProfileJobs::default(),
            limiter,
            shutdown: p.shutdown,
            tracker: p.tracker,
            started: Instant::now(),
            next_request: AtomicU64::new(1),
            last_forced_refresh: AtomicU64::new(0),
            last_refresh_unreachable: AtomicBool::new(false),
            request_prefix: format!("{:08x}", (nanos as u64) & 0xffff_ffff),
            config,
        }))
    }

    /// A new request id, unique within this process and unlikely to repeat across restarts.
    pub fn request_id(&self) -> String {
        format!("sy-{}-{}", self.request_prefix, self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// Re-reads the catalog from Ollama (handing its models to the VRAM manager) and from every `[[backends]]`
    /// entry at once. When Ollama cannot be read its previous models stay, the backends' lists are still updated,
    /// and the error is returned.
    pub async fn refresh_catalog(&self) -> Result<(), switchyard_core::CoreError> {
        let previous = self.catalog.load_full();
        if !self.config.ollama.enabled {
            // No Ollama of its own: the backends' and the fleet's models are the catalog.
            self.refresh_backends().await;
            return Ok(());
        }
        let (local, remote) = tokio::join!(Catalog::fetch(&self.ollama, &previous), self.backends.discover(&previous));
        let (mut catalog, result) = match local {
            Ok(local) => {
                // Cloud models take no local memory: the VRAM manager never loads, counts or unloads them.
                self.vram.set_catalog(Arc::new(local.resident()));
                (local, Ok(()))
            }
            Err(e) => (local_part(&previous), Err(e)),
        };
        merge_remote(&mut catalog, remote);
        merge_remote(&mut catalog, self.fleet.specs());
        if result.is_ok() {
            self.invalidate_changed(&previous, &catalog);
        }
        self.catalog.store(Arc::new(catalog));
        result
    }

    /// Drops the cached answers of every local model that was re-pulled (its digest changed) or deleted since
    /// `previous`.
    fn invalidate_changed(&self, previous: &Catalog, now: &Catalog) {
        if !self.cache.enabled() {
            return;
        }
        for (name, old) in previous.models.iter().filter(|(_, s)| s.backend.is_none()) {
            let changed = now.models.get(name).is_none_or(|new| new.digest != old.digest);
            if changed {
                let dropped = self.cache.invalidate_memory(Some(name.as_str()), None);
                if self.cache.persist() {
                    self.writer.write(crate::writer::Write::CacheDelete { model: name.to_string() });
                }
                tracing::info!(model = %name, dropped, "model changed or went away: its cached answers are dropped");
            }
        }
    }

    /// Reads the `[[backends]]` models into the catalog, leaving Ollama's as they are.
    pub async fn refresh_backends(&self) {
        if self.backends.is_empty() && self.fleet.is_empty() {
            return;
        }
        let previous = self.catalog.load_full();
        let (remote, _) = tokio::join!(self.backends.discover(&previous), self.fleet.poll_all());
        self.set_remote(remote);
    }

    /// Rebuilds the catalog from Ollama's part as it is now (it may have been refreshed meanwhile), the backends'
    /// `remote` models and the fleet's.
    fn set_remote(&self, remote: Vec<ModelSpec>) {
        let mut catalog = local_part(&self.catalog.load_full());
        merge_remote(&mut catalog, remote);
        merge_remote(&mut catalog, self.fleet.specs());
        self.catalog.store(Arc::new(catalog));
    }

    /// The fleet's models changed (a node's reading): the catalog follows, keeping the backends' models.
    pub(crate) fn fleet_changed(&self) {
        let remote = self
            .catalog
            .load()
            .models
            .values()
            .filter(|s| s.backend.as_ref().is_some_and(|b| !b.fleet))
            .cloned()
            .collect();
        self.set_remote(remote);
    }

    /// Refreshes the catalog because a client named a model we do not know (it may have just been pulled), at most
    /// once every two seconds while Ollama answers, on every call while it does not (a refused connection costs
    /// little, and the first request after Ollama comes back should find its models). Fails when Ollama cannot be
    /// reached (then "not found" would be the wrong answer).
    pub async fn refresh_catalog_for_unknown(&self) -> Result<(), switchyard_core::CoreError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let last = self.last_forced_refresh.load(Ordering::Relaxed);
        let down = self.last_refresh_unreachable.load(Ordering::Relaxed);
        if !down
            && (now.saturating_sub(last) < 2
                || self.last_forced_refresh.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err())
        {
            return Ok(());
        }
        let result = self.refresh_catalog().await;
        self.last_refresh_unreachable.store(result.as_ref().is_err_and(|e| e.is_connectivity()), Ordering::Relaxed);
        match result {
            Err(e) if e.is_connectivity() => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "catalog refresh failed");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Reloads the profile table from the store (after profiling, or when the catalog changed).
    pub async fn reload_profiles(&self) -> Result<(), switchyard_core::CoreError> {
        let scores = self.store.scores().await?;
        let models = self.store.models().await?;
        let table = ProfileTable::build(&scores, &models, &self.catalog.load());
        self.profiles.store(Arc::new(table));
        Ok(())
    }
}
