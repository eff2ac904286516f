//! OpenAI <-> Ollama translation.
//!
//! OpenAI requests are rewritten into Ollama's native API (so `keep_alive` and load-time options stay under
//! Switchyard's control): content parts and base64 images, tools and tool calls (arguments as a JSON string on the
//! OpenAI side, an object on Ollama's), sampling parameters into `options`, `max_tokens` -> `num_predict`,
//! `response_format` -> `format`. Answers are rewritten back: `chat.completion` objects, SSE chunks of
//! `chat.completion.chunk` with the role in the first delta, a finish chunk, an optional usage chunk, and `[DONE]`.

use crate::error::RouterError;
use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::io::Write as _;

mod responses;
pub use responses::{ResponsesContext, ResponsesTranslator, responses_echo, responses_request, responses_response};

fn bad(message: impl Into<String>, param: &str) -> RouterError {
    RouterError::bad(message, Some(param.to_string()))
}

/// Which OpenAI endpoint a translation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiKind {
    Chat,
    Completion,
}

/// What the response translation needs to remember about the request.
#[derive(Debug, Clone)]
pub struct OpenAiContext {
    pub kind: OpenAiKind,
    /// `chatcmpl-…` / `cmpl-…`.
    pub id: String,
    /// Unix seconds of the request.
    pub created: i64,
    /// Send a usage chunk before `[DONE]`.
    pub include_usage: bool,
}

/// Copies OpenAI sampling parameters into Ollama `options`, with Ollama's OpenAI-compatible defaults (temperature
/// and top_p 1.0).
fn sampling_options(req: &Map<String, Value>) -> Result<Map<String, Value>, RouterError> {
    let mut options = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ] {
        match req.get(from) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                options.insert(to.into(), v.clone());
            }
            Some(_) => return Err(bad(format!("{from} must be a number"), from)),
        }
    }
    options.entry("temperature").or_insert(json!(1.0));
    options.entry("top_p").or_insert(json!(1.0));
    match req.get("seed") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            options.insert("seed".into(), Value::Number(n.clone()));
        }
        Some(_) => return Err(bad("seed must be an integer", "seed")),
    }
    let max = match req.get("max_completion_tokens").filter(|v| !v.is_null()) {
        Some(v) => Some(("max_completion_tokens", v)),
        None => req.get("max_tokens").filter(|v| !v.is_null()).map(|v| ("max_tokens", v)),
    };
    if let Some((name, v)) = max {
        let n =
            v.as_i64().filter(|n| *n >= 1).ok_or_else(|| bad(format!("{name} must be a positive integer"), name))?;
        options.insert("num_predict".into(), json!(n));
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            options.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            options.insert("stop".into(), Value::Array(items.clone()));
        }
        Some(_) => return Err(bad("stop must be a string or a list of strings", "stop")),
    }
    if let Some(n) = req.get("n").filter(|v| !v.is_null())
        && n.as_u64() != Some(1)
    {
        return Err(bad("only n = 1 is supported", "n"));
    }
    Ok(options)
}

fn response_format(req: &Map<String, Value>) -> Result<Option<Value>, RouterError> {
    let Some(format) = req.get("response_format").filter(|v| !v.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!("json"))),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| bad("response_format.json_schema.schema must be an object", "response_format"))?;
            Ok(Some(schema.clone()))
        }
        _ => Err(bad("response_format.type must be text, json_object or json_schema", "response_format")),
    }
}

/// Strips a data URL prefix; remote image URLs are refused (Ollama takes image bytes, not links).
fn image_data(url: &str, param: &str) -> Result<String, RouterError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (_, data) = rest
            .split_once(";base64,")
            .ok_or_else(|| bad("image data URLs must be base64 (data:image/png;base64,...)", param))?;
        return Ok(data.to_string());
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(bad("image URLs are not fetched; send the image as a base64 data URL", param));
    }
    Ok(url.to_string())
}

fn message_content(content: Option<&Value>, i: usize) -> Result<(String, Vec<Value>), RouterError> {
    let param = format!("messages[{i}].content");
    match content {
        None | Some(Value::Null) => Ok((String::new(), Vec::new())),
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            let mut images = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let part_param = format!("{param}[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = part
                            .get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("text parts need a text string", &part_param))?;
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(t);
                    }
                    Some("image_url") => {
                        let url = part
                            .get("image_url")
                            .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                            .ok_or_else(|| bad("image_url parts need image_url.url", &part_param))?;
                        images.push(Value::String(image_data(url, &part_param)?));
                    }
                    _ => return Err(bad("content parts must be of type text or image_url", &part_param)),
                }
            }
            Ok((text, images))
        }
        Some(_) => Err(bad("content must be a string or a list of parts", &param)),
    }
}

/// What a request's `tool_choice` asks of the tools sent to Ollama, which has no such field: `"none"` sends no
/// tools, a named function (`{"type": "function", "function": {"name": ...}}`, or the Responses API's
/// `{"type": "function", "name": ...}`) or an `allowed_tools` list sends only those tools, so the model can call
/// nothing else. `"auto"`, `"required"` (Ollama cannot force a call) and forms it does not know send every tool, as
/// Ollama's own OpenAI endpoint does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ToolChoice {
    All,
    None,
    Only(Vec<String>),
}

impl ToolChoice {
    fn of(choice: Option<&Value>) -> ToolChoice {
        let Some(choice) = choice else { return ToolChoice::All };
        if choice.as_str() == Some("none") {
            return ToolChoice::None;
        }
        fn name(v: &Value) -> Option<&str> {
            v.get("function").and_then(|f| f.get("name")).or_else(|| v.get("name")).and_then(Value::as_str)
        }
        match choice.get("type").and_then(Value::as_str) {
            Some("function") => name(choice).map_or(ToolChoice::All, |n| ToolChoice::Only(vec![n.to_string()])),
            Some("allowed_tools") => {
                let allowed = choice.get("allowed_tools").unwrap_or(choice);
                let names: Vec<String> = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(|tools| tools.iter().filter_map(name).map(str::to_string).collect())
                    .unwrap_or_default();
                if names.is_empty() { ToolChoice::All } else { ToolChoice::Only(names) }
            }
            _ => ToolChoice::All,
        }
    }
}

