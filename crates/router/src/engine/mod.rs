//! The engine: the one owner of a request's way through the router.
//!
//! A surface (`api::ollama`, `api::openai`) parses its request into a [`Prepared`] and hands it to
//! [`Engine::serve`], which returns a finished [`Outcome`]: a control answer, a whole buffered answer, or a relay
//! of the upstream stream that holds the VRAM lease until its body ends. In between, in this order and nowhere
//! else: empty-prompt loads and unloads, classification (refined by the embedding classifier when configured),
//! the routing decision ([`decision`], shared with `/admin/explain`), admission through a VRAM lease, forwarding,
//! fallback to the next candidate, and the finishing of the answer ([`outcome`]: metrics, breaker, live learning).
//!
//! Failures before the first byte (connection refused, a 5xx, an out-of-memory load, a timeout, a stream that broke
//! at once) count against the model's circuit breaker and move on to the next candidate, within
//! `routing.max_attempts` and the admission wait.

pub(crate) mod cascade;
pub(crate) mod decision;
pub(crate) mod outcome;
pub(crate) mod think;

use crate::backends::{Admission, Backend};
use crate::cache::{self, CacheStatus, Directives};
use crate::error::RouterError;
use crate::forward::ForwardFailure;
use crate::request::{Control, Prepared, Target};
use crate::state::AppState;
use decision::category_label;
use outcome::Admitted;
pub(crate) use outcome::{Answer, Outcome};
use std::time::{Duration, Instant};
use switchyard_core::ModelName;
use switchyard_core::ollama::KeepAlive;
use switchyard_vram::{AdminOp, VramError};

/// Which API surface a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    Ollama,
    OpenAi,
}

impl Surface {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Surface::Ollama => "ollama",
            Surface::OpenAi => "openai",
        }
    }
}

/// A parsed request and where it came from.
#[derive(Debug)]
pub(crate) struct Request {
    pub prepared: Prepared,
    pub surface: Surface,
    /// The route label for metrics (`/api/chat`, `/v1/completions`, ...).
    pub route: &'static str,
    pub request_id: String,
    /// When the request arrived (for the overhead, first-token and duration metrics).
    pub started: Instant,
    /// What the request's `Cache-Control` allows the response cache to do.
    pub cache: Directives,
    /// What `x-switchyard-cascade` asks of the task's cascade.
    pub cascade: cascade::CascadeMode,
}

/// Serves requests against the router's shared state.
#[derive(Clone, Copy)]
pub(crate) struct Engine<'a> {
    state: &'a AppState,
}

