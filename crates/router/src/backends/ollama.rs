//! The local Ollama as a [`Backend`]: admission through a VRAM lease from the manager (which loads and evicts), the
//! native body forwarded with the lease's load-time options over the pooled forwarder, Ollama's NDJSON relayed as is.
//! Its cloud models ([`OllamaCloud`]) go the same way without a lease: ollama.com runs them.

use super::{Admission, Backend, Hold};
use crate::engine::Surface;
use crate::forward::{ForwardFailure, Forwarder, Reply};
use crate::request::Prepared;
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::ollama::LoadOptions;
use switchyard_vram::{VramError, VramManager};

/// The local Ollama.
#[derive(Debug, Clone)]
pub(crate) struct OllamaBackend {
    pub vram: VramManager,
    pub forwarder: Forwarder,
}

#[async_trait::async_trait]
impl Backend for OllamaBackend {
    async fn admit(&self, model: &ModelName, prepared: &Prepared, wait: Duration) -> Result<Hold, Admission> {
        let lease = match self.vram.acquire_within(model, wait).await {
            Ok(lease) => lease,
            Err(e @ (VramError::Busy { .. } | VramError::QueueFull { .. })) => return Err(Admission::Busy(e.into())),
            Err(e @ VramError::LoadFailed { unreachable: true, .. }) => return Err(Admission::Fatal(e.into())),
            Err(e @ VramError::LoadFailed { .. }) => return Err(Admission::Failed(e.into())),
            Err(e) => return Err(Admission::Fatal(e.into())),
        };
        if let Some(keep_alive) = prepared.keep_alive {
            self.vram.note_keep_alive(model, keep_alive);
        }
        Ok(Hold::Vram(lease))
    }

    async fn send(
        &self,
        prepared: &Prepared,
        _surface: Surface,
        id: &str,
        _shown: &str,
        hold: &Hold,
    ) -> Result<Reply, ForwardFailure> {
        let Hold::Vram(lease) = hold else {
            return Err(ForwardFailure::Connect("internal: an Ollama request without a VRAM lease".into()));
        };
        send_native(&self.forwarder, prepared, id, &lease.options).await
    }

    fn idle_timeout(&self) -> Duration {
        self.forwarder.idle_timeout
    }

    fn remote(&self) -> bool {
        false
    }

    fn failed(&self, failure: &ForwardFailure, tracker: &tokio_util::task::TaskTracker) {
        if matches!(failure, ForwardFailure::Status { status: 500, .. }) {
            // A failed load (out of memory) changes what Ollama holds: reconcile now.
            let vram = self.vram.clone();
            tracker.spawn(async move {
                let _ = vram.refresh().await;
            });
        }
    }
}

/// The local Ollama's cloud models (`gpt-oss:120b-cloud`): Ollama forwards them to ollama.com, so they take no VRAM
/// lease and no load-time options. Like a provider's, a refused sign-in (401) or a used-up allowance (429) is this
/// backend's failure: `auto` moves on to the next candidate.
#[derive(Debug, Clone)]
pub(crate) struct OllamaCloud {
    pub forwarder: Forwarder,
}

#[async_trait::async_trait]
impl Backend for OllamaCloud {
    async fn admit(&self, _model: &ModelName, _prepared: &Prepared, _wait: Duration) -> Result<Hold, Admission> {
        Ok(Hold::Cloud)
    }

    async fn send(
        &self,
        prepared: &Prepared,
        _surface: Surface,
        id: &str,
        _shown: &str,
        _hold: &Hold,
    ) -> Result<Reply, ForwardFailure> {
        send_native(&self.forwarder, prepared, id, &LoadOptions::default()).await
    }

    fn idle_timeout(&self) -> Duration {
        self.forwarder.idle_timeout
    }

    fn remote(&self) -> bool {
        true
    }

    fn failed(&self, _failure: &ForwardFailure, _tracker: &tokio_util::task::TaskTracker) {}
}

/// Sends a native request to Ollama's endpoint for it, with the load-time `options` the model runs with.
async fn send_native(
    forwarder: &Forwarder,
    prepared: &Prepared,
    id: &str,
    options: &LoadOptions,
) -> Result<Reply, ForwardFailure> {
    let body = prepared.upstream_body(id, options).map_err(|e| ForwardFailure::Connect(e.to_string()))?;
    forwarder.send(prepared.endpoint.path(), body, prepared.stream).await
}
