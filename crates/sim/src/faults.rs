//! Injected faults: what `/sim/faults` sets, and how a request or a load picks up the fault meant for it.
//!
//! A fault is set for one model or for all of them. A model's own fault wins over the fleet-wide one. With
//! `fail_times` a fault applies to that many requests (or failed loads, for `oom_on_load`) and then clears itself.
//!
//! `bad_answer` makes a model answer, but badly (see [`BadAnswer`]): for cascade tests, where a cheap model's answer
//! is validated and a stronger model asked when it fails. Only generations pick it up (`/api/generate` and
//! `/api/chat` with a prompt, `/v1/chat/completions`, `/v1/completions`): a load, an unload or an embedding passes
//! a fault that only sets `bad_answer` by without using one of its `fail_times`.

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
    /// With `error_status`: the `Retry-After` header to send, in seconds (as a provider's rate limit does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Simulated milliseconds added before answering (scaled by the time scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Never answer: the client's own timeout has to act.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hang: bool,
    /// Close a response after this many body chunks, without the final one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_after_chunks: Option<u32>,
    /// Answer, but badly, in this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_answer: Option<BadAnswer>,
    /// Fail loads of the model as an out-of-memory event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_on_load: bool,
    /// Apply to the next N requests (or failed loads) only, then clear; absent means until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_times: Option<u32>,
}

/// How a `bad_answer` fault spoils an answer. Every kind is deterministic; the answer is otherwise timed and framed
/// like a normal one (streamed or not, on every surface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadAnswer {
    /// No content and no tool calls (reasoning, when asked for, still comes); `done_reason` stop.
    Empty,
    /// A few tokens of the normal answer, then `done_reason` length (no tool call).
    Truncated,
    /// With `format` (or `response_format`): content that is not valid JSON (the normal JSON without its last
    /// closing bracket). Without it, the same as `wrong`.
    InvalidJson,
    /// The content is a refusal: "I'm sorry, but I can't help with that request."
    Refusal,
    /// The content is a fenced python block with a syntax error, and a sentence.
    BadCode,
    /// With tools offered: the tool call's arguments are `{}` (required parameters missing). Without, the same as
    /// `wrong`.
    BadToolArgs,
    /// With a JSON schema as `format` (or `response_format`'s `json_schema`): content that is valid JSON of the wrong
    /// type (`[]` when the schema asks for an object, `{}` otherwise), which breaks any schema naming a top-level
    /// `type`. Without a schema, the same as `wrong`.
    SchemaMismatch,
    /// A profiling item gets its incorrect answer whatever the model's skill; other prompts are answered normally.
    Wrong,
}

impl FaultSpec {
    /// True when the spec sets nothing (setting it clears the scope).
    pub fn is_empty(&self) -> bool {
        !self.affects_requests() && !self.oom_on_load
    }

    /// True when the spec changes how requests are answered (as opposed to loads).
    fn affects_requests(&self) -> bool {
        self.affects_any_request() || self.bad_answer.is_some()
    }

    /// True when the spec changes how any request is answered, loads and embeddings included (`bad_answer` only
    /// changes generations).
    fn affects_any_request(&self) -> bool {
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
        if self.retry_after_secs.is_some() && self.error_status.is_none() {
            return Err("retry_after_secs needs error_status".to_string());
        }
        if self.bad_answer.is_some() && (self.error_status.is_some() || self.hang) {
            return Err("bad_answer needs an answer: it cannot go with error_status or hang".to_string());
        }
        Ok(())
    }
}

