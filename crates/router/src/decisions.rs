//! Recent routing decisions: every one is kept in a small ring in memory (for `/admin/decisions`), and a sample
//! (`routing.decision_sample_rate`) is written to the store in the background.

use crate::score::Scoring;
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use switchyard_core::ModelName;

/// One decision as `/admin/decisions` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionEntry {
    pub request_id: String,
    /// When it was decided; shown in RFC 3339 (formatted when shown, not on the request path).
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// `ollama` or `openai`.
    pub surface: &'static str,
    /// What the client asked for.
    pub requested: String,
    /// The model that was tried first.
    pub chosen: Option<ModelName>,
    /// Microseconds spent classifying and scoring.
    pub decision_us: f64,
    pub confidence: f32,
    /// The task rule that applied (`x-switchyard-task` or `auto:NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The cascade's steps, in order, when the request was served by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<Vec<ModelName>>,
    pub scoring: Scoring,
}

fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&switchyard_core::ollama::types::rfc3339_nanos(*at))
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
        let oldest = self.ring.lock().ok().and_then(|mut ring| {
            let oldest = if ring.len() == self.capacity { ring.pop_front() } else { None };
            ring.push_back((entry, None));
            oldest
        });
        // Freed after the lock is released: other requests' decisions need not wait for it.
        drop(oldest);
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use switchyard_core::Category;

    fn entry(request_id: &str) -> Arc<DecisionEntry> {
        Arc::new(DecisionEntry {
            request_id: request_id.into(),
            at: Utc.timestamp_opt(1_700_000_000, 123_456_789).single().unwrap(),
            surface: "ollama",
            requested: "auto".into(),
            chosen: Some(ModelName::parse("llama3.2:3b").unwrap()),
            decision_us: 12.5,
            confidence: 0.9,
            task: None,
            cascade: None,
            scoring: Scoring {
                category: Category::Coding,
                blended: false,
                preference: 0.5,
                prompt_tokens: 10,
                expected_output_tokens: 20,
                candidates: Vec::new(),
            },
        })
    }

    #[test]
    fn the_ring_keeps_the_newest_and_shows_times_and_models_as_text() {
        let ring = Decisions::new(2);
        for id in ["a", "b", "c"] {
            ring.push(entry(id));
        }
        ring.measured("b", "llama3.2:3b", 0.25);
        let recent = ring.recent(10);
        let ids: Vec<&str> = recent.iter().map(|v| v.entry.request_id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        let shown = serde_json::to_value(&recent[1]).unwrap();
        assert_eq!(shown["at"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(shown["chosen"], "llama3.2:3b");
        assert_eq!(shown["measured_ms"], 250.0);
        assert!(serde_json::to_value(&recent[0]).unwrap().get("measured_ms").is_none());
    }
}
