//! The HTTP surfaces: Ollama's native API (`native`), the OpenAI-compatible one (`openai`) and the simulator's own
//! control routes (`control`), plus what they share: reading request bodies with errors that name the bad field,
//! Ollama's option types, keep_alive, think and format values, and the response framing (NDJSON, SSE, JSON) with
//! the injected mid-stream disconnect.

pub(crate) mod control;
pub(crate) mod manage;
pub(crate) mod native;
pub(crate) mod openai;

use crate::SimState;
use crate::answer::Format;
use crate::error::SimError;
use crate::fleet::FleetModel;
use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchyard_core::ollama::KeepAlive;

/// Largest request body accepted (long prompts and batches of embedding inputs fit easily).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Options whose value must be an integer.
const INT_OPTIONS: [&str; 12] = [
    "num_ctx",
    "num_predict",
    "seed",
    "top_k",
    "num_keep",
    "repeat_last_n",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "mirostat",
    "num_gqa",
];

/// Options whose value must be a number.
const FLOAT_OPTIONS: [&str; 10] = [
    "temperature",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "mirostat_tau",
    "mirostat_eta",
    "tfs_z",
];

/// Options whose value must be a boolean.
const BOOL_OPTIONS: [&str; 7] =
    ["use_mmap", "use_mlock", "numa", "low_vram", "f16_kv", "vocab_only", "penalize_newline"];

/// The router with every route, for [`crate::spawn`] and for `oneshot` tests.
pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/", get(native::root))
        .route("/api/version", get(native::version))
        .route("/api/tags", get(native::tags))
        .route("/api/ps", get(native::ps))
        .route("/api/show", post(native::show))
        .route("/api/generate", post(native::generate))
        .route("/api/chat", post(native::chat))
        .route("/api/embed", post(native::embed))
        .route("/api/embeddings", post(native::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*model}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/infill", post(openai::infill))
        .route("/sim/gpu", get(control::gpu))
        .route("/sim/fleet", get(control::fleet))
        .route("/sim/repull", post(control::repull))
        .route("/sim/faults", get(control::list_faults).post(control::set_faults).delete(control::clear_faults))
        .route("/api/pull", post(manage::pull))
        .route("/api/push", post(manage::push))
        .route("/api/create", post(manage::create))
        .route("/api/copy", post(manage::copy))
        .route("/api/delete", axum::routing::delete(manage::delete))
        .route("/api/blobs/{digest}", axum::routing::head(manage::blob_exists).post(manage::blob_upload))
        .route("/sim/auth", get(control::auth))
        .route("/sim/stats", get(control::stats))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The routes counted by `GET /sim/stats`.
const INFERENCE_ROUTES: [&str; 8] = [
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/infill",
];

/// Counts requests that carry an `Authorization` header and, when the simulator has a key, refuses those (outside
/// `/sim/*`) that do not carry it as a bearer token, as a provider does.
async fn authorize(
    axum::extract::State(state): axum::extract::State<SimState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use std::sync::atomic::Ordering;
    let engine = state.engine();
    let sent = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    if sent.is_some() {
        engine.authorization_seen.fetch_add(1, Ordering::Relaxed);
    }
    if INFERENCE_ROUTES.contains(&request.uri().path()) {
        engine.inference_requests.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(key) = &engine.api_key
        && !request.uri().path().starts_with("/sim/")
        && sent.as_deref().and_then(|s| s.strip_prefix("Bearer ")) != Some(key.as_str())
    {
        engine.authorization_refused.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    next.run(request).await
}

/// Adds the `Retry-After` header an error asks for.
fn retry_after(response: &mut Response, error: &SimError) {
    if let Some(secs) = error.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
}

/// Unknown routes: Go's default 404 text, as Ollama answers.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "404 page not found").into_response()
}

/// Reads a JSON body into `T`; errors say what is wrong and, for a wrong type, at which field.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, SimError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(SimError::bad("missing request body")),
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(SimError::bad("invalid request body: expected a JSON object"));
        }
        Some(_) => {}
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            SimError::bad(format!("invalid JSON: {inner}"))
        } else if path == "." {
            SimError::bad(format!("invalid request body: {inner}"))
        } else {
            SimError::bad(format!("invalid value for `{path}`: {inner}"))
        }
    })?;
    de.end().map_err(|e| SimError::bad(format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// The options the simulator acts on, after every option's type was checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Options {
    /// `num_ctx`, a load-time option.
    pub num_ctx: Option<u64>,
    /// `num_gpu` (layers on the GPU), a load-time option; negative means "Ollama decides".
    pub num_gpu: Option<u64>,
    /// `num_predict` when not negative (negative means unlimited).
    pub num_predict: Option<u64>,
    /// `seed` (0 when absent).
    pub seed: i64,
    /// `stop` sequences.
    pub stop: Vec<String>,
}

/// Checks the types of Ollama's `options` (unknown keys are ignored, as Ollama does) and extracts what matters.
pub(crate) fn parse_options(options: Option<&Map<String, Value>>) -> Result<Options, SimError> {
    let mut out = Options::default();
    let Some(map) = options else { return Ok(out) };
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let key = key.as_str();
        if INT_OPTIONS.contains(&key) {
            let n = value
                .as_i64()
                .or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
                .ok_or_else(|| SimError::bad(format!("option {key:?} must be an integer, got {value}")))?;
            match key {
                "num_ctx" if n <= 0 => {
                    return Err(SimError::bad(format!("option \"num_ctx\" must be positive, got {n}")));
                }
                "num_ctx" => out.num_ctx = Some(n as u64),
                "num_gpu" => out.num_gpu = u64::try_from(n).ok(),
                "num_predict" => out.num_predict = u64::try_from(n).ok(),
                "seed" => out.seed = n,
                _ => {}
            }
        } else if FLOAT_OPTIONS.contains(&key) {
            if !value.is_number() {
                return Err(SimError::bad(format!("option {key:?} must be a number, got {value}")));
            }
        } else if BOOL_OPTIONS.contains(&key) {
            if !value.is_boolean() {
                return Err(SimError::bad(format!("option {key:?} must be a boolean, got {value}")));
            }
        } else if key == "stop" {
            out.stop = parse_stop(value).ok_or_else(|| {
                SimError::bad(format!("option \"stop\" must be a string or a list of strings, got {value}"))
            })?;
        }
    }
    Ok(out)
}

