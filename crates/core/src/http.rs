//! One pooled HTTP/1.1 keep-alive client for everything Switchyard sends upstream.
//!
//! Built on hyper-util's pooled client: connections are reused across requests, `TCP_NODELAY` is set, and response
//! bodies are handed back as hyper's streaming `Incoming`, so the forwarder can relay a stream chunk by chunk without
//! buffering it. `https://` upstreams (remote providers) go through rustls with the Mozilla root set and TLS session
//! resumption; plain `http://` is unchanged. The JSON helpers below are for control calls (tags, ps, show, load),
//! never for the request path.

use crate::error::CoreError;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How soon after sending a closed pooled connection must fail for the request to be sent again.
const STALE_WITHIN: Duration = Duration::from_millis(250);

/// Tuning of the pooled client.
#[derive(Debug, Clone)]
pub struct HttpClientOptions {
    /// Give up connecting after this long (a dead upstream must fail fast so that fallback can act).
    pub connect_timeout: Duration,
    /// Close pooled connections idle for longer than this.
    pub pool_idle_timeout: Duration,
    /// Keep at most this many idle connections per upstream host.
    pub pool_max_idle_per_host: usize,
    /// Certificate authorities trusted beside Mozilla's for `https://` upstreams (a private CA, a self-signed
    /// server), DER-encoded.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 512,
            extra_roots: Vec::new(),
        }
    }
}

/// A request body streamed upstream as it arrives (a model file uploaded as a blob), never held whole.
pub type UploadBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A cheap-to-clone handle on the shared connection pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// For streamed uploads: the same connector, a pool of its own.
    uploads: Client<HttpsConnector<HttpConnector>, UploadBody>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new(&HttpClientOptions::default())
    }
}

/// A fully read response: status, content type and body.
#[derive(Debug, Clone)]
pub struct BufferedResponse {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl HttpClient {
    /// Builds the client and its connection pool.
    pub fn new(options: &HttpClientOptions) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.connect_timeout));
        connector.enforce_http(false);
        // rustls with exactly one crypto provider compiled in (ring) picks it; the roots are Mozilla's and any extra
        // ones configured.
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for cert in &options.extra_roots {
            if let Err(e) = roots.add(cert.clone()) {
                tracing::warn!(error = %e, "an extra certificate authority cannot be used");
            }
        }
        let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.pool_max_idle_per_host)
            .build(connector.clone());
        let uploads = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(4)
            .build(connector);
        Self { inner, uploads }
    }

    /// Sends a request whose body streams upstream as it arrives, and returns when the response head arrives.
    /// It is never sent again (its body is gone once sent).
    pub async fn send_upload(&self, req: Request<UploadBody>) -> Result<Response<Incoming>, CoreError> {
        let url = req.uri().to_string();
        self.uploads.request(req).await.map_err(|e| client_error(url, &e))
    }

    /// Sends `req` and returns as soon as the response head arrives; the body streams.
    ///
    /// Connection failures become [`CoreError::Refused`] when no connection was made and [`CoreError::Unreachable`]
    /// otherwise. No timeout is applied here: callers own their
    /// deadlines (first byte, idle between chunks) because they differ per use.
    ///
    /// A pooled connection the server closed just as it was reused (llama.cpp's server closes a keep-alive
    /// connection after 100 requests; any server may at its idle timeout) fails at once, before the server worked
    /// on the request: such a request is sent once more, on a new connection.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, CoreError> {
        let url = req.uri().to_string();
        let again = copy_request(&req);
        let sent = std::time::Instant::now();
        match self.inner.request(req).await {
            Ok(response) => Ok(response),
            // Only a failure right away: a connection that broke after the server had time to work on the request
            // (it crashed, a proxy cut it) may have done the work, and sending it again could do it twice.
            Err(e) if stale_connection(&e) && sent.elapsed() < STALE_WITHIN => {
                tracing::debug!(%url, error = %describe_client_error(&e), "a pooled connection was closed; sending again");
                let again = again
                    .ok_or_else(|| CoreError::Unreachable { url: url.clone(), message: describe_client_error(&e) })?;
                self.inner.request(again).await.map_err(|e| client_error(url, &e))
            }
            Err(e) => Err(client_error(url, &e)),
        }
    }

    /// Sends a request with an optional JSON body and reads the whole answer within `timeout`.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<BufferedResponse, CoreError> {
        self.send_buffered(build_request(method, url, body)?, timeout).await
    }

    /// Sends a prepared request (with whatever headers it carries) and reads the whole answer within `timeout`.
    pub async fn send_buffered(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<BufferedResponse, CoreError> {
        let url = req.uri().to_string();
        let url = url.as_str();
        let call = async {
            let resp = self.send(req).await?;
            let status = resp.status();
            let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| CoreError::Unreachable { url: url.to_string(), message: e.to_string() })?
                .to_bytes();
            Ok(BufferedResponse { status, content_type, body })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| CoreError::Timeout { url: url.to_string(), seconds: timeout.as_secs_f64() })?
    }

    /// GETs `url` and decodes a JSON answer; a non-2xx status becomes [`CoreError::Upstream`].
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str, timeout: Duration) -> Result<T, CoreError> {
        let resp = self.request(Method::GET, url, None, timeout).await?;
        decode_json(url, resp)
    }

    /// POSTs `body` as JSON to `url` and decodes a JSON answer; a non-2xx status becomes [`CoreError::Upstream`].
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, CoreError> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| CoreError::Decode { url: url.to_string(), message: e.to_string() })?;
        let resp = self.request(Method::POST, url, Some(Bytes::from(bytes)), timeout).await?;
        decode_json(url, resp)
    }
}

