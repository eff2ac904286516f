//! Ollama's native shapes <-> an OpenAI-compatible backend's.
//!
//! The router works in Ollama's native request and answer shapes (the OpenAI surface translates into them at its
//! edge, `translate`); a model on an `openai` backend is reached by translating the native request into OpenAI's API
//! here, and its answer (a JSON object, or an SSE stream) back into native JSON and NDJSON. Only what the native
//! request said is sent: load-time options and `keep_alive` mean nothing to such a server and are left out.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

/// Which OpenAI endpoint a native request becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `/v1/chat/completions`, answered in `/api/chat`'s shape.
    Chat,
    /// `/v1/chat/completions`, answered in `/api/generate`'s shape (a templated generate, as Ollama does).
    ChatAsGenerate,
    /// `/v1/completions`, answered in `/api/generate`'s shape (raw prompts, suffixes, OpenAI completions).
    Completion,
    /// llama.cpp's `/infill`, answered in `/api/generate`'s shape: fill-in-the-middle on a server whose
    /// `/v1/completions` ignores a `suffix` (llama-server's does; older releases refuse it).
    Infill,
    /// `/v1/embeddings`, answered in `/api/embed`'s shape.
    Embed,
    /// `/v1/embeddings`, answered in the legacy `/api/embeddings` shape.
    LegacyEmbedding,
}

impl Call {
    pub fn path(self) -> &'static str {
        match self {
            Call::Chat | Call::ChatAsGenerate => "/v1/chat/completions",
            Call::Completion => "/v1/completions",
            Call::Infill => "/infill",
            Call::Embed | Call::LegacyEmbedding => "/v1/embeddings",
        }
    }

    fn generates(self) -> bool {
        matches!(self, Call::ChatAsGenerate | Call::Completion | Call::Infill)
    }
}

/// Sampling options of OpenAI's own API.
const SAMPLING: [&str; 5] = ["temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"];
/// Sampling options local engines read beyond OpenAI's (llama.cpp, vLLM); OpenAI's API refuses them.
const SAMPLING_EXTENDED: [&str; 3] = ["top_k", "min_p", "repeat_penalty"];

/// The OpenAI request for a native body, sent as model `id`. `extended` adds the sampling options only local
/// engines read (sent to free backends; a priced provider may refuse unknown fields).
pub fn request(call: Call, native: &Map<String, Value>, id: &str, stream: bool, extended: bool) -> Value {
    let mut out = Map::new();
    out.insert("model".into(), json!(id));
    match call {
        Call::Embed | Call::LegacyEmbedding => {
            let input = native.get("input").or_else(|| native.get("prompt")).cloned().unwrap_or(json!(""));
            out.insert("input".into(), input);
            if let Some(d) = native.get("dimensions").filter(|d| d.is_u64()) {
                out.insert("dimensions".into(), d.clone());
            }
            out.insert("encoding_format".into(), json!("float"));
            return Value::Object(out);
        }
        Call::Chat => {
            out.insert("messages".into(), Value::Array(messages(native)));
        }
        Call::ChatAsGenerate => {
            let mut list = Vec::new();
            if let Some(system) = native.get("system").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                list.push(json!({"role": "system", "content": system}));
            }
            let prompt = native.get("prompt").and_then(Value::as_str).unwrap_or_default();
            list.push(user_content(prompt, native.get("images")));
            out.insert("messages".into(), Value::Array(list));
        }
        Call::Completion => {
            let mut prompt = native.get("prompt").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(system) = native.get("system").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                prompt = format!("{system}\n\n{prompt}");
            }
            out.insert("prompt".into(), json!(prompt));
            // Only a suffix that asks for something: older llama-server releases refuse the field whatever its value.
            if let Some(suffix) = native.get("suffix").filter(|s| s.as_str().is_some_and(|s| !s.is_empty())) {
                out.insert("suffix".into(), suffix.clone());
            }
        }
        Call::Infill => {
            // The server wraps these in the model's own fill-in-the-middle tokens (a system prompt has no place).
            let prefix = native.get("prompt").and_then(Value::as_str).unwrap_or_default();
            let suffix = native.get("suffix").and_then(Value::as_str).unwrap_or_default();
            out.insert("input_prefix".into(), json!(prefix));
            out.insert("input_suffix".into(), json!(suffix));
        }
    }
    if let Some(tools) = native.get("tools").filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        out.insert("tools".into(), tools.clone());
    }
    match native.get("format").filter(|_| call != Call::Infill) {
        Some(Value::String(s)) if s == "json" => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(schema @ Value::Object(_)) => {
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
            );
        }
        _ => {}
    }
    if let Some(options) = native.get("options").and_then(Value::as_object) {
        let extra: &[&str] = if extended { &SAMPLING_EXTENDED } else { &[] };
        for key in SAMPLING.iter().chain(extra) {
            if let Some(v) = options.get(*key).filter(|v| v.is_number()) {
                out.insert((*key).into(), v.clone());
            }
        }
        if let Some(n) = options.get("num_predict").and_then(Value::as_i64).filter(|n| *n > 0) {
            out.insert("max_tokens".into(), json!(n));
        }
        match options.get("stop") {
            // llama.cpp's own endpoints read a list only.
            Some(Value::String(s)) if call == Call::Infill => {
                out.insert("stop".into(), json!([s]));
            }
            Some(stop) if stop.is_array() || stop.is_string() => {
                out.insert("stop".into(), stop.clone());
            }
            _ => {}
        }
    }
    // Log probabilities: a chat takes a flag and a count of alternatives, a legacy completion the count alone. At
    // least one alternative is asked for (llama.cpp reads 0 as "none at all", and no count as 20); the answer is
    // trimmed to what the client asked ([`trim_logprobs`]). OpenAI's legacy completions take at most 5.
    if let Some(top) = logprobs_top(native) {
        let top = top.max(1) as u64;
        match call {
            Call::Chat | Call::ChatAsGenerate => {
                out.insert("logprobs".into(), json!(true));
                out.insert("top_logprobs".into(), json!(top));
            }
            Call::Completion => {
                out.insert("logprobs".into(), json!(if extended { top } else { top.min(5) }));
            }
            Call::Infill | Call::Embed | Call::LegacyEmbedding => {}
        }
    }
    // Ollama's `think`: a level is OpenAI's `reasoning_effort` (which vLLM and llama.cpp read too); `false` turns
    // thinking off in the chat templates of local engines (Qwen3's and DeepSeek's read `enable_thinking`), a field a
    // priced provider may refuse.
    if !matches!(call, Call::Completion | Call::Infill) {
        match native.get("think") {
            Some(Value::String(level)) if !level.is_empty() => {
                out.insert("reasoning_effort".into(), json!(if level == "max" { "high" } else { level.as_str() }));
            }
            Some(Value::Bool(false)) if extended => {
                out.insert("chat_template_kwargs".into(), json!({"enable_thinking": false}));
            }
            _ => {}
        }
    }
    out.insert("stream".into(), json!(stream));
    // llama.cpp's own endpoints report their counts and timings in every final answer.
    if stream && call != Call::Infill {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(out)
}

