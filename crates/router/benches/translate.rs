//! Micro benchmarks of OpenAI <-> Ollama translation, which runs on every `/v1/*` request: a typical chat request
//! into an Ollama `/api/chat` body, a non-streamed answer's bytes into a `chat.completion`'s bytes (as the router
//! does it, and through a `Value` tree as it did before), and one streamed NDJSON line into an SSE
//! `chat.completion.chunk`.

use bytes::BytesMut;
use criterion::Criterion;
use serde_json::{Map, Value, json};
use std::hint::black_box;
use switchyard::translate::{
    OpenAiContext, OpenAiKind, SseEvents, SseTranslator, chat_request, openai_response, openai_response_bytes,
};

/// A chat request as clients send it: system prompt, a short history, sampling parameters.
fn chat_body() -> anyhow::Result<Map<String, Value>> {
    let value = json!({
        "model": "llama3.1:8b",
        "messages": [
            {"role": "system", "content": "You are a concise assistant. Answer in plain English."},
            {"role": "user", "content": "What is the difference between a process and a thread?"},
            {"role": "assistant", "content": "A process has its own address space; threads share one within a process."},
            {"role": "user", "content": [
                {"type": "text", "text": "And how do they communicate? Give two examples for each."}
            ]}
        ],
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 512,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "bench"
    });
    match value {
        Value::Object(map) => Ok(map),
        _ => anyhow::bail!("the request is not an object"),
    }
}

/// A non-streamed `/api/chat` answer with Ollama's timings.
fn ollama_answer() -> Value {
    json!({
        "model": "llama3.1:8b",
        "created_at": "2025-01-01T00:00:00.000000000Z",
        "message": {"role": "assistant", "content": "Processes communicate through pipes, sockets, shared memory \
            segments and message queues; threads share memory directly and synchronise with mutexes, condition \
            variables and channels. Two examples each: a shell pipeline and a local socket server; a worker pool \
            with a channel and a cache behind a read-write lock."},
        "done_reason": "stop",
        "done": true,
        "total_duration": 2_512_000_000u64,
        "load_duration": 12_000_000u64,
        "prompt_eval_count": 62,
        "prompt_eval_duration": 24_000_000u64,
        "eval_count": 78,
        "eval_duration": 696_000_000u64
    })
}

/// One streamed token line.
const STREAM_LINE: &[u8] = br#"{"model":"llama3.1:8b","created_at":"2025-01-01T00:00:00.000000000Z","message":{"role":"assistant","content":" threads"},"done":false}"#;

fn context() -> OpenAiContext {
    OpenAiContext {
        kind: OpenAiKind::Chat,
        id: "chatcmpl-0f6b1c9e-4a1d-4c4e-9a53-2b7f0f1d2c3a".to_string(),
        created: 1_735_689_600,
        include_usage: true,
    }
}

fn main() -> anyhow::Result<()> {
    let request = chat_body()?;
    let answer = serde_json::to_vec(&ollama_answer())?;
    let cx = context();
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("translate");
    group.bench_function("chat_request", |b| b.iter(|| chat_request(black_box(&request))));
    group.bench_function("openai_response_bytes", |b| {
        b.iter(|| openai_response_bytes(black_box(&cx), "llama3.1:8b", black_box(&answer)).map(|out| out.len()))
    });
    group.bench_function("openai_response_via_value", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(&answer))?;
            serde_json::to_vec(&openai_response(black_box(&cx), "llama3.1:8b", &value)).map(|out| out.len())
        })
    });
    group.bench_function("sse_chunk", |b| {
        let mut translator = SseTranslator::new(cx.clone(), "llama3.1:8b");
        let mut out = BytesMut::with_capacity(1024);
        // The first line carries the role; every later one is the steady state measured here.
        translator.line(STREAM_LINE, &mut out);
        b.iter(|| {
            out.clear();
            translator.line(black_box(STREAM_LINE), &mut out);
            out.len()
        })
    });
    group.finish();
    criterion.final_summary();
    Ok(())
}
