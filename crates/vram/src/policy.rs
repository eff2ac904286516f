//! Eviction strategies: which idle, unpinned model goes first when room is needed.
//!
//! Each strategy maps a model to a *keep value*; the lowest keep value is evicted first.
//! - `lru`: time of last use (oldest first).
//! - `largest`: minus the size (largest first).
//! - `lfu`: use count, ties broken by last use.
//! - `cost` (default): the reload time an eviction is expected to cost per byte it frees,
//!   `uses x reload_seconds / size_GiB`, with the uses counted as a *decayed* frequency (each use is worth half as
//!   much after `vram.cost_half_life_secs`). It is GreedyDual-Size-Frequency with exponential aging in place of the
//!   inflation value: cheap-to-reload, large, rarely used models go first, a model that takes 15 s to load and is
//!   used often stays, and a model popular long ago ages out.

use std::time::Duration;
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
    /// Uses decayed to now (see [`Heat`]).
    pub heat: f64,
    /// Seconds a reload would take: measured, else estimated.
    pub reload_seconds: f64,
}

/// The keep value of a model under `strategy`: evict the lowest first.
pub fn keep_value(strategy: Strategy, facts: &EvictionFacts) -> f64 {
    match strategy {
        Strategy::Lru => -facts.idle_seconds,
        Strategy::Largest => -(facts.size_bytes as f64),
        Strategy::Lfu => facts.uses as f64 - facts.idle_seconds * 1e-9,
        Strategy::Cost => reload_cost_per_gib(facts.heat, facts.reload_seconds, facts.size_bytes),
    }
}

/// `heat x reload_seconds / size_GiB`: the reload seconds an eviction is expected to cost per GiB it frees.
pub fn reload_cost_per_gib(heat: f64, reload_seconds: f64, size_bytes: u64) -> f64 {
    let size_gib = (size_bytes as f64 / (1024.0 * 1024.0 * 1024.0)).max(0.01);
    heat * reload_seconds.max(0.01) / size_gib
}

/// A use count that decays: every use adds one, and the sum halves every `half_life`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Heat {
    /// The decayed count at `at`.
    value: f64,
    /// When `value` was last brought up to date; `None` before the first use.
    at: Option<tokio::time::Instant>,
}

impl Heat {
    /// The count decayed to `now`.
    pub fn at(&self, now: tokio::time::Instant, half_life: Duration) -> f64 {
        let Some(at) = self.at else { return 0.0 };
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        let half_life = half_life.as_secs_f64();
        if half_life <= 0.0 { 0.0 } else { self.value * (-elapsed / half_life).exp2() }
    }

    /// Counts one use at `now`.
    pub fn bump(&mut self, now: tokio::time::Instant, half_life: Duration) {
        self.value = self.at(now, half_life) + 1.0;
        self.at = Some(now);
    }
}

/// Reload seconds assumed before a model's load was ever measured: disk read at 2 GB/s plus half a second of setup.
pub fn estimated_reload_seconds(size_bytes: u64) -> f64 {
    0.5 + size_bytes as f64 / 2e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn facts(idle: f64, size: u64, uses: u64, heat: f64, reload: f64) -> EvictionFacts {
        EvictionFacts { idle_seconds: idle, size_bytes: size, uses, heat, reload_seconds: reload }
    }

    #[test]
    fn each_strategy_orders_as_documented() {
        let old_small_hot = facts(100.0, GIB, 50, 20.0, 1.0);
        let new_big_cold = facts(1.0, 10 * GIB, 2, 1.0, 5.0);
        assert!(keep_value(Strategy::Lru, &old_small_hot) < keep_value(Strategy::Lru, &new_big_cold));
        assert!(keep_value(Strategy::Largest, &new_big_cold) < keep_value(Strategy::Largest, &old_small_hot));
        assert!(keep_value(Strategy::Lfu, &new_big_cold) < keep_value(Strategy::Lfu, &old_small_hot));
        assert!(keep_value(Strategy::Cost, &new_big_cold) < keep_value(Strategy::Cost, &old_small_hot));
    }

    #[test]
    fn cost_values_slow_frequent_small_models() {
        let slow_small_frequent = reload_cost_per_gib(10.0, 15.0, 2 * GIB);
        let fast_big_rare = reload_cost_per_gib(1.0, 1.0, 40 * GIB);
        assert!(slow_small_frequent > fast_big_rare);
        // Same uses and size: the slower reload is kept.
        assert!(reload_cost_per_gib(3.0, 9.0, 8 * GIB) > reload_cost_per_gib(3.0, 3.0, 8 * GIB));
    }

    #[test]
    fn heat_halves_every_half_life_and_counts_each_use() {
        let half_life = Duration::from_secs(100);
        let t0 = Instant::now();
        let mut heat = Heat::default();
        assert_eq!(heat.at(t0, half_life), 0.0);
        heat.bump(t0, half_life);
        heat.bump(t0, half_life);
        assert!((heat.at(t0, half_life) - 2.0).abs() < 1e-9);
        assert!((heat.at(t0 + half_life, half_life) - 1.0).abs() < 1e-9);
        heat.bump(t0 + 2 * half_life, half_life);
        assert!((heat.at(t0 + 2 * half_life, half_life) - 1.5).abs() < 1e-9);
        // A model used often long ago cools below one used once just now.
        let mut old = Heat::default();
        for _ in 0..8 {
            old.bump(t0, half_life);
        }
        let mut fresh = Heat::default();
        fresh.bump(t0 + 5 * half_life, half_life);
        assert!(old.at(t0 + 5 * half_life, half_life) < fresh.at(t0 + 5 * half_life, half_life));
    }
}
