//! Ollama's scheduler, reproduced: the behaviour Switchyard exists to improve on.
//!
//! Requests wait in one FIFO queue handled by one task, in arrival order. A request for a loaded model whose
//! load-time options match (`num_ctx`) is dispatched to it at once. Anything else needs a load, and the queue task
//! is busy with that load until it ends: one slow load blocks every request queued behind it. Before loading, the
//! scheduler makes room: at most `max_loaded` models, and with other models loaded the new one must fit in 80% of
//! the free memory Ollama *believes* it has (foreign usage ignored). The victim is the first idle model in order of
//! configured keep_alive, shortest first, pinned models last; when none is idle it waits for the shortest to go
//! idle. A load that exceeds the GPU's *real* memory fails as an out-of-memory event.
//!
//! keep_alive expiry runs in a second task (the reaper), so that a model expires even while the queue task is busy.
//! All state is in [`SchedState`], a plain struct with synchronous methods that the tests drive directly; the tasks
//! only add waiting. A granted [`Lease`] holds a reference on its model until it is dropped.

use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::FaultBook;
use crate::fleet::FleetModel;
use crate::gpu::{self, Placement};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::ollama::KeepAlive;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// How far ahead a pinned model's `expires_at` is: Go's largest duration, about 292 years (Ollama shows year 2318).
const PINNED_HORIZON: TimeDelta = TimeDelta::days(106_751);

/// Fake process ids of runners start here (one runner process per loaded model, as with Ollama).
const FIRST_RUNNER_PID: u64 = 41_000;

/// Settings of the scheduler, fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct SchedConfig {
    /// Bytes of memory per GPU.
    pub gpus: Vec<u64>,
    /// Most models loaded at once (`OLLAMA_MAX_LOADED_MODELS`).
    pub max_loaded: usize,
    /// Concurrent requests per loaded model (`OLLAMA_NUM_PARALLEL`); also multiplies the KV cache.
    pub num_parallel: usize,
    /// Most requests waiting in the queue (`OLLAMA_MAX_QUEUE`).
    pub max_queue: usize,
    /// keep_alive of a model loaded by a request that sends none (`OLLAMA_KEEP_ALIVE`).
    pub default_keep_alive: KeepAlive,
}

/// What has happened since start, reported by `/sim/gpu`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Loads that would have exceeded a GPU's real memory (or an injected OOM fault).
    pub oom_events: u64,
    /// Loads that completed.
    pub loads: u64,
    /// Models unloaded for any reason (expiry, keep_alive 0, eviction, reload).
    pub unloads: u64,
    /// Unloads made to free room or a slot for another model.
    pub evictions: u64,
    /// Inference requests received (generate, chat, embed, OpenAI), load and unload requests included.
    pub requests: u64,
    /// Requests refused with 503 because the queue was full.
    pub rejected_queue_full: u64,
}

/// A request for a model to be ready: what the queue carries.
#[derive(Debug, Clone)]
pub(crate) struct LoadRequest {
    /// The model wanted.
    pub model: Arc<FleetModel>,
    /// The digest of the version wanted; a loaded runner of another version (before a re-pull) is reloaded.
    pub digest: String,
    /// The context length asked for (already defaulted and capped); a different one on a loaded model reloads it.
    pub num_ctx: u64,
    /// Layers asked for on the GPU (`num_gpu`; `None`: Ollama decides); a different one reloads a loaded model.
    pub num_gpu: Option<u64>,
    /// The keep_alive the request sent; `None` leaves a loaded model's as it is.
    pub keep_alive: Option<KeepAlive>,
}

/// One queued request.
struct Pending {
    /// What it needs.
    request: LoadRequest,
    /// When it was queued, to measure its wait.
    queued_at: Instant,
    /// Where the lease (or the failure) goes; closed when the client has gone away.
    reply: oneshot::Sender<Result<Lease, SimError>>,
}

