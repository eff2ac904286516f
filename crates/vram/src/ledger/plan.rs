//! Admission planning: whether a model can be served now and, when it is not loaded, how to make room for it.
//!
//! `Ledger::plan` predicts where Ollama will put the model (whole on one GPU, or split across several), checks every
//! GPU it lands on against Switchyard's budget, and otherwise picks the cheapest idle unpinned models to evict (by the
//! configured strategy), runs a model too large for the GPUs partly offloaded, or answers that the request must wait
//! or be refused. It only reads the ledger; nothing here changes it or does I/O.

use super::{Entry, Ledger, Residency};
use crate::policy::keep_value;
use crate::shares::Shares;
use std::cell::OnceCell;
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::gpu::spread_evenly;
use switchyard_core::size::Bytes;
use tokio::time::Instant;

/// When other models are loaded, Ollama loads a new one only if it fits in this share of the free memory it
/// believes it has; otherwise it evicts by its own rules. Admission applies the same rule so Ollama never evicts
/// behind Switchyard's back.
pub const OLLAMA_FIT_FRACTION: f64 = 0.8;

/// Other processes' memory tolerated under a partly offloaded model whose layer count is unknown (so that Ollama,
/// not Switchyard, decides how many layers go to the GPU): Ollama keeps about this much of the GPU free when it
/// offloads (CUDA context and scratch space).
pub const OFFLOAD_FOREIGN_TOLERANCE: u64 = 256 * 1024 * 1024;

/// GPU memory left free beside the layers Switchyard asks Ollama to put on the GPU (`num_gpu`) for a partly offloaded
/// model: CUDA context and scratch space, as Ollama leaves when it sizes an offload itself.
pub const OFFLOAD_RESERVE: u64 = 512 * 1024 * 1024;

/// How far below its estimate a model's measured size may turn out (estimates add a fixed overhead and run high,
/// most for small models). Where a model goes depends on its size once it must be split across GPUs, so admission
/// covers every size within this tolerance until a load has measured it.
pub const ESTIMATE_TOLERANCE: f64 = 0.25;

/// The admission decision for one model.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Loaded: serve at once.
    Ready,
    /// Being loaded for another request: wait for that load (single flight).
    Join,
    /// Fits as is: load it; it will take `shares` (where Ollama puts it: one GPU, or split across several).
    Load { shares: Shares, offload: bool },
    /// Unload `victims` first; the model will then take `shares`.
    Evict { shares: Shares, victims: Vec<ModelName>, offload: bool },
    /// Room will come when busy models finish or unloads complete. `blockers` are the busy models whose requests
    /// must finish first: new requests for them should queue behind this one, or they would never drain.
    /// `recheck`: the wait is a choice, not a necessity (a model the strategy would rather evict is busy, and an
    /// idle one that is worth more could go now); plan again after this long at the latest.
    Wait { reason: WaitReason, blockers: Vec<ModelName>, recheck: Option<Duration> },
    /// No room can be made: pinned models hold it.
    Refuse { reason: String },
}

/// Why a request must wait, kept as data and put into words only when shown: scoring plans every model for every
/// decision and reads none of it.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitReason {
    /// The model itself is being unloaded.
    Unloading(ModelName),
    /// Another model (`other`) is loading or unloading (`state`); nothing is placed until that settles.
    Settling { model: ModelName, other: ModelName, state: &'static str },
    /// Busy models must finish before there is room for the model.
    Busy(ModelName),
    /// The strategy would rather evict the `busy` models than the idle `spared` ones.
    Preferred { busy: Vec<ModelName>, spared: Vec<ModelName>, strategy: &'static str },
    /// Too large for the budget: it can run partly offloaded, alone, once busy models finish.
    Offload(Offload),
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |list: &[ModelName]| list.iter().map(ModelName::as_str).collect::<Vec<_>>().join(", ");
        match self {
            WaitReason::Unloading(model) => write!(f, "{model} is being unloaded"),
            WaitReason::Settling { model, other, state } => {
                write!(f, "waiting for {other} ({state}) before placing {model}")
            }
            WaitReason::Busy(model) => write!(f, "waiting for busy models to finish before loading {model}"),
            WaitReason::Preferred { busy, spared, strategy } => write!(
                f,
                "waiting for {} to finish rather than evict {} (worth more by the {strategy} strategy)",
                names(busy),
                names(spared)
            ),
            WaitReason::Offload(offload) => write!(f, "{offload}; waiting for busy models to finish"),
        }
    }
}

/// A model too large for the GPU budget, as its refusal or wait explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Offload {
    model: ModelName,
    need: u64,
    budget: u64,
    several_gpus: bool,
    /// Other processes' memory on the GPUs.
    foreign: u64,
}

impl std::fmt::Display for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} needs {} but the GPU budget is {}", self.model, Bytes(self.need), Bytes(self.budget))?;
        if self.several_gpus {
            f.write_str(" over all GPUs")?;
        }
        if self.foreign > 0 {
            write!(f, " ({} of it used by other processes)", Bytes(self.foreign))?;
        }
        f.write_str(", so it could only run partly offloaded to the CPU")
    }
}

