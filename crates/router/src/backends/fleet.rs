//! The fleet: other boxes, each running Ollama with `switchyard serve` beside it (`[[backends]] kind =
//! "switchyard"`). This router is then a front.
//!
//! Every `poll_interval_ms` the front reads each node's `GET /admin/state` (its loaded models, their queues, what
//! loading a cold one would cost and evict there, its measured speeds). The union of the nodes' models joins the
//! catalog as fleet models, and [`FleetView`] holds each model's offer on each node, which the scorer reads to price
//! a (model, node) pair with the same utility a node uses: a model already loaded somewhere is cheaper than a cold
//! load elsewhere, a node's queue counts, and a model cold everywhere goes to the node whose own eviction cost is
//! lowest, so that hot sets separate across boxes instead of every box loading every model.
//!
//! Admission orders the nodes that can serve the model, best first; forwarding sends the request, for that model by
//! name, to the first, whose own VRAM manager admits it. A node that refuses (503: no room), does not know the model,
//! or fails before the first byte is skipped for the next. Until the next poll, the front counts its own forwards in
//! the view (a request in flight, a load it started), so a burst does not pile onto one node between two readings.

use super::{Admission, Backend, BackendStats, BackendView, Hold, read_key};
use crate::engine::Surface;
use crate::error::RouterError;
use crate::forward::{ForwardFailure, Forwarder, Reply};
use crate::request::{Control, Endpoint, Prepared, Target};
use crate::score::{FleetView, NodeOffer, PRIOR_DECODE_TPS, PRIOR_PREFILL_TPS, RequestSize};
use arc_swap::ArcSwap;
use http::Method;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use switchyard_core::ModelName;
use switchyard_core::catalog::ModelSpec;
use switchyard_core::config::{BackendConfig, BackendKind};
use switchyard_core::fleet::{NodeGpu, NodeModel, NodeState};
use switchyard_core::http::{HttpClient, HttpClientOptions, build_request_with_key, error_message, join_url};

/// What the front last read from a node.
#[derive(Debug, Default)]
struct NodeStatus {
    /// The last reading succeeded and the node's Ollama answers, and no forward failed since.
    healthy: bool,
    /// The last reading succeeded (a forward that failed since does not change it): a node whose reading
    /// succeeds after one failed has joined again.
    read_ok: bool,
    /// Why the last reading failed, why the node is not ready, or how the last forward failed.
    error: Option<String>,
    /// The last successful reading: its models stay in the catalog while the node is down (requests for them get a
    /// 503, not a 404), but nothing is offered from it.
    state: Option<NodeState>,
}

/// One node of the fleet.
#[derive(Debug)]
pub(crate) struct Node {
    /// Position in the fleet.
    index: usize,
    /// Its `[[backends]]` entry: name, URL, timeouts, reading interval, pins and preloads.
    config: BackendConfig,
    /// The key its admin routes need (from `api_key_env`), sent as a bearer token; never shown.
    key: Option<String>,
    /// For readings, control calls and model management.
    http: HttpClient,
    /// For requests: the native body to the node's surface, awaiting the first chunk.
    forwarder: Forwarder,
    /// What its last reading said.
    status: Mutex<NodeStatus>,
    /// This front's counters of it, for `/admin/backends`.
    stats: BackendStats,
    metrics: NodeMetrics,
    /// The node answered after not answering; cleared by `take_joined`.
    joined: std::sync::atomic::AtomicBool,
}

/// A node's series: `switchyard_backend_requests_total{backend=NODE, outcome}`, `switchyard_backend_in_flight` and
/// `switchyard_fleet_node_up`.
#[derive(Debug)]
struct NodeMetrics {
    ok: prometheus::IntCounter,
    error: prometheus::IntCounter,
    no_room: prometheus::IntCounter,
    in_flight: prometheus::IntGauge,
    up: prometheus::IntGauge,
}

impl NodeMetrics {
    fn new(metrics: &crate::metrics::Metrics, node: &str) -> Self {
        let requests = |outcome: &str| metrics.backend_requests.with_label_values(&[node, outcome]);
        Self {
            ok: requests("ok"),
            error: requests("error"),
            no_room: requests("no_room"),
            in_flight: metrics.backend_in_flight.with_label_values(&[node]),
            up: metrics.fleet_node_up.with_label_values(&[node]),
        }
    }
}

