//! The simulator's own routes, for probes and tests: `/sim/gpu` (memory, models, processes, counters; what the VRAM
//! manager's simulator probe parses), `/sim/fleet`, `/sim/repull` and `/sim/faults`.

use super::native::NativeError;
use super::parse_body;
use crate::SimState;
use crate::engine::NotFound;
use crate::error::SimError;
use crate::faults::FaultSpec;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::ollama::types::rfc3339_nanos;

/// Fake process id of memory held by "another process" on GPU 0 (plus the GPU index).
const FOREIGN_PID: u64 = 31_000;

/// Keys of a fault in a `/sim/faults` body.
const FAULT_KEYS: [&str; 9] = [
    "error_status",
    "error_message",
    "retry_after_secs",
    "latency_ms",
    "hang",
    "disconnect_after_chunks",
    "bad_answer",
    "oom_on_load",
    "fail_times",
];

/// `GET /sim/gpu`.
pub(crate) async fn gpu(State(state): State<SimState>) -> Json<Value> {
    let view = state.engine().scheduler.gpu_view();
    let gpus: Vec<Value> = view
        .totals
        .iter()
        .enumerate()
        .map(|(i, total)| {
            let foreign = view.foreign.get(i).copied().unwrap_or(0);
            let used = view.used.get(i).copied().unwrap_or(0).saturating_add(foreign);
            json!({"index": i, "name": format!("Simulated GPU {i}"), "total_bytes": total, "used_bytes": used,
                "free_bytes": total.saturating_sub(used), "foreign_bytes": foreign})
        })
        .collect();
    let models: Vec<Value> = view
        .runners
        .iter()
        .map(|r| {
            json!({"name": r.model.name.as_str(), "gpu": r.placement.primary_gpu(), "size": r.placement.size,
                "size_vram": r.placement.size_vram()})
        })
        .collect();
    let mut processes = Vec::new();
    for r in &view.runners {
        for (gpu, bytes) in &r.placement.shares {
            processes.push(json!({"gpu_index": gpu, "pid": r.pid, "name": "ollama", "used_bytes": bytes}));
        }
    }
    for (gpu, bytes) in view.foreign.iter().enumerate().filter(|(_, b)| **b > 0) {
        processes
            .push(json!({"gpu_index": gpu, "pid": FOREIGN_PID + gpu as u64, "name": "foreign", "used_bytes": bytes}));
    }
    Json(json!({"gpus": gpus, "models": models, "processes": processes, "counters": view.counters}))
}

/// `GET /sim/fleet`: every model's figures, skills included, with its current digest.
pub(crate) async fn fleet(State(state): State<SimState>) -> Result<Response, NativeError> {
    let engine = state.engine();
    let mut models = Vec::new();
    for entry in engine.catalog.all() {
        let mut value = serde_json::to_value(entry.model.as_ref())
            .map_err(|e| SimError::Fleet(format!("cannot describe {}: {e}", entry.model.name)))?;
        value["digest"] = json!(entry.digest);
        value["modified_at"] = json!(rfc3339_nanos(entry.modified_at));
        models.push(value);
    }
    let gpus: Vec<Value> = engine.scheduler.gpu_view().totals.iter().map(|t| json!(t)).collect();
    Ok(Json(json!({"models": models, "gpus": gpus, "default_num_ctx": engine.default_num_ctx,
        "time_scale": engine.clock.scale()}))
    .into_response())
}

/// Body of `/sim/repull`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepullBody {
    /// The model that gets a new version.
    #[serde(default)]
    model: Option<String>,
}

/// `POST /sim/repull`: gives a model a new digest, as `ollama pull` of a new version would; a loaded instance of
/// the old version is reloaded by its next request.
pub(crate) async fn repull(State(state): State<SimState>, body: Bytes) -> Result<Response, NativeError> {
    let req: RepullBody = parse_body(&body)?;
    let engine = state.engine();
    let entry = engine.resolve(req.model.as_deref(), NotFound::Quoted)?;
    let digest = engine
        .catalog
        .repull(&entry.model.name)
        .ok_or_else(|| SimError::ModelNotFound(entry.model.name.to_string()))?;
    Ok(Json(json!({"model": entry.model.name.as_str(), "digest": digest})).into_response())
}

/// `foreign_vram` in a `/sim/faults` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForeignVram {
    /// The GPU another process uses.
    gpu: usize,
    /// Bytes it holds (a number or a size string such as "4GiB"); 0 releases them.
    bytes: Value,
}

/// `GET /sim/faults`.
pub(crate) async fn list_faults(State(state): State<SimState>) -> Json<Value> {
    Json(fault_listing(&state))
}

