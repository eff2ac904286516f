//! The Ledger: what is on each GPU, what each model costs, and what may be evicted.
//!
//! A plain struct with synchronous methods, owned by the manager's task and unit-tested directly. It is reconciled
//! with the probes on every poll (`reconcile`): `/api/ps` says which model Ollama holds and its `size_vram`, the GPU
//! probe says how much memory is really used, and the difference is other processes' (foreign) memory. Admission
//! (`plan`, in the `plan` submodule) reads the ledger to decide per GPU whether a model fits under the budget, which
//! idle unpinned models to evict first (by the configured strategy), or that the request must wait or be refused.
//! Nothing here does I/O.

use crate::policy::{EvictionFacts, Heat, estimated_reload_seconds, keep_value};
use crate::shares::Shares;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::config::{Strategy, VramLimit};
use switchyard_core::gpu::{GpuSnapshot, spread_evenly};
use switchyard_core::ollama::types::PsModel;
use switchyard_core::size::Bytes;
use tokio::time::Instant;

mod plan;

pub use plan::{
    ESTIMATE_TOLERANCE, OFFLOAD_FOREIGN_TOLERANCE, OFFLOAD_RESERVE, OLLAMA_FIT_FRACTION, Offload, Plan, Room,
    WaitReason,
};

/// The policy knobs the ledger applies.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerConfig {
    /// What Switchyard may fill on each GPU.
    pub limit: VramLimit,
    /// Kept free on every GPU on top of the limit.
    pub headroom: u64,
    /// Above this share of a GPU's budget, idle unpinned models are unloaded.
    pub unload_threshold_pct: f64,
    /// Only models idle at least this long are unloaded for the threshold.
    pub threshold_min_idle: Duration,
    pub strategy: Strategy,
    /// Most models loaded at once over all GPUs.
    pub max_loaded: usize,
    /// Unload models idle this long (`None` = never for idleness).
    pub idle_ttl: Option<Duration>,
    /// A use counts half as much for `cost` after this long.
    pub cost_half_life: Duration,
}

/// Where a model's weights are.
#[derive(Debug, Clone, PartialEq)]
pub enum Residency {
    Absent,
    /// A load is under way; `shares` are reserved.
    Loading {
        shares: Shares,
    },
    /// Loaded: `shares` of Ollama's `size_vram` per GPU, and its `size` (GPU and CPU together).
    Loaded {
        shares: Shares,
        size: u64,
    },
    /// An unload was asked for; `shares` stay reserved until `/api/ps` confirms.
    Unloading {
        shares: Shares,
    },
}

impl Residency {
    /// The GPU memory this residency holds or reserves, per GPU; `None` when absent.
    pub fn held(&self) -> Option<&Shares> {
        match self {
            Residency::Absent => None,
            Residency::Loading { shares } | Residency::Unloading { shares } | Residency::Loaded { shares, .. } => {
                Some(shares)
            }
        }
    }

    /// Bytes held or reserved over every GPU.
    pub fn bytes(&self) -> u64 {
        self.held().map_or(0, Shares::total)
    }

    /// Bytes held or reserved on `gpu`.
    pub fn on(&self, gpu: u32) -> u64 {
        self.held().map_or(0, |s| s.on(gpu))
    }

    /// `unloaded`, `loading`, `loaded` or `unloading`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Residency::Absent => "unloaded",
            Residency::Loading { .. } => "loading",
            Residency::Loaded { .. } => "loaded",
            Residency::Unloading { .. } => "unloading",
        }
    }
}