impl Node {
    fn new(index: usize, config: BackendConfig, metrics: &crate::metrics::Metrics) -> Self {
        let metrics = NodeMetrics::new(metrics, &config.name);
        let key = read_key(&config);
        let http = HttpClient::new(&HttpClientOptions {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            ..HttpClientOptions::default()
        });
        let forwarder = Forwarder::new(
            http.clone(),
            &config.url,
            crate::forward::ForwardLimits {
                first_byte: Duration::from_secs(config.first_byte_timeout_secs),
                answer: Duration::from_secs(config.answer_timeout_secs),
                idle: Duration::from_secs(config.idle_timeout_secs),
            },
        )
        .with_bearer(key.as_deref());
        Self {
            index,
            config,
            key,
            http,
            forwarder,
            status: Mutex::new(NodeStatus::default()),
            stats: BackendStats::default(),
            metrics,
            joined: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// How often the node's state is read.
    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.config.poll_interval_ms.max(10))
    }

    fn healthy(&self) -> bool {
        self.status.lock().is_ok_and(|s| s.healthy)
    }

    /// A buffered call to the node's `path` with its key, answered within `timeout`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<bytes::Bytes>,
        timeout: Duration,
    ) -> Result<switchyard_core::http::BufferedResponse, RouterError> {
        let url = join_url(&self.config.url, path);
        let request = build_request_with_key(method, &url, body, self.key.as_deref())
            .map_err(|e| RouterError::Internal(e.to_string()))?;
        self.http.send_buffered(request, timeout).await.map_err(RouterError::from)
    }

    /// Reads the node's `/admin/state`.
    async fn read(&self) -> Result<NodeState, String> {
        let url = join_url(&self.config.url, "/admin/state");
        let timeout = Duration::from_secs(self.config.control_timeout_secs);
        let resp = self.call(Method::GET, "/admin/state", None, timeout).await.map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!("{url} answered {}: {}", resp.status.as_u16(), error_message(&resp.body)));
        }
        serde_json::from_slice(&resp.body).map_err(|e| format!("{url} is not a Switchyard node's state: {e}"))
    }

    /// Reads the node and keeps what it said; true when what it serves or holds changed. A node that answers
    /// after not answering (or for the first time) is marked as joined, for [`Node::take_joined`].
    async fn poll(&self) -> bool {
        let read = self.read().await;
        let Ok(mut status) = self.status.lock() else { return false };
        if !(status.read_ok && status.state.as_ref().is_some_and(|s| s.ready)) && read.as_ref().is_ok_and(|s| s.ready) {
            self.joined.store(true, Ordering::Relaxed);
        }
        match read {
            Ok(state) => {
                let changed = status.state.as_ref() != Some(&state) || !status.healthy;
                status.healthy = state.ready;
                status.read_ok = true;
                self.metrics.up.set(i64::from(state.ready));
                status.error = (!state.ready).then(|| "the node's Ollama does not answer".to_string());
                status.state = Some(state);
                changed
            }
            Err(e) => {
                if status.healthy {
                    tracing::warn!(node = %self.config.name, error = %e, "fleet node went away");
                }
                let changed = status.healthy;
                status.healthy = false;
                status.read_ok = false;
                self.metrics.up.set(0);
                status.error = Some(e);
                changed
            }
        }
    }

    /// Sends `body` to the node's `path` as it came (model management), with the node's key: the node's answer.
    pub(crate) async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, RouterError> {
        let url = join_url(&self.config.url, path);
        let request = build_request_with_key(method, &url, Some(body), self.key.as_deref())
            .map_err(|e| RouterError::Internal(e.to_string()))?;
        self.http.send(request).await.map_err(RouterError::from)
    }

    /// True once after the node joined (answered after not answering): its pins and preloads are then due.
    pub(crate) fn take_joined(&self) -> bool {
        self.joined.swap(false, Ordering::Relaxed)
    }

    /// Asks the node for its configured pins and preloads (`pin`, `preload` of its entry).
    pub(crate) async fn join(&self) {
        let ops = self.config.pin.iter().map(|m| ("pin", m)).chain(self.config.preload.iter().map(|m| ("load", m)));
        for (op, model) in ops {
            match self.vram_op(op, model).await {
                Ok(_) => tracing::info!(node = %self.config.name, model = %model, op, "asked of the fleet node"),
                Err(e) => {
                    tracing::warn!(node = %self.config.name, model = %model, op, error = %e, "the fleet node refused")
                }
            }
        }
    }

    /// Asks the node's own `POST /admin/vram/{op}` for `model`: its answer, or its error.
    async fn vram_op(&self, op: &str, model: &str) -> Result<serde_json::Value, RouterError> {
        let body = bytes::Bytes::from(serde_json::json!({ "model": model }).to_string());
        let timeout = Duration::from_secs(self.config.first_byte_timeout_secs);
        let resp = self.call(Method::POST, &format!("/admin/vram/{op}"), Some(body), timeout).await?;
        let message = || format!("fleet node {}: {}", self.config.name, error_message(&resp.body));
        match resp.status.as_u16() {
            200..=299 => serde_json::from_slice(&resp.body).map_err(|e| RouterError::UpstreamFailed(e.to_string())),
            status @ 400..=499 => Err(RouterError::UpstreamRejected { status, message: message() }),
            503 => Err(RouterError::Busy { message: message(), retry_after_secs: 1 }),
            _ => Err(RouterError::UpstreamFailed(message())),
        }
    }

    /// Marks the node unreachable after a failed forward (until its next reading says otherwise).
    fn down(&self, why: &str) {
        if let Ok(mut status) = self.status.lock() {
            if status.healthy {
                tracing::warn!(node = %self.config.name, error = %why, "fleet node failed a request; skipped until it answers again");
            }
            status.healthy = false;
            status.error = Some(why.to_string());
            self.metrics.up.set(0);
        }
    }

    fn view(&self) -> BackendView {
        let status = self.status.lock();
        let (healthy, error, models, loaded) = match status.as_deref() {
            Ok(s) => {
                let models = s.state.as_ref().map(|st| st.models.iter().map(|m| m.name.clone()).collect());
                let loaded =
                    s.state.as_ref().map(|st| st.models.iter().filter(|m| m.loaded).map(|m| m.name.clone()).collect());
                (s.healthy, s.error.clone(), models.unwrap_or_default(), loaded)
            }
            Err(_) => (false, Some("state unreadable".to_string()), Vec::new(), None),
        };
        let s = &self.stats;
        BackendView {
            name: self.config.name.clone(),
            kind: "switchyard",
            url: self.config.url.clone(),
            authenticated: self.key.is_some(),
            priced: false,
            price_input_per_mtok: 0.0,
            price_output_per_mtok: 0.0,
            healthy,
            error,
            models,
            max_concurrency: 0,
            in_flight: s.in_flight.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            input_tokens: 0,
            output_tokens: 0,
            spend: 0.0,
            latency_ms: None,
            loaded,
        }
    }
}