/// Reads the certificates of a PEM file (a CA bundle); an error says what is wrong.
pub fn read_pem_certificates(path: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path} is not a PEM certificate file: {e:?}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no certificate"));
    }
    Ok(certs)
}

/// Builds a request with a JSON content type when a body is given.
pub fn build_request(method: Method, url: &str, body: Option<Bytes>) -> Result<Request<Full<Bytes>>, CoreError> {
    build_request_with_key(method, url, body, None)
}

/// [`build_request`] with an optional bearer token (`Authorization: Bearer ...`, marked sensitive).
pub fn build_request_with_key(
    method: Method,
    url: &str,
    body: Option<Bytes>,
    key: Option<&str>,
) -> Result<Request<Full<Bytes>>, CoreError> {
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(key) = key {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| CoreError::Unreachable {
            url: url.to_string(),
            message: "the API key holds characters a header cannot carry".into(),
        })?;
        value.set_sensitive(true);
        builder = builder.header(header::AUTHORIZATION, value);
    }
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    builder
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| CoreError::Unreachable { url: url.to_string(), message: format!("invalid request: {e}") })
}

fn decode_json<T: DeserializeOwned>(url: &str, resp: BufferedResponse) -> Result<T, CoreError> {
    if !resp.status.is_success() {
        return Err(CoreError::Upstream {
            url: url.to_string(),
            status: resp.status.as_u16(),
            message: error_message(&resp.body),
        });
    }
    serde_json::from_slice(&resp.body).map_err(|e| CoreError::Decode { url: url.to_string(), message: e.to_string() })
}

/// Extracts the human message from an Ollama (`{"error":"..."}`), OpenAI (`{"error":{"message":...}}`) or older
/// vLLM (`{"object":"error","message":...}`) error body, falling back to the raw text (truncated).
pub fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        // Google's APIs (Gemini's OpenAI-compatible endpoint too) wrap the error object in a list.
        let value = match value {
            serde_json::Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
            other => other,
        };
        match value.get("error") {
            // A signed-out Ollama asked for a cloud model says where to sign in.
            Some(serde_json::Value::String(s)) => {
                // That link would tie the server to whichever ollama.com account opens it: it goes to the
                // operator's log, not to the client.
                return match value.get("signin_url").and_then(|u| u.as_str()) {
                    Some(url) => {
                        // Once a minute at most: every request to a cloud model gets this answer until then.
                        static LOGGED: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
                        let due = LOGGED.lock().is_ok_and(|mut last| {
                            let due = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60));
                            if due {
                                *last = Some(std::time::Instant::now());
                            }
                            due
                        });
                        if due {
                            tracing::warn!(
                                signin_url = url,
                                "Ollama is not signed in to ollama.com: run `ollama signin` on its machine, or open this link"
                            );
                        }
                        format!(
                            "{s}: the Ollama server is not signed in to ollama.com (run `ollama signin` on its \
                             machine; the link is in Switchyard's log)"
                        )
                    }
                    None => s.clone(),
                };
            }
            Some(obj) => {
                if let Some(s) = obj.get("message").and_then(|m| m.as_str()) {
                    return s.to_string();
                }
            }
            None => {
                if let Some(s) = value.get("message").and_then(|m| m.as_str()) {
                    return s.to_string();
                }
            }
        }
    }
    String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string()
}

