//! The OpenAI-compatible API as Ollama serves it: `/v1/models`, `/v1/models/{model}`, `/v1/chat/completions`,
//! `/v1/completions` and `/v1/embeddings`.
//!
//! Requests are mapped to the same [`Job`] as the native API (`max_tokens` becomes `num_predict`, `stop`, `seed` and
//! `response_format` carry over, `keep_alive` and `num_ctx` cannot be set). Streaming is off by default; when on it
//! is SSE: `data: {json}` chunks, a finish chunk, an optional usage chunk, then `data: [DONE]`. Tool-call arguments
//! are a JSON *string* here. Errors have OpenAI's shape.

use super::native::{Conversation, collect, embed_inputs};
use super::{check_level, parse_body, parse_stop, resolve_think, streamed};
use crate::SimState;
use crate::answer::{Format, Piece, ToolCall};
use crate::engine::{CatalogEntry, Job, NotFound};
use crate::error::SimError;
use crate::generation::{Event, Summary, events};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{Value, json};

/// What every OpenAI response says produced it (Ollama's value).
const FINGERPRINT: &str = "fp_ollama";

/// An error in OpenAI's shape.
#[derive(Debug)]
pub(crate) struct OpenAiError(pub SimError);

impl From<SimError> for OpenAiError {
    fn from(e: SimError) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let kind = match status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::NOT_FOUND => "not_found_error",
            _ => "api_error",
        };
        let body = json!({"error": {"message": self.0.to_string(), "type": kind, "param": null, "code": null}});
        let mut response = (status, Json(body)).into_response();
        super::retry_after(&mut response, &self.0);
        response
    }
}

/// The result of an OpenAI handler.
type OpenAiResult = Result<Response, OpenAiError>;

/// The namespace that owns a model: `library` for official names.
fn owned_by(name: &str) -> String {
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    parts.last().map_or_else(|| "library".to_string(), |ns| (*ns).to_string())
}

fn model_object(entry: &CatalogEntry) -> Value {
    let name = entry.model.name.as_str();
    json!({"id": name, "object": "model", "created": entry.modified_at.timestamp(), "owned_by": owned_by(name)})
}