/// `POST /sim/faults`: sets the fault of one model (`"model": "name"`) or of all (`"model": null` or absent), and/or
/// another process's memory use (`"foreign_vram": {"gpu": 0, "bytes": N}`).
///
/// Fault keys (see [`FaultSpec`]): `error_status` (400-599) with an optional `error_message` and `retry_after_secs`
/// (a `Retry-After` header), `latency_ms`, `hang`,
/// `disconnect_after_chunks`, `bad_answer` (`empty`, `truncated`, `invalid_json`, `refusal`, `bad_code`,
/// `bad_tool_args` or `wrong`: answer, but badly; generations only), `oom_on_load`, and `fail_times` (apply to the
/// next N requests, or failed loads, then clear). For example
/// `{"model": "llama3.2:3b", "bad_answer": "refusal", "fail_times": 1}`.
pub(crate) async fn set_faults(State(state): State<SimState>, body: Bytes) -> Result<Response, NativeError> {
    let engine = state.engine();
    let value: Value = parse_body(&body)?;
    let Value::Object(mut map) = value else {
        return Err(SimError::bad("the body must be a JSON object").into());
    };
    if let Some(unknown) =
        map.keys().find(|k| !FAULT_KEYS.contains(&k.as_str()) && *k != "model" && *k != "foreign_vram")
    {
        return Err(SimError::bad(format!(
            "unknown field `{unknown}`: expected model, foreign_vram, {}",
            FAULT_KEYS.join(", ")
        ))
        .into());
    }
    let foreign = map.remove("foreign_vram");
    let model = map.remove("model");
    let sets_fault = model.is_some() || !map.is_empty();
    let target = match model {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(engine.resolve(Some(&name), NotFound::Quoted)?.model.name.clone()),
        Some(other) => return Err(SimError::bad(format!("model must be a name or null, got {other}")).into()),
    };
    let spec: Option<FaultSpec> = if sets_fault {
        let spec: FaultSpec = parse_body(Value::Object(map).to_string().as_bytes())?;
        spec.validate().map_err(SimError::BadRequest)?;
        Some(spec)
    } else {
        None
    };
    let foreign = match foreign.filter(|f| !f.is_null()) {
        Some(foreign) => {
            let foreign: ForeignVram = parse_body(foreign.to_string().as_bytes())?;
            let bytes = match &foreign.bytes {
                Value::Number(n) => {
                    n.as_u64().ok_or_else(|| SimError::bad("foreign_vram.bytes must be a whole number"))?
                }
                Value::String(s) => switchyard_core::size::parse_bytes(s).map_err(SimError::BadRequest)?,
                _ => return Err(SimError::bad("foreign_vram.bytes must be a number of bytes or a size string").into()),
            };
            Some((foreign.gpu, bytes))
        }
        None => None,
    };
    if let Some((gpu, bytes)) = foreign {
        engine.scheduler.set_foreign(gpu, bytes)?;
    }
    if let Some(spec) = spec {
        engine.faults.set(target, spec);
    }
    Ok(Json(fault_listing(&state)).into_response())
}

/// `DELETE /sim/faults`: clears every fault and every foreign memory use.
pub(crate) async fn clear_faults(State(state): State<SimState>) -> Json<Value> {
    state.engine().faults.clear();
    state.engine().scheduler.clear_foreign();
    Json(fault_listing(&state))
}

/// `{"faults":[{"model":..., ...spec}], "foreign_vram":[{"gpu","bytes"}]}`.
fn fault_listing(state: &SimState) -> Value {
    let engine = state.engine();
    let faults: Vec<Value> = engine
        .faults
        .list()
        .into_iter()
        .map(|(model, spec)| {
            let mut entry = Map::new();
            entry.insert("model".into(), model.map_or(Value::Null, |m| json!(m.as_str())));
            if let Ok(Value::Object(fields)) = serde_json::to_value(&spec) {
                entry.extend(fields);
            }
            Value::Object(entry)
        })
        .collect();
    let foreign: Vec<Value> = engine
        .scheduler
        .gpu_view()
        .foreign
        .iter()
        .enumerate()
        .filter(|(_, b)| **b > 0)
        .map(|(gpu, bytes)| json!({"gpu": gpu, "bytes": bytes}))
        .collect();
    json!({"faults": faults, "foreign_vram": foreign})
}

/// `GET /sim/auth`: how many requests carried an `Authorization` header, and how many were refused for their key.
pub(crate) async fn auth(
    axum::extract::State(state): axum::extract::State<crate::SimState>,
) -> axum::Json<serde_json::Value> {
    use std::sync::atomic::Ordering;
    let engine = state.engine();
    axum::Json(serde_json::json!({
        "with_authorization": engine.authorization_seen.load(Ordering::Relaxed),
        "refused": engine.authorization_refused.load(Ordering::Relaxed),
    }))
}

/// `GET /sim/stats`: how many inference requests arrived (a cache in front answers without reaching here).
pub(crate) async fn stats(
    axum::extract::State(state): axum::extract::State<crate::SimState>,
) -> axum::Json<serde_json::Value> {
    use std::sync::atomic::Ordering;
    let engine = state.engine();
    axum::Json(serde_json::json!({ "inference_requests": engine.inference_requests.load(Ordering::Relaxed) }))
}
