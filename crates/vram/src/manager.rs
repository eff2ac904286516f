//! The manager: one task owns the [`Ledger`]; everyone else holds a cheap [`VramManager`] handle.
//!
//! Requests ask for a [`Lease`] on a model (`acquire`). A loaded model is leased at once. A cold one is loaded,
//! after unloading idle unpinned models by strategy when room is needed; concurrent requests for the same cold
//! model share that one load (single flight). Loads and unloads run in their own tasks, outside the actor's loop, so
//! a slow load never delays requests for loaded models. A request that cannot be admitted within the wait limit gets
//! [`VramError::Busy`] (the router answers 503 with `Retry-After`), never an out-of-memory load.
//!
//! A poll task reads `/api/ps` and the GPU probe every `vram.poll_interval_ms` and the ledger reconciles: models
//! Ollama dropped or loaded behind Switchyard's back are noticed, pinned models it dropped are loaded again, the
//! unload threshold and idle TTLs are enforced. The ledger is published after every batch of commands through an
//! `ArcSwap`, so readers (the scorer, `/admin/vram`) never wait on the actor; a batch of releases alone that leaves
//! every model it touched busy (nobody waiting, nothing loading) is published with the next batch or 2 ms later.

use crate::error::VramError;
use crate::events::VramEventSink;
use crate::ledger::{Ledger, LedgerConfig, Observed, Plan};
use crate::metrics::VramMetrics;
use crate::probe::GpuProbe;
use crate::shares::Shares;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::catalog::Catalog;
use switchyard_core::config::Config;
use switchyard_core::error::CoreError;
use switchyard_core::gpu::GpuSnapshot;
use switchyard_core::ollama::types::PsModel;
use switchyard_core::ollama::{KeepAlive, LoadOptions, OllamaClient};
use switchyard_core::size::Bytes;
use switchyard_core::store::{LoadEvent, now_ms};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A model not asked for in this many of its average gaps between requests is taken as no longer being asked for:
/// no request waits for it to be asked again (`vram.max_bypass_ms`).
const QUIET_GAPS: f64 = 3.0;

/// How long the reading just before a load may take; past it the load goes ahead on the last poll's reading.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a ledger changed only by releases that leave their models busy waits to be published (it goes out
/// with the next batch of commands when one comes sooner): under load this saves a ledger copy per request without
/// letting `/admin/vram` or the scorer count a finished request for more than a moment.
const RELEASE_PUBLISH_DELAY: Duration = Duration::from_millis(2);

/// How long an unload may take to show in `/api/ps` before the manager reads the truth from the next poll.
const UNLOAD_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// A model's admission for the duration of one request. Dropping it releases the model (it may then be evicted).
#[derive(Debug)]
pub struct Lease {
    model: ModelName,
    tx: mpsc::UnboundedSender<Command>,
    /// The model was not loaded when the request asked (a cold start, or joined someone else's load).
    pub cold: bool,
    /// How long admission took.
    pub waited: Duration,
    /// The load-time options the model's instance was loaded with: every request on this lease sends them, or
    /// Ollama would reload the model.
    pub options: LoadOptions,
}

impl Lease {
    pub fn model(&self) -> &ModelName {
        &self.model
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The actor may already be gone at shutdown; nothing is left to release then.
        let _ = self.tx.send(Command::Release(self.model.clone()));
    }
}

/// Operations of `/admin/vram/*` and `switchyard vram`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    Load,
    Unload,
    Pin,
    Unpin,
}

/// Why a load failed: the message, whether Ollama could not be reached at all, and whether it was not even tried
/// because a reading just before it showed too little free memory.
#[derive(Debug, Clone)]
struct LoadFailure {
    message: String,
    unreachable: bool,
    preflight: bool,
}

/// What the manager reports about a finished load.
#[derive(Debug)]
struct LoadReport {
    seconds: f64,
    ps: Vec<PsModel>,
}

#[derive(Debug)]
enum Command {
    Acquire { model: ModelName, wait: Duration, reply: oneshot::Sender<Result<Lease, VramError>> },
    Release(ModelName),
    Admin { op: AdminOp, model: ModelName, reply: oneshot::Sender<Result<String, VramError>> },
    LoadDone { model: ModelName, reason: &'static str, result: Result<LoadReport, LoadFailure> },
    UnloadDone { model: ModelName, ok: bool },
    Observed { ps: Result<Vec<PsModel>, String>, gpus: Option<GpuSnapshot>, epoch: u64 },
    Catalog(Arc<Catalog>),
    KeepAlive { model: ModelName, ttl: Option<Duration> },
    Poll { notify: Option<oneshot::Sender<()>> },
}

/// Who is waiting for a model.
#[derive(Debug)]
enum WaiterKind {
    /// A request: gets a lease.
    Request(oneshot::Sender<Result<Lease, VramError>>),
    /// Switchyard itself (pin, preload, admin load): gets a message when loaded, or nothing.
    Internal { reason: &'static str, reply: Option<oneshot::Sender<Result<String, VramError>>> },
}

#[derive(Debug)]
struct Waiter {
    model: ModelName,
    kind: WaiterKind,
    enqueued: Instant,
    deadline: Instant,
    /// Set once this waiter had to wait for a load.
    cold: bool,
    /// Why it is still waiting, for the error when the deadline passes.
    reason: String,
    /// A load for it failed out of memory once: it is planned again after the next poll (which sees the memory
    /// that caused it), and fails if that load fails too.
    oom_retry: OomRetry,
    /// Busy models this waiter needs to go idle; newer requests for them queue behind it.
    blockers: Vec<ModelName>,
    /// Plan again by then even if nothing changes (it waits by choice for a busy model, within a patience).
    recheck_at: Option<Instant>,
    /// Until then it may be passed over: requests for loaded models it would evict go ahead of it
    /// (`vram.max_bypass_ms`). `None` for Switchyard's own loads and when the bound is 0.
    defer_until: Option<Instant>,
    /// The loaded models it would evict (or wait for) while it lets their requests go ahead; empty when it is not
    /// deferring.
    deferring: Vec<ModelName>,
    /// It has deferred at least once (counted once).
    deferred: bool,
    /// Deferring since then: its deadline is extended to the end of its bound meanwhile, and back by what is left of
    /// it when it stops, so the time it was passed over is added to its wait for room rather than taken from it.
    deferring_since: Option<Instant>,
}

/// Where a waiter stands after an out-of-memory load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OomRetry {
    /// No failed load yet.
    None,
    /// Waiting for the next poll before planning again.
    AwaitingPoll,
    /// Already retried once.
    Retried,
}

/// Settings the manager runs with, derived from the configuration.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub config: Arc<Config>,
    pub ledger: LedgerConfig,
    /// Measurements known from earlier runs (the store): model, load seconds, VRAM bytes.
    pub known: Vec<(ModelName, Option<f64>, Option<u64>)>,
    /// Warnings from probe selection, shown in `/admin/vram`.
    pub warnings: Vec<String>,
    /// Models pinned at start: `vram.pins` and the pins kept from earlier runs.
    pub pins: Vec<ModelName>,
}