/// Translates an OpenAI chat completion request into an Ollama `/api/chat` body.
pub fn chat_request(req: &Map<String, Value>) -> Result<(Map<String, Value>, OpenAiMeta), RouterError> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| bad("model is required", "model"))?;
    let messages = match req.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(bad("messages must not be empty", "messages")),
        None | Some(Value::Null) => return Err(bad("messages is required", "messages")),
        Some(_) => return Err(bad("messages must be a list", "messages")),
    };
    let mut tool_names: Vec<(String, String)> = Vec::new();
    let mut out_messages = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let m =
            m.as_object().ok_or_else(|| bad(format!("messages[{i}] must be an object"), &format!("messages[{i}]")))?;
        let role = match m.get("role").and_then(Value::as_str) {
            Some("developer") | Some("system") => "system",
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("tool") | Some("function") => "tool",
            Some(other) => {
                return Err(bad(
                    format!("messages[{i}].role {other:?} is not supported"),
                    &format!("messages[{i}].role"),
                ));
            }
            None => return Err(bad(format!("messages[{i}].role is required"), &format!("messages[{i}].role"))),
        };
        let (content, images) = message_content(m.get("content"), i)?;
        let mut out = Map::new();
        out.insert("role".into(), json!(role));
        out.insert("content".into(), json!(content));
        if !images.is_empty() {
            out.insert("images".into(), Value::Array(images));
        }
        // An earlier answer's reasoning (`reasoning`, as Ollama's own endpoint writes it, or `reasoning_content`, as
        // DeepSeek's and vLLM's do) goes back as its thinking: gpt-oss reads it in a tool loop.
        if role == "assistant"
            && let Some(thinking) = ["reasoning", "reasoning_content"]
                .iter()
                .find_map(|k| m.get(*k).and_then(Value::as_str))
                .filter(|t| !t.is_empty())
        {
            out.insert("thinking".into(), json!(thinking));
        }
        if let Some(Value::Array(calls)) = m.get("tool_calls") {
            let mut native = Vec::with_capacity(calls.len());
            for (j, call) in calls.iter().enumerate() {
                let param = format!("messages[{i}].tool_calls[{j}]");
                let function = call.get("function").ok_or_else(|| bad("tool calls need a function", &param))?;
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("tool calls need function.name", &param))?;
                let arguments = match function.get("arguments") {
                    Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                    Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                        .map_err(|_| bad("function.arguments must be a JSON string", &param))?,
                    Some(v @ Value::Object(_)) => v.clone(),
                    _ => json!({}),
                };
                let mut native_call = json!({"function": {"name": name, "arguments": arguments}});
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    tool_names.push((id.to_string(), name.to_string()));
                    native_call["id"] = json!(id);
                }
                native.push(native_call);
            }
            out.insert("tool_calls".into(), Value::Array(native));
        }
        if role == "tool" {
            let name = m.get("name").and_then(Value::as_str).map(str::to_string).or_else(|| {
                let id = m.get("tool_call_id").and_then(Value::as_str)?;
                tool_names.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone())
            });
            if let Some(name) = name {
                out.insert("tool_name".into(), json!(name));
            }
            if let Some(id) = m.get("tool_call_id").and_then(Value::as_str) {
                out.insert("tool_call_id".into(), json!(id));
            }
        }
        out_messages.push(Value::Object(out));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(out_messages));
    let choice = ToolChoice::of(req.get("tool_choice"));
    match req.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) if !tools.is_empty() && choice != ToolChoice::None => {
            fn name_of(tool: &Value) -> Option<&str> {
                tool.get("function").and_then(|f| f.get("name")).and_then(Value::as_str)
            }
            for (i, tool) in tools.iter().enumerate() {
                if name_of(tool).is_none() {
                    return Err(bad(format!("tools[{i}].function.name is required"), &format!("tools[{i}]")));
                }
            }
            let sent: Vec<Value> = match &choice {
                ToolChoice::Only(names) => {
                    if let Some(missing) = names.iter().find(|n| !tools.iter().any(|t| name_of(t) == Some(n.as_str())))
                    {
                        return Err(bad(
                            format!("tool_choice names the function {missing:?}, which is not in tools"),
                            "tool_choice",
                        ));
                    }
                    tools.iter().filter(|t| name_of(t).is_some_and(|n| names.iter().any(|m| m == n))).cloned().collect()
                }
                _ => tools.clone(),
            };
            body.insert("tools".into(), Value::Array(sent));
        }
        Some(Value::Array(_)) => {}
        Some(_) => return Err(bad("tools must be a list", "tools")),
    }
    if let Some(format) = response_format(req)? {
        body.insert("format".into(), format);
    }
    // `reasoning: {effort}` (the Responses API's form, which Ollama's endpoint also reads here) before
    // `reasoning_effort`.
    let effort = req.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str);
    if let Some(effort) = effort.or_else(|| req.get("reasoning_effort").and_then(Value::as_str)) {
        body.insert("think".into(), think_of_effort(effort));
    }
    let logprobs = match req.get("logprobs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(n) if n.as_u64().is_some_and(|n| n <= 1) => n.as_u64() == Some(1),
        Some(_) => return Err(bad("logprobs must be true or false", "logprobs")),
    };
    let top = match req.get("top_logprobs") {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .filter(|n| *n <= 20)
                .ok_or_else(|| bad("top_logprobs must be an integer from 0 to 20", "top_logprobs"))?,
        ),
    };
    // Without `logprobs: true`, `top_logprobs` asks for nothing (as Ollama's own endpoint reads it).
    ask_logprobs(&mut body, logprobs, top);
    body.insert("options".into(), Value::Object(sampling_options(req)?));
    let meta = OpenAiMeta::read(req)?;
    body.insert("stream".into(), json!(meta.stream));
    Ok((body, meta))
}

/// Asks Ollama for the answer's log probabilities (`logprobs`) and `top` alternatives per token.
fn ask_logprobs(body: &mut Map<String, Value>, logprobs: bool, top: Option<u64>) {
    if logprobs {
        body.insert("logprobs".into(), json!(true));
        if let Some(n) = top.filter(|n| *n > 0) {
            body.insert("top_logprobs".into(), json!(n));
        }
    }
}