/// The fleet's nodes and what they offer.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    nodes: Vec<Arc<Node>>,
    view: Arc<ArcSwap<FleetView>>,
    /// The union of the nodes' models, as catalog entries (the first node listing a model describes it).
    specs: ArcSwap<Vec<ModelSpec>>,
}

/// What a fleet request holds: the nodes to try, best first, and the one serving it once it answered.
#[derive(Debug)]
pub(crate) struct FleetHold {
    /// The model asked for.
    model: ModelName,
    /// The healthy nodes that can serve it, best first (positions in the fleet).
    order: Vec<usize>,
    /// The node that answered, counted in flight until the request ends.
    serving: OnceLock<Serving>,
}

impl FleetHold {
    /// The node that answered, once one did.
    pub(crate) fn node(&self) -> Option<&str> {
        self.serving.get().map(|s| s.node.name())
    }
}

/// A request sent to a node: counted in the node's in-flight, and in the front's view of it, until dropped.
#[derive(Debug)]
struct Serving {
    /// The node serving it.
    node: Arc<Node>,
    /// The view whose in-flight count it holds.
    view: Arc<ArcSwap<FleetView>>,
    /// The model it serves.
    model: ModelName,
}

impl Serving {
    fn start(node: &Arc<Node>, view: &Arc<ArcSwap<FleetView>>, model: &ModelName) -> Self {
        node.stats.requests.fetch_add(1, Ordering::Relaxed);
        node.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        node.metrics.in_flight.inc();
        started(view, node.index, model);
        Self { node: Arc::clone(node), view: Arc::clone(view), model: model.clone() }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.node.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.node.metrics.in_flight.dec();
        finished(&self.view, self.node.index, &self.model);
    }
}

/// Counts a forward of `model` to `node` in the view until the next reading: one more in flight, and a cold model
/// now loading there (what it evicts there no longer loaded).
fn started(view: &ArcSwap<FleetView>, node: usize, model: &ModelName) {
    view.rcu(|view| {
        let mut view = FleetView::clone(view);
        let evicted = view
            .offers
            .get_mut(model)
            .and_then(|offers| offers.iter_mut().find(|o| o.node == node))
            .map(|o| {
                o.in_flight += 1;
                let evicted = if o.loaded { Vec::new() } else { std::mem::take(&mut o.evicts) };
                o.loaded = true;
                o.eviction_seconds = 0.0;
                evicted
            })
            .unwrap_or_default();
        for victim in evicted {
            if let Some(o) = view.offers.get_mut(&victim).and_then(|os| os.iter_mut().find(|o| o.node == node)) {
                o.loaded = false;
            }
        }
        view
    });
}

