//! Cascades: a task's request answered by its cheapest step first, each answer validated (`cascade::validate`,
//! and optionally a judge model's score) before it is accepted, escalating to the next step when it fails.
//!
//! Every step is asked for a whole answer. A buffered request never sees the refused answers; a streamed one runs
//! as a cascade only when the client opts in with `x-switchyard-cascade: buffer` (the accepted answer is then sent
//! as a stream once it is complete), and otherwise is routed as the task's plain `auto` request, so a stream is never
//! cut or sent twice. The last step's answer is returned even when it fails validation (it is the best there is),
//! and the headers say so.

use super::decision::{self, category_label};
use super::outcome::{self, Answer, Outcome};
use super::{Engine, Request};
use crate::cache::replay;
use crate::cache::{CacheStatus, Plan};
use crate::cascade::validate::{self, Rejection};
use crate::error::RouterError;
use crate::forward::Reply;
use crate::request::{Endpoint, PrepareContext, Prepared, Target, prepare_native};
use crate::score::Scoring;
use crate::tasks::Cascade;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};
use switchyard_core::ModelName;
use switchyard_core::ollama::Timings;

/// The header a client sets to `buffer` to have a streamed request run its task's cascade, or to `off` to skip it.
pub(crate) const CASCADE_HEADER: &str = "x-switchyard-cascade";

/// Tokens a judge may answer with (a short justification and the score).
const JUDGE_MAX_TOKENS: u64 = 200;

/// What a request's `x-switchyard-cascade` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CascadeMode {
    /// Buffered requests run the cascade; streams do not.
    #[default]
    Default,
    /// Streams run it too, the accepted answer streamed once complete.
    Buffer,
    /// The request is routed without its cascade.
    Off,
}

impl CascadeMode {
    /// Reads the header; anything but `buffer` or `off` is a 400.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, RouterError> {
        let Some(v) = headers.get(CASCADE_HEADER) else { return Ok(Self::Default) };
        match v.to_str().map(str::trim) {
            Ok(v) if v.eq_ignore_ascii_case("buffer") => Ok(Self::Buffer),
            Ok(v) if v.eq_ignore_ascii_case("off") => Ok(Self::Off),
            _ => Err(RouterError::bad(format!("{CASCADE_HEADER} must be \"buffer\" or \"off\""), None)),
        }
    }
}

/// How a cascade went, for the response headers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    /// The 1-based step whose answer was returned.
    pub step: usize,
    /// Steps the cascade had.
    pub steps: usize,
    /// Each refused step: its model and why.
    pub escalations: Vec<(ModelName, &'static str)>,
    /// Why the returned (last) answer failed validation too, if it did.
    pub unvalidated: Option<&'static str>,
}

impl Report {
    /// `x-switchyard-cascade-step`, `x-switchyard-cascade-escalations` and, when the returned answer failed too,
    /// `x-switchyard-cascade-unvalidated`.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("x-switchyard-cascade-step", format!("{}/{}", self.step, self.steps))];
        if !self.escalations.is_empty() {
            let list: Vec<String> = self.escalations.iter().map(|(m, why)| format!("{m}={why}")).collect();
            out.push(("x-switchyard-cascade-escalations", list.join(", ")));
        }
        if let Some(why) = self.unvalidated {
            out.push(("x-switchyard-cascade-unvalidated", why.to_string()));
        }
        out
    }
}

/// The cascade `req` runs, if any: an `auto` text request of a task with a cascade, buffered or opted in.
pub(super) fn applies(req: &Request) -> Option<&Cascade> {
    let prepared = &req.prepared;
    let cascade = prepared.task.as_ref()?.cascade.as_ref()?;
    let runs = matches!(prepared.target, Target::Auto { .. })
        && !prepared.endpoint.is_embedding()
        && match req.cascade {
            CascadeMode::Off => false,
            CascadeMode::Buffer => true,
            CascadeMode::Default => !prepared.stream,
        };
    runs.then_some(cascade)
}

/// An `"auto"` cascade starts at the cheapest model whose quality in the request's category is at least this share
/// of the best model's: a model far below the best would mostly pass its failures on, paying for two answers.
/// Chosen once as a round figure, not tuned on any evaluation.
const ADEQUATE_SHARE: f64 = 0.5;