/// One token's entry in OpenAI's shape (`token`, `logprob`, `bytes`, and `top_logprobs` when `top`), from Ollama's.
fn openai_logprob(entry: &Value, top: bool) -> Value {
    let token = entry.get("token").and_then(Value::as_str).unwrap_or("");
    let mut out = json!({
        "token": token,
        "logprob": entry.get("logprob").and_then(Value::as_f64).unwrap_or(0.0),
        "bytes": entry.get("bytes").filter(|b| b.is_array()).cloned().unwrap_or_else(|| json!(token.as_bytes())),
    });
    if top {
        let alternatives = entry.get("top_logprobs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        out["top_logprobs"] = Value::Array(alternatives.iter().map(|a| openai_logprob(a, false)).collect());
    }
    out
}

/// A chat choice's `logprobs` for the log probabilities Ollama sent with an answer or chunk (`null` without them).
fn chat_logprobs(native: Option<&Value>) -> Value {
    match native.and_then(Value::as_array) {
        Some(entries) => {
            json!({"content": entries.iter().map(|e| openai_logprob(e, true)).collect::<Vec<_>>(), "refusal": null})
        }
        None => Value::Null,
    }
}

/// A completion choice's legacy `logprobs` (`tokens`, `token_logprobs`, `top_logprobs` as token-to-logprob maps,
/// `text_offset` in characters from `offset`, which it advances) for Ollama's (`null` without them).
fn completion_logprobs(native: Option<&Value>, offset: &mut usize) -> Value {
    let Some(entries) = native.and_then(Value::as_array) else { return Value::Null };
    let (mut tokens, mut logprobs, mut tops, mut offsets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in entries {
        let token = e.get("token").and_then(Value::as_str).unwrap_or("");
        tokens.push(json!(token));
        logprobs.push(json!(e.get("logprob").and_then(Value::as_f64).unwrap_or(0.0)));
        let alternatives: Map<String, Value> = e
            .get("top_logprobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a.get("token")?.as_str()?.to_string(), a.get("logprob")?.clone())))
            .collect();
        tops.push(Value::Object(alternatives));
        offsets.push(json!(*offset));
        *offset += token.chars().count();
    }
    json!({"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets})
}

/// Ollama's `think` for OpenAI's `reasoning_effort`, as Ollama's own OpenAI endpoint reads it: `none` turns thinking
/// off, `minimal` is Ollama's `low`, `xhigh` its highest level every version takes (`high`); `low`, `medium` and
/// `high` are the same words, and any other value is passed on for Ollama to judge.
fn think_of_effort(effort: &str) -> Value {
    match effort {
        "none" => json!(false),
        "minimal" => json!("low"),
        "xhigh" => json!("high"),
        other => json!(other),
    }
}

/// Translates an OpenAI (legacy) completion request into an Ollama `/api/generate` body.
pub fn completion_request(req: &Map<String, Value>) -> Result<(Map<String, Value>, OpenAiMeta), RouterError> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| bad("model is required", "model"))?;
    let prompt = match req.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        Some(Value::Array(_)) => return Err(bad("prompt must be one string (batches are not supported)", "prompt")),
        None | Some(Value::Null) => return Err(bad("prompt is required", "prompt")),
        Some(_) => return Err(bad("prompt must be a string", "prompt")),
    };
    if req.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(bad("echo is not supported", "echo"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("prompt".into(), json!(prompt));
    if let Some(suffix) = req.get("suffix").and_then(Value::as_str) {
        body.insert("suffix".into(), json!(suffix));
    }
    // The legacy `logprobs` is the number of alternatives per token (OpenAI takes up to 5, local engines 20).
    match req.get("logprobs") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => ask_logprobs(&mut body, true, None),
        Some(n) => {
            let n = n
                .as_u64()
                .filter(|n| *n <= 20)
                .ok_or_else(|| bad("logprobs must be an integer from 0 to 20", "logprobs"))?;
            ask_logprobs(&mut body, true, Some(n));
        }
    }
    body.insert("options".into(), Value::Object(sampling_options(req)?));
    let meta = OpenAiMeta::read(req)?;
    body.insert("stream".into(), json!(meta.stream));
    Ok((body, meta))
}

/// Most strings one OpenAI embeddings request may hold (OpenAI's own limit; its clients and the frameworks batch
/// below it).
pub const OPENAI_MAX_EMBEDDING_INPUTS: usize = 2048;

/// Translates an OpenAI embeddings request into an Ollama `/api/embed` body; returns whether base64 was asked.
pub fn embeddings_request(req: &Map<String, Value>) -> Result<(Map<String, Value>, bool), RouterError> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| bad("model is required", "model"))?;
    let input = match req.get("input") {
        Some(Value::String(s)) => json!(s),
        Some(Value::Array(items)) if items.len() > OPENAI_MAX_EMBEDDING_INPUTS => {
            return Err(bad(
                format!(
                    "input holds {} strings; OpenAI's API takes at most {OPENAI_MAX_EMBEDDING_INPUTS} per request: \
                     send them in batches",
                    items.len()
                ),
                "input",
            ));
        }
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Value::Array(items.clone())
        }
        Some(Value::Array(items)) if items.is_empty() => return Err(bad("input must not be empty", "input")),
        Some(Value::Array(_)) => {
            return Err(bad("input must be a string or a list of strings (token arrays are not supported)", "input"));
        }
        _ => return Err(bad("input is required", "input")),
    };
    let base64 = match req.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return Err(bad("encoding_format must be float or base64", "encoding_format")),
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("input".into(), input);
    if let Some(d) = req.get("dimensions").filter(|v| !v.is_null()) {
        let d =
            d.as_u64().filter(|d| *d >= 1).ok_or_else(|| bad("dimensions must be a positive integer", "dimensions"))?;
        body.insert("dimensions".into(), json!(d));
    }
    Ok((body, base64))
}

/// Streaming settings of an OpenAI request.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiMeta {
    pub stream: bool,
    pub include_usage: bool,
}

impl OpenAiMeta {
    fn read(req: &Map<String, Value>) -> Result<Self, RouterError> {
        let stream = match req.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("stream must be true or false", "stream")),
        };
        let include_usage =
            req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        Ok(Self { stream, include_usage })
    }
}

fn finish_reason(chunk: &Value, had_tool_calls: bool) -> &'static str {
    if had_tool_calls {
        return "tool_calls";
    }
    match chunk.get("done_reason").and_then(Value::as_str) {
        Some("length") => "length",
        _ => "stop",
    }
}

fn usage(chunk: &Value) -> Value {
    let prompt = chunk.get("prompt_eval_count").and_then(Value::as_u64).unwrap_or(0);
    let completion = chunk.get("eval_count").and_then(Value::as_u64).unwrap_or(0);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)})
}

pub(crate) fn openai_tool_calls(calls: &[Value], id_seed: &str, offset: usize) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let function = call.get("function").cloned().unwrap_or(Value::Null);
            let name = function.get("name").cloned().unwrap_or(json!(""));
            let arguments = match function.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "{}".to_string(),
            };
            json!({
                "index": offset + i,
                "id": format!("call_{id_seed}_{}", offset + i),
                "type": "function",
                "function": {"name": name, "arguments": arguments}
            })
        })
        .collect()
}

