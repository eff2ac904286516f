//! Assembling and serving the router: state from configuration, the axum `Router`, the per-request middleware
//! (request ids, access control, rate limits, metrics), and graceful shutdown.

use crate::api::{self, RequestCtx, RouteLabels};
use crate::error::{OllamaError, OpenAiError, RouterError};
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::profiles::ProfileTable;
use crate::state::{AppState, Parts};
use crate::writer::StoreWriter;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Response};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures_util::FutureExt;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use switchyard_core::ModelName;
use switchyard_core::catalog::Catalog;
use switchyard_core::config::{ClassifierKind, Config};
use switchyard_core::http::{HttpClient, HttpClientOptions};
use switchyard_core::ollama::OllamaClient;
use switchyard_core::size::parse_bytes;
use switchyard_core::store::{ModelRecord, SqlStore, Store};
use switchyard_vram::{AdminOp, ManagerIo, ManagerOptions, VramManager, probe};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The axum application with every route.
pub(crate) fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(api::ollama::root).head(api::ollama::root))
        .route("/api/version", get(api::ollama::version))
        .route("/api/tags", get(api::ollama::tags))
        .route("/api/ps", get(api::ollama::ps))
        .route("/api/show", post(api::ollama::show))
        .route("/api/pull", post(api::manage::forward))
        .route("/api/push", post(api::manage::forward))
        .route("/api/create", post(api::manage::forward))
        .route("/api/copy", post(api::manage::forward))
        .route("/api/delete", axum::routing::delete(api::manage::forward))
        .route("/api/blobs/{digest}", axum::routing::head(api::manage::blob).post(api::manage::blob))
        .route("/api/chat", post(api::inference))
        .route("/api/generate", post(api::inference))
        .route("/api/embed", post(api::inference))
        .route("/api/embeddings", post(api::inference))
        .route("/v1/models", get(api::openai::models))
        .route("/v1/models/{*model}", get(api::openai::model))
        .route("/v1/chat/completions", post(api::inference))
        .route("/v1/completions", post(api::inference))
        .route("/v1/responses", post(api::inference))
        .route("/v1/embeddings", post(api::inference))
        .route("/ui", get(api::ui::dashboard))
        .route("/admin/vram", get(api::admin::vram))
        .route("/admin/vram/events", get(api::admin::vram_events))
        .route("/admin/vram/load", post(api::admin::vram_op))
        .route("/admin/vram/unload", post(api::admin::vram_op))
        .route("/admin/vram/pin", post(api::admin::vram_op))
        .route("/admin/vram/unpin", post(api::admin::vram_op))
        .route("/admin/models", get(api::admin::models))
        .route("/admin/backends", get(api::admin::backends))
        .route("/admin/state", get(api::admin::node_state))
        .route("/admin/cache", get(api::admin::cache))
        .route("/admin/cache/invalidate", post(api::admin::cache_invalidate))
        .route("/admin/explain", get(api::admin::explain).post(api::admin::explain_post))
        .route("/admin/decisions", get(api::admin::decisions))
        .route("/admin/profile", post(api::admin::start_profile))
        .route("/admin/profile/{id}", get(api::admin::profile_status))
        .route("/metrics", get(api::admin::metrics))
        .route("/health", get(api::admin::health))
        .route("/ready", get(api::admin::ready))
        .route_layer(middleware::from_fn_with_state(state.clone(), gate));
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), cross_origin))
        .with_state(state)
}