impl ManagerOptions {
    /// Options from the configuration, for `gpu_count` GPUs.
    pub fn from_config(config: Arc<Config>, gpu_count: usize) -> Self {
        let v = &config.vram;
        let ledger = LedgerConfig {
            limit: v.limit,
            headroom: v.headroom.0,
            unload_threshold_pct: v.unload_threshold_pct,
            threshold_min_idle: Duration::from_secs(v.threshold_min_idle_secs),
            strategy: v.strategy,
            max_loaded: if v.max_loaded_models == 0 { 3 * gpu_count.max(1) } else { v.max_loaded_models as usize },
            idle_ttl: (v.idle_ttl_secs > 0).then(|| Duration::from_secs(v.idle_ttl_secs)),
            cost_half_life: Duration::from_secs(v.cost_half_life_secs),
        };
        let pins = config.vram.pins.iter().filter_map(|p| ModelName::parse(p).ok()).collect();
        Self { config, ledger, known: Vec::new(), warnings: Vec::new(), pins }
    }
}

/// What the manager talks to: Ollama, a GPU probe, the model catalog, and where it reports.
pub struct ManagerIo {
    pub client: OllamaClient,
    pub probe: Arc<dyn GpuProbe>,
    /// The models it may load, with their sizes (updated later with `set_catalog`).
    pub catalog: Arc<Catalog>,
    pub sink: Arc<dyn VramEventSink>,
    pub metrics: Option<VramMetrics>,
}

/// A handle on the manager. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VramManager {
    tx: mpsc::UnboundedSender<Command>,
    ledger: Arc<ArcSwap<Ledger>>,
    source: &'static str,
    config: Arc<Config>,
}

impl VramManager {
    /// Reads the probes once, builds the ledger, and starts the actor and its poll task (both owned by `tracker`
    /// and stopped by `shutdown`). Pins and the preload list are loaded right away.
    pub async fn start(
        options: ManagerOptions,
        io: ManagerIo,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, VramError> {
        let ManagerIo { client, probe, catalog, sink, metrics } = io;
        // Ollama may be down at start: begin with what can be read and let the polls fill in the rest.
        let mut warnings = options.warnings.clone();
        // A router with no Ollama of its own (a fleet front) has nothing to read or manage.
        let local = options.config.ollama.enabled;
        let ps = if !local { Ok(Default::default()) } else { client.ps().await };
        let ps = match ps {
            Ok(ps) => ps.models,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read Ollama's /api/ps at start; will keep polling");
                warnings.push(format!("cannot read Ollama's /api/ps: {e}"));
                Vec::new()
            }
        };
        let gpus = match if local { probe.read(&ps).await } else { Ok(GpuSnapshot::default()) } {
            Ok(gpus) => Some(gpus),
            Err(e) => {
                tracing::warn!(error = %e, probe = probe.name(), "cannot read the GPU probe at start; will keep polling");
                warnings.push(format!("cannot read the {} probe: {e}", probe.name()));
                None
            }
        };
        let mut ledger = Ledger::new(options.ledger.clone(), Vec::new());
        if let Some(gpus) = &gpus {
            ledger.apply_gpus(gpus);
        }
        let now = Instant::now();
        for (model, seconds, bytes) in &options.known {
            ledger.note_measurement(model, *seconds, *bytes);
        }
        ledger.reconcile(&ps, gpus.as_ref(), now);
        ledger.set_warnings(warnings);
        note_layers(&mut ledger, &catalog);
        for (name, settings) in &options.config.models {
            if let (Ok(model), true) = (ModelName::parse(name), settings.idle_ttl_secs > 0) {
                ledger.set_idle_ttl(&model, Some(Duration::from_secs(settings.idle_ttl_secs)));
            }
        }
        let published = Arc::new(ArcSwap::from_pointee(ledger.clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = Self {
            tx: tx.clone(),
            ledger: Arc::clone(&published),
            source: probe.name(),
            config: Arc::clone(&options.config),
        };

        let mut actor = Actor {
            ledger,
            published,
            catalog,
            pending: VecDeque::new(),
            client: client.clone(),
            probe: Arc::clone(&probe),
            tx: tx.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            sink,
            metrics,
            config: Arc::clone(&options.config),
            base_warnings: options.warnings,
            polling: false,
            poll_waiters: Vec::new(),
            epoch: 0,
        };
        for model in &options.pins {
            actor.admin(AdminOp::Pin, model.clone(), None);
        }
        for name in &options.config.vram.preload {
            if let Ok(model) = ModelName::parse(name) {
                actor.enqueue_internal(model, "preload", None);
            }
        }
        actor.pass();
        actor.publish();
        tracker.spawn(actor.run(rx));

        if !local {
            return Ok(handle);
        }
        let interval = Duration::from_millis(options.config.vram.poll_interval_ms.max(10));
        let poll_tx = tx;
        let poll_shutdown = shutdown;
        tracker.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = poll_shutdown.cancelled() => break,
                    _ = ticker.tick() => {
                        if poll_tx.send(Command::Poll { notify: None }).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(handle)
    }

    /// Waits for a lease on `model`, for at most `vram.admission_wait_ms`.
    pub async fn acquire(&self, model: &ModelName) -> Result<Lease, VramError> {
        self.acquire_within(model, Duration::from_millis(self.config.vram.admission_wait_ms)).await
    }

    /// Waits for a lease on `model` for at most `wait`.
    pub async fn acquire_within(&self, model: &ModelName, wait: Duration) -> Result<Lease, VramError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Acquire { model: model.clone(), wait, reply }).map_err(|_| VramError::ShuttingDown)?;
        rx.await.map_err(|_| VramError::ShuttingDown)?
    }

    /// Load, unload, pin or unpin a model (admin routes). Returns a sentence saying what happened.
    pub async fn admin(&self, op: AdminOp, model: &ModelName) -> Result<String, VramError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Admin { op, model: model.clone(), reply }).map_err(|_| VramError::ShuttingDown)?;
        rx.await.map_err(|_| VramError::ShuttingDown)?
    }

    /// The latest published ledger. Lock-free; never waits on the actor.
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.load_full()
    }

    /// The probe in use (`nvml`, `ollama`, `sim`).
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Gives the manager a new catalog (sizes of models it may load).
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        let _ = self.tx.send(Command::Catalog(catalog));
    }

    /// A client's `keep_alive` for `model`: how long it should stay loaded when idle.
    pub fn note_keep_alive(&self, model: &ModelName, keep_alive: KeepAlive) {
        let ttl = match keep_alive {
            KeepAlive::Forever => Duration::MAX,
            KeepAlive::For(d) => d,
        };
        let _ = self.tx.send(Command::KeepAlive { model: model.clone(), ttl: Some(ttl) });
    }

    /// Reconciles with Ollama and the probe now, and returns when that is done.
    pub async fn refresh(&self) -> Result<(), VramError> {
        let (notify, rx) = oneshot::channel();
        self.tx.send(Command::Poll { notify: Some(notify) }).map_err(|_| VramError::ShuttingDown)?;
        rx.await.map_err(|_| VramError::ShuttingDown)
    }
}