/// A non-streaming Ollama answer as an OpenAI object.
pub fn openai_response(cx: &OpenAiContext, model: &str, answer: &Value) -> Value {
    match cx.kind {
        OpenAiKind::Chat => {
            let message = answer.get("message").cloned().unwrap_or(Value::Null);
            let content = message.get("content").and_then(Value::as_str).unwrap_or("");
            let calls = message.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            let mut out = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                out["tool_calls"] = Value::Array(openai_tool_calls(calls, &cx.id, 0));
            }
            if let Some(thinking) = message.get("thinking").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                out["reasoning"] = json!(thinking);
            }
            json!({
                "id": cx.id, "object": "chat.completion", "created": cx.created, "model": model,
                "system_fingerprint": "fp_switchyard",
                "choices": [{"index": 0, "message": out, "finish_reason": finish_reason(answer, !calls.is_empty()),
                             "logprobs": chat_logprobs(answer.get("logprobs"))}],
                "usage": usage(answer)
            })
        }
        OpenAiKind::Completion => json!({
            "id": cx.id, "object": "text_completion", "created": cx.created, "model": model,
            "system_fingerprint": "fp_switchyard",
            "choices": [{"index": 0, "text": answer.get("response").and_then(Value::as_str).unwrap_or(""),
                         "finish_reason": finish_reason(answer, false),
                         "logprobs": completion_logprobs(answer.get("logprobs"), &mut 0)}],
            "usage": usage(answer)
        }),
    }
}

/// A buffered chat or completion answer from Ollama as the bytes of an OpenAI response: the same JSON as
/// [`openai_response`] writes, read from the answer's bytes without building a `Value` in the common case (text,
/// thinking and counts); an answer with tool calls or unusual fields goes through [`openai_response`]. Fails when
/// the answer is not JSON.
pub fn openai_response_bytes(cx: &OpenAiContext, model: &str, answer: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    if let Some(bytes) = plain_response(cx, model, answer) {
        return Ok(bytes);
    }
    let answer: Value = serde_json::from_slice(answer)?;
    serde_json::to_vec(&openai_response(cx, model, &answer))
}

/// [`openai_response_bytes`] for an answer that carries only text, thinking, a done reason and counts.
fn plain_response(cx: &OpenAiContext, model: &str, answer: &[u8]) -> Option<Vec<u8>> {
    if !is_object(answer) {
        return None;
    }
    let answer = serde_json::from_slice::<PlainAnswer<'_>>(answer).ok()?;
    if answer.logprobs.is_some() {
        return None;
    }
    let usage = PlainUsage::of(answer.prompt_eval_count.as_u64(), answer.eval_count.as_u64());
    let finish_reason = match answer.done_reason.as_deref() {
        Some("length") => "length",
        _ => "stop",
    };
    let (object, message, text) = match cx.kind {
        OpenAiKind::Chat => {
            let message = answer.message.as_ref();
            if message.is_some_and(|m| m.tool_calls.is_some()) {
                return None;
            }
            let message = PlainMessage {
                content: message.and_then(|m| m.content.as_deref()).unwrap_or(""),
                reasoning: message.and_then(|m| m.thinking.as_deref()).filter(|t| !t.is_empty()),
                role: "assistant",
            };
            ("chat.completion", Some(message), None)
        }
        OpenAiKind::Completion => ("text_completion", None, Some(answer.response.as_deref().unwrap_or(""))),
    };
    serde_json::to_vec(&PlainCompletion {
        choices: [PlainChoice { finish_reason, index: 0, logprobs: None, message, text }],
        created: cx.created,
        id: &cx.id,
        model,
        object,
        system_fingerprint: "fp_switchyard",
        usage,
    })
    .ok()
}

/// The fields of a buffered answer that an OpenAI response shows, borrowed from its bytes where they hold no
/// escapes. A field of another type than Ollama sends (a number for text, say) fails the parse, and the answer
/// takes the general path, which reads such a field as missing.
#[derive(Deserialize)]
struct PlainAnswer<'a> {
    #[serde(borrow, default, deserialize_with = "message_object")]
    message: Option<TokenMessage<'a>>,
    #[serde(borrow, default)]
    response: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    done_reason: Option<Cow<'a, str>>,
    /// Log probabilities take the general path.
    #[serde(borrow, default)]
    logprobs: Option<&'a serde_json::value::RawValue>,
    /// Counts as the general path reads them: anything but an unsigned integer is 0.
    #[serde(default)]
    prompt_eval_count: Value,
    #[serde(default)]
    eval_count: Value,
}

/// A `chat.completion` or `text_completion` object. Fields are in the order `openai_response`'s `Value` writes
/// them (sorted), so both paths write the same bytes.
#[derive(Serialize)]
struct PlainCompletion<'a> {
    choices: [PlainChoice<'a>; 1],
    created: i64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    system_fingerprint: &'static str,
    usage: PlainUsage,
}

#[derive(Serialize)]
struct PlainChoice<'a> {
    finish_reason: &'static str,
    index: u32,
    logprobs: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<PlainMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct PlainMessage<'a> {
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
    role: &'static str,
}

#[derive(Serialize)]
struct PlainUsage {
    completion_tokens: u64,
    prompt_tokens: u64,
    total_tokens: u64,
}

impl PlainUsage {
    fn of(prompt: Option<u64>, completion: Option<u64>) -> Self {
        let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
        PlainUsage {
            completion_tokens: completion,
            prompt_tokens: prompt,
            total_tokens: prompt.saturating_add(completion),
        }
    }
}

/// The parts of Ollama's `/api/embed` answer an OpenAI list is made of; each vector is kept as the text Ollama
/// wrote, so a large answer is copied, not parsed into a tree of numbers.
#[derive(Deserialize)]
struct EmbedAnswer<'a> {
    #[serde(borrow, default)]
    embeddings: Vec<&'a RawValue>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
}

/// An embeddings answer from Ollama (`/api/embed`'s bytes) as an OpenAI list, written straight into bytes (keys in
/// the order the general JSON writer puts them). Vectors are copied as Ollama wrote them, or encoded as base64 of
/// little-endian `f32`s.
pub fn embeddings_response(model: &str, answer: &[u8], base64: bool) -> Result<Vec<u8>, serde_json::Error> {
    let answer: EmbedAnswer<'_> = serde_json::from_slice(answer)?;
    let vectors: usize = answer.embeddings.iter().map(|v| v.get().len()).sum();
    let mut out = Vec::with_capacity(vectors + answer.embeddings.len() * 48 + model.len() + 96);
    out.extend_from_slice(b"{\"data\":[");
    for (i, row) in answer.embeddings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"embedding\":");
        if base64 {
            let values: Vec<f64> = serde_json::from_str(row.get())?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
            serde_json::to_writer(&mut out, &base64::engine::general_purpose::STANDARD.encode(bytes))?;
        } else {
            out.extend_from_slice(row.get().as_bytes());
        }
        write!(out, ",\"index\":{i},\"object\":\"embedding\"}}").map_err(serde_json::Error::io)?;
    }
    out.extend_from_slice(b"],\"model\":");
    serde_json::to_writer(&mut out, model)?;
    let tokens = answer.prompt_eval_count.unwrap_or(0);
    write!(out, ",\"object\":\"list\",\"usage\":{{\"prompt_tokens\":{tokens},\"total_tokens\":{tokens}}}}}")
        .map_err(serde_json::Error::io)?;
    Ok(out)
}

