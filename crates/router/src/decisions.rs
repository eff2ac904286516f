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
    pub scoring: Scoring,
}

/// The ring of recent decisions.
#[derive(Debug)]
pub struct Decisions {
    capacity: usize,
    ring: Mutex<VecDeque<Arc<DecisionEntry>>>,
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
            ring.push_back(entry);
        }
    }

    /// The newest `limit` decisions, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<DecisionEntry>> {
        self.ring.lock().map(|ring| ring.iter().rev().take(limit).cloned().collect()).unwrap_or_default()
    }
}