struct Actor {
    ledger: Ledger,
    published: Arc<ArcSwap<Ledger>>,
    catalog: Arc<Catalog>,
    pending: VecDeque<Waiter>,
    client: OllamaClient,
    probe: Arc<dyn GpuProbe>,
    tx: mpsc::UnboundedSender<Command>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    sink: Arc<dyn VramEventSink>,
    metrics: Option<VramMetrics>,
    config: Arc<Config>,
    /// Warnings from start-up that stay; poll problems are added to them.
    base_warnings: Vec<String>,
    /// A poll is in flight (polls never overlap).
    polling: bool,
    /// Callers of `refresh` waiting for the poll in flight.
    poll_waiters: Vec<oneshot::Sender<()>>,
    /// Counts the loads and unloads begun or finished; a poll's reading is applied only when none happened while
    /// it was taken.
    epoch: u64,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut publish_at: Option<Instant> = None;
        loop {
            let next_deadline = self
                .pending
                .iter()
                .map(|w| w.recheck_at.map_or(w.deadline, |r| r.min(w.deadline)))
                .chain(publish_at)
                .min();
            let command = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                command = rx.recv() => match command {
                    Some(c) => Some(c),
                    None => break,
                },
                _ = sleep_until_opt(next_deadline) => None,
            };
            let epoch = self.epoch;
            let mut only_releases = command.is_some();
            if let Some(command) = command {
                only_releases &= self.leaves_model_busy(&command);
                self.handle(command);
                // Take whatever else is queued before publishing once.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(c) => {
                            only_releases &= self.leaves_model_busy(&c);
                            self.handle(c);
                        }
                        Err(_) => break,
                    }
                }
            }
            self.pass();
            if only_releases && self.pending.is_empty() && self.epoch == epoch {
                // Releases that leave their models busy, with nobody waiting, change only a lease count: they are
                // published with the next batch, or after RELEASE_PUBLISH_DELAY at the latest. A model going idle
                // is published at once (plans treat busy and idle models differently).
                publish_at.get_or_insert_with(|| Instant::now() + RELEASE_PUBLISH_DELAY);
            } else {
                self.publish();
                publish_at = None;
            }
        }
        for waiter in self.pending.drain(..) {
            reply_error(waiter.kind, VramError::ShuttingDown);
        }
    }

    /// A release after which its model still has leases: its publication may wait (see `run`).
    fn leaves_model_busy(&self, command: &Command) -> bool {
        matches!(command, Command::Release(model) if self.ledger.entry(model).is_some_and(|e| e.in_flight > 1))
    }

    fn publish(&mut self) {
        // Requests only: Switchyard's own loads (pins, preloads) are not a queue anyone waits in.
        let requests = self.pending.iter().filter(|w| matches!(w.kind, WaiterKind::Request(_)));
        self.ledger.set_queue(requests.map(|w| (&w.model, w.enqueued)));
        self.published.store(Arc::new(self.ledger.clone()));
    }

    fn handle(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Acquire { model, wait, reply } => self.acquire(model, wait, reply, now),
            Command::Release(model) => self.ledger.release(&model, now),
            Command::Admin { op, model, reply } => self.admin(op, model, Some(reply)),
            Command::LoadDone { model, reason, result } => {
                self.epoch += 1;
                self.load_done(model, reason, result, now);
            }
            Command::UnloadDone { model, ok } => {
                self.epoch += 1;
                if ok {
                    self.ledger.finish_unload(&model);
                }
            }
            Command::Observed { ps, gpus, epoch } => {
                self.polling = false;
                if epoch != self.epoch {
                    // A load or unload finished or began while the reading was taken: it may show a model we just
                    // loaded as gone, or memory we just took as free. Read again rather than trust it.
                    self.poll(None);
                    return;
                }
                self.observed(ps, gpus, now);
                for n in self.poll_waiters.drain(..) {
                    let _ = n.send(());
                }
            }
            Command::Catalog(catalog) => {
                note_layers(&mut self.ledger, &catalog);
                self.catalog = catalog;
            }
            Command::KeepAlive { model, ttl } => self.ledger.set_idle_ttl(&model, ttl),
            Command::Poll { notify } => self.poll(notify),
        }
    }

    fn need(&self, model: &ModelName) -> u64 {
        let num_ctx = self.config.num_ctx_for(model);
        let estimate = self.catalog.get(model).map_or(0, |spec| spec.estimate_vram(num_ctx));
        self.ledger.expected_bytes(model, estimate)
    }

    /// The context `model` is loaded with: Switchyard's, capped at the trained one; none for embedding-only models.
    fn num_ctx(&self, model: &ModelName) -> Option<u64> {
        let ctx = self.config.num_ctx_for(model);
        match self.catalog.get(model) {
            Some(spec) if spec.embedding_only() => None,
            Some(spec) => Some(spec.effective_ctx(ctx)),
            None => Some(ctx),
        }
    }

    /// The load-time options of `model`'s instance as Switchyard loaded it.
    fn load_options(&self, model: &ModelName) -> LoadOptions {
        LoadOptions { num_ctx: self.num_ctx(model), num_gpu: self.ledger.entry(model).and_then(|e| e.gpu_layers) }
    }

    fn acquire(
        &mut self,
        model: ModelName,
        wait: Duration,
        reply: oneshot::Sender<Result<Lease, VramError>>,
        now: Instant,
    ) {
        if self.catalog.get(&model).is_none() && self.ledger.entry(&model).is_none_or(|e| e.residency.held().is_none())
        {
            self.reject("unknown");
            let _ = reply.send(Err(VramError::UnknownModel(model.to_string())));
            return;
        }
        self.ledger.note_arrival(&model, now);
        let limit = self.config.limits.queue_per_model;
        let queued = self.pending.iter().filter(|w| w.model == model).count() as u32;
        let in_flight = self.ledger.entry(&model).map_or(0, |e| e.in_flight);
        if queued + in_flight >= limit {
            self.reject("queue_full");
            let _ = reply.send(Err(VramError::QueueFull { model: model.to_string(), limit, retry_after_secs: 1 }));
            return;
        }
        // A request may be passed over for at most the bound; that time is added to its wait for room.
        let bound = Duration::from_millis(self.config.vram.max_bypass_ms);
        let waiter = Waiter {
            model,
            kind: WaiterKind::Request(reply),
            enqueued: now,
            deadline: now + wait,
            cold: false,
            reason: String::new(),
            oom_retry: OomRetry::None,
            blockers: Vec::new(),
            recheck_at: None,
            defer_until: (!bound.is_zero()).then(|| now + bound),
            deferring: Vec::new(),
            deferred: false,
            deferring_since: None,
        };
        // Behind an earlier waiter for the same model: keep the order (and its single load).
        if queued > 0 {
            let mut waiter = waiter;
            waiter.cold = true;
            self.pending.push_back(waiter);
            return;
        }
        // An earlier request waits for this (busy) model to go idle, or has been passed over for as long as it may
        // be (and the next pass will evict this model for it): queue behind it, or it would never drain.
        if self.pending.iter().any(|w| {
            w.blockers.contains(&waiter.model)
                || (w.defer_until.is_some_and(|until| now >= until) && w.deferring.contains(&waiter.model))
        }) {
            let mut waiter = waiter;
            waiter.reason = format!("queued behind an earlier request that needs {} to finish", waiter.model);
            self.pending.push_back(waiter);
            return;
        }
        if let Some(waiter) = self.admit(waiter, now) {
            self.pending.push_back(waiter);
        }
    }

    fn enqueue_internal(
        &mut self,
        model: ModelName,
        reason: &'static str,
        reply: Option<oneshot::Sender<Result<String, VramError>>>,
    ) {
        let now = Instant::now();
        let wait = Duration::from_millis(self.config.ollama.load_timeout_secs.saturating_mul(1000));
        self.pending.push_back(Waiter {
            model,
            kind: WaiterKind::Internal { reason, reply },
            enqueued: now,
            deadline: now + wait,
            cold: false,
            reason: String::new(),
            oom_retry: OomRetry::None,
            blockers: Vec::new(),
            recheck_at: None,
            defer_until: None,
            deferring: Vec::new(),
            deferred: false,
            deferring_since: None,
        });
    }

    /// Lets requests for loaded models go ahead of `waiter` when its `plan` needs an eviction (`vram.max_bypass_ms`):
    /// true when it deferred `waiter`, false when the waiter should be planned as usual (it is then unchanged).
    ///
    /// It defers only while that could save a load: within its bound, and while a model it would evict is serving,
    /// or the GPU is shared (a request is being served or another waits, or it already deferred) and a model it
    /// would evict is still being asked for (its latest request less than `QUIET_GAPS` of its average gaps ago) and
    /// its next request is due before the bound. A client that sends one
    /// request at a time never waits for this. Nothing is evicted for it meanwhile, so the models keep serving, and
    /// requests for its own model that arrive meanwhile join its one load.
    fn defer(&mut self, waiter: &mut Waiter, plan: &Plan, now: Instant) -> bool {
        let Some(until) = waiter.defer_until.filter(|until| now < *until) else { return false };
        let wanted = match plan {
            Plan::Evict { victims, .. } => victims,
            Plan::Wait { blockers, .. } if !blockers.is_empty() => blockers,
            _ => return false,
        };
        let shared = waiter.deferred || !self.pending.is_empty() || self.ledger.entries().any(|e| e.in_flight > 0);
        // Worth it while a victim is serving (its release plans again), or while one is still being asked for (its
        // latest request less than a few average gaps ago) and its next request is due before the bound.
        let mut worth_until: Option<Instant> = None;
        for victim in wanted {
            let Some(entry) = self.ledger.entry(victim) else { continue };
            let until_victim = if entry.in_flight > 0 {
                Some(until)
            } else if let (true, Some(last), Some(gap)) = (shared, entry.last_arrival, entry.mean_gap) {
                let active_until = last + gap.mul_f64(QUIET_GAPS);
                (active_until > now && last + gap <= until).then(|| active_until.min(until))
            } else {
                None
            };
            worth_until = worth_until.max(until_victim);
        }
        let Some(recheck) = worth_until else { return false };
        if !waiter.deferred {
            waiter.deferred = true;
            self.ledger.note_deferred();
            if let Some(m) = &self.metrics {
                m.deferred.inc();
            }
        }
        waiter.reason = format!(
            "letting requests for {} go first before making room for {} (for up to {} ms)",
            wanted.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            waiter.model,
            self.config.vram.max_bypass_ms
        );
        waiter.deferring = wanted.clone();
        waiter.recheck_at = Some(recheck);
        waiter.cold = true;
        true
    }

    /// Tries to admit one waiter; returns it when it must keep waiting.
    fn admit(&mut self, mut waiter: Waiter, now: Instant) -> Option<Waiter> {
        // What blocked it on an earlier pass may not any more; only a `Wait` plan names blockers.
        waiter.blockers.clear();
        waiter.recheck_at = None;
        waiter.deferring.clear();
        let need = self.need(&waiter.model);
        self.ledger.note_estimate(&waiter.model, need);
        let waited = now.saturating_duration_since(waiter.enqueued);
        let plan = self.ledger.plan_waited(&waiter.model, need, now, waited);
        let deferring = self.defer(&mut waiter, &plan, now);
        if let Some(until) = waiter.defer_until {
            match (deferring, waiter.deferring_since) {
                (true, None) => {
                    waiter.deferring_since = Some(now);
                    waiter.deadline += until.saturating_duration_since(now);
                }
                (false, Some(_)) => {
                    waiter.deferring_since = None;
                    let unused = until.saturating_duration_since(now);
                    waiter.deadline = waiter.deadline.checked_sub(unused).unwrap_or(now);
                }
                _ => {}
            }
        }
        if deferring {
            return Some(waiter);
        }
        match plan {
            Plan::Ready => {
                self.grant(waiter, now);
                None
            }
            Plan::Join => {
                waiter.cold = true;
                waiter.reason = format!("{} is loading", waiter.model);
                Some(waiter)
            }
            Plan::Load { shares, offload } => {
                let gpu_layers = if offload { self.ledger.offload_layers(&waiter.model, need, &shares) } else { None };
                self.start_load(&waiter.model, shares, gpu_layers, reason_of(&waiter.kind));
                waiter.cold = true;
                waiter.reason = format!("{} is loading", waiter.model);
                Some(waiter)
            }
            Plan::Evict { victims, .. } => {
                for victim in victims {
                    self.start_unload(&victim, "room", false);
                }
                waiter.cold = true;
                waiter.reason = format!("making room for {}", waiter.model);
                Some(waiter)
            }
            Plan::Wait { reason, blockers, recheck } => {
                waiter.reason = reason.to_string();
                waiter.blockers = blockers;
                waiter.recheck_at = recheck.map(|d| now + d);
                Some(waiter)
            }
            Plan::Refuse { reason } => {
                self.reject("busy");
                reply_error(
                    waiter.kind,
                    VramError::Busy { model: waiter.model.to_string(), reason, retry_after_secs: 5 },
                );
                None
            }
        }
    }

    fn grant(&mut self, waiter: Waiter, now: Instant) {
        let waited = now.saturating_duration_since(waiter.enqueued);
        match waiter.kind {
            WaiterKind::Request(reply) => {
                self.note_bypasses(&waiter.model, now);
                self.ledger.acquire(&waiter.model, now);
                if let Some(m) = &self.metrics {
                    m.lease_wait
                        .with_label_values(&[if waiter.cold { "cold" } else { "ready" }])
                        .observe(waited.as_secs_f64());
                }
                let options = self.load_options(&waiter.model);
                let lease =
                    Lease { model: waiter.model.clone(), tx: self.tx.clone(), cold: waiter.cold, waited, options };
                if let Err(Ok(lease)) = reply.send(Ok(lease)) {
                    // The client left while waiting: releasing through the lease's drop keeps the count right.
                    drop(lease);
                }
            }
            WaiterKind::Internal { reply, reason } => {
                if let Some(reply) = reply {
                    let message = if reason == "pin" {
                        format!("{} is pinned and loaded", waiter.model)
                    } else {
                        format!("{} is loaded", waiter.model)
                    };
                    let _ = reply.send(Ok(message));
                }
            }
        }
    }

    /// Counts the earlier requests that a lease on `model` goes ahead of: those passed over to let `model` serve.
    fn note_bypasses(&mut self, model: &ModelName, now: Instant) {
        let passed_over: Vec<Duration> = self
            .pending
            .iter()
            .filter(|w| w.deferring.contains(model))
            .map(|w| now.saturating_duration_since(w.enqueued))
            .collect();
        for waited in passed_over {
            self.ledger.note_bypass(waited);
            if let Some(m) = &self.metrics {
                m.bypasses.inc();
            }
        }
    }

    /// Re-plans every waiter in arrival order; the first waiter of a model plans for all of its waiters.
    fn pass(&mut self) {
        let now = Instant::now();
        // Models whose first waiter has planned, with that waiter's deadline: the later waiters for the model wait
        // for the same load, and as long as it would (its time passed over included).
        let mut planned: HashMap<ModelName, Instant> = HashMap::new();
        // Busy models that earlier waiters need idle: later requests for them wait their turn (first come, first
        // served across models).
        let mut draining: HashSet<ModelName> = HashSet::new();
        let waiters: Vec<Waiter> = self.pending.drain(..).collect();
        for waiter in waiters {
            if matches!(&waiter.kind, WaiterKind::Request(reply) if reply.is_closed()) {
                continue;
            }
            if now >= waiter.deadline {
                self.reject("busy");
                let reason = if waiter.reason.is_empty() { "timed out".to_string() } else { waiter.reason.clone() };
                reply_error(
                    waiter.kind,
                    VramError::Busy { model: waiter.model.to_string(), reason, retry_after_secs: 5 },
                );
                continue;
            }
            if let Some(first) = planned.get(&waiter.model)
                && !matches!(
                    self.ledger.entry(&waiter.model).map(|e| &e.residency),
                    Some(crate::ledger::Residency::Loaded { .. })
                )
            {
                let mut waiter = waiter;
                waiter.cold = true;
                waiter.deadline = waiter.deadline.max(*first);
                self.pending.push_back(waiter);
                continue;
            }
            if waiter.oom_retry == OomRetry::AwaitingPoll {
                // Later requests for the model queue behind it: none may plan a load from the reading that failed.
                planned.insert(waiter.model.clone(), waiter.deadline);
                self.pending.push_back(waiter);
                continue;
            }
            if draining.contains(&waiter.model) {
                self.pending.push_back(waiter);
                continue;
            }
            let model = waiter.model.clone();
            if let Some(waiter) = self.admit(waiter, now) {
                planned.insert(model, waiter.deadline);
                draining.extend(waiter.blockers.iter().cloned());
                self.pending.push_back(waiter);
            }
        }
    }

    fn start_load(&mut self, model: &ModelName, shares: Shares, gpu_layers: Option<u32>, reason: &'static str) {
        self.epoch += 1;
        let (placement, bytes) = (shares.to_string(), shares.total());
        self.ledger.begin_load(model, shares, gpu_layers, Instant::now());
        let embedding_only = self.catalog.get(model).is_some_and(|s| s.embedding_only());
        let options = self.load_options(model).to_map();
        let client = self.client.clone();
        let tx = self.tx.clone();
        let model = model.clone();
        tracing::info!(model = %model, on = %placement, bytes = %Bytes(bytes), gpu_layers = ?gpu_layers, reason, "loading model");
        let shutdown = self.shutdown.clone();
        let probe = Arc::clone(&self.probe);
        let placed: Vec<(u32, u64)> =
            self.ledger.entry(&model).and_then(|e| e.residency.held()).map_or_else(Vec::new, |s| s.iter().collect());
        self.tracker.spawn(async move {
            // Memory may have been taken since the last reading (another process started): read the GPUs again and
            // do not load into less free memory than planned, which would run the GPU out of memory.
            if let Some(message) = short_of_memory(&client, probe.as_ref(), &placed, &model).await {
                let failure = LoadFailure { message, unreachable: false, preflight: true };
                let _ = tx.send(Command::LoadDone { model, reason, result: Err(failure) });
                return;
            }
            let started = std::time::Instant::now();
            let load = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = client.load(&model, embedding_only, KeepAlive::Forever, &options) => r,
            };
            let result = match load {
                Ok(outcome) => {
                    let seconds =
                        if outcome.load_duration > Duration::ZERO { outcome.load_duration } else { started.elapsed() };
                    let ps = client.ps().await.map(|p| p.models).unwrap_or_default();
                    Ok(LoadReport { seconds: seconds.as_secs_f64(), ps })
                }
                Err(e) => Err(LoadFailure {
                    unreachable: matches!(
                        e,
                        switchyard_core::CoreError::Unreachable { .. } | switchyard_core::CoreError::Refused { .. }
                    ),
                    message: e.to_string(),
                    preflight: false,
                }),
            };
            let _ = tx.send(Command::LoadDone { model, reason, result });
        });
    }

    fn load_done(
        &mut self,
        model: ModelName,
        reason: &'static str,
        result: Result<LoadReport, LoadFailure>,
        now: Instant,
    ) {
        let num_ctx = self.num_ctx(&model).unwrap_or_else(|| self.config.num_ctx_for(&model));
        match result {
            Ok(report) => {
                let entry_ps = report.ps.iter().find(|p| ModelName::parse(&p.name).is_ok_and(|n| n == model)).cloned();
                self.ledger.finish_load(&model, Ok((report.seconds, entry_ps.as_ref())), now);
                self.ledger.reconcile(&report.ps, None, now);
                let vram = entry_ps.as_ref().map(|p| p.size_vram);
                // What the model needs entirely on the GPU (its `size`), for planning its next load.
                let needs = entry_ps.as_ref().map(|p| p.size.max(p.size_vram));
                self.sink.measured(&model, Some(report.seconds), needs, num_ctx);
                self.sink.load_event(event(&model, "load", reason, None, Some(report.seconds * 1000.0), vram, None));
                if let Some(m) = &self.metrics {
                    m.loads.with_label_values(&[reason, "ok"]).inc();
                    m.load_duration.observe(report.seconds);
                }
                tracing::info!(model = %model, seconds = report.seconds, vram = %vram.map_or_else(|| "unknown".to_string(), |b| Bytes(b).to_string()), "model loaded");
                // Read the GPU again: the probe's view of used memory (foreign processes included) follows every
                // load. The threshold spares recently used models, so this does not unload what was just wanted.
                self.poll(None);
            }
            Err(LoadFailure { message, unreachable, preflight }) => {
                self.ledger.finish_load(&model, Err(()), now);
                tracing::warn!(model = %model, error = %message, "model load failed");
                self.sink.load_event(event(&model, "load", reason, None, None, None, Some(message.clone())));
                if let Some(m) = self.metrics.as_ref().filter(|_| !preflight) {
                    m.loads.with_label_values(&[reason, "error"]).inc();
                }
                // Out of memory usually means memory the last poll did not see (another process): plan once more after
                // the next poll instead of failing the requests.
                let out_of_memory = message.contains("out of memory");
                let mut poll = false;
                let waiters: Vec<Waiter> = self.pending.drain(..).collect();
                for mut waiter in waiters {
                    if waiter.model == model && preflight {
                        // Nothing was loaded and nothing ran out of memory: plan again after the next poll, within
                        // the request's own wait.
                        waiter.oom_retry = OomRetry::AwaitingPoll;
                        waiter.reason = format!("{message}; planning again");
                        self.pending.push_back(waiter);
                        poll = true;
                    } else if waiter.model == model && out_of_memory && waiter.oom_retry == OomRetry::None {
                        waiter.oom_retry = OomRetry::AwaitingPoll;
                        waiter.reason = format!("{model} failed to load out of memory; planning again");
                        self.pending.push_back(waiter);
                        poll = true;
                    } else if waiter.model == model && waiter.oom_retry == OomRetry::AwaitingPoll {
                        // Already promised a plan after the next poll: that promise stands.
                        self.pending.push_back(waiter);
                    } else if waiter.model == model {
                        self.reject("load_failed");
                        reply_error(
                            waiter.kind,
                            VramError::LoadFailed { model: model.to_string(), message: message.clone(), unreachable },
                        );
                    } else {
                        self.pending.push_back(waiter);
                    }
                }
                if poll {
                    self.poll(None);
                }
            }
        }
    }

    fn start_unload(&mut self, model: &ModelName, reason: &'static str, force: bool) -> bool {
        if !self.ledger.begin_unload(model, force) {
            return false;
        }
        self.epoch += 1;
        let strategy = self.config.vram.strategy.as_str();
        if let Some(m) = &self.metrics {
            m.unloads.with_label_values(&[reason]).inc();
            if matches!(reason, "room" | "threshold") {
                m.evictions.with_label_values(&[reason, strategy]).inc();
            }
        }
        let kind = if matches!(reason, "room" | "threshold") { "evict" } else { "unload" };
        self.sink.load_event(event(model, kind, reason, Some(strategy), None, None, None));
        tracing::info!(model = %model, reason, "unloading model");
        let embedding_only = self.catalog.get(model).is_some_and(|s| s.embedding_only());
        let client = self.client.clone();
        let tx = self.tx.clone();
        let model = model.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            let confirm = async {
                match client.unload(&model, embedding_only).await {
                    Ok(()) => {}
                    // Nothing listens where Ollama should: no Ollama process, so none holds the model in GPU memory
                    // (a restarted Ollama starts empty). Waiting for a confirmation would only hold up the requests
                    // that need the room until they time out; they go on to load, which says Ollama is down.
                    Err(CoreError::Refused { .. }) => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
                let deadline = Instant::now() + UNLOAD_CONFIRM_TIMEOUT;
                while Instant::now() < deadline {
                    let ps = client.ps().await.map_err(|e| e.to_string())?;
                    if !ps.models.iter().any(|p| ModelName::parse(&p.name).is_ok_and(|n| n == model)) {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err("the unload did not show in /api/ps in time".to_string())
            };
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = confirm => r,
            };
            if let Err(e) = &result {
                tracing::warn!(model = %model, error = %e, "unload not confirmed; the next poll will tell");
            }
            let _ = tx.send(Command::UnloadDone { model, ok: result.is_ok() });
        });
        true
    }

    fn enforce_threshold(&mut self, now: Instant) {
        for victim in self.ledger.threshold_victims(now) {
            // A model someone is waiting for stays.
            if self.pending.iter().any(|w| w.model == victim) {
                continue;
            }
            self.start_unload(&victim, "threshold", false);
        }
    }

    fn poll(&mut self, notify: Option<oneshot::Sender<()>>) {
        if let Some(n) = notify {
            self.poll_waiters.push(n);
        }
        if self.polling {
            return;
        }
        self.polling = true;
        let client = self.client.clone();
        let probe = Arc::clone(&self.probe);
        let tx = self.tx.clone();
        let epoch = self.epoch;
        self.tracker.spawn(async move {
            let (ps, gpus) = read_gpus(&client, probe.as_ref()).await;
            let _ = tx.send(Command::Observed { ps, gpus, epoch });
        });
    }

    fn observed(&mut self, ps: Result<Vec<PsModel>, String>, gpus: Option<GpuSnapshot>, now: Instant) {
        for waiter in self.pending.iter_mut().filter(|w| w.oom_retry == OomRetry::AwaitingPoll) {
            waiter.oom_retry = OomRetry::Retried;
        }
        let mut warnings = self.base_warnings.clone();
        let ps = match ps {
            Ok(ps) => ps,
            Err(e) => {
                warnings.push(format!("cannot read Ollama's /api/ps: {e}"));
                self.ledger.set_warnings(warnings);
                return;
            }
        };
        for change in self.ledger.reconcile(&ps, gpus.as_ref(), now) {
            match change {
                Observed::ExternalLoad(model) => {
                    tracing::info!(model = %model, "Ollama holds a model Switchyard did not load");
                    self.sink.load_event(event(&model, "external_load", "external", None, None, None, None));
                }
                Observed::ExternalUnload { model, pinned } => {
                    tracing::warn!(model = %model, pinned, "Ollama unloaded a model behind Switchyard's back");
                    if let Some(m) = &self.metrics {
                        m.unloads.with_label_values(&["external"]).inc();
                    }
                    self.sink.load_event(event(&model, "external_unload", "external", None, None, None, None));
                }
                Observed::UnloadConfirmed(_) => {}
            }
        }
        for model in self.ledger.missing_pins() {
            let already = self.pending.iter().any(|w| w.model == model);
            if !already {
                tracing::info!(model = %model, "re-loading a pinned model");
                self.enqueue_internal(model, "pin", None);
            }
        }
        for victim in self.ledger.idle_victims(now) {
            self.start_unload(&victim, "idle", false);
        }
        self.enforce_threshold(now);
        let over: Vec<String> = self
            .ledger
            .gpus()
            .iter()
            .filter(|g| self.ledger.committed(g.index) > self.ledger.budget(g.index))
            .map(|g| {
                format!(
                    "GPU {} is over budget: {} committed of {}",
                    g.index,
                    Bytes(self.ledger.committed(g.index)),
                    Bytes(self.ledger.budget(g.index))
                )
            })
            .collect();
        warnings.extend(over);
        self.ledger.set_warnings(warnings);
        self.update_metrics();
    }

    fn update_metrics(&self) {
        let Some(m) = &self.metrics else { return };
        for g in self.ledger.gpus() {
            let label = g.index.to_string();
            let set = |gauge: &prometheus::IntGaugeVec, v: u64| {
                gauge.with_label_values(&[label.as_str()]).set(i64::try_from(v).unwrap_or(i64::MAX))
            };
            set(&m.total_bytes, g.total);
            set(&m.used_bytes, g.used);
            set(&m.foreign_bytes, g.foreign);
            set(&m.budget_bytes, self.ledger.budget(g.index));
        }
        m.models_loaded.set(self.ledger.loaded_count() as i64);
    }

    fn admin(&mut self, op: AdminOp, model: ModelName, reply: Option<oneshot::Sender<Result<String, VramError>>>) {
        let respond = |reply: Option<oneshot::Sender<Result<String, VramError>>>, r: Result<String, VramError>| {
            if let Some(reply) = reply {
                let _ = reply.send(r);
            }
        };
        let known = self.catalog.get(&model).is_some()
            || self.ledger.entry(&model).is_some_and(|e| e.residency.held().is_some());
        if !known && op != AdminOp::Unpin {
            respond(reply, Err(VramError::UnknownModel(model.to_string())));
            return;
        }
        match op {
            AdminOp::Load => self.enqueue_internal(model, "admin", reply),
            AdminOp::Pin => {
                let need = self.need(&model);
                match self.ledger.pin(&model, need) {
                    Ok(()) => {
                        tracing::info!(model = %model, "pinned");
                        self.enqueue_internal(model, "pin", reply);
                    }
                    Err(reason) => respond(reply, Err(VramError::PinRefused { model: model.to_string(), reason })),
                }
            }
            AdminOp::Unpin => {
                let was = self.ledger.unpin(&model);
                respond(
                    reply,
                    Ok(if was { format!("{model} is no longer pinned") } else { format!("{model} was not pinned") }),
                );
            }
            AdminOp::Unload => {
                let busy = self.ledger.entry(&model).map_or(0, |e| e.in_flight);
                if busy > 0 {
                    respond(
                        reply,
                        Err(VramError::Busy {
                            model: model.to_string(),
                            reason: format!("it is serving {busy} request(s); unload it when idle"),
                            retry_after_secs: 5,
                        }),
                    );
                    return;
                }
                self.ledger.unpin(&model);
                let started = self.start_unload(&model, "admin", true);
                respond(
                    reply,
                    Ok(if started { format!("{model} is unloading") } else { format!("{model} is not loaded") }),
                );
            }
        }
    }

    fn reject(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.rejections.with_label_values(&[reason]).inc();
        }
    }
}