/// What the ledger knows about one model. Entries outlive residency: uses, pins and measurements stay when a model
/// is unloaded.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: ModelName,
    pub residency: Residency,
    /// Never evicted; re-loaded when Ollama drops it.
    pub pinned: bool,
    /// Leases held now.
    pub in_flight: u32,
    pub last_used: Option<Instant>,
    /// Leases granted so far (frequency for `lfu`).
    pub uses: u64,
    /// Leases granted, decayed by age (frequency for `cost`).
    pub heat: Heat,
    /// Transformer layers (from the catalog): what `num_gpu` counts. Known layers let Switchyard size a partial
    /// offload itself.
    pub layers: Option<u64>,
    /// Layers on the GPU Switchyard asked for when it loaded the model partly offloaded (`num_gpu`); requests to the
    /// instance must send the same, or Ollama reloads it.
    pub gpu_layers: Option<u32>,
    /// Measured seconds of the latest cold load (as Ollama reports it).
    pub load_seconds: Option<f64>,
    /// How long the latest load took on the manager's clock, from asking to loaded.
    pub load_wall: Option<Duration>,
    /// When the load under way began.
    load_began: Option<Instant>,
    /// VRAM the model takes when loaded entirely on the GPU (Ollama's `size`, which is more than its `size_vram` when
    /// it runs partly offloaded): measured after a load, estimated before.
    pub expected_bytes: u64,
    /// `expected_bytes` was measured by Ollama (a load, `/api/ps`, or the store), not estimated.
    pub measured: bool,
    /// Idle TTL asked for by a client's `keep_alive` (overrides the default).
    pub idle_ttl: Option<Duration>,
    /// Ollama's `expires_at` from `/api/ps`.
    pub expires_at: Option<String>,
    /// Requests waiting for admission to this model (set by the manager when it publishes).
    pub waiting: u32,
    /// When the longest-waiting of them arrived.
    pub waiting_since: Option<Instant>,
    /// When the latest request for it arrived.
    pub last_arrival: Option<Instant>,
    /// The time between its requests' arrivals, averaged (recent gaps weigh more).
    pub mean_gap: Option<Duration>,
}

impl Entry {
    /// The VRAM this model is expected to take: measured when known, else `estimate`.
    pub fn expected_or(&self, estimate: u64) -> u64 {
        if self.expected_bytes > 0 { self.expected_bytes } else { estimate }
    }

    fn new(name: ModelName) -> Self {
        Self {
            name,
            residency: Residency::Absent,
            pinned: false,
            in_flight: 0,
            last_used: None,
            last_arrival: None,
            mean_gap: None,
            uses: 0,
            heat: Heat::default(),
            layers: None,
            gpu_layers: None,
            load_seconds: None,
            load_wall: None,
            load_began: None,
            expected_bytes: 0,
            measured: false,
            idle_ttl: None,
            expires_at: None,
            waiting: 0,
            waiting_since: None,
        }
    }

    fn reload_seconds(&self) -> f64 {
        self.load_seconds.unwrap_or_else(|| estimated_reload_seconds(self.expected_bytes))
    }

    /// How long loading it again would keep a request waiting: the latest load as timed here, else the estimate.
    fn reload_wait(&self) -> Duration {
        self.load_wall.unwrap_or_else(|| Duration::try_from_secs_f64(self.reload_seconds()).unwrap_or(Duration::MAX))
    }

    fn evictable(&self) -> bool {
        self.releasable() && self.in_flight == 0
    }

    /// Loaded and unpinned: evictable now, or once its requests finish.
    fn releasable(&self) -> bool {
        matches!(self.residency, Residency::Loaded { .. }) && !self.pinned
    }
}

/// One GPU as the ledger sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuState {
    pub index: u32,
    pub name: String,
    pub total: u64,
    /// Used memory the probe measured (all processes).
    pub used: u64,
    /// Memory of processes other than Ollama's models.
    pub foreign: u64,
}

/// A change `reconcile` noticed that Switchyard did not cause.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Ollama holds a model the ledger did not know was loaded.
    ExternalLoad(ModelName),
    /// Ollama dropped a model the ledger thought loaded (its own eviction, a crash, another client).
    ExternalUnload { model: ModelName, pinned: bool },
    /// An unload Switchyard asked for is confirmed.
    UnloadConfirmed(ModelName),
}

/// Weight of the newest gap in a model's average gap between arrivals.
const ARRIVAL_GAP_WEIGHT: f64 = 0.25;

/// The ledger itself.
#[derive(Debug, Clone)]
pub struct Ledger {
    config: LedgerConfig,
    gpus: Vec<GpuState>,
    entries: BTreeMap<ModelName, Entry>,
    /// Human-readable conditions for `/admin/vram` (unknown total, pins over budget...).
    warnings: Vec<String>,
    /// Requests passed over by admission (`vram.max_bypass_ms`), as the manager counts them.
    bypass: BypassStats,
}