/// Undoes [`started`]'s in-flight count when the request ended.
fn finished(view: &ArcSwap<FleetView>, node: usize, model: &ModelName) {
    view.rcu(|view| {
        let mut view = FleetView::clone(view);
        if let Some(o) = view.offers.get_mut(model).and_then(|os| os.iter_mut().find(|o| o.node == node)) {
            o.in_flight = o.in_flight.saturating_sub(1);
        }
        view
    });
}

impl Fleet {
    pub(crate) fn new(configs: &[BackendConfig], metrics: &crate::metrics::Metrics) -> Self {
        let nodes: Vec<Arc<Node>> = configs
            .iter()
            .filter(|c| c.kind == BackendKind::Switchyard)
            .enumerate()
            .map(|(i, c)| Arc::new(Node::new(i, c.clone(), metrics)))
            .collect();
        Self { nodes, ..Self::default() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The offers the scorer reads.
    pub(crate) fn view(&self) -> Arc<FleetView> {
        self.view.load_full()
    }

    /// The fleet's models, as catalog entries.
    pub(crate) fn specs(&self) -> Vec<ModelSpec> {
        self.specs.load().as_ref().clone()
    }

    /// The nodes that answer now, in configuration order.
    pub(crate) fn healthy_nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.iter().filter(|n| n.healthy()).cloned().collect()
    }

    /// Whether any node is healthy.
    pub(crate) fn any_healthy(&self) -> bool {
        self.nodes.iter().any(|n| n.healthy())
    }

    /// `/admin/backends` rows, one per node.
    pub(crate) fn views(&self) -> Vec<BackendView> {
        self.nodes.iter().map(|n| n.view()).collect()
    }

    /// The nodes (each is read on its own).
    pub(crate) fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// Reads one node and rebuilds the view; true when the fleet's models changed (the catalog must follow).
    pub(crate) async fn poll(&self, node: &Node) -> bool {
        if !node.poll().await {
            return false;
        }
        let before: Vec<(ModelName, String)> =
            self.specs.load().iter().map(|s| (s.name.clone(), s.digest.clone())).collect();
        self.rebuild();
        let after: Vec<(ModelName, String)> =
            self.specs.load().iter().map(|s| (s.name.clone(), s.digest.clone())).collect();
        before != after
    }

    /// Reads every node at once; true when the fleet's models changed.
    pub(crate) async fn poll_all(&self) -> bool {
        let changed = futures_util::future::join_all(self.nodes.iter().map(|n| n.poll())).await;
        if !changed.iter().any(|c| *c) {
            return false;
        }
        let before = self.specs.load_full();
        self.rebuild();
        *before != *self.specs.load_full()
    }

    /// Rebuilds the offers and the catalog entries from the nodes' last readings.
    fn rebuild(&self) {
        let mut offers: BTreeMap<ModelName, Vec<NodeOffer>> = BTreeMap::new();
        let mut specs: BTreeMap<ModelName, ModelSpec> = BTreeMap::new();
        for node in &self.nodes {
            let Ok(status) = node.status.lock() else { continue };
            let Some(state) = status.state.as_ref() else { continue };
            let node_name: Arc<str> = Arc::from(node.name());
            for m in &state.models {
                let Some(spec) = m.spec() else { continue };
                if !status.healthy {
                    // Still in the catalog (a request for it gets a 503 while its nodes are down), not offered.
                    specs.entry(spec.name.clone()).or_insert(spec);
                    continue;
                }
                offers.entry(spec.name.clone()).or_default().push(NodeOffer {
                    node: node.index,
                    node_name: Arc::clone(&node_name),
                    loaded: m.loaded,
                    in_flight: m.in_flight + m.queued,
                    parallel: state.num_parallel.max(1),
                    load_seconds: m.load_seconds,
                    eviction_seconds: m.eviction_seconds,
                    evicts: m.evicts.iter().filter_map(|e| ModelName::parse(e).ok()).collect(),
                    refused: m.refused.clone(),
                    prefill_tps: m.prefill_tps,
                    decode_tps: m.decode_tps,
                    context: m.context_length,
                });
                // The model's context in the catalog is the longest a node offers: the scorer passes over it only
                // for a prompt no node fits, and the ranking of its nodes passes over those it does not fit.
                let entry = specs.entry(spec.name.clone()).or_insert_with(|| spec.clone());
                entry.context_length = match (entry.context_length, spec.context_length) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    // A node that does not say: no limit known.
                    _ => None,
                };
            }
        }
        self.view.store(Arc::new(FleetView { offers }));
        self.specs.store(Arc::new(specs.into_values().collect()));
    }