/// The ledger's state as planning sees it at one instant (`Ledger::room`).
#[derive(Debug)]
pub struct Room<'a> {
    /// The ledger it was taken from.
    ledger: &'a Ledger,
    now: Instant,
    /// Bytes held or reserved by models, per GPU in the ledger's GPU order.
    models: Vec<u64>,
    /// Models loaded or loading.
    loaded: usize,
    /// A model being loaded or unloaded, if any.
    changing: Option<&'a Entry>,
    /// Eviction order per GPU, then over all GPUs; sorted on first use.
    orders: OnceCell<Vec<Vec<&'a Entry>>>,
    /// The same orders with busy models in them, as if their requests had finished.
    preferred: OnceCell<Vec<Vec<&'a Entry>>>,
}

impl<'a> Room<'a> {
    fn orders(&self) -> &[Vec<&'a Entry>] {
        self.orders.get_or_init(|| self.sorted(false))
    }

    fn preferred_orders(&self) -> &[Vec<&'a Entry>] {
        self.preferred.get_or_init(|| self.sorted(true))
    }

    fn sorted(&self, busy_too: bool) -> Vec<Vec<&'a Entry>> {
        let ledger = self.ledger;
        let mut orders: Vec<Vec<&Entry>> =
            ledger.gpus.iter().map(|g| ledger.order(Some(g.index), self.now, busy_too)).collect();
        orders.push(ledger.order(None, self.now, busy_too));
        orders
    }
}

/// Victims that make room for a model, and where it then goes.
#[derive(Debug)]
struct Eviction<'a> {
    shares: Shares,
    victims: Vec<&'a Entry>,
    /// The victims' keep values summed (lower is cheaper to lose).
    value: f64,
}

impl Eviction<'_> {
    /// Fewer victims, then less value lost.
    fn better_than(&self, other: &Eviction<'_>) -> bool {
        self.victims.len() < other.victims.len()
            || (self.victims.len() == other.victims.len() && self.value < other.value)
    }

    fn includes(&self, entry: &Entry) -> bool {
        self.victims.iter().any(|v| std::ptr::eq(*v, entry))
    }

    fn into_plan(self) -> Plan {
        Plan::Evict {
            shares: self.shares,
            victims: self.victims.iter().map(|v| v.name.clone()).collect(),
            offload: false,
        }
    }
}

