//! Requests as the router handles them: parsed and checked once at the surface, then routed and forwarded.
//!
//! Both surfaces end up here: native Ollama bodies are parsed and kept as JSON maps (unknown fields survive and
//! are forwarded), OpenAI bodies are translated into the same native shape by `translate`. Validation is
//! Ollama's: a wrong type is a 400 naming the field, and so are absurd values (a negative `num_predict` below -2,
//! a temperature of 1e9) that Ollama would accept and then misbehave on.

use crate::classify::{Classification, Classifier, ClassifyInput, Role, Turn};
use crate::error::RouterError;
use serde_json::{Map, Value};
use switchyard_core::ModelName;
use switchyard_core::config::RoutingConfig;
use switchyard_core::ollama::{KeepAlive, LoadOptions};

/// The native endpoint a request goes to upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Generate,
    Embed,
    /// Legacy `/api/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// Upstream path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/api/chat",
            Endpoint::Generate => "/api/generate",
            Endpoint::Embed => "/api/embed",
            Endpoint::Embeddings => "/api/embeddings",
        }
    }

    /// True for the embedding endpoints.
    pub fn is_embedding(self) -> bool {
        matches!(self, Endpoint::Embed | Endpoint::Embeddings)
    }
}

/// Which model the client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `auto`, `auto:fast`, `auto:quality`: route by quality preference `w`.
    Auto { preference: f64, label: &'static str },
    /// An explicit model.
    Model(ModelName),
}

/// A load or unload asked for with an empty prompt (Ollama's way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Load,
    Unload,
}

/// A request ready to route.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub endpoint: Endpoint,
    /// The native body to send upstream; `model`, `options.num_ctx` and `keep_alive` are set per candidate.
    pub body: Map<String, Value>,
    /// The model string as the client wrote it (echoed back for explicit models).
    pub requested: String,
    pub target: Target,
    /// Whether the client wants a stream.
    pub stream: bool,
    /// The client's `keep_alive`, when given: a hint for the idle TTL.
    pub keep_alive: Option<KeepAlive>,
    pub classification: Classification,
    /// Output tokens the client allows (`num_predict`), when set.
    pub max_output_tokens: Option<u64>,
    /// An empty-prompt load or unload.
    pub control: Option<Control>,
    /// The task rule the request named (`x-switchyard-task` or `auto:NAME`), once applied.
    pub(crate) task: Option<std::sync::Arc<crate::tasks::Task>>,
    /// The conversation a chat belongs to (for affinity), once known.
    pub(crate) conversation: Option<crate::affinity::Conversation>,
    /// The key of an `auto` generate's `context` (see [`crate::affinity::Contexts`]).
    pub(crate) context_key: Option<u64>,
    /// The model remembered to have written that context, once looked up.
    pub(crate) context_writer: Option<ModelName>,
}

/// Load-time options: a different value forces Ollama to reload the model, so they are set by Switchyard per model.
pub const LOAD_TIME_OPTIONS: [&str; 6] = ["num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread"];

#[derive(Clone, Copy)]
enum Kind {
    Float(f64, f64),
    Int(i64, i64),
    Bool,
    Stop,
}

/// Options Ollama knows, with their type and the range Switchyard accepts.
const OPTION_KINDS: [(&str, Kind); 28] = [
    ("num_predict", Kind::Int(-2, 1 << 20)),
    ("temperature", Kind::Float(0.0, 100.0)),
    // -1 and 0 both mean "no top-k" to llama.cpp; clients used to vLLM send -1.
    ("top_k", Kind::Int(-1, 1 << 20)),
    ("top_p", Kind::Float(0.0, 1.0)),
    ("min_p", Kind::Float(0.0, 1.0)),
    ("typical_p", Kind::Float(0.0, 1.0)),
    ("seed", Kind::Int(i64::MIN, i64::MAX)),
    ("stop", Kind::Stop),
    // LiteLLM's `ollama_chat` sends OpenAI's frequency_penalty (-2 to 2) as repeat_penalty.
    ("repeat_penalty", Kind::Float(-100.0, 100.0)),
    ("repeat_last_n", Kind::Int(-1, 1 << 20)),
    ("presence_penalty", Kind::Float(-100.0, 100.0)),
    ("frequency_penalty", Kind::Float(-100.0, 100.0)),
    ("num_keep", Kind::Int(-1, 1 << 24)),
    ("tfs_z", Kind::Float(0.0, 100.0)),
    ("mirostat", Kind::Int(0, 2)),
    ("mirostat_tau", Kind::Float(0.0, 100.0)),
    ("mirostat_eta", Kind::Float(0.0, 100.0)),
    ("penalize_newline", Kind::Bool),
    ("num_ctx", Kind::Int(1, 1 << 24)),
    ("num_batch", Kind::Int(1, 1 << 20)),
    ("num_gpu", Kind::Int(-1, 1 << 16)),
    ("main_gpu", Kind::Int(0, 1 << 10)),
    ("use_mmap", Kind::Bool),
    ("use_mlock", Kind::Bool),
    ("num_thread", Kind::Int(0, 1 << 12)),
    ("numa", Kind::Bool),
    ("low_vram", Kind::Bool),
    ("vocab_only", Kind::Bool),
];