/// Request fields a server was seen to refuse, learned per model from its own 400s (OpenAI's reasoning models
/// refuse `max_tokens` and want `max_completion_tokens`, and refuse sampling options they do not take).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Send the output limit as `max_completion_tokens` instead of `max_tokens`.
    pub completion_tokens: bool,
    /// Top-level fields to leave out.
    pub dropped: Vec<String>,
}

impl Quirks {
    /// These quirks with `other`'s added (what another request learned about the same model meanwhile).
    pub fn merged(mut self, other: &Quirks) -> Quirks {
        for field in &other.dropped {
            if !self.dropped.contains(field) {
                self.dropped.push(field.clone());
            }
        }
        self
    }

    /// Applies these quirks to an OpenAI request built by [`request`].
    pub fn apply(&self, wire: &mut Value) {
        let Some(out) = wire.as_object_mut() else { return };
        if self.completion_tokens
            && let Some(n) = out.remove("max_tokens")
        {
            out.insert("max_completion_tokens".into(), n);
        }
        for key in &self.dropped {
            out.remove(key);
        }
    }

    /// Learns from a 400's message what `wire` carried that the server refuses. False when the message names
    /// nothing this request sent that could be left out or renamed (then sending it again would fail the same way).
    pub fn learn(&mut self, wire: &Value, message: &str) -> bool {
        let Some(sent) = wire.as_object() else { return false };
        let mut learned = false;
        for field in refused_fields(message) {
            learned |= self.learn_field(sent, field);
        }
        learned
    }

    fn learn_field(&mut self, sent: &Map<String, Value>, field: &str) -> bool {
        // The output limit is renamed, never dropped: either name, whichever the server takes.
        match field {
            "max_tokens" if sent.contains_key(field) && !self.completion_tokens => {
                self.completion_tokens = true;
                return true;
            }
            "max_completion_tokens" if sent.contains_key(field) && self.completion_tokens => {
                self.completion_tokens = false;
                return true;
            }
            "max_tokens" | "max_completion_tokens" => return false,
            _ => {}
        }
        // Only a sampling option or a hint the answer does not depend on: never what carries the request or shapes
        // its answer (messages, `stream`, tools, `response_format`, `suffix`, `dimensions`). Without such a field the
        // request fails, and `auto` moves on.
        let droppable = SAMPLING.contains(&field)
            || SAMPLING_EXTENDED.contains(&field)
            || ["stop", "stream_options", "reasoning_effort", "chat_template_kwargs", "encoding_format"]
                .contains(&field);
        if !droppable || !sent.contains_key(field) || self.dropped.iter().any(|d| d == field) {
            return false;
        }
        self.dropped.push(field.to_string());
        true
    }
}

/// The request fields a server's error message says it refuses: OpenAI's "Unsupported parameter: 'x' ..." and
/// "Unsupported value: 'x' does not support ...", "Unrecognized request argument supplied: x", and every top-level
/// field of Google's `Unknown name "x": Cannot find field.` (Gemini's OpenAI-compatible endpoint lists them all;
/// a field holding an object is named `Unknown name "x" at 'x'`, a nested one `... at 'tools[0]...'`).
fn refused_fields(message: &str) -> Vec<&str> {
    let lead = "Unknown name \"";
    let mut fields = Vec::new();
    let mut rest = message;
    while let Some(at) = rest.find(lead) {
        rest = &rest[at + lead.len()..];
        let Some(end) = rest.find('"') else { break };
        let (name, after) = (&rest[..end], &rest[end + 1..]);
        let top_level = after.starts_with(':')
            || after.strip_prefix(" at '").is_some_and(|a| a.starts_with(name) && a[name.len()..].starts_with('\''));
        if top_level && is_field(name) && !fields.contains(&name) {
            fields.push(name);
        }
        rest = after;
    }
    if !fields.is_empty() {
        return fields;
    }
    for lead in ["Unsupported parameter: '", "Unsupported value: '"] {
        if let Some(at) = message.find(lead) {
            let rest = &message[at + lead.len()..];
            return rest.find('\'').map(|end| &rest[..end]).filter(|f| is_field(f)).into_iter().collect();
        }
    }
    let lead = "Unrecognized request argument supplied: ";
    let Some(at) = message.find(lead) else { return fields };
    let rest = &message[at + lead.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|f| is_field(f)).into_iter().collect()
}