impl Ledger {
    /// What planning reads, computed once: scoring plans every model in the catalog against the same state, and
    /// walking all entries per GPU per candidate would dominate its cost.
    pub fn room(&self, now: Instant) -> Room<'_> {
        let mut models = vec![0u64; self.gpus.len()];
        let mut loaded = 0;
        let mut changing = None;
        for e in self.entries.values() {
            if let Some(shares) = e.residency.held() {
                loaded += 1;
                for (gpu, bytes) in shares.iter() {
                    if let Some(i) = self.gpus.iter().position(|g| g.index == gpu) {
                        models[i] += bytes;
                    }
                }
            }
            if changing.is_none() && matches!(e.residency, Residency::Unloading { .. } | Residency::Loading { .. }) {
                changing = Some(e);
            }
        }
        Room { ledger: self, now, models, loaded, changing, orders: OnceCell::new(), preferred: OnceCell::new() }
    }

    /// Bytes held on the GPU at position `i` by Ollama's models once `evicted` are gone.
    fn models_bytes_without(&self, room: &Room<'_>, i: usize, evicted: &[&Entry]) -> u64 {
        let gpu = self.gpus[i].index;
        let freed: u64 = evicted.iter().map(|e| e.residency.on(gpu)).sum();
        room.models[i].saturating_sub(freed)
    }

    /// Where Ollama itself would put a model of `need` bytes once `evicted` are gone, by its own count of free memory
    /// (which ignores other processes), within 80% of it when other models stay loaded: whole on the GPU with the
    /// most, or, when it fits on no single GPU, split evenly across them (`spread_evenly`). `None` when Ollama would
    /// not place it on the GPUs at all.
    pub(super) fn ollama_placement(&self, room: &Room<'_>, need: u64, evicted: &[&Entry]) -> Option<Shares> {
        let (most, most_usable) = self.most_room(room, evicted)?;
        if most_usable >= need {
            return Some(Shares::one(self.gpus[most].index, need));
        }
        if self.gpus.len() < 2 {
            return None;
        }
        let usable: Vec<(u32, u64)> =
            (0..self.gpus.len()).map(|i| (self.gpus[i].index, self.usable(room, i, evicted))).collect();
        spread_evenly(&usable, need).map(Shares::from_pairs)
    }

    /// What Ollama would offer a new model on the GPU at position `i` once `evicted` are gone: the memory it believes
    /// free there, or 80% of it when other models stay loaded.
    fn usable(&self, room: &Room<'_>, i: usize, evicted: &[&Entry]) -> u64 {
        let alone = room.loaded.saturating_sub(evicted.len()) == 0;
        let believed_free = self.gpus[i].total.saturating_sub(self.models_bytes_without(room, i, evicted));
        if alone { believed_free } else { (believed_free as f64 * OLLAMA_FIT_FRACTION) as u64 }
    }

    /// The GPU (position) where Ollama would put a model that fits whole, and what it offers there.
    fn most_room(&self, room: &Room<'_>, evicted: &[&Entry]) -> Option<(usize, u64)> {
        (0..self.gpus.len())
            .map(|i| (i, self.usable(room, i, evicted)))
            .max_by_key(|&(i, usable)| (usable, std::cmp::Reverse(self.gpus[i].index)))
    }

    /// Where the model would land once `evicted` are gone, if every GPU it lands on then stays within Switchyard's
    /// budget (which does count other processes' memory). A split model must fit each GPU's share in that GPU's
    /// budget: fit is decided per GPU, never on the sum.
    ///
    /// Unless its size was `measured`, a model Ollama would split might turn out small enough to go whole on the GPU
    /// Ollama believes has the most room (see [`ESTIMATE_TOLERANCE`]): that GPU must then hold all Ollama offers there
    /// without running out of memory.
    fn admissible(&self, room: &Room<'_>, need: u64, evicted: &[&Entry], measured: bool) -> Option<Shares> {
        let fits = |i: usize, bytes: u64| {
            let committed = self.models_bytes_without(room, i, evicted) + self.gpus[i].foreign;
            committed.saturating_add(bytes) <= self.budget(self.gpus[i].index)
        };
        let shares = self.ollama_placement(room, need, evicted)?;
        for (gpu, bytes) in shares.iter() {
            let i = self.gpus.iter().position(|g| g.index == gpu)?;
            if !fits(i, bytes) {
                return None;
            }
        }
        if shares.is_split() && !measured {
            let (most, most_usable) = self.most_room(room, evicted)?;
            let smallest = (need as f64 * (1.0 - ESTIMATE_TOLERANCE)) as u64;
            // Whole there, it would take up to all Ollama offers: that must not run the GPU out of memory (the budget
            // is for where the model is expected to go; this is only where it might).
            let committed = self.models_bytes_without(room, most, evicted) + self.gpus[most].foreign;
            if smallest <= most_usable && committed.saturating_add(most_usable) > self.gpus[most].total {
                return None;
            }
        }
        Some(shares)
    }

    /// Decides how to admit `name`, which needs `need` bytes of VRAM when loaded.
    pub fn plan(&self, name: &ModelName, need: u64, now: Instant) -> Plan {
        self.plan_in(&self.room(now), name, need)
    }

    /// `plan` against a `room` taken from this ledger (for planning many models at once).
    pub fn plan_in<'a>(&'a self, room: &Room<'a>, name: &ModelName, need: u64) -> Plan {
        self.plan_waited_in(room, name, need, Duration::MAX)
    }

    /// `plan` for a request that has already waited `waited`. When the model the strategy would rather evict is busy
    /// and evicting an idle one instead would lose more (a model used more often, or more victims), the request
    /// waits for the busy one, but no longer than reloading the spared models would take: waiting longer would cost
    /// more than the reload it saves (the ski-rental rule). `plan` and `plan_in` have no patience left: they
    /// answer what could be done now.
    pub fn plan_waited(&self, name: &ModelName, need: u64, now: Instant, waited: Duration) -> Plan {
        self.plan_waited_in(&self.room(now), name, need, waited)
    }

    fn plan_waited_in<'a>(&'a self, room: &Room<'a>, name: &ModelName, need: u64, waited: Duration) -> Plan {
        debug_assert!(std::ptr::eq(room.ledger, self), "a room is only valid for the ledger it was taken from");
        match self.entries.get(name).map(|e| &e.residency) {
            Some(Residency::Loaded { .. }) => return Plan::Ready,
            Some(Residency::Loading { .. }) => return Plan::Join,
            Some(Residency::Unloading { .. }) => {
                return Plan::Wait { reason: WaitReason::Unloading(name.clone()), blockers: Vec::new(), recheck: None };
            }
            Some(Residency::Absent) | None => {}
        }
        // While a load or an unload is under way, Ollama's view of free memory is changing under us (a loading
        // model's real size is not known yet): place nothing until it is confirmed, or Ollama might put the model on
        // another GPU than predicted. Ollama loads one model at a time anyway.
        if let Some(busy) = room.changing {
            return Plan::Wait {
                reason: WaitReason::Settling {
                    model: name.clone(),
                    other: busy.name.clone(),
                    state: busy.residency.as_str(),
                },
                blockers: Vec::new(),
                recheck: None,
            };
        }
        let max = self.config.max_loaded;
        let measured = self.entries.get(name).is_some_and(|e| e.measured);
        // 1. Fits as is, where Ollama will put it.
        if room.loaded < max
            && let Some(shares) = self.admissible(room, need, &[], measured)
        {
            return Plan::Load { shares, offload: false };
        }
        let total_budget: u64 = self.gpus.iter().map(|g| self.budget(g.index)).sum();
        // Too big for the GPUs, or, on one GPU, for what other processes leave of it even alone: it can only run
        // partly offloaded (on one GPU beside other processes only with a layer count to size it by).
        let layers_known = self.entries.get(name).is_some_and(|e| e.layers.is_some());
        let alone_room = match self.gpus.as_slice() {
            [gpu] if layers_known => self.budget(gpu.index).saturating_sub(gpu.foreign),
            _ => total_budget,
        };
        if need > alone_room {
            return self.plan_offload(room, name, need, total_budget);
        }
        // 2. Fits after evicting idle unpinned models (on several GPUs when it must be split), and what the strategy
        //    would evict if the busy models were idle too.
        let now_plan = self.cheapest_eviction(room, need, measured, room.orders());
        // Needed only to wait for busy models: with patience left, or with no other way in (not for `plan_in`'s
        // answer of what can be done now, which scoring asks for every model).
        let preferred = if now_plan.is_none() || waited < Duration::MAX {
            self.cheapest_eviction(room, need, measured, room.preferred_orders())
        } else {
            None
        };
        match (now_plan, preferred) {
            (Some(now_plan), Some(preferred))
                if preferred.better_than(&now_plan) && preferred.victims.iter().any(|v| v.in_flight > 0) =>
            {
                let spared: Vec<&Entry> = now_plan.victims.iter().copied().filter(|v| !preferred.includes(v)).collect();
                let patience: Duration =
                    spared.iter().map(|v| v.reload_wait()).fold(Duration::ZERO, Duration::saturating_add);
                if waited >= patience {
                    return now_plan.into_plan();
                }
                let names = |list: &mut dyn Iterator<Item = &&Entry>| list.map(|e| e.name.clone()).collect();
                Plan::Wait {
                    reason: WaitReason::Preferred {
                        busy: names(&mut preferred.victims.iter().filter(|v| v.in_flight > 0)),
                        spared: names(&mut spared.iter()),
                        strategy: self.config.strategy.as_str(),
                    },
                    blockers: Vec::new(),
                    recheck: Some(patience - waited),
                }
            }
            (Some(now_plan), _) => now_plan.into_plan(),
            (None, Some(preferred)) => Plan::Wait {
                reason: WaitReason::Busy(name.clone()),
                blockers: preferred.victims.iter().filter(|v| v.in_flight > 0).map(|v| v.name.clone()).collect(),
                recheck: None,
            },
            (None, None) => self.blocked(room, name, need, measured),
        }
    }

    /// The cheapest set of victims from `orders` (per GPU, then global) after which the model fits where Ollama will
    /// put it: from one GPU's order, or in global order; the fewest victims, then the least valuable ones.
    fn cheapest_eviction<'a>(
        &'a self,
        room: &Room<'a>,
        need: u64,
        measured: bool,
        orders: &[Vec<&'a Entry>],
    ) -> Option<Eviction<'a>> {
        let max = self.config.max_loaded;
        let global: &[&Entry] = orders.last().map_or(&[], Vec::as_slice);
        let mut best: Option<Eviction<'a>> = None;
        for order in orders {
            let mut victims: Vec<&Entry> = Vec::new();
            let mut placed = None;
            let mut candidates = order.iter().chain(global.iter()).copied();
            loop {
                if room.loaded - victims.len() < max {
                    placed = self.admissible(room, need, &victims, measured);
                    if placed.is_some() {
                        break;
                    }
                }
                match candidates.find(|c| victims.iter().all(|v| !std::ptr::eq(*v, *c))) {
                    Some(c) => victims.push(c),
                    None => break,
                }
            }
            let Some(shares) = placed else { continue };
            let value = victims.iter().map(|v| keep_value(self.config.strategy, &self.facts(v, room.now))).sum();
            let candidate = Eviction { shares, victims, value };
            if best.as_ref().is_none_or(|b| candidate.better_than(b)) {
                best = Some(candidate);
            }
        }
        best
    }

    /// Too large for the GPUs' budgets together (or, on one GPU, for what other processes leave of it): Ollama can
    /// still run it with part of it in CPU memory, but only alone on the GPUs. Switchyard allows that on a single-GPU
    /// machine. When the model's layer count is known, it takes the budget less other processes' memory and
    /// Switchyard asks for as many GPU layers as fit there ([`Ledger::offload_layers`]); otherwise Ollama sizes the
    /// offload itself without counting other processes, so the GPU must not be shared. On several GPUs Ollama would
    /// spread the offloaded layers over all of them, which Switchyard does not place.
    fn plan_offload<'a>(&'a self, room: &Room<'a>, name: &ModelName, need: u64, total_budget: u64) -> Plan {
        let foreign: u64 = self.gpus.iter().map(|g| g.foreign).sum();
        let why =
            || Offload { model: name.clone(), need, budget: total_budget, several_gpus: self.gpus.len() > 1, foreign };
        if self.gpus.len() != 1 {
            return Plan::Refuse {
                reason: format!(
                    "{}; Switchyard places offloaded models on single-GPU machines only (Ollama would spread the \
                     offload over every GPU). Use a smaller quantization or context",
                    why()
                ),
            };
        }
        let layers_known = self.entries.get(name).is_some_and(|e| e.layers.is_some());
        if foreign > OFFLOAD_FOREIGN_TOLERANCE && !layers_known {
            return Plan::Refuse {
                reason: format!(
                    "{}; its layer count is unknown, so Switchyard cannot size the GPU part around the other \
                     processes, and Ollama sizes an offload without counting them: the load would run the GPU out of \
                     memory",
                    why()
                ),
            };
        }
        let mut waitable = false;
        for gpu in &self.gpus {
            let residents: Vec<&Entry> = self.entries.values().filter(|e| e.residency.on(gpu.index) > 0).collect();
            if residents.iter().any(|e| e.pinned) {
                continue;
            }
            if residents.iter().any(|e| !e.evictable()) {
                waitable = true;
                continue;
            }
            let mut victims: Vec<ModelName> = residents.iter().map(|e| e.name.clone()).collect();
            if room.loaded - victims.len() >= self.config.max_loaded {
                let global = room.orders().last().map_or(&[][..], Vec::as_slice);
                match global.iter().find(|e| !victims.contains(&e.name)) {
                    Some(e) => victims.push(e.name.clone()),
                    None => continue,
                }
            }
            let room_left =
                if layers_known { self.budget(gpu.index).saturating_sub(gpu.foreign) } else { self.budget(gpu.index) };
            let shares = Shares::one(gpu.index, room_left);
            return if victims.is_empty() {
                Plan::Load { shares, offload: true }
            } else {
                Plan::Evict { shares, victims, offload: true }
            };
        }
        if waitable {
            let blockers = self.busy_on(None);
            Plan::Wait { reason: WaitReason::Offload(why()), blockers, recheck: None }
        } else {
            Plan::Refuse { reason: format!("{}, and pinned models occupy the GPU", why()) }
        }
    }

    /// Unpinned models with requests in flight on any GPU of `gpus` (on every GPU when `None`).
    fn busy_on(&self, gpus: Option<&Shares>) -> Vec<ModelName> {
        self.entries
            .values()
            .filter(|e| !e.pinned && e.in_flight > 0)
            .filter(|e| gpus.is_none_or(|s| s.gpus().any(|g| e.residency.on(g) > 0)))
            .map(|e| e.name.clone())
            .collect()
    }

    /// No plan: wait when busy or unloading models would make room, refuse when only pinned ones or other
    /// processes are in the way.
    fn blocked(&self, room: &Room<'_>, name: &ModelName, need: u64, measured: bool) -> Plan {
        let releasable: Vec<&Entry> =
            self.entries.values().filter(|e| !e.pinned && e.residency.held().is_some()).collect();
        if let Some(target) = self.admissible(room, need, &releasable, measured) {
            return Plan::Wait {
                reason: WaitReason::Busy(name.clone()),
                blockers: self.busy_on(Some(&target)),
                recheck: None,
            };
        }
        let pinned: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.pinned && e.residency.held().is_some())
            .map(|e| e.name.to_string())
            .collect();
        let foreign: u64 = self.gpus.iter().map(|g| g.foreign).sum();
        let target = match self.ollama_placement(room, need, &releasable) {
            Some(shares) => format!(
                " Ollama would place it on {shares} (by the free memory it counts itself, which leaves out other \
                 processes)."
            ),
            None => " Ollama loads a model beside others only within 80% of the memory it sees free, and pinned models stay."
                .to_string(),
        };
        Plan::Refuse {
            reason: format!(
                "{name} needs {}; pinned models ({}) and other processes ({}) leave too little room.{target} Unpin a \
                 model, raise vram.limit, or free GPU memory",
                Bytes(need),
                if pinned.is_empty() { "none".to_string() } else { pinned.join(", ") },
                Bytes(foreign)
            ),
        }
    }

    /// Layers of `name` (`need` bytes in all) to put on the GPU when it runs partly offloaded within `shares`: as
    /// many whole layers as fit beside [`OFFLOAD_RESERVE`], a layer being `need / (layers + 1)` (the output layer
    /// counts as one). `None` when its layer count is unknown: Ollama then decides.
    pub fn offload_layers(&self, name: &ModelName, need: u64, shares: &Shares) -> Option<u32> {
        let layers = self.entries.get(name)?.layers?;
        let per_layer = need.div_ceil(layers.saturating_add(1)).max(1);
        let fit = (shares.total().saturating_sub(OFFLOAD_RESERVE) / per_layer).min(layers);
        Some(u32::try_from(fit).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::{GIB, config, gpu, loaded, name};
    use switchyard_core::config::Strategy;
    use switchyard_core::gpu::GpuSnapshot;

    #[test]
    fn a_fitting_model_loads_on_the_gpu_with_most_room() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB), gpu(1, 24 * GIB)]);
        loaded(&mut l, "a", 0, 10 * GIB, now);
        assert_eq!(l.plan(&name("b"), 5 * GIB, now), Plan::Load { shares: Shares::one(1, 5 * GIB), offload: false });
        assert_eq!(l.plan(&name("a"), 10 * GIB, now), Plan::Ready);
    }

    #[test]
    fn fit_is_per_gpu_not_on_the_sum() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 16 * GIB), gpu(1, 16 * GIB)]);
        loaded(&mut l, "a", 0, 10 * GIB, now);
        loaded(&mut l, "b", 1, 10 * GIB, now);
        // 12 GiB free in total, 6 per GPU, of which Ollama offers 80% beside other models: 4.8 GiB per GPU. A 9 GiB
        // model is split 4.5 + 4.5, each share within its GPU.
        let split = Shares::from_pairs([(0, 9 * GIB / 2), (1, 9 * GIB / 2)]);
        assert_eq!(l.plan(&name("c"), 9 * GIB, now), Plan::Load { shares: split, offload: false });
        // A 10 GiB model fits the 12 GiB sum but no per-GPU split: one model must go, and it then goes whole on the
        // GPU that was freed.
        match l.plan(&name("c"), 10 * GIB, now) {
            Plan::Evict { victims, shares, .. } => {
                assert_eq!(victims.len(), 1);
                assert!(!shares.is_split(), "{shares}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_model_that_fits_on_no_single_gpu_is_split_evenly_like_ollama_does() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB), gpu(1, 24 * GIB)]);
        let split = Shares::from_pairs([(0, 20 * GIB), (1, 20 * GIB)]);
        assert_eq!(l.plan(&name("big"), 40 * GIB, now), Plan::Load { shares: split.clone(), offload: false });

        // Idle models on both GPUs: both go, since beside any other model Ollama would offer only 80% of the rest.
        loaded(&mut l, "a", 0, 10 * GIB, now);
        loaded(&mut l, "b", 1, 10 * GIB, now);
        match l.plan(&name("big"), 40 * GIB, now) {
            Plan::Evict { shares, mut victims, offload: false } => {
                victims.sort();
                assert_eq!(victims, vec![name("a"), name("b")]);
                assert_eq!(shares, split);
            }
            other => panic!("{other:?}"),
        }
        // With one of them busy the request waits for that one, and only that one.
        l.acquire(&name("b"), now);
        assert_eq!(
            l.plan(&name("big"), 40 * GIB, now),
            Plan::Wait { reason: WaitReason::Busy(name("big")), blockers: vec![name("b")], recheck: None }
        );
        l.release(&name("b"), now);

        // Once loaded, each GPU counts its own share, in the proportions measured by Ollama's size.
        for victim in ["a", "b"] {
            assert!(l.begin_unload(&name(victim), false));
            l.finish_unload(&name(victim));
        }
        l.begin_load(&name("big"), split, None, now);
        l.finish_load(&name("big"), Ok((9.0, None)), now);
        assert_eq!((l.models_bytes(0), l.models_bytes(1)), (20 * GIB, 20 * GIB));
        assert_eq!(l.plan(&name("big"), 40 * GIB, now), Plan::Ready);
    }

    #[test]
    fn each_share_of_a_split_must_fit_its_own_gpu_budget() {
        let now = Instant::now();
        let mut crowded = gpu(0, 24 * GIB);
        crowded.foreign = 6 * GIB;
        let l = Ledger::new(config(Strategy::Lru), vec![crowded, gpu(1, 24 * GIB)]);
        // 42 GiB of budget is left in all, but Ollama, not seeing the other process, would put 20 GiB on GPU 0,
        // where only 18 GiB are left.
        match l.plan(&name("big"), 40 * GIB, now) {
            Plan::Refuse { reason } => assert!(reason.contains("GPU 0 (") && reason.contains("GPU 1 ("), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A model Ollama would split within both budgets is fine.
        let fits = l.plan(&name("smaller"), 34 * GIB, now);
        assert_eq!(fits, Plan::Load { shares: Shares::from_pairs([(0, 17 * GIB), (1, 17 * GIB)]), offload: false });
    }

    #[test]
    fn an_estimated_size_near_one_gpus_room_must_fit_either_way_ollama_might_place_it() {
        let now = Instant::now();
        let mut crowded = gpu(0, 12 * GIB);
        crowded.foreign = 3 * GIB;
        let mut l = Ledger::new(config(Strategy::Lru), vec![crowded, gpu(1, 12 * GIB)]);
        // Estimated at 14 GiB, it would be split 7 + 7, which fits; but at 12 GiB or less Ollama would put it whole on
        // GPU 0 (it does not see the other process there), which would not.
        l.note_estimate(&name("m"), 14 * GIB);
        assert!(matches!(l.plan(&name("m"), 14 * GIB, now), Plan::Refuse { .. }));
        // Measured at 14 GiB, its place is known.
        l.note_measurement(&name("m"), None, Some(14 * GIB));
        let split = Shares::from_pairs([(0, 7 * GIB), (1, 7 * GIB)]);
        assert_eq!(l.plan(&name("m"), 14 * GIB, now), Plan::Load { shares: split, offload: false });

        // With headroom (budgets below the GPUs' size) and no other process, a model that might go whole would still
        // fit the GPU's memory: it is admitted, not refused for ever for want of a measurement.
        let mut cfg = config(Strategy::Lru);
        cfg.headroom = GIB / 2;
        let l = Ledger::new(cfg, vec![gpu(0, 24 * GIB), gpu(1, 24 * GIB)]);
        let split = Shares::from_pairs([(0, 14 * GIB), (1, 14 * GIB)]);
        assert_eq!(l.plan(&name("m"), 28 * GIB, now), Plan::Load { shares: split, offload: false });
    }

    #[test]
    fn eviction_follows_the_strategy_and_spares_pinned_and_busy_models() {
        let t0 = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB)]);
        loaded(&mut l, "old", 0, 6 * GIB, t0);
        loaded(&mut l, "pinned", 0, 6 * GIB, t0);
        loaded(&mut l, "busy", 0, 6 * GIB, t0);
        l.pin(&name("pinned"), 6 * GIB).unwrap();
        let later = t0 + Duration::from_secs(10);
        l.acquire(&name("busy"), later);
        l.acquire(&name("old"), t0 + Duration::from_secs(1));
        l.release(&name("old"), t0 + Duration::from_secs(1));
        // At max loaded (3): one victim is needed and only "old" qualifies.
        assert_eq!(
            l.plan(&name("new"), 4 * GIB, later),
            Plan::Evict { shares: Shares::one(0, 4 * GIB), victims: vec![name("old")], offload: false }
        );
        // With "old" busy too, the request must wait for a busy model.
        l.acquire(&name("old"), later);
        assert!(matches!(l.plan(&name("new"), 4 * GIB, later), Plan::Wait { .. }));
    }

    #[test]
    fn a_busy_model_the_strategy_would_evict_is_waited_for_no_longer_than_a_reload_of_the_one_spared() {
        let t0 = Instant::now();
        let mut cfg = config(Strategy::Cost);
        cfg.max_loaded = 2;
        let mut l = Ledger::new(cfg, vec![gpu(0, 24 * GIB)]);
        // "hot" took 4 s to load and is used often; "rare" was used once and is serving that request now.
        l.begin_load(&name("hot"), Shares::one(0, 6 * GIB), None, t0);
        let loaded_at = t0 + Duration::from_secs(4);
        l.finish_load(&name("hot"), Ok((4.0, None)), loaded_at);
        for _ in 0..10 {
            l.acquire(&name("hot"), loaded_at);
            l.release(&name("hot"), loaded_at);
        }
        loaded(&mut l, "rare", 0, 6 * GIB, loaded_at);
        l.acquire(&name("rare"), loaded_at);
        let evict =
            |victim: &str| Plan::Evict { shares: Shares::one(0, 4 * GIB), victims: vec![name(victim)], offload: false };
        // Room for "new" means one victim (two models at most). Only "hot" is idle, but the strategy would rather
        // lose "rare": wait for it, as long as reloading "hot" would take, without holding back its requests.
        match l.plan_waited(&name("new"), 4 * GIB, loaded_at, Duration::ZERO) {
            Plan::Wait { reason, blockers, recheck } => {
                let reason = reason.to_string();
                assert!(reason.contains("rare") && reason.contains("hot") && reason.contains("cost"), "{reason}");
                assert!(blockers.is_empty(), "a model waited for by choice is not drained: {blockers:?}");
                assert_eq!(recheck, Some(Duration::from_secs(4)));
            }
            other => panic!("{other:?}"),
        }
        let part = l.plan_waited(&name("new"), 4 * GIB, loaded_at, Duration::from_secs(1));
        assert!(matches!(part, Plan::Wait { recheck: Some(d), .. } if d == Duration::from_secs(3)), "{part:?}");
        // Waited as long as the reload it would save: evict "hot" after all.
        assert_eq!(l.plan_waited(&name("new"), 4 * GIB, loaded_at, Duration::from_secs(4)), evict("hot"));
        // `plan` (what the scorer asks) answers what can be done now.
        assert_eq!(l.plan(&name("new"), 4 * GIB, loaded_at), evict("hot"));
        // Once "rare" has finished, it is the one to go.
        l.release(&name("rare"), loaded_at);
        assert_eq!(l.plan_waited(&name("new"), 4 * GIB, loaded_at, Duration::ZERO), evict("rare"));
    }

    #[test]
    fn with_every_model_busy_only_the_strategys_victims_are_drained() {
        let t0 = Instant::now();
        let mut cfg = config(Strategy::Lfu);
        cfg.max_loaded = 2;
        let mut l = Ledger::new(cfg, vec![gpu(0, 24 * GIB)]);
        loaded(&mut l, "hot", 0, 6 * GIB, t0);
        loaded(&mut l, "rare", 0, 6 * GIB, t0);
        for _ in 0..5 {
            l.acquire(&name("hot"), t0);
        }
        l.acquire(&name("rare"), t0);
        // One of the two must go; new requests for the frequent one are not held back for it.
        match l.plan_waited(&name("new"), 4 * GIB, t0, Duration::ZERO) {
            Plan::Wait { blockers, recheck: None, .. } => assert_eq!(blockers, vec![name("rare")]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wait_reasons_are_put_into_words_when_shown() {
        let offload = |several_gpus, foreign| Offload {
            model: name("big"),
            need: 45 * GIB,
            budget: 24 * GIB,
            several_gpus,
            foreign,
        };
        assert_eq!(
            WaitReason::Offload(offload(false, 0)).to_string(),
            "big:latest needs 45.0 GiB but the GPU budget is 24.0 GiB, so it could only run partly offloaded to the \
             CPU; waiting for busy models to finish"
        );
        assert_eq!(
            offload(true, 6 * GIB).to_string(),
            "big:latest needs 45.0 GiB but the GPU budget is 24.0 GiB over all GPUs (6.0 GiB of it used by other \
             processes), so it could only run partly offloaded to the CPU"
        );
        let preferred = WaitReason::Preferred {
            busy: vec![name("a"), name("b")],
            spared: vec![name("c")],
            strategy: Strategy::Cost.as_str(),
        };
        assert_eq!(
            preferred.to_string(),
            "waiting for a:latest, b:latest to finish rather than evict c:latest (worth more by the cost strategy)"
        );
        let settling = WaitReason::Settling { model: name("m"), other: name("o"), state: "loading" };
        assert_eq!(settling.to_string(), "waiting for o:latest (loading) before placing m:latest");
        assert_eq!(WaitReason::Unloading(name("m")).to_string(), "m:latest is being unloaded");
        assert_eq!(
            WaitReason::Busy(name("m")).to_string(),
            "waiting for busy models to finish before loading m:latest"
        );
    }

    #[test]
    fn only_pinned_models_in_the_way_is_a_refusal() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Cost), vec![gpu(0, 24 * GIB)]);
        loaded(&mut l, "p1", 0, 10 * GIB, now);
        loaded(&mut l, "p2", 0, 10 * GIB, now);
        l.pin(&name("p1"), 10 * GIB).unwrap();
        l.pin(&name("p2"), 10 * GIB).unwrap();
        match l.plan(&name("x"), 8 * GIB, now) {
            Plan::Refuse { reason } => assert!(reason.contains("p1") && reason.contains("Unpin"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_memory_counts_against_the_budget() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB)]);
        let snapshot = GpuSnapshot {
            gpus: vec![switchyard_core::gpu::GpuMemory {
                index: 0,
                name: "sim".into(),
                total_bytes: 24 * GIB,
                used_bytes: 20 * GIB,
                free_bytes: 4 * GIB,
            }],
            processes: vec![],
        };
        l.reconcile(&[], Some(&snapshot), now);
        assert_eq!(l.gpus()[0].foreign, 20 * GIB);
        assert!(matches!(l.plan(&name("m"), 6 * GIB, now), Plan::Refuse { .. }));
        assert_eq!(l.plan(&name("m"), 3 * GIB, now), Plan::Load { shares: Shares::one(0, 3 * GIB), offload: false });
    }

    #[test]
    fn ollamas_eighty_percent_rule_is_respected() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 20 * GIB)]);
        loaded(&mut l, "a", 0, 8 * GIB, now);
        // 12 GiB free, but Ollama only loads beside another model within 80% of it: 9.6 GiB.
        assert_eq!(l.plan(&name("b"), 9 * GIB, now), Plan::Load { shares: Shares::one(0, 9 * GIB), offload: false });
        assert!(matches!(l.plan(&name("c"), 10 * GIB, now), Plan::Evict { .. }));
    }

    #[test]
    fn too_large_models_run_alone_with_offload() {
        let now = Instant::now();
        let mut l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB)]);
        assert_eq!(l.plan(&name("big"), 45 * GIB, now), Plan::Load { shares: Shares::one(0, 24 * GIB), offload: true });
        loaded(&mut l, "small", 0, 3 * GIB, now);
        assert_eq!(
            l.plan(&name("big"), 45 * GIB, now),
            Plan::Evict { shares: Shares::one(0, 24 * GIB), victims: vec![name("small")], offload: true }
        );
        l.pin(&name("small"), 3 * GIB).unwrap();
        assert!(matches!(l.plan(&name("big"), 45 * GIB, now), Plan::Refuse { .. }));
    }

    #[test]
    fn with_its_layer_count_known_a_model_runs_partly_offloaded_beside_other_processes() {
        let now = Instant::now();
        let mut shared_gpu = gpu(0, 24 * GIB);
        shared_gpu.foreign = 6 * GIB;
        let mut l = Ledger::new(config(Strategy::Lru), vec![shared_gpu]);
        // 80 layers + the output layer = 81 parts of 0.5 GiB.
        let need = 81 * GIB / 2;
        l.note_layers(&name("big"), Some(80));
        let room = 18 * GIB;
        assert_eq!(l.plan(&name("big"), need, now), Plan::Load { shares: Shares::one(0, room), offload: true });
        // As many whole layers as fit in the room left beside the other process, less the reserve.
        let layers = l.offload_layers(&name("big"), need, &Shares::one(0, room)).unwrap();
        assert_eq!(u64::from(layers), (room - OFFLOAD_RESERVE) / (GIB / 2));
        assert!(u64::from(layers) * (GIB / 2) + OFFLOAD_RESERVE <= room);
        // A model that would fit the GPU but not beside the other process runs partly offloaded too, alone.
        l.note_layers(&name("mid"), Some(40));
        loaded(&mut l, "small", 0, 3 * GIB, now);
        assert_eq!(
            l.plan(&name("mid"), 20 * GIB, now),
            Plan::Evict { shares: Shares::one(0, room), victims: vec![name("small")], offload: true }
        );
        // Without a layer count, Switchyard cannot size it: refused (see below).
        assert!(matches!(l.plan(&name("other"), need, now), Plan::Refuse { .. }));
        assert_eq!(l.offload_layers(&name("other"), need, &Shares::one(0, room)), None);
    }

    #[test]
    fn offload_is_refused_on_several_gpus_and_beside_foreign_memory() {
        let now = Instant::now();
        let l = Ledger::new(config(Strategy::Lru), vec![gpu(0, 24 * GIB), gpu(1, 24 * GIB)]);
        assert!(
            matches!(l.plan(&name("big"), 50 * GIB, now), Plan::Refuse { reason } if reason.contains("single-GPU machines"))
        );
        let mut busy_gpu = gpu(0, 24 * GIB);
        busy_gpu.foreign = GIB;
        let l = Ledger::new(config(Strategy::Lru), vec![busy_gpu]);
        assert!(
            matches!(l.plan(&name("big"), 45 * GIB, now), Plan::Refuse { reason } if reason.contains("other processes"))
        );
    }
}
