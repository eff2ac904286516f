//! The fewest cold loads any scheduler could need for a trace on one GPU, knowing the whole trace in advance: a
//! dynamic program over every set of loaded models.
//!
//! Requests are served in arrival order, one at a time, within the same rules Switchyard keeps: at most `max_loaded`
//! models, the models plus other processes' memory within the budget, and a model loaded beside others only within
//! 80% of the memory Ollama believes free (it does not see other processes). Unloading is free; a load costs one. A
//! request no set of models could serve at its moment (its model does not fit at all) is counted and skipped. No
//! scheduler that serves requests in arrival order without running out of memory can load less. One that lets
//! queued requests for a loaded model go ahead of others can (under overload, queues batch requests per model), at
//! the cost of the waiting requests' latency: `fewest_loads_bounded` gives the fewest for a scheduler that serves
//! each request within a bound of its arrival, from a dynamic program over the loaded set and the requests waiting.

use crate::trace::TraceRequest;
use serde::Serialize;
use std::collections::HashMap;

/// Share of the believed-free memory Ollama lets a model take beside others.
const FIT_FRACTION: f64 = 0.8;

/// One GPU, as the ledger sees it.
#[derive(Debug, Clone, Copy)]
pub struct OneGpu {
    pub total: u64,
    /// What the models and other processes may fill (total less headroom).
    pub budget: u64,
    pub max_loaded: usize,
    /// Another process's memory: from this simulated time, these bytes.
    pub foreign: Option<(f64, u64)>,
}

/// The result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Optimum {
    pub loads: u64,
    /// Requests no set of models could serve at their moment.
    pub unservable: usize,
}

/// The fewest loads for `trace` on `gpu`, the models' VRAM given by `sizes` (requests for other models are
/// skipped). `None` for more than 16 models (the sets would be too many to walk).
pub fn fewest_loads(trace: &[TraceRequest], sizes: &[(String, u64)], gpu: &OneGpu) -> Option<Optimum> {
    let n = sizes.len();
    if n > 16 {
        return None;
    }
    let sets = 1usize << n;
    let bytes: Vec<u64> =
        (0..sets).map(|set| (0..n).filter(|i| set & (1 << i) != 0).map(|i| sizes[i].1).sum()).collect();
    let holds = |set: usize, foreign: u64| {
        (set.count_ones() as usize) <= gpu.max_loaded && bytes[set].saturating_add(foreign) <= gpu.budget
    };
    let loadable = |model: usize, beside: usize| {
        let need = sizes[model].1;
        if beside == 0 {
            need <= gpu.total
        } else {
            need as f64 <= FIT_FRACTION * gpu.total.saturating_sub(bytes[beside]) as f64
        }
    };
    let mut best: Vec<Option<u64>> = vec![None; sets];
    best[0] = Some(0);
    let mut unservable = 0;
    for request in trace {
        let Some(model) = sizes.iter().position(|(name, _)| *name == request.model) else { continue };
        let foreign = gpu.foreign.filter(|(from, _)| request.at >= *from).map_or(0, |(_, b)| b);
        let bit = 1usize << model;
        // Every set reachable from each set by unloading, and loading the model when it is not loaded yet.
        let advance = |serve: bool| {
            let mut next: Vec<Option<u64>> = vec![None; sets];
            for (set, cost) in best.iter().enumerate() {
                let Some(cost) = *cost else { continue };
                let reach = if serve { set | bit } else { set };
                let mut after = reach;
                loop {
                    let step = if !holds(after, foreign) || (serve && after & bit == 0) {
                        None
                    } else if !serve || set & bit != 0 {
                        Some(cost)
                    } else if loadable(model, after & !bit) {
                        Some(cost + 1)
                    } else {
                        None
                    };
                    if let Some(step) = step
                        && next[after].is_none_or(|c| step < c)
                    {
                        next[after] = Some(step);
                    }
                    if after == 0 {
                        break;
                    }
                    after = (after - 1) & reach;
                }
            }
            next
        };
        let served = advance(true);
        best = if served.iter().any(Option::is_some) {
            served
        } else {
            // Nothing could serve it: skip it, unloading what no longer fits beside the other process.
            unservable += 1;
            advance(false)
        };
    }
    best.into_iter().flatten().min().map(|loads| Optimum { loads, unservable })
}

