//! Ollama's native API: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, `/api/generate`, `/api/chat`,
//! `/api/embed` and the legacy `/api/embeddings`, with Ollama's shapes, defaults and error texts.
//!
//! Handlers are thin: read the body, check the model and its capabilities, hand a [`Job`] to the engine, then
//! frame what comes back (NDJSON by default, one JSON object with `"stream": false`).

use super::{
    check_level, json_response, parse_body, parse_format, parse_keep_alive, parse_options, parse_think, resolve_think,
    streamed,
};
use crate::SimState;
use crate::answer::Piece;
use crate::engine::{CatalogEntry, Job, NotFound, TOKENS_PER_MESSAGE};
use crate::error::SimError;
use crate::fleet::FleetModel;
use crate::generation::{Event, Summary, events};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::ollama::types::{
    ModelDetails, PsModel, PsResponse, ShowResponse, TagModel, TagsResponse, VersionResponse, rfc3339_nanos,
};
use switchyard_core::text::{estimate_tokens, stable_hash};

/// The Ollama version the simulator claims to be.
pub(crate) const OLLAMA_VERSION: &str = "0.13.0";

/// Prompt tokens an image costs (a CLIP projection of 576 patches, as llava has).
const TOKENS_PER_IMAGE: u64 = 576;

/// An error in Ollama's shape: `{"error":"..."}` with the variant's status.
#[derive(Debug)]
pub(crate) struct NativeError(pub SimError);

impl From<SimError> for NativeError {
    fn from(e: SimError) -> Self {
        NativeError(e)
    }
}

impl IntoResponse for NativeError {
    fn into_response(self) -> Response {
        let mut response = (self.0.status(), Json(json!({ "error": self.0.to_string() }))).into_response();
        super::retry_after(&mut response, &self.0);
        response
    }
}

/// The result of a native handler.
type NativeResult = Result<Response, NativeError>;

/// `GET /` and `HEAD /`.
pub(crate) async fn root() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Ollama is running").into_response()
}

/// `GET /api/version`.
pub(crate) async fn version() -> Json<VersionResponse> {
    Json(VersionResponse { version: OLLAMA_VERSION.to_string() })
}

/// `details` of a model.
pub(crate) fn details(m: &FleetModel) -> ModelDetails {
    ModelDetails {
        parent_model: String::new(),
        format: "gguf".to_string(),
        family: m.family.clone(),
        families: Some(vec![m.family.clone()]),
        parameter_size: m.parameter_size.clone(),
        quantization_level: m.quantization.clone(),
    }
}

/// `GET /api/tags`.
pub(crate) async fn tags(State(state): State<SimState>) -> Json<TagsResponse> {
    let models = state
        .engine()
        .catalog
        .all()
        .iter()
        .map(|e| TagModel {
            name: e.model.name.to_string(),
            model: e.model.name.to_string(),
            modified_at: rfc3339_nanos(e.modified_at),
            size: e.model.disk_bytes,
            digest: e.digest.clone(),
            details: details(&e.model),
            remote_model: e.model.remote_host.as_ref().map(|_| e.model.name.as_str().replace("-cloud", "")),
            remote_host: e.model.remote_host.clone(),
        })
        .collect();
    Json(TagsResponse { models })
}

/// `GET /api/ps`: loaded models, latest expiry first.
pub(crate) async fn ps(State(state): State<SimState>) -> Json<PsResponse> {
    let engine = state.engine();
    let models = engine
        .scheduler
        .runners()
        .into_iter()
        .filter(|r| r.model.remote_host.is_none())
        .map(|r| PsModel {
            name: r.model.name.to_string(),
            model: r.model.name.to_string(),
            size: r.placement.size,
            size_vram: r.placement.size_vram(),
            digest: r.digest.clone(),
            details: details(&r.model),
            expires_at: rfc3339_nanos(r.expires_at),
            context_length: Some(r.num_ctx),
        })
        .collect();
    Json(PsResponse { models })
}