    /// Asks a healthy node (one that serves `model`, when given) a control call (`/api/version`, `/api/show`): its
    /// answer as it gave it.
    pub(crate) async fn ask(
        &self,
        method: Method,
        path: &str,
        body: Option<bytes::Bytes>,
        model: Option<&ModelName>,
    ) -> Result<switchyard_core::http::BufferedResponse, RouterError> {
        let view = self.view.load_full();
        let serves = |node: &Node| {
            model.is_none_or(|m| view.offers.get(m).is_some_and(|os| os.iter().any(|o| o.node == node.index)))
        };
        let Some(node) = self.nodes.iter().find(|n| n.healthy() && serves(n)) else {
            return Err(RouterError::Unreachable("no fleet node answers; check the nodes in /admin/backends".into()));
        };
        node.call(method, path, body, Duration::from_secs(node.config.control_timeout_secs)).await
    }

    /// The fleet's loaded models, as `/api/ps` entries of `specs` (each once, with the nodes holding it).
    pub(crate) fn loaded(&self) -> Vec<(ModelSpec, Vec<Arc<str>>)> {
        let view = self.view.load_full();
        self.specs
            .load()
            .iter()
            .filter_map(|spec| {
                let nodes: Vec<Arc<str>> = view
                    .offers
                    .get(&spec.name)?
                    .iter()
                    .filter(|o| o.loaded)
                    .map(|o| Arc::clone(&o.node_name))
                    .collect();
                (!nodes.is_empty()).then(|| (spec.clone(), nodes))
            })
            .collect()
    }

    /// The healthy nodes that can serve `model`, best first for a request of this size.
    fn order(&self, view: &FleetView, model: &ModelName, size: RequestSize) -> Vec<usize> {
        view.ranked(model, size, PRIOR_PREFILL_TPS, PRIOR_DECODE_TPS)
            .into_iter()
            .map(|(o, _)| o.node)
            .filter(|i| self.nodes.get(*i).is_some_and(|n| n.healthy()))
            .collect()
    }

    /// A VRAM operation (`load`, `unload`, `pin`, `unpin`) through the front: on the node named `node`, or, without
    /// one, a load on the node that would serve the model best and an unload on every node holding it (a pin
    /// belongs to a node, so it must name one).
    pub(crate) async fn vram_op(
        &self,
        op: &str,
        model: &ModelName,
        node: Option<&str>,
    ) -> Result<serde_json::Value, RouterError> {
        let targets: Vec<&Arc<Node>> = match node {
            Some(name) => match self.nodes.iter().find(|n| n.name() == name) {
                Some(n) => vec![n],
                None => {
                    let known: Vec<&str> = self.nodes.iter().map(|n| n.name()).collect();
                    return Err(RouterError::bad(
                        format!("no fleet node is called {name:?}; the nodes are {}", known.join(", ")),
                        Some("node".into()),
                    ));
                }
            },
            None => {
                let view = self.view.load_full();
                let chosen: Vec<usize> = match op {
                    "load" => {
                        let empty = RequestSize { prompt_tokens: 0, out_tokens: 0, context_tokens: None };
                        self.order(&view, model, empty).into_iter().take(1).collect()
                    }
                    "unload" => {
                        view.offers.get(model).into_iter().flatten().filter(|o| o.loaded).map(|o| o.node).collect()
                    }
                    _ => {
                        return Err(RouterError::bad(
                            format!("a pin belongs to a node: name one with \"node\" ({op} {model})"),
                            Some("node".into()),
                        ));
                    }
                };
                if chosen.is_empty() && op == "load" {
                    return Err(RouterError::Busy {
                        message: format!("no fleet node can load {model} now; retry shortly"),
                        retry_after_secs: 1,
                    });
                }
                chosen.into_iter().filter_map(|i| self.nodes.get(i)).collect()
            }
        };
        let mut answers = Vec::new();
        for n in targets {
            let mut answer = n.vram_op(op, model.as_str()).await?;
            if let Some(obj) = answer.as_object_mut() {
                obj.insert("node".into(), serde_json::Value::String(n.name().to_string()));
            }
            answers.push(answer);
        }
        let _ = self.poll_all().await;
        Ok(match answers.len() {
            1 => answers.swap_remove(0),
            _ => serde_json::json!({ "model": model, "nodes": answers }),
        })
    }

