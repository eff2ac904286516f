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
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::http::{HttpClient, build_request, error_message, join_url};
pub use switchyard_core::ndjson::LineSplitter;
use tokio::time::{Instant, Sleep};

/// Why forwarding failed before anything reached the client.
#[derive(Debug, Clone)]
pub enum ForwardFailure {
    /// Connection refused or reset before an answer.
    Connect(String),
    /// Ollama answered an error status.
    Status { status: u16, message: String },
    /// No answer within the first-byte timeout.
    Timeout(Duration),
    /// The answer started but broke before the first chunk.
    Broken(String),
}

/// A successful upstream answer.
#[derive(Debug)]
pub enum Reply {
    /// A whole JSON answer (`stream: false`).
    Buffered(Bytes),
    /// A stream: its first chunk, and the rest still coming.
    Stream { first: Bytes, rest: Incoming },
}

/// Sends requests to one upstream.
#[derive(Debug, Clone)]
pub struct Forwarder {
    http: HttpClient,
    base: String,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Forwarder {
    pub fn new(http: HttpClient, base: &str, first_byte_timeout: Duration, idle_timeout: Duration) -> Self {
        Self { http, base: base.trim_end_matches('/').to_string(), first_byte_timeout, idle_timeout }
    }

    /// POSTs `body` to `path` and waits for the first chunk (stream) or the whole answer.
    pub async fn send(&self, path: &str, body: Bytes, stream: bool) -> Result<Reply, ForwardFailure> {
        let url = join_url(&self.base, path);
        let request =
            build_request(Method::POST, &url, Some(body)).map_err(|e| ForwardFailure::Connect(e.to_string()))?;
        let deadline = Instant::now() + self.first_byte_timeout;
        let response = tokio::time::timeout_at(deadline, self.http.send(request))
            .await
            .map_err(|_| ForwardFailure::Timeout(self.first_byte_timeout))?
            .map_err(|e| ForwardFailure::Connect(e.to_string()))?;
        let status = response.status();
        let mut body = response.into_body();
        if status != StatusCode::OK {
            let bytes = tokio::time::timeout_at(deadline, body.collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(ForwardFailure::Status { status: status.as_u16(), message: error_message(&bytes) });
        }
        if !stream {
            let bytes = tokio::time::timeout_at(deadline, body.collect())
                .await
                .map_err(|_| ForwardFailure::Timeout(self.first_byte_timeout))?
                .map_err(|e| ForwardFailure::Broken(e.to_string()))?
                .to_bytes();
            if bytes.is_empty() {
                return Err(ForwardFailure::Broken("empty answer".into()));
            }
            return Ok(Reply::Buffered(bytes));
        }
        loop {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| ForwardFailure::Timeout(self.first_byte_timeout))?;
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
    upstream: Option<Incoming>,
    transform: T,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    /// Finds the final chunk for timings, and whether the stream completed.
    lines: LineSplitter,
    final_line: Option<serde_json::Value>,
    upstream_error: Option<String>,
    on_end: Option<OnEnd>,
    /// Kept alive for the whole stream (a VRAM lease); dropped with the body.
    _guard: Box<dyn Send + Sync>,
}

impl<T: Transform> RelayBody<T> {
    /// A relay of `first` then `rest`.
    pub fn new(
        first: Bytes,
        rest: Incoming,
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
            lines: LineSplitter::default(),
            final_line: None,
            upstream_error: None,
            on_end: Some(on_end),
            _guard: guard,
        }
    }

    fn observe(&mut self, data: &[u8]) {
        let final_line = &mut self.final_line;
        let upstream_error = &mut self.upstream_error;
        self.lines.push(data, |line| {
            if memchr::memmem::find(line, b"\"done\":true").is_some() {
                *final_line = serde_json::from_slice(line).ok();
            } else if line.starts_with(b"{\"error\"") {
                *upstream_error = Some(
                    serde_json::from_slice::<serde_json::Value>(line)
                        .ok()
                        .map_or_else(|| "upstream error".to_string(), |v| error_message(v.to_string().as_bytes())),
                );
            }
        });
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
                    let deadline = Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
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
                    if this.final_line.is_some() {
                        let final_line = this.final_line.take();
                        this.end(StreamEnd::Complete(final_line));
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
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.upstream = None;
                        let message =
                            format!("no data from Ollama for {} s (ollama.idle_timeout_secs)", this.idle.as_secs());
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