/// How often admission let requests for loaded models go ahead of a request waiting for room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BypassStats {
    /// Requests that waited while others went ahead of them (each counted once).
    pub deferred: u64,
    /// Leases granted ahead of such a waiting request (one per waiting request passed over).
    pub bypasses: u64,
    /// The longest a request had waited when another went ahead of it: never more than `vram.max_bypass_ms`.
    pub longest_passed_over: Duration,
}

impl Ledger {
    /// A ledger over `gpus` (from the first probe reading).
    pub fn new(config: LedgerConfig, gpus: Vec<GpuState>) -> Self {
        Self { config, gpus, entries: BTreeMap::new(), warnings: Vec::new(), bypass: BypassStats::default() }
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    pub fn gpus(&self) -> &[GpuState] {
        &self.gpus
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn entry(&self, name: &ModelName) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn bypass(&self) -> BypassStats {
        self.bypass
    }

    /// A request started to be passed over.
    pub fn note_deferred(&mut self) {
        self.bypass.deferred += 1;
    }

    /// A lease went ahead of a request that had waited `waited`.
    pub fn note_bypass(&mut self, waited: Duration) {
        self.bypass.bypasses += 1;
        self.bypass.longest_passed_over = self.bypass.longest_passed_over.max(waited);
    }

    /// Replaces the standing warnings.
    pub fn set_warnings(&mut self, warnings: Vec<String>) {
        self.warnings = warnings;
    }

    /// Records the requests waiting for admission, as (model, arrival) pairs, replacing the previous record.
    pub fn set_queue<'a>(&mut self, waiting: impl Iterator<Item = (&'a ModelName, Instant)>) {
        for e in self.entries.values_mut() {
            e.waiting = 0;
            e.waiting_since = None;
        }
        for (model, since) in waiting {
            let e = self.entry_mut(model);
            e.waiting += 1;
            e.waiting_since = Some(e.waiting_since.map_or(since, |t| t.min(since)));
        }
    }

    fn entry_mut(&mut self, name: &ModelName) -> &mut Entry {
        self.entries.entry(name.clone()).or_insert_with(|| Entry::new(name.clone()))
    }

    fn gpu(&self, index: u32) -> Option<&GpuState> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// What Switchyard may fill on `gpu`: the limit, less the headroom.
    pub fn budget(&self, gpu: u32) -> u64 {
        self.gpu(gpu).map_or(0, |g| self.config.limit.of(g.total).min(g.total.saturating_sub(self.config.headroom)))
    }

    /// Bytes held or reserved on `gpu` by Ollama's models (as the ledger knows them).
    pub fn models_bytes(&self, gpu: u32) -> u64 {
        self.entries.values().map(|e| e.residency.on(gpu)).sum()
    }

    /// Bytes counted against the budget of `gpu`: models plus foreign memory.
    pub fn committed(&self, gpu: u32) -> u64 {
        self.models_bytes(gpu) + self.gpu(gpu).map_or(0, |g| g.foreign)
    }

    /// Budget left on `gpu`.
    pub fn free(&self, gpu: u32) -> u64 {
        self.budget(gpu).saturating_sub(self.committed(gpu))
    }

    /// Models loaded or loading (what Ollama counts against its max loaded models).
    pub fn loaded_count(&self) -> usize {
        self.entries.values().filter(|e| e.residency.held().is_some()).count()
    }

    /// The VRAM `name` is expected to take: measured when known, else `estimate`.
    pub fn expected_bytes(&self, name: &ModelName, estimate: u64) -> u64 {
        self.entries.get(name).map_or(estimate, |e| e.expected_or(estimate))
    }

    /// Records the expected size (from the catalog estimate) unless a measurement is already known.
    pub fn note_estimate(&mut self, name: &ModelName, estimate: u64) {
        let entry = self.entry_mut(name);
        if entry.expected_bytes == 0 {
            entry.expected_bytes = estimate;
        }
    }

    /// Records the model's layer count (from the catalog).
    pub fn note_layers(&mut self, name: &ModelName, layers: Option<u64>) {
        self.entry_mut(name).layers = layers;
    }

    /// Records measured figures (from the store at start, or after a load).
    pub fn note_measurement(&mut self, name: &ModelName, load_seconds: Option<f64>, vram_bytes: Option<u64>) {
        let entry = self.entry_mut(name);
        if load_seconds.is_some() {
            entry.load_seconds = load_seconds;
        }
        if let Some(bytes) = vram_bytes.filter(|b| *b > 0) {
            entry.expected_bytes = bytes;
            entry.measured = true;
        }
    }

