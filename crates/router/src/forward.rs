//! The forwarder: sends a request to Ollama over the pooled client and relays the answer.
//!
//! Streams are relayed chunk by chunk as they arrive, never buffered whole. The first chunk is awaited before the
//! client's response starts, so a failure before anything was sent can still fall back to another model. After
//! that, an upstream error, a broken connection or an idle gap longer than `ollama.idle_timeout_secs` ends the stream
//! with an error in the surface's own shape. Dropping the relay (the client went away) drops the upstream
//! connection, which cancels Ollama's work, and releases the VRAM lease.

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::http::{HttpClient, build_request_with_key, error_message, join_url};
pub use switchyard_core::ndjson::LineSplitter;
use tokio::time::{Instant, Sleep};

/// Why forwarding failed before anything reached the client.
#[derive(Debug, Clone)]
pub enum ForwardFailure {
    /// No connection could be made (refused, no route): the request never reached the server.
    Refused(String),
    /// The connection failed or was reset before an answer (the server may have seen the request).
    Connect(String),
    /// Ollama answered an error status; with a 429 or 503, the seconds its `Retry-After` asked for (at most an hour).
    Status { status: u16, message: String, retry_after: Option<u64> },
    /// No answer within the first-byte timeout.
    Timeout(Duration),
    /// The answer started but broke before the first chunk.
    Broken(String),
    /// A buffered answer larger than Switchyard holds in memory ([`MAX_ANSWER_BYTES`]): the request's doing, not the
    /// model's, so it neither counts against the model nor goes to another one.
    TooLarge(String),
}

/// The rest of an upstream stream, in Ollama's native NDJSON: Ollama's own body, or an `openai` backend's SSE
/// rewritten as it arrives.
pub type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

/// A successful upstream answer, in Ollama's native shape.
#[derive(Debug)]
pub enum Reply {
    /// A whole JSON answer (`stream: false`).
    Buffered(Bytes),
    /// A stream: its first chunk, and the rest still coming.
    Stream { first: Bytes, rest: UpstreamBody },
}

/// Sends `request` and waits, until `deadline`, for the head of its answer: the body of a 200, else the status and
/// the error message the answer carried.
pub async fn open(
    http: &HttpClient,
    request: http::Request<http_body_util::Full<Bytes>>,
    deadline: Instant,
    timeout: Duration,
) -> Result<Incoming, ForwardFailure> {
    let response = tokio::time::timeout_at(deadline, http.send(request))
        .await
        .map_err(|_| ForwardFailure::Timeout(timeout))?
        .map_err(|e| match e {
            switchyard_core::CoreError::Refused { .. } => ForwardFailure::Refused(e.to_string()),
            other => ForwardFailure::Connect(other.to_string()),
        })?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(response.into_body());
    }
    let retry_after = matches!(status.as_u16(), 429 | 503)
        .then(|| response.headers().get(http::header::RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.clamp(1, 3600));
    let body = response.into_body();
    let bytes = tokio::time::timeout_at(deadline, body.collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Err(ForwardFailure::Status { status: status.as_u16(), message: error_message(&bytes), retry_after })
}

/// Reads a whole answer, until `deadline`.
pub async fn read_whole(body: Incoming, deadline: Instant, timeout: Duration) -> Result<Bytes, ForwardFailure> {
    read_whole_within(body, deadline, timeout, MAX_ANSWER_BYTES).await
}

/// Most bytes of a buffered answer held in memory (a chat answer is a few kilobytes; an `/api/embed` answer of
/// tens of thousands of vectors is hundreds of megabytes). Above it the request fails with a message that says so,
/// instead of the router running out of memory.
pub const MAX_ANSWER_BYTES: usize = 1 << 30;

async fn read_whole_within<B>(
    body: B,
    deadline: Instant,
    timeout: Duration,
    limit: usize,
) -> Result<Bytes, ForwardFailure>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let collected = tokio::time::timeout_at(deadline, http_body_util::Limited::new(body, limit).collect())
        .await
        .map_err(|_| ForwardFailure::Timeout(timeout))?;
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ForwardFailure::TooLarge(format!(
            "the answer is larger than {} MiB, more than Switchyard holds in memory: ask for less in one request \
             (for embeddings, fewer inputs)",
            limit >> 20
        ))),
        Err(e) => Err(ForwardFailure::Broken(e.to_string())),
    }
}