fn is_field(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A user message, with images as data URLs when there are any.
fn user_content(text: &str, images: Option<&Value>) -> Value {
    let images: Vec<&str> = images.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if images.is_empty() {
        return json!({"role": "user", "content": text});
    }
    let mut parts = vec![json!({"type": "text", "text": text})];
    for image in images {
        let url = if image.starts_with("data:") { image.to_string() } else { format!("data:image/png;base64,{image}") };
        parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    json!({"role": "user", "content": parts})
}

/// Native chat messages as OpenAI messages: images as content parts, tool calls with ids (native calls have
/// none: `call_N` in order) and arguments as JSON strings, tool results pointing at the call they answer.
fn messages(native: &Map<String, Value>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut calls = 0usize;
    let mut pending: std::collections::VecDeque<(String, String)> = std::collections::VecDeque::new();
    let turns = native.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, m) in turns.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
        match role {
            "user" => out.push(user_content(content, m.get("images"))),
            "assistant" => {
                let list = m.get("tool_calls").and_then(Value::as_array).filter(|l| !l.is_empty());
                // A last turn with neither text nor calls (a replayed reasoning item's, whose thinking is not sent
                // here) says nothing such a server reads, and some refuse an empty last assistant turn. (Earlier
                // ones stay: dropping them would put two user turns together, which strict templates refuse.)
                if content.is_empty() && list.is_none() && i + 1 == turns.len() {
                    continue;
                }
                let mut msg = json!({"role": "assistant", "content": content});
                if let Some(list) = list {
                    let mut wire = Vec::new();
                    for call in list {
                        let f = call.get("function").cloned().unwrap_or(json!({}));
                        let name = f.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                        let arguments = match f.get("arguments") {
                            Some(Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => "{}".into(),
                        };
                        let id = call
                            .get("id")
                            .and_then(Value::as_str)
                            .map_or_else(|| format!("call_{calls}"), str::to_string);
                        calls += 1;
                        pending.push_back((id.clone(), name.clone()));
                        wire.push(
                            json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}),
                        );
                    }
                    msg["tool_calls"] = Value::Array(wire);
                }
                out.push(msg);
            }
            "tool" => {
                // The call it answers: by its id when the client sent one, else the oldest open call of its name.
                let by_id = m.get("tool_call_id").and_then(Value::as_str);
                let named = m.get("tool_name").and_then(Value::as_str);
                let position = by_id
                    .and_then(|i| pending.iter().position(|(id, _)| id == i))
                    .or_else(|| named.and_then(|n| pending.iter().position(|(_, name)| name == n)))
                    .unwrap_or(0);
                let id = pending.remove(position).map_or_else(|| format!("call_{calls}"), |(id, _)| id);
                out.push(json!({"role": "tool", "content": content, "tool_call_id": id}));
            }
            "system" | "developer" => out.push(json!({"role": "system", "content": content})),
            // A role OpenAI's API does not know (Ollama takes any) is sent as the user's words, which it was read as.
            _ => out.push(user_content(content, m.get("images"))),
        }
    }
    out
}

/// Token counts and durations a backend reported for one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Prompt processing, from llama.cpp's `timings` (0 when the server does not say).
    pub prompt_ns: u64,
    /// Prompt tokens processed (llama.cpp's `timings.prompt_n`: without a cached prefix), when the server says.
    pub prompt_evaluated: Option<u64>,
    /// Generation, from `timings`.
    pub eval_ns: u64,
}

impl Usage {
    /// Reads OpenAI's `usage` and llama.cpp's `timings` from an answer or a stream chunk (fields not present keep
    /// their value).
    fn absorb(&mut self, v: &Value) {
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            if let Some(n) = u.get("prompt_tokens").and_then(Value::as_u64) {
                self.prompt_tokens = n;
            }
            if let Some(n) = u.get("completion_tokens").and_then(Value::as_u64) {
                self.output_tokens = n;
            }
        }
        if let Some(t) = v.get("timings").filter(|t| t.is_object()) {
            let ms = |k: &str| t.get(k).and_then(Value::as_f64).map(|ms| (ms.max(0.0) * 1e6) as u64);
            if let Some(ns) = ms("prompt_ms") {
                self.prompt_ns = ns;
            }
            if let Some(ns) = ms("predicted_ms") {
                self.eval_ns = ns;
            }
            // Tokens the server actually processed (a cached prefix is not), which `prompt_ms` is the time of;
            // `usage.prompt_tokens` counts the cached ones too.
            if let Some(n) = t.get("prompt_n").and_then(Value::as_u64) {
                self.prompt_evaluated = Some(n);
            }
            if self.output_tokens == 0
                && let Some(n) = t.get("predicted_n").and_then(Value::as_u64)
            {
                self.output_tokens = n;
            }
        }
    }

    /// Reads the counts llama.cpp's own endpoints (`/infill`) report at the top level, then its `timings`.
    fn absorb_llama(&mut self, v: &Value) {
        if let Some(n) = v.get("tokens_evaluated").and_then(Value::as_u64) {
            self.prompt_tokens = n;
        }
        if let Some(n) = v.get("tokens_predicted").and_then(Value::as_u64) {
            self.output_tokens = n;
        }
        self.absorb(v);
    }
}

/// OpenAI's `finish_reason` for the final answer of one of llama.cpp's own endpoints (`stop_type`).
fn llama_finish(v: &Value) -> &'static str {
    match v.get("stop_type").and_then(Value::as_str) {
        Some("limit") => "length",
        _ => "stop",
    }
}

/// Ollama's `done_reason` for an OpenAI `finish_reason`.
fn done_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "length",
        _ => "stop",
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Adds the final chunk's fields: `done`, `done_reason`, counts and durations.
fn finish_fields(out: &mut Map<String, Value>, finish: Option<&str>, usage: &Usage, total_ns: u64) {
    out.insert("done".into(), json!(true));
    out.insert("done_reason".into(), json!(done_reason(finish)));
    out.insert("total_duration".into(), json!(total_ns.max(usage.prompt_ns + usage.eval_ns)));
    out.insert("load_duration".into(), json!(0));
    // As Ollama counts it: the prompt tokens evaluated for this answer (a cached prefix is not).
    out.insert("prompt_eval_count".into(), json!(usage.prompt_evaluated.unwrap_or(usage.prompt_tokens)));
    out.insert("prompt_eval_duration".into(), json!(usage.prompt_ns));
    out.insert("eval_count".into(), json!(usage.output_tokens));
    // A server that reports no timings (OpenAI's API has none): the generation took at most the time Switchyard
    // waited for it, which is what the live speed averages then learn.
    let eval_ns = if usage.eval_ns == 0 && usage.output_tokens > 0 { total_ns } else { usage.eval_ns };
    out.insert("eval_duration".into(), json!(eval_ns));
}

/// Native tool calls from OpenAI's (arguments parsed from their JSON string; an unparsable string is kept).
fn native_tool_calls(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| {
            let f = c.get("function").cloned().unwrap_or(json!({}));
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => serde_json::from_str::<Value>(s).unwrap_or_else(|_| json!(s)),
                Some(v) => v.clone(),
                None => json!({}),
            };
            json!({"function": {"name": f.get("name").cloned().unwrap_or(json!("")), "arguments": arguments}})
        })
        .collect()
}