/// A stop value: a string or a list of strings.
pub(crate) fn parse_stop(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// `keep_alive`: absent or null is `None`; otherwise a number of seconds or a Go duration string.
pub(crate) fn parse_keep_alive(value: Option<&Value>) -> Result<Option<KeepAlive>, SimError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => KeepAlive::from_json(v).map(Some).map_err(SimError::BadRequest),
    }
}

/// `think`: a boolean, or a level (`low`, `medium`, `high`) meaning true.
pub(crate) fn parse_think(value: Option<&Value>) -> Result<Option<bool>, SimError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(level)) if ["low", "medium", "high"].contains(&level.as_str()) => Ok(Some(true)),
        Some(other) => {
            Err(SimError::bad(format!("invalid think value {other}: use true, false, \"low\", \"medium\" or \"high\"")))
        }
    }
}

/// `format`: `"json"` or a JSON schema object; absent, null or `""` is none.
pub(crate) fn parse_format(value: Option<&Value>) -> Result<Option<Format>, SimError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Format::Json)),
        Some(schema @ Value::Object(_)) => Ok(Some(Format::Schema(schema.clone()))),
        Some(other) => Err(SimError::bad(format!("invalid format {other}: use \"json\" or a JSON schema object"))),
    }
}

/// Ollama takes a thinking level (`"high"`) only for models it parses in the harmony format (gpt-oss); any other
/// model's is a 400, even a thinking model's (`true` works for those).
pub(crate) fn check_level(model: &FleetModel, think: Option<&Value>) -> Result<(), SimError> {
    match think {
        Some(Value::String(level)) if !matches!(model.family.as_str(), "gptoss" | "gpt-oss") => {
            Err(SimError::bad(format!("think value {level:?} is not supported for this model")))
        }
        _ => Ok(()),
    }
}

/// Whether to think, given what the request asked and what the model can do. Thinking models think unless told
/// not to (Ollama's default); asking a model that cannot is a 400.
pub(crate) fn resolve_think(sent: &str, model: &FleetModel, asked: Option<bool>) -> Result<bool, SimError> {
    if model.caps().thinking {
        Ok(asked.unwrap_or(true))
    } else if asked == Some(true) {
        Err(SimError::unsupported(format!("{sent:?}"), "thinking"))
    } else {
        Ok(false)
    }
}