/// What the best online policy does on a trace (`best_online`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OnlineBest {
    /// Its loads on this trace.
    pub loads: u64,
    /// The loads it expects on a trace of the same length and the same shares, in steady state: its long-run loads
    /// per request, times the requests of each stretch of the trace (before and after the other process appears).
    pub expected: f64,
    /// Requests no set of models could serve at their moment.
    pub unservable: usize,
}

/// The loads of the best scheduler that does not know the future, serving in arrival order within the rules of
/// `fewest_loads`: it knows how often each model is asked for (each model's share of `trace`, given to it in
/// advance) but not in what order, so each request is, to it, a draw from those shares (the independent reference
/// model of caching, which is how the replay's traces are made: Zipf shares, Poisson arrivals). Its policy
/// minimises the expected loads per request over an unbounded run (relative value iteration over the loaded sets),
/// so no scheduler in arrival order that knows only the shares can expect fewer; on a given trace one may be luckier.
/// `None` for more than 10 models.
pub fn best_online(trace: &[TraceRequest], sizes: &[(String, u64)], gpu: &OneGpu) -> Option<OnlineBest> {
    let n = sizes.len();
    if n > 10 {
        return None;
    }
    let rules = Rules::new(sizes, gpu);
    let requests: Vec<(f64, usize)> = trace
        .iter()
        .filter_map(|r| sizes.iter().position(|(name, _)| *name == r.model).map(|model| (r.at, model)))
        .collect();
    if requests.is_empty() {
        return Some(OnlineBest { loads: 0, expected: 0.0, unservable: 0 });
    }
    let mut shares = vec![0.0; n];
    for (_, model) in &requests {
        shares[*model] += 1.0 / requests.len() as f64;
    }
    // One policy per amount of other processes' memory (none, then the other process's).
    let mut policies: Vec<(u64, Policy)> = Vec::new();
    let (mut loads, mut expected, mut unservable) = (0, 0.0, 0);
    let mut set = 0;
    for (at, model) in requests {
        let foreign = rules.foreign(at);
        let index = match policies.iter().position(|(f, _)| *f == foreign) {
            Some(index) => index,
            None => {
                policies.push((foreign, Policy::solve(&rules, &shares, foreign)));
                policies.len() - 1
            }
        };
        let policy = &policies[index].1;
        // As in `bounded`: a model that does not fit alone cannot be served from any set.
        if !rules.holds(1 << model, foreign) || !rules.loadable(model, 0) {
            unservable += 1;
        }
        expected += policy.gain;
        let (next, cost) = policy.choose(&rules, set, model, foreign);
        loads += cost;
        set = next;
    }
    Some(OnlineBest { loads, expected, unservable })
}

/// The best stationary policy for one amount of other processes' memory: the relative value of each loaded set
/// (`bias`) and the long-run loads per request (`gain`).
struct Policy {
    bias: Vec<f64>,
    gain: f64,
}

impl Policy {
    /// Relative value iteration, made aperiodic (each step happens with probability one half), to convergence.
    fn solve(rules: &Rules, shares: &[f64], foreign: u64) -> Policy {
        let sets = rules.bytes.len();
        let holding: Vec<usize> = (0..sets).filter(|s| rules.holds(*s, foreign)).collect();
        let options: Vec<Vec<Vec<(usize, u64)>>> =
            holding.iter().map(|s| (0..shares.len()).map(|m| rules.serve_or_skip(*s, m, foreign)).collect()).collect();
        let mut bias = vec![0.0; sets];
        let mut gain = 0.0;
        for _ in 0..100_000 {
            let mut next = bias.clone();
            for (i, s) in holding.iter().enumerate() {
                let step: f64 = options[i]
                    .iter()
                    .zip(shares)
                    .map(|(opts, p)| p * opts.iter().map(|(a, c)| *c as f64 + bias[*a]).fold(f64::INFINITY, f64::min))
                    .sum();
                next[*s] = 0.5 * bias[*s] + 0.5 * step;
            }
            // The empty set always holds: values relative to it.
            let offset = next[0];
            let mut change: f64 = 0.0;
            for s in &holding {
                next[*s] -= offset;
                change = change.max((next[*s] - bias[*s]).abs());
            }
            gain = 2.0 * offset;
            bias = next;
            if change < 1e-12 {
                break;
            }
        }
        Policy { bias, gain }
    }