    /// Model management through a front (`/api/pull`, `/api/push`, `/api/create`, `/api/copy`, `/api/delete`): done
    /// on every node that answers, one after the other, so that a model pulled, copied, created or deleted through
    /// the front is so on every box. A streamed pull relays each node's progress in turn (a node that fails adds an
    /// error line). Otherwise a node without the model (404) leaves it to the others, any other refusal answers for
    /// all, and else a node's success answers. Also says whether a whole answer changed the nodes' models (the
    /// catalog should be read again before answering; after a stream, the nodes' readings show the change).
    pub(crate) async fn manage(
        &self,
        method: Method,
        path: &str,
        bytes: bytes::Bytes,
    ) -> Result<(http::Response<axum::body::Body>, bool), RouterError> {
        use axum::body::Body;
        use bytes::Bytes;
        use futures_util::StreamExt;
        use http::{HeaderValue, StatusCode, header};
        use http_body_util::BodyExt;
        let nodes = self.healthy_nodes();
        let Some((first, rest)) = nodes.split_first() else {
            return Err(RouterError::Unreachable(
                "no fleet node answers, and models are managed on the nodes: check `switchyard backends`".into(),
            ));
        };
        let upstream = first.send_raw(method.clone(), path, bytes.clone()).await?;
        let status = upstream.status();
        let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
        let streamed = content_type.as_ref().and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("ndjson"));
        let body = if streamed && status.is_success() {
            let (path, rest) = (path.to_string(), rest.to_vec());
            let more = futures_util::stream::iter(rest)
                .then(move |node| {
                    let (method, path, bytes) = (method.clone(), path.clone(), bytes.clone());
                    async move {
                        let failed = |message: String| {
                            let line = format!("{}\n", serde_json::json!({ "error": message }));
                            futures_util::stream::once(async move { Ok::<Bytes, String>(Bytes::from(line)) }).boxed()
                        };
                        match node.send_raw(method, &path, bytes).await {
                            Ok(r) if r.status().is_success() => {
                                r.into_body().into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string())).boxed()
                            }
                            Ok(r) => failed(format!("fleet node {} answered {}", node.name(), r.status().as_u16())),
                            Err(e) => failed(format!("fleet node {}: {e}", node.name())),
                        }
                    }
                })
                .flatten();
            let all = upstream.into_body().into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string())).chain(more);
            Body::from_stream(all)
        } else {
            // A node that does not have the model (404) leaves it to the others; any other refusal stops the round and
            // answers for all; otherwise a node's success answers.
            let mut answers = vec![(status, collect(upstream, path).await?)];
            for node in rest {
                if answers.last().is_some_and(|(s, _)| !s.is_success() && *s != StatusCode::NOT_FOUND) {
                    break;
                }
                let r = node.send_raw(method.clone(), path, bytes.clone()).await?;
                answers.push((r.status(), collect(r, path).await?));
            }
            let refused = answers.iter().position(|(s, _)| !s.is_success() && *s != StatusCode::NOT_FOUND);
            let done = answers.iter().rposition(|(s, _)| s.is_success());
            let chosen = refused.or(done).unwrap_or(answers.len() - 1);
            let answer = answers.swap_remove(chosen);
            let changed = answer.0.is_success() && path != "/api/push";
            let mut response = http::Response::new(Body::from(answer.1));
            *response.status_mut() = answer.0;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok((response, changed));
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        if let Some(v) = content_type {
            response.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        Ok((response, false))
    }

    /// An empty-prompt load or unload of a fleet model: a load on the node that would serve it best, an unload on
    /// every node holding it.
    pub(crate) async fn control(&self, model: &ModelName, control: Control) -> Result<(), RouterError> {
        let op = if control == Control::Load { "load" } else { "unload" };
        self.vram_op(op, model, None).await.map(|_| ())
    }
}

/// The whole body of a node's answer to `path`.
async fn collect(response: http::Response<hyper::body::Incoming>, path: &str) -> Result<bytes::Bytes, RouterError> {
    use http_body_util::BodyExt;
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| RouterError::UpstreamFailed(format!("a fleet node broke off its answer to {path}: {e}")))?
        .to_bytes())
}