/// The steps of a cascade for a scored request: the listed models that can serve it, in their order; or, for
/// `"auto"`, the eligible models from the cheapest adequate one (by predicted latency; see [`ADEQUATE_SHARE`]) up,
/// each step better in quality than the one before, ending with the best; at most `max_steps`.
pub(crate) fn steps(scoring: &Scoring, cascade: &Cascade) -> Vec<ModelName> {
    let local = || scoring.eligible().filter(|c| !c.fallback_only);
    let mut steps: Vec<ModelName> = match &cascade.models {
        Some(list) => list.iter().filter(|m| local().any(|c| &c.model == *m)).cloned().collect(),
        None => {
            let top = local().map(|c| c.quality).fold(f64::NEG_INFINITY, f64::max);
            let mut by_cost: Vec<_> = local().filter(|c| c.quality >= ADEQUATE_SHARE * top).collect();
            by_cost.sort_by(|a, b| a.latency.total.total_cmp(&b.latency.total).then(b.quality.total_cmp(&a.quality)));
            let mut chain: Vec<ModelName> = Vec::new();
            let mut best = f64::NEG_INFINITY;
            for c in by_cost {
                if c.quality > best + 1e-9 {
                    best = c.quality;
                    chain.push(c.model.clone());
                }
            }
            if chain.len() > cascade.max_steps {
                // Keep the cheapest steps and the best model as the last.
                let last = chain.pop();
                chain.truncate(cascade.max_steps.saturating_sub(1));
                chain.extend(last);
            }
            chain
        }
    };
    steps.truncate(cascade.max_steps);
    steps
}

