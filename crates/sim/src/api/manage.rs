//! Model management as Ollama answers it: `/api/pull` (progress lines, then `success`), `/api/push`,
//! `/api/create` (from an existing model), `/api/copy` and `/api/delete`. Pulls fetch from the simulator's registry
//! (the fleet it started with), so a deleted model can be pulled again and an unknown one is an error. Blobs
//! (`HEAD` and `POST /api/blobs/{digest}`) are checked against their digest and remembered by it.

use super::native::NativeError;
use super::{ByteStream, parse_body, streamed};
use crate::SimState;
use crate::error::SimError;
use crate::fleet::FleetModel;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::ModelName;

type ManageResult = Result<Response, NativeError>;

#[derive(Debug, Deserialize)]
struct NameBody {
    model: Option<String>,
    name: Option<String>,
    stream: Option<bool>,
    from: Option<String>,
}

impl NameBody {
    fn model(&self) -> Result<ModelName, SimError> {
        let sent = self.model.as_deref().or(self.name.as_deref()).map(str::trim).filter(|s| !s.is_empty());
        let sent = sent.ok_or(SimError::ModelRequired)?;
        ModelName::parse(sent).map_err(|e| SimError::bad(e.to_string()))
    }
}

/// Status lines as a stream (`stream` absent or true), else the last one alone.
fn answer(lines: Vec<Value>, stream_wanted: bool) -> Response {
    if !stream_wanted {
        return Json(lines.last().cloned().unwrap_or(json!({"status": "success"}))).into_response();
    }
    let chunks: ByteStream = stream::iter(
        lines.into_iter().map(|l| Ok::<_, std::io::Error>(Bytes::from(format!("{l}\n")))).collect::<Vec<_>>(),
    )
    .boxed();
    streamed("application/x-ndjson", chunks, None)
}

/// The layer lines of a download or upload of `model`: a few progress steps per layer.
fn layer_lines(model: &FleetModel, verb: &str, digest: &str) -> Vec<Value> {
    let total = model.disk_bytes.max(1);
    let short: String = digest.trim_start_matches("sha256:").chars().take(12).collect();
    (1..=4u64)
        .map(|step| {
            json!({"status": format!("{verb} {short}"), "digest": format!("sha256:{}", digest.trim_start_matches("sha256:")),
                   "total": total, "completed": total * step / 4})
        })
        .collect()
}

/// `POST /api/pull`.
pub(crate) async fn pull(State(state): State<SimState>, body: Bytes) -> ManageResult {
    let req: NameBody = parse_body(&body)?;
    let name = req.model()?;
    let catalog = &state.engine().catalog;
    let Some(model) = catalog.registry_model(&name) else {
        return Err(SimError::Injected {
            status: StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
            message: "pull model manifest: file does not exist".into(),
            retry_after: None,
        }
        .into());
    };
    let entry = catalog.put(model);
    let mut lines = vec![json!({"status": "pulling manifest"})];
    lines.extend(layer_lines(&entry.model, "pulling", &entry.digest));
    lines.push(json!({"status": "verifying sha256 digest"}));
    lines.push(json!({"status": "writing manifest"}));
    lines.push(json!({"status": "success"}));
    Ok(answer(lines, req.stream.unwrap_or(true)))
}

/// `POST /api/push`: a model that is here "uploads".
pub(crate) async fn push(State(state): State<SimState>, body: Bytes) -> ManageResult {
    let req: NameBody = parse_body(&body)?;
    let name = req.model()?;
    let entry = state.engine().catalog.get(&name).ok_or_else(|| SimError::ModelNotFound(name.to_string()))?;
    let mut lines = vec![json!({"status": "retrieving manifest"})];
    lines.extend(layer_lines(&entry.model, "pushing", &entry.digest));
    lines.push(json!({"status": "pushing manifest"}));
    lines.push(json!({"status": "success"}));
    Ok(answer(lines, req.stream.unwrap_or(true)))
}