/// The body of a streamed response: chunks of bytes, ending early with an error for a mid-stream disconnect.
pub(crate) type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Cuts `stream` after `after` chunks (an injected disconnect): the client sees the connection close with no
/// final chunk.
pub(crate) fn cut(stream: ByteStream, after: Option<u32>) -> ByteStream {
    match after {
        None => stream,
        Some(n) => stream
            .take(n as usize)
            .chain(stream::once(async {
                // The chunks already sent reach the client first (a real peer's writes are on the wire before its
                // connection drops); without this pause the abort can overtake the buffered chunks.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "simulated disconnect"))
            }))
            .boxed(),
    }
}

/// A streamed response with `content_type`.
pub(crate) fn streamed(content_type: &'static str, body: ByteStream, disconnect_after: Option<u32>) -> Response {
    let body = Body::from_stream(cut(body, disconnect_after));
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// A single JSON object as the response (cut like a stream when a disconnect is injected).
pub(crate) fn json_response(value: &Value, disconnect_after: Option<u32>) -> Response {
    let bytes = Bytes::from(value.to_string());
    match disconnect_after {
        None => ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], bytes).into_response(),
        Some(_) => streamed(
            "application/json; charset=utf-8",
            stream::once(async move { Ok::<_, std::io::Error>(bytes) }).boxed(),
            disconnect_after,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        /// A typed field, to get type errors.
        #[allow(dead_code)]
        stream: Option<bool>,
    }

    #[test]
    fn body_errors_name_the_problem() {
        assert_eq!(parse_body::<Body>(b"").unwrap_err().to_string(), "missing request body");
        assert!(parse_body::<Body>(b"{").unwrap_err().to_string().starts_with("invalid JSON"));
        let e = parse_body::<Body>(br#"{"stream":"yes"}"#).unwrap_err().to_string();
        assert!(e.contains("`stream`") && e.contains("boolean"), "{e}");
        assert!(parse_body::<Body>(br#"{"stream":true} x"#).is_err());
        assert!(parse_body::<Body>(br#"[1]"#).unwrap_err().to_string().starts_with("invalid request body"));
    }

    #[test]
    fn options_are_type_checked() {
        let opts = json!({"num_ctx": 8192, "num_predict": -1, "seed": 3, "temperature": 0.2, "stop": "\n",
            "unknown": "ignored"});
        let parsed = parse_options(opts.as_object()).unwrap();
        assert_eq!(
            parsed,
            Options { num_ctx: Some(8192), num_gpu: None, num_predict: None, seed: 3, stop: vec!["\n".into()] }
        );
        let layers = parse_options(Some(json!({"num_gpu": 20}).as_object().unwrap())).unwrap();
        assert_eq!(layers.num_gpu, Some(20));
        assert_eq!(parse_options(Some(json!({"num_gpu": -1}).as_object().unwrap())).unwrap().num_gpu, None);
        for bad in [
            json!({"num_ctx": "big"}),
            json!({"temperature": "hot"}),
            json!({"use_mmap": 1}),
            json!({"stop": 5}),
            json!({"num_ctx": 0}),
            json!({"num_predict": 1.5}),
        ] {
            assert!(parse_options(bad.as_object()).is_err(), "{bad}");
        }
        assert_eq!(parse_options(json!({"num_predict": 10.0}).as_object()).unwrap().num_predict, Some(10));
    }

    #[test]
    fn keep_alive_think_and_format() {
        assert_eq!(parse_keep_alive(Some(&json!(-1))).unwrap(), Some(KeepAlive::Forever));
        assert_eq!(parse_keep_alive(None).unwrap(), None);
        let e = parse_keep_alive(Some(&json!("300"))).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(parse_keep_alive(Some(&json!(true))).is_err());
        assert_eq!(parse_think(Some(&json!("high"))).unwrap(), Some(true));
        assert!(parse_think(Some(&json!(3))).is_err());
        assert_eq!(parse_format(Some(&json!("json"))).unwrap(), Some(Format::Json));
        assert_eq!(parse_format(Some(&json!(""))).unwrap(), None);
        assert!(parse_format(Some(&json!("xml"))).is_err());
    }

    #[test]
    fn only_gpt_oss_takes_a_thinking_level() {
        let fleet = crate::fleet::Fleet::builtin();
        let mut model = fleet.get(&switchyard_core::ModelName::parse("deepseek-r1:14b").unwrap()).unwrap().clone();
        let e = check_level(&model, Some(&json!("high"))).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains(r#"think value "high" is not supported for this model"#), "{e}");
        assert!(check_level(&model, Some(&json!(true))).is_ok());
        assert!(check_level(&model, None).is_ok());
        model.family = "gptoss".into();
        assert!(check_level(&model, Some(&json!("low"))).is_ok());
    }
}
