//! Background store writes: routing decisions, load events and measurements go through a bounded queue to one
//! task, so a slow or unavailable store never blocks a request. When the queue is full a write is dropped and
//! counted; a failed write is retried a few times, then dropped and counted.

use prometheus::IntCounter;
use prometheus::IntCounterVec;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::store::{CacheRecord, DecisionRecord, LoadEvent, Store};
use switchyard_vram::VramEventSink;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One pending write.
#[derive(Debug)]
pub enum Write {
    Decision(DecisionRecord),
    LoadEvent(LoadEvent),
    Measurement {
        model: String,
        load_seconds: Option<f64>,
        vram_bytes: Option<u64>,
        num_ctx: u64,
    },
    /// A response cache entry (`cache.persist`).
    CachePut(CacheRecord),
    /// Keeps the newest `keep` cache entries and drops those stored before `before` (ms).
    CachePrune {
        keep: u64,
        before: i64,
    },
    /// Drops the cache entries of a model (its digest changed, or it was deleted).
    CacheDelete {
        model: String,
    },
}

/// The producer side. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Write>,
    dropped: IntCounter,
}

/// Attempts per write before it is dropped.
const ATTEMPTS: u32 = 3;

impl StoreWriter {
    /// Starts the writer task (owned by `tracker`; it drains what is queued, then stops, at shutdown).
    pub fn start(
        store: Arc<dyn Store>,
        capacity: usize,
        dropped: IntCounter,
        failed: IntCounter,
        cache_writes: IntCounterVec,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Write>(capacity.max(1));
        tracker.spawn(async move {
            loop {
                let write = tokio::select! {
                    w = rx.recv() => w,
                    _ = shutdown.cancelled() => {
                        rx.close();
                        rx.recv().await
                    }
                };
                let Some(write) = write else { break };
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let result = match &write {
                        Write::Decision(d) => store.insert_decision(d).await,
                        Write::LoadEvent(e) => store.insert_load_event(e).await,
                        Write::Measurement { model, load_seconds, vram_bytes, num_ctx } => {
                            store.record_model_measurement(model, *load_seconds, *vram_bytes, Some(*num_ctx)).await
                        }
                        Write::CachePut(record) => store.cache_put(record).await,
                        Write::CachePrune { keep, before } => store.cache_prune(*keep, *before).await.map(drop),
                        Write::CacheDelete { model } => store.cache_delete(Some(model), None).await.map(drop),
                    };
                    match result {
                        Ok(()) => {
                            if matches!(write, Write::CachePut(_)) {
                                cache_writes.with_label_values(&["ok"]).inc();
                            }
                            break;
                        }
                        Err(e) if attempt < ATTEMPTS && !shutdown.is_cancelled() => {
                            tracing::debug!(error = %e, attempt, "store write failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "store write dropped after retries");
                            failed.inc();
                            if matches!(write, Write::CachePut(_)) {
                                cache_writes.with_label_values(&["error"]).inc();
                            }
                            break;
                        }
                    }
                }
            }
        });
        Self { tx, dropped }
    }

    /// Queues a write; drops it (counted) when the queue is full.
    pub fn write(&self, write: Write) {
        if self.tx.try_send(write).is_err() {
            self.dropped.inc();
        }
    }
}

impl VramEventSink for StoreWriter {
    fn load_event(&self, event: LoadEvent) {
        self.write(Write::LoadEvent(event));
    }

    fn measured(&self, model: &ModelName, load_seconds: Option<f64>, vram_bytes: Option<u64>, num_ctx: u64) {
        self.write(Write::Measurement { model: model.to_string(), load_seconds, vram_bytes, num_ctx });
    }
}