/// The error a whole answer carries instead of choices or vectors, if any. Some providers (OpenRouter) answer `200`
/// with `{"error": {...}}` when a request fails after it was accepted; that is a failed answer, not an empty one.
pub fn answer_error(v: &Value) -> Option<String> {
    let error = v.get("error").filter(|e| !e.is_null())?;
    if v.get("choices").is_some() || v.get("data").is_some() {
        return None;
    }
    Some(error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_string))
}

/// A whole OpenAI answer in the native shape of `call`, and the usage it reported.
pub fn answer(call: Call, model: &str, v: &Value, total_ns: u64) -> (Value, Usage) {
    let mut usage = Usage::default();
    if call == Call::Infill {
        usage.absorb_llama(v);
    } else {
        usage.absorb(v);
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    match call {
        Call::Embed | Call::LegacyEmbedding => {
            let vectors: Vec<Value> = v
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|d| d.get("embedding").cloned().unwrap_or(json!([])))
                .collect();
            if call == Call::LegacyEmbedding {
                return (json!({"embedding": vectors.into_iter().next().unwrap_or(json!([]))}), usage);
            }
            out.insert("embeddings".into(), Value::Array(vectors));
            out.insert("total_duration".into(), json!(total_ns));
            out.insert("load_duration".into(), json!(0));
            out.insert("prompt_eval_count".into(), json!(usage.prompt_tokens));
            return (Value::Object(out), usage);
        }
        _ => {}
    }
    out.insert("created_at".into(), json!(now()));
    if call == Call::Infill {
        out.insert("response".into(), v.get("content").cloned().filter(Value::is_string).unwrap_or(json!("")));
        finish_fields(&mut out, Some(llama_finish(v)), &usage, total_ns);
        return (Value::Object(out), usage);
    }
    let choice = v.get("choices").and_then(|c| c.get(0)).cloned().unwrap_or(json!({}));
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    if let Some(entries) = native_logprobs(choice.get("logprobs")) {
        out.insert("logprobs".into(), entries);
    }
    if call == Call::Completion {
        out.insert("response".into(), choice.get("text").cloned().unwrap_or(json!("")));
    } else {
        let message = choice.get("message").cloned().unwrap_or(json!({}));
        let content = message.get("content").and_then(Value::as_str).unwrap_or_default();
        let thinking = message
            .get("reasoning_content")
            .or_else(|| message.get("reasoning"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        if call.generates() {
            out.insert("response".into(), json!(content));
            if let Some(t) = thinking {
                out.insert("thinking".into(), json!(t));
            }
        } else {
            let mut msg = json!({"role": "assistant", "content": content});
            if let Some(t) = thinking {
                msg["thinking"] = json!(t);
            }
            if let Some(calls) = message.get("tool_calls").and_then(Value::as_array).filter(|c| !c.is_empty()) {
                msg["tool_calls"] = Value::Array(native_tool_calls(calls));
            }
            out.insert("message".into(), msg);
        }
    }
    finish_fields(&mut out, finish, &usage, total_ns);
    (Value::Object(out), usage)
}

/// A tool call being assembled from stream deltas.
#[derive(Debug, Default, Clone)]
struct PartialCall {
    name: String,
    arguments: String,
}

/// Rewrites an OpenAI SSE stream into native NDJSON lines as its events complete.
#[derive(Debug)]
pub struct SseToNative {
    call: Call,
    model: String,
    partial: Vec<u8>,
    calls: Vec<PartialCall>,
    finish: Option<String>,
    usage: Usage,
    started: std::time::Instant,
    done: bool,
    /// A native line was written already.
    started_output: bool,
    /// The log probabilities of the event being written.
    logprobs: Option<Value>,
    /// Alternatives per token the client asked for.
    top_logprobs: usize,
}

impl SseToNative {
    pub fn new(call: Call, model: impl Into<String>) -> Self {
        Self {
            call,
            model: model.into(),
            partial: Vec::new(),
            calls: Vec::new(),
            finish: None,
            usage: Usage::default(),
            started: std::time::Instant::now(),
            done: false,
            started_output: false,
            logprobs: None,
            top_logprobs: 20,
        }
    }

    /// Trims each token's alternatives to `top` (see [`trim_logprobs`]).
    pub fn with_top_logprobs(mut self, top: usize) -> Self {
        self.top_logprobs = top;
        self
    }

    /// Adds an event's log probabilities to those of the line being written.
    fn add_logprobs(&mut self, entries: Option<Value>) {
        match (&mut self.logprobs, entries) {
            (Some(Value::Array(held)), Some(Value::Array(more))) => held.extend(more),
            (held @ None, Some(more)) => *held = Some(more),
            _ => {}
        }
    }

    /// True once the final native chunk was written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Converts a chunk of SSE bytes; returns the native lines it completed (possibly none).
    pub fn push(&mut self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(pos);
            rest = &after[1..];
            if self.partial.is_empty() {
                self.line(line, &mut out);
            } else {
                self.partial.extend_from_slice(line);
                let full = std::mem::take(&mut self.partial);
                self.line(&full, &mut out);
            }
        }
        self.partial.extend_from_slice(rest);
        out.freeze()
    }

    /// At the end of the body: the final chunk when the server finished without `[DONE]`.
    pub fn end(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest, &mut out);
        }
        if !self.done && self.finish.is_some() {
            self.final_chunk(&mut out);
        }
        out.freeze()
    }

    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(payload) = line.strip_prefix(b"data:") else { return };
        let payload = payload.trim_ascii();
        if self.done {
            return;
        }
        if payload == b"[DONE]" {
            self.final_chunk(out);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(payload) else { return };
        if let Some(e) = v.get("error") {
            let message = e.get("message").and_then(Value::as_str).map_or_else(|| e.to_string(), str::to_string);
            write_line(out, &json!({"error": message}));
            self.done = true;
            return;
        }
        if self.call == Call::Infill {
            self.usage.absorb_llama(&v);
            // llama.cpp's own stream: each event carries `content`, the last one `"stop": true` (and no `[DONE]`).
            let text = v.get("content").and_then(Value::as_str).unwrap_or_default().to_string();
            self.content_chunk(&text, None, out);
            if v.get("stop").and_then(Value::as_bool) == Some(true) {
                self.finish = Some(llama_finish(&v).to_string());
                self.final_chunk(out);
            }
            return;
        }
        self.usage.absorb(&v);
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else { return };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        let logprobs = native_logprobs(choice.get("logprobs"));
        let (text, thinking) = if self.call == Call::Completion {
            (choice.get("text").and_then(Value::as_str).unwrap_or_default(), None)
        } else {
            let delta = choice.get("delta").cloned().unwrap_or(json!({}));
            for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let index = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if index >= 128 {
                    continue;
                }
                if self.calls.len() <= index {
                    self.calls.resize(index + 1, PartialCall::default());
                }
                let f = tc.get("function");
                if let Some(name) = f.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    self.calls[index].name.push_str(name);
                }
                if let Some(args) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str) {
                    self.calls[index].arguments.push_str(args);
                }
            }
            let content = delta.get("content").and_then(Value::as_str).unwrap_or_default().to_string();
            // Tokens that show no text here (the first one, a tool call's) go with the next line written.
            if content.is_empty() {
                self.add_logprobs(logprobs.clone());
            }
            if !self.started_output && delta.get("role").is_some() {
                // The opening event: a line at once, so that the first chunk does not wait for the first token
                // (or, for a tool call, for the whole call).
                self.started_output = true;
                self.write_chunk("", None, out);
                if content.is_empty() {
                    return;
                }
            }
            let thinking = delta
                .get("reasoning_content")
                .or_else(|| delta.get("reasoning"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if !content.is_empty() {
                self.add_logprobs(logprobs);
            }
            return self.content_chunk(&content, thinking.as_deref(), out);
        };
        let text = text.to_string();
        self.add_logprobs(logprobs);
        self.content_chunk(&text, thinking, out);
    }

    fn content_chunk(&mut self, text: &str, thinking: Option<&str>, out: &mut BytesMut) {
        if text.is_empty() && thinking.is_none() {
            return;
        }
        self.started_output = true;
        self.write_chunk(text, thinking, out);
    }

    fn write_chunk(&mut self, text: &str, thinking: Option<&str>, out: &mut BytesMut) {
        let mut chunk = json!({"model": self.model, "created_at": now()});
        if self.call.generates() {
            chunk["response"] = json!(text);
            if let Some(t) = thinking {
                chunk["thinking"] = json!(t);
            }
        } else {
            let mut msg = json!({"role": "assistant", "content": text});
            if let Some(t) = thinking {
                msg["thinking"] = json!(t);
            }
            chunk["message"] = msg;
        }
        if let Some(mut entries) = self.logprobs.take() {
            trim_logprobs(Some(&mut entries), self.top_logprobs);
            chunk["logprobs"] = entries;
        }
        chunk["done"] = json!(false);
        write_line(out, &chunk);
    }

    fn final_chunk(&mut self, out: &mut BytesMut) {
        if !self.calls.is_empty() {
            let calls: Vec<Value> = std::mem::take(&mut self.calls)
                .into_iter()
                .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            let msg = json!({"role": "assistant", "content": "", "tool_calls": native_tool_calls(&calls)});
            write_line(out, &json!({"model": self.model, "created_at": now(), "message": msg, "done": false}));
        }
        let mut last = Map::new();
        last.insert("model".into(), json!(self.model));
        last.insert("created_at".into(), json!(now()));
        if self.call.generates() {
            last.insert("response".into(), json!(""));
        } else {
            last.insert("message".into(), json!({"role": "assistant", "content": ""}));
        }
        let total = self.started.elapsed().as_nanos() as u64;
        finish_fields(&mut last, self.finish.as_deref(), &self.usage, total);
        write_line(out, &Value::Object(last));
        self.done = true;
    }
}