/// Checks `options`: known keys have the right type and a sane value; unknown keys are kept (Ollama ignores them).
pub fn validate_options(options: &Map<String, Value>) -> Result<(), RouterError> {
    for (key, value) in options {
        let Some((_, kind)) = OPTION_KINDS.iter().find(|(k, _)| k == key) else { continue };
        let param = Some(format!("options.{key}"));
        match *kind {
            Kind::Float(lo, hi) => {
                let v = value
                    .as_f64()
                    .ok_or_else(|| RouterError::bad(format!("option \"{key}\" must be a number"), param.clone()))?;
                if !(lo..=hi).contains(&v) {
                    return Err(RouterError::bad(
                        format!("option \"{key}\" must be between {lo} and {hi}, got {v}"),
                        param,
                    ));
                }
            }
            Kind::Int(lo, hi) => {
                let v = match value {
                    Value::Number(n) => n
                        .as_i64()
                        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e18).map(|f| f as i64)),
                    _ => None,
                }
                .ok_or_else(|| RouterError::bad(format!("option \"{key}\" must be an integer"), param.clone()))?;
                if !(lo..=hi).contains(&v) {
                    return Err(RouterError::bad(
                        format!("option \"{key}\" must be between {lo} and {hi}, got {v}"),
                        param,
                    ));
                }
            }
            Kind::Bool => {
                if !value.is_boolean() {
                    return Err(RouterError::bad(format!("option \"{key}\" must be true or false"), param));
                }
            }
            Kind::Stop => {
                let ok = match value {
                    Value::String(_) => true,
                    Value::Array(items) => items.len() <= 64 && items.iter().all(Value::is_string),
                    _ => false,
                };
                if !ok {
                    return Err(RouterError::bad(
                        "option \"stop\" must be a string or a list of at most 64 strings",
                        param,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Depth of the deepest array/object in `value`.
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses a JSON object body, with Ollama-style messages for malformed input.
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, RouterError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(RouterError::bad("missing request body", None));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_eof() { "unexpected end of JSON input" } else { "invalid JSON" };
        RouterError::bad(format!("{what}: {e}"), None)
    })?;
    if depth(&value) > max_depth {
        return Err(RouterError::bad(
            format!("JSON nested deeper than {max_depth} levels (server.max_json_depth)"),
            None,
        ));
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(RouterError::bad("the request body must be a JSON object", None)),
    }
}

/// Reads the target from a model string and the `x-switchyard-quality` header.
pub fn parse_target(model: &str, quality_header: Option<f64>, routing: &RoutingConfig) -> Result<Target, RouterError> {
    let auto = |preference: f64, label| Target::Auto { preference: quality_header.unwrap_or(preference), label };
    match model.trim() {
        "auto" | "auto:latest" => Ok(auto(routing.quality_preference, "auto")),
        "auto:fast" => Ok(auto(routing.fast_preference, "auto:fast")),
        "auto:quality" => Ok(auto(routing.best_preference, "auto:quality")),
        other => Ok(Target::Model(ModelName::parse(other)?)),
    }
}

/// Parses `x-switchyard-quality`.
pub fn parse_quality_header(value: Option<&str>) -> Result<Option<f64>, RouterError> {
    let Some(raw) = value else { return Ok(None) };
    let bad = || RouterError::bad(format!("x-switchyard-quality must be a number between 0 and 1, got {raw:?}"), None);
    let v: f64 = raw.trim().parse().map_err(|_| bad())?;
    if (0.0..=1.0).contains(&v) { Ok(Some(v)) } else { Err(bad()) }
}

fn take_string<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, RouterError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RouterError::bad(format!("{key} must be a string"), Some(key.to_string()))),
    }
}

