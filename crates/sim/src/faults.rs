//! Injected faults: what `/sim/faults` sets, and how a request or a load picks up the fault meant for it.
//!
//! A fault is set for one model or for all of them. A model's own fault wins over the fleet-wide one. With
//! `fail_times` a fault applies to that many requests (or failed loads, for `oom_on_load`) and then clears itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use switchyard_core::ModelName;

/// The faults set for one model or for all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Answer inference with this status instead of running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// The error text to send with `error_status` (a default names the fault when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Simulated milliseconds added before answering (scaled by the time scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Never answer: the client's own timeout has to act.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hang: bool,
    /// Close a response after this many body chunks, without the final one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_after_chunks: Option<u32>,
    /// Fail loads of the model as an out-of-memory event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_on_load: bool,
    /// Apply to the next N requests (or failed loads) only, then clear; absent means until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_times: Option<u32>,
}

impl FaultSpec {
    /// True when the spec sets nothing (setting it clears the scope).
    pub fn is_empty(&self) -> bool {
        !self.affects_requests() && !self.oom_on_load
    }

    /// True when the spec changes how requests are answered (as opposed to loads).
    fn affects_requests(&self) -> bool {
        self.error_status.is_some() || self.latency_ms.is_some() || self.hang || self.disconnect_after_chunks.is_some()
    }

    /// Checks the values a client sent.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(status) = self.error_status
            && !(400..=599).contains(&status)
        {
            return Err(format!("error_status {status} is not an error status (400-599)"));
        }
        if self.fail_times == Some(0) {
            return Err("fail_times must be at least 1 (leave it out for a fault that stays)".to_string());
        }
        if self.error_message.is_some() && self.error_status.is_none() {
            return Err("error_message needs error_status".to_string());
        }
        Ok(())
    }
}

/// What a request must do because of a fault, taken (and counted) when the request arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestFault {
    /// Answer with this status and message instead of running.
    pub error: Option<(u16, String)>,
    /// Wait this long (simulated) first.
    pub latency: Duration,
    /// Never answer.
    pub hang: bool,
    /// Cut the response body after this many chunks.
    pub disconnect_after: Option<u32>,
}

/// Faults in force, per model and fleet-wide.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    /// Guarded state; never held across an await.
    inner: Mutex<Faults>,
}

/// The faults themselves.
#[derive(Debug, Default)]
struct Faults {
    /// The fault for every model (`"model": null`), under any model's own.
    all: Option<FaultSpec>,
    /// Faults for one model each.
    per_model: BTreeMap<ModelName, FaultSpec>,
}

impl FaultBook {
    fn lock(&self) -> MutexGuard<'_, Faults> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets (replaces) the fault of one model, or of all with `None`; an empty spec clears it.
    pub(crate) fn set(&self, model: Option<ModelName>, spec: FaultSpec) {
        let mut faults = self.lock();
        let keep = (!spec.is_empty()).then_some(spec);
        match (model, keep) {
            (None, spec) => faults.all = spec,
            (Some(name), Some(spec)) => {
                faults.per_model.insert(name, spec);
            }
            (Some(name), None) => {
                faults.per_model.remove(&name);
            }
        }
    }

    /// Clears every fault.
    pub(crate) fn clear(&self) {
        *self.lock() = Faults::default();
    }

    /// Every fault in force: `None` is the fleet-wide one.
    pub(crate) fn list(&self) -> Vec<(Option<ModelName>, FaultSpec)> {
        let faults = self.lock();
        faults
            .all
            .iter()
            .map(|s| (None, s.clone()))
            .chain(faults.per_model.iter().map(|(m, s)| (Some(m.clone()), s.clone())))
            .collect()
    }

    /// The request fault for `model`, counted against its `fail_times`.
    pub(crate) fn take_request(&self, model: &ModelName) -> RequestFault {
        let mut faults = self.lock();
        let spec = take(&mut faults, model, FaultSpec::affects_requests);
        let Some(spec) = spec else { return RequestFault::default() };
        RequestFault {
            error: spec.error_status.map(|status| {
                let message = spec
                    .error_message
                    .clone()
                    .unwrap_or_else(|| format!("simulated fault: status {status} injected for {model}"));
                (status, message)
            }),
            latency: Duration::from_millis(spec.latency_ms.unwrap_or(0)),
            hang: spec.hang,
            disconnect_after: spec.disconnect_after_chunks,
        }
    }

    /// True when the next load of `model` must fail as out of memory (counted against `fail_times`).
    pub(crate) fn take_oom(&self, model: &ModelName) -> bool {
        take(&mut self.lock(), model, |s| s.oom_on_load).is_some()
    }
}

/// Finds the spec that applies (the model's own first), counts one use of it and returns a copy.
fn take(faults: &mut Faults, model: &ModelName, relevant: fn(&FaultSpec) -> bool) -> Option<FaultSpec> {
    let own = faults.per_model.get_mut(model).filter(|s| relevant(s));
    let (spec, exhausted) = match own {
        Some(spec) => {
            let copy = spec.clone();
            (copy, count_use(spec))
        }
        None => {
            let all = faults.all.as_mut().filter(|s| relevant(s))?;
            let copy = all.clone();
            (copy, count_use(all))
        }
    };
    if exhausted {
        if faults.per_model.get(model).is_some_and(relevant) {
            faults.per_model.remove(model);
        } else {
            faults.all = None;
        }
    }
    Some(spec)
}

/// Counts one use against `fail_times`; true when the spec is now used up.
fn count_use(spec: &mut FaultSpec) -> bool {
    match spec.fail_times.as_mut() {
        Some(n) => {
            *n = n.saturating_sub(1);
            *n == 0
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ModelName {
        ModelName::parse(s).unwrap()
    }

    #[test]
    fn a_models_fault_wins_and_fail_times_counts_down() {
        let book = FaultBook::default();
        book.set(None, FaultSpec { latency_ms: Some(50), ..Default::default() });
        book.set(Some(name("a")), FaultSpec { error_status: Some(500), fail_times: Some(2), ..Default::default() });
        assert_eq!(book.take_request(&name("a")).error.map(|e| e.0), Some(500));
        assert_eq!(book.take_request(&name("a")).error.map(|e| e.0), Some(500));
        let third = book.take_request(&name("a"));
        assert_eq!(third.error, None);
        assert_eq!(third.latency, Duration::from_millis(50));
        assert_eq!(book.take_request(&name("b")).latency, Duration::from_millis(50));
        assert_eq!(book.list().len(), 1);
    }

    #[test]
    fn oom_faults_are_taken_by_loads_only() {
        let book = FaultBook::default();
        book.set(Some(name("a")), FaultSpec { oom_on_load: true, fail_times: Some(1), ..Default::default() });
        assert_eq!(book.take_request(&name("a")), RequestFault::default());
        assert!(book.take_oom(&name("a")));
        assert!(!book.take_oom(&name("a")));
        assert!(book.list().is_empty());
    }

    #[test]
    fn empty_specs_clear_and_values_are_checked() {
        let book = FaultBook::default();
        book.set(Some(name("a")), FaultSpec { hang: true, ..Default::default() });
        book.set(Some(name("a")), FaultSpec::default());
        assert!(book.list().is_empty());
        assert!(FaultSpec { error_status: Some(200), ..Default::default() }.validate().is_err());
        assert!(FaultSpec { fail_times: Some(0), ..Default::default() }.validate().is_err());
        assert!(FaultSpec { error_status: Some(503), ..Default::default() }.validate().is_ok());
    }
}