/// A failure in words.
fn describe(failure: &ForwardFailure) -> String {
    match failure {
        ForwardFailure::Connect(m)
        | ForwardFailure::Refused(m)
        | ForwardFailure::Broken(m)
        | ForwardFailure::TooLarge(m) => m.clone(),
        ForwardFailure::Status { status, message, .. } => format!("{status} {message}"),
        ForwardFailure::Timeout(d) => format!("no answer within {} s", d.as_secs()),
    }
}

/// The prompt and output tokens the scorer assumes for `prepared`, and the context it needs (none for embeddings:
/// the engine cuts each input to the model's context).
fn sizes(prepared: &Prepared) -> RequestSize {
    let c = &prepared.classification;
    let output = prepared.max_output_tokens.unwrap_or_else(|| crate::classify::expected_output_tokens(c.category));
    let embedding = matches!(prepared.endpoint, Endpoint::Embed | Endpoint::Embeddings);
    RequestSize {
        prompt_tokens: c.needs.context_tokens.saturating_sub(output).max(1),
        out_tokens: output,
        context_tokens: (!embedding).then_some(c.needs.context_tokens),
    }
}

#[async_trait::async_trait]
impl Backend for Fleet {
    async fn admit(&self, model: &ModelName, prepared: &Prepared, _wait: Duration) -> Result<Hold, Admission> {
        let size = sizes(prepared);
        let view = self.view.load_full();
        let order = self.order(&view, model, size);
        if order.is_empty() {
            let offers = view.offers.get(model).map(Vec::as_slice).unwrap_or_default();
            if !offers.is_empty() && offers.iter().all(|o| !o.fits(size.context_tokens)) {
                // No node serves it with room for this prompt: waiting will not help. `auto` moves on to its next
                // candidate (its scorer passed over such models; the nodes changed since), a named model gets a 400.
                let longest = offers.iter().filter_map(|o| o.context).max().unwrap_or_default();
                let error = RouterError::bad(
                    format!(
                        "the request needs about {} tokens of context; the fleet's nodes serve {model} with at most \
                         {longest}: shorten it, or raise vram.num_ctx on a node",
                        size.context_tokens.unwrap_or_default()
                    ),
                    Some("messages".into()),
                );
                return Err(if matches!(prepared.target, Target::Model(_)) {
                    Admission::Fatal(error)
                } else {
                    Admission::Busy(error)
                });
            }
            let listed = !offers.is_empty();
            return Err(Admission::Busy(RouterError::Busy {
                message: if listed {
                    format!("no fleet node has room for {model} now; retry shortly")
                } else {
                    format!("no fleet node that serves {model} answers now; retry shortly")
                },
                retry_after_secs: 1,
            }));
        }
        Ok(Hold::Fleet(FleetHold { model: model.clone(), order, serving: OnceLock::new() }))
    }

    async fn send(
        &self,
        prepared: &Prepared,
        _surface: Surface,
        id: &str,
        shown: &str,
        hold: &Hold,
    ) -> Result<Reply, ForwardFailure> {
        let Hold::Fleet(hold) = hold else {
            return Err(ForwardFailure::Connect("internal: a fleet request without its nodes".into()));
        };
        // The node resolves the name the client wrote (or the chosen model) and echoes it in its answer.
        let name = if shown.is_empty() { id } else { shown };
        let body = prepared.node_body(name).map_err(|e| ForwardFailure::Connect(e.to_string()))?;
        let mut last = None;
        let mut no_room = None;
        for &i in &hold.order {
            let Some(node) = self.nodes.get(i) else { continue };
            if last.is_some() && !node.healthy() {
                continue;
            }
            let serving = Serving::start(node, &self.view, &hold.model);
            let sent = node.forwarder.send(prepared.endpoint.path(), body.clone(), prepared.stream).await;
            let failure = match sent {
                Ok(reply) => {
                    node.metrics.ok.inc();
                    let _ = hold.serving.set(serving);
                    return Ok(reply);
                }
                Err(failure) => failure,
            };
            drop(serving);
            node.stats.failures.fetch_add(1, Ordering::Relaxed);
            match &failure {
                // No room there now: the node is fine, and another may have room.
                ForwardFailure::Status { status: 503 | 429, .. } => {
                    node.metrics.no_room.inc();
                    no_room = Some(failure.clone());
                }
                // It does not have the model (any more), or refuses this front's key or the body's size: a node's
                // own matter, another node may serve it.
                ForwardFailure::Status { status: 401 | 403 | 404 | 408 | 413, .. } => node.metrics.error.inc(),
                // The request itself is wrong: another node will not fix it.
                ForwardFailure::Status { status: 400..=499, .. } => {
                    node.metrics.error.inc();
                    self.rebuild();
                    return Err(failure);
                }
                // Answered with an error (a failed load there): reachable, but not for this request.
                ForwardFailure::Status { .. } => node.metrics.error.inc(),
                // An answer too large to hold: another node's would be as large.
                ForwardFailure::TooLarge(_) => {
                    self.rebuild();
                    return Err(failure);
                }
                ForwardFailure::Connect(_)
                | ForwardFailure::Refused(_)
                | ForwardFailure::Timeout(_)
                | ForwardFailure::Broken(_) => {
                    node.metrics.error.inc();
                    node.down(&describe(&failure));
                }
            }
            tracing::debug!(node = %node.name(), model = %hold.model, error = %describe(&failure), "fleet node skipped");
            last = Some(failure);
        }
        // What the front assumed about the nodes it tried (a load started, in flight) did not happen: back to what
        // they last said.
        self.rebuild();
        // Any node without room makes it a matter of room (a 503 for the client), not of the model.
        let failure = no_room.or(last);
        Err(failure
            .unwrap_or_else(|| ForwardFailure::Connect(format!("no fleet node could be tried for {}", hold.model))))
    }

