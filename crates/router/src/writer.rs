//! Background store writes: routing decisions, load events and measurements go through a bounded queue to one
//! task, so a slow or unavailable store never blocks a request. Decisions that come within 50 ms of the first one
//! (with nothing else queued between them) are written together, in one statement per 64 rows. When the queue is
//! full a write is dropped and counted; a failed write is retried a few times, then dropped and counted (a batch of
//! decisions as a whole).

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

/// Decisions are written together, this many at most: under load a sampled decision then costs a share of one
/// statement and one commit instead of its own.
const DECISION_BATCH: usize = 256;

/// How long the writer gathers decisions after the first before writing them (at once when shutting down): a
/// moment next to the store's readers (`/admin/decisions?source=store`), long enough to batch a busy router's
/// decisions.
const DECISION_LINGER: Duration = Duration::from_millis(50);

/// What the writer does next: the decisions queued one after another, or one other write.
enum Job {
    Decisions(Vec<DecisionRecord>),
    One(Write),
}

impl Job {
    /// The writes it stands for (each counts when dropped).
    fn len(&self) -> u64 {
        match self {
            Job::Decisions(batch) => batch.len() as u64,
            Job::One(_) => 1,
        }
    }

    fn is_cache_put(&self) -> bool {
        matches!(self, Job::One(Write::CachePut(_)))
    }
}

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
            // A write taken from the queue while gathering decisions, done next.
            let mut carried: Option<Write> = None;
            loop {
                let write = match carried.take() {
                    Some(w) => Some(w),
                    None => tokio::select! {
                        w = rx.recv() => w,
                        _ = shutdown.cancelled() => {
                            rx.close();
                            rx.recv().await
                        }
                    },
                };
                let Some(write) = write else { break };
                let job = match write {
                    Write::Decision(first) => {
                        let (batch, next) = gather(first, &mut rx, &shutdown).await;
                        // Anything else is written after this batch, in its place in the queue.
                        carried = next;
                        Job::Decisions(batch)
                    }
                    other => Job::One(other),
                };
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let result = match &job {
                        Job::Decisions(batch) => store.insert_decisions(batch).await,
                        Job::One(Write::Decision(d)) => store.insert_decision(d).await,
                        Job::One(Write::LoadEvent(e)) => store.insert_load_event(e).await,
                        Job::One(Write::Measurement { model, load_seconds, vram_bytes, num_ctx }) => {
                            store.record_model_measurement(model, *load_seconds, *vram_bytes, Some(*num_ctx)).await
                        }
                        Job::One(Write::CachePut(record)) => store.cache_put(record).await,
                        Job::One(Write::CachePrune { keep, before }) => {
                            store.cache_prune(*keep, *before).await.map(drop)
                        }
                        Job::One(Write::CacheDelete { model }) => store.cache_delete(Some(model), None).await.map(drop),
                    };
                    match result {
                        Ok(()) => {
                            if job.is_cache_put() {
                                cache_writes.with_label_values(&["ok"]).inc();
                            }
                            break;
                        }
                        Err(e) if attempt < ATTEMPTS && !shutdown.is_cancelled() => {
                            tracing::debug!(error = %e, attempt, "store write failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, writes = job.len(), "store write dropped after retries");
                            failed.inc_by(job.len());
                            if job.is_cache_put() {
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

/// The decisions that follow `first` in the queue within `DECISION_LINGER` of it (up to `DECISION_BATCH` in all;
/// what is already queued, without waiting, once shutting down), and the other write that ended the run, if one did.
async fn gather(
    first: DecisionRecord,
    rx: &mut mpsc::Receiver<Write>,
    shutdown: &CancellationToken,
) -> (Vec<DecisionRecord>, Option<Write>) {
    let mut batch = vec![first];
    let until = tokio::time::Instant::now() + DECISION_LINGER;
    while batch.len() < DECISION_BATCH {
        let next = if shutdown.is_cancelled() {
            rx.try_recv().ok()
        } else {
            tokio::select! {
                w = rx.recv() => w,
                _ = tokio::time::sleep_until(until) => None,
                _ = shutdown.cancelled() => rx.try_recv().ok(),
            }
        };
        match next {
            Some(Write::Decision(d)) => batch.push(d),
            Some(other) => return (batch, Some(other)),
            None => break,
        }
    }
    (batch, None)
}

impl VramEventSink for StoreWriter {
    fn load_event(&self, event: LoadEvent) {
        self.write(Write::LoadEvent(event));
    }

    fn measured(&self, model: &ModelName, load_seconds: Option<f64>, vram_bytes: Option<u64>, num_ctx: u64) {
        self.write(Write::Measurement { model: model.to_string(), load_seconds, vram_bytes, num_ctx });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use prometheus::Opts;
    use switchyard_core::store::SqlStore;

    fn decision(i: usize) -> DecisionRecord {
        DecisionRecord {
            id: None,
            request_id: format!("req-{i}"),
            at: i as i64,
            surface: "ollama".into(),
            category: "coding".into(),
            requested: "auto".into(),
            chosen: "m:1b".into(),
            quality_preference: 0.5,
            decision_us: 1.0,
            candidates_json: "[]".into(),
        }
    }

    fn load_event() -> LoadEvent {
        LoadEvent {
            id: None,
            at: 300,
            model: "m:1b".into(),
            kind: "load".into(),
            reason: "request".into(),
            strategy: None,
            duration_ms: Some(1.0),
            bytes: None,
            ok: true,
            error: None,
        }
    }

    fn queued_decision(rx: &mut mpsc::Receiver<Write>) -> DecisionRecord {
        match rx.try_recv() {
            Ok(Write::Decision(d)) => d,
            _ => panic!("a decision is next in the queue"),
        }
    }

    fn ids(batch: &[DecisionRecord]) -> Vec<i64> {
        batch.iter().map(|d| d.at).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn decisions_are_gathered_up_to_a_batch_until_another_write_or_the_linger() {
        let (tx, mut rx) = mpsc::channel(1024);
        for i in 0..300 {
            tx.try_send(Write::Decision(decision(i))).unwrap();
        }
        tx.try_send(Write::LoadEvent(load_event())).unwrap();
        tx.try_send(Write::Decision(decision(300))).unwrap();
        let shutdown = CancellationToken::new();
        let (batch, rest) = gather(queued_decision(&mut rx), &mut rx, &shutdown).await;
        assert_eq!(ids(&batch), (0..256).collect::<Vec<_>>(), "a full batch");
        assert!(rest.is_none());
        let first = queued_decision(&mut rx);
        let (batch, rest) = gather(first, &mut rx, &shutdown).await;
        assert_eq!(ids(&batch), (256..300).collect::<Vec<_>>(), "up to the load event");
        assert!(matches!(rest, Some(Write::LoadEvent(_))), "the load event comes next");
        // A lone decision waits out the linger for company, then goes alone.
        let first = queued_decision(&mut rx);
        let started = tokio::time::Instant::now();
        let (batch, rest) = gather(first, &mut rx, &shutdown).await;
        assert_eq!(ids(&batch), [300]);
        assert!(rest.is_none());
        assert_eq!(started.elapsed(), DECISION_LINGER);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_the_linger_at_once_and_takes_what_is_queued() {
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            late.try_send(Write::Decision(decision(1))).unwrap();
            late.try_send(Write::Decision(decision(2))).unwrap();
            stop.cancel();
        });
        let started = tokio::time::Instant::now();
        let (batch, rest) = gather(decision(0), &mut rx, &shutdown).await;
        assert_eq!(ids(&batch), [0, 1, 2]);
        assert!(rest.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(10), "no wait for the rest of the linger");
        drop(tx);
    }

    #[tokio::test]
    async fn decisions_written_together_keep_their_order_and_the_writes_between_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store: Arc<dyn Store> = Arc::new(SqlStore::open(&url, 1).await.unwrap());
        let counter = |name: &str| IntCounter::new(name, "test").unwrap();
        let cache_writes = IntCounterVec::new(Opts::new("cache_writes", "test"), &["result"]).unwrap();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let writer = StoreWriter::start(
            Arc::clone(&store),
            1024,
            counter("dropped"),
            counter("failed"),
            cache_writes,
            shutdown.clone(),
            &tracker,
        );
        // Queued before the writer runs (this test's runtime has one thread): the decisions are gathered into
        // batches around the load event, which must still be written; shutting down flushes them all.
        for i in 0..600 {
            writer.write(Write::Decision(decision(i)));
            if i == 300 {
                writer.load_event(load_event());
            }
        }
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        let stored = store.decisions(1000).await.unwrap();
        let ids: Vec<String> = stored.iter().rev().map(|d| d.request_id.clone()).collect();
        assert_eq!(ids, (0..600).map(|i| format!("req-{i}")).collect::<Vec<_>>());
        // The load event taken from the queue while decisions were gathered is written too.
        let events = store.load_events(None, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(writer.dropped.get(), 0);
    }
}
