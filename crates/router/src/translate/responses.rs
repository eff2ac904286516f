//! OpenAI's Responses API (`POST /v1/responses`) over Ollama's chat: a request is rewritten into the chat
//! completions shape and goes through the same translation as `/v1/chat/completions`; the answer comes back as a
//! `response` object, or as Responses stream events (`response.created` ... `response.output_text.delta` ...
//! `response.completed`). Text and function tools are served; other input or tool kinds are a clear 400. A reasoning
//! model's thinking is a `reasoning` output item (streamed as `response.reasoning_summary_text.delta`), its text also
//! in `encrypted_content`, as Ollama's own endpoint writes it, so that a client sending the item back in a later
//! turn's input gives the model its earlier thinking again.

use super::{OpenAiMeta, SseEvents, bad, chat_request, openai_tool_calls};
use crate::error::RouterError;
use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value, json};

/// What the answer needs to know about the request.
#[derive(Debug, Clone)]
pub struct ResponsesContext {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds of the request.
    pub created: i64,
    /// The request's settings a `response` object repeats (`responses_echo`).
    pub echo: Map<String, Value>,
}

/// The request's settings that a `response` object repeats, as OpenAI's does: clients read them back (LangChain
/// parses a streamed answer as structured output only when the `response` says `text.format` is `json_schema`).
pub fn responses_echo(req: &Map<String, Value>) -> Map<String, Value> {
    const ECHOED: [&str; 9] = [
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "max_output_tokens",
        "metadata",
    ];
    ECHOED.iter().filter_map(|k| req.get(*k).filter(|v| !v.is_null()).map(|v| ((*k).to_string(), v.clone()))).collect()
}

/// A content value as chat completions content: its text, or, when it has images (`input_image` with an
/// `image_url`, a base64 data URL as on chat completions), a list of text and `image_url` parts.
fn content(content: &Value, param: &str) -> Result<Value, RouterError> {
    match content {
        Value::String(s) => Ok(json!(s)),
        Value::Null => Ok(json!("")),
        Value::Array(parts) => {
            let mut text = String::new();
            let mut images = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("input_image") => match part.get("image_url") {
                        Some(Value::String(url)) => {
                            images.push(json!({"type": "image_url", "image_url": {"url": url}}))
                        }
                        _ => {
                            return Err(bad(
                                format!(
                                    "{param}[{i}]: an input_image needs an image_url (a base64 data URL); files are not \
                                     stored here"
                                ),
                                param,
                            ));
                        }
                    },
                    other => {
                        return Err(bad(
                            format!(
                                "{param}[{i}]: content of type {} is not supported; send input_text and input_image parts",
                                other.unwrap_or("(none)")
                            ),
                            param,
                        ));
                    }
                }
            }
            if images.is_empty() {
                return Ok(json!(text));
            }
            let mut parts = vec![json!({"type": "text", "text": text})];
            parts.extend(images);
            Ok(Value::Array(parts))
        }
        _ => Err(bad(format!("{param} must be a string or a list of content parts"), param)),
    }
}