    /// Sets a client-requested idle TTL for `name` (from `keep_alive`).
    pub fn set_idle_ttl(&mut self, name: &ModelName, ttl: Option<Duration>) {
        self.entry_mut(name).idle_ttl = ttl;
    }

    fn facts(&self, e: &Entry, now: Instant) -> EvictionFacts {
        EvictionFacts {
            idle_seconds: e.last_used.map_or(f64::MAX / 4.0, |t| now.saturating_duration_since(t).as_secs_f64()),
            size_bytes: e.residency.held().map_or(e.expected_bytes, Shares::total),
            uses: e.uses,
            heat: e.heat.at(now, self.config.cost_half_life),
            reload_seconds: e.reload_seconds(),
        }
    }

    /// Idle, unpinned, loaded models on `gpu` (any GPU when `None`), the first to evict first.
    pub fn eviction_order(&self, gpu: Option<u32>, now: Instant) -> Vec<&Entry> {
        self.order(gpu, now, false)
    }

    /// `eviction_order`, with the busy models in it too when `busy_too`.
    fn order(&self, gpu: Option<u32>, now: Instant, busy_too: bool) -> Vec<&Entry> {
        let mut candidates: Vec<(&Entry, f64)> = self
            .entries
            .values()
            .filter(|e| if busy_too { e.releasable() } else { e.evictable() })
            .filter(|e| gpu.is_none_or(|g| e.residency.on(g) > 0))
            .map(|e| (e, keep_value(self.config.strategy, &self.facts(e, now))))
            .collect();
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.name.cmp(&b.0.name)));
        candidates.into_iter().map(|(e, _)| e).collect()
    }

    /// A lease on a loaded model was granted.
    pub fn acquire(&mut self, name: &ModelName, now: Instant) {
        let half_life = self.config.cost_half_life;
        let entry = self.entry_mut(name);
        entry.in_flight += 1;
        entry.uses += 1;
        entry.heat.bump(now, half_life);
        entry.last_used = Some(now);
    }

    /// A request for `name` arrived: updates its average gap between arrivals.
    pub fn note_arrival(&mut self, name: &ModelName, now: Instant) {
        let entry = self.entry_mut(name);
        if let Some(last) = entry.last_arrival {
            let gap = now.saturating_duration_since(last).as_secs_f64();
            let mean =
                entry.mean_gap.map_or(gap, |m| ARRIVAL_GAP_WEIGHT * gap + (1.0 - ARRIVAL_GAP_WEIGHT) * m.as_secs_f64());
            entry.mean_gap = Duration::try_from_secs_f64(mean).ok();
        }
        entry.last_arrival = Some(now);
    }

    /// A lease was dropped.
    pub fn release(&mut self, name: &ModelName, now: Instant) {
        let entry = self.entry_mut(name);
        entry.in_flight = entry.in_flight.saturating_sub(1);
        entry.last_used = Some(now);
    }

    /// A load of `name` started, reserving `shares`.
    pub fn begin_load(&mut self, name: &ModelName, shares: Shares, gpu_layers: Option<u32>, now: Instant) {
        let entry = self.entry_mut(name);
        entry.residency = Residency::Loading { shares };
        entry.gpu_layers = gpu_layers;
        entry.load_began = Some(now);
    }

    /// A load finished. On success `ps` is Ollama's entry for the model when it could be read.
    pub fn finish_load(&mut self, name: &ModelName, outcome: Result<(f64, Option<&PsModel>), ()>, now: Instant) {
        let measured = match &outcome {
            Ok((_, Some(ps))) => self.measured_placement(name, ps.size_vram, now),
            _ => None,
        };
        let entry = self.entry_mut(name);
        let Residency::Loading { shares } = &entry.residency else { return };
        match outcome {
            Ok((seconds, ps)) => {
                let size_vram = ps.map_or(shares.total(), |p| p.size_vram);
                let size = ps.map_or(size_vram, |p| p.size);
                let shares = measured.unwrap_or_else(|| shares.scaled_to(size_vram));
                entry.residency = Residency::Loaded { shares, size };
                entry.load_seconds = Some(seconds);
                entry.load_wall = entry.load_began.map(|t| now.saturating_duration_since(t));
                entry.expected_bytes = size.max(size_vram).max(1);
                entry.measured |= ps.is_some();
                entry.expires_at = ps.map(|p| p.expires_at.clone());
                entry.last_used = Some(now);
            }
            Err(()) => entry.residency = Residency::Absent,
        }
    }

    /// Where Ollama put `name`, which it measured at `bytes` of VRAM: its placement rule applied to that size and the
    /// memory as it was before the load (`/api/ps` gives sizes, not GPUs). An estimate that was off would otherwise
    /// skew a split's shares, and with them every later prediction of where Ollama puts a model.
    fn measured_placement(&self, name: &ModelName, bytes: u64, now: Instant) -> Option<Shares> {
        let loading = self.entries.get(name).filter(|e| matches!(e.residency, Residency::Loading { .. }))?;
        self.ollama_placement(&self.room(now), bytes, &[loading])
    }

    /// Starts unloading `name`. Returns false when it is not loaded, pinned or busy (nothing happens then), unless
    /// `force` (an explicit admin unload of a pinned model).
    pub fn begin_unload(&mut self, name: &ModelName, force: bool) -> bool {
        let Some(entry) = self.entries.get_mut(name) else { return false };
        let Residency::Loaded { shares, .. } = &entry.residency else { return false };
        if entry.in_flight > 0 || (entry.pinned && !force) {
            return false;
        }
        entry.residency = Residency::Unloading { shares: shares.clone() };
        true
    }

    /// An unload finished (confirmed by `/api/ps`, or failed: then the model is read back from the next poll).
    pub fn finish_unload(&mut self, name: &ModelName) {
        if let Some(entry) = self.entries.get_mut(name)
            && matches!(entry.residency, Residency::Unloading { .. })
        {
            entry.residency = Residency::Absent;
            entry.expires_at = None;
        }
    }

    /// Pins `name` (which takes `need` bytes when loaded). Refused when pinned models alone would exceed the budget.
    pub fn pin(&mut self, name: &ModelName, need: u64) -> Result<(), String> {
        let total: u64 = self.gpus.iter().map(|g| self.budget(g.index)).sum();
        if need > total {
            return Err(format!(
                "it needs {} and the GPU budget is {}{}: it could only run partly offloaded to the CPU, which is not \
                 pinned",
                Bytes(need),
                Bytes(total),
                if self.gpus.len() > 1 { " over all GPUs" } else { "" }
            ));
        }
        let pinned: u64 = self
            .entries
            .values()
            .filter(|e| e.pinned && e.name != *name)
            .map(|e| e.residency.held().map_or(e.expected_bytes, Shares::total))
            .sum();
        if pinned + need > total {
            return Err(format!(
                "pinned models would take {} of a {} budget; unpin one first or raise vram.limit",
                Bytes(pinned + need),
                Bytes(total)
            ));
        }
        let entry = self.entry_mut(name);
        entry.pinned = true;
        if entry.expected_bytes == 0 {
            entry.expected_bytes = need;
        }
        Ok(())
    }

    /// Unpins `name`.
    pub fn unpin(&mut self, name: &ModelName) -> bool {
        self.entries.get_mut(name).is_some_and(|e| std::mem::replace(&mut e.pinned, false))
    }

    /// Pinned models that are not loaded or loading (to re-load after Ollama dropped them).
    pub fn missing_pins(&self) -> Vec<ModelName> {
        self.entries.values().filter(|e| e.pinned && e.residency == Residency::Absent).map(|e| e.name.clone()).collect()
    }

    /// Takes in one poll: Ollama's `/api/ps` and, when the probe measured them, the GPUs.
    pub fn reconcile(&mut self, ps: &[PsModel], gpus: Option<&GpuSnapshot>, now: Instant) -> Vec<Observed> {
        let mut observed = Vec::new();
        let mut seen = Vec::with_capacity(ps.len());
        for p in ps {
            let Ok(name) = ModelName::parse(&p.name) else { continue };
            seen.push(name.clone());
            // Where Ollama put a model Switchyard did not load (or knew at 0 bytes) is a guess from its rule.
            let guess = self.entries.get(&name).is_none_or(|e| match &e.residency {
                Residency::Absent => true,
                Residency::Loaded { shares, .. } => shares.total() == 0,
                Residency::Loading { .. } | Residency::Unloading { .. } => false,
            });
            let placed = if guess { self.placed_by_ollama(p.size_vram) } else { Shares::default() };
            let entry = self.entry_mut(&name);
            entry.expires_at = Some(p.expires_at.clone());
            match &entry.residency {
                Residency::Absent => {
                    entry.residency = Residency::Loaded { shares: placed, size: p.size };
                    // Another client may have loaded it with other options: not a measurement for ours.
                    entry.expected_bytes = p.size.max(p.size_vram).max(entry.expected_bytes);
                    entry.gpu_layers = None;
                    entry.last_used.get_or_insert(now);
                    observed.push(Observed::ExternalLoad(name));
                }
                Residency::Loaded { shares, .. } => {
                    let shares = if shares.total() == 0 { placed } else { shares.scaled_to(p.size_vram) };
                    entry.residency = Residency::Loaded { shares, size: p.size };
                    // A model another client loaded keeps counting as estimated: its options may not be ours.
                    if p.size_vram > 0 {
                        entry.expected_bytes = p.size.max(p.size_vram);
                    }
                }
                Residency::Loading { .. } | Residency::Unloading { .. } => {}
            }
        }
        for entry in self.entries.values_mut() {
            if seen.contains(&entry.name) {
                continue;
            }
            match entry.residency {
                Residency::Loaded { .. } => {
                    entry.residency = Residency::Absent;
                    entry.expires_at = None;
                    observed.push(Observed::ExternalUnload { model: entry.name.clone(), pinned: entry.pinned });
                }
                Residency::Unloading { .. } => {
                    entry.residency = Residency::Absent;
                    entry.expires_at = None;
                    observed.push(Observed::UnloadConfirmed(entry.name.clone()));
                }
                Residency::Absent | Residency::Loading { .. } => {}
            }
        }
        if let Some(snapshot) = gpus {
            self.apply_gpus(snapshot);
        }
        observed
    }

    /// Where Ollama most likely put a model of `bytes` it loaded without Switchyard (`/api/ps` does not say): whole on
    /// the GPU it believes has the most free memory, else split evenly, else all on that GPU.
    fn placed_by_ollama(&self, bytes: u64) -> Shares {
        let room: Vec<(u32, u64)> =
            self.gpus.iter().map(|g| (g.index, g.total.saturating_sub(self.models_bytes(g.index)))).collect();
        let Some(&(most, most_room)) = room.iter().max_by_key(|(g, r)| (*r, std::cmp::Reverse(*g))) else {
            return Shares::one(0, bytes);
        };
        if most_room >= bytes {
            return Shares::one(most, bytes);
        }
        spread_evenly(&room, bytes).map_or_else(|| Shares::one(most, bytes), Shares::from_pairs)
    }

    /// Takes in the GPU probe's reading; foreign memory is what the probe sees used beyond Ollama's models.
    pub fn apply_gpus(&mut self, snapshot: &GpuSnapshot) {
        let mut gpus = Vec::with_capacity(snapshot.gpus.len());
        for g in &snapshot.gpus {
            let ours = self.models_bytes(g.index);
            let by_process: u64 = snapshot
                .processes
                .iter()
                .filter(|p| p.gpu_index == g.index)
                .filter(|p| !p.name.as_deref().unwrap_or("").to_ascii_lowercase().contains("ollama"))
                .map(|p| p.used_bytes)
                .sum();
            gpus.push(GpuState {
                index: g.index,
                name: g.name.clone(),
                total: g.total_bytes,
                used: g.used_bytes,
                foreign: g.used_bytes.saturating_sub(ours).max(by_process),
            });
        }
        if !gpus.is_empty() {
            self.gpus = gpus;
        }
    }

    /// Idle unpinned models to unload so that every GPU is back under the threshold, in eviction order. Models used
    /// within `threshold_min_idle` stay (hysteresis), and so does the most recently used model of each GPU:
    /// unloading the one model that alone fills a GPU frees nothing useful.
    pub fn threshold_victims(&self, now: Instant) -> Vec<ModelName> {
        let mut victims: Vec<&Entry> = Vec::new();
        for gpu in &self.gpus {
            let budget = self.budget(gpu.index) as f64;
            let limit = budget * self.config.unload_threshold_pct / 100.0;
            // A split model chosen for an earlier GPU frees its share here too.
            let freed: u64 = victims.iter().map(|v| v.residency.on(gpu.index)).sum();
            let mut committed = self.committed(gpu.index).saturating_sub(freed) as f64;
            let hottest = self
                .entries
                .values()
                .filter(|e| e.residency.on(gpu.index) > 0)
                .max_by_key(|e| e.last_used)
                .map(|e| e.name.clone());
            for candidate in self.eviction_order(Some(gpu.index), now) {
                let idle = candidate.last_used.map_or(Duration::MAX, |t| now.saturating_duration_since(t));
                if Some(&candidate.name) == hottest.as_ref()
                    || idle < self.config.threshold_min_idle
                    || victims.iter().any(|v| v.name == candidate.name)
                {
                    continue;
                }
                if committed <= limit {
                    break;
                }
                committed -= candidate.residency.on(gpu.index) as f64;
                victims.push(candidate);
            }
        }
        victims.into_iter().map(|v| v.name.clone()).collect()
    }

    /// Unpinned models idle longer than their TTL.
    pub fn idle_victims(&self, now: Instant) -> Vec<ModelName> {
        self.entries
            .values()
            .filter(|e| e.evictable())
            .filter(|e| {
                let Some(ttl) = e.idle_ttl.or(self.config.idle_ttl) else { return false };
                e.last_used.is_some_and(|t| now.saturating_duration_since(t) >= ttl)
            })
            .map(|e| e.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The helpers are shared with the planner's tests (`plan::tests`).
    pub(super) const GIB: u64 = 1024 * 1024 * 1024;

    pub(super) fn config(strategy: Strategy) -> LedgerConfig {
        LedgerConfig {
            limit: VramLimit::Percent(100.0),
            headroom: 0,
            unload_threshold_pct: 90.0,
            threshold_min_idle: Duration::ZERO,
            strategy,
            max_loaded: 3,
            idle_ttl: Some(Duration::from_secs(600)),
            cost_half_life: Duration::from_secs(3600),
        }
    }

    pub(super) fn gpu(index: u32, total: u64) -> GpuState {
        GpuState { index, name: format!("gpu{index}"), total, used: 0, foreign: 0 }
    }

    pub(super) fn name(s: &str) -> ModelName {
        ModelName::parse(s).unwrap()
    }

    pub(super) fn loaded(ledger: &mut Ledger, model: &str, gpu: u32, bytes: u64, now: Instant) {
        let m = name(model);
        ledger.begin_load(&m, Shares::one(gpu, bytes), None, now);
        ledger.finish_load(&m, Ok((2.0, None)), now);
    }

    #[test]
    fn a_split_model_is_counted_on_every_gpu_it_touches() {
        let t0 = Instant::now();
        let mut cfg = config(Strategy::Lru);
        cfg.unload_threshold_pct = 50.0;
        let mut l = Ledger::new(cfg, vec![gpu(0, 24 * GIB), gpu(1, 24 * GIB)]);
        let ps = PsModel {
            name: "big:latest".into(),
            model: "big:latest".into(),
            size: 40 * GIB,
            size_vram: 40 * GIB,
            digest: String::new(),
            details: Default::default(),
            expires_at: "2318-01-01T00:00:00Z".into(),
            context_length: None,
        };
        // Loaded behind Switchyard's back: placed where Ollama would have put it.
        l.reconcile(std::slice::from_ref(&ps), None, t0);
        l.reconcile(&[ps], None, t0);
        assert_eq!((l.models_bytes(0), l.models_bytes(1)), (20 * GIB, 20 * GIB));
        // Its size is Ollama's for another client's options: still an estimate for Switchyard's.
        assert!(!l.entry(&name("big")).unwrap().measured);
        loaded(&mut l, "tiny", 0, GIB, t0 + Duration::from_secs(5));
        loaded(&mut l, "small", 1, 2 * GIB, t0 + Duration::from_secs(5));
        assert_eq!(l.eviction_order(Some(0), t0).len(), 2);
        assert_eq!(l.eviction_order(Some(1), t0).len(), 2);
        // Over the threshold on both GPUs: the split model goes, named once, and its going brings both under.
        assert_eq!(l.threshold_victims(t0 + Duration::from_secs(10)), vec![name("big")]);
    }

    #[test]
    fn pins_alone_may_not_exceed_the_budget() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Cost), vec![gpu(0, 24 * GIB)]);
        loaded(&mut l, "a", 0, 15 * GIB, now);
        l.pin(&name("a"), 15 * GIB).unwrap();
        let err = l.pin(&name("b"), 10 * GIB).unwrap_err();
        assert!(err.contains("unpin one first"), "{err}");
        assert!(!l.entry(&name("b")).is_some_and(|e| e.pinned));
        assert!(l.pin(&name("huge"), 30 * GIB).unwrap_err().contains("partly offloaded"));
    }

    #[test]
    fn reconcile_notices_ollama_loading_and_dropping_models() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB)]);
        loaded(&mut l, "mine", 0, 4 * GIB, now);
        l.pin(&name("mine"), 4 * GIB).unwrap();
        let ps = |n: &str, b: u64| PsModel {
            name: n.into(),
            model: n.into(),
            size: b,
            size_vram: b,
            digest: String::new(),
            details: Default::default(),
            expires_at: "2318-01-01T00:00:00Z".into(),
            context_length: None,
        };
        let seen = l.reconcile(&[ps("other:latest", 5 * GIB)], None, now);
        assert!(seen.contains(&Observed::ExternalLoad(name("other"))));
        assert!(seen.contains(&Observed::ExternalUnload { model: name("mine"), pinned: true }));
        assert_eq!(l.missing_pins(), vec![name("mine")]);
        assert_eq!(l.models_bytes(0), 5 * GIB);
    }

    #[test]
    fn threshold_unloads_idle_models_down_to_it() {
        let t0 = Instant::now();
        let mut cfg = config(Strategy::Largest);
        cfg.unload_threshold_pct = 50.0;
        cfg.max_loaded = 10;
        let mut l = Ledger::new(cfg, vec![gpu(0, 20 * GIB)]);
        loaded(&mut l, "a", 0, 4 * GIB, t0);
        loaded(&mut l, "b", 0, 6 * GIB, t0);
        loaded(&mut l, "c", 0, 3 * GIB, t0);
        // 13 of 20 GiB used, threshold 10 GiB: the largest idle model goes.
        assert_eq!(l.threshold_victims(t0), vec![name("b")]);
    }

    #[test]
    fn threshold_keeps_the_hottest_model_even_when_it_alone_is_over() {
        let t0 = Instant::now();
        let mut cfg = config(Strategy::Lru);
        cfg.unload_threshold_pct = 50.0;
        let mut l = Ledger::new(cfg, vec![gpu(0, 20 * GIB)]);
        loaded(&mut l, "big", 0, 15 * GIB, t0);
        assert!(l.threshold_victims(t0).is_empty());
        loaded(&mut l, "small", 0, 2 * GIB, t0 + Duration::from_secs(1));
        // "small" is the most recently used now; "big" may go.
        assert_eq!(l.threshold_victims(t0 + Duration::from_secs(2)), vec![name("big")]);
    }

    #[test]
    fn idle_ttl_uses_the_client_override() {
        let t0 = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB)]);
        loaded(&mut l, "a", 0, 2 * GIB, t0);
        loaded(&mut l, "b", 0, 2 * GIB, t0);
        l.set_idle_ttl(&name("b"), Some(Duration::ZERO));
        assert_eq!(l.idle_victims(t0 + Duration::from_secs(1)), vec![name("b")]);
        assert_eq!(l.idle_victims(t0 + Duration::from_secs(601)), vec![name("a"), name("b")]);
    }

    #[test]
    fn cost_evicts_cheap_rarely_used_models_first() {
        let t0 = Instant::now();
        let mut l = Ledger::new(config(Strategy::Cost), vec![gpu(0, 24 * GIB)]);
        loaded(&mut l, "slow", 0, 8 * GIB, t0);
        loaded(&mut l, "fast", 0, 8 * GIB, t0);
        for _ in 0..5 {
            l.acquire(&name("slow"), t0);
            l.release(&name("slow"), t0);
        }
        l.acquire(&name("fast"), t0);
        l.release(&name("fast"), t0);
        let order: Vec<String> = l.eviction_order(None, t0).iter().map(|e| e.name.to_string()).collect();
        assert_eq!(order, ["fast:latest", "slow:latest"]);
    }
}