/// `POST /api/create`: a new model `model` from the existing `from`.
pub(crate) async fn create(State(state): State<SimState>, body: Bytes) -> ManageResult {
    let req: NameBody = parse_body(&body)?;
    let name = req.model()?;
    let from = req.from.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
        SimError::bad("neither 'from' nor 'files' was specified (the simulator creates from an existing model)")
    })?;
    let source = ModelName::parse(from).map_err(|e| SimError::bad(e.to_string()))?;
    let catalog = &state.engine().catalog;
    let base = catalog.get(&source).ok_or_else(|| SimError::ModelNotFound(source.to_string()))?;
    let mut model = FleetModel::clone(&base.model);
    model.name = name;
    model.digest = None;
    catalog.put(model);
    let lines = vec![
        json!({"status": "using existing layer"}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ];
    Ok(answer(lines, req.stream.unwrap_or(true)))
}

#[derive(Debug, Deserialize)]
struct CopyBody {
    source: Option<String>,
    destination: Option<String>,
}

/// `POST /api/copy`: 200 with no body.
pub(crate) async fn copy(State(state): State<SimState>, body: Bytes) -> ManageResult {
    let req: CopyBody = parse_body(&body)?;
    let (Some(source), Some(destination)) = (req.source, req.destination) else {
        return Err(SimError::bad("source and destination are required").into());
    };
    let source = ModelName::parse(&source).map_err(|e| SimError::bad(e.to_string()))?;
    let destination = ModelName::parse(&destination).map_err(|e| SimError::bad(e.to_string()))?;
    let catalog = &state.engine().catalog;
    let base = catalog.get(&source).ok_or_else(|| SimError::ModelNotFound(source.to_string()))?;
    let mut model = FleetModel::clone(&base.model);
    model.name = destination;
    model.digest = Some(base.digest.clone());
    catalog.put(model);
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /api/delete`: 200 with no body, 404 for a model that is not here.
pub(crate) async fn delete(State(state): State<SimState>, body: Bytes) -> ManageResult {
    let req: NameBody = parse_body(&body)?;
    let name = req.model()?;
    if !state.engine().catalog.remove(&name) {
        return Err(SimError::ModelNotFound(name.to_string()).into());
    }
    Ok(StatusCode::OK.into_response())
}

/// A blob digest as Ollama takes it in `/api/blobs/{digest}`: `sha256:` (or `sha256-`) and 64 hex digits. The
/// normal form uses `sha256:`.
fn blob_digest(digest: &str) -> Result<String, SimError> {
    let hex = digest.strip_prefix("sha256:").or_else(|| digest.strip_prefix("sha256-"));
    match hex {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("sha256:{}", h.to_ascii_lowercase()))
        }
        _ => Err(SimError::bad("invalid digest format")),
    }
}

fn blobs(state: &SimState) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
    state.engine().blobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `HEAD /api/blobs/{digest}`: 200 when the blob was uploaded, 404 when not.
pub(crate) async fn blob_exists(
    State(state): State<SimState>,
    axum::extract::Path(digest): axum::extract::Path<String>,
) -> Result<StatusCode, NativeError> {
    let digest = blob_digest(&digest)?;
    Ok(if blobs(&state).contains(&digest) { StatusCode::OK } else { StatusCode::NOT_FOUND })
}

/// `POST /api/blobs/{digest}`: reads the body, checks that its SHA-256 is the digest, and answers 201.
pub(crate) async fn blob_upload(
    State(state): State<SimState>,
    axum::extract::Path(digest): axum::extract::Path<String>,
    body: axum::body::Body,
) -> Result<StatusCode, NativeError> {
    use sha2::Digest as _;
    let digest = blob_digest(&digest)?;
    let mut hasher = sha2::Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| SimError::bad(format!("reading the blob: {e}")))?;
        hasher.update(&chunk);
    }
    let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if format!("sha256:{got}") != digest {
        return Err(SimError::bad("digest mismatch").into());
    }
    blobs(&state).insert(digest);
    Ok(StatusCode::CREATED)
}