fn images_in(value: Option<&Value>, param: &str) -> Result<usize, RouterError> {
    match value {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(items.len()),
        Some(_) => Err(RouterError::bad(format!("{param} must be a list of base64 strings"), Some(param.to_string()))),
    }
}

/// Everything `prepare_native` needs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct PrepareContext<'a> {
    pub routing: &'a RoutingConfig,
    pub classifier: &'a Classifier,
    pub quality_header: Option<f64>,
}

/// Checks a native body and builds the prepared request.
pub fn prepare_native(
    endpoint: Endpoint,
    mut body: Map<String, Value>,
    cx: PrepareContext<'_>,
) -> Result<Prepared, RouterError> {
    let requested = match body.get("model") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => match body.get("name") {
            // Legacy field name some clients still send.
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(RouterError::bad("model is required", Some("model".to_string()))),
        },
        Some(_) => return Err(RouterError::bad("model must be a string", Some("model".to_string()))),
    };
    body.remove("name");
    let target = parse_target(&requested, cx.quality_header, cx.routing)?;
    let stream = match body.get("stream") {
        None | Some(Value::Null) => !endpoint.is_embedding(),
        // Ollama's embedding routes have no `stream`: their answer is one JSON object whatever it says.
        Some(Value::Bool(b)) => *b && !endpoint.is_embedding(),
        Some(_) => return Err(RouterError::bad("stream must be true or false", Some("stream".to_string()))),
    };
    let keep_alive = match body.get("keep_alive") {
        None | Some(Value::Null) => None,
        Some(v) => Some(KeepAlive::from_json(v).map_err(|m| RouterError::bad(m, Some("keep_alive".to_string())))?),
    };
    let mut max_output_tokens = None;
    match body.get_mut("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => {
            // Ollama treats a null option as unset (LangChain and LlamaIndex send every option they know, null when
            // the user set none): drop them rather than refuse or forward them.
            options.retain(|_, v| !v.is_null());
            validate_options(options)?;
            max_output_tokens =
                options.get("num_predict").and_then(Value::as_i64).filter(|n| *n >= 0).map(|n| n as u64);
        }
        Some(_) => return Err(RouterError::bad("options must be an object", Some("options".to_string()))),
    }
    let wants_json = match body.get("format") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s.is_empty() => false,
        Some(Value::String(s)) if s == "json" => true,
        Some(Value::Object(_)) => true,
        Some(_) => {
            return Err(RouterError::bad(
                "format must be \"json\" or a JSON schema object",
                Some("format".to_string()),
            ));
        }
    };
    let has_tools = match body.get("tools") {
        None | Some(Value::Null) => false,
        Some(Value::Array(tools)) => {
            for (i, tool) in tools.iter().enumerate() {
                let name = tool.get("function").and_then(|f| f.get("name")).and_then(Value::as_str);
                if name.is_none_or(str::is_empty) {
                    return Err(RouterError::bad(
                        format!("tools[{i}].function.name is required"),
                        Some(format!("tools[{i}]")),
                    ));
                }
            }
            !tools.is_empty()
        }
        Some(_) => return Err(RouterError::bad("tools must be a list", Some("tools".to_string()))),
    };

    let wants_thinking = match body.get("think") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        // gpt-oss style levels; an empty string asks for nothing.
        Some(Value::String(level)) => !level.is_empty(),
        Some(_) => {
            return Err(RouterError::bad(
                "think must be true, false or a level (\"low\", \"medium\", \"high\")",
                Some("think".to_string()),
            ));
        }
    };
    let wants_insert =
        endpoint == Endpoint::Generate && body.get("suffix").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    // LlamaIndex passes Cohere's and Gemini's names for the assistant (`chatbot`, `model`) on as they are: the model's
    // template, and an OpenAI-compatible engine, know the turn as the assistant's.
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for role in messages.iter_mut().filter_map(|m| m.get_mut("role")) {
            if role.as_str().is_some_and(|r| ["chatbot", "model"].iter().any(|n| r.trim().eq_ignore_ascii_case(n))) {
                *role = Value::String("assistant".into());
            }
        }
    }
    let (mut turns, mut control) = read_turns(endpoint, &body, keep_alive)?;
    if control.is_some() && matches!(target, Target::Auto { .. }) {
        // An empty batch of texts to embed (`embed_documents([])` in LangChain) is answered with no vectors, as for an
        // empty text: routed like one. Any other empty prompt under `auto` is a load or unload of no model in
        // particular.
        let empty_batch = endpoint == Endpoint::Embed && body.get("input").is_some_and(Value::is_array);
        if !(empty_batch && control == Some(Control::Load)) {
            return Err(RouterError::bad(
                "auto needs a prompt to route; name a model to load or unload it",
                Some("model".to_string()),
            ));
        }
        control = None;
        turns.push(Turn { role: Role::User, text: "", images: 0 });
    }
    let input = ClassifyInput { turns: &turns, has_tools, wants_json, max_output_tokens, wants_thinking, wants_insert };
    let classification = cx.classifier.classify(&input);
    // Only `auto` chooses among models: a named model is sent its context as it came.
    let context_key = if endpoint == Endpoint::Generate && matches!(target, Target::Auto { .. }) {
        crate::affinity::Contexts::key(body.get("context"))
    } else {
        None
    };
    Ok(Prepared {
        endpoint,
        body,
        requested,
        target,
        stream,
        keep_alive,
        classification,
        max_output_tokens,
        control,
        task: None,
        conversation: None,
        context_key,
        context_writer: None,
    })
}