impl Engine<'_> {
    /// Runs `req` through `cascade`; gives the cache plan back (`Ok(Err(plan))`) when no model of the cascade can
    /// serve the request, for plain routing to try.
    pub(super) async fn cascade(
        &self,
        req: &Request,
        cascade: &Cascade,
        plan: Option<Plan>,
    ) -> Result<Result<Outcome, Option<Plan>>, RouterError> {
        let state = self.state;
        let Target::Auto { preference, .. } = req.prepared.target else {
            return Err(RouterError::Internal("a cascade needs an auto request".into()));
        };
        decision::ensure_catalog(state).await?;
        let mut decided = decision::decide(state, &req.prepared, preference);
        let list = steps(&decided.scoring, cascade);
        if list.len() < 2 {
            tracing::debug!(request_id = %req.request_id, steps = list.len(), "too few cascade steps can serve this request; routed without the cascade");
            return Ok(Err(plan));
        }
        decided.candidates.clone_from(&list);
        decision::record(state, req, preference, decided, true);
        let category = category_label(&req.prepared);
        // Every step is asked for a whole answer; the client's stream (when it opted in) is made from the one kept.
        let mut whole = req.prepared.clone();
        whole.stream = false;
        let step_req = Request {
            prepared: whole,
            surface: req.surface,
            route: req.route,
            request_id: req.request_id.clone(),
            started: req.started,
            cache: req.cache,
            cascade: req.cascade,
        };
        let mut escalations: Vec<(ModelName, &'static str)> = Vec::new();
        let mut last_error = None;
        // The latest answer refused by a validator or the judge: returned (marked) if every later step fails.
        let mut refused: Option<(Outcome, usize, &'static str)> = None;
        for (i, model) in list.iter().enumerate() {
            let step = i + 1;
            let last = step == list.len();
            let admitted = match self.attempt(&step_req, std::slice::from_ref(model)).await {
                Ok(admitted) => admitted,
                // A step's model refusing the request (a 4xx) may be that model's limit (its context, a feature):
                // the next step is tried, and the last one's error is the answer when every step fails.
                Err(e) => {
                    tracing::debug!(request_id = %req.request_id, model = %model, error = %e, "cascade step failed");
                    self.escalated(step, "error");
                    escalations.push((model.clone(), "error"));
                    last_error = Some(e);
                    continue;
                }
            };
            // Finished at once like any answer (speeds learned, breaker settled, lease released, so that a judge
            // or the next step never waits for this one's memory); validated after.
            let outcome = outcome::finish(state, &step_req, admitted, category, None);
            let Answer::Buffered(bytes) = &outcome.answer else {
                return Err(RouterError::Internal("a cascade step answered with a stream".into()));
            };
            self.spent("answer", bytes);
            // The last step's answer is returned whatever a judge would say: only the validators mark it.
            let judge = cascade.judge.as_ref().filter(|_| !last);
            match self.judge_answer(req, cascade, judge, bytes).await {
                Err(reason) if !last => {
                    tracing::debug!(request_id = %req.request_id, model = %model, reason, "cascade escalates");
                    self.escalated(step, reason);
                    escalations.push((model.clone(), reason));
                    refused = Some((outcome, step, reason));
                }
                verdict => {
                    let unvalidated = verdict.err();
                    let report = Report { step, steps: list.len(), escalations, unvalidated };
                    return Ok(Ok(self.accept(req, outcome, plan, report)));
                }
            }
        }
        // Every later step failed to answer: the best there is, an answer that failed its checks, beats an error.
        if let Some((outcome, step, reason)) = refused {
            let report = Report { step, steps: list.len(), escalations, unvalidated: Some(reason) };
            return Ok(Ok(self.accept(req, outcome, plan, report)));
        }
        Err(last_error.unwrap_or_else(|| RouterError::UpstreamFailed("no cascade step could answer".into())))
    }

    /// The outcome of the accepted step: its answer whole, or as a stream when the client asked for one; kept in
    /// the response cache when it passed validation.
    fn accept(&self, req: &Request, mut outcome: Outcome, plan: Option<Plan>, report: Report) -> Outcome {
        let state = self.state;
        state.metrics.cascade_requests.with_label_values(&[step_label(report.step)]).inc();
        state.conversations.answered(req.prepared.conversation.as_ref(), &outcome.model);
        outcome.cache = plan.as_ref().map_or(CacheStatus::Off, Plan::missed);
        if let Answer::Buffered(bytes) = &outcome.answer {
            if let Some(plan) = plan.as_ref().filter(|p| p.write && report.unvalidated.is_none()) {
                state.cache.insert(state, plan, req.prepared.endpoint, &outcome.model, bytes.clone());
            }
            if req.prepared.stream {
                let parsed = replay::renamed(bytes, &outcome.shown);
                outcome.answer = outcome::stream_of(replay::stream_lines(req.prepared.endpoint, &parsed));
            }
        }
        outcome.cascade = Some(Box::new(report));
        outcome
    }

    /// Why the answer in `bytes` is refused: a validator's failure, or the judge's low score.
    async fn judge_answer(
        &self,
        req: &Request,
        cascade: &Cascade,
        judge: Option<&ModelName>,
        bytes: &Bytes,
    ) -> Result<(), &'static str> {
        let Ok(answer) = serde_json::from_slice::<Value>(bytes) else {
            return Err("invalid_answer");
        };
        if let Err(Rejection { failure, detail }) = validate::validate(&answer, &req.prepared.body, cascade.checks) {
            tracing::debug!(request_id = %req.request_id, reason = failure.as_str(), %detail, "answer refused");
            return Err(failure.as_str());
        }
        let Some(judge) = judge else { return Ok(()) };
        // Tool calls are judged by the `tools` validator (names and arguments against their schemas); a judge
        // reading the answer's text would see none and score it empty.
        let calls = answer.pointer("/message/tool_calls").and_then(Value::as_array).is_some_and(|c| !c.is_empty());
        if calls {
            return Ok(());
        }
        let text = validate::answer_text(&answer);
        match self.judge_score(req, judge, text).await {
            Some(score) if score < cascade.judge_min_score => Err("judge"),
            Some(_) => Ok(()),
            None => {
                // A judge that cannot answer does not hold the request back: the validators passed. Said once (a
                // judge that is not pulled would otherwise fill the log), then per request at debug level.
                if cascade.judge_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::debug!(request_id = %req.request_id, judge = %judge, "the cascade's judge gave no score");
                } else {
                    tracing::warn!(
                        request_id = %req.request_id,
                        judge = %judge,
                        "the cascade's judge gave no score (is it pulled?); answers are accepted on the validators alone"
                    );
                }
                Ok(())
            }
        }
    }

    /// The judge's score in [0, 1] for `answer` to the request's last turn, or `None` when it gave none.
    async fn judge_score(&self, req: &Request, judge: &ModelName, answer: &str) -> Option<f64> {
        let state = self.state;
        let task = task_text(&req.prepared)?;
        let prompt = switchyard_profiler::judge::answer_judge_prompt(&task, answer);
        let body = json!({
            "model": judge.as_str(),
            "messages": [{"role": "user", "content": prompt}],
            "stream": false,
            "options": {"temperature": 0, "num_predict": JUDGE_MAX_TOKENS},
        });
        let Value::Object(body) = body else { return None };
        let prepared = prepare_native(
            Endpoint::Chat,
            body,
            PrepareContext { routing: &state.config.routing, classifier: &state.classifier, quality_header: None },
        )
        .ok()?;
        let judge_req = Request {
            prepared,
            surface: req.surface,
            route: req.route,
            request_id: req.request_id.clone(),
            started: req.started,
            cache: req.cache,
            cascade: CascadeMode::Off,
        };
        let admitted = self.attempt(&judge_req, std::slice::from_ref(judge)).await.ok()?;
        let Reply::Buffered(bytes) = &admitted.reply else { return None };
        let bytes = bytes.clone();
        drop(admitted);
        // Settles the judge model's breaker (a half-open one lets its trial request through and waits for it).
        state.breaker.success(judge);
        self.spent("judge", &bytes);
        let reply: Value = serde_json::from_slice(&bytes).ok()?;
        switchyard_profiler::judge::parse_judge_reply(validate::answer_text(&reply))
    }

    fn escalated(&self, step: usize, reason: &'static str) {
        self.state.metrics.cascade_escalations.with_label_values(&[step_label(step), reason]).inc();
    }

    /// Counts the model time an answer reports.
    fn spent(&self, work: &str, bytes: &[u8]) {
        if let Some(t) = Timings::from_slice(bytes) {
            self.state.metrics.cascade_model_seconds.with_label_values(&[work]).inc_by(t.total_ns as f64 / 1e9);
        }
    }
}