/// Rewrites a Responses request into a native chat body, through the chat completions translation.
pub fn responses_request(req: &Map<String, Value>) -> Result<(Map<String, Value>, OpenAiMeta), RouterError> {
    if req.get("previous_response_id").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            "previous_response_id is not supported: responses are not stored; send the whole conversation as input",
            "previous_response_id",
        ));
    }
    let mut messages: Vec<Value> = Vec::new();
    // An earlier turn's reasoning, for the assistant message or function call that follows it.
    let mut thinking: Option<String> = None;
    match req.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(bad("instructions must be a string", "instructions")),
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let param = format!("input[{i}]");
                match item.get("type").and_then(Value::as_str) {
                    None | Some("message") => {
                        let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                        let role = if role == "developer" { "system" } else { role };
                        let content = content(item.get("content").unwrap_or(&Value::Null), &param)?;
                        let mut message = json!({"role": role, "content": content});
                        // Reasoning belongs to the answer that follows it: another turn in between ends it.
                        if let Some(t) = thinking.take()
                            && role == "assistant"
                        {
                            message["reasoning"] = json!(t);
                        }
                        messages.push(message);
                    }
                    Some("function_call") => {
                        let call_id = item.get("call_id").and_then(Value::as_str).unwrap_or("call_0");
                        let call = json!({"id": call_id, "type": "function",
                            "function": {"name": item.get("name").cloned().unwrap_or(json!("")),
                                         "arguments": item.get("arguments").cloned().unwrap_or(json!("{}"))}});
                        // The calls of one answer are one assistant message (as Ollama's endpoint reads them), with
                        // the answer's text and reasoning.
                        if messages.last().is_none_or(|m| m["role"] != "assistant") {
                            messages.push(json!({"role": "assistant", "content": null}));
                        }
                        if let Some(message) = messages.last_mut() {
                            match message.get_mut("tool_calls").and_then(Value::as_array_mut) {
                                Some(calls) => calls.push(call),
                                None => message["tool_calls"] = json!([call]),
                            }
                            if let Some(t) = thinking.take() {
                                message["reasoning"] = json!(t);
                            }
                        }
                    }
                    Some("function_call_output") => {
                        let output = match item.get("output") {
                            Some(Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => String::new(),
                        };
                        let call_id = item.get("call_id").cloned().unwrap_or(Value::Null);
                        thinking = None;
                        messages.push(json!({"role": "tool", "content": output, "tool_call_id": call_id}));
                    }
                    // A model's reasoning from an earlier turn: its text (as Ollama's endpoint and this one write
                    // it, in `encrypted_content`, or its summary) goes back as the next answer's thinking. OpenAI's
                    // own encrypted reasoning cannot be read by another model and is left out.
                    Some("reasoning") => thinking = reasoning_text(item),
                    Some(other) => {
                        return Err(bad(format!("{param}: items of type {other:?} are not supported"), &param));
                    }
                }
            }
        }
        None | Some(Value::Null) => return Err(bad("input is required", "input")),
        Some(_) => return Err(bad("input must be a string or a list of items", "input")),
    }
    if let Some(t) = thinking {
        messages.push(json!({"role": "assistant", "content": "", "reasoning": t}));
    }
    let mut chat = Map::new();
    chat.insert("model".into(), req.get("model").cloned().unwrap_or(Value::Null));
    chat.insert("messages".into(), Value::Array(messages));
    for key in ["stream", "temperature", "top_p", "seed", "stop", "tool_choice"] {
        if let Some(v) = req.get(key) {
            chat.insert(key.into(), v.clone());
        }
    }
    if let Some(n) = req.get("max_output_tokens") {
        chat.insert("max_tokens".into(), n.clone());
    }
    if let Some(effort) = req.get("reasoning").and_then(|r| r.get("effort")) {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    match req.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            let mut out = Vec::with_capacity(tools.len());
            for (i, tool) in tools.iter().enumerate() {
                if tool.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(bad(format!("tools[{i}]: only function tools are supported"), &format!("tools[{i}]")));
                }
                out.push(json!({"type": "function", "function": {
                    "name": tool.get("name").cloned().unwrap_or(Value::Null),
                    "description": tool.get("description").cloned().unwrap_or(json!("")),
                    "parameters": tool.get("parameters").cloned().unwrap_or(json!({"type": "object"}))}}));
            }
            chat.insert("tools".into(), Value::Array(out));
        }
        Some(_) => return Err(bad("tools must be a list", "tools")),
    }
    if let Some(format) = req.get("text").and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            None | Some("text") => {}
            Some("json_object") => {
                chat.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                let schema = format.get("schema").cloned().unwrap_or(json!({}));
                let name = format.get("name").cloned().unwrap_or(json!("output"));
                chat.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
                );
            }
            Some(other) => return Err(bad(format!("text.format type {other:?} is not supported"), "text.format")),
        }
    }
    chat_request(&chat)
}