impl<'a> Engine<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Self { state }
    }

    /// Serves one request to a finished outcome, or the error its surface should show.
    pub(crate) async fn serve(&self, mut req: Request) -> Result<Outcome, RouterError> {
        // A model named in another case than Ollama lists it is that model (Ollama matches names so).
        if let Target::Model(name) = &mut req.prepared.target
            && let Some(spelled) = self.state.catalog.load().spelled(name).filter(|s| *s != name)
        {
            *name = spelled.clone();
        }
        if let Some(control) = req.prepared.control {
            let mut outcome = self.control(&req.prepared, control).await?;
            if self.state.cache.enabled() {
                cache::count_bypass(self.state);
                outcome.cache = CacheStatus::Bypass;
            }
            return Ok(outcome);
        }
        let mut plan = self.state.cache.plan(&req.prepared, req.cache);
        let cascade = cascade::applies(&req).is_some();
        if let Some(plan) = plan.as_mut() {
            // A task's cache holds only answers its cascade validated: one served without the cascade (a stream
            // that did not opt in, `x-switchyard-cascade: off`) is not stored.
            let skips_cascade = req.prepared.task.as_ref().is_some_and(|t| t.cascade.is_some()) && !cascade;
            plan.write &= !skips_cascade;
        }
        if let Some(plan) = plan.as_mut()
            && let Some(hit) = cache::lookup(self.state, plan).await
        {
            if matches!(hit.status, CacheStatus::SemanticHit(_)) {
                self.state.cache.alias(self.state, plan, &hit.entry);
            }
            return Ok(outcome::replay(&req, hit));
        }
        decision::classify(self.state, &mut req.prepared).await;
        // A generate carrying a context its writer should read is not cascaded: the cheaper steps could not read it.
        req.prepared.context_writer = self.state.contexts.model_for(req.prepared.context_key);
        if let Some(steps) = cascade::applies(&req).filter(|_| req.prepared.context_writer.is_none()) {
            match self.cascade(&req, steps, plan).await? {
                Ok(outcome) => return Ok(outcome),
                // No model of the cascade can serve it: routed as the task's plain `auto` request.
                Err(unused) => plan = unused,
            }
        }
        let category = category_label(&req.prepared);
        let candidates = self.candidates(&req).await?;
        let admitted = self.attempt(&req, &candidates).await?;
        self.state.metrics.overhead.observe(admitted.forwarded_at.duration_since(req.started).as_secs_f64());
        self.state.conversations.answered(req.prepared.conversation.as_ref(), &admitted.model);
        Ok(outcome::finish(self.state, &req, admitted, category, plan))
    }

    /// The models to try, best first: the named one, or the decision's candidates for `auto`.
    async fn candidates(&self, req: &Request) -> Result<Vec<ModelName>, RouterError> {
        let state = self.state;
        let prepared = &req.prepared;
        match &prepared.target {
            Target::Model(name) => Ok(vec![decision::check_explicit(state, prepared, name).await?]),
            Target::Auto { preference, .. } => {
                decision::ensure_catalog(state).await?;
                let decided = decision::decide(state, prepared, *preference);
                let why_none = decided.candidates.is_empty().then(|| decided.scoring.why_none());
                let candidates = decision::record(state, req, *preference, decided, false);
                if let Some(reason) = why_none {
                    tracing::debug!(%reason, "no candidate");
                    if state.catalog.load().models.is_empty() {
                        return Err(RouterError::UpstreamFailed(
                            "no models are known: Ollama has none pulled or cannot be reached (ollama pull llama3.2)"
                                .into(),
                        ));
                    }
                    return Err(RouterError::NoCapableModel(reason));
                }
                Ok(candidates)
            }
        }
    }

    /// Admits and forwards to each candidate in turn until one answers.
    async fn attempt(&self, req: &Request, list: &[ModelName]) -> Result<Admitted, RouterError> {
        let state = self.state;
        let prepared = &req.prepared;
        let explicit = matches!(prepared.target, Target::Model(_));
        let deadline = Instant::now() + Duration::from_millis(state.config.vram.admission_wait_ms);
        let mut last: Option<RouterError> = None;
        for (attempt, model) in list.iter().enumerate() {
            if attempt > 0 {
                let reason = last.as_ref().map_or("unknown", RouterError::kind);
                state.metrics.fallbacks.with_label_values(&[reason]).inc();
                tracing::debug!(request_id = %req.request_id, model = %model, reason, "falling back to the next candidate");
            }
            if !state.breaker.allow(model) {
                last = Some(RouterError::UpstreamFailed(format!(
                    "{model} failed repeatedly and is paused for {} s (circuit breaker); retry later or pick another model",
                    state.config.breaker.cooldown_secs
                )));
                continue;
            }
            let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let (target, cloud) =
                state.catalog.load().get(model).map_or((None, false), |s| (s.backend.clone(), s.cloud));
            let backend: &dyn Backend = match &target {
                None if cloud => &state.cloud,
                None => &state.local,
                Some(t) if t.fleet => &state.fleet,
                Some(t) => match state.backends.get(t.index) {
                    Some(b) => b.as_ref(),
                    None => {
                        return Err(RouterError::Internal(format!("{model} names a backend that is not configured")));
                    }
                },
            };
            // Another model than the one known to have written a generate's `context` could not read it: sent
            // without it. (A context whose writer is not known, after a restart, goes as sent.) A model known to
            // refuse thinking levels is asked `think: true` instead (see [`think`]).
            let drop_context = prepared.context_writer.as_ref().is_some_and(|w| w != model);
            let level_refused = think::asks_level(prepared) && state.think_levels.refused(model);
            let adapted;
            let prepared = if drop_context || level_refused {
                let mut p = if level_refused { think::as_true(prepared) } else { prepared.clone() };
                if drop_context {
                    p.body.remove("context");
                }
                adapted = p;
                &adapted
            } else {
                prepared
            };
            let hold = match backend.admit(model, prepared, wait).await {
                Ok(hold) => hold,
                Err(Admission::Busy(e)) => {
                    if explicit {
                        return Err(e);
                    }
                    last = Some(e);
                    continue;
                }
                Err(Admission::Failed(e)) => {
                    state.breaker.failure(model);
                    last = Some(e);
                    if explicit {
                        break;
                    }
                    continue;
                }
                Err(Admission::Fatal(e)) => return Err(e),
            };
            let upstream_name = if explicit { prepared.requested.clone() } else { model.to_string() };
            // A backend's model is sent by the id its server knows it by.
            let id = target.as_ref().map_or(upstream_name.as_str(), |t| &t.id);
            let forwarded_at = Instant::now();
            let span = tracing::Span::current();
            span.record("model", model.as_str());
            span.record("category", category_label(prepared));
            let mut sent = backend.send(prepared, req.surface, id, &upstream_name, &hold).await;
            if let Err(ForwardFailure::Status { status: 400, message, .. }) = &sent
                && think::is_level_refusal(message)
                && think::asks_level(prepared)
            {
                state.think_levels.refuse(model);
                tracing::debug!(model = %model, "the model refuses thinking levels: asked again with think true");
                sent = backend.send(&think::as_true(prepared), req.surface, id, &upstream_name, &hold).await;
            }
            let idle = backend.idle_timeout();
            match sent {
                Ok(reply) => {
                    // Until the first chunk for streams, the whole answer otherwise.
                    span.record("upstream_ms", forwarded_at.elapsed().as_secs_f64() * 1000.0);
                    return Ok(Admitted { model: model.clone(), upstream_name, reply, hold, idle, forwarded_at });
                }
                Err(failure) if backend.refused_for_room(&failure) => {
                    let e = RouterError::Busy {
                        message: format!(
                            "no room for {model} now: {}",
                            RouterError::forward_failure(&failure, model, None)
                        ),
                        retry_after_secs: 1,
                    };
                    if explicit {
                        return Err(e);
                    }
                    last = Some(e);
                }
                // A backend refusing its key or rate-limiting is that backend's failure, not the request's.
                Err(ForwardFailure::Status { status, message, .. })
                    if (400..500).contains(&status)
                        && status != 404
                        && !((backend.remote() || cloud) && matches!(status, 401 | 403 | 408 | 429)) =>
                {
                    // From Ollama, or a fleet node (which checks requests as Ollama's router does), the request itself
                    // is wrong: another model will not fix it. An OpenAI-compatible engine behind `[[backends]]` may
                    // refuse what the router could only guess it does (tools without a tool parser, a prompt over its
                    // context): for `auto`, the next candidate may serve it. Neither counts against the model.
                    if target.as_ref().is_none_or(|t| t.fleet) || explicit {
                        return Err(RouterError::UpstreamRejected { status, message });
                    }
                    last = Some(RouterError::UpstreamRejected { status, message });
                }
                // A cloud model refused because Ollama is not signed in to ollama.com (401, 403) or the account's
                // allowance is used up (429): says nothing of the model's health, and another model may serve.
                Err(ForwardFailure::Status { status: status @ (401 | 403 | 429), message, retry_after }) if cloud => {
                    let e = if status == 429 {
                        RouterError::Busy {
                            message: format!("ollama.com is limiting requests to {model}: {message}"),
                            retry_after_secs: retry_after.unwrap_or(5),
                        }
                    } else {
                        RouterError::UpstreamRejected { status, message }
                    };
                    if explicit {
                        return Err(e);
                    }
                    last = Some(e);
                }
                // The answer is larger than Switchyard holds: another model's would be as large.
                Err(failure @ ForwardFailure::TooLarge(_)) => {
                    return Err(RouterError::forward_failure(&failure, model, target.as_ref().map(|t| &*t.name)));
                }
                Err(ForwardFailure::Status { status: 404, message, .. }) => {
                    if explicit {
                        return Err(RouterError::UpstreamRejected { status: 404, message });
                    }
                    if target.is_some() {
                        // A backend no longer serves it: read the backends' lists again (Ollama's state is not
                        // the question, so its being down must not end the fallback).
                        state.refresh_backends().await;
                    } else {
                        state.refresh_catalog_for_unknown().await?;
                    }
                    last = Some(RouterError::UpstreamFailed(message));
                }
                Err(failure) => {
                    // The local Ollama refusing connections (it is down) says nothing of this model: pausing the model
                    // would keep it refused after Ollama is back. A connection that broke after the request was sent
                    // (Ollama crashed on it) does count.
                    let ollama_down = target.is_none() && matches!(failure, ForwardFailure::Refused(_));
                    // A provider's rate limit says nothing of the model either: it passes with time.
                    let rate_limited = matches!(failure, ForwardFailure::Status { status: 429, .. });
                    if !ollama_down && !rate_limited && state.breaker.failure(model) {
                        tracing::warn!(model = %model, "circuit breaker opened");
                    }
                    backend.failed(&failure, &state.tracker);
                    let via = target.as_ref().map(|t| &*t.name);
                    last = Some(RouterError::forward_failure(&failure, model, via));
                }
            }
            drop(hold);
        }
        Err(last.unwrap_or_else(|| RouterError::UpstreamFailed("no candidate could be tried".into())))
    }

    /// An empty-prompt request: loads or unloads the named model through the VRAM manager, as Ollama does.
    async fn control(&self, prepared: &Prepared, control: Control) -> Result<Outcome, RouterError> {
        let state = self.state;
        let Target::Model(model) = &prepared.target else {
            return Err(RouterError::bad("auto needs a prompt to route", Some("model".into())));
        };
        if state.catalog.load().spelled(model).is_none() {
            state.refresh_catalog_for_unknown().await?;
        }
        // As the catalog spells it (a name in another case, pulled since the request was read).
        let Some(model) = state.catalog.load().spelled(model).cloned() else {
            return Err(RouterError::ModelNotFound(prepared.requested.clone()));
        };
        let model = &model;
        let (target, cloud) = state.catalog.load().get(model).map_or((None, false), |s| (s.backend.clone(), s.cloud));
        // Another server holds its own models, and ollama.com a cloud model (Ollama's own client skips loading those):
        // only a fleet's node or a router-mode server (llama.cpp's) is asked to load or unload.
        if target.is_some() || cloud {
            if let Some(target) = &target {
                if target.fleet {
                    state.fleet.control(model, control).await?;
                } else if let Some(backend) = state.backends.get(target.index)
                    && backend.manages_models()
                {
                    backend.manage(&target.id, control == Control::Load).await?;
                }
            }
            let reason = if control == Control::Load { "load" } else { "unload" };
            return Ok(Outcome {
                model: model.clone(),
                shown: prepared.requested.clone(),
                category: category_label(prepared),
                answer: Answer::Control(reason),
                cache: CacheStatus::Off,
                cascade: None,
                node: None,
            });
        }
        let reason = match control {
            Control::Load => {
                state.vram.admin(AdminOp::Load, model).await?;
                if let Some(keep_alive) = prepared.keep_alive {
                    state.vram.note_keep_alive(model, keep_alive);
                }
                "load"
            }
            Control::Unload => {
                match state.vram.admin(AdminOp::Unload, model).await {
                    Ok(_) => {}
                    // Busy: Ollama unloads once in-flight work is done; so does Switchyard, at its next poll.
                    Err(VramError::Busy { .. }) => state.vram.note_keep_alive(model, KeepAlive::For(Duration::ZERO)),
                    Err(e) => return Err(e.into()),
                }
                "unload"
            }
        };
        Ok(Outcome {
            model: model.clone(),
            shown: prepared.requested.clone(),
            category: category_label(prepared),
            answer: Answer::Control(reason),
            cache: CacheStatus::Off,
            cascade: None,
            node: None,
        })
    }
}