    /// The set to serve `model` from `set` with, and its loads: the fewest loads now plus the value of what follows;
    /// on a tie, the set with more memory in use (more kept loaded), then the lower set.
    fn choose(&self, rules: &Rules, set: usize, model: usize, foreign: u64) -> (usize, u64) {
        let mut best: Option<(f64, u64, usize, u64)> = None;
        for (after, cost) in rules.serve_or_skip(set, model, foreign) {
            let value = cost as f64 + self.bias[after];
            let better = match best {
                None => true,
                Some((v, b, a, _)) => {
                    value < v - 1e-9 || ((value - v).abs() <= 1e-9 && (rules.bytes[after], a) > (b, after))
                }
            };
            if better {
                best = Some((value, rules.bytes[after], after, cost));
            }
        }
        best.map_or((0, 0), |(_, _, after, cost)| (after, cost))
    }
}

/// No request of the model waits (in a state of `fewest_loads_bounded`).
const NONE: usize = usize::MAX;

/// Sets of loaded models, each with the first waiting request of every model not loaded (`NONE` if none waits),
/// and the fewest loads that reach them.
type States = HashMap<(usize, Vec<usize>), u64>;

/// The fewest loads for `trace` on `gpu` when each request may be served at any moment from its arrival until
/// `bound_secs` later, the models' VRAM given by `sizes` (requests for other models are skipped): a request may
/// wait for later requests for its model while requests for loaded models go ahead, and all waiting requests for a
/// model are served when it loads. The same rules as `fewest_loads`, which this equals for a bound of 0; a model
/// is loaded only to serve requests waiting for it. A request whose model does not fit at its arrival is counted
/// and skipped (the other process's memory only grows, so it would not fit later either). `None` for more than 16
/// models.
///
/// Putting a load off until a waiting request reaches its bound never costs a load, so the loaded set changes only
/// then (loading the model of that request and, in any order, any other waiting models, unloading any), or just
/// before the other process's memory appears (serving what will no longer fit).
pub fn fewest_loads_bounded(
    trace: &[TraceRequest],
    sizes: &[(String, u64)],
    gpu: &OneGpu,
    bound_secs: f64,
) -> Option<Optimum> {
    bounded(trace, sizes, gpu, bound_secs, false)
}

/// The rules of one GPU over sets of models (bit i: model i of `sizes`).
struct Rules<'a> {
    sizes: &'a [(String, u64)],
    gpu: &'a OneGpu,
    bytes: Vec<u64>,
}

impl<'a> Rules<'a> {
    fn new(sizes: &'a [(String, u64)], gpu: &'a OneGpu) -> Self {
        let n = sizes.len();
        let bytes = (0..1usize << n).map(|set| (0..n).filter(|i| set & (1 << i) != 0).map(|i| sizes[i].1).sum());
        Rules { sizes, gpu, bytes: bytes.collect() }
    }

    fn holds(&self, set: usize, foreign: u64) -> bool {
        (set.count_ones() as usize) <= self.gpu.max_loaded && self.bytes[set].saturating_add(foreign) <= self.gpu.budget
    }

    fn loadable(&self, model: usize, beside: usize) -> bool {
        let need = self.sizes[model].1;
        if beside == 0 {
            need <= self.gpu.total
        } else {
            need as f64 <= FIT_FRACTION * self.gpu.total.saturating_sub(self.bytes[beside]) as f64
        }
    }

    fn foreign(&self, at: f64) -> u64 {
        self.gpu.foreign.filter(|(from, _)| at >= *from).map_or(0, |(_, b)| b)
    }