/// The alternatives per token a native request asks for, when it asks for log probabilities.
pub fn logprobs_top(native: &Map<String, Value>) -> Option<usize> {
    (native.get("logprobs").and_then(Value::as_bool) == Some(true))
        .then(|| native.get("top_logprobs").and_then(Value::as_u64).map_or(0, |n| n.min(20) as usize))
}

/// Keeps `top` alternatives in each of a native answer's `logprobs` entries (none, and no field, for 0), as Ollama
/// answers.
pub fn trim_logprobs(entries: Option<&mut Value>, top: usize) {
    for entry in entries.and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(entry) = entry.as_object_mut() else { continue };
        if top == 0 {
            entry.remove("top_logprobs");
        } else if let Some(Value::Array(alternatives)) = entry.get_mut("top_logprobs") {
            alternatives.truncate(top);
        }
    }
}

/// Ollama's `logprobs` entries (`token`, `logprob`, `bytes`, `top_logprobs`) for an OpenAI choice's: a chat's
/// `content` list is already in that shape, a legacy completion's parallel lists are zipped into it.
fn native_logprobs(openai: Option<&Value>) -> Option<Value> {
    let openai = openai.filter(|l| l.is_object())?;
    if let Some(entries) = openai.get("content").and_then(Value::as_array) {
        return Some(Value::Array(entries.clone()));
    }
    let tokens = openai.get("tokens").and_then(Value::as_array)?;
    let logprobs = openai.get("token_logprobs").and_then(Value::as_array);
    let tops = openai.get("top_logprobs").and_then(Value::as_array);
    let entries = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let alternatives: Vec<Value> = tops
                .and_then(|t| t.get(i))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(t, lp)| json!({"token": t, "logprob": lp}))
                .collect();
            json!({"token": token, "logprob": logprobs.and_then(|l| l.get(i)).cloned().unwrap_or(json!(0.0)),
                   "top_logprobs": alternatives})
        })
        .collect();
    Some(Value::Array(entries))
}

