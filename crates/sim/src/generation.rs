//! A running generation: the answer's pieces released on the simulated clock, then a summary with the timings.
//!
//! The stream holds the model's lease and slot until it ends or is dropped (a client that disconnects drops it), so
//! the scheduler sees the model busy for exactly as long as a real one would be. Each piece is released at
//! `start + prefill + tokens so far / decode rate` in scaled real time, measured from one start instant so that
//! timer granularity never accumulates. The summary reports the *simulated* durations.

use crate::answer::{DoneReason, Piece};
use crate::clock::Clock;
use crate::scheduler::Lease;
use futures_util::Stream;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// The final figures of a response, in Ollama's terms (durations simulated, in nanoseconds on the wire).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    /// Why the answer ended.
    pub done_reason: DoneReason,
    /// Everything: injected latency, queue, load, slot wait, prefill and decode.
    pub total: Duration,
    /// Queue wait plus load (a few ms when the model was warm).
    pub load: Duration,
    /// Prompt tokens processed.
    pub prompt_eval_count: u64,
    /// Time spent on them.
    pub prompt_eval: Duration,
    /// Output tokens generated.
    pub eval_count: u64,
    /// Time spent on them.
    pub eval: Duration,
}

/// One thing a generation emits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// A piece of the answer.
    Piece(Piece),
    /// The end, with the figures.
    Done(Summary),
}

/// A generation ready to run: it holds the model until it is dropped.
pub(crate) struct Run {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
    /// The final figures.
    pub summary: Summary,
    /// Simulated time per output token.
    pub per_token: Duration,
    /// The simulated clock.
    pub clock: Clock,
    /// When prefill began (real time).
    pub start: Instant,
    /// The model's lease, released when the run ends.
    pub lease: Lease,
    /// The runner slot, released when the run ends.
    pub permit: OwnedSemaphorePermit,
}

/// The run's events, paced by the clock. Ends early (without `Done`) if the server shuts down.
pub(crate) fn events(run: Run) -> impl Stream<Item = Event> + Send + 'static {
    let Run { pieces, summary, per_token, clock, start, lease, permit } = run;
    let state = Pacer {
        pieces: pieces.into_iter(),
        summary: Some(summary),
        per_token,
        clock,
        start,
        tokens: 0,
        hold: (lease, permit),
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut pacer = state?;
        if let Some(piece) = pacer.pieces.next() {
            pacer.tokens += piece.tokens();
            let at = pacer.deadline();
            pacer.clock.sleep_until(at).await.ok()?;
            return Some((Event::Piece(piece), Some(pacer)));
        }
        let at = pacer.deadline();
        pacer.clock.sleep_until(at).await.ok()?;
        let summary = pacer.summary.take()?;
        drop(pacer);
        Some((Event::Done(summary), None))
    })
}

/// The stream's state.
struct Pacer {
    /// Pieces still to send.
    pieces: std::vec::IntoIter<Piece>,
    /// The summary, sent last.
    summary: Option<Summary>,
    /// Simulated time per output token.
    per_token: Duration,
    /// The clock.
    clock: Clock,
    /// When prefill began.
    start: Instant,
    /// Output tokens released so far.
    tokens: u64,
    /// The lease and slot, held until the pacer is dropped.
    hold: (Lease, OwnedSemaphorePermit),
}

impl Pacer {
    /// When the tokens released so far are due.
    fn deadline(&self) -> Instant {
        let prefill = self.summary.as_ref().map_or(Duration::ZERO, |s| s.prompt_eval);
        let decode = self.per_token.mul_f64(self.tokens as f64);
        self.start + self.clock.real(prefill + decode)
    }
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").field("tokens", &self.tokens).field("lease", &self.hold.0).finish()
    }
}