/// The text of a `reasoning` input item: its `encrypted_content` when that is plain text (as Ollama writes it) rather
/// than OpenAI's opaque token, else its summary; `None` when it has neither.
fn reasoning_text(item: &Value) -> Option<String> {
    let summary: String = item
        .get("summary")
        .and_then(Value::as_array)
        .map(|parts| parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    let content = item.get("encrypted_content").and_then(Value::as_str).unwrap_or("");
    // OpenAI's own encrypted reasoning is an opaque token (`gAAAAA...`, base64url, no spaces); anything else is text.
    let opaque = content.starts_with("gAAAAA")
        && content.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
    if !content.is_empty() && !opaque { Some(content.to_string()) } else { (!summary.is_empty()).then_some(summary) }
}

/// A `reasoning` output item holding `thinking`.
fn reasoning_item(cx: &ResponsesContext, thinking: &str) -> Value {
    json!({"type": "reasoning", "id": format!("rs_{}", cx.id), "summary": [{"type": "summary_text", "text": thinking}],
           "encrypted_content": thinking})
}

/// The Responses output items of a native chat message (reasoning, text, then function calls).
fn output_items(cx: &ResponsesContext, message: &Value) -> Vec<Value> {
    let mut items = Vec::new();
    let thinking = message.get("thinking").and_then(Value::as_str).unwrap_or("");
    if !thinking.is_empty() {
        items.push(reasoning_item(cx, thinking));
    }
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let calls = message.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if !text.is_empty() || calls.is_empty() {
        items.push(message_item(cx, text, "completed"));
    }
    for call in openai_tool_calls(calls, &cx.id, 0) {
        items.push(function_item(&call));
    }
    items
}

fn message_item(cx: &ResponsesContext, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": format!("msg_{}", cx.id), "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn function_item(call: &Value) -> Value {
    let id = call.get("id").and_then(Value::as_str).unwrap_or("call_0");
    json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": id, "status": "completed",
           "name": call["function"]["name"], "arguments": call["function"]["arguments"]})
}

fn usage(answer: &Value) -> Value {
    let input = answer.get("prompt_eval_count").and_then(Value::as_u64).unwrap_or(0);
    let output = answer.get("eval_count").and_then(Value::as_u64).unwrap_or(0);
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output,
           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input.saturating_add(output)})
}

/// A `response` object.
fn response(cx: &ResponsesContext, model: &str, status: &str, output: Vec<Value>, usage: Value) -> Value {
    let mut response = json!({"id": cx.id, "object": "response", "created_at": cx.created, "status": status,
           "model": model, "output": output, "usage": usage, "error": null, "incomplete_details": null,
           "instructions": null, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
           "text": {"format": {"type": "text"}}});
    if let Some(fields) = response.as_object_mut() {
        for (key, value) in &cx.echo {
            fields.insert(key.clone(), value.clone());
        }
    }
    response
}

/// A buffered native chat answer as a `response`.
pub fn responses_response(cx: &ResponsesContext, model: &str, answer: &Value) -> Value {
    let message = answer.get("message").cloned().unwrap_or(Value::Null);
    response(cx, model, "completed", output_items(cx, &message), usage(answer))
}

/// Turns Ollama NDJSON chat lines into Responses stream events.
#[derive(Debug)]
pub struct ResponsesTranslator {
    cx: ResponsesContext,
    model: String,
    started: bool,
    /// The thinking so far, once a reasoning item was opened (output 0, before the message).
    thinking: Option<String>,
    /// The reasoning item, if any, was closed.
    reasoning_done: bool,
    /// The message item was opened (after any reasoning item).
    message_started: bool,
    text: String,
    calls: Vec<Value>,
    sequence: u64,
    finished: bool,
}

impl ResponsesTranslator {
    pub fn new(cx: ResponsesContext, model: impl Into<String>) -> Self {
        Self {
            cx,
            model: model.into(),
            started: false,
            thinking: None,
            reasoning_done: false,
            message_started: false,
            text: String::new(),
            calls: Vec::new(),
            sequence: 0,
            finished: false,
        }
    }

    fn event(&mut self, out: &mut BytesMut, kind: &str, mut value: Value) {
        value["type"] = json!(kind);
        value["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.put_slice(b"event: ");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\ndata: ");
        // Serialising a Value cannot fail.
        let _ = serde_json::to_writer((&mut *out).writer(), &value);
        out.put_slice(b"\n\n");
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let created = response(&self.cx, &self.model, "in_progress", Vec::new(), Value::Null);
        self.event(out, "response.created", json!({"response": created}));
        let created = response(&self.cx, &self.model, "in_progress", Vec::new(), Value::Null);
        self.event(out, "response.in_progress", json!({"response": created}));
    }

    /// The message item's position: after the reasoning item when there is one.
    fn message_index(&self) -> usize {
        usize::from(self.thinking.is_some())
    }