/// Browser requests from other origins (`crate::cors`): answers preflights, refuses origins that are not allowed, and
/// lets allowed pages read the answer. Requests without an `Origin` header pass untouched.
async fn cross_origin(State(state): State<AppState>, request: Request, next: Next) -> Response<Body> {
    let Some(origin) = request.headers().get(axum::http::header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    // Same-origin by the `Host` header only on a network address (see `crate::cors`).
    let host = (!state.config.server.listen.ip().is_loopback())
        .then(|| request.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()))
        .flatten();
    let allowed = origin.to_str().is_ok_and(|o| crate::cors::allowed(o, host, &state.config.server.cors_origins));
    if !allowed {
        let shown = origin.to_str().map_or_else(|_| "that is not text".to_string(), |o| o.chars().take(200).collect());
        let error = RouterError::Forbidden(format!(
            "requests from the web origin {shown} are not allowed: add it to server.cors_origins to allow it"
        ));
        return unrouted(&state, &request, error);
    }
    if crate::cors::is_preflight(request.method(), request.headers()) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
        crate::cors::preflight_headers(&origin, request.headers(), response.headers_mut());
        return response;
    }
    let mut response = next.run(request).await;
    crate::cors::allow_origin(&origin, response.headers_mut());
    response
}

/// An error for a request no route took, in the shape of the surface its path belongs to, with a request id.
fn unrouted(state: &AppState, request: &Request, error: RouterError) -> Response<Body> {
    let mut response = reject(area(request.uri().path()), error);
    if let Ok(v) = HeaderValue::from_str(&request_id(state, request)) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn not_found(State(state): State<AppState>, request: Request) -> Response<Body> {
    let error = RouterError::NotFound(format!("no route for {} {}", request.method(), request.uri().path()));
    unrouted(&state, &request, error)
}

async fn method_not_allowed(State(state): State<AppState>, request: Request) -> Response<Body> {
    let error =
        RouterError::MethodNotAllowed(format!("{} is not allowed on {}", request.method(), request.uri().path()));
    unrouted(&state, &request, error)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Area {
    Ollama,
    OpenAi,
    Admin,
    /// The dashboard page: guarded like `Admin`, rate-limited like the inference routes.
    Ui,
    Open,
}

fn area(path: &str) -> Area {
    if path == "/v1" || path.starts_with("/v1/") {
        Area::OpenAi
    } else if path.starts_with("/admin") {
        Area::Admin
    } else if path == "/ui" || path.starts_with("/ui/") {
        Area::Ui
    } else if path.starts_with("/api/") {
        Area::Ollama
    } else {
        Area::Open
    }
}

/// The presented key: `Authorization: Bearer KEY`, or `x-switchyard-admin-key` / `x-api-key`.
fn presented_key(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(token) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))
    {
        return Some(token.trim().to_string());
    }
    ["x-switchyard-admin-key", "x-api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string()))
}

/// Whether the dashboard opens this request with the admin key `expected`: the `key` query on `/ui` itself, or the
/// cookie `GET /ui?key=` set, sent from the page's own origin.
fn dashboard_admits(request: &Request, area: Area, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let from_query = (area == Area::Ui)
        .then(|| request.uri().query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("key=")))
        .map(|k| String::from_utf8_lossy(&crate::api::admin::percent_decoded(k)).into_owned());
    if from_query.is_some_and(|k| key_matches(&k, expected)) {
        return true;
    }
    let token = request
        .headers()
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(api::ui::KEY_COOKIE)?.strip_prefix('=').map(str::to_string));
    token.is_some_and(|t| key_matches(&t, &api::ui::cookie_token(expected))) && same_origin(request)
}

/// True for a request from the page's own origin: `Sec-Fetch-Site: same-origin` (or `none`, a typed address, for a
/// GET), else an `Origin` equal to this host, else (a client that sends neither) a GET or HEAD. A cookie alone is
/// not enough for a write: a page on another port of the same host would send it too.
fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let read = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || (site == "none" && read);
    }
    if let Some(origin) = headers.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        return !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"));
    }
    read
}

