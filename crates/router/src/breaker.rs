//! A circuit breaker per model: after `breaker.failure_threshold` consecutive failures a model is skipped for
//! `breaker.cooldown_secs`; then one trial request is let through (half-open) and its outcome closes or re-opens it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_core::ModelName;

/// A breaker's state, as exported in metrics (0 closed, 1 half-open, 2 open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    HalfOpen,
    Open,
}

impl Phase {
    pub fn as_gauge(self) -> i64 {
        match self {
            Phase::Closed => 0,
            Phase::HalfOpen => 1,
            Phase::Open => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    /// A half-open trial is running.
    trial: bool,
}

/// Breakers of every model.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    states: Mutex<HashMap<ModelName, State>>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self { threshold: threshold.max(1), cooldown, states: Mutex::new(HashMap::new()) }
    }

    /// The phase of `model` now, without taking a trial slot.
    #[cfg(test)]
    fn phase(&self, model: &ModelName) -> Phase {
        let Ok(states) = self.states.lock() else { return Phase::Closed };
        phase_of(states.get(model), Instant::now())
    }

    /// May a request go to `model`? In half-open state only one trial at a time is allowed.
    pub fn allow(&self, model: &ModelName) -> bool {
        let Ok(mut states) = self.states.lock() else { return true };
        let now = Instant::now();
        let Some(state) = states.get_mut(model) else { return true };
        match phase_of(Some(state), now) {
            Phase::Closed => true,
            Phase::Open => false,
            Phase::HalfOpen if state.trial => false,
            Phase::HalfOpen => {
                state.trial = true;
                true
            }
        }
    }

    /// A request to `model` succeeded: the breaker closes.
    pub fn success(&self, model: &ModelName) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(model);
        }
    }

    /// A request to `model` failed. Returns true when this opened the breaker.
    pub fn failure(&self, model: &ModelName) -> bool {
        let Ok(mut states) = self.states.lock() else { return false };
        let now = Instant::now();
        let state = states.entry(model.clone()).or_insert(State { failures: 0, open_until: None, trial: false });
        state.failures += 1;
        let was_trial = std::mem::replace(&mut state.trial, false);
        if was_trial || state.failures >= self.threshold {
            let opened = state.open_until.is_none_or(|t| t <= now);
            state.open_until = Some(now + self.cooldown);
            return opened;
        }
        false
    }

    /// Every model with a breaker that is not closed.
    pub fn snapshot(&self) -> Vec<(ModelName, Phase)> {
        let Ok(states) = self.states.lock() else { return Vec::new() };
        let now = Instant::now();
        states.iter().map(|(m, s)| (m.clone(), phase_of(Some(s), now))).filter(|(_, p)| *p != Phase::Closed).collect()
    }
}

fn phase_of(state: Option<&State>, now: Instant) -> Phase {
    match state.and_then(|s| s.open_until) {
        None => Phase::Closed,
        Some(until) if now < until => Phase::Open,
        Some(_) => Phase::HalfOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(0));
        let m = ModelName::parse("m").unwrap();
        assert!(!b.failure(&m));
        assert!(!b.failure(&m));
        assert!(b.failure(&m), "third failure opens");
        // Zero cooldown: immediately half-open, one trial at a time.
        assert_eq!(b.phase(&m), Phase::HalfOpen);
        assert!(b.allow(&m));
        assert!(!b.allow(&m), "only one trial");
        b.success(&m);
        assert_eq!(b.phase(&m), Phase::Closed);
        assert!(b.allow(&m));
    }

    #[test]
    fn a_failed_trial_reopens() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        let m = ModelName::parse("m").unwrap();
        b.failure(&m);
        assert_eq!(b.phase(&m), Phase::Open);
        assert!(!b.allow(&m));
        assert_eq!(b.snapshot().len(), 1);
    }
}