    /// The loaded sets that serve `model` from `set` (within `set` and the model, holding beside `foreign`), each
    /// with its loads: 0 when the model was loaded, else 1 where it may load beside the rest.
    fn serve(&self, set: usize, model: usize, foreign: u64) -> Vec<(usize, u64)> {
        let bit = 1usize << model;
        let reach = set | bit;
        let mut out = Vec::new();
        let mut after = reach;
        loop {
            if after & bit != 0 && self.holds(after, foreign) {
                if set & bit != 0 {
                    out.push((after, 0));
                } else if self.loadable(model, after & !bit) {
                    out.push((after, 1));
                }
            }
            if after == 0 {
                break;
            }
            after = (after - 1) & reach;
        }
        out
    }

    /// `serve`, or when nothing can serve the request, the subsets of `set` that hold (it is skipped).
    fn serve_or_skip(&self, set: usize, model: usize, foreign: u64) -> Vec<(usize, u64)> {
        let served = self.serve(set, model, foreign);
        if !served.is_empty() {
            return served;
        }
        let mut out = Vec::new();
        let mut kept = set;
        loop {
            if self.holds(kept, foreign) {
                out.push((kept, 0));
            }
            if kept == 0 {
                break;
            }
            kept = (kept - 1) & set;
        }
        out
    }

    /// Every state reachable from `states` by loading waiting models one after another (each beside any subset of
    /// the models loaded before it), with none loaded included; only those where `must` no longer waits, if given.
    fn load_waiting(&self, states: States, foreign: u64, must: Option<usize>) -> States {
        let mut reached = States::new();
        let mut frontier = states;
        while !frontier.is_empty() {
            let mut next = States::new();
            for ((set, waiting), cost) in frontier {
                for (model, first) in waiting.iter().enumerate() {
                    if *first == NONE {
                        continue;
                    }
                    let bit = 1usize << model;
                    let mut kept = set;
                    loop {
                        if self.holds(kept | bit, foreign) && self.loadable(model, kept) {
                            let mut after = waiting.clone();
                            after[model] = NONE;
                            keep_min(&mut next, (kept | bit, after), cost + 1);
                        }
                        if kept == 0 {
                            break;
                        }
                        kept = (kept - 1) & set;
                    }
                }
                if must.is_none_or(|m| waiting[m] == NONE) {
                    keep_min(&mut reached, (set, waiting), cost);
                }
            }
            frontier = next;
        }
        reached
    }

    /// Each state whose set no longer holds beside `foreign` replaced by every subset of it that does.
    fn unload_crowded(&self, states: States, foreign: u64) -> States {
        let mut after = States::new();
        for ((set, waiting), cost) in states {
            let mut kept = set;
            loop {
                if self.holds(kept, foreign) {
                    keep_min(&mut after, (kept, waiting.clone()), cost);
                    if kept == set {
                        break;
                    }
                }
                if kept == 0 {
                    break;
                }
                kept = (kept - 1) & set;
            }
        }
        after
    }
}

fn keep_min(states: &mut States, state: (usize, Vec<usize>), cost: u64) {
    let entry = states.entry(state).or_insert(cost);
    *entry = (*entry).min(cost);
}