fn key_matches(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

fn reject(area: Area, error: RouterError) -> Response<Body> {
    match area {
        Area::OpenAi => OpenAiError(error).into_response(),
        _ => OllamaError(error).into_response(),
    }
}

/// A client-supplied request id, if it is short and tame; otherwise a new one.
fn request_id(state: &AppState, request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(|| state.request_id(), str::to_string)
}

/// Request id, access control, rate limits and metrics for every routed request.
async fn gate(State(state): State<AppState>, mut request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let path = request.uri().path().to_string();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let area = area(&path);
    let id = request_id(&state, &request);
    let key = presented_key(&request);
    let server = &state.config.server;
    // The dashboard's cookie counts for the admin routes and the page only.
    let from_page = matches!(area, Area::Admin | Area::Ui) && dashboard_admits(&request, area, &server.admin_key);
    let admin_ok = key.as_deref().is_some_and(|k| key_matches(k, &server.admin_key)) || from_page;
    let manages_models = api::manage::serves(&path);
    let allowed = match area {
        Area::Ollama if manages_models && !server.admin_key.is_empty() && !admin_ok => Err(
            "managing models (pull, push, create, copy, delete, blobs) changes the machine and needs the admin key: \
             send `Authorization: Bearer $SWITCHYARD_ADMIN_KEY`",
        ),
        Area::Admin if !server.admin_key.is_empty() && !admin_ok => {
            Err("this admin route needs the admin key: send `Authorization: Bearer $SWITCHYARD_ADMIN_KEY`")
        }
        Area::Ui if !server.admin_key.is_empty() && !admin_ok => {
            Err("the dashboard needs the admin key: open /ui?key=YOUR_ADMIN_KEY once (a cookie keeps it)")
        }
        Area::Ollama | Area::OpenAi if !server.client_keys.is_empty() => {
            let client_ok = key.as_deref().is_some_and(|k| server.client_keys.iter().any(|c| key_matches(k, c)));
            if client_ok || admin_ok {
                Ok(())
            } else {
                Err("a client key is required: send `Authorization: Bearer KEY` with a key from server.client_keys")
            }
        }
        _ => Ok(()),
    };
    let mut response = if let Err(message) = allowed {
        reject(area, RouterError::Unauthorized(message.to_string()))
    } else if let Some(limited) = rate_limited(&state, &request, area, from_page, key.as_deref()) {
        limited
    } else {
        request.extensions_mut().insert(RequestCtx { request_id: id.clone(), started });
        // Model, category, decision and upstream times are recorded into the span as they become known.
        let span = tracing::debug_span!(
            "request",
            request_id = %id,
            route,
            model = tracing::field::Empty,
            category = tracing::field::Empty,
            decision_us = tracing::field::Empty,
            upstream_ms = tracing::field::Empty,
        );
        let handled = async {
            // A bug that panics in a handler becomes a 500 in the surface's shape, not a dropped connection.
            let response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
                Ok(response) => response,
                Err(_) => reject(area, RouterError::Internal(format!("a handler panicked on {route}"))),
            };
            // Inside the span, so that this line carries the model, category and timings recorded on the way.
            tracing::debug!(
                status = response.status().as_u16(),
                micros = started.elapsed().as_micros() as u64,
                "request handled"
            );
            response
        };
        tracing::Instrument::instrument(handled, span).await
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if route.starts_with("/api/") || route.starts_with("/v1/") {
        let labels = response.extensions().get::<RouteLabels>().cloned();
        let (model, category) = labels.map_or(("none".to_string(), "none"), |l| (l.model, l.category));
        let status = response.status().as_u16().to_string();
        state.metrics.requests.with_label_values(&[route, model.as_str(), category, status.as_str()]).inc();
    }
    response
}

/// The inference routes, the dashboard and the dashboard's own admin requests are rate-limited.
fn rate_limited(
    state: &AppState,
    request: &Request,
    area: Area,
    from_page: bool,
    key: Option<&str>,
) -> Option<Response<Body>> {
    let limited_area = matches!(area, Area::Ollama | Area::OpenAi | Area::Ui) || (area == Area::Admin && from_page);
    if !state.limiter.enabled() || !limited_area {
        return None;
    }
    let ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    match state.limiter.check(ip, key) {
        Ok(()) => None,
        Err(limited) => {
            let (kind, secs) = match limited {
                crate::limit::Limited::Ip(s) => ("ip", s),
                crate::limit::Limited::Key(s) => ("key", s),
            };
            state.metrics.rate_limited.with_label_values(&[kind]).inc();
            Some(reject(area, RouterError::RateLimited { retry_after_secs: secs }))
        }
    }
}

/// What both the server and `switchyard profile` run on: the store, the Ollama client, the catalog and the VRAM
/// manager, with the background writer that records the manager's load events.
pub(crate) struct BaseState {
    /// The checked configuration.
    pub config: Arc<Config>,
    /// The registry the writer and the VRAM manager report into (served at `/metrics` by the server).
    pub metrics: Metrics,
    /// The store, migrated.
    pub store: Arc<dyn Store>,
    /// The pooled HTTP client, shared by the Ollama client and the server's forwarder.
    pub http: HttpClient,
    /// Control calls to Ollama.
    pub ollama: OllamaClient,
    /// Ollama's models as read at start (empty when Ollama could not be reached then).
    pub catalog: Arc<Catalog>,
    /// The stored model records read at start (measurements), which the server's profile table is built from.
    pub records: Vec<ModelRecord>,
    /// The VRAM manager, through which every load goes.
    pub vram: VramManager,
    /// The background writer the VRAM manager's events go through.
    pub writer: StoreWriter,
}

impl std::fmt::Debug for BaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseState").field("models", &self.catalog.models.len()).finish()
    }
}

