//! The fewest cold loads any scheduler could need for a trace on one GPU, knowing the whole trace in advance: a
//! dynamic program over every set of loaded models.
//!
//! Requests are served in arrival order, one at a time, within the same rules Switchyard keeps: at most `max_loaded`
//! models, the models plus other processes' memory within the budget, and a model loaded beside others only within
//! 80% of the memory Ollama believes free (it does not see other processes). Unloading is free; a load costs one. A
//! request no set of models could serve at its moment (its model does not fit at all) is counted and skipped. No
//! scheduler that serves requests in arrival order without running out of memory can load less. One that lets
//! queued requests for a loaded model go ahead of others can (under overload, queues batch requests per model), at
//! the cost of the waiting requests' latency.

use crate::trace::TraceRequest;
use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Kind;

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
}