/// Writes an OpenAI stream's events for Ollama NDJSON lines: chat and completion chunks, or Responses events.
pub trait SseEvents: Send + Unpin + 'static {
    /// Appends the events for one upstream chunk to `out`.
    fn on_chunk(&mut self, value: &Value, out: &mut BytesMut);
    /// Ends the stream with an error event.
    fn error(&mut self, message: &str, out: &mut BytesMut);

    /// Translates one complete NDJSON line: a chunk, or an upstream `{"error": ...}` line that ends the stream.
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        self.general_line(line, out);
    }

    /// [`SseEvents::line`] through a parsed `Value`: every kind of line.
    fn general_line(&mut self, line: &[u8], out: &mut BytesMut) {
        let Ok(value) = serde_json::from_slice::<Value>(line) else { return };
        if let Some(message) = value.get("error") {
            let text = message.as_str().map_or_else(|| message.to_string(), str::to_string);
            self.error(&text, out);
            return;
        }
        self.on_chunk(&value, out);
    }
}

/// Turns Ollama NDJSON lines into OpenAI SSE events, one stream at a time.
#[derive(Debug)]
pub struct SseTranslator {
    cx: OpenAiContext,
    model: String,
    /// The role is sent in the first delta only.
    sent_role: bool,
    /// Tool calls seen so far (their indices continue across chunks; the finish reason becomes `tool_calls`).
    tool_calls: usize,
    /// The final chunk was translated (no error line may follow).
    finished: bool,
    /// Characters of completion text sent so far (the legacy logprobs' `text_offset`).
    text_offset: usize,
}

impl SseTranslator {
    pub fn new(cx: OpenAiContext, model: impl Into<String>) -> Self {
        Self { cx, model: model.into(), sent_role: false, tool_calls: 0, finished: false, text_offset: 0 }
    }

    fn event(out: &mut BytesMut, value: &Value) {
        out.put_slice(b"data: ");
        // Serialising a Value cannot fail.
        let _ = serde_json::to_writer((&mut *out).writer(), value);
        out.put_slice(b"\n\n");
    }

    fn chunk(&self, choices: Value) -> Value {
        let object = match self.cx.kind {
            OpenAiKind::Chat => "chat.completion.chunk",
            OpenAiKind::Completion => "text_completion",
        };
        json!({"id": self.cx.id, "object": object, "created": self.cx.created, "model": self.model,
               "system_fingerprint": "fp_switchyard", "choices": choices})
    }

    /// Appends the SSE events for one upstream chunk to `out`.
    fn translate(&mut self, value: &Value, out: &mut BytesMut) {
        let done = value.get("done").and_then(Value::as_bool).unwrap_or(false);
        match self.cx.kind {
            OpenAiKind::Chat => {
                let message = value.get("message");
                let content = message.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or("");
                let calls = message
                    .and_then(|m| m.get("tool_calls"))
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let thinking = message.and_then(|m| m.get("thinking")).and_then(Value::as_str).unwrap_or("");
                if !content.is_empty() || !calls.is_empty() || !thinking.is_empty() || !self.sent_role {
                    let mut delta = Map::new();
                    if !self.sent_role {
                        delta.insert("role".into(), json!("assistant"));
                        self.sent_role = true;
                    }
                    if !content.is_empty() || calls.is_empty() {
                        delta.insert("content".into(), json!(content));
                    }
                    if !thinking.is_empty() {
                        delta.insert("reasoning".into(), json!(thinking));
                    }
                    if !calls.is_empty() {
                        delta.insert(
                            "tool_calls".into(),
                            Value::Array(openai_tool_calls(calls, &self.cx.id, self.tool_calls)),
                        );
                        self.tool_calls += calls.len();
                    }
                    let logprobs = chat_logprobs(value.get("logprobs"));
                    let c =
                        self.chunk(json!([{"index": 0, "delta": delta, "finish_reason": null, "logprobs": logprobs}]));
                    Self::event(out, &c);
                }
                if done {
                    let reason = finish_reason(value, self.tool_calls > 0);
                    let c = self.chunk(json!([{"index": 0, "delta": {}, "finish_reason": reason, "logprobs": null}]));
                    Self::event(out, &c);
                }
            }
            OpenAiKind::Completion => {
                let text = value.get("response").and_then(Value::as_str).unwrap_or("");
                let reason = if done { Value::from(finish_reason(value, false)) } else { Value::Null };
                if !text.is_empty() || done {
                    let logprobs = completion_logprobs(value.get("logprobs"), &mut self.text_offset);
                    let c =
                        self.chunk(json!([{"index": 0, "text": text, "finish_reason": reason, "logprobs": logprobs}]));
                    Self::event(out, &c);
                }
            }
        }
        if done {
            if self.cx.include_usage {
                let mut c = self.chunk(json!([]));
                c["usage"] = usage(value);
                Self::event(out, &c);
            }
            out.put_slice(b"data: [DONE]\n\n");
            self.finished = true;
        }
    }
}

/// A native chat chunk as far as the common case needs it: text and thinking, borrowed from the line where they
/// hold no escapes. Anything else a chunk may carry (the final chunk's counts, tool calls, an error) sends the line
/// down the general path.
#[derive(Deserialize)]
struct TokenChunk<'a> {
    #[serde(default)]
    done: bool,
    #[serde(borrow, default, deserialize_with = "message_object")]
    message: Option<TokenMessage<'a>>,
    #[serde(borrow, default)]
    error: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    logprobs: Option<&'a serde_json::value::RawValue>,
}

/// True when `json` is an object. Serde fills a struct from an array too (field by field), which the general path
/// reads as an answer without fields: only objects take the borrowed paths.
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A message field read only from an object or `null` (see [`is_object`]); anything else fails the parse, and the
/// line or answer takes the general path.
fn message_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TokenMessage<'de>>, D::Error> {
    use serde::de::Error as _;
    match Option::<&'de serde_json::value::RawValue>::deserialize(d)? {
        None => Ok(None),
        Some(raw) if is_object(raw.get().as_bytes()) => {
            serde_json::from_str(raw.get()).map(Some).map_err(D::Error::custom)
        }
        Some(_) => Err(D::Error::custom("the message is not an object")),
    }
}