impl BaseState {
    /// Re-reads the catalog from Ollama and hands it to the VRAM manager.
    pub async fn refresh_catalog(&mut self) -> Result<(), switchyard_core::CoreError> {
        let catalog = Arc::new(Catalog::fetch(&self.ollama, &self.catalog).await?);
        self.vram.set_catalog(Arc::new(catalog.resident()));
        self.catalog = catalog;
        Ok(())
    }
}

/// Builds what profiling needs from configuration: store (migrated), Ollama client, catalog, GPU probe, VRAM
/// manager and the background writer. Its tasks (the manager's actor and poll, the writer) are owned by `tracker`
/// and stop with `shutdown`.
pub(crate) async fn build_base(
    config: Arc<Config>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<BaseState, RouterError> {
    let metrics = Metrics::new().map_err(|e| RouterError::Startup(format!("metrics: {e}")))?;
    let url = config.database.resolved_url();
    let store: Arc<dyn Store> = Arc::new(
        SqlStore::open(&url, config.database.max_connections)
            .await
            .map_err(|e| {
                RouterError::Startup(format!("{e} (database.url = {})", switchyard_core::store::redact_url(&url)))
            })?
            .with_node(&config.server.node_name),
    );
    let http = HttpClient::new(&HttpClientOptions {
        connect_timeout: Duration::from_millis(config.ollama.connect_timeout_ms),
        ..HttpClientOptions::default()
    });
    let ollama = OllamaClient::new(http.clone(), config.ollama.url.clone()).with_timeouts(
        Duration::from_secs(config.ollama.control_timeout_secs),
        Duration::from_secs(config.ollama.load_timeout_secs),
    );
    let fetched =
        if config.ollama.enabled { Catalog::fetch(&ollama, &Catalog::default()).await } else { Ok(Catalog::default()) };
    let catalog = match fetched {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read Ollama's models at start; retrying in the background");
            Catalog::default()
        }
    };
    let catalog = Arc::new(catalog);
    let records = store.models().await.map_err(|e| RouterError::Startup(e.to_string()))?;
    let total = if config.vram.total.is_empty() { None } else { parse_bytes(&config.vram.total).ok() };
    let (gpu_probe, warnings) = probe::select(config.vram.probe, &ollama, total, config.vram.gpu_count)
        .map_err(|e| RouterError::Startup(format!("{e}; set vram.probe = \"auto\" to fall back to Ollama's view")))?;
    let writer = StoreWriter::start(
        Arc::clone(&store),
        config.database.write_queue,
        metrics.store_writes_dropped.clone(),
        metrics.store_write_errors.clone(),
        metrics.cache_store_writes.clone(),
        shutdown.clone(),
        tracker,
    );
    let mut options = ManagerOptions::from_config(Arc::clone(&config), config.vram.gpu_count as usize);
    options.warnings = warnings;
    for stored in store.pins().await.map_err(|e| RouterError::Startup(e.to_string()))? {
        if let Ok(model) = ModelName::parse(&stored)
            && !options.pins.contains(&model)
        {
            options.pins.push(model);
        }
    }
    options.known = records
        .iter()
        .filter_map(|r| {
            Some((
                ModelName::parse(&r.name).ok()?,
                r.load_seconds,
                r.vram_bytes.filter(|_| r.vram_num_ctx == Some(config.vram.num_ctx)),
            ))
        })
        .collect();
    let io = ManagerIo {
        client: ollama.clone(),
        probe: gpu_probe,
        catalog: Arc::new(catalog.resident()),
        sink: Arc::new(writer.clone()),
        metrics: Some(metrics.vram.clone()),
    };
    let vram =
        VramManager::start(options, io, shutdown, tracker).await.map_err(|e| RouterError::Startup(e.to_string()))?;
    Ok(BaseState { config, metrics, store, http, ollama, catalog, records, vram, writer })
}

