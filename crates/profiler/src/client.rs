//! The profiler's chat calls: a streaming chat to Ollama collected into an answer with its timings (the item
//! runs), a non-streaming chat to Ollama (a local judge), and a chat to an OpenAI-compatible endpoint (a remote
//! judge). Errors are plain messages: they are stored with the item's result, never raised.

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use switchyard_core::http::{HttpClient, build_request, error_message};
use switchyard_core::ndjson::LineSplitter;
use switchyard_core::ollama::{OllamaClient, Timings};

/// A collected streaming answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The concatenated message content.
    pub(crate) text: String,
    /// Time from sending the request to the first non-empty content.
    pub(crate) ttft: Option<Duration>,
    /// Time from sending the request to the end of the stream.
    pub(crate) total: Duration,
    /// The final chunk's timings (zero where it reported none).
    pub(crate) timings: Timings,
}

/// Sends one streaming `/api/chat` request and collects the answer with its timings.
pub(crate) async fn chat_stream(client: &OllamaClient, body: &Value) -> Result<Answer, String> {
    let started = Instant::now();
    let url = client.url("/api/chat");
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let request = build_request(Method::POST, &url, Some(Bytes::from(bytes))).map_err(|e| e.to_string())?;
    let response = client.http().send(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut stream = response.into_body();
    if !status.is_success() {
        let body = stream.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        return Err(format!("Ollama answered {status}: {}", error_message(&body)));
    }
    let mut lines = LineSplitter::default();
    let mut text = String::new();
    let mut ttft = None;
    let mut timings = None;
    let mut failure = None;
    while let Some(frame) = stream.frame().await {
        let frame = frame.map_err(|e| format!("the stream broke: {e}"))?;
        let Ok(data) = frame.into_data() else { continue };
        lines.push(&data, |line| {
            let Ok(v) = serde_json::from_slice::<Value>(line) else { return };
            if let Some(e) = v.get("error") {
                failure = Some(e.as_str().map_or_else(|| e.to_string(), str::to_string));
                return;
            }
            if let Some(content) = v.get("message").and_then(|m| m.get("content")).and_then(Value::as_str) {
                if !content.is_empty() && ttft.is_none() {
                    ttft = Some(started.elapsed());
                }
                text.push_str(content);
            }
            if v.get("done").and_then(Value::as_bool) == Some(true) {
                timings = Some(Timings::from_json(&v).unwrap_or_default());
            }
        });
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let Some(timings) = timings else {
        return Err("the stream ended before its final chunk".into());
    };
    Ok(Answer { text, ttft, total: started.elapsed(), timings })
}

/// Sends one non-streaming `/api/chat` request within `timeout`; returns the message content (empty when the
/// answer has none).
pub(crate) async fn chat(client: &OllamaClient, body: &Value, timeout: Duration) -> Result<String, String> {
    let answer: Value =
        client.http().post_json(&client.url("/api/chat"), body, timeout).await.map_err(|e| e.to_string())?;
    Ok(answer.get("message").and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or("").to_string())
}

/// Sends one chat completion to the OpenAI-compatible endpoint at `base_url` (`http://host:port/v1`), with
/// `api_key` as a bearer token when given; the response head must arrive within `timeout`. Returns the first
/// choice's content (empty when the answer has none).
pub(crate) async fn openai_chat(
    http: &HttpClient,
    base_url: &str,
    api_key: Option<&str>,
    body: &Value,
    timeout: Duration,
) -> Result<String, String> {
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut request = build_request(Method::POST, &url, Some(Bytes::from(bytes))).map_err(|e| e.to_string())?;
    if let Some(key) = api_key {
        let value = http::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "the judge key is not a valid header value".to_string())?;
        request.headers_mut().insert(http::header::AUTHORIZATION, value);
    }
    let response = tokio::time::timeout(timeout, http.send(request))
        .await
        .map_err(|_| "the judge timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("the judge answered {status}: {}", error_message(&body)));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or("").to_string())
}