/// Tells the ledger each model's layer count, so that it can size partial offloads (for the scorer too, before a
/// model is first asked for).
fn note_layers(ledger: &mut Ledger, catalog: &Catalog) {
    for spec in catalog.models.values() {
        ledger.note_layers(&spec.name, spec.block_count);
    }
}

fn reason_of(kind: &WaiterKind) -> &'static str {
    match kind {
        WaiterKind::Request(_) => "request",
        WaiterKind::Internal { reason, .. } => reason,
    }
}

fn reply_error(kind: WaiterKind, error: VramError) {
    match kind {
        WaiterKind::Request(reply) => {
            let _ = reply.send(Err(error));
        }
        WaiterKind::Internal { reply: Some(reply), .. } => {
            let _ = reply.send(Err(error));
        }
        WaiterKind::Internal { reply: None, reason } => {
            tracing::warn!(reason, error = %error, "background load gave up");
        }
    }
}

fn event(
    model: &ModelName,
    kind: &str,
    reason: &str,
    strategy: Option<&str>,
    duration_ms: Option<f64>,
    bytes: Option<u64>,
    error: Option<String>,
) -> LoadEvent {
    LoadEvent {
        id: None,
        at: now_ms(),
        model: model.to_string(),
        kind: kind.to_string(),
        reason: reason.to_string(),
        strategy: strategy.map(str::to_string),
        duration_ms,
        bytes,
        ok: error.is_none(),
        error,
    }
}