/// The conversation of a checked native body as turns, and whether it is an empty-prompt load or unload.
pub fn read_turns<'a>(
    endpoint: Endpoint,
    body: &'a Map<String, Value>,
    keep_alive: Option<KeepAlive>,
) -> Result<(Vec<Turn<'a>>, Option<Control>), RouterError> {
    let mut turns: Vec<Turn<'a>> = Vec::new();
    let mut control = None;
    match endpoint {
        Endpoint::Chat => match body.get("messages") {
            None | Some(Value::Null) => control = Some(load_or_unload(keep_alive)),
            Some(Value::Array(messages)) => {
                if messages.is_empty() {
                    control = Some(load_or_unload(keep_alive));
                }
                for (i, m) in messages.iter().enumerate() {
                    let Value::Object(m) = m else {
                        return Err(RouterError::bad(
                            format!("messages[{i}] must be an object"),
                            Some(format!("messages[{i}]")),
                        ));
                    };
                    let role = match m.get("role") {
                        // Ollama takes any role (its template decides what to make of it): one no client library
                        // sends is passed on, and weighed as the user's words.
                        Some(Value::String(r)) => Role::from_name(r).unwrap_or(Role::User),
                        _ => {
                            return Err(RouterError::bad(
                                format!("messages[{i}].role is required"),
                                Some(format!("messages[{i}].role")),
                            ));
                        }
                    };
                    let text = match m.get("content") {
                        None | Some(Value::Null) => "",
                        Some(Value::String(s)) => s.as_str(),
                        Some(_) => {
                            return Err(RouterError::bad(
                                format!("messages[{i}].content must be a string"),
                                Some(format!("messages[{i}].content")),
                            ));
                        }
                    };
                    let images = images_in(m.get("images"), &format!("messages[{i}].images"))?;
                    turns.push(Turn { role, text, images });
                }
            }
            Some(_) => return Err(RouterError::bad("messages must be a list", Some("messages".to_string()))),
        },
        Endpoint::Generate => {
            let prompt = take_string(body, "prompt")?.unwrap_or("");
            let system = take_string(body, "system")?.unwrap_or("");
            take_string(body, "suffix")?;
            let template = take_string(body, "template")?.unwrap_or("");
            let images = images_in(body.get("images"), "images")?;
            if prompt.is_empty() && system.is_empty() && template.is_empty() && images == 0 {
                control = Some(load_or_unload(keep_alive));
            }
            if !system.is_empty() {
                turns.push(Turn { role: Role::System, text: system, images: 0 });
            }
            turns.push(Turn { role: Role::User, text: prompt, images });
        }
        Endpoint::Embed => match body.get("input") {
            None | Some(Value::Null) => control = Some(load_or_unload(keep_alive)),
            Some(Value::String(s)) => turns.push(Turn { role: Role::User, text: s, images: 0 }),
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    control = Some(load_or_unload(keep_alive));
                }
                for (i, item) in items.iter().enumerate() {
                    let s = item.as_str().ok_or_else(|| {
                        RouterError::bad(format!("input[{i}] must be a string"), Some("input".to_string()))
                    })?;
                    turns.push(Turn { role: Role::User, text: s, images: 0 });
                }
            }
            Some(_) => {
                return Err(RouterError::bad("input must be a string or a list of strings", Some("input".to_string())));
            }
        },
        Endpoint::Embeddings => {
            let prompt = take_string(body, "prompt")?.unwrap_or("");
            if prompt.is_empty() {
                control = Some(load_or_unload(keep_alive));
            }
            turns.push(Turn { role: Role::User, text: prompt, images: 0 });
        }
    }
    Ok((turns, control))
}