/// A native answer's message: text and thinking borrowed where they hold no escapes, and whether it has tool calls.
#[derive(Deserialize)]
struct TokenMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a serde_json::value::RawValue>,
}

/// One `chat.completion.chunk` carrying a delta, written without building a `Value`.
#[derive(Serialize)]
struct DeltaEvent<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [DeltaChoice<'a>; 1],
}

#[derive(Serialize)]
struct DeltaChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
}

impl SseTranslator {
    /// Translates a chat chunk that only carries text or thinking; `false` when the line needs the general path.
    fn token_line(&mut self, line: &[u8], out: &mut BytesMut) -> bool {
        if self.cx.kind != OpenAiKind::Chat {
            return false;
        }
        if !is_object(line) {
            return false;
        }
        let Ok(chunk) = serde_json::from_slice::<TokenChunk<'_>>(line) else { return false };
        if chunk.done || chunk.error.is_some() || chunk.logprobs.is_some() {
            return false;
        }
        let Some(message) = chunk.message else { return false };
        if message.tool_calls.is_some() {
            return false;
        }
        let content = message.content.as_deref().unwrap_or("");
        let thinking = message.thinking.as_deref().unwrap_or("");
        if content.is_empty() && thinking.is_empty() && self.sent_role {
            return true;
        }
        let role = (!self.sent_role).then_some("assistant");
        self.sent_role = true;
        let event = DeltaEvent {
            id: &self.cx.id,
            object: "chat.completion.chunk",
            created: self.cx.created,
            model: &self.model,
            system_fingerprint: "fp_switchyard",
            choices: [DeltaChoice {
                index: 0,
                delta: Delta { role, content, reasoning: (!thinking.is_empty()).then_some(thinking) },
                finish_reason: None,
                logprobs: None,
            }],
        };
        out.put_slice(b"data: ");
        // Serialising plain strings and numbers cannot fail.
        let _ = serde_json::to_writer((&mut *out).writer(), &event);
        out.put_slice(b"\n\n");
        true
    }
}