/// A loaded (or loading) model.
#[derive(Debug)]
struct Runner {
    /// Distinguishes this load from an earlier or later one of the same model.
    id: u64,
    /// The model's figures.
    model: Arc<FleetModel>,
    /// The digest of the version loaded.
    digest: String,
    /// The context it was loaded with.
    num_ctx: u64,
    /// The GPU layers it was loaded with, when the load asked for a number.
    num_gpu: Option<u64>,
    /// Where its memory is.
    placement: Placement,
    /// How long it stays loaded once idle.
    keep_alive: KeepAlive,
    /// Requests holding it (dispatched, running or waiting for a slot).
    refs: usize,
    /// True while the load is in progress.
    loading: bool,
    /// When it expires, set while idle (none when pinned).
    idle_deadline: Option<Instant>,
    /// Slots for concurrent requests (`num_parallel`).
    slots: Arc<Semaphore>,
}

/// What `/api/ps` and `/sim/gpu` show of one runner.
#[derive(Debug, Clone)]
pub(crate) struct RunnerView {
    /// The model.
    pub model: Arc<FleetModel>,
    /// The digest of the version loaded.
    pub digest: String,
    /// Its context length.
    pub num_ctx: u64,
    /// Where its memory is.
    pub placement: Placement,
    /// When it will be unloaded (centuries ahead when pinned).
    pub expires_at: DateTime<Utc>,
    /// Its fake runner process id.
    pub pid: u64,
}

/// A consistent picture of the simulated GPUs, taken under one lock.
#[derive(Debug, Clone)]
pub(crate) struct GpuView {
    /// Bytes per GPU.
    pub totals: Vec<u64>,
    /// Bytes Ollama's models hold per GPU.
    pub used: Vec<u64>,
    /// Bytes other processes hold per GPU.
    pub foreign: Vec<u64>,
    /// The runners, latest expiry first.
    pub runners: Vec<RunnerView>,
    /// Counters so far.
    pub counters: Counters,
}

/// The scheduler's state. Plain data and synchronous methods; the tasks in this module add the waiting.
#[derive(Debug)]
pub(crate) struct SchedState {
    /// Loaded and loading models.
    runners: BTreeMap<ModelName, Runner>,
    /// Bytes other processes hold per GPU (set through `/sim/faults`).
    foreign: Vec<u64>,
    /// What has happened.
    counters: Counters,
    /// The next runner id.
    next_id: u64,
}

/// The scheduler's next move for a request.
#[derive(Debug, PartialEq)]
enum Step {
    /// The model is loaded with matching options: the request holds it now.
    Ready(Grant),
    /// Unload this model (when idle) to make room, then look again.
    Evict { name: ModelName, id: u64 },
    /// The model is loaded with other options: unload it (when idle), then look again.
    Reload { id: u64 },
    /// A runner was set up; load it for this long (simulated), then it is ready.
    Load { id: u64, duration: Duration },
}

/// A request's hold on a runner, before it becomes a [`Lease`].
#[derive(Debug, Clone)]
struct Grant {
    /// The runner.
    id: u64,
    /// Its slots.
    slots: Arc<Semaphore>,
    /// Whether it runs partly on the CPU.
    offloaded: bool,
}

impl PartialEq for Grant {
    /// Two grants are the same when they hold the same runner the same way (the slots are that runner's).
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.offloaded == other.offloaded
    }
}

/// The outcome of trying to unload a runner.
#[derive(Debug, PartialEq, Eq)]
enum Unload {
    /// It was idle and is gone now.
    Done,
    /// It is no longer there (expired or replaced).
    Gone,
    /// It is busy; wait for it.
    Busy,
}

impl SchedState {
    /// An empty state for `gpus` GPUs.
    fn new(gpus: usize) -> Self {
        Self { runners: BTreeMap::new(), foreign: vec![0; gpus], counters: Counters::default(), next_id: 1 }
    }