/// Waits (until `deadline`) for the first non-empty chunk of `body`.
pub async fn first_chunk(
    mut body: UpstreamBody,
    deadline: Instant,
    timeout: Duration,
) -> Result<Reply, ForwardFailure> {
    loop {
        let frame =
            tokio::time::timeout_at(deadline, body.frame()).await.map_err(|_| ForwardFailure::Timeout(timeout))?;
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok(Reply::Stream { first: data, rest: body });
                }
            }
            Some(Err(e)) => return Err(ForwardFailure::Broken(e.to_string())),
            None => return Err(ForwardFailure::Broken("the stream ended before its first chunk".into())),
        }
    }
}

/// The time limits of a [`Forwarder`].
#[derive(Debug, Clone, Copy)]
pub struct ForwardLimits {
    /// Until a stream's response head and first chunk.
    pub first_byte: Duration,
    /// Until a whole answer that is not streamed.
    pub answer: Duration,
    /// Between two chunks of a stream.
    pub idle: Duration,
}

/// Sends requests to one upstream.
#[derive(Debug, Clone)]
pub struct Forwarder {
    http: HttpClient,
    base: String,
    pub first_byte_timeout: Duration,
    /// The limit of an answer that is not streamed, head and body (Ollama sends its head when the answer is done).
    pub answer_timeout: Duration,
    pub idle_timeout: Duration,
    /// A bearer token sent with every request (a fleet node's key); never shown.
    bearer: Option<Bearer>,
}

/// A bearer token: sent, never shown.
#[derive(Clone)]
struct Bearer(Arc<str>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Forwarder {
    pub fn new(http: HttpClient, base: &str, limits: ForwardLimits) -> Self {
        let ForwardLimits { first_byte, answer, idle } = limits;
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            first_byte_timeout: first_byte,
            answer_timeout: answer,
            idle_timeout: idle,
            bearer: None,
        }
    }

    /// Sends `key` as a bearer token with every request.
    pub fn with_bearer(mut self, key: Option<&str>) -> Self {
        self.bearer = key.map(|k| Bearer(Arc::from(k)));
        self
    }

    /// POSTs `body` to `path` and waits for the first chunk (stream) or the whole answer.
    pub async fn send(&self, path: &str, body: Bytes, stream: bool) -> Result<Reply, ForwardFailure> {
        let url = join_url(&self.base, path);
        let key = self.bearer.as_ref().map(|b| &*b.0);
        let request = build_request_with_key(Method::POST, &url, Some(body), key)
            .map_err(|e| ForwardFailure::Connect(e.to_string()))?;
        let limit = if stream { self.first_byte_timeout } else { self.answer_timeout };
        let deadline = Instant::now() + limit;
        let body = open(&self.http, request, deadline, limit).await?;
        if !stream {
            let bytes = read_whole(body, deadline, limit).await?;
            if bytes.is_empty() {
                return Err(ForwardFailure::Broken("empty answer".into()));
            }
            return Ok(Reply::Buffered(bytes));
        }
        first_chunk(body.boxed_unsync(), deadline, self.first_byte_timeout).await
    }
}

/// How a relay rewrites upstream NDJSON for its surface.
pub trait Transform: Send + Unpin + 'static {
    /// Rewrites a chunk of upstream bytes; may return nothing (waiting for a full line).
    fn chunk(&mut self, data: Bytes) -> Bytes;
    /// The last words when the stream fails: an error in the surface's shape.
    fn error(&mut self, message: &str) -> Bytes;
    /// Anything left at a clean end.
    fn finish(&mut self) -> Bytes;
}

/// Ollama's own NDJSON, passed through unchanged.
#[derive(Debug, Default)]
pub struct Passthrough;

impl Transform for Passthrough {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        data
    }

    fn error(&mut self, message: &str) -> Bytes {
        let mut line = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }
}

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    /// The final chunk (`done: true`) arrived; its JSON is kept for timings.
    Complete(Option<serde_json::Value>),
    /// Upstream broke, timed out or ended early.
    Failed(String),
    /// The client went away first.
    ClientGone,
}

/// Called once when a relay ends, with how it ended and when its first chunk went out.
pub type OnEnd = Box<dyn FnOnce(StreamEnd) + Send>;

/// A response body that relays an upstream stream through a [`Transform`].
pub struct RelayBody<T: Transform> {
    first: Option<Bytes>,
    upstream: Option<UpstreamBody>,
    transform: T,
    idle: Duration,
    /// Fires no earlier than `idle` after the last data; moved on only when it fires (not once per chunk).
    sleep: Pin<Box<Sleep>>,
    /// When the last data came from upstream.
    last_data: Instant,
    /// Splits the stream into lines to find the final chunk (timings, and whether the stream completed).
    lines: LineSplitter,
    /// The last complete line seen; parsed when the stream ends.
    last_line: Vec<u8>,
    upstream_error: Option<String>,
    on_end: Option<OnEnd>,
    /// Kept alive for the whole stream (a VRAM lease); dropped with the body.
    _guard: Box<dyn Send + Sync>,
}