/// A copy of `req` to send again (the body is reference-counted bytes).
fn copy_request(req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
    let mut builder = Request::builder().method(req.method().clone()).uri(req.uri().clone()).version(req.version());
    if let Some(headers) = builder.headers_mut() {
        headers.clone_from(req.headers());
    }
    builder.body(req.body().clone()).ok()
}

/// True when the request failed because a reused connection was already closed by the server, before any answer.
fn stale_connection(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(h) = inner.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message() || h.is_canceled();
        }
        source = inner.source();
    }
    false
}

/// A failed request as a [`CoreError`]: `Refused` when no connection was made, `Unreachable` otherwise.
fn client_error(url: String, e: &hyper_util::client::legacy::Error) -> CoreError {
    let message = describe_client_error(e);
    if e.is_connect() { CoreError::Refused { url, message } } else { CoreError::Unreachable { url, message } }
}

fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

/// Joins a base URL (`http://127.0.0.1:11434/`) and a path (`/api/ps`) with exactly one slash.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_both_shapes() {
        assert_eq!(error_message(br#"{"error":"model 'x' not found"}"#), "model 'x' not found");
        assert_eq!(error_message(br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#), "bad");
        assert_eq!(error_message(b"plain text"), "plain text");
        let vllm = br#"{"object":"error","message":"This model's maximum context length is 2048 tokens","type":"BadRequestError","code":400}"#;
        assert_eq!(error_message(vllm), "This model's maximum context length is 2048 tokens");
        let gemini =
            br#"[{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(error_message(gemini), "Invalid JSON payload received.");
        let signed_out = br#"{"error":"unauthorized","signin_url":"https://ollama.com/connect?name=box&key=abc"}"#;
        let message = error_message(signed_out);
        assert!(message.starts_with("unauthorized: the Ollama server is not signed in to ollama.com"), "{message}");
        assert!(!message.contains("connect?"), "the sign-in link is not for clients: {message}");
    }

    #[test]
    fn joins_urls() {
        assert_eq!(join_url("http://h:1/", "/api/ps"), "http://h:1/api/ps");
        assert_eq!(join_url("http://h:1", "api/ps"), "http://h:1/api/ps");
    }

    /// A server that answers one request per connection but leaves it open, then closes it when the next request
    /// arrives on it without answering (as a server does at its keep-alive limit).
    async fn one_answer_per_connection() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.read(&mut buf).await;
                    // Dropped without an answer to the second request.
                });
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_request_on_a_connection_the_server_closed_is_sent_again() {
        let url = one_answer_per_connection().await;
        let client = HttpClient::default();
        for _ in 0..4 {
            let resp =
                client.request(Method::POST, &url, Some(Bytes::from_static(b"{}")), Duration::from_secs(5)).await;
            assert_eq!(resp.unwrap().status, StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn unreachable_upstream_is_reported_as_such() {
        let client =
            HttpClient::new(&HttpClientOptions { connect_timeout: Duration::from_millis(500), ..Default::default() });
        // Port 9 (discard) on loopback is closed on any sane test machine.
        let err = client
            .get_json::<serde_json::Value>("http://127.0.0.1:9/api/ps", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.is_connectivity(), "{err}");
    }
}