    /// Bytes Ollama's models hold per GPU (loading ones included).
    fn used(&self, gpus: usize) -> Vec<u64> {
        let mut used = vec![0u64; gpus];
        for runner in self.runners.values() {
            for (g, bytes) in &runner.placement.shares {
                if let Some(slot) = used.get_mut(*g) {
                    *slot += bytes;
                }
            }
        }
        used
    }

    /// The model to evict: by configured keep_alive, shortest first (pinned last, ties by name), the first idle one,
    /// else the first one (to be waited for).
    fn victim(&self) -> Option<(ModelName, u64)> {
        let mut order: Vec<(&ModelName, &Runner)> = self.runners.iter().collect();
        order.sort_by_key(|(name, r)| (keep_alive_rank(r.keep_alive), (*name).clone()));
        order
            .iter()
            .find(|(_, r)| r.refs == 0 && !r.loading)
            .or_else(|| order.first())
            .map(|(name, r)| ((*name).clone(), r.id))
    }

    /// Decides the next move for `req`. `oom_fault` is asked only when a load is about to start.
    fn step(
        &mut self,
        req: &LoadRequest,
        cfg: &SchedConfig,
        oom_fault: &mut dyn FnMut() -> bool,
    ) -> Result<Step, SimError> {
        let name = &req.model.name;
        if let Some(runner) = self.runners.get_mut(name) {
            if runner.num_ctx != req.num_ctx || runner.num_gpu != req.num_gpu || runner.digest != req.digest {
                return Ok(Step::Reload { id: runner.id });
            }
            runner.refs += 1;
            runner.idle_deadline = None;
            if let Some(keep_alive) = req.keep_alive {
                runner.keep_alive = keep_alive;
            }
            return Ok(Step::Ready(Grant {
                id: runner.id,
                slots: runner.slots.clone(),
                offloaded: runner.placement.offloaded(),
            }));
        }
        if self.runners.len() >= cfg.max_loaded
            && let Some((name, id)) = self.victim()
        {
            return Ok(Step::Evict { name, id });
        }
        let need = req.model.vram_at(req.num_ctx.saturating_mul(cfg.num_parallel as u64));
        let used = self.used(cfg.gpus.len());
        let alone = self.runners.is_empty();
        let layers = req.model.block_count;
        let placement = match req.num_gpu.filter(|n| *n <= layers) {
            Some(n) => gpu::plan_layers(&cfg.gpus, &used, need, layers, n, alone),
            None => gpu::plan(&cfg.gpus, &used, need, layers, alone),
        };
        let Some(placement) = placement else {
            return match self.victim() {
                Some((name, id)) => Ok(Step::Evict { name, id }),
                None => Err(SimError::OutOfMemory),
            };
        };
        if gpu::overflows(&cfg.gpus, &used, &self.foreign, &placement) || oom_fault() {
            self.counters.oom_events += 1;
            return Err(SimError::OutOfMemory);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.runners.insert(
            name.clone(),
            Runner {
                id,
                model: req.model.clone(),
                digest: req.digest.clone(),
                num_ctx: req.num_ctx,
                num_gpu: req.num_gpu,
                placement,
                keep_alive: req.keep_alive.unwrap_or(cfg.default_keep_alive),
                refs: 1,
                loading: true,
                idle_deadline: None,
                slots: Arc::new(Semaphore::new(cfg.num_parallel.max(1))),
            },
        );
        Ok(Step::Load { id, duration: Duration::try_from_secs_f64(req.model.load_seconds).unwrap_or_default() })
    }

    /// Marks runner `id` of `name` loaded; its grant, or `None` when it has vanished.
    fn finish_load(&mut self, name: &ModelName, id: u64) -> Option<Grant> {
        let runner = self.runners.get_mut(name).filter(|r| r.id == id)?;
        runner.loading = false;
        self.counters.loads += 1;
        Some(Grant { id, slots: runner.slots.clone(), offloaded: runner.placement.offloaded() })
    }

    /// Forgets a load that did not finish (the server is shutting down).
    fn abandon_load(&mut self, name: &ModelName, id: u64) {
        if self.runners.get(name).is_some_and(|r| r.id == id && r.loading) {
            self.runners.remove(name);
        }
    }

    /// Unloads runner `id` of `name` if it is idle.
    fn unload_if_idle(&mut self, name: &ModelName, id: u64, eviction: bool) -> Unload {
        match self.runners.get(name) {
            Some(r) if r.id == id => {
                if r.refs > 0 || r.loading {
                    return Unload::Busy;
                }
                self.runners.remove(name);
                self.counters.unloads += 1;
                if eviction {
                    self.counters.evictions += 1;
                }
                Unload::Done
            }
            _ => Unload::Gone,
        }
    }

    /// Drops one reference on runner `id` of `name`; the last one starts its keep_alive.
    fn release(&mut self, name: &ModelName, id: u64, now: Instant, clock: &Clock) {
        if let Some(runner) = self.runners.get_mut(name).filter(|r| r.id == id) {
            runner.refs = runner.refs.saturating_sub(1);
            if runner.refs == 0 {
                runner.idle_deadline = deadline(runner.keep_alive, now, clock);
            }
        }
    }

    /// `keep_alive: 0` with no prompt: the model unloads as soon as its in-flight work is done.
    fn expire(&mut self, name: &ModelName, now: Instant) -> bool {
        match self.runners.get_mut(name) {
            Some(runner) => {
                runner.keep_alive = KeepAlive::For(Duration::ZERO);
                if runner.refs == 0 && !runner.loading {
                    runner.idle_deadline = Some(now);
                }
                true
            }
            None => false,
        }
    }

    /// Unloads every idle runner whose keep_alive has run out; the count, and the next deadline still ahead.
    fn reap(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let expired: Vec<ModelName> = self
            .runners
            .iter()
            .filter(|(_, r)| r.refs == 0 && !r.loading && r.idle_deadline.is_some_and(|d| d <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &expired {
            self.runners.remove(name);
            self.counters.unloads += 1;
        }
        let next = self.runners.values().filter(|r| r.refs == 0 && !r.loading).filter_map(|r| r.idle_deadline).min();
        (expired.len(), next)
    }

    /// What `/api/ps` shows, latest expiry first.
    fn views(&self, now: Instant, now_utc: DateTime<Utc>, clock: &Clock) -> Vec<RunnerView> {
        let mut views: Vec<RunnerView> = self
            .runners
            .values()
            .map(|r| {
                let expires_at = match (r.keep_alive, r.idle_deadline) {
                    (KeepAlive::Forever, _) => now_utc.checked_add_signed(PINNED_HORIZON),
                    (_, Some(deadline)) => TimeDelta::from_std(deadline.saturating_duration_since(now))
                        .ok()
                        .and_then(|d| now_utc.checked_add_signed(d)),
                    (KeepAlive::For(d), None) => {
                        TimeDelta::from_std(clock.keep_alive_real(d)).ok().and_then(|d| now_utc.checked_add_signed(d))
                    }
                };
                let horizon = now_utc.checked_add_signed(PINNED_HORIZON).unwrap_or(DateTime::<Utc>::MAX_UTC);
                RunnerView {
                    model: r.model.clone(),
                    digest: r.digest.clone(),
                    num_ctx: r.num_ctx,
                    placement: r.placement.clone(),
                    expires_at: expires_at.map_or(horizon, |t| t.min(horizon)),
                    pid: FIRST_RUNNER_PID + r.id,
                }
            })
            .collect();
        views.sort_by(|a, b| b.expires_at.cmp(&a.expires_at).then_with(|| a.model.name.cmp(&b.model.name)));
        views
    }
}

/// Sort key of a keep_alive for eviction: shortest first, pinned last.
fn keep_alive_rank(keep_alive: KeepAlive) -> Duration {
    match keep_alive {
        KeepAlive::Forever => Duration::MAX,
        KeepAlive::For(d) => d,
    }
}

/// When an idle model with `keep_alive` expires (none when pinned or beyond any reachable instant).
fn deadline(keep_alive: KeepAlive, now: Instant, clock: &Clock) -> Option<Instant> {
    match keep_alive {
        KeepAlive::Forever => None,
        KeepAlive::For(d) => now.checked_add(clock.keep_alive_real(d)),
    }
}

/// What the queue task, the reaper and the leases share.
struct Shared {
    /// Fixed settings.
    config: SchedConfig,
    /// Time scale and shutdown.
    clock: Clock,
    /// Injected faults (`oom_on_load` is taken here).
    faults: Arc<FaultBook>,
    /// The state; never held across an await.
    state: Mutex<SchedState>,
    /// Bumped on every change a waiter may care about (a model idle, unloaded, loaded).
    changed: watch::Sender<u64>,
    /// Requests in the queue, to enforce `max_queue`.
    pending: AtomicUsize,
    /// The queue's sending end.
    queue: mpsc::UnboundedSender<Pending>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SchedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Handles one request to the point where it holds a runner (the queue task's work).
    async fn dispatch(self: &Arc<Self>, req: &LoadRequest) -> Result<(Grant, bool), SimError> {
        let mut loaded = false;
        loop {
            let step = {
                let faults = &self.faults;
                let name = &req.model.name;
                self.lock().step(req, &self.config, &mut || faults.take_oom(name))?
            };
            match step {
                Step::Ready(grant) => return Ok((grant, loaded)),
                Step::Evict { name, id } => self.unload_when_idle(&name, id, true).await?,
                Step::Reload { id } => self.unload_when_idle(&req.model.name, id, false).await?,
                Step::Load { id, duration } => {
                    self.notify();
                    tracing::debug!(model = %req.model.name, num_ctx = req.num_ctx, "loading");
                    if let Err(e) = self.clock.sleep(duration).await {
                        self.lock().abandon_load(&req.model.name, id);
                        self.notify();
                        return Err(e);
                    }
                    let grant = self.lock().finish_load(&req.model.name, id);
                    self.notify();
                    if let Some(grant) = grant {
                        loaded = true;
                        return Ok((grant, loaded));
                    }
                }
            }
        }
    }

    /// Waits until runner `id` of `name` is idle, then unloads it (nothing to do when it is gone already).
    async fn unload_when_idle(&self, name: &ModelName, id: u64, eviction: bool) -> Result<(), SimError> {
        let mut changed = self.changed.subscribe();
        loop {
            let outcome = self.lock().unload_if_idle(name, id, eviction);
            match outcome {
                Unload::Done => {
                    tracing::debug!(model = %name, eviction, "unloaded");
                    self.notify();
                    return Ok(());
                }
                Unload::Gone => return Ok(()),
                Unload::Busy => {}
            }
            tokio::select! {
                _ = self.clock.cancel().cancelled() => return Err(SimError::ShuttingDown),
                r = changed.changed() => r.map_err(|_| SimError::ShuttingDown)?,
            }
        }
    }
}

/// A request's hold on a loaded model; dropping it releases the hold (and starts the keep_alive when it was the
/// last). Streams carry it to their end, so a model is busy for as long as a response is being produced.
pub(crate) struct Lease {
    /// Where to release it.
    shared: Arc<Shared>,
    /// The model.
    name: ModelName,
    /// The runner.
    id: u64,
    /// The runner's slots, for [`Lease::slot`].
    slots: Arc<Semaphore>,
    /// True when this request caused the load.
    pub loaded: bool,
    /// True when the model runs partly on the CPU.
    pub offloaded: bool,
    /// Real time from queueing to the grant (loading included).
    pub waited: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("model", &self.name).field("runner", &self.id).finish()
    }
}

impl Lease {
    /// Waits for one of the runner's `num_parallel` slots.
    pub(crate) async fn slot(&self) -> Result<OwnedSemaphorePermit, SimError> {
        tokio::select! {
            _ = self.shared.clock.cancel().cancelled() => Err(SimError::ShuttingDown),
            permit = self.slots.clone().acquire_owned() => permit.map_err(|_| SimError::ShuttingDown),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.lock().release(&self.name, self.id, Instant::now(), &self.shared.clock);
        self.shared.notify();
    }
}

/// The handle on the scheduler: cheap to clone.
#[derive(Clone)]
pub(crate) struct Scheduler {
    /// What the tasks share.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("config", &self.shared.config).finish()
    }
}

impl Scheduler {
    /// Starts the queue task and the reaper on `tracker`; both end when the clock's shutdown token fires.
    pub(crate) fn start(config: SchedConfig, clock: Clock, faults: Arc<FaultBook>, tracker: &TaskTracker) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let (changed, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(SchedState::new(config.gpus.len())),
            config,
            clock,
            faults,
            changed,
            pending: AtomicUsize::new(0),
            queue,
        });
        tracker.spawn(run_queue(shared.clone(), rx));
        tracker.spawn(run_reaper(shared.clone()));
        Self { shared }
    }

    /// Queues `request` and waits until it holds a runner. 503 when the queue is full.
    pub(crate) async fn acquire(&self, request: LoadRequest) -> Result<Lease, SimError> {
        let shared = &self.shared;
        let max = shared.config.max_queue;
        if shared.pending.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).is_err() {
            shared.lock().counters.rejected_queue_full += 1;
            return Err(SimError::QueueFull);
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending { request, queued_at: Instant::now(), reply };
        if shared.queue.send(pending).is_err() {
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(SimError::ShuttingDown);
        }
        answer.await.map_err(|_| SimError::ShuttingDown)?
    }

    /// Unloads `name` as soon as it is idle (`keep_alive: 0` with no prompt). False when it was not loaded.
    pub(crate) fn expire(&self, name: &ModelName) -> bool {
        let found = self.shared.lock().expire(name, Instant::now());
        self.shared.notify();
        found
    }

    /// Counts one inference request.
    pub(crate) fn count_request(&self) {
        self.shared.lock().counters.requests += 1;
    }

    /// Sets the memory another process holds on `gpu` (0 releases it).
    pub(crate) fn set_foreign(&self, gpu: usize, bytes: u64) -> Result<(), SimError> {
        let mut state = self.shared.lock();
        let count = state.foreign.len();
        let slot = state
            .foreign
            .get_mut(gpu)
            .ok_or_else(|| SimError::bad(format!("there is no GPU {gpu} (the simulator has {count})")))?;
        *slot = bytes;
        Ok(())
    }

    /// Releases every GPU's foreign usage.
    pub(crate) fn clear_foreign(&self) {
        self.shared.lock().foreign.iter_mut().for_each(|b| *b = 0);
    }

    /// The loaded models, latest expiry first.
    pub(crate) fn runners(&self) -> Vec<RunnerView> {
        self.shared.lock().views(Instant::now(), Utc::now(), &self.shared.clock)
    }

    /// Everything `/sim/gpu` reports, under one lock.
    pub(crate) fn gpu_view(&self) -> GpuView {
        let state = self.shared.lock();
        GpuView {
            totals: self.shared.config.gpus.clone(),
            used: state.used(self.shared.config.gpus.len()),
            foreign: state.foreign.clone(),
            runners: state.views(Instant::now(), Utc::now(), &self.shared.clock),
            counters: state.counters,
        }
    }

    /// Counters so far.
    pub(crate) fn counters(&self) -> Counters {
        self.shared.lock().counters
    }

    /// Requests waiting in the queue now.
    pub(crate) fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }
}

