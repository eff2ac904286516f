//! Profiling jobs on a running server: `POST /admin/profile` starts one (202 with its id; 409 while another runs),
//! `GET /admin/profile/{id}` reports its progress. The job runs in the background, takes its models through the
//! VRAM manager like live traffic, and reloads the routing profiles when it ends.

use crate::error::RouterError;
use crate::state::AppState;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use switchyard_core::ollama::types::rfc3339_nanos;
use switchyard_core::store::ScoreRecord;
use switchyard_profiler::plan::{options, suites};
use switchyard_profiler::runner::ModelOutcome;
use switchyard_profiler::{Progress, ProgressSink, Runner};
use tokio_util::sync::CancellationToken;

/// Finished jobs remembered for `GET /admin/profile/{id}`.
const HISTORY: usize = 20;

/// The body of `POST /admin/profile`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Items per category (0 = whole suite; default `profiler.items_per_category`).
    #[serde(default)]
    pub items_per_category: Option<u32>,
    #[serde(default)]
    pub force: bool,
}

/// One model's result in a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobModel {
    pub model: String,
    /// `profiled`, `skipped` or `failed`.
    pub outcome: String,
    pub detail: Option<String>,
    pub load_seconds: Option<f64>,
    pub vram_bytes: Option<u64>,
    pub scores: Vec<ScoreRecord>,
}

/// A job's progress, as `GET /admin/profile/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub id: String,
    /// `running`, `complete`, `failed` or `cancelled`.
    pub state: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub models_total: usize,
    pub models_done: usize,
    pub items_total: usize,
    pub items_done: usize,
    pub items_correct: usize,
    pub current_model: Option<String>,
    /// Share of items done, 0..1.
    pub progress: f64,
    pub error: Option<String>,
    pub models: Vec<JobModel>,
}

/// A job and the handle to stop it.
#[derive(Debug)]
pub struct Job {
    pub status: Mutex<JobStatus>,
    pub cancel: CancellationToken,
}

/// The running job (one at a time) and recent ones.
#[derive(Debug, Default)]
pub struct ProfileJobs {
    current: Mutex<Option<Arc<Job>>>,
    history: Mutex<VecDeque<Arc<Job>>>,
}

impl ProfileJobs {
    /// The status of job `id`.
    pub fn status(&self, id: &str) -> Option<JobStatus> {
        let current = self.current.lock().ok().and_then(|c| c.clone());
        let history = self.history.lock().map(|h| h.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
        current
            .into_iter()
            .chain(history)
            .find_map(|job| job.status.lock().ok().filter(|s| s.id == id).map(|s| s.clone()))
    }
}

struct JobProgress {
    job: Arc<Job>,
    state: AppState,
}

impl ProgressSink for JobProgress {
    fn event(&self, event: &Progress) {
        let Ok(mut s) = self.job.status.lock() else { return };
        match event {
            Progress::Plan { models } => {
                s.models_total = models.len();
                s.items_total = models.iter().map(|(_, n)| *n).sum();
            }
            Progress::ModelStarted { model, .. } => s.current_model = Some(model.clone()),
            Progress::Loaded { .. } => {}
            Progress::Item { correct, error, .. } => {
                s.items_done += 1;
                s.items_correct += usize::from(*correct);
                let result = if error.is_some() {
                    "error"
                } else if *correct {
                    "correct"
                } else {
                    "incorrect"
                };
                self.state.metrics.profiler_items.with_label_values(&[result]).inc();
            }
            Progress::ModelDone { .. } | Progress::ModelSkipped { .. } | Progress::ModelFailed { .. } => {
                s.models_done += 1;
                s.current_model = None;
            }
        }
        s.progress = if s.items_total == 0 { 1.0 } else { s.items_done as f64 / s.items_total as f64 };
        self.state.metrics.profiler_progress.set(s.progress);
    }
}

/// Starts a profiling job; `Conflict` when one is running.
pub fn start(state: &AppState, request: JobRequest) -> Result<JobStatus, RouterError> {
    if !state.config.ollama.enabled {
        // Its models are the nodes': profiled here they would all fail and write zero scores into a shared store.
        return Err(RouterError::bad(
            "this router has no Ollama of its own (ollama.enabled = false): profile on the nodes (switchyard profile \
             there, or POST /admin/profile to a node), whose scores every front reads from the shared store",
            None,
        ));
    }
    let mut config = switchyard_core::config::Config::clone(&state.config);
    if let Some(n) = request.items_per_category {
        config.profiler.items_per_category = n;
    }
    let run_options = options(&config, &request.models, &request.categories, request.force)?;
    let suites = suites(&config)?;
    let mut current = state.jobs.current.lock().map_err(|_| RouterError::Internal("job registry poisoned".into()))?;
    if let Some(running) = current.as_ref() {
        let id = running.status.lock().map(|s| s.id.clone()).unwrap_or_default();
        return Err(RouterError::Conflict(format!(
            "profiling job {id} is already running; follow it at /admin/profile/{id}"
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let job = Arc::new(Job {
        status: Mutex::new(JobStatus {
            id: id.clone(),
            state: "running".into(),
            started_at: rfc3339_nanos(chrono::Utc::now()),
            finished_at: None,
            models_total: 0,
            models_done: 0,
            items_total: 0,
            items_done: 0,
            items_correct: 0,
            current_model: None,
            progress: 0.0,
            error: None,
            models: Vec::new(),
        }),
        cancel: state.shutdown.child_token(),
    });
    *current = Some(Arc::clone(&job));
    drop(current);
    let runner = Runner {
        client: state.ollama.clone(),
        store: Arc::clone(&state.store),
        vram: state.vram.clone(),
        config: Arc::new(config),
        suites: Arc::new(suites),
        cancel: job.cancel.clone(),
    };
    let task_state = state.clone();
    let task_job = Arc::clone(&job);
    state.tracker.spawn(async move {
        let catalog = task_state.catalog.load_full();
        let progress = JobProgress { job: Arc::clone(&task_job), state: task_state.clone() };
        let result = runner.run(&catalog, &run_options, &progress).await;
        if let Err(e) = task_state.reload_profiles().await {
            tracing::warn!(error = %e, "cannot reload profiles after profiling");
        }
        if let Ok(mut s) = task_job.status.lock() {
            s.finished_at = Some(rfc3339_nanos(chrono::Utc::now()));
            s.current_model = None;
            match result {
                Ok(summary) => {
                    s.state = "complete".into();
                    s.models = summary
                        .models
                        .into_iter()
                        .map(|m| {
                            let (outcome, detail) = match m.outcome {
                                ModelOutcome::Profiled => ("profiled", None),
                                ModelOutcome::Skipped(r) => ("skipped", Some(r)),
                                ModelOutcome::Failed(e) => ("failed", Some(e)),
                            };
                            JobModel {
                                model: m.model,
                                outcome: outcome.into(),
                                detail,
                                load_seconds: m.load_seconds,
                                vram_bytes: m.vram_bytes,
                                scores: m.scores,
                            }
                        })
                        .collect();
                }
                Err(switchyard_profiler::ProfileError::Cancelled) => s.state = "cancelled".into(),
                Err(e) => {
                    s.state = "failed".into();
                    s.error = Some(e.to_string());
                }
            }
        }
        if let Ok(mut current) = task_state.jobs.current.lock() {
            *current = None;
        }
        if let Ok(mut history) = task_state.jobs.history.lock() {
            if history.len() == HISTORY {
                history.pop_back();
            }
            history.push_front(task_job);
        }
    });
    job.status.lock().map(|s| s.clone()).map_err(|_| RouterError::Internal("job status poisoned".into()))
}