/// `fewest_loads_bounded`; `eager` also lets waiting models load at every arrival (tests check it never loads
/// less).
fn bounded(
    trace: &[TraceRequest],
    sizes: &[(String, u64)],
    gpu: &OneGpu,
    bound_secs: f64,
    eager: bool,
) -> Option<Optimum> {
    let n = sizes.len();
    if n > 16 {
        return None;
    }
    let rules = Rules::new(sizes, gpu);
    let requests: Vec<(f64, usize)> = trace
        .iter()
        .filter_map(|r| sizes.iter().position(|(name, _)| *name == r.model).map(|model| (r.at, model)))
        .collect();
    // Each request's arrival and the moment it must be served by, in time order (an arrival before its deadline).
    let bound = bound_secs.max(0.0);
    let mut events: Vec<(f64, usize, bool)> =
        requests.iter().enumerate().flat_map(|(i, &(at, _))| [(at, i, false), (at + bound, i, true)]).collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut states = States::from([((0, vec![NONE; n]), 0)]);
    let mut unservable = 0;
    let mut crowded = false;
    for (at, i, deadline) in events {
        let model = requests[i].1;
        let foreign = rules.foreign(at);
        if foreign > 0 && !crowded {
            // Just before the other process's memory appears: serve what is waiting if it is best, then unload what
            // no longer fits.
            crowded = true;
            states = rules.unload_crowded(rules.load_waiting(states, 0, None), foreign);
        }
        if eager {
            states = rules.load_waiting(states, foreign, None);
        }
        let bit = 1usize << model;
        if !deadline {
            if !rules.holds(bit, foreign) || !rules.loadable(model, 0) {
                unservable += 1;
                continue;
            }
            // Served if its model is loaded, else waiting (alone or behind an earlier request for its model).
            let mut next = States::new();
            for ((set, mut waiting), cost) in states {
                if set & bit == 0 && waiting[model] == NONE {
                    waiting[model] = i;
                }
                keep_min(&mut next, (set, waiting), cost);
            }
            states = next;
        } else {
            // The first waiting request for the model must be served now.
            let (due, mut rest): (States, States) =
                states.into_iter().partition(|((_, waiting), _)| waiting[model] == i);
            for (state, cost) in rules.load_waiting(due, foreign, Some(model)) {
                keep_min(&mut rest, state, cost);
            }
            states = rest;
        }
    }
    states.into_values().min().map(|loads| Optimum { loads, unservable })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Kind, Rng};

    const GIB: u64 = 1024 * 1024 * 1024;

    fn trace(models: &[&str]) -> Vec<TraceRequest> {
        models
            .iter()
            .enumerate()
            .map(|(i, m)| TraceRequest {
                at: i as f64,
                model: (*m).to_string(),
                kind: Kind::Chat,
                prompt_words: 1,
                num_predict: 1,
            })
            .collect()
    }

    fn sizes(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(n, b)| ((*n).to_string(), *b)).collect()
    }

    const GPU: OneGpu = OneGpu { total: 24 * GIB, budget: 23 * GIB, max_loaded: 2, foreign: None };

    #[test]
    fn with_room_for_everything_each_model_loads_once() {
        let s = sizes(&[("a", 4 * GIB), ("b", 4 * GIB)]);
        let t = trace(&["a", "b", "a", "b", "a"]);
        assert_eq!(fewest_loads(&t, &s, &GPU), Some(Optimum { loads: 2, unservable: 0 }));
    }

    #[test]
    fn it_keeps_the_model_needed_again_soonest() {
        // Two slots, three models: after a and b, c must evict one; keeping a (needed next) costs one load less
        // than evicting it.
        let s = sizes(&[("a", 4 * GIB), ("b", 4 * GIB), ("c", 4 * GIB)]);
        let t = trace(&["a", "b", "c", "a", "c", "a"]);
        assert_eq!(fewest_loads(&t, &s, &GPU).map(|o| o.loads), Some(3));
    }

    #[test]
    fn the_eighty_percent_rule_and_other_processes_force_loads() {
        // 12 GiB beside 12 GiB: not within 80% of the 12 GiB left, so the two never share the GPU.
        let s = sizes(&[("a", 12 * GIB), ("b", 12 * GIB)]);
        let t = trace(&["a", "b", "a", "b"]);
        assert_eq!(fewest_loads(&t, &s, &GPU).map(|o| o.loads), Some(4));
        // From t = 2 another process holds 20 GiB: a no longer fits, and its last request cannot be served.
        let crowded = OneGpu { foreign: Some((2.0, 20 * GIB)), ..GPU };
        let s = sizes(&[("a", 4 * GIB), ("b", 2 * GIB)]);
        let t = trace(&["a", "b", "a", "b"]);
        assert_eq!(fewest_loads(&t, &s, &crowded), Some(Optimum { loads: 2, unservable: 1 }));
    }

    #[test]
    fn the_best_online_policy_keeps_the_model_asked_for_most() {
        // Two slots, three models; a is more than half the requests. It keeps a and swaps b and c: a loads once,
        // and every b and c, which the offline optimum cannot better here.
        let s = sizes(&[("a", 4 * GIB), ("b", 4 * GIB), ("c", 4 * GIB)]);
        let t = trace(&["a", "b", "a", "c", "a", "b", "a", "c", "a", "b", "a", "c", "a"]);
        assert_eq!(best_online(&t, &s, &GPU).map(|o| o.loads), Some(1 + 6));
        assert_eq!(fewest_loads(&t, &s, &GPU).map(|o| o.loads), Some(1 + 6));
        // Where the order matters, the offline optimum knows it and the online policy does not: after a, b, c it
        // keeps a (asked for most), while the rest of the trace never asks for a again.
        let t = trace(&["a", "a", "a", "a", "b", "c", "b", "c", "b", "c"]);
        assert_eq!(fewest_loads(&t, &s, &GPU).map(|o| o.loads), Some(3));
        assert_eq!(best_online(&t, &s, &GPU).map(|o| o.loads), Some(7));
        // With room for everything each model loads once, and it expects about nothing more per request.
        let t = trace(&["a", "b", "c", "a", "b", "c"]);
        let room = OneGpu { max_loaded: 3, ..GPU };
        let best = best_online(&t, &s, &room);
        assert_eq!(best.map(|o| o.loads), Some(3));
        assert!(best.is_some_and(|o| o.expected < 1e-6), "{best:?}");
        // One slot and two models asked for alike: every request that changes model loads, and it expects half a
        // load per request.
        let one = OneGpu { max_loaded: 1, ..GPU };
        let t = trace(&["a", "b", "a", "b"]);
        let s = sizes(&[("a", 4 * GIB), ("b", 4 * GIB)]);
        let best = best_online(&t, &s, &one);
        assert_eq!(best.map(|o| o.loads), Some(4));
        assert!(best.is_some_and(|o| (o.expected - 2.0).abs() < 1e-6), "{best:?}");
    }

    #[test]
    fn the_best_online_policy_counts_what_cannot_be_served() {
        let crowded = OneGpu { foreign: Some((2.0, 20 * GIB)), ..GPU };
        let s = sizes(&[("a", 4 * GIB), ("b", 2 * GIB)]);
        let t = trace(&["a", "b", "a", "b"]);
        let best = best_online(&t, &s, &crowded);
        assert_eq!(best.map(|o| (o.loads, o.unservable)), Some((2, 1)));
    }

    #[test]
    fn the_best_online_policy_never_beats_the_offline_optimum() {
        let mut rng = Rng::new(17);
        for _ in 0..300 {
            let (t, s, gpu) = random_case(&mut rng);
            let (Some(online), Some(offline)) = (best_online(&t, &s, &gpu), fewest_loads(&t, &s, &gpu)) else {
                panic!("no result: {t:?}");
            };
            assert!(online.loads >= offline.loads, "{online:?} below {offline:?}: {t:?} {s:?} {gpu:?}");
            assert_eq!(online.unservable, offline.unservable, "{t:?} {s:?} {gpu:?}");
            assert!(online.expected >= 0.0 && online.expected.is_finite(), "{online:?}");
        }
    }

    /// `count` requests drawn independently from `shares` over models m0, m1, ..., one a second.
    fn drawn(rng: &mut Rng, shares: &[f64], count: usize) -> Vec<TraceRequest> {
        let names: Vec<String> = (0..shares.len()).map(|i| format!("m{i}")).collect();
        let picks: Vec<&str> = (0..count)
            .map(|_| {
                let mut u = rng.unit() * shares.iter().sum::<f64>();
                let i = shares.iter().position(|p| {
                    u -= p;
                    u < 0.0
                });
                names[i.unwrap_or(shares.len() - 1)].as_str()
            })
            .collect();
        trace(&picks)
    }

    /// Loads of LRU on `t`: a missing model evicts the least recently used until it fits (the rules' `serve`).
    fn lru_loads(t: &[TraceRequest], s: &[(String, u64)], gpu: &OneGpu) -> u64 {
        let rules = Rules::new(s, gpu);
        let (mut set, mut loads, mut used) = (0usize, 0, vec![0usize; s.len()]);
        for (i, r) in t.iter().enumerate() {
            let Some(model) = s.iter().position(|(n, _)| *n == r.model) else { continue };
            let options = rules.serve(set, model, 0);
            // Of the sets that serve it, the one keeping the most recently used models.
            let keep = |a: usize| (0..s.len()).filter(|m| a & (1 << m) != 0).map(|m| used[m]).collect::<Vec<_>>();
            let best = options.iter().max_by_key(|(a, c)| {
                (std::cmp::Reverse(*c), a.count_ones(), {
                    let mut k = keep(*a);
                    k.sort_unstable_by(|x, y| y.cmp(x));
                    k
                })
            });
            if let Some((a, c)) = best {
                set = *a;
                loads += c;
            }
            used[model] = i + 1;
        }
        loads
    }

    #[test]
    fn the_best_online_policy_loads_what_it_expects_and_less_than_lru() {
        // Four models of different sizes on 16 GiB (two or three fit), requests drawn from skewed shares.
        let s = sizes(&[("m0", 5 * GIB), ("m1", 7 * GIB), ("m2", 3 * GIB), ("m3", 9 * GIB)]);
        let gpu = OneGpu { total: 16 * GIB, budget: 15 * GIB, max_loaded: 3, foreign: None };
        let mut rng = Rng::new(23);
        let (mut online, mut expected, mut lru) = (0, 0.0, 0);
        for _ in 0..10 {
            let t = drawn(&mut rng, &[0.4, 0.25, 0.2, 0.15], 2000);
            let Some(best) = best_online(&t, &s, &gpu) else { panic!("no result") };
            online += best.loads;
            expected += best.expected;
            lru += lru_loads(&t, &s, &gpu);
        }
        assert!((online as f64 - expected).abs() < 0.05 * expected, "{online} loads, {expected} expected");
        assert!(online < lru, "{online} loads against LRU's {lru}");
    }

    #[test]
    fn bounded_with_no_wait_is_in_order_on_the_hand_examples() {
        let crowded = OneGpu { foreign: Some((2.0, 20 * GIB)), ..GPU };
        let cases = [
            (sizes(&[("a", 4 * GIB), ("b", 4 * GIB)]), trace(&["a", "b", "a", "b", "a"]), GPU),
            (sizes(&[("a", 4 * GIB), ("b", 4 * GIB), ("c", 4 * GIB)]), trace(&["a", "b", "c", "a", "c", "a"]), GPU),
            (sizes(&[("a", 12 * GIB), ("b", 12 * GIB)]), trace(&["a", "b", "a", "b"]), GPU),
            (sizes(&[("a", 4 * GIB), ("b", 2 * GIB)]), trace(&["a", "b", "a", "b"]), crowded),
        ];
        for (s, t, gpu) in &cases {
            assert_eq!(fewest_loads_bounded(t, s, gpu, 0.0), fewest_loads(t, s, gpu));
        }
    }

    /// A small random case: 2-6 models of 2-14 GiB, 5-40 requests (some at the same moment, some for a model not
    /// in `sizes`), and a GPU of 1-3 slots, with or without another process's memory from some moment on.
    fn random_case(rng: &mut Rng) -> (Vec<TraceRequest>, Vec<(String, u64)>, OneGpu) {
        let models = rng.range(2, 6) as usize;
        let s: Vec<(String, u64)> = (0..models).map(|i| (format!("m{i}"), rng.range(4, 28) * GIB / 2)).collect();
        let mut at = 0.0;
        let t: Vec<TraceRequest> = (0..rng.range(5, 40))
            .map(|_| {
                if rng.unit() < 0.8 {
                    at += rng.exponential(1.0);
                }
                let model = rng.range(0, models as u64) as usize;
                TraceRequest {
                    at,
                    model: s.get(model).map_or("other".to_string(), |(name, _)| name.clone()),
                    kind: Kind::Chat,
                    prompt_words: 1,
                    num_predict: 1,
                }
            })
            .collect();
        let total = [16, 24, 48][rng.range(0, 2) as usize] * GIB;
        let foreign = (rng.unit() < 0.5).then(|| (rng.unit() * at, rng.range(1, 12) * GIB));
        let gpu = OneGpu { total, budget: total - GIB, max_loaded: rng.range(1, 3) as usize, foreign };
        (t, s, gpu)
    }

    #[test]
    fn bounded_with_no_wait_is_in_order_on_random_traces() {
        let mut rng = Rng::new(7);
        for _ in 0..300 {
            let (t, s, gpu) = random_case(&mut rng);
            assert_eq!(fewest_loads_bounded(&t, &s, &gpu, 0.0), fewest_loads(&t, &s, &gpu), "{t:?} {s:?} {gpu:?}");
        }
    }

    #[test]
    fn a_longer_bound_never_needs_more_loads() {
        let mut rng = Rng::new(11);
        for _ in 0..200 {
            let (t, s, gpu) = random_case(&mut rng);
            let Some(in_order) = fewest_loads(&t, &s, &gpu) else { continue };
            let mut last = in_order;
            for bound in [0.0, 0.3, 1.0, 2.0, 4.0, 10.0] {
                let Some(now) = fewest_loads_bounded(&t, &s, &gpu, bound) else { panic!("no optimum: {t:?}") };
                assert!(now.loads <= last.loads, "bound {bound}: {now:?} after {last:?}: {t:?} {s:?} {gpu:?}");
                assert_eq!(now.unservable, in_order.unservable);
                last = now;
            }
        }
    }

    #[test]
    fn loading_only_when_a_request_is_due_loses_nothing() {
        // Against the program that may also load waiting models at every arrival.
        let mut rng = Rng::new(13);
        for _ in 0..200 {
            let (t, s, gpu) = random_case(&mut rng);
            for bound in [0.5, 1.5, 4.0] {
                let eager = bounded(&t, &s, &gpu, bound, true);
                assert_eq!(fewest_loads_bounded(&t, &s, &gpu, bound), eager, "bound {bound}: {t:?} {s:?} {gpu:?}");
            }
        }
    }

    fn timed(list: &[(&str, f64)]) -> Vec<TraceRequest> {
        let mut t = trace(&list.iter().map(|(m, _)| *m).collect::<Vec<_>>());
        for (request, (_, at)) in t.iter_mut().zip(list) {
            request.at = *at;
        }
        t
    }

    #[test]
    fn waiting_batches_requests_within_the_bound() {
        // 12 GiB beside 12 GiB never share the GPU: in order each request loads its model.
        let s = sizes(&[("a", 12 * GIB), ("b", 12 * GIB)]);
        let t = trace(&["a", "b", "a", "b"]);
        assert_eq!(fewest_loads(&t, &s, &GPU).map(|o| o.loads), Some(4));
        // Waiting up to 2 s, a serves its two requests at t = 2 and b its two at t = 3.
        assert_eq!(fewest_loads_bounded(&t, &s, &GPU, 2.0), Some(Optimum { loads: 2, unservable: 0 }));
        assert_eq!(fewest_loads_bounded(&t, &s, &GPU, 0.5).map(|o| o.loads), Some(4));
        // Nothing batches across gaps longer than the bound.
        let t = timed(&[("a", 0.0), ("b", 5.0), ("a", 10.0)]);
        assert_eq!(fewest_loads_bounded(&t, &s, &GPU, 1.0).map(|o| o.loads), Some(3));
    }

    #[test]
    fn waiting_models_load_in_the_order_that_fits() {
        // 17 GiB fits beside 4 GiB loaded after it, not the other way round: when b's wait ends, a (waiting too)
        // loads first and b beside it.
        let s = sizes(&[("a", 17 * GIB), ("b", 4 * GIB)]);
        let t = timed(&[("b", 0.0), ("a", 1.0), ("b", 20.0), ("a", 21.0)]);
        assert_eq!(fewest_loads_bounded(&t, &s, &GPU, 10.0), Some(Optimum { loads: 2, unservable: 0 }));
    }

    #[test]
    fn what_will_not_fit_beside_the_other_process_is_served_before_it_appears() {
        // From t = 5 another process holds 12 GiB: a (14 GiB) no longer fits, so its request at 4 is served before.
        let crowded = OneGpu { foreign: Some((5.0, 12 * GIB)), ..GPU };
        let s = sizes(&[("a", 14 * GIB), ("b", 4 * GIB)]);
        let t = timed(&[("a", 4.0), ("b", 4.5), ("a", 6.0), ("b", 7.0)]);
        assert_eq!(fewest_loads_bounded(&t, &s, &crowded, 10.0), Some(Optimum { loads: 2, unservable: 1 }));
    }
}