/// The queue task: one request at a time, in arrival order.
async fn run_queue(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    loop {
        let pending = tokio::select! {
            biased;
            _ = shared.clock.cancel().cancelled() => break,
            next = rx.recv() => match next {
                Some(pending) => pending,
                None => break,
            },
        };
        shared.pending.fetch_sub(1, Ordering::SeqCst);
        if pending.reply.is_closed() {
            continue;
        }
        let result = shared.dispatch(&pending.request).await.map(|(grant, loaded)| Lease {
            shared: shared.clone(),
            name: pending.request.model.name.clone(),
            id: grant.id,
            slots: grant.slots,
            loaded,
            offloaded: grant.offloaded,
            waited: pending.queued_at.elapsed(),
        });
        if let Err(e) = &result {
            tracing::debug!(model = %pending.request.model.name, error = %e, "request failed in the scheduler");
        }
        // When the client has gone, the lease comes back here and is released by its drop.
        let _ = pending.reply.send(result);
    }
}

/// The reaper: unloads idle models whose keep_alive has run out.
async fn run_reaper(shared: Arc<Shared>) {
    let mut changed = shared.changed.subscribe();
    loop {
        let (removed, next) = shared.lock().reap(Instant::now());
        if removed > 0 {
            tracing::debug!(removed, "keep_alive expired");
            shared.notify();
        }
        let wait_for_deadline = async {
            match next {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.clock.cancel().cancelled() => break,
            r = changed.changed() => if r.is_err() { break },
            _ = wait_for_deadline => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use tokio_util::sync::CancellationToken;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn model(name: &str) -> Arc<FleetModel> {
        let fleet = Fleet::builtin();
        Arc::new(fleet.get(&ModelName::parse(name).unwrap()).unwrap().clone())
    }

    fn cfg(gpus: Vec<u64>, max_loaded: usize) -> SchedConfig {
        SchedConfig { gpus, max_loaded, num_parallel: 1, max_queue: 8, default_keep_alive: KeepAlive::DEFAULT }
    }

    fn req(name: &str, keep_alive: Option<KeepAlive>) -> LoadRequest {
        let model = model(name);
        LoadRequest { digest: model.initial_digest(), model, num_ctx: 4096, num_gpu: None, keep_alive }
    }

    /// Loads `name` to completion and returns its runner id, leaving one reference held.
    fn load(state: &mut SchedState, cfg: &SchedConfig, r: &LoadRequest) -> u64 {
        match state.step(r, cfg, &mut || false).unwrap() {
            Step::Load { id, .. } => {
                state.finish_load(&r.model.name, id).unwrap();
                id
            }
            other => panic!("expected a load, got {other:?}"),
        }
    }

    fn clock() -> Clock {
        Clock::new(0.0, CancellationToken::new())
    }

    #[test]
    fn eviction_is_by_keep_alive_not_by_use() {
        let cfg = cfg(vec![24 * GIB], 3);
        let mut state = SchedState::new(1);
        let now = Instant::now();
        let a = req("llama3.2:3b", Some(KeepAlive::For(Duration::from_secs(3600))));
        let b = req("llama3.1:8b", Some(KeepAlive::For(Duration::from_secs(60))));
        let c = req("qwen2.5-coder:7b", Some(KeepAlive::Forever));
        let ia = load(&mut state, &cfg, &a);
        let ib = load(&mut state, &cfg, &b);
        let ic = load(&mut state, &cfg, &c);
        // Most recently used is b, but it has the shortest keep_alive: it goes first.
        state.release(&a.model.name, ia, now, &clock());
        state.release(&c.model.name, ic, now, &clock());
        state.release(&b.model.name, ib, now, &clock());
        assert_eq!(state.victim(), Some((b.model.name.clone(), ib)));
        // A busy model is skipped in favour of the next idle one, even a pinned one.
        state.step(&b, &cfg, &mut || false).unwrap();
        state.step(&a, &cfg, &mut || false).unwrap();
        assert_eq!(state.victim(), Some((c.model.name.clone(), ic)));
        // None idle: the shortest is chosen, to be waited for.
        state.step(&c, &cfg, &mut || false).unwrap();
        assert_eq!(state.victim(), Some((b.model.name.clone(), ib)));
    }

    #[test]
    fn max_loaded_models_forces_an_eviction_before_a_load() {
        let cfg = cfg(vec![80 * GIB], 2);
        let mut state = SchedState::new(1);
        let a = req("llama3.2:3b", None);
        let b = req("llama3.1:8b", None);
        let ia = load(&mut state, &cfg, &a);
        load(&mut state, &cfg, &b);
        state.release(&a.model.name, ia, Instant::now(), &clock());
        let c = req("qwen2.5-coder:7b", None);
        let step = state.step(&c, &cfg, &mut || false).unwrap();
        assert_eq!(step, Step::Evict { name: a.model.name.clone(), id: ia });
        assert_eq!(state.unload_if_idle(&a.model.name, ia, true), Unload::Done);
        assert!(matches!(state.step(&c, &cfg, &mut || false).unwrap(), Step::Load { .. }));
        assert_eq!(state.counters.evictions, 1);
    }

    #[test]
    fn a_different_num_ctx_means_a_reload_and_a_busy_model_is_not_unloaded() {
        let cfg = cfg(vec![24 * GIB], 3);
        let mut state = SchedState::new(1);
        let a = req("llama3.2:3b", None);
        let id = load(&mut state, &cfg, &a);
        let wider = LoadRequest { num_ctx: 8192, ..a.clone() };
        assert_eq!(state.step(&wider, &cfg, &mut || false).unwrap(), Step::Reload { id });
        assert_eq!(state.unload_if_idle(&a.model.name, id, false), Unload::Busy);
        state.release(&a.model.name, id, Instant::now(), &clock());
        assert_eq!(state.unload_if_idle(&a.model.name, id, false), Unload::Done);
        assert_eq!(state.counters.evictions, 0);
        assert_eq!(state.counters.unloads, 1);
    }

    #[test]
    fn foreign_usage_turns_a_believed_fit_into_an_oom_event() {
        let cfg = cfg(vec![24 * GIB], 3);
        let mut state = SchedState::new(1);
        load(&mut state, &cfg, &req("llama3.1:8b", None));
        state.foreign[0] = 14 * GIB;
        let err = state.step(&req("qwen2.5-coder:7b", None), &cfg, &mut || false).unwrap_err();
        assert!(matches!(err, SimError::OutOfMemory));
        assert_eq!(state.counters.oom_events, 1);
        assert_eq!(state.runners.len(), 1);
        // The injected fault fails a load that would fit.
        state.foreign[0] = 0;
        let err = state.step(&req("qwen2.5-coder:7b", None), &cfg, &mut || true).unwrap_err();
        assert!(matches!(err, SimError::OutOfMemory));
        assert_eq!(state.counters.oom_events, 2);
    }

    #[test]
    fn idle_models_expire_and_pinned_ones_do_not() {
        let cfg = cfg(vec![48 * GIB], 3);
        let mut state = SchedState::new(1);
        let now = Instant::now();
        let short = req("llama3.2:3b", Some(KeepAlive::For(Duration::from_millis(200))));
        let pinned = req("llama3.1:8b", Some(KeepAlive::Forever));
        let is = load(&mut state, &cfg, &short);
        let ip = load(&mut state, &cfg, &pinned);
        state.release(&short.model.name, is, now, &clock());
        state.release(&pinned.model.name, ip, now, &clock());
        let (removed, next) = state.reap(now);
        assert_eq!((removed, next), (0, Some(now + Duration::from_millis(200))));
        let views = state.views(now, Utc::now(), &clock());
        assert_eq!(views[0].model.name, pinned.model.name, "latest expiry first");
        assert!(views[0].expires_at.format("%Y").to_string().parse::<i32>().unwrap() > 2300);
        let (removed, next) = state.reap(now + Duration::from_millis(200));
        assert_eq!((removed, next), (1, None));
        assert!(state.expire(&pinned.model.name, now));
        assert_eq!(state.reap(now).0, 1);
        assert!(state.runners.is_empty());
    }
}