/// Builds the whole server state from configuration: what [`build_base`] builds, then the profiles, the forwarder,
/// and the server's background tasks (catalog refresher, embedding classifier, `vram.pin_fastest`). Tasks are
/// owned by `tracker` and stop with `shutdown`.
pub(crate) async fn build_state(
    config: Arc<Config>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<AppState, RouterError> {
    let BaseState { config, metrics, store, http, ollama, catalog, records, vram, writer } =
        build_base(config, shutdown.clone(), &tracker).await?;
    let scores = store.scores().await.map_err(|e| RouterError::Startup(e.to_string()))?;
    let profiles = ProfileTable::build(&scores, &records, &catalog);
    let forwarder = Forwarder::new(
        http,
        &config.ollama.url,
        crate::forward::ForwardLimits {
            first_byte: Duration::from_secs(config.ollama.first_byte_timeout_secs),
            answer: Duration::from_secs(config.ollama.answer_timeout_secs),
            idle: Duration::from_secs(config.ollama.idle_timeout_secs),
        },
    );
    let state = AppState::new(Parts {
        config: Arc::clone(&config),
        catalog: Catalog::clone(&catalog),
        profiles,
        vram,
        ollama,
        forwarder,
        metrics,
        writer,
        store,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    });
    state.refresh_backends().await;
    if !state.fleet.is_empty()
        && let Err(e) = state.reload_profiles().await
    {
        tracing::warn!(error = %e, "cannot read the fleet models' profiles from the store");
    }
    preload_backend_models(&state);
    spawn_fleet_pollers(&state);
    spawn_catalog_refresher(&state);
    spawn_profile_refresher(&state);
    if state.cache.persist() {
        let state = state.clone();
        let shutdown = state.shutdown.clone();
        state.tracker.clone().spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = state.cache.warm(state.store.as_ref()) => {}
            }
        });
    }
    if config.routing.classifier == ClassifierKind::Embedding {
        spawn_embedding_classifier(&state);
    }
    if config.vram.pin_fastest {
        spawn_pin_fastest(&state);
    }
    Ok(state)
}