/// Body of `/api/show`.
#[derive(Debug, Deserialize)]
struct ShowBody {
    /// The model.
    #[serde(default)]
    model: Option<String>,
    /// The legacy spelling of `model`.
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/show`.
pub(crate) async fn show(State(state): State<SimState>, body: Bytes) -> NativeResult {
    let req: ShowBody = parse_body(&body)?;
    let sent = req.model.filter(|m| !m.trim().is_empty()).or(req.name);
    let entry = state.engine().resolve(sent.as_deref(), NotFound::Quoted)?;
    Ok(Json(show_response(&entry)).into_response())
}

/// What `/api/show` says about a model.
pub(crate) fn show_response(entry: &CatalogEntry) -> ShowResponse {
    let m = &entry.model;
    let arch = m.architecture.as_str();
    let mut info = Map::new();
    info.insert("general.architecture".into(), json!(arch));
    info.insert("general.basename".into(), json!(m.name.base()));
    info.insert("general.file_type".into(), json!(15));
    info.insert("general.parameter_count".into(), json!(m.parameter_count()));
    info.insert("general.quantization_version".into(), json!(2));
    info.insert(format!("{arch}.context_length"), json!(m.context_length));
    info.insert(format!("{arch}.block_count"), json!(m.block_count));
    info.insert(format!("{arch}.embedding_length"), json!(m.embedding_length));
    info.insert(format!("{arch}.attention.head_count"), json!(m.head_count));
    info.insert(format!("{arch}.attention.head_count_kv"), json!(m.head_count_kv));
    info.insert(format!("{arch}.attention.key_length"), json!(m.embedding_length / m.head_count.max(1)));
    info.insert(format!("{arch}.attention.value_length"), json!(m.embedding_length / m.head_count.max(1)));
    let caps = m.caps();
    if caps.embedding {
        info.insert(format!("{arch}.pooling_type"), json!(1));
    }
    let template = if caps.completion {
        "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n".to_string()
    } else {
        "{{ .Prompt }}".to_string()
    };
    let parameters = if caps.completion {
        format!(
            "num_ctx                        {}\nstop                           \"<|end|>\"",
            m.context_length.min(4096)
        )
    } else {
        format!("num_ctx                        {}", m.context_length)
    };
    let modelfile = format!(
        "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n\
         # FROM {name}\n\nFROM /usr/share/ollama/.ollama/models/blobs/sha256-{digest}\nTEMPLATE \"\"\"{template}\"\"\"\n\
         PARAMETER {params}\n",
        name = m.name,
        digest = entry.digest,
        params = parameters.replace('\n', "\nPARAMETER "),
    );
    ShowResponse {
        license: Some(format!("Simulated {} weights; see the upstream model card for the license.", m.family)),
        modelfile,
        parameters,
        template,
        details: details(m),
        model_info: info,
        capabilities: m.capabilities.clone(),
        modified_at: rfc3339_nanos(entry.modified_at),
    }
}

/// Body of `/api/generate` (fields the simulator does not act on are ignored, as unknown fields are).
#[derive(Debug, Deserialize)]
struct GenerateBody {
    /// The model, echoed in the answer.
    #[serde(default)]
    model: Option<String>,
    /// The prompt; empty means "load" (or "unload" with keep_alive 0).
    #[serde(default)]
    prompt: Option<String>,
    /// Text after the insertion point (needs the insert capability).
    #[serde(default)]
    suffix: Option<String>,
    /// A system message.
    #[serde(default)]
    system: Option<String>,
    /// Token ids of an earlier answer (Ollama's deprecated conversation memory), processed before the prompt and
    /// returned at the head of this answer's own.
    #[serde(default)]
    context: Option<Vec<i64>>,
    /// Log probabilities of the answer's tokens.
    #[serde(default)]
    logprobs: Option<bool>,
    /// Alternatives per token with their log probabilities (0 to 20).
    #[serde(default)]
    top_logprobs: Option<u32>,
    /// No template: the prompt is sent as is (fewer prompt tokens).
    #[serde(default)]
    raw: Option<bool>,
    /// Stream NDJSON (the default) or answer with one object.
    #[serde(default)]
    stream: Option<bool>,
    /// `"json"` or a JSON schema.
    #[serde(default)]
    format: Option<Value>,
    /// How long the model stays loaded afterwards.
    #[serde(default)]
    keep_alive: Option<Value>,
    /// Base64 images (need the vision capability).
    #[serde(default)]
    images: Option<Vec<String>>,
    /// Reasoning on or off.
    #[serde(default)]
    think: Option<Value>,
    /// Model options, type-checked.
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

/// `POST /api/generate`.
pub(crate) async fn generate(State(state): State<SimState>, body: Bytes) -> NativeResult {
    let engine = state.engine();
    let req: GenerateBody = parse_body(&body)?;
    let entry = engine.resolve(req.model.as_deref(), NotFound::Quoted)?;
    let sent = req.model.clone().unwrap_or_default();
    let keep_alive = parse_keep_alive(req.keep_alive.as_ref())?;
    let options = parse_options(req.options.as_ref())?;
    let format = parse_format(req.format.as_ref())?;
    let think = parse_think(req.think.as_ref())?;
    let prompt = req.prompt.unwrap_or_default();
    let images = req.images.unwrap_or_default();

    if prompt.is_empty() && keep_alive.is_some_and(|k| k.is_zero()) {
        let cut = engine.unload(&entry.model).await?;
        let body = json!({"model": sent, "created_at": now(), "response": "", "done": true, "done_reason": "unload"});
        return Ok(json_response(&body, cut));
    }
    let model = entry.model.clone();
    let caps = model.caps();
    if !caps.completion {
        return Err(SimError::unsupported(format!("{sent:?}"), "generate").into());
    }
    let suffix = req.suffix.unwrap_or_default();
    if !suffix.is_empty() && !caps.insert {
        return Err(SimError::unsupported(sent.clone(), "insert").into());
    }
    if !images.is_empty() && !caps.vision {
        return Err(SimError::unsupported(sent.clone(), "vision").into());
    }
    check_level(&model, req.think.as_ref())?;
    let think = resolve_think(&sent, &model, think)?;
    let num_ctx = engine.num_ctx(&model, options.num_ctx);

    if prompt.is_empty() {
        let loaded = engine.load(&entry, (num_ctx, options.num_gpu), keep_alive).await?;
        let body = json!({"model": sent, "created_at": now(), "response": "", "done": true, "done_reason": "load",
            "total_duration": nanos(loaded.total), "load_duration": nanos(loaded.load)});
        return Ok(json_response(&body, loaded.disconnect_after));
    }

    let system = req.system.unwrap_or_default();
    let sent_context = req.context.unwrap_or_default();
    let logprobs = logprobs_asked(req.logprobs, req.top_logprobs)?;
    let raw = req.raw.unwrap_or(false);
    let messages = 1 + u64::from(!system.is_empty());
    let prompt_tokens = estimate_tokens(&system)
        + estimate_tokens(&prompt)
        + estimate_tokens(&suffix)
        + if raw { 0 } else { messages * TOKENS_PER_MESSAGE }
        + images.len() as u64 * TOKENS_PER_IMAGE
        + sent_context.len() as u64;
    let job = Job {
        model,
        digest: entry.digest.clone(),
        num_ctx,
        num_gpu: options.num_gpu,
        keep_alive,
        conversation: format!("{system}\n{prompt}\n{suffix}"),
        prompt,
        prompt_tokens,
        seed: options.seed,
        num_predict: options.num_predict,
        stop: options.stop,
        think,
        format,
        tools: Vec::new(),
        tool_result: None,
    };
    let started = engine.run(job).await?;
    let context: Vec<i64> = sent_context
        .into_iter()
        .chain(context_tokens(&started.run.pieces).into_iter().map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
        .collect();
    let all_logprobs = logprobs.map(|top| logprobs_of(&started.run.pieces, top));
    let stream = events(started.run);
    let disconnect = started.disconnect_after;
    if req.stream.unwrap_or(true) {
        let lines = stream
            .filter_map(move |event| {
                let line = match event {
                    Event::Piece(Piece::Content(text)) => {
                        let mut chunk = json!({"model": sent, "created_at": now(), "response": text, "done": false});
                        if let Some(top) = logprobs {
                            chunk["logprobs"] = json!([logprob_entry(&text, top)]);
                        }
                        Some(chunk)
                    }
                    Event::Piece(Piece::Thinking(text)) => Some(
                        json!({"model": sent, "created_at": now(), "response": "", "thinking": text, "done": false}),
                    ),
                    Event::Piece(Piece::ToolCalls(_)) => None,
                    Event::Done(summary) => Some(generate_final(&sent, "", None, &summary, &context)),
                };
                std::future::ready(line.map(|v| Ok(ndjson(&v))))
            })
            .boxed();
        return Ok(streamed("application/x-ndjson", lines, disconnect));
    }
    let (content, thinking, _, summary) = collect(stream).await?;
    let thinking = (!thinking.is_empty()).then_some(thinking);
    let mut answer = generate_final(&sent, &content, thinking.as_deref(), &summary, &context);
    if let Some(entries) = all_logprobs {
        answer["logprobs"] = Value::Array(entries);
    }
    Ok(json_response(&answer, disconnect))
}

/// The final object of `/api/generate` (also the whole answer when not streaming).
fn generate_final(sent: &str, response: &str, thinking: Option<&str>, summary: &Summary, context: &[i64]) -> Value {
    let mut v = json!({"model": sent, "created_at": now(), "response": response});
    if let Some(thinking) = thinking {
        v["thinking"] = json!(thinking);
    }
    v["done"] = json!(true);
    v["done_reason"] = json!(summary.done_reason.as_str());
    v["context"] = json!(context);
    add_metrics(&mut v, summary);
    v
}

/// One chat message as Ollama's native API sends it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ChatMessage {
    /// system, user, assistant or tool.
    pub role: String,
    /// The text (optional for an assistant message with tool calls).
    #[serde(default)]
    pub content: Option<String>,
    /// Base64 images.
    #[serde(default)]
    pub images: Option<Vec<String>>,
}

/// Body of `/api/chat`.
#[derive(Debug, Deserialize)]
struct ChatBody {
    /// The model, echoed in the answer.
    #[serde(default)]
    model: Option<String>,
    /// The conversation; empty means "load" (or "unload" with keep_alive 0).
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    /// Functions the model may call (needs the tools capability).
    #[serde(default)]
    tools: Option<Vec<Value>>,
    /// `"json"` or a JSON schema.
    #[serde(default)]
    format: Option<Value>,
    /// Model options, type-checked.
    #[serde(default)]
    options: Option<Map<String, Value>>,
    /// Stream NDJSON (the default) or answer with one object.
    #[serde(default)]
    stream: Option<bool>,
    /// How long the model stays loaded afterwards.
    #[serde(default)]
    keep_alive: Option<Value>,
    /// Reasoning on or off.
    #[serde(default)]
    think: Option<Value>,
    /// Log probabilities of the answer's tokens.
    #[serde(default)]
    logprobs: Option<bool>,
    /// Alternatives per token with their log probabilities (0 to 20).
    #[serde(default)]
    top_logprobs: Option<u32>,
}

/// Log probabilities asked for (`logprobs`, `top_logprobs`), checked as Ollama checks them.
fn logprobs_asked(logprobs: Option<bool>, top: Option<u32>) -> Result<Option<usize>, SimError> {
    match top {
        Some(n) if n > 20 => Err(SimError::bad("top_logprobs must be between 0 and 20")),
        _ if logprobs != Some(true) => Ok(None),
        _ => Ok(Some(top.unwrap_or(0) as usize)),
    }
}

/// The log-probability entry of one answer token: a made-up but stable value, and `top` alternatives, the token
/// itself first.
fn logprob_entry(token: &str, top: usize) -> Value {
    let logprob = -((stable_hash(token.as_bytes()) % 2000) as f64) / 1000.0;
    let alternatives: Vec<Value> = (0..top)
        .map(|i| {
            let (alt, lp) = if i == 0 { (token.to_string(), logprob) } else { (format!("alt{i}"), logprob - i as f64) };
            json!({"token": alt, "logprob": lp, "bytes": alt.as_bytes()})
        })
        .collect();
    let mut entry = json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
    if top > 0 {
        entry["top_logprobs"] = Value::Array(alternatives);
    }
    entry
}

/// The entries of every answer token of `pieces`.
fn logprobs_of(pieces: &[Piece], top: usize) -> Vec<Value> {
    pieces.iter().filter_map(|p| if let Piece::Content(t) = p { Some(logprob_entry(t, top)) } else { None }).collect()
}

/// A conversation turned into the parts of a [`Job`] that depend on it.
pub(crate) struct Conversation {
    /// The last user message (looked up as a profiling item).
    pub prompt: String,
    /// Every message as text.
    pub text: String,
    /// Estimated prompt tokens, template and tools included.
    pub tokens: u64,
    /// The role of the last message.
    pub last_role: String,
    /// The last message's text when it is a tool result.
    pub tool_result: Option<String>,
    /// Number of images in all messages.
    pub images: usize,
}

impl Conversation {
    /// Reads `(role, content, images)` triples and the tools offered.
    pub(crate) fn new(messages: &[(String, String, usize)], tools: &[Value]) -> Self {
        let prompt = messages.iter().rev().find(|(role, _, _)| role == "user").map(|m| m.1.clone()).unwrap_or_default();
        let text =
            messages.iter().map(|(role, content, _)| format!("{role}: {content}")).collect::<Vec<_>>().join("\n");
        let images: usize = messages.iter().map(|m| m.2).sum();
        let tools_tokens = if tools.is_empty() { 0 } else { estimate_tokens(&Value::from(tools.to_vec()).to_string()) };
        let tokens = messages.iter().map(|m| estimate_tokens(&m.1) + TOKENS_PER_MESSAGE).sum::<u64>()
            + 2
            + tools_tokens
            + images as u64 * TOKENS_PER_IMAGE;
        let last_role = messages.last().map(|m| m.0.clone()).unwrap_or_default();
        let tool_result = (last_role == "tool").then(|| messages.last().map(|m| m.1.clone()).unwrap_or_default());
        Self { prompt, text, tokens, last_role, tool_result, images }
    }
}

/// `POST /api/chat`.
pub(crate) async fn chat(State(state): State<SimState>, body: Bytes) -> NativeResult {
    let engine = state.engine();
    let req: ChatBody = parse_body(&body)?;
    let entry = engine.resolve(req.model.as_deref(), NotFound::Quoted)?;
    let sent = req.model.clone().unwrap_or_default();
    let keep_alive = parse_keep_alive(req.keep_alive.as_ref())?;
    let options = parse_options(req.options.as_ref())?;
    let format = parse_format(req.format.as_ref())?;
    let think = parse_think(req.think.as_ref())?;
    let logprobs = logprobs_asked(req.logprobs, req.top_logprobs)?;
    let messages = req.messages.unwrap_or_default();
    let tools = req.tools.unwrap_or_default();

    if messages.is_empty() && keep_alive.is_some_and(|k| k.is_zero()) {
        let cut = engine.unload(&entry.model).await?;
        let body = json!({"model": sent, "created_at": now(), "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": "unload"});
        return Ok(json_response(&body, cut));
    }
    let model = entry.model.clone();
    let caps = model.caps();
    if !caps.completion {
        return Err(SimError::unsupported(format!("{sent:?}"), "chat").into());
    }
    if !tools.is_empty() && !caps.tools {
        return Err(SimError::unsupported(sent.clone(), "tools").into());
    }
    let triples: Vec<(String, String, usize)> = messages
        .iter()
        .map(|m| (m.role.clone(), m.content.clone().unwrap_or_default(), m.images.as_ref().map_or(0, Vec::len)))
        .collect();
    let conversation = Conversation::new(&triples, &tools);
    if conversation.images > 0 && !caps.vision {
        return Err(SimError::unsupported(sent.clone(), "vision").into());
    }
    check_level(&model, req.think.as_ref())?;
    let think = resolve_think(&sent, &model, think)?;
    let num_ctx = engine.num_ctx(&model, options.num_ctx);

    if messages.is_empty() {
        let loaded = engine.load(&entry, (num_ctx, options.num_gpu), keep_alive).await?;
        let body = json!({"model": sent, "created_at": now(), "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": "load", "total_duration": nanos(loaded.total),
            "load_duration": nanos(loaded.load)});
        return Ok(json_response(&body, loaded.disconnect_after));
    }

    let call_tools = if conversation.last_role == "user" { tools } else { Vec::new() };
    let job = Job {
        model,
        digest: entry.digest.clone(),
        num_ctx,
        num_gpu: options.num_gpu,
        keep_alive,
        prompt: conversation.prompt,
        conversation: conversation.text,
        prompt_tokens: conversation.tokens,
        seed: options.seed,
        num_predict: options.num_predict,
        stop: options.stop,
        think,
        format,
        tools: call_tools,
        tool_result: conversation.tool_result,
    };
    let started = engine.run(job).await?;
    let disconnect = started.disconnect_after;
    let all_logprobs = logprobs.map(|top| logprobs_of(&started.run.pieces, top));
    let stream = events(started.run);
    if req.stream.unwrap_or(true) {
        let lines = stream
            .map(move |event| {
                let line = match event {
                    Event::Piece(Piece::Content(text)) => {
                        let mut chunk = chat_chunk(&sent, json!({"role": "assistant", "content": text}));
                        if let Some(top) = logprobs {
                            chunk["logprobs"] = json!([logprob_entry(&text, top)]);
                        }
                        chunk
                    }
                    Event::Piece(Piece::Thinking(text)) => {
                        chat_chunk(&sent, json!({"role": "assistant", "content": "", "thinking": text}))
                    }
                    Event::Piece(Piece::ToolCalls(calls)) => {
                        let calls: Vec<Value> = calls.iter().enumerate().map(|(i, c)| c.native_json(i)).collect();
                        chat_chunk(&sent, json!({"role": "assistant", "content": "", "tool_calls": calls}))
                    }
                    Event::Done(summary) => chat_final(&sent, json!({"role": "assistant", "content": ""}), &summary),
                };
                Ok(ndjson(&line))
            })
            .boxed();
        return Ok(streamed("application/x-ndjson", lines, disconnect));
    }
    let (content, thinking, calls, summary) = collect(stream).await?;
    let mut message = json!({"role": "assistant", "content": content});
    if !thinking.is_empty() {
        message["thinking"] = json!(thinking);
    }
    if !calls.is_empty() {
        message["tool_calls"] =
            Value::from(calls.iter().enumerate().map(|(i, c)| c.native_json(i)).collect::<Vec<_>>());
    }
    let mut answer = chat_final(&sent, message, &summary);
    if let Some(entries) = all_logprobs {
        answer["logprobs"] = Value::Array(entries);
    }
    Ok(json_response(&answer, disconnect))
}

fn chat_chunk(sent: &str, message: Value) -> Value {
    json!({"model": sent, "created_at": now(), "message": message, "done": false})
}

fn chat_final(sent: &str, message: Value, summary: &Summary) -> Value {
    let mut v = json!({"model": sent, "created_at": now(), "message": message, "done": true,
        "done_reason": summary.done_reason.as_str()});
    add_metrics(&mut v, summary);
    v
}

/// Body of `/api/embed`.
#[derive(Debug, Deserialize)]
struct EmbedBody {
    /// The embedding model, echoed in the answer.
    #[serde(default)]
    model: Option<String>,
    /// A string or a list of strings; none means "load".
    #[serde(default)]
    input: Option<Value>,
    /// Cut inputs longer than the context (the default) instead of failing.
    #[serde(default)]
    truncate: Option<bool>,
    /// Keep only this many leading dimensions (then normalise again).
    #[serde(default)]
    dimensions: Option<i64>,
    /// Model options, type-checked.
    #[serde(default)]
    options: Option<Map<String, Value>>,
    /// How long the model stays loaded afterwards.
    #[serde(default)]
    keep_alive: Option<Value>,
}

/// Reads an embedding `input`: a string (empty means none) or a list of strings.
pub(crate) fn embed_inputs(input: Option<&Value>) -> Result<Vec<String>, SimError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| SimError::bad("invalid input type")))
            .collect(),
        Some(_) => Err(SimError::bad("invalid input type")),
    }
}

/// `POST /api/embed`.
pub(crate) async fn embed(State(state): State<SimState>, body: Bytes) -> NativeResult {
    let engine = state.engine();
    let req: EmbedBody = parse_body(&body)?;
    let entry = engine.resolve(req.model.as_deref(), NotFound::Pull)?;
    let sent = req.model.clone().unwrap_or_default();
    let keep_alive = parse_keep_alive(req.keep_alive.as_ref())?;
    let options = parse_options(req.options.as_ref())?;
    let inputs = embed_inputs(req.input.as_ref())?;
    let dimensions = match req.dimensions {
        None | Some(0) => None,
        Some(d) if d > 0 => Some(d as usize),
        Some(d) => return Err(SimError::bad(format!("dimensions must be positive, got {d}")).into()),
    };
    if inputs.is_empty() && keep_alive.is_some_and(|k| k.is_zero()) {
        let cut = engine.unload(&entry.model).await?;
        return Ok(json_response(&json!({"model": sent, "embeddings": []}), cut));
    }
    if !entry.model.caps().embedding {
        return Err(SimError::unsupported(format!("{sent:?}"), "embeddings").into());
    }
    let num_ctx = engine.num_ctx(&entry.model, options.num_ctx);
    if inputs.is_empty() {
        let loaded = engine.load(&entry, (num_ctx, options.num_gpu), keep_alive).await?;
        let body = json!({"model": sent, "embeddings": [], "total_duration": nanos(loaded.total),
            "load_duration": nanos(loaded.load)});
        return Ok(json_response(&body, loaded.disconnect_after));
    }
    let out = engine
        .embed(&entry, (num_ctx, options.num_gpu), keep_alive, &inputs, req.truncate.unwrap_or(true), dimensions)
        .await?;
    let body = json!({"model": sent, "embeddings": out.embeddings, "total_duration": nanos(out.total),
        "load_duration": nanos(out.load), "prompt_eval_count": out.prompt_tokens});
    Ok(json_response(&body, out.disconnect_after))
}

/// Body of the legacy `/api/embeddings`.
#[derive(Debug, Deserialize)]
struct EmbeddingsBody {
    /// The embedding model.
    #[serde(default)]
    model: Option<String>,
    /// The one text; empty means "load".
    #[serde(default)]
    prompt: Option<String>,
    /// Model options, type-checked.
    #[serde(default)]
    options: Option<Map<String, Value>>,
    /// How long the model stays loaded afterwards.
    #[serde(default)]
    keep_alive: Option<Value>,
}

/// `POST /api/embeddings` (legacy): one prompt, one `embedding`.
pub(crate) async fn embeddings(State(state): State<SimState>, body: Bytes) -> NativeResult {
    let engine = state.engine();
    let req: EmbeddingsBody = parse_body(&body)?;
    let entry = engine.resolve(req.model.as_deref(), NotFound::Pull)?;
    let sent = req.model.clone().unwrap_or_default();
    let keep_alive = parse_keep_alive(req.keep_alive.as_ref())?;
    let options = parse_options(req.options.as_ref())?;
    let prompt = req.prompt.unwrap_or_default();
    if prompt.is_empty() && keep_alive.is_some_and(|k| k.is_zero()) {
        let cut = engine.unload(&entry.model).await?;
        return Ok(json_response(&json!({"embedding": []}), cut));
    }
    if !entry.model.caps().embedding {
        return Err(SimError::unsupported(format!("{sent:?}"), "embeddings").into());
    }
    let num_ctx = engine.num_ctx(&entry.model, options.num_ctx);
    if prompt.is_empty() {
        let loaded = engine.load(&entry, (num_ctx, options.num_gpu), keep_alive).await?;
        return Ok(json_response(&json!({"embedding": []}), loaded.disconnect_after));
    }
    let out = engine.embed(&entry, (num_ctx, options.num_gpu), keep_alive, &[prompt], true, None).await?;
    let embedding = out.embeddings.into_iter().next().unwrap_or_default();
    Ok(json_response(&json!({ "embedding": embedding }), out.disconnect_after))
}

/// Drains a generation: the content, the reasoning, the tool calls and the summary. A stream that ends without a
/// summary means the server is shutting down.
pub(crate) async fn collect(
    stream: impl futures_util::Stream<Item = Event>,
) -> Result<(String, String, Vec<crate::answer::ToolCall>, Summary), SimError> {
    let mut content = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Event::Piece(Piece::Content(t)) => content.push_str(&t),
            Event::Piece(Piece::Thinking(t)) => thinking.push_str(&t),
            Event::Piece(Piece::ToolCalls(c)) => calls.extend(c),
            Event::Done(summary) => return Ok((content, thinking, calls, summary)),
        }
    }
    Err(SimError::ShuttingDown)
}

/// Adds the metrics of `summary` to a final object, leaving out zeros as Ollama does.
fn add_metrics(v: &mut Value, summary: &Summary) {
    let fields = [
        ("total_duration", nanos(summary.total)),
        ("load_duration", nanos(summary.load)),
        ("prompt_eval_count", summary.prompt_eval_count),
        ("prompt_eval_duration", nanos(summary.prompt_eval)),
        ("eval_count", summary.eval_count),
        ("eval_duration", nanos(summary.eval)),
    ];
    for (key, value) in fields {
        if value > 0 {
            v[key] = json!(value);
        }
    }
}

/// The `context` of a generate answer: a short list of token ids derived from the answer's words.
fn context_tokens(pieces: &[Piece]) -> Vec<u64> {
    pieces
        .iter()
        .filter_map(|p| if let Piece::Content(t) = p { Some(t) } else { None })
        .take(16)
        .map(|t| 128 + stable_hash(t.trim().as_bytes()) % 128_000)
        .collect()
}

/// A duration as integer nanoseconds.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The current time in Ollama's format.
pub(crate) fn now() -> String {
    rfc3339_nanos(Utc::now())
}

/// One NDJSON line.
fn ndjson(v: &Value) -> Bytes {
    let mut line = v.to_string();
    line.push('\n');
    Bytes::from(line)
}