/// Why a load placed as `placed` (GPU index, bytes) must not start now: a fresh reading shows less free memory on one
/// of its GPUs than it will take. `None` when it fits, when the GPUs cannot be read within `PREFLIGHT_TIMEOUT` (the
/// load then goes ahead, as it would have without this check), or when the probe does not measure the GPUs (`ollama`:
/// it cannot see other processes, and its placement of models on GPUs is a guess).
async fn short_of_memory(
    client: &OllamaClient,
    probe: &dyn GpuProbe,
    placed: &[(u32, u64)],
    model: &ModelName,
) -> Option<String> {
    if !probe.measures() {
        return None;
    }
    let (_, snapshot) = tokio::time::timeout(PREFLIGHT_TIMEOUT, read_gpus(client, probe)).await.ok()?;
    let snapshot = snapshot?;
    placed.iter().find_map(|(index, bytes)| {
        let gpu = snapshot.gpus.iter().find(|g| g.index == *index)?;
        let free = gpu.total_bytes.saturating_sub(gpu.used_bytes);
        (free < *bytes).then(|| {
            format!(
                "{model} was not loaded: GPU {index} has {} free and the load needs {} (memory taken since the last \
                 reading)",
                Bytes(free),
                Bytes(*bytes)
            )
        })
    })
}

/// Ollama's loaded models and the GPUs' reading (none when Ollama or the probe cannot be read).
async fn read_gpus(client: &OllamaClient, probe: &dyn GpuProbe) -> (Result<Vec<PsModel>, String>, Option<GpuSnapshot>) {
    let ps = client.ps().await.map(|p| p.models).map_err(|e| e.to_string());
    let gpus = match &ps {
        Ok(models) => probe.read(models).await.ok(),
        Err(_) => None,
    };
    (ps, gpus)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