/// Loads the models of `vram.preload` that a router-mode backend serves (the VRAM manager preloads Ollama's).
fn preload_backend_models(state: &AppState) {
    let catalog = state.catalog.load_full();
    for name in &state.config.vram.preload {
        let Some(target) = ModelName::parse(name)
            .ok()
            .and_then(|m| catalog.get(&m).and_then(|s| s.backend.clone()))
            .filter(|b| !b.fleet)
        else {
            continue;
        };
        let Some(backend) = state.backends.get(target.index).cloned() else { continue };
        if !backend.manages_models() {
            continue;
        }
        let shutdown = state.shutdown.clone();
        state.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = backend.manage(&target.id, true) => match result {
                    Ok(message) => tracing::info!(%message, "preloaded"),
                    Err(e) => tracing::warn!(model = %target.id, error = %e, "cannot preload the backend's model"),
                },
            }
        });
    }
}

/// Builds the embedding classifier in the background (the rules classify until it is ready).
fn spawn_embedding_classifier(state: &AppState) {
    let state = state.clone();
    state.tracker.clone().spawn(async move {
        let name = state.config.routing.embedding_model.clone();
        let built = async {
            let model = ModelName::parse(&name).map_err(|e| e.to_string())?;
            let _lease = state.vram.acquire_within(&model, Duration::from_secs(state.config.ollama.load_timeout_secs)).await.map_err(|e| e.to_string())?;
            let examples = crate::classify::bundled_examples().map_err(|e| e.to_string())?;
            crate::classify::EmbeddingClassifier::build(state.ollama.http().clone(), state.ollama.base_url(), &name, &examples)
                .await
                .map_err(|e| e.to_string())
        };
        let result = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            r = built => r,
        };
        match result {
            Ok(classifier) => {
                tracing::info!(model = %name, examples = classifier.len(), "embedding classifier ready");
                state.embedding_classifier.store(Arc::new(Some(classifier)));
            }
            Err(e) => tracing::warn!(model = %name, error = %e, "cannot build the embedding classifier; classifying with the rules"),
        }
    });
}

/// The chat model to keep warm for `vram.pin_fastest`: the fastest profiled decoder, else the smallest model.
pub(crate) fn fastest_model(catalog: &Catalog, profiles: &ProfileTable) -> Option<ModelName> {
    // A model the local GPUs hold: not another server's, and not a cloud model (nothing to keep warm).
    let chat = catalog.models.values().filter(|s| s.capabilities.completion && s.local());
    let profiled = chat
        .clone()
        .filter_map(|s| profiles.get(&s.name).and_then(|p| p.decode_tps).map(|tps| (tps, s)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, s)| s.name.clone());
    profiled.or_else(|| chat.min_by_key(|s| s.size_bytes).map(|s| s.name.clone()))
}

/// Pins the fastest chat model (`vram.pin_fastest`, set by the low-latency preset).
fn spawn_pin_fastest(state: &AppState) {
    let state = state.clone();
    state.tracker.clone().spawn(async move {
        let Some(model) = fastest_model(&state.catalog.load(), &state.profiles.load()) else {
            tracing::warn!("vram.pin_fastest: no chat model to pin");
            return;
        };
        let pin = state.vram.admin(AdminOp::Pin, &model);
        let result = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            r = pin => r,
        };
        match result {
            Ok(message) => tracing::info!(model = %model, "vram.pin_fastest: {message}"),
            Err(e) => tracing::warn!(model = %model, error = %e, "vram.pin_fastest: cannot pin"),
        }
    });
}

/// Reads each fleet node's state every `poll_interval_ms` of its entry; when the fleet's models change, the catalog
/// and the profiles follow.
fn spawn_fleet_pollers(state: &AppState) {
    for node in state.fleet.nodes() {
        let state = state.clone();
        let node = std::sync::Arc::clone(node);
        let shutdown = state.shutdown.clone();
        state.tracker.clone().spawn(async move {
            let mut ticker = tokio::time::interval(node.poll_interval());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if state.fleet.poll(&node).await {
                    state.fleet_changed();
                    if let Err(e) = state.reload_profiles().await {
                        tracing::warn!(error = %e, "cannot reload profiles from the store; keeping the ones in memory");
                    }
                }
                if node.take_joined() {
                    // Its pins and preloads may take a load each: asked beside the readings, not in their way.
                    let node = std::sync::Arc::clone(&node);
                    let shutdown = state.shutdown.clone();
                    state.tracker.spawn(async move {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = node.join() => {}
                        }
                    });
                }
            }
        });
    }
}

