//! Eviction strategies: which idle, unpinned model goes first when room is needed.
//!
//! Each strategy maps a model to a *keep value*; the lowest keep value is evicted first.
//! - `lru`: time of last use (oldest first).
//! - `largest`: minus the size (largest first).
//! - `lfu`: use count, ties broken by last use.
//! - `cost` (default): GreedyDual-Size-Frequency. A model's priority is `L + uses x reload_seconds / size_GiB`,
//!   recomputed on every use; evicting a model raises the inflation value `L` to its priority, so models that were
//!   valuable long ago age out. Cheap-to-reload, large, rarely used models go first; a model that takes 15 s to
//!   load and is used often stays.

use switchyard_core::config::Strategy;

/// What a strategy needs to know about a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvictionFacts {
    /// Seconds since the last use.
    pub idle_seconds: f64,
    /// VRAM bytes the model holds.
    pub size_bytes: u64,
    /// Uses so far.
    pub uses: u64,
    /// GreedyDual-Size-Frequency priority (see [`gdsf_priority`]).
    pub gdsf_priority: f64,
}

/// The keep value of a model under `strategy`: evict the lowest first.
pub fn keep_value(strategy: Strategy, facts: &EvictionFacts) -> f64 {
    match strategy {
        Strategy::Lru => -facts.idle_seconds,
        Strategy::Largest => -(facts.size_bytes as f64),
        Strategy::Lfu => facts.uses as f64 - facts.idle_seconds * 1e-9,
        Strategy::Cost => facts.gdsf_priority,
    }
}

/// GreedyDual-Size-Frequency priority: `inflation + uses x reload_seconds / size_GiB`.
pub fn gdsf_priority(inflation: f64, uses: u64, reload_seconds: f64, size_bytes: u64) -> f64 {
    let size_gib = (size_bytes as f64 / (1024.0 * 1024.0 * 1024.0)).max(0.01);
    inflation + uses as f64 * reload_seconds.max(0.01) / size_gib
}

/// Reload seconds assumed before a model's load was ever measured: disk read at 2 GB/s plus half a second of setup.
pub fn estimated_reload_seconds(size_bytes: u64) -> f64 {
    0.5 + size_bytes as f64 / 2e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(idle: f64, size: u64, uses: u64, prio: f64) -> EvictionFacts {
        EvictionFacts { idle_seconds: idle, size_bytes: size, uses, gdsf_priority: prio }
    }

    #[test]
    fn each_strategy_orders_as_documented() {
        let old_small = facts(100.0, 1, 50, 1.0);
        let new_big = facts(1.0, 10, 2, 5.0);
        assert!(keep_value(Strategy::Lru, &old_small) < keep_value(Strategy::Lru, &new_big));
        assert!(keep_value(Strategy::Largest, &new_big) < keep_value(Strategy::Largest, &old_small));
        assert!(keep_value(Strategy::Lfu, &new_big) < keep_value(Strategy::Lfu, &old_small));
        assert!(keep_value(Strategy::Cost, &old_small) < keep_value(Strategy::Cost, &new_big));
    }

    #[test]
    fn gdsf_values_slow_frequent_small_models() {
        let gib = 1024 * 1024 * 1024;
        let slow_small_frequent = gdsf_priority(0.0, 10, 15.0, 2 * gib);
        let fast_big_rare = gdsf_priority(0.0, 1, 1.0, 40 * gib);
        assert!(slow_small_frequent > fast_big_rare);
        assert!(gdsf_priority(5.0, 1, 1.0, gib) > gdsf_priority(0.0, 1, 1.0, gib));
    }
}