    fn idle_timeout(&self) -> Duration {
        self.nodes.first().map_or(Duration::from_secs(60), |n| n.forwarder.idle_timeout)
    }

    fn remote(&self) -> bool {
        false
    }

    fn refused_for_room(&self, failure: &ForwardFailure) -> bool {
        matches!(failure, ForwardFailure::Status { status: 503 | 429, .. })
    }

    fn failed(&self, _failure: &ForwardFailure, _tracker: &tokio_util::task::TaskTracker) {}
}

/// This node's state, for a fleet front's `GET /admin/state`: every local model with what serving it here would take
/// now, priced by the scorer's own VRAM costs.
pub(crate) async fn node_state(state: &crate::state::AppState) -> NodeState {
    use switchyard_vram::ledger::Residency;
    let ready = state.config.ollama.enabled
        && matches!(tokio::time::timeout(Duration::from_secs(1), state.ollama.version()).await, Ok(Ok(_)));
    let snapshots = crate::engine::decision::Snapshots::take(state);
    let cx = snapshots.context(state);
    let room = cx.ledger.room(tokio::time::Instant::now());
    let live = state.live.snapshot();
    let models = cx
        .catalog
        .models
        .values()
        .filter(|spec| spec.backend.is_none())
        .map(|spec| {
            let name = &spec.name;
            let entry = cx.ledger.entry(name);
            let live = live.get(name).map(Arc::as_ref);
            let profile = cx.profiles.get(name);
            let cost = crate::score::vram_cost(spec, &cx, &room, live);
            let mut m = NodeModel::from_spec(spec);
            // The context this node serves prompts with (its `num_ctx`), not the one the model was trained for: the
            // front passes over a node's model for a prompt that would not fit, as this node's own `auto` does.
            m.context_length = Some(crate::score::serving_ctx(spec, &state.config));
            m.loading = entry.is_some_and(|e| matches!(e.residency, Residency::Loading { .. }));
            m.loaded = cost.loaded || m.loading;
            m.pinned = entry.is_some_and(|e| e.pinned);
            m.in_flight = entry.map_or(0, |e| e.in_flight);
            m.queued = entry.map_or(0, |e| e.waiting);
            if !m.loaded {
                m.load_seconds = cost.load;
                m.eviction_seconds = cost.eviction;
                m.evicts = cost.victims.iter().map(ToString::to_string).collect();
                m.refused = cost.refused;
            }
            if cx.open_breakers.contains(name) {
                m.refused = Some("circuit breaker open after repeated failures".into());
            }
            m.prefill_tps = live.and_then(|l| l.prefill_tps()).or(profile.and_then(|p| p.prefill_tps));
            m.decode_tps = live.and_then(|l| l.decode_tps()).or(profile.and_then(|p| p.decode_tps));
            m
        })
        .collect();
    let gpus = cx
        .ledger
        .gpus()
        .iter()
        .map(|g| NodeGpu { index: g.index, total_bytes: g.total, free_bytes: cx.ledger.free(g.index) })
        .collect();
    NodeState {
        version: env!("CARGO_PKG_VERSION").to_string(),
        ready,
        num_parallel: state.config.ollama.num_parallel,
        gpus,
        models,
    }
}