    /// Streams a piece of thinking, opening the reasoning item first.
    fn think(&mut self, delta: &str, out: &mut BytesMut) {
        let item_id = format!("rs_{}", self.cx.id);
        if self.thinking.is_none() {
            self.thinking = Some(String::new());
            let item = json!({"type": "reasoning", "id": item_id, "summary": []});
            self.event(out, "response.output_item.added", json!({"output_index": 0, "item": item}));
        }
        if let Some(thinking) = self.thinking.as_mut() {
            thinking.push_str(delta);
        }
        self.event(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": item_id, "output_index": 0, "summary_index": 0, "delta": delta}),
        );
    }

    /// Closes the reasoning item, if one is open.
    fn finish_reasoning(&mut self, out: &mut BytesMut) {
        if self.reasoning_done {
            return;
        }
        self.reasoning_done = true;
        if let Some(thinking) = self.thinking.clone() {
            let item_id = format!("rs_{}", self.cx.id);
            self.event(
                out,
                "response.reasoning_summary_text.done",
                json!({"item_id": item_id, "output_index": 0, "summary_index": 0, "text": thinking}),
            );
            let item = reasoning_item(&self.cx, &thinking);
            self.event(out, "response.output_item.done", json!({"output_index": 0, "item": item}));
        }
    }