/// What a request must do because of a fault, taken (and counted) when the request arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestFault {
    /// Answer with this status and message instead of running.
    pub error: Option<(u16, String)>,
    /// The `Retry-After` seconds to send with `error`.
    pub retry_after: Option<u64>,
    /// Wait this long (simulated) first.
    pub latency: Duration,
    /// Never answer.
    pub hang: bool,
    /// Cut the response body after this many chunks.
    pub disconnect_after: Option<u32>,
    /// Answer badly, this way (generations only).
    pub bad_answer: Option<BadAnswer>,
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

    /// The request fault for `model`, counted against its `fail_times`. A request that `generates` an answer picks
    /// up `bad_answer` faults; any other (a load, an unload, an embedding) passes by a fault that only sets that.
    pub(crate) fn take_request(&self, model: &ModelName, generates: bool) -> RequestFault {
        let mut faults = self.lock();
        let relevant = if generates { FaultSpec::affects_requests } else { FaultSpec::affects_any_request };
        let spec = take(&mut faults, model, relevant);
        let Some(spec) = spec else { return RequestFault::default() };
        RequestFault {
            error: spec.error_status.map(|status| {
                let message = spec
                    .error_message
                    .clone()
                    .unwrap_or_else(|| format!("simulated fault: status {status} injected for {model}"));
                (status, message)
            }),
            retry_after: spec.retry_after_secs,
            latency: Duration::from_millis(spec.latency_ms.unwrap_or(0)),
            hang: spec.hang,
            disconnect_after: spec.disconnect_after_chunks,
            bad_answer: spec.bad_answer.filter(|_| generates),
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
        assert_eq!(book.take_request(&name("a"), true).error.map(|e| e.0), Some(500));
        assert_eq!(book.take_request(&name("a"), true).error.map(|e| e.0), Some(500));
        let third = book.take_request(&name("a"), true);
        assert_eq!(third.error, None);
        assert_eq!(third.latency, Duration::from_millis(50));
        assert_eq!(book.take_request(&name("b"), true).latency, Duration::from_millis(50));
        assert_eq!(book.list().len(), 1);
    }

    #[test]
    fn oom_faults_are_taken_by_loads_only() {
        let book = FaultBook::default();
        book.set(Some(name("a")), FaultSpec { oom_on_load: true, fail_times: Some(1), ..Default::default() });
        assert_eq!(book.take_request(&name("a"), true), RequestFault::default());
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

    #[test]
    fn bad_answers_are_taken_by_generations_only() {
        let book = FaultBook::default();
        let spec = FaultSpec { bad_answer: Some(BadAnswer::Refusal), fail_times: Some(1), ..Default::default() };
        assert!(!spec.is_empty());
        book.set(Some(name("a")), spec);
        assert_eq!(book.take_request(&name("a"), false), RequestFault::default(), "a load passes it by");
        assert_eq!(book.list().len(), 1, "and uses none of its fail_times");
        assert_eq!(book.take_request(&name("a"), true).bad_answer, Some(BadAnswer::Refusal));
        assert_eq!(book.take_request(&name("a"), true).bad_answer, None, "fail_times 1: used up");
        assert!(book.list().is_empty());

        // With other faults in the same spec, a load takes it (and a use) but gets no bad answer.
        book.set(None, FaultSpec { bad_answer: Some(BadAnswer::Empty), latency_ms: Some(5), ..Default::default() });
        let load = book.take_request(&name("b"), false);
        assert_eq!((load.bad_answer, load.latency), (None, Duration::from_millis(5)));
        assert_eq!(book.take_request(&name("b"), true).bad_answer, Some(BadAnswer::Empty));
    }

    #[test]
    fn bad_answer_kinds_are_snake_case() {
        let spec: FaultSpec = serde_json::from_str(r#"{"bad_answer": "invalid_json", "fail_times": 2}"#).unwrap();
        assert_eq!(spec.bad_answer, Some(BadAnswer::InvalidJson));
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({"bad_answer": "invalid_json", "fail_times": 2})
        );
        for kind in ["empty", "truncated", "invalid_json", "refusal", "bad_code", "bad_tool_args", "wrong"] {
            let value = serde_json::json!({ "bad_answer": kind });
            let spec: FaultSpec = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(serde_json::to_value(&spec).unwrap(), value);
        }
        assert!(serde_json::from_str::<FaultSpec>(r#"{"bad_answer": "rude"}"#).is_err());
        let refusal = Some(BadAnswer::Refusal);
        assert!(FaultSpec { bad_answer: refusal, latency_ms: Some(9), ..Default::default() }.validate().is_ok());
        assert!(FaultSpec { bad_answer: refusal, hang: true, ..Default::default() }.validate().is_err());
        assert!(FaultSpec { bad_answer: refusal, error_status: Some(500), ..Default::default() }.validate().is_err());
    }
}
