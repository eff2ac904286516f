//! Simulated time: every delay the simulator models (loads, prefill, decode, injected latency) is a *simulated*
//! duration, slept for `simulated x time_scale` of real time; a scale of 0 makes them instant.
//!
//! keep_alive expiry is the one exception: at scale 0 it runs in real time (so that a model loaded with the default
//! five minutes stays loaded for the length of a test), and at a positive scale it is scaled like the rest.
//! Every sleep also ends when the server shuts down, so no request or task outlives it.

use crate::error::SimError;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The simulator's clock: the time scale and the shutdown signal every sleep watches.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    /// Real seconds per simulated second (0 = instant).
    scale: f64,
    /// Cancelled at shutdown; every sleep returns early with [`SimError::ShuttingDown`].
    cancel: CancellationToken,
}

impl Clock {
    /// A clock running at `scale` that stops sleeping when `cancel` fires.
    pub(crate) fn new(scale: f64, cancel: CancellationToken) -> Self {
        Self { scale, cancel }
    }

    /// The time scale.
    pub(crate) fn scale(&self) -> f64 {
        self.scale
    }

    /// The shutdown signal.
    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The real duration of a simulated one.
    pub(crate) fn real(&self, simulated: Duration) -> Duration {
        scale_duration(simulated, self.scale)
    }

    /// The real duration of a keep_alive: scaled when the scale is positive, unscaled at scale 0.
    pub(crate) fn keep_alive_real(&self, keep_alive: Duration) -> Duration {
        if self.scale > 0.0 { scale_duration(keep_alive, self.scale) } else { keep_alive }
    }

    /// The simulated duration that `real` stands for (0 at scale 0, where real time means nothing).
    pub(crate) fn simulated(&self, real: Duration) -> Duration {
        if self.scale > 0.0 { scale_duration(real, 1.0 / self.scale) } else { Duration::ZERO }
    }

    /// Sleeps for a simulated duration; returns at once at scale 0.
    pub(crate) async fn sleep(&self, simulated: Duration) -> Result<(), SimError> {
        let real = self.real(simulated);
        if real.is_zero() {
            return Ok(());
        }
        self.sleep_until(Instant::now() + real).await
    }

    /// Sleeps until a real instant; returns at once when it has passed.
    pub(crate) async fn sleep_until(&self, deadline: Instant) -> Result<(), SimError> {
        if deadline <= Instant::now() {
            return Ok(());
        }
        tokio::select! {
            _ = self.cancel.cancelled() => Err(SimError::ShuttingDown),
            _ = tokio::time::sleep_until(deadline) => Ok(()),
        }
    }

    /// Waits until shutdown (a hung request); always ends with [`SimError::ShuttingDown`].
    pub(crate) async fn hang(&self) -> SimError {
        self.cancel.cancelled().await;
        SimError::ShuttingDown
    }
}

/// `d x factor`, saturating at a century (far beyond any test or load) instead of overflowing.
fn scale_duration(d: Duration, factor: f64) -> Duration {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let seconds = d.as_secs_f64() * factor;
    if !(seconds.is_finite()) || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).map_or(CENTURY, |r| r.min(CENTURY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_delays_but_not_keep_alive_at_zero() {
        let zero = Clock::new(0.0, CancellationToken::new());
        assert_eq!(zero.real(Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(zero.keep_alive_real(Duration::from_secs(300)), Duration::from_secs(300));
        assert_eq!(zero.simulated(Duration::from_secs(1)), Duration::ZERO);

        let tenth = Clock::new(0.1, CancellationToken::new());
        assert_eq!(tenth.real(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(tenth.keep_alive_real(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(tenth.simulated(Duration::from_millis(500)), Duration::from_secs(5));
        assert_eq!(tenth.real(Duration::MAX), Duration::from_secs(100 * 365 * 24 * 3600));
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_end_at_shutdown() {
        let cancel = CancellationToken::new();
        let clock = Clock::new(1.0, cancel.clone());
        assert!(clock.sleep(Duration::from_secs(1)).await.is_ok());
        cancel.cancel();
        assert!(matches!(clock.sleep(Duration::from_secs(3600)).await, Err(SimError::ShuttingDown)));
        assert!(matches!(clock.hang().await, SimError::ShuttingDown));
    }
}