/// `GET /v1/models`.
pub(crate) async fn models(State(state): State<SimState>) -> Json<Value> {
    let data: Vec<Value> = state.engine().catalog.all().iter().map(model_object).collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`.
pub(crate) async fn model(State(state): State<SimState>, Path(model): Path<String>) -> OpenAiResult {
    let entry = state.engine().resolve(Some(&model), NotFound::Quoted)?;
    Ok(Json(model_object(&entry)).into_response())
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
struct StreamOptions {
    /// Send a usage chunk before `[DONE]`.
    #[serde(default)]
    include_usage: Option<bool>,
}

/// One message of a chat completion request.
#[derive(Debug, Deserialize)]
struct OpenAiMessage {
    /// system, user, assistant or tool.
    role: String,
    /// A string, a list of parts (`text`, `image_url`), or null for an assistant message with tool calls.
    #[serde(default)]
    content: Option<Value>,
    /// Tool calls of an assistant message.
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// Body of `/v1/chat/completions` (other fields are ignored).
#[derive(Debug, Deserialize)]
struct ChatCompletionBody {
    /// The model, echoed in the answer.
    #[serde(default)]
    model: Option<String>,
    /// The conversation.
    #[serde(default)]
    messages: Option<Vec<OpenAiMessage>>,
    /// SSE (off by default).
    #[serde(default)]
    stream: Option<bool>,
    /// Usage chunk when streaming.
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Most output tokens (`num_predict`).
    #[serde(default)]
    max_tokens: Option<i64>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    /// Seed of the answer.
    #[serde(default)]
    seed: Option<i64>,
    /// Stop sequences: a string or a list.
    #[serde(default)]
    stop: Option<Value>,
    /// Sampling temperature (type-checked only).
    #[serde(default)]
    #[allow(dead_code)]
    temperature: Option<f64>,
    /// Nucleus sampling (type-checked only).
    #[serde(default)]
    #[allow(dead_code)]
    top_p: Option<f64>,
    /// `{"type":"json_object"}` or `{"type":"json_schema","json_schema":{"schema":...}}`.
    #[serde(default)]
    response_format: Option<Value>,
    /// Functions the model may call.
    #[serde(default)]
    tools: Option<Vec<Value>>,
    /// `low`, `medium`, `high` turn reasoning on, `none` off.
    #[serde(default)]
    reasoning_effort: Option<String>,
}

/// Reads a message's content: a string, or the text parts of a list (images counted).
fn message_content(message: &OpenAiMessage) -> Result<(String, usize), SimError> {
    match &message.content {
        Some(Value::String(s)) => Ok((s.clone(), 0)),
        None | Some(Value::Null) if message.tool_calls.is_some() => Ok((String::new(), 0)),
        Some(Value::Array(parts)) => {
            let mut text = Vec::new();
            let mut images = 0;
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push(
                        part.get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| SimError::bad("invalid message format"))?,
                    ),
                    Some("image_url") => images += 1,
                    _ => return Err(SimError::bad("invalid message format")),
                }
            }
            Ok((text.join("\n"), images))
        }
        _ => Err(SimError::bad("invalid message content type")),
    }
}

/// Reads `response_format`.
fn response_format(value: Option<&Value>) -> Result<Option<Format>, SimError> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(None) };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Format::Json)),
        Some("json_schema") => value
            .pointer("/json_schema/schema")
            .filter(|s| s.is_object())
            .map(|s| Some(Format::Schema(s.clone())))
            .ok_or_else(|| SimError::bad("response_format json_schema needs json_schema.schema")),
        _ => Err(SimError::bad("invalid response_format: type must be text, json_object or json_schema")),
    }
}

/// `max_tokens` as `num_predict` (negative is rejected, as OpenAI does).
fn max_tokens(value: Option<i64>) -> Result<Option<u64>, SimError> {
    match value {
        None => Ok(None),
        Some(n) => u64::try_from(n).map(Some).map_err(|_| SimError::bad("max_tokens must not be negative")),
    }
}

/// A tool call in OpenAI's shape: `arguments` is a JSON string.
fn openai_tool_call(call: &ToolCall, index: usize) -> Value {
    json!({"id": call.id, "index": index, "type": "function",
        "function": {"name": call.name, "arguments": Value::Object(call.arguments.clone()).to_string()}})
}

fn usage(summary: &Summary) -> Value {
    json!({"prompt_tokens": summary.prompt_eval_count, "completion_tokens": summary.eval_count,
        "total_tokens": summary.prompt_eval_count + summary.eval_count})
}

/// One SSE event.
fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The 400 OpenAI's API answers to a field the model does not take, when the request carries one of
/// `refused_params`.
fn refused(refused_params: &[String], body: &[u8]) -> Option<Response> {
    if refused_params.is_empty() {
        return None;
    }
    let fields: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    let field = refused_params.iter().find(|p| fields.contains_key(p.as_str()))?;
    let message = if field == "max_tokens" {
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
            .to_string()
    } else {
        format!("Unsupported parameter: '{field}' is not supported with this model.")
    };
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": field,
        "code": "unsupported_parameter"}});
    Some((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(state): State<SimState>, body: Bytes) -> OpenAiResult {
    let engine = state.engine();
    if let Some(refusal) = refused(&engine.refused_params, &body) {
        return Ok(refusal);
    }
    let req: ChatCompletionBody = parse_body(&body)?;
    let entry = engine.resolve(req.model.as_deref(), NotFound::Quoted)?;
    let sent = req.model.clone().unwrap_or_default();
    let messages = req.messages.unwrap_or_default();
    if messages.is_empty() {
        return Err(SimError::bad("messages must not be empty").into());
    }
    let triples = messages
        .iter()
        .map(|m| message_content(m).map(|(text, images)| (m.role.clone(), text, images)))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = req.tools.unwrap_or_default();
    let stop = match &req.stop {
        None => Vec::new(),
        Some(v) => parse_stop(v).ok_or_else(|| SimError::bad("stop must be a string or a list of strings"))?,
    };
    let format = response_format(req.response_format.as_ref())?;
    let num_predict = max_tokens(req.max_completion_tokens.or(req.max_tokens))?;
    let think = match req.reasoning_effort.as_deref() {
        None => None,
        Some("none") => Some(false),
        Some("low" | "medium" | "high") => Some(true),
        Some(other) => return Err(SimError::bad(format!("invalid reasoning_effort {other:?}")).into()),
    };
    let model = entry.model.clone();
    // Ollama's own endpoint asks the effort as a thinking level, which only gpt-oss takes.
    if think == Some(true) {
        check_level(&model, req.reasoning_effort.as_ref().map(|e| Value::String(e.clone())).as_ref())?;
    }
    let caps = model.caps();
    if !caps.completion {
        return Err(SimError::unsupported(format!("{sent:?}"), "chat").into());
    }
    if !tools.is_empty() && !caps.tools {
        return Err(SimError::unsupported(sent.clone(), "tools").into());
    }
    let conversation = Conversation::new(&triples, &tools);
    if conversation.images > 0 && !caps.vision {
        return Err(SimError::unsupported(sent.clone(), "vision").into());
    }
    let think = resolve_think(&sent, &model, think)?;
    let call_tools = if conversation.last_role == "user" { tools } else { Vec::new() };
    let job = Job {
        num_ctx: engine.num_ctx(&model, None),
        num_gpu: None,
        model,
        digest: entry.digest.clone(),
        keep_alive: None,
        prompt: conversation.prompt,
        conversation: conversation.text,
        prompt_tokens: conversation.tokens,
        seed: req.seed.unwrap_or(0),
        num_predict,
        stop,
        think,
        format,
        tools: call_tools,
        tool_result: conversation.tool_result,
    };
    let started = engine.run(job).await?;
    let disconnect = started.disconnect_after;
    let id = format!("chatcmpl-{}", engine.next_id());
    let created = Utc::now().timestamp();
    let stream = events(started.run);

    if req.stream.unwrap_or(false) {
        let include_usage = req.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
        let mut sent_tool_calls = false;
        let chunk = move |delta: Value, finish: Option<&str>| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": sent,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let body = stream
            .flat_map(move |event| {
                let frames: Vec<Value> = match event {
                    Event::Piece(Piece::Content(text)) => {
                        vec![chunk(json!({"role": "assistant", "content": text}), None)]
                    }
                    Event::Piece(Piece::Thinking(text)) => {
                        vec![chunk(json!({"role": "assistant", "content": "", "reasoning": text}), None)]
                    }
                    Event::Piece(Piece::ToolCalls(calls)) => {
                        sent_tool_calls = true;
                        let calls: Vec<Value> = calls.iter().enumerate().map(|(i, c)| openai_tool_call(c, i)).collect();
                        vec![chunk(json!({"role": "assistant", "content": "", "tool_calls": calls}), None)]
                    }
                    Event::Done(summary) => {
                        let finish = if sent_tool_calls { "tool_calls" } else { summary.done_reason.as_str() };
                        let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), Some(finish))];
                        if include_usage {
                            let mut last = chunk(json!({}), None);
                            last["choices"] = json!([]);
                            last["usage"] = usage(&summary);
                            frames.push(last);
                        }
                        frames
                    }
                };
                stream::iter(frames.into_iter().map(|f| Ok::<_, std::io::Error>(sse(&f))))
            })
            .chain(stream::once(async { Ok(Bytes::from_static(b"data: [DONE]\n\n")) }))
            .boxed();
        return Ok(streamed("text/event-stream", body, disconnect));
    }

    let (content, thinking, calls, summary) = collect(stream).await?;
    let mut message = json!({"role": "assistant", "content": content});
    if !thinking.is_empty() {
        message["reasoning"] = json!(thinking);
    }
    let finish = if calls.is_empty() { summary.done_reason.as_str() } else { "tool_calls" };
    if !calls.is_empty() {
        message["tool_calls"] =
            Value::from(calls.iter().enumerate().map(|(i, c)| openai_tool_call(c, i)).collect::<Vec<_>>());
    }
    let body = json!({"id": id, "object": "chat.completion", "created": created, "model": sent,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage(&summary)});
    Ok(super::json_response(&body, disconnect))
}

/// Body of `/v1/completions`.
#[derive(Debug, Deserialize)]
struct CompletionBody {
    /// The model, echoed in the answer.
    #[serde(default)]
    model: Option<String>,
    /// The prompt: a string (Ollama does not take lists here).
    #[serde(default)]
    prompt: Option<Value>,
    /// Text after the insertion point.
    #[serde(default)]
    suffix: Option<String>,
    /// SSE (off by default).
    #[serde(default)]
    stream: Option<bool>,
    /// Usage chunk when streaming.
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Most output tokens.
    #[serde(default)]
    max_tokens: Option<i64>,
    /// Seed of the answer.
    #[serde(default)]
    seed: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    stop: Option<Value>,
    /// Sampling temperature (type-checked only).
    #[serde(default)]
    #[allow(dead_code)]
    temperature: Option<f64>,
    /// Nucleus sampling (type-checked only).
    #[serde(default)]
    #[allow(dead_code)]
    top_p: Option<f64>,
}

/// `POST /v1/completions`.
pub(crate) async fn completions(State(state): State<SimState>, body: Bytes) -> OpenAiResult {
    let engine = state.engine();
    let req: CompletionBody = parse_body(&body)?;
    if engine.llama_infill && req.suffix.is_some() {
        let body =
            json!({"error": {"code": 400, "message": "Unsupported param: suffix", "type": "invalid_request_error"}});
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    let sent = req.model.clone().unwrap_or_default();
    let prompt = match &req.prompt {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        Some(_) => return Err(SimError::bad("prompt must be a string").into()),
    };
    let suffix = req.suffix.unwrap_or_default();
    let Some(job) = completion_job(engine, &sent, prompt, suffix, req.max_tokens, req.seed, req.stop.as_ref())? else {
        return Err(SimError::unsupported(sent.clone(), "insert").into());
    };
    let started = engine.run(job).await?;
    let disconnect = started.disconnect_after;
    let id = format!("cmpl-{}", engine.next_id());
    let created = Utc::now().timestamp();
    let stream = events(started.run);

    if req.stream.unwrap_or(false) {
        let include_usage = req.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
        let chunk = move |text: &str, finish: Option<&str>| {
            json!({"id": id, "object": "text_completion", "created": created, "model": sent,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"text": text, "index": 0, "finish_reason": finish}]})
        };
        let body = stream
            .flat_map(move |event| {
                let frames: Vec<Value> = match event {
                    Event::Piece(Piece::Content(text)) => vec![chunk(&text, None)],
                    Event::Piece(_) => Vec::new(),
                    Event::Done(summary) => {
                        let mut frames = vec![chunk("", Some(summary.done_reason.as_str()))];
                        if include_usage {
                            let mut last = chunk("", None);
                            last["choices"] = json!([]);
                            last["usage"] = usage(&summary);
                            frames.push(last);
                        }
                        frames
                    }
                };
                stream::iter(frames.into_iter().map(|f| Ok::<_, std::io::Error>(sse(&f))))
            })
            .chain(stream::once(async { Ok(Bytes::from_static(b"data: [DONE]\n\n")) }))
            .boxed();
        return Ok(streamed("text/event-stream", body, disconnect));
    }
    let (content, _, _, summary) = collect(stream).await?;
    let body = json!({"id": id, "object": "text_completion", "created": created, "model": sent,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": content, "index": 0, "finish_reason": summary.done_reason.as_str()}],
        "usage": usage(&summary)});
    Ok(super::json_response(&body, disconnect))
}

/// The generation of a completion (`/v1/completions`, `/infill`) of `prompt`, to be filled in before `suffix` when
/// that is not empty; `None` when the model cannot fill in the middle.
fn completion_job(
    engine: &crate::engine::Engine,
    sent: &str,
    prompt: String,
    suffix: String,
    max: Option<i64>,
    seed: Option<i64>,
    stop: Option<&Value>,
) -> Result<Option<Job>, OpenAiError> {
    let entry = engine.resolve(Some(sent).filter(|s| !s.is_empty()), NotFound::Quoted)?;
    let stop = match stop {
        None => Vec::new(),
        Some(v) => parse_stop(v).ok_or_else(|| SimError::bad("stop must be a string or a list of strings"))?,
    };
    let num_predict = max_tokens(max)?;
    let model = entry.model.clone();
    let caps = model.caps();
    if !caps.completion {
        return Err(SimError::unsupported(format!("{sent:?}"), "generate").into());
    }
    if !suffix.is_empty() && !caps.insert {
        return Ok(None);
    }
    let think = resolve_think(sent, &model, None)?;
    let prompt_tokens = switchyard_core::text::estimate_tokens(&prompt)
        + switchyard_core::text::estimate_tokens(&suffix)
        + crate::engine::TOKENS_PER_MESSAGE;
    Ok(Some(Job {
        num_ctx: engine.num_ctx(&model, None),
        num_gpu: None,
        model,
        digest: entry.digest.clone(),
        keep_alive: None,
        conversation: format!("{prompt}\n{suffix}"),
        prompt,
        prompt_tokens,
        seed: seed.unwrap_or(0),
        num_predict,
        stop,
        think,
        format: None,
        tools: Vec::new(),
        tool_result: None,
    }))
}

/// Body of llama.cpp's `/infill` (served with `SimOptions::llama_infill`).
#[derive(Debug, Deserialize)]
struct InfillBody {
    /// The model (llama.cpp's router mode picks by it).
    #[serde(default)]
    model: Option<String>,
    /// Text before the insertion point.
    #[serde(default)]
    input_prefix: Option<String>,
    /// Text after it.
    #[serde(default)]
    input_suffix: Option<String>,
    /// SSE (off by default).
    #[serde(default)]
    stream: Option<bool>,
    /// Most output tokens (`n_predict` in llama.cpp's own name).
    #[serde(default, alias = "n_predict")]
    max_tokens: Option<i64>,
    /// Seed of the answer.
    #[serde(default)]
    seed: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    stop: Option<Value>,
}

/// `POST /infill`, as llama-server answers it: `content`, `stop`, its counts and timings; streamed as SSE events of
/// the same shape, the last with `"stop": true`, and no `[DONE]`.
pub(crate) async fn infill(State(state): State<SimState>, body: Bytes) -> OpenAiResult {
    let engine = state.engine();
    if !engine.llama_infill {
        return Ok(super::not_found().await);
    }
    let req: InfillBody = parse_body(&body)?;
    let (Some(prefix), Some(suffix)) = (req.input_prefix, req.input_suffix) else {
        return Err(SimError::bad("\"input_prefix\" and \"input_suffix\" are required").into());
    };
    let sent = req.model.clone().unwrap_or_default();
    // A fill-in-the-middle request always has a suffix for the check, even an empty one.
    let check = if suffix.is_empty() { " ".to_string() } else { suffix };
    let Some(job) = completion_job(engine, &sent, prefix, check, req.max_tokens, req.seed, req.stop.as_ref())? else {
        let message = "Infill is not supported by this model: prefix token is missing. suffix token is missing. \
                       middle token is missing. ";
        let body = json!({"error": {"code": 501, "message": message, "type": "not_supported_error"}});
        return Ok((StatusCode::NOT_IMPLEMENTED, Json(body)).into_response());
    };
    let started = engine.run(job).await?;
    let disconnect = started.disconnect_after;
    let last = move |content: &str, summary: &Summary| {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        json!({"index": 0, "content": content, "stop": true, "model": sent,
            "stop_type": if summary.done_reason.as_str() == "length" { "limit" } else { "eos" },
            "tokens_predicted": summary.eval_count, "tokens_evaluated": summary.prompt_eval_count,
            "timings": {"prompt_n": summary.prompt_eval_count, "prompt_ms": ms(summary.prompt_eval),
                "predicted_n": summary.eval_count, "predicted_ms": ms(summary.eval)}})
    };
    let stream = events(started.run);
    if req.stream.unwrap_or(false) {
        let body = stream
            .filter_map(move |event| {
                let frame = match event {
                    Event::Piece(Piece::Content(text)) => Some(json!({"index": 0, "content": text, "stop": false})),
                    Event::Piece(_) => None,
                    Event::Done(summary) => Some(last("", &summary)),
                };
                std::future::ready(frame.map(|f| Ok::<_, std::io::Error>(sse(&f))))
            })
            .boxed();
        return Ok(streamed("text/event-stream", body, disconnect));
    }
    let (content, _, _, summary) = collect(stream).await?;
    Ok(super::json_response(&last(&content, &summary), disconnect))
}

/// Body of `/v1/embeddings`.
#[derive(Debug, Deserialize)]
struct EmbeddingsBody {
    /// The embedding model.
    #[serde(default)]
    model: Option<String>,
    /// A string or a list of strings.
    #[serde(default)]
    input: Option<Value>,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default)]
    encoding_format: Option<String>,
    /// Keep only this many leading dimensions.
    #[serde(default)]
    dimensions: Option<u32>,
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(State(state): State<SimState>, body: Bytes) -> OpenAiResult {
    let engine = state.engine();
    let req: EmbeddingsBody = parse_body(&body)?;
    let entry = engine.resolve(req.model.as_deref(), NotFound::Pull)?;
    let sent = req.model.clone().unwrap_or_default();
    let inputs = embed_inputs(req.input.as_ref())?;
    if inputs.is_empty() {
        return Err(SimError::bad("invalid input: it must be a non-empty string or list of strings").into());
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(SimError::bad(format!("invalid encoding_format {other:?}")).into()),
    };
    if !entry.model.caps().embedding {
        return Err(SimError::unsupported(format!("{sent:?}"), "embeddings").into());
    }
    let num_ctx = engine.num_ctx(&entry.model, None);
    let dims = req.dimensions.filter(|d| *d > 0).map(|d| d as usize);
    let out = engine.embed(&entry, (num_ctx, None), None, &inputs, true, dims).await?;
    let data: Vec<Value> = out
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let embedding = if base64 { json!(encode_base64_f32(e)) } else { json!(e) };
            json!({"object": "embedding", "embedding": embedding, "index": index})
        })
        .collect();
    let body = json!({"object": "list", "data": data, "model": sent,
        "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens}});
    Ok(super::json_response(&body, out.disconnect_after))
}

/// Standard base64 of the little-endian bytes of `values`.
fn encode_base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(encode_base64_f32(&[]), "");
        assert_eq!(encode_base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    }

    #[test]
    fn owners_are_namespaces() {
        assert_eq!(owned_by("llama3.2:3b"), "library");
        assert_eq!(owned_by("hf.co/bartowski/x:q4"), "bartowski");
    }
}