impl SseEvents for SseTranslator {
    fn on_chunk(&mut self, value: &Value, out: &mut BytesMut) {
        self.translate(value, out);
    }

    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        if !self.token_line(line, out) {
            self.general_line(line, out);
        }
    }

    /// Ends the stream with an error event in OpenAI's shape.
    fn error(&mut self, message: &str, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        Self::event(out, &json!({"error": {"message": message, "type": "api_error", "param": null, "code": null}}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn chat_requests_become_native() {
        let (body, meta) = chat_request(&obj(json!({
            "model": "auto",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                              {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "12C"}
            ],
            "max_tokens": 64, "temperature": 0.2, "stop": "END", "seed": 7,
            "response_format": {"type": "json_object"},
            "stream": true, "stream_options": {"include_usage": true}
        })))
        .unwrap();
        assert!(meta.stream && meta.include_usage);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["images"], json!(["iVBOR"]));
        assert_eq!(body["messages"][2]["tool_calls"][0]["function"]["arguments"], json!({"city": "Oslo"}));
        assert_eq!(body["messages"][3]["tool_name"], "get_weather");
        assert_eq!(
            body["options"],
            json!({"temperature": 0.2, "top_p": 1.0, "seed": 7, "num_predict": 64, "stop": ["END"]})
        );
        assert_eq!(body["format"], "json");
    }

    #[test]
    fn reasoning_effort_becomes_think() {
        let think = |effort: &str| {
            let req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort});
            chat_request(&obj(req)).unwrap().0["think"].clone()
        };
        assert_eq!(think("none"), json!(false));
        assert_eq!(think("minimal"), json!("low"));
        assert_eq!(think("low"), json!("low"));
        assert_eq!(think("medium"), json!("medium"));
        assert_eq!(think("high"), json!("high"));
        assert_eq!(think("xhigh"), json!("high"));
        let none = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert!(chat_request(&obj(none)).unwrap().0.get("think").is_none());
        // The Responses API's form, which comes first when both are sent.
        let both = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "low"},
                          "reasoning_effort": "high"});
        assert_eq!(chat_request(&obj(both)).unwrap().0["think"], json!("low"));
    }

    #[test]
    fn earlier_reasoning_and_tool_call_ids_go_back_to_ollama() {
        let req = json!({"model": "m", "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "reasoning": "I should call the tool.",
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "assistant", "content": "It is 18 C.", "reasoning_content": "The tool said 18."},
            {"role": "user", "content": "Thanks", "reasoning": "not an answer's"}
        ]});
        let (body, _) = chat_request(&obj(req)).unwrap();
        let m = &body["messages"];
        assert_eq!(m[1]["thinking"], "I should call the tool.");
        assert_eq!(m[1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"]["city"], "Paris");
        assert_eq!(m[2]["tool_call_id"], "call_1");
        assert_eq!(m[2]["tool_name"], "weather");
        assert_eq!(m[3]["thinking"], "The tool said 18.");
        assert!(m[4].get("thinking").is_none(), "only an answer's reasoning is its thinking");
        assert!(m[0].get("thinking").is_none());
    }

    #[test]
    fn tool_choice_selects_the_tools_sent() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
        ]);
        let sent = |choice: Value| {
            let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools});
            if !choice.is_null() {
                req["tool_choice"] = choice;
            }
            let (body, _) = chat_request(&obj(req)).unwrap();
            body.get("tools").and_then(Value::as_array).map_or(Vec::new(), |tools| {
                tools.iter().map(|t| t["function"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
            })
        };
        let all = vec!["get_weather", "get_time", "search"];
        assert_eq!(sent(Value::Null), all);
        assert_eq!(sent(json!("auto")), all);
        // Ollama cannot force a call: every tool goes, as through Ollama's own endpoint.
        assert_eq!(sent(json!("required")), all);
        assert_eq!(sent(json!("any")), all);
        assert!(sent(json!("none")).is_empty());
        // A named function (LangChain's structured output sends one): only it.
        assert_eq!(sent(json!({"type": "function", "function": {"name": "get_time"}})), vec!["get_time"]);
        assert_eq!(sent(json!({"type": "function", "name": "search"})), vec!["search"]);
        let allowed = json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
            {"type": "function", "function": {"name": "search"}}, {"type": "function", "function": {"name": "get_weather"}}]}});
        assert_eq!(sent(allowed), vec!["get_weather", "search"]);
        // A function that is not among the tools is a mistake worth saying.
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools,
                         "tool_choice": {"type": "function", "function": {"name": "get_stock"}}});
        match chat_request(&obj(req)) {
            Err(RouterError::BadRequest { message, param: Some(p) }) => {
                assert_eq!(p, "tool_choice");
                assert!(message.contains("get_stock"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_openai_requests_name_the_field() {
        let cases = [
            (json!({"messages": [{"role": "user", "content": "x"}]}), "model"),
            (json!({"model": "m", "messages": []}), "messages"),
            (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}), "n"),
            (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}), "max_tokens"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
                "response_format",
            ),
        ];
        for (req, param) in cases {
            match chat_request(&obj(req.clone())) {
                Err(RouterError::BadRequest { param: Some(p), .. }) => assert_eq!(p, param, "{req}"),
                other => panic!("{req}: {other:?}"),
            }
        }
    }

    #[test]
    fn answers_and_tool_calls_come_back_in_openai_shape() {
        let cx = OpenAiContext { kind: OpenAiKind::Chat, id: "chatcmpl-1".into(), created: 1, include_usage: false };
        let answer = json!({"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
                            "done": true, "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 5});
        let out = openai_response(&cx, "m", &answer);
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(out["usage"]["total_tokens"], 15);
    }

    #[test]
    fn buffered_answers_are_written_as_the_general_path_writes_them() {
        let general = |cx: &OpenAiContext, answer: &[u8]| {
            serde_json::to_vec(&openai_response(cx, "m", &serde_json::from_slice(answer).unwrap())).unwrap()
        };
        let chat = OpenAiContext { kind: OpenAiKind::Chat, id: "chatcmpl-1".into(), created: 7, include_usage: false };
        let completion = OpenAiContext { kind: OpenAiKind::Completion, ..chat.clone() };
        // Taken by the plain path: text, escapes, thinking, a length stop, counts missing, odd or huge.
        let plain: [&[u8]; 8] = [
            br#"{"model":"m","message":{"role":"assistant","content":"Hello"},"done":true,"done_reason":"stop","prompt_eval_count":10,"eval_count":5}"#,
            br#"{"model":"m","message":{"role":"assistant","content":"Say \"hi\"\n\u00e9 \ud83d\ude00"},"done":true}"#,
            br#"{"model":"m","message":{"role":"assistant","content":"","thinking":"hmm"},"done_reason":"length","eval_count":3}"#,
            br#"{"model":"m","message":{"role":"assistant","content":"x","thinking":""},"prompt_eval_count":"12","eval_count":-1}"#,
            br#"{"model":"m","message":null,"done":true,"prompt_eval_count":1.5}"#,
            br#"{"model":"m","done":true,"prompt_eval_count":18446744073709551615,"eval_count":2}"#,
            br#"{"model":"m","response":"Once upon","done_reason":"length","prompt_eval_count":4,"eval_count":2}"#,
            br#"{}"#,
        ];
        for answer in plain {
            for cx in [&chat, &completion] {
                let fast = plain_response(cx, "m", answer);
                assert!(fast.is_some(), "{}", String::from_utf8_lossy(answer));
                assert_eq!(fast, Some(general(cx, answer)), "{}", String::from_utf8_lossy(answer));
                assert_eq!(openai_response_bytes(cx, "m", answer).ok(), fast);
            }
        }
        // Sent down the general path: tool calls, and fields of another type than Ollama sends.
        let other: [&[u8]; 6] = [
            br#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":true}"#,
            br#"{"model":"m","message":{"role":"assistant","content":42},"done":true}"#,
            br#"{"model":"m","message":{"content":"x"},"done_reason":7}"#,
            br#"{"model":"m","message":"text","response":["x"]}"#,
            br#"{"model":"m","message":["hi", "hmm"],"done":true}"#,
            br#" [{"content":"hi"}, "x", "stop"]"#,
        ];
        for answer in other {
            assert!(plain_response(&chat, "m", answer).is_none(), "{}", String::from_utf8_lossy(answer));
            assert_eq!(openai_response_bytes(&chat, "m", answer).unwrap(), general(&chat, answer));
        }
        assert!(openai_response_bytes(&chat, "m", b"{not json").is_err());
    }

    #[test]
    fn streams_become_sse_with_role_first_finish_usage_and_done() {
        let cx = OpenAiContext { kind: OpenAiKind::Chat, id: "chatcmpl-1".into(), created: 1, include_usage: true };
        let mut t = SseTranslator::new(cx, "m");
        let mut out = BytesMut::new();
        t.line(br#"{"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}"#, &mut out);
        t.line(br#"{"model":"m","message":{"role":"assistant","content":"lo"},"done":false}"#, &mut out);
        t.line(br#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":3,"eval_count":2}"#, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 5, "{text}");
        let first: Value = serde_json::from_str(events[0].trim_start_matches("data: ")).unwrap();
        assert_eq!(first["choices"][0]["delta"], json!({"role": "assistant", "content": "Hel"}));
        let second: Value = serde_json::from_str(events[1].trim_start_matches("data: ")).unwrap();
        assert_eq!(second["choices"][0]["delta"], json!({"content": "lo"}));
        let finish: Value = serde_json::from_str(events[2].trim_start_matches("data: ")).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        let usage: Value = serde_json::from_str(events[3].trim_start_matches("data: ")).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 2);
        assert_eq!(events[4], "data: [DONE]");
        assert!(t.finished);
    }

    #[test]
    fn log_probabilities_are_asked_of_ollama_and_shown_in_openai_shape() {
        let question = json!([{"role": "user", "content": "x"}]);
        let (body, _) =
            chat_request(&obj(json!({"model": "m", "messages": question, "logprobs": true, "top_logprobs": 3})))
                .unwrap();
        assert_eq!((body["logprobs"].as_bool(), body["top_logprobs"].as_u64()), (Some(true), Some(3)));
        let (body, _) = chat_request(&obj(json!({"model": "m", "messages": question, "logprobs": false}))).unwrap();
        assert!(body.get("logprobs").is_none());
        let (body, _) = completion_request(&obj(json!({"model": "m", "prompt": "p", "logprobs": 0}))).unwrap();
        assert_eq!((body["logprobs"].as_bool(), body.get("top_logprobs")), (Some(true), None));
        for (req, param) in [
            (json!({"model": "m", "messages": question, "logprobs": "yes"}), "logprobs"),
            (json!({"model": "m", "messages": question, "logprobs": true, "top_logprobs": 21}), "top_logprobs"),
        ] {
            match chat_request(&obj(req.clone())) {
                Err(RouterError::BadRequest { param: Some(p), .. }) => assert_eq!(p, param, "{req}"),
                other => panic!("{req}: {other:?}"),
            }
        }
        assert!(completion_request(&obj(json!({"model": "m", "prompt": "p", "logprobs": 21}))).is_err());
        // Accepted as clients send them: top_logprobs without logprobs asks for nothing (as Ollama reads it), a
        // chat's logprobs as 0 or 1, a completion's as a flag.
        let (body, _) = chat_request(&obj(json!({"model": "m", "messages": question, "top_logprobs": 0}))).unwrap();
        assert!(body.get("logprobs").is_none() && body.get("top_logprobs").is_none());
        let (body, _) = chat_request(&obj(json!({"model": "m", "messages": question, "logprobs": 1}))).unwrap();
        assert_eq!(body["logprobs"], true);
        let (body, _) = completion_request(&obj(json!({"model": "m", "prompt": "p", "logprobs": true}))).unwrap();
        assert_eq!(body["logprobs"], true);
        let (body, _) = completion_request(&obj(json!({"model": "m", "prompt": "p", "logprobs": false}))).unwrap();
        assert!(body.get("logprobs").is_none());

        let entries = json!([
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.25}]},
            {"token": " é", "logprob": -1.0}
        ]);
        let answer = json!({"message": {"role": "assistant", "content": "Hi é"}, "done": true, "done_reason": "stop",
                            "logprobs": entries});
        let chat = OpenAiContext { kind: OpenAiKind::Chat, id: "chatcmpl-1".into(), created: 1, include_usage: false };
        let bytes = openai_response_bytes(&chat, "m", answer.to_string().as_bytes()).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let content = &v["choices"][0]["logprobs"]["content"];
        assert_eq!(
            content[0],
            json!({"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                                      "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}]})
        );
        assert_eq!(content[1]["bytes"], json!(" é".as_bytes()), "bytes from the token when Ollama sends none");
        assert_eq!(content[1]["top_logprobs"], json!([]));
        let completion = OpenAiContext { kind: OpenAiKind::Completion, ..chat.clone() };
        let mut generated = answer.clone();
        generated["response"] = json!("Hi é");
        let v = openai_response(&completion, "m", &generated);
        assert_eq!(
            v["choices"][0]["logprobs"],
            json!({"tokens": ["Hi", " é"], "token_logprobs": [-0.25, -1.0],
            "top_logprobs": [{"Hi": -0.25}, {}], "text_offset": [0, 2]})
        );

        // Streamed: a chunk with log probabilities leaves the fast path and carries them; offsets run on.
        let mut t = SseTranslator::new(chat, "m");
        let mut out = BytesMut::new();
        t.line(br#"{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false,"logprobs":[{"token":"Hi","logprob":-0.25}]}"#, &mut out);
        let first: Value =
            serde_json::from_str(String::from_utf8(out.to_vec()).unwrap().trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(first["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
        let mut t = SseTranslator::new(completion, "m");
        let mut out = BytesMut::new();
        t.line(br#"{"model":"m","response":"Hi","done":false,"logprobs":[{"token":"Hi","logprob":-0.25}]}"#, &mut out);
        let second = r#"{"model":"m","response":" é","done":false,"logprobs":[{"token":" é","logprob":-1.0}]}"#;
        t.line(second.as_bytes(), &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let second: Value =
            serde_json::from_str(text.split("\n\n").nth(1).unwrap().trim_start_matches("data: ")).unwrap();
        assert_eq!(second["choices"][0]["logprobs"]["text_offset"], json!([2]));
    }

    #[test]
    fn the_token_fast_path_writes_what_the_general_path_writes() {
        let lines: [&[u8]; 10] = [
            br#"{"model":"m","message":{"role":"assistant","content":""},"done":false}"#,
            br#"{"model":"m","message":["assistant","in an array"],"done":false}"#,
            br#"[{"role":"assistant","content":"a chunk that is an array"},false]"#,
            br#"{"model":"m","message":{"role":"assistant","content":"Say \"hi\"\n\u00e9"},"done":false}"#,
            br#"{"model":"m","message":{"role":"assistant","content":"","thinking":"hmm"},"done":false}"#,
            br#"{"model":"m","message":{"role":"assistant","content":""},"done":false}"#,
            br#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":false}"#,
            br#"{"model":"m","message":{"role":"assistant","content":"x"},"done":false}"#,
            br#"{"error":"out of memory"}"#,
            br#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":2}"#,
        ];
        let events = |out: &BytesMut| -> Vec<Value> {
            String::from_utf8(out.to_vec())
                .unwrap()
                .split("\n\n")
                .filter(|e| !e.is_empty() && *e != "data: [DONE]")
                .map(|e| serde_json::from_str(e.trim_start_matches("data: ")).unwrap())
                .collect()
        };
        // Every prefix of the sequence, so that each line is seen both before and after the role went out.
        for start in 0..lines.len() {
            let cx = OpenAiContext { kind: OpenAiKind::Chat, id: "chatcmpl-1".into(), created: 1, include_usage: true };
            let (mut fast, mut general) = (SseTranslator::new(cx.clone(), "m"), SseTranslator::new(cx, "m"));
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            for line in &lines[start..] {
                fast.line(line, &mut a);
                general.general_line(line, &mut b);
            }
            assert_eq!(events(&a), events(&b), "from line {start}");
            assert!(!events(&a).is_empty());
        }
    }

    #[test]
    fn embeddings_can_be_base64() {
        let answer = br#"{"embeddings": [[1.0, 0.0]], "prompt_eval_count": 2}"#;
        let out: Value = serde_json::from_slice(&embeddings_response("e", answer, true).unwrap()).unwrap();
        let encoded = out["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), 0.0f32.to_le_bytes()].concat());
    }

    #[test]
    fn embeddings_are_an_openai_list_with_the_vectors_as_ollama_wrote_them() {
        let answer = br#"{"model":"e","embeddings":[[0.5,-0.00125],[2,3]],"total_duration":9,"prompt_eval_count":4}"#;
        let bytes = embeddings_response("nomic \"x\"", answer, false).unwrap();
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        let expected = json!({
            "object": "list",
            "data": [
                {"object": "embedding", "embedding": [0.5, -0.00125], "index": 0},
                {"object": "embedding", "embedding": [2, 3], "index": 1},
            ],
            "model": "nomic \"x\"",
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        });
        assert_eq!(out, expected);
        // The same bytes the general JSON writer would give.
        assert_eq!(bytes, serde_json::to_vec(&expected).unwrap());
        // No vectors is an empty list; an answer that is not Ollama's shape is an error, not an empty list.
        let empty: Value = serde_json::from_slice(&embeddings_response("e", b"{}", false).unwrap()).unwrap();
        assert_eq!(empty["data"], json!([]));
        assert!(embeddings_response("e", br#"{"embeddings": "no"}"#, false).is_err());
        assert!(embeddings_response("e", br#"{"embeddings": [["x"]]}"#, true).is_err());
    }
}