    /// Closes the reasoning item, if any, and opens the message item.
    fn start_message(&mut self, out: &mut BytesMut) {
        if self.message_started {
            return;
        }
        self.message_started = true;
        self.finish_reasoning(out);
        let index = self.message_index();
        let mut item = message_item(&self.cx, "", "in_progress");
        item["content"] = json!([]);
        self.event(out, "response.output_item.added", json!({"output_index": index, "item": item}));
        let item_id = format!("msg_{}", self.cx.id);
        self.event(
            out,
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": index, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
    }
}

impl SseEvents for ResponsesTranslator {
    fn on_chunk(&mut self, value: &Value, out: &mut BytesMut) {
        self.start(out);
        let message = value.get("message");
        let thinking = message.and_then(|m| m.get("thinking")).and_then(Value::as_str).unwrap_or("");
        // Thinking that comes after the answer started has no open item to go to (models think first).
        if !thinking.is_empty() && !self.message_started {
            self.think(thinking, out);
        }
        let delta = message.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or("");
        let done = value.get("done").and_then(Value::as_bool).unwrap_or(false);
        if let Some(calls) = message.and_then(|m| m.get("tool_calls")).and_then(Value::as_array) {
            self.calls.extend(openai_tool_calls(calls, &self.cx.id, self.calls.len()));
        }
        // An answer of tool calls alone has no message item, as when it is not streamed.
        if !delta.is_empty() || (done && self.calls.is_empty()) {
            self.start_message(out);
        }
        let item_id = format!("msg_{}", self.cx.id);
        let index = self.message_index();
        if !delta.is_empty() {
            self.text.push_str(delta);
            self.event(
                out,
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}),
            );
        }
        if !done {
            return;
        }
        self.finish_reasoning(out);
        let mut output: Vec<Value> =
            self.thinking.as_deref().map(|t| reasoning_item(&self.cx, t)).into_iter().collect();
        if self.message_started {
            let text = std::mem::take(&mut self.text);
            self.event(
                out,
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            );
            self.event(
                out,
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": text, "annotations": []}}),
            );
            let message = message_item(&self.cx, &text, "completed");
            self.event(out, "response.output_item.done", json!({"output_index": index, "item": message}));
            output.push(message);
        }
        for call in std::mem::take(&mut self.calls) {
            let item = function_item(&call);
            let index = output.len();
            self.event(out, "response.output_item.added", json!({"output_index": index, "item": item}));
            self.event(out, "response.output_item.done", json!({"output_index": index, "item": item}));
            output.push(item);
        }
        let done = response(&self.cx, &self.model, "completed", output, usage(value));
        self.event(out, "response.completed", json!({"response": done}));
        self.finished = true;
    }

    /// Ends the stream with an `error` event.
    fn error(&mut self, message: &str, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.event(out, "error", json!({"code": "api_error", "message": message, "param": null}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `responses_request` of a JSON object.
    fn translate(v: Value) -> Result<(Map<String, Value>, OpenAiMeta), RouterError> {
        responses_request(v.as_object().unwrap_or(&Map::new()))
    }

    #[test]
    fn a_responses_request_becomes_a_native_chat_body() {
        let (native, _) = translate(json!({
            "model": "auto", "instructions": "Be brief.", "max_output_tokens": 50, "stream": true,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
                      {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "4 C"}],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}}
        }))
        .unwrap();
        let messages = native["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(messages[1]["content"], "Weather in Oslo?");
        assert_eq!(messages[2]["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(messages[3]["role"], "tool");
        assert_eq!(native["tools"][0]["function"]["name"], "weather");
        assert_eq!(native["options"]["num_predict"], 50);
        assert_eq!(native["format"], json!({"type": "object"}));
        assert_eq!(native["stream"], true);
        // The `response` repeats the request's settings, as OpenAI's does.
        let req = json!({"model": "auto", "input": "x", "instructions": "Be brief.", "tool_choice": "none",
                         "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}}});
        let cx = ResponsesContext { id: "resp_1".into(), created: 1, echo: responses_echo(req.as_object().unwrap()) };
        let answer = responses_response(&cx, "m", &json!({"message": {"role": "assistant", "content": "{}"}}));
        assert_eq!(answer["text"]["format"]["type"], "json_schema");
        assert_eq!(answer["instructions"], "Be brief.");
        assert_eq!(answer["tool_choice"], "none");
        assert_eq!(answer["tools"], json!([]));
        // tool_choice as the Responses API names a function: only that tool goes to the model.
        let (native, _) = translate(json!({
            "model": "auto", "input": "Weather and time in Oslo?",
            "tools": [{"type": "function", "name": "weather"}, {"type": "function", "name": "time"}],
            "tool_choice": {"type": "function", "name": "time"}
        }))
        .unwrap();
        assert_eq!(native["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(native["tools"][0]["function"]["name"], "time");
        // An image as an input_image part reaches the model as chat completions' image part; reasoning items from
        // an earlier turn are left out.
        let (native, _) = translate(json!({"model": "auto", "input": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,iVBOR"}]}]}))
        .unwrap();
        let messages = native["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0]["content"], "What is this?");
        assert_eq!(messages[0]["images"], json!(["iVBOR"]));
        for bad_input in [
            json!({"model": "auto"}),
            json!({"model": "auto", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
            json!({"model": "auto", "input": "x", "tools": [{"type": "web_search"}]}),
            json!({"model": "auto", "input": "x", "previous_response_id": "resp_1"}),
        ] {
            assert!(translate(bad_input.clone()).is_err(), "{bad_input}");
        }
    }

    #[test]
    fn a_stream_becomes_responses_events_ending_in_completed() {
        let cx = ResponsesContext { id: "resp_1".into(), created: 1, echo: Map::new() };
        let mut t = ResponsesTranslator::new(cx, "m:1b");
        let mut out = BytesMut::new();
        t.line(br#"{"model":"m:1b","message":{"role":"assistant","content":"Hel"},"done":false}"#, &mut out);
        t.line(br#"{"model":"m:1b","message":{"role":"assistant","content":"lo"},"done":false}"#, &mut out);
        t.line(br#"{"model":"m:1b","message":{"role":"assistant","content":""},"done":true,"prompt_eval_count":3,"eval_count":2}"#, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        assert_eq!(kinds.iter().filter(|k| **k == "response.output_text.delta").count(), 2);
        let done = &events[events.len() - 1]["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 5);
        let numbers: Vec<u64> = events.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        // Nothing may follow the end.
        let mut after = BytesMut::new();
        t.error("late", &mut after);
        assert!(after.is_empty());
    }

    /// Events of `lines` through a fresh translator.
    fn events_of(lines: &[&str]) -> Vec<Value> {
        let cx = ResponsesContext { id: "resp_1".into(), created: 1, echo: Map::new() };
        let mut t = ResponsesTranslator::new(cx, "m:1b");
        let mut out = BytesMut::new();
        for line in lines {
            t.line(line.as_bytes(), &mut out);
        }
        let text = String::from_utf8(out.to_vec()).unwrap();
        text.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn thinking_is_a_reasoning_item_before_the_message_whole_and_streamed() {
        let cx = ResponsesContext { id: "resp_1".into(), created: 1, echo: Map::new() };
        let answer = json!({"message": {"role": "assistant", "content": "No.", "thinking": "91 = 7 x 13."}});
        let whole = responses_response(&cx, "m", &answer);
        assert_eq!(whole["output"][0]["type"], "reasoning");
        assert_eq!(whole["output"][0]["summary"][0]["text"], "91 = 7 x 13.");
        assert_eq!(whole["output"][0]["encrypted_content"], "91 = 7 x 13.");
        assert_eq!(whole["output"][1]["content"][0]["text"], "No.");

        let events = events_of(&[
            r#"{"message":{"role":"assistant","content":"","thinking":"91 = 7"},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"","thinking":" x 13."},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"No."},"done":false}"#,
            r#"{"message":{"role":"assistant","content":""},"done":true,"eval_count":4}"#,
        ]);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(events[2]["item"]["type"], "reasoning");
        assert_eq!(events[5]["text"], "91 = 7 x 13.");
        assert_eq!(events[7]["output_index"], 1, "the message comes after the reasoning");
        assert_eq!(events[9]["output_index"], 1);
        let done = &events[events.len() - 1]["response"];
        assert_eq!(done["output"][0]["summary"][0]["text"], "91 = 7 x 13.");
        assert_eq!(done["output"][1]["content"][0]["text"], "No.");
        // Without thinking, the message is the first output, as before.
        let plain = events_of(&[
            r#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
            r#"{"message":{"role":"assistant","content":""},"done":true}"#,
        ]);
        assert!(plain.iter().all(|e| e["type"] != "response.reasoning_summary_text.delta"));
        assert_eq!(plain[2]["output_index"], 0);
        assert_eq!(plain[plain.len() - 1]["response"]["output"][0]["type"], "message");
        // Thinking then tool calls alone: no message item, as when not streamed.
        let call = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"weather","arguments":{"city":"Oslo"}}}]},"done":true}"#;
        let called = events_of(&[
            r#"{"message":{"role":"assistant","content":"","thinking":"Ask the tool."},"done":false}"#,
            call,
        ]);
        let output = &called[called.len() - 1]["response"]["output"];
        let types: Vec<&str> = output.as_array().unwrap().iter().map(|o| o["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["reasoning", "function_call"]);
        assert!(called.iter().all(|e| e["type"] != "response.output_text.done"));
        let whole = responses_response(
            &ResponsesContext { id: "resp_1".into(), created: 1, echo: Map::new() },
            "m",
            &json!({"message": {"role": "assistant", "content": "", "thinking": "Ask the tool.",
                                "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]}}),
        );
        assert_eq!(&whole["output"], output, "streamed and whole answers have the same output");
    }

    #[test]
    fn reasoning_sent_back_is_the_next_answers_thinking() {
        let (native, _) = translate(json!({"model": "auto", "input": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Call the tool."}],
             "encrypted_content": "Call the tool."},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "4 C"},
            {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "It said 4."}],
             "encrypted_content": "gAAAAABoQzExampleOpaqueCipherText"},
            {"role": "assistant", "content": "4 C."},
            {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "gAAAAABoQzOpaque"},
            {"role": "assistant", "content": "Anything else?"},
            {"role": "user", "content": "No."}
        ]}))
        .unwrap();
        let m = native["messages"].as_array().unwrap();
        assert_eq!(m[1]["thinking"], "Call the tool.", "{m:?}");
        assert_eq!(m[1]["tool_calls"][0]["id"], "c1");
        assert_eq!(m[3]["thinking"], "It said 4.", "OpenAI's encrypted form: its summary");
        assert!(m[4].get("thinking").is_none(), "nothing readable: left out");
        assert!(m[5].get("thinking").is_none());
        // An answer's text and its calls are one assistant turn; reasoning does not cross another turn; plain text
        // without spaces is still text.
        let (native, _) = translate(json!({"model": "auto", "input": [
            {"role": "user", "content": "Weather in Oslo and Bergen?"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "想一想"},
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "4 C"},
            {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "stale"}]},
            {"role": "user", "content": "And now?"}
        ]}))
        .unwrap();
        let m = native["messages"].as_array().unwrap();
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[1]["content"], "Checking.");
        assert_eq!(m[1]["thinking"], "想一想");
        assert_eq!(m[1]["tool_calls"].as_array().map(Vec::len), Some(2));
        assert!(m[3].get("thinking").is_none() && m[3]["role"] == "user");
    }
}