fn load_or_unload(keep_alive: Option<KeepAlive>) -> Control {
    if keep_alive.is_some_and(KeepAlive::is_zero) { Control::Unload } else { Control::Load }
}

impl Prepared {
    /// The native body for a fleet node: the client's request for model `model`, whose load-time options the node
    /// sets itself.
    pub fn node_body(&self, model: &str) -> Result<bytes::Bytes, RouterError> {
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(model.to_string()));
        body.insert("stream".into(), Value::Bool(self.stream));
        serde_json::to_vec(&body).map(bytes::Bytes::from).map_err(|e| RouterError::Internal(e.to_string()))
    }

    /// The upstream body for `model`: the model name, the load-time options of the model's instance (the client's
    /// own are dropped, so different clients never force a reload), and Switchyard's keep-alive (models stay loaded
    /// until Switchyard unloads them). `echo` is the name Ollama will echo in its answer.
    pub fn upstream_body(&self, echo: &str, load: &LoadOptions) -> Result<bytes::Bytes, RouterError> {
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(echo.to_string()));
        body.insert("keep_alive".into(), KeepAlive::Forever.to_json());
        body.insert("stream".into(), Value::Bool(self.stream));
        let options = body.entry("options").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(options) = options {
            for key in LOAD_TIME_OPTIONS {
                options.remove(key);
            }
            load.write_to(options);
            if options.is_empty() {
                body.remove("options");
            }
        }
        serde_json::to_vec(&body).map(bytes::Bytes::from).map_err(|e| RouterError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prepare(endpoint: Endpoint, body: Value) -> Result<Prepared, RouterError> {
        let classifier = Classifier::new();
        let routing = RoutingConfig::default();
        let Value::Object(map) = body else { panic!("object") };
        prepare_native(
            endpoint,
            map,
            PrepareContext { routing: &routing, classifier: &classifier, quality_header: None },
        )
    }

    #[test]
    fn what_clients_send_to_ollama_is_accepted() {
        // LiteLLM maps OpenAI's frequency_penalty to repeat_penalty (negative too); vLLM habits send top_k -1;
        // LlamaIndex passes Cohere's and Gemini's assistant roles on as they are. Ollama takes all of these.
        let body = json!({"model": "llama3.2:3b", "options": {"repeat_penalty": -0.5, "top_k": -1},
            "messages": [{"role": "user", "content": "hi"}, {"role": "chatbot", "content": "hello"},
                         {"role": "model", "content": "hello"}, {"role": "user", "content": "and now?"}]});
        let ok = prepare(Endpoint::Chat, body).unwrap();
        let roles: Vec<&str> =
            ok.body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "assistant", "user"], "forwarded as the assistant's turns");
        let bad = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "options": {"top_k": -5}});
        assert!(prepare(Endpoint::Chat, bad).is_err());
        // Embeddings are one JSON answer, whatever `stream` says (Ollama has no such field there).
        for endpoint in [Endpoint::Embed, Endpoint::Embeddings] {
            let body = json!({"model": "nomic-embed-text", "input": "x", "prompt": "x", "stream": true});
            assert!(!prepare(endpoint, body).unwrap().stream);
        }
    }

    #[test]
    fn chat_requests_are_checked_field_by_field() {
        let ok = prepare(Endpoint::Chat, json!({"model":"auto","messages":[{"role":"user","content":"Write a Python function that reverses a list"}]})).unwrap();
        assert!(matches!(ok.target, Target::Auto { .. }));
        assert!(ok.stream, "native streaming is on by default");
        assert_eq!(ok.classification.category, switchyard_core::Category::Coding);

        let cases = [
            (json!({"messages":[]}), "model is required"),
            (json!({"model":5,"messages":[]}), "model must be a string"),
            (json!({"model":"m","messages":"hi"}), "messages must be a list"),
            (json!({"model":"m","messages":[{"role":7,"content":"x"}]}), "messages[0].role"),
            (json!({"model":"m","messages":[{"role":"user","content":7}]}), "messages[0].content"),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"options":{"temperature":"hot"}}),
                "temperature",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"options":{"num_predict":-5}}),
                "num_predict",
            ),
            (json!({"model":"m","messages":[{"role":"user","content":"x"}],"options":{"temperature":1e9}}), "between"),
            (json!({"model":"m","messages":[{"role":"user","content":"x"}],"keep_alive":"300"}), "missing unit"),
            (json!({"model":"../../etc/passwd","messages":[]}), "invalid model name"),
            (json!({"model":"m","stream":"yes"}), "stream"),
        ];
        for (body, want) in cases {
            let err = prepare(Endpoint::Chat, body.clone()).unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
        // Ollama takes any role; one no client sends is read as the user's.
        let narrated = json!({"model":"auto","messages":[{"role":"Narrator","content":"Write a haiku about rain"}]});
        let narrated = prepare(Endpoint::Chat, narrated).unwrap();
        assert_eq!(narrated.classification.category, switchyard_core::Category::Creative);
        assert_eq!(narrated.body["messages"][0]["role"], "Narrator", "passed on as sent");
    }

    #[test]
    fn empty_prompts_are_loads_and_unloads() {
        let load = prepare(Endpoint::Generate, json!({"model":"llama3.2","keep_alive":-1})).unwrap();
        assert_eq!(load.control, Some(Control::Load));
        let unload = prepare(Endpoint::Generate, json!({"model":"llama3.2","keep_alive":0})).unwrap();
        assert_eq!(unload.control, Some(Control::Unload));
        assert!(prepare(Endpoint::Chat, json!({"model":"auto","messages":[]})).is_err());
    }

    #[test]
    fn upstream_bodies_normalise_load_options_and_keep_unknown_fields() {
        let p = prepare(
            Endpoint::Chat,
            json!({"model":"qwen","messages":[{"role":"user","content":"hi"}],"options":{"num_ctx":2048,"num_gpu":3,"temperature":0.2},"x_custom":1,"keep_alive":"5m"}),
        )
        .unwrap();
        let load = LoadOptions { num_ctx: Some(8192), num_gpu: None };
        let body: Value = serde_json::from_slice(&p.upstream_body("qwen", &load).unwrap()).unwrap();
        assert_eq!(body["options"], json!({"num_ctx":8192,"temperature":0.2}));
        // A partly offloaded instance: its GPU layers are sent too, whatever the client asked.
        let load = LoadOptions { num_ctx: Some(8192), num_gpu: Some(40) };
        let body: Value = serde_json::from_slice(&p.upstream_body("qwen", &load).unwrap()).unwrap();
        assert_eq!(body["options"], json!({"num_ctx":8192,"num_gpu":40,"temperature":0.2}));
        assert_eq!(body["keep_alive"], json!(-1));
        assert_eq!(body["x_custom"], json!(1));
        assert_eq!(body["stream"], json!(true));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        let body = format!("{{\"model\":\"m\",\"x\":{deep}}}");
        let err = parse_object(body.as_bytes(), 64).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
        assert!(parse_object(b"\xff\xfe", 64).is_err());
        assert!(parse_object(b"[1,2]", 64).unwrap_err().to_string().contains("object"));
        assert!(parse_object(b"", 64).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn quality_header_is_checked_and_overrides_auto() {
        let routing = RoutingConfig::default();
        assert_eq!(parse_quality_header(Some("0.25")).unwrap(), Some(0.25));
        assert!(parse_quality_header(Some("2")).is_err());
        assert!(parse_quality_header(Some("high")).is_err());
        match parse_target("auto:fast", Some(0.9), &routing).unwrap() {
            Target::Auto { preference, label } => assert_eq!((preference, label), (0.9, "auto:fast")),
            other => panic!("{other:?}"),
        }
    }
}