impl<T: Transform> RelayBody<T> {
    /// A relay of `first` then `rest`.
    pub fn new(
        first: Bytes,
        rest: UpstreamBody,
        transform: T,
        idle: Duration,
        guard: Box<dyn Send + Sync>,
        on_end: OnEnd,
    ) -> Self {
        Self {
            first: Some(first),
            upstream: Some(rest),
            transform,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            last_data: Instant::now(),
            lines: LineSplitter::default(),
            last_line: Vec::new(),
            upstream_error: None,
            on_end: Some(on_end),
            _guard: guard,
        }
    }

    fn observe(&mut self, data: &[u8]) {
        let last_line = &mut self.last_line;
        let upstream_error = &mut self.upstream_error;
        self.lines.push(data, |line| {
            // `"error"` with both quotes unescaped is a key or a whole string value, never text inside a string:
            // only such lines are parsed on the way.
            if memchr::memmem::find(line, b"\"error\"").is_some()
                && let Ok(serde_json::Value::Object(v)) = serde_json::from_slice::<serde_json::Value>(line)
                && v.contains_key("error")
            {
                *upstream_error = Some(error_message(serde_json::Value::Object(v).to_string().as_bytes()));
                return;
            }
            last_line.clear();
            last_line.extend_from_slice(line);
        });
    }

    /// The final chunk: the last line, when it parses as an object with `"done": true` (however it is spaced).
    fn final_chunk(&mut self) -> Option<serde_json::Value> {
        let line = std::mem::take(&mut self.last_line);
        serde_json::from_slice::<serde_json::Value>(&line)
            .ok()
            .filter(|v| v.get("done").and_then(serde_json::Value::as_bool) == Some(true))
    }

    fn end(&mut self, how: StreamEnd) {
        if let Some(on_end) = self.on_end.take() {
            on_end(how);
        }
    }
}

/// Most bytes of ready upstream frames relayed as one frame.
const COALESCE_LIMIT: usize = 16 * 1024;

/// Output gathered within one `poll_frame`.
enum Batch {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Batch {
    /// Adds `out`; returns the bytes gathered so far.
    fn push(&mut self, out: Bytes) -> usize {
        if out.is_empty() {
            return self.len();
        }
        *self = match std::mem::replace(self, Batch::Empty) {
            Batch::Empty => Batch::One(out),
            Batch::One(first) => {
                let mut many = BytesMut::with_capacity((first.len() + out.len()) * 4);
                many.extend_from_slice(&first);
                many.extend_from_slice(&out);
                Batch::Many(many)
            }
            Batch::Many(mut many) => {
                many.extend_from_slice(&out);
                Batch::Many(many)
            }
        };
        self.len()
    }