/// What the judge is shown as the task: the system prompt (when there is one) and the last user turn.
fn task_text(prepared: &Prepared) -> Option<String> {
    let body = &prepared.body;
    let (system, user) = match prepared.endpoint {
        Endpoint::Chat => {
            let messages = body.get("messages")?.as_array()?;
            let of = |role: &str| {
                messages
                    .iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some(role))
                    .and_then(|m| m.get("content"))
                    .and_then(Value::as_str)
            };
            (of("system"), of("user")?)
        }
        Endpoint::Generate => (body.get("system").and_then(Value::as_str), body.get("prompt")?.as_str()?),
        Endpoint::Embed | Endpoint::Embeddings => return None,
    };
    Some(match system.filter(|s| !s.is_empty()) {
        Some(system) => format!("{system}\n\n{user}"),
        None => user.to_string(),
    })
}

/// A step number as a bounded metric label.
fn step_label(step: usize) -> &'static str {
    const LABELS: [&str; 8] = ["1", "2", "3", "4", "5", "6", "7", "8"];
    LABELS.get(step.saturating_sub(1)).copied().unwrap_or("8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cascade::validate::Checks;
    use crate::score::{Candidate, Latency};
    use std::sync::Arc;
    use switchyard_core::Category;

    fn candidate(name: &str, quality: f64, latency: f64) -> Candidate {
        Candidate {
            quality,
            loaded: true,
            latency: Latency { total: latency, ..Latency::default() },
            ..Candidate::unscored(ModelName::parse(name).unwrap(), Arc::from("ollama"))
        }
    }

    fn scoring(candidates: Vec<Candidate>) -> Scoring {
        Scoring {
            category: Category::Math,
            blended: false,
            preference: 0.7,
            prompt_tokens: 10,
            expected_output_tokens: 100,
            candidates,
        }
    }

    fn cascade(models: Option<&[&str]>, max_steps: usize) -> Cascade {
        Cascade {
            models: models.map(|m| m.iter().map(|n| ModelName::parse(n).unwrap()).collect()),
            max_steps,
            checks: Checks::default(),
            judge: None,
            judge_min_score: 0.7,
            judge_warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn names(steps: &[ModelName]) -> Vec<&str> {
        steps.iter().map(|m| m.as_str().split(':').next().unwrap_or("")).collect()
    }

    #[test]
    fn auto_steps_start_at_the_cheapest_adequate_model_and_climb_in_quality() {
        let s = scoring(vec![
            candidate("tiny", 0.20, 0.5),  // cheapest, but under half the best: skipped
            candidate("small", 0.55, 1.0), // the first adequate one
            candidate("other", 0.50, 2.0), // no better than the step before: skipped
            candidate("mid", 0.70, 3.0),
            candidate("big", 0.90, 9.0),
            candidate("huge", 0.90, 30.0), // no better than big: skipped
        ]);
        assert_eq!(names(&steps(&s, &cascade(None, 3))), ["small", "mid", "big"]);
        // Too many steps: the cheapest ones and the best are kept.
        assert_eq!(names(&steps(&s, &cascade(None, 2))), ["small", "big"]);
        // A listed cascade keeps its order, without the models that cannot serve the request.
        let mut excluded = s.clone();
        excluded.candidates[3].excluded = Some("no tool support".into());
        assert_eq!(names(&steps(&excluded, &cascade(Some(&["tiny", "mid", "big"]), 3))), ["tiny", "big"]);
    }

    #[test]
    fn cascade_headers_say_how_it_went() {
        let report = Report {
            step: 2,
            steps: 3,
            escalations: vec![(ModelName::parse("a:1b").unwrap(), "refusal")],
            unvalidated: Some("code_syntax"),
        };
        let headers = report.headers();
        assert_eq!(headers[0], ("x-switchyard-cascade-step", "2/3".to_string()));
        assert_eq!(headers[1], ("x-switchyard-cascade-escalations", "a:1b=refusal".to_string()));
        assert_eq!(headers[2], ("x-switchyard-cascade-unvalidated", "code_syntax".to_string()));
    }
}