/// Re-reads the catalog every `ollama.catalog_refresh_secs`; reloads profiles when models changed.
fn spawn_catalog_refresher(state: &AppState) {
    let state = state.clone();
    let every = Duration::from_secs(state.config.ollama.catalog_refresh_secs);
    let shutdown = state.shutdown.clone();
    state.tracker.clone().spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let before = state.catalog.load_full();
            if let Err(e) = state.refresh_catalog().await {
                tracing::debug!(error = %e, "catalog refresh failed");
                continue;
            }
            if *state.catalog.load_full() != *before
                && let Err(e) = state.reload_profiles().await
            {
                tracing::warn!(error = %e, "cannot reload profiles from the store; keeping the ones in memory");
            }
        }
    });
}

/// Asks the store every `database.profile_refresh_secs` whether the scores changed (profiled by `switchyard profile`
/// or another replica) and reloads the profiles when they did. The first check always reloads, so a score written
/// while the server was starting is not missed.
fn spawn_profile_refresher(state: &AppState) {
    let state = state.clone();
    let every = Duration::from_secs(state.config.database.profile_refresh_secs);
    let shutdown = state.shutdown.clone();
    state.tracker.clone().spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut seen = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let version = match state.store.scores_version().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the store's profile version");
                    continue;
                }
            };
            if seen == Some(version) {
                continue;
            }
            match state.reload_profiles().await {
                Ok(()) => {
                    if seen.is_some() {
                        tracing::info!(scores = version.0, "profiles changed in the store; reloaded");
                    }
                    seen = Some(version);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload profiles from the store; keeping the ones in memory")
                }
            }
        }
    });
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests and streams finish for up to `grace`.
///
/// Each connection is served by hyper's HTTP/1 server with keep-alive and `TCP_NODELAY`, and closed when it takes
/// longer than `server.header_timeout_secs` to send a request's headers (a connection that sends nothing, stops
/// halfway through its headers, or sits idle after a keep-alive request). Without that, idle or half-open
/// connections would pile up until they held every file descriptor and no client was served. The client's address
/// reaches handlers as axum's `ConnectInfo`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let header_timeout = state.config.server.header_timeout();
    let app = app(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tokio::select! {
                        () = accept_failed(&e) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Finished connections are reaped at each accept, so the set holds little more than the open ones.
        while connections.try_join_next().is_some() {}
        // Streamed tokens are small writes: without TCP_NODELAY the second one waits for the client's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
        }
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        let connection = graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a client connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections; waiting for in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    connections.shutdown().await;
    Ok(())
}

/// After a failed accept: a connection that failed before it was accepted is nothing to wait for; anything else
/// (out of file descriptors) gets a pause before the next accept instead of a busy loop.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A server running in this process (tests, the demo).
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub(crate) state: AppState,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The models it knows now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.state.catalog.load_full()
    }

    /// Reads the profiles from the store again (what a finished profiling job does).
    pub async fn reload_profiles(&self) -> Result<(), RouterError> {
        Ok(self.state.reload_profiles().await?)
    }

    /// Stops the server and its tasks and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Builds the state, binds `config.server.listen` (port 0 picks a free port) and serves in the background.
pub async fn spawn(config: Arc<Config>) -> Result<Running, RouterError> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let state = build_state(Arc::clone(&config), shutdown.clone(), tracker.clone()).await?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| RouterError::Startup(format!("cannot listen on {}: {e}", config.server.listen)))?;
    let addr = listener.local_addr().map_err(|e| RouterError::Startup(e.to_string()))?;
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let task = tokio::spawn(serve(listener, state.clone(), shutdown.clone(), grace));
    Ok(Running { addr, state, shutdown, tracker, task })
}
