//! Recent routing decisions: every one is kept in a small ring in memory (for `/admin/decisions`), and a sample
//! (`routing.decision_sample_rate`) is written to the store in the background.

use crate::score::Scoring;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One decision as `/admin/decisions` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionEntry {
    pub request_id: String,
    /// RFC 3339.
    pub at: String,
    /// `ollama` or `openai`.
    pub surface: &'static str,
    /// What the client asked for.
    pub requested: String,
    /// The model that was tried first.
    pub chosen: Option<String>,
    /// Microseconds spent classifying and scoring.
    pub decision_us: f64,
    pub confidence: f32,
    /// The task rule that applied (`x-switchyard-task` or `auto:NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The cascade's steps, in order, when the request was served by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<Vec<String>>,
    pub scoring: Scoring,
}

/// What happened after a decision: the model that answered (the chosen one, or a fallback) and how long the whole
/// request took, to set against the predicted latency.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub served_by: String,
    pub measured_ms: f64,
}

/// A decision with what was measured after it, as `/admin/decisions` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    #[serde(flatten)]
    pub entry: Arc<DecisionEntry>,
    #[serde(flatten)]
    pub measured: Option<Measured>,
}

/// The ring of recent decisions, each with what was measured once its request finished.
#[derive(Debug)]
pub struct Decisions {
    capacity: usize,
    ring: Mutex<VecDeque<(Arc<DecisionEntry>, Option<Measured>)>>,
}

impl Decisions {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), ring: Mutex::new(VecDeque::with_capacity(capacity.max(1))) }
    }

    /// Remembers a decision, forgetting the oldest beyond capacity.
    pub fn push(&self, entry: Arc<DecisionEntry>) {
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back((entry, None));
        }
    }

    /// Records what the request of decision `request_id` measured, while the decision is still kept.
    pub fn measured(&self, request_id: &str, served_by: &str, seconds: f64) {
        if let Ok(mut ring) = self.ring.lock()
            && let Some((_, m)) = ring.iter_mut().rev().find(|(e, _)| e.request_id == request_id)
        {
            *m = Some(Measured { served_by: served_by.to_string(), measured_ms: seconds * 1000.0 });
        }
    }

    /// The newest `limit` decisions, newest first.
    pub fn recent(&self, limit: usize) -> Vec<DecisionView> {
        self.ring
            .lock()
            .map(|ring| {
                ring.iter()
                    .rev()
                    .take(limit)
                    .map(|(entry, measured)| DecisionView { entry: Arc::clone(entry), measured: measured.clone() })
                    .collect()
            })
            .unwrap_or_default()
    }
}