    fn len(&self) -> usize {
        match self {
            Batch::Empty => 0,
            Batch::One(b) => b.len(),
            Batch::Many(b) => b.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The gathered output followed by `last`, as the next frame; the end of the body when there is none.
    fn ready<E>(&mut self, last: Bytes) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        self.push(last);
        let out = match std::mem::replace(self, Batch::Empty) {
            Batch::Empty => return Poll::Ready(None),
            Batch::One(b) => b,
            Batch::Many(b) => b.freeze(),
        };
        Poll::Ready(Some(Ok(Frame::data(out))))
    }
}

impl<T: Transform> Body for RelayBody<T> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            this.observe(&first);
            let out = this.transform.chunk(first);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
        // Frames that are already available are relayed together (one write instead of many); nothing ever waits
        // for more to arrive.
        let mut batch = Batch::Empty;
        loop {
            let Some(upstream) = this.upstream.as_mut() else { return batch.ready(Bytes::new()) };
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    this.last_data = Instant::now();
                    this.observe(&data);
                    let out = this.transform.chunk(data);
                    if batch.push(out) >= COALESCE_LIMIT {
                        return batch.ready(Bytes::new());
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.upstream = None;
                    let message = format!("the upstream stream broke: {e}");
                    let out = this.transform.error(&message);
                    this.end(StreamEnd::Failed(message));
                    return batch.ready(out);
                }
                Poll::Ready(None) => {
                    this.upstream = None;
                    if let Some(rest) = this.lines.take_rest() {
                        this.observe(&[rest.as_slice(), b"\n"].concat());
                    }
                    if let Some(message) = this.upstream_error.take() {
                        this.end(StreamEnd::Failed(message));
                        return batch.ready(this.transform.finish());
                    }
                    if let Some(final_line) = this.final_chunk() {
                        this.end(StreamEnd::Complete(Some(final_line)));
                        return batch.ready(this.transform.finish());
                    }
                    let message = "the upstream stream ended before its final chunk".to_string();
                    let out = this.transform.error(&message);
                    this.end(StreamEnd::Failed(message));
                    return batch.ready(out);
                }
                Poll::Pending => {
                    if !batch.is_empty() {
                        return batch.ready(Bytes::new());
                    }
                    // The timer was set from older data: when it fires early, it is moved to the idle time
                    // after the last data and polled again (which registers it).
                    while this.sleep.as_mut().poll(cx).is_ready() {
                        let deadline = this.last_data + this.idle;
                        if Instant::now() < deadline {
                            this.sleep.as_mut().reset(deadline);
                            continue;
                        }
                        this.upstream = None;
                        let message = format!(
                            "no data from the model's server for {} s (its idle_timeout_secs)",
                            this.idle.as_secs()
                        );
                        let out = this.transform.error(&message);
                        this.end(StreamEnd::Failed(message));
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.upstream.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl<T: Transform> Drop for RelayBody<T> {
    fn drop(&mut self) {
        self.end(StreamEnd::ClientGone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Relays `lines` as one upstream body and returns how the relay said it ended.
    async fn relay_end(lines: &'static str) -> StreamEnd {
        let upstream: UpstreamBody = http_body_util::Full::new(Bytes::from_static(lines.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync();
        let seen = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&seen);
        let on_end: OnEnd = Box::new(move |end| *sink.lock().unwrap() = Some(end));
        let body = RelayBody::new(Bytes::new(), upstream, Passthrough, Duration::from_secs(5), Box::new(()), on_end);
        let _ = body.collect().await;
        seen.lock().unwrap().clone().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_limit_counts_from_the_latest_data_and_still_ends_a_stalled_stream() {
        let idle = Duration::from_secs(10);
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        // Three lines 6 s apart (longer in all than the idle limit, never idle that long), then silence.
        tokio::spawn(async move {
            for i in 0..3 {
                if i > 0 {
                    tokio::time::sleep(Duration::from_secs(6)).await;
                }
                let _ = tx.send(Bytes::from(format!("{{\"done\":false,\"response\":\"t{i}\"}}\n"))).await;
            }
            std::future::pending::<()>().await;
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, hyper::Error>(Frame::data(b)), rx))
        });
        let upstream: UpstreamBody = http_body_util::StreamBody::new(stream).boxed_unsync();
        let seen = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&seen);
        let on_end: OnEnd = Box::new(move |end| *sink.lock().unwrap() = Some(end));
        let started = Instant::now();
        let body = RelayBody::new(Bytes::new(), upstream, Passthrough, idle, Box::new(()), on_end);
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let elapsed = started.elapsed();
        assert!(text.contains("t0") && text.contains("t1") && text.contains("t2"), "{text}");
        assert!(text.contains("no data from the model's server"), "{text}");
        let end = seen.lock().unwrap().clone().unwrap();
        assert!(matches!(end, StreamEnd::Failed(ref m) if m.contains("idle_timeout_secs")), "{end:?}");
        // Ended one idle limit after the last line (at 12 s), not earlier and not much later.
        assert!(elapsed >= Duration::from_secs(22) && elapsed < Duration::from_secs(23), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_buffered_answer_past_the_limit_fails_with_a_message_that_says_so() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let body = || http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        let whole = read_whole_within(body(), deadline, Duration::from_secs(5), 10).await.unwrap();
        assert_eq!(&whole[..], b"0123456789");
        match read_whole_within(body(), deadline, Duration::from_secs(5), 9).await {
            Err(ForwardFailure::TooLarge(message)) => assert!(message.contains("larger than"), "{message}"),
            other => panic!("expected the limit to fail the answer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_final_chunk_is_found_by_parsing_however_it_is_spaced() {
        let end = relay_end(
            "{\"done\": false, \"response\": \"say \\\"done\\\":true\"}\n{\"done\" : true, \"eval_count\": 3}\n",
        )
        .await;
        let StreamEnd::Complete(Some(last)) = end else { panic!("{end:?}") };
        assert_eq!(last["eval_count"], 3);
        // Text that looks like the marker inside a string is not the end.
        let end = relay_end("{\"done\":false,\"response\":\"\\\"done\\\":true\"}\n").await;
        assert!(matches!(end, StreamEnd::Failed(_)), "{end:?}");
        let end = relay_end("{\"done\":false}\n{\"error\": \"model crashed\"}\n").await;
        assert_eq!(end, StreamEnd::Failed("model crashed".into()));
    }
}