fn write_line(out: &mut BytesMut, v: &Value) {
    if let Ok(bytes) = serde_json::to_vec(v) {
        out.put_slice(&bytes);
        out.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirks_learn_only_fields_the_request_sent_and_may_lose() {
        let native = json!({"messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 9, "temperature": 0.3}});
        let mut wire = request(Call::Chat, native.as_object().unwrap(), "o3", false, false);
        let mut q = Quirks::default();
        let openai = concat!(
            "Unsupported parameter: 'max_tokens' is not supported with this model. ",
            "Use 'max_completion_tokens' instead."
        );
        assert!(q.learn(&wire, openai));
        assert!(!q.learn(&wire, openai), "nothing new the second time");
        q.apply(&mut wire);
        assert_eq!(wire["max_completion_tokens"], 9);
        assert!(wire.get("max_tokens").is_none());
        assert!(q.learn(&wire, "Unsupported value: 'temperature' does not support 0.3 with this model."));
        q.apply(&mut wire);
        assert!(wire.get("temperature").is_none());
        // A field the request did not send, one that carries the request, a nested one, or no field named at all.
        assert!(!q.learn(&wire, "Unsupported parameter: 'top_k' is not supported with this model."));
        assert!(!q.learn(&wire, "Unsupported parameter: 'messages' is not supported."));
        let mut streamed = request(Call::Chat, native.as_object().unwrap(), "o1", true, false);
        assert!(!q.learn(&streamed, "Unsupported value: 'stream' does not support true with this model."));
        streamed["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        assert!(!q.learn(&streamed, "Unsupported parameter: 'tools' is not supported with this model."));
        assert!(!q.learn(&wire, "Unsupported value: 'messages[0].role' does not support 'system' with this model."));
        assert!(!q.learn(&wire, "the prompt is longer than the context"));
        // Gemini's: a top-level field is left out, a nested one is not.
        let mut penalised = wire.clone();
        penalised["frequency_penalty"] = json!(0.5);
        let nested = "Invalid JSON payload received. Unknown name \"const\" at 'tools[0].function_declarations[0]': \
                      Cannot find field.";
        let mut gemini = Quirks::default();
        assert!(!gemini.learn(&penalised, nested));
        // Every top-level field the message lists at once, an object-valued one (`at 'x'`) too, after a nested one.
        penalised["top_k"] = json!(5);
        penalised["chat_template_kwargs"] = json!({"enable_thinking": false});
        let top = "Invalid JSON payload received. Unknown name \"const\" at 'tools[0].x': Cannot find field.\n\
                   Invalid JSON payload received. Unknown name \"frequency_penalty\": Cannot find field.\n\
                   Invalid JSON payload received. Unknown name \"chat_template_kwargs\" at 'chat_template_kwargs': \
                   Cannot find field.\nInvalid JSON payload received. Unknown name \"top_k\": Cannot find field.";
        assert!(gemini.learn(&penalised, top));
        assert_eq!(gemini.dropped, vec!["frequency_penalty", "chat_template_kwargs", "top_k"]);
        gemini.apply(&mut penalised);
        for gone in ["frequency_penalty", "chat_template_kwargs", "top_k"] {
            assert!(penalised.get(gone).is_none(), "{gone}");
        }
        assert!(!q.learn(&wire, "Unrecognized request argument supplied: stream_options"), "not sent unstreamed");
        let mut streamed = request(Call::Chat, native.as_object().unwrap(), "o3", true, false);
        assert!(q.learn(&streamed, "Unrecognized request argument supplied: stream_options"));
        q.apply(&mut streamed);
        assert!(streamed.get("stream_options").is_none());
        assert_eq!(streamed["stream"], true);
        // What two requests learned at once is kept whole.
        let other = Quirks { completion_tokens: false, dropped: vec!["top_p".into(), "temperature".into()] };
        let both = q.clone().merged(&other);
        assert!(both.completion_tokens);
        assert_eq!(both.dropped, vec!["temperature", "stream_options", "top_p"]);
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn chat_requests_carry_messages_tools_format_and_sampling_but_no_load_options() {
        let native = obj(json!({
            "model": "m", "stream": true, "keep_alive": "5m", "format": {"type": "object"},
            "options": {"temperature": 0.2, "num_ctx": 8192, "num_predict": 64, "stop": ["x"], "top_k": 5},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "look", "images": ["AAAA"]},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
                {"role": "tool", "content": "42", "tool_name": "f"}
            ]
        }));
        let r = request(Call::Chat, &native, "backend-id", true, true);
        assert!(request(Call::Chat, &native, "backend-id", true, false).get("top_k").is_none(), "not to providers");
        assert_eq!(r["model"], "backend-id");
        assert_eq!(r["temperature"], 0.2);
        assert_eq!(r["top_k"], 5);
        assert_eq!(r["max_tokens"], 64);
        assert_eq!(r["stop"], json!(["x"]));
        assert!(r.get("num_ctx").is_none() && r.get("keep_alive").is_none() && r.get("options").is_none());
        assert_eq!(r["response_format"]["type"], "json_schema");
        assert_eq!(r["stream_options"]["include_usage"], true);
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m[1]["content"][1]["image_url"]["url"], "data:image/png;base64,AAAA");
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(m[3]["tool_call_id"], m[2]["tool_calls"][0]["id"]);
        // Results answer their calls by id when the client sent ids (two calls of one tool, answered out of order);
        // a role OpenAI's API does not know is sent as the user's.
        let native = obj(json!({"model": "m", "messages": [
            {"role": "Narrator", "content": "A ship."},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}},
                {"id": "c2", "function": {"name": "f", "arguments": {"a": 2}}}]},
            {"role": "tool", "content": "two", "tool_name": "f", "tool_call_id": "c2"},
            {"role": "tool", "content": "one", "tool_name": "f", "tool_call_id": "c1"}
        ]}));
        let r = request(Call::Chat, &native, "backend-id", false, true);
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m[0]["role"], "user");
        assert_eq!((&m[2]["tool_call_id"], &m[2]["content"]), (&json!("c2"), &json!("two")));
        assert_eq!((&m[3]["tool_call_id"], &m[3]["content"]), (&json!("c1"), &json!("one")));
        // An empty last assistant turn (a replayed reasoning item's) is not sent; an empty earlier one is.
        let native = obj(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "b"},
            {"role": "assistant", "content": "", "thinking": "hmm"}
        ]}));
        let r = request(Call::Chat, &native, "backend-id", false, true);
        let roles: Vec<&str> = r["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
    }

    #[test]
    fn generate_is_a_templated_chat_unless_raw_completion() {
        let native = obj(json!({"model": "m", "system": "be brief", "prompt": "hi"}));
        let r = request(Call::ChatAsGenerate, &native, "id", false, true);
        assert_eq!(r["messages"][0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(r["messages"][1], json!({"role": "user", "content": "hi"}));
        assert!(r.get("stream_options").is_none());
        // think: a level is reasoning_effort; false turns a local engine's template thinking off.
        let thinking = |think: Value, extended: bool| {
            let native = obj(json!({"messages": [{"role": "user", "content": "hi"}], "think": think}));
            request(Call::Chat, &native, "id", false, extended)
        };
        assert_eq!(thinking(json!("low"), false)["reasoning_effort"], "low");
        assert!(thinking(json!(true), true).get("reasoning_effort").is_none());
        assert_eq!(thinking(json!(false), true)["chat_template_kwargs"], json!({"enable_thinking": false}));
        assert!(thinking(json!(false), false).get("chat_template_kwargs").is_none(), "not to a priced provider");
        let r = request(Call::Completion, &obj(json!({"prompt": "def f(", "suffix": "return 1"})), "id", false, true);
        assert_eq!(r["prompt"], "def f(");
        assert_eq!(r["suffix"], "return 1");
        let r = request(Call::Completion, &obj(json!({"prompt": "def f(", "suffix": ""})), "id", false, true);
        assert!(r.get("suffix").is_none(), "an empty suffix asks for nothing (and some servers refuse the field)");
    }

    #[test]
    fn whole_answers_become_native_with_counts_timings_and_tool_calls() {
        let v = json!({
            "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
            "timings": {"prompt_ms": 2.5, "predicted_ms": 10.0}
        });
        let (n, usage) = answer(Call::Chat, "m", &v, 1);
        assert_eq!(n["message"]["tool_calls"][0]["function"]["arguments"], json!({"a": 1}));
        assert_eq!(n["done"], true);
        assert_eq!(n["done_reason"], "stop");
        assert_eq!(n["prompt_eval_count"], 7);
        assert_eq!(n["eval_count"], 3);
        assert_eq!(n["eval_duration"], 10_000_000);
        assert_eq!(usage.output_tokens, 3);
        let (n, _) = answer(Call::Completion, "m", &json!({"choices": [{"text": "x", "finish_reason": "length"}]}), 5);
        // An error in a 200 answer is an error; an answer with choices is an answer.
        let failed = json!({"error": {"message": "upstream provider timed out", "code": 502}});
        assert_eq!(answer_error(&failed).as_deref(), Some("upstream provider timed out"));
        assert_eq!(answer_error(&json!({"error": "overloaded"})).as_deref(), Some("\"overloaded\""));
        assert_eq!(answer_error(&json!({"choices": [], "error": null})), None);
        assert_eq!(answer_error(&v), None);
        assert_eq!((n["response"].as_str(), n["done_reason"].as_str()), (Some("x"), Some("length")));
        let (n, _) = answer(Call::Embed, "m", &json!({"data": [{"embedding": [0.5]}, {"embedding": [1.0]}]}), 5);
        assert_eq!(n["embeddings"], json!([[0.5], [1.0]]));
        let (n, _) = answer(Call::LegacyEmbedding, "m", &json!({"data": [{"embedding": [0.5]}]}), 5);
        assert_eq!(n["embedding"], json!([0.5]));
    }

    fn lines(b: &[u8]) -> Vec<Value> {
        b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    }

    #[test]
    fn streams_are_rewritten_event_by_event_even_when_split_mid_line() {
        let sse = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":2}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"length\",\"delta\":{}}],\"timings\":{\"predicted_ms\":4}}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let mut conv = SseToNative::new(Call::Chat, "m");
        let mut out = Vec::new();
        for piece in sse.as_bytes().chunks(7) {
            out.extend_from_slice(&conv.push(piece));
        }
        out.extend_from_slice(&conv.end());
        let l = lines(&out);
        assert_eq!(l.len(), 5, "{l:?}");
        assert_eq!(l[0]["message"]["content"], "", "the opening event is a line at once");
        assert_eq!(l[1]["message"]["content"], "Hel");
        assert_eq!(l[2]["message"]["content"], "lo");
        assert_eq!(l[3]["message"]["tool_calls"][0]["function"]["arguments"], json!({"a": 2}));
        assert_eq!(l[4]["done"], true);
        assert_eq!(l[4]["done_reason"], "length");
        assert_eq!((l[4]["prompt_eval_count"].as_u64(), l[4]["eval_count"].as_u64()), (Some(3), Some(2)));
        assert_eq!(l[4]["eval_duration"], 4_000_000);
        assert!(conv.is_done());
    }

    #[test]
    fn a_stream_without_done_marker_finishes_at_its_end_and_errors_pass_as_errors() {
        let mut conv = SseToNative::new(Call::Completion, "m");
        let mut out = conv.push(b"data: {\"choices\":[{\"text\":\"a\",\"finish_reason\":\"stop\"}]}").to_vec();
        out.extend_from_slice(&conv.end());
        let l = lines(&out);
        assert_eq!(l[0]["response"], "a");
        assert_eq!(l[1]["done"], true);
        let mut conv = SseToNative::new(Call::Chat, "m");
        let out = conv.push(b"data: {\"error\":{\"message\":\"boom\",\"code\":500}}\n\n");
        assert_eq!(lines(&out)[0]["error"], "boom");
        let mut conv = SseToNative::new(Call::Chat, "m");
        assert!(!conv.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n").is_empty());
        assert!(conv.end().is_empty(), "no final chunk without a finish reason: the relay reports a broken stream");
    }

    #[test]
    fn log_probabilities_are_asked_for_and_come_back_in_ollamas_shape() {
        let native = obj(json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 9}));
        let chat = request(Call::Chat, &native, "m", false, false);
        assert_eq!((chat["logprobs"].as_bool(), chat["top_logprobs"].as_u64()), (Some(true), Some(9)));
        let asked = obj(json!({"prompt": "p", "logprobs": true, "top_logprobs": 9}));
        assert_eq!(request(Call::Completion, &asked, "m", false, true)["logprobs"], 9, "a legacy completion: a count");
        assert_eq!(request(Call::Completion, &asked, "m", false, false)["logprobs"], 5, "OpenAI's own: at most 5");
        // At least one alternative is asked for: llama.cpp reads 0 as "no log probabilities".
        let none = obj(json!({"messages": [], "logprobs": true}));
        assert_eq!(request(Call::Chat, &none, "m", false, true)["top_logprobs"], 1);
        assert!(request(Call::Chat, &obj(json!({"messages": []})), "m", false, false).get("logprobs").is_none());
        let entry = json!({"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                           "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]});
        let v = json!({"choices": [{"message": {"content": "Hi"}, "finish_reason": "stop",
                                    "logprobs": {"content": [entry.clone()], "refusal": null}}]});
        let (mut n, _) = answer(Call::Chat, "m", &v, 1);
        assert_eq!(n["logprobs"], json!([entry]));
        trim_logprobs(n.get_mut("logprobs"), 0);
        assert!(n["logprobs"][0].get("top_logprobs").is_none(), "trimmed to what the client asked: none");
        let v = json!({"choices": [{"text": "Hi there", "finish_reason": "length", "logprobs": {
            "tokens": ["Hi", " there"], "token_logprobs": [-0.5, -1.5], "top_logprobs": [{"Hi": -0.5}, {" there": -1.5}],
            "text_offset": [0, 2]}}]});
        let (n, _) = answer(Call::Completion, "m", &v, 1);
        assert_eq!(
            n["logprobs"][1],
            json!({"token": " there", "logprob": -1.5,
                                            "top_logprobs": [{"token": " there", "logprob": -1.5}]})
        );
        let (n, _) = answer(Call::Chat, "m", &json!({"choices": [{"message": {"content": "x"}, "logprobs": null}]}), 1);
        assert!(n.get("logprobs").is_none());
        // Streamed: each content line carries its own tokens' entries; the opening line none.
        let sse = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},",
            "\"logprobs\":{\"content\":[{\"token\":\"Hi\",\"logprob\":-0.5,\"top_logprobs\":[]}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
        );
        let mut conv = SseToNative::new(Call::Chat, "m").with_top_logprobs(1);
        let l = lines(&conv.push(sse.as_bytes()));
        assert!(l[0].get("logprobs").is_none(), "{l:?}");
        assert_eq!(l[1]["logprobs"][0]["top_logprobs"], json!([]));
        assert_eq!(
            (l[1]["message"]["content"].as_str(), l[1]["logprobs"][0]["logprob"].as_f64()),
            (Some("Hi"), Some(-0.5))
        );
        assert!(l[2].get("logprobs").is_none() && l[2]["done"] == true, "{l:?}");
    }

    #[test]
    fn fill_in_the_middle_on_llama_cpp_goes_to_infill_and_its_own_answers_become_native() {
        let native = obj(json!({"prompt": "def f(x):\n    ", "suffix": "\n    return y", "system": "ignored",
            "think": "low", "format": "json",
            "options": {"num_predict": 16, "temperature": 0.1, "top_k": 9, "stop": "\n\n"}}));
        let r = request(Call::Infill, &native, "coder", true, true);
        assert_eq!(Call::Infill.path(), "/infill");
        assert_eq!(r["model"], "coder", "llama.cpp's router mode picks the model by it");
        assert_eq!(
            (r["input_prefix"].as_str(), r["input_suffix"].as_str()),
            (Some("def f(x):\n    "), Some("\n    return y"))
        );
        assert_eq!(
            (r["max_tokens"].as_i64(), r["top_k"].as_i64(), r["stream"].as_bool()),
            (Some(16), Some(9), Some(true))
        );
        assert_eq!(r["stop"], json!(["\n\n"]), "a list, the only stop llama.cpp's own endpoints read");
        for absent in ["prompt", "suffix", "stream_options", "reasoning_effort", "messages", "response_format"] {
            assert!(r.get(absent).is_none(), "{absent} in {r}");
        }
        // A whole answer: `content`, the counts at the top level, `stop_type` for the reason.
        let v = json!({"content": "y = x * 2", "stop": true, "stop_type": "limit", "tokens_predicted": 16,
            "tokens_evaluated": 21,
            "timings": {"prompt_n": 5, "prompt_ms": 1.0, "predicted_n": 16, "predicted_ms": 8.0}});
        let (n, usage) = answer(Call::Infill, "coder:latest", &v, 1);
        assert_eq!((n["response"].as_str(), n["done_reason"].as_str()), (Some("y = x * 2"), Some("length")));
        assert_eq!((n["prompt_eval_count"].as_u64(), n["eval_count"].as_u64()), (Some(5), Some(16)));
        assert_eq!((usage.prompt_tokens, usage.output_tokens), (21, 16));
        let (n, _) = answer(Call::Infill, "m", &json!({"content": "", "stop": true, "stop_type": "eos"}), 1);
        assert_eq!(n["done_reason"], "stop");
        // Its stream: `content` per event, `"stop": true` on the last, no `[DONE]`.
        let sse = concat!(
            "data: {\"index\":0,\"content\":\"y =\",\"stop\":false,\"tokens_predicted\":1,\"tokens_evaluated\":21}\n\n",
            "data: {\"index\":0,\"content\":\" x\",\"stop\":false,\"tokens_predicted\":2,\"tokens_evaluated\":21}\n\n",
            "data: {\"index\":0,\"content\":\"\",\"stop\":true,\"stop_type\":\"eos\",\"tokens_predicted\":2,",
            "\"tokens_evaluated\":21,\"timings\":{\"prompt_n\":21,\"predicted_ms\":3.0}}\n\n"
        );
        let mut conv = SseToNative::new(Call::Infill, "coder:latest");
        let mut out = Vec::new();
        for piece in sse.as_bytes().chunks(5) {
            out.extend_from_slice(&conv.push(piece));
        }
        assert!(conv.is_done(), "the last event ends the answer");
        out.extend_from_slice(&conv.end());
        let l = lines(&out);
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!((l[0]["response"].as_str(), l[1]["response"].as_str()), (Some("y ="), Some(" x")));
        assert_eq!((l[2]["done"].as_bool(), l[2]["done_reason"].as_str()), (Some(true), Some("stop")));
        assert_eq!((l[2]["prompt_eval_count"].as_u64(), l[2]["eval_count"].as_u64()), (Some(21), Some(2)));
        assert_eq!(l[2]["eval_duration"], 3_000_000);
    }
}
