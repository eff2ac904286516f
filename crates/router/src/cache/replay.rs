//! Between streams and stored answers: a streamed answer is captured on its way to the client and assembled into
//! Ollama's buffered shape (the final chunk's fields with the whole text, thinking and tool calls); a stored answer
//! is replayed as a native stream of two lines (the text, then the final chunk with the counts and timings), which
//! each surface then relays in its own shape like any upstream stream.

use crate::forward::UpstreamBody;
use crate::request::Endpoint;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::{Map, Value};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// What a capture has gathered: the stream's bytes, or nothing once it grew past its limit.
pub(crate) type Captured = Arc<Mutex<Option<Vec<u8>>>>;

/// An upstream body that keeps a copy of what passes through it (up to a limit).
pub(crate) struct Capture {
    inner: UpstreamBody,
    buf: Captured,
    limit: usize,
}

impl Capture {
    /// Wraps `inner`; `first` (the chunk already read) starts the copy.
    pub(crate) fn new(first: &[u8], inner: UpstreamBody, limit: usize) -> (Self, Captured) {
        let buf = Arc::new(Mutex::new((first.len() <= limit).then(|| first.to_vec())));
        (Self { inner, buf: Arc::clone(&buf), limit }, buf)
    }
}

impl Body for Capture {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut buf = this.buf.lock().unwrap_or_else(PoisonError::into_inner);
            let over = buf.as_ref().is_some_and(|b| b.len() + data.len() > this.limit);
            if over {
                *buf = None;
            } else if let Some(b) = buf.as_mut() {
                b.extend_from_slice(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Appends `piece` (a string) to `into[key]`.
fn append(into: &mut Map<String, Value>, key: &str, piece: Option<&Value>) {
    let Some(Value::String(piece)) = piece else { return };
    if piece.is_empty() {
        return;
    }
    match into.get_mut(key) {
        Some(Value::String(s)) => s.push_str(piece),
        _ => {
            into.insert(key.to_string(), Value::String(piece.clone()));
        }
    }
}

/// Assembles a native stream (NDJSON of `/api/chat` or `/api/generate`) into the buffered answer Ollama would
/// have sent for the same request; none when it holds no final chunk or a line is not JSON.
pub(crate) fn assemble(endpoint: Endpoint, ndjson: &[u8]) -> Option<Bytes> {
    let mut text = Map::new();
    let mut calls: Vec<Value> = Vec::new();
    let mut logprobs: Vec<Value> = Vec::new();
    let mut last: Option<Map<String, Value>> = None;
    for line in ndjson.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(line) else { return None };
        let part = match endpoint {
            Endpoint::Chat => chunk.get("message").and_then(Value::as_object).cloned().unwrap_or_default(),
            _ => chunk.clone(),
        };
        let field = if endpoint == Endpoint::Chat { "content" } else { "response" };
        append(&mut text, field, part.get(field));
        append(&mut text, "thinking", part.get("thinking"));
        if let Some(Value::Array(c)) = part.get("tool_calls") {
            calls.extend(c.iter().cloned());
        }
        if let Some(Value::Array(l)) = chunk.get("logprobs") {
            logprobs.extend(l.iter().cloned());
        }
        last = Some(chunk);
    }
    let mut answer = last.filter(|l| l.get("done").and_then(Value::as_bool) == Some(true))?;
    // Each chunk's tokens, in order, as a whole answer lists them.
    if !logprobs.is_empty() {
        answer.insert("logprobs".into(), Value::Array(logprobs));
    }
    match endpoint {
        Endpoint::Chat => {
            let mut message = answer.get("message").and_then(Value::as_object).cloned().unwrap_or_default();
            message.entry("role").or_insert_with(|| Value::String("assistant".into()));
            message.insert("content".into(), text.remove("content").unwrap_or_else(|| Value::String(String::new())));
            if let Some(t) = text.remove("thinking") {
                message.insert("thinking".into(), t);
            }
            if !calls.is_empty() {
                message.insert("tool_calls".into(), Value::Array(calls));
            }
            answer.insert("message".into(), Value::Object(message));
        }
        _ => {
            answer.insert("response".into(), text.remove("response").unwrap_or_else(|| Value::String(String::new())));
            if let Some(t) = text.remove("thinking") {
                answer.insert("thinking".into(), t);
            }
        }
    }
    serde_json::to_vec(&answer).ok().map(Bytes::from)
}

/// A stored answer as a JSON object (empty if it is not one, which the cache never stores).
pub(crate) fn parse(answer: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice::<Value>(answer) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// A stored answer with `model` as the client should see it (its spelling of the model's name). `created_at` stays
/// when the answer was made.
pub(crate) fn renamed(answer: &[u8], shown: &str) -> Map<String, Value> {
    let mut answer = parse(answer);
    if answer.contains_key("model") {
        answer.insert("model".into(), Value::String(shown.to_string()));
    }
    answer
}

/// The native stream of a stored answer: one chunk with its text (and thinking, and tool calls), then the final
/// chunk (empty text, `done: true`, the counts and timings), each a line.
pub(crate) fn stream_lines(endpoint: Endpoint, answer: &Map<String, Value>) -> Bytes {
    let mut first = Map::new();
    for k in ["model", "created_at"] {
        if let Some(v) = answer.get(k) {
            first.insert(k.into(), v.clone());
        }
    }
    let mut last = answer.clone();
    // The tokens' log probabilities go with their text.
    if let Some(l) = last.remove("logprobs") {
        first.insert("logprobs".into(), l);
    }
    match endpoint {
        Endpoint::Chat => {
            let message = answer.get("message").and_then(Value::as_object).cloned().unwrap_or_default();
            let mut closing = Map::new();
            closing.insert("role".into(), message.get("role").cloned().unwrap_or_else(|| "assistant".into()));
            closing.insert("content".into(), Value::String(String::new()));
            first.insert("message".into(), Value::Object(message));
            last.insert("message".into(), Value::Object(closing));
        }
        _ => {
            first.insert("response".into(), answer.get("response").cloned().unwrap_or_else(|| "".into()));
            if let Some(t) = answer.get("thinking") {
                first.insert("thinking".into(), t.clone());
            }
            last.insert("response".into(), Value::String(String::new()));
            last.remove("thinking");
        }
    }
    first.insert("done".into(), Value::Bool(false));
    let mut out = serde_json::to_vec(&first).unwrap_or_default();
    out.push(b'\n');
    out.extend(serde_json::to_vec(&last).unwrap_or_default());
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_probabilities_are_kept_in_order_and_replayed_with_their_text() {
        let stream = concat!(
            r#"{"model":"m","response":"Hel","done":false,"logprobs":[{"token":"Hel","logprob":-0.5}]}"#,
            "\n",
            r#"{"model":"m","response":"lo","done":false,"logprobs":[{"token":"lo","logprob":-1.5}]}"#,
            "\n",
            r#"{"model":"m","response":"","done":true,"done_reason":"stop","eval_count":2}"#,
            "\n"
        );
        let answer = assemble(Endpoint::Generate, stream.as_bytes()).unwrap();
        let v: Value = serde_json::from_slice(&answer).unwrap();
        let tokens: Vec<&str> =
            v["logprobs"].as_array().unwrap().iter().map(|e| e["token"].as_str().unwrap()).collect();
        assert_eq!((v["response"].as_str(), tokens), (Some("Hello"), vec!["Hel", "lo"]));
        let lines = stream_lines(Endpoint::Generate, &parse(&answer));
        let lines: Vec<Value> =
            std::str::from_utf8(&lines).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["logprobs"], v["logprobs"], "with the text");
        assert!(lines[1].get("logprobs").is_none(), "not with the closing line");
    }

    #[test]
    fn a_chat_stream_assembles_into_the_buffered_answer_and_replays_back() {
        let stream = concat!(
            r#"{"model":"m","created_at":"t1","message":{"role":"assistant","content":"","thinking":"hm"},"done":false}"#,
            "\n",
            r#"{"model":"m","created_at":"t2","message":{"role":"assistant","content":"Hel"},"done":false}"#,
            "\n",
            r#"{"model":"m","created_at":"t3","message":{"role":"assistant","content":"lo"},"done":false}"#,
            "\n",
            r#"{"model":"m","created_at":"t4","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":2,"total_duration":5}"#,
            "\n"
        );
        let answer = assemble(Endpoint::Chat, stream.as_bytes()).unwrap();
        let v: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(v["message"], json!({"role": "assistant", "content": "Hello", "thinking": "hm"}));
        assert_eq!(v["eval_count"], 2);
        assert_eq!(v["done_reason"], "stop");
        let restamped = renamed(&answer, "auto-shown");
        assert_eq!(restamped["model"], "auto-shown");
        assert_eq!(restamped["created_at"], "t4", "when the answer was made");
        let lines = stream_lines(Endpoint::Chat, &restamped);
        let lines: Vec<Value> =
            std::str::from_utf8(&lines).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["message"]["content"], "Hello");
        assert_eq!(lines[0]["done"], false);
        assert_eq!(lines[1]["message"], json!({"role": "assistant", "content": ""}));
        assert_eq!(lines[1]["done"], true);
        assert_eq!(lines[1]["eval_count"], 2);
        // The replay assembles into the same answer.
        let again: Value =
            serde_json::from_slice(&assemble(Endpoint::Chat, &stream_lines(Endpoint::Chat, &restamped)).unwrap())
                .unwrap();
        assert_eq!(again, Value::Object(restamped));
    }

    #[test]
    fn generate_streams_keep_the_context_and_tool_calls_are_gathered() {
        let stream = concat!(
            r#"{"model":"m","response":"4","done":false}"#,
            "\n",
            r#"{"model":"m","response":"2","done":false}"#,
            "\n",
            r#"{"model":"m","response":"","done":true,"context":[1,2]}"#,
            "\n"
        );
        let v: Value = serde_json::from_slice(&assemble(Endpoint::Generate, stream.as_bytes()).unwrap()).unwrap();
        assert_eq!(v, json!({"model": "m", "response": "42", "done": true, "context": [1, 2]}));
        let calls = concat!(
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":{}}}]},"done":false}"#,
            "\n",
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"b","arguments":{}}}]},"done":false}"#,
            "\n",
            r#"{"message":{"role":"assistant","content":""},"done":true}"#
        );
        let v: Value = serde_json::from_slice(&assemble(Endpoint::Chat, calls.as_bytes()).unwrap()).unwrap();
        assert_eq!(v["message"]["tool_calls"].as_array().unwrap().len(), 2);
        assert!(assemble(Endpoint::Chat, br#"{"message":{"content":"x"},"done":false}"#).is_none(), "no final chunk");
        assert!(assemble(Endpoint::Chat, b"not json\n").is_none());
    }
}
