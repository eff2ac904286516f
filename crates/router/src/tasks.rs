//! Task rules as routing uses them: `[tasks.NAME]` tables (over their preset) and the built-in presets, resolved
//! once at start, then looked up per request by the `x-switchyard-task` header or the virtual model `auto:NAME`.
//!
//! A rule applies to the prepared (native) request, so both surfaces get it alike: the category replaces the
//! classifier's, `max_tokens` caps `options.num_predict`, `temperature` replaces `options.temperature`, the quality
//! preference replaces the default one (an `x-switchyard-quality` header still wins), and `model` / `models`
//! restrict which models `auto` may choose. A request naming a model explicitly keeps it: only the token cap and the
//! temperature apply to it.

use crate::cascade::validate::Checks;
use crate::error::RouterError;
use crate::request::{Prepared, Target};
use http::HeaderMap;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard_classifier::expected_output_tokens;
use switchyard_core::config::{CascadeSteps, Config, TaskRule, UnknownTask, effective_rule, preset_rule};
use switchyard_core::{Category, ModelName};

/// The header naming a request's task.
pub(crate) const TASK_HEADER: &str = "x-switchyard-task";

/// Judge score an answer needs when the rule sets none.
const DEFAULT_JUDGE_MIN_SCORE: f64 = 0.7;
/// Cascade steps when the rule sets none.
const DEFAULT_CASCADE_STEPS: u32 = 3;

/// A resolved task rule.
#[derive(Debug)]
pub(crate) struct Task {
    pub name: Arc<str>,
    /// A hash of the whole rule: cached answers are keyed by it, so an edited rule never serves the old one's.
    pub fingerprint: u64,
    pub category: Option<Category>,
    pub quality_preference: Option<f64>,
    /// The models `auto` may choose from (one for `model = ...`); `None` allows all.
    pub allow: Option<Vec<ModelName>>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub cascade: Option<Cascade>,
}

/// A task's cascade.
#[derive(Debug)]
pub(crate) struct Cascade {
    /// The listed models, or `None` for `"auto"`.
    pub models: Option<Vec<ModelName>>,
    pub max_steps: usize,
    pub checks: Checks,
    pub judge: Option<ModelName>,
    pub judge_min_score: f64,
    /// Set once the judge failed to give a score, so that the warning is logged once, not per request.
    pub judge_warned: std::sync::atomic::AtomicBool,
}

/// Every task a request may name.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    by_name: BTreeMap<String, Arc<Task>>,
    /// Names the configuration defines (a preset's name among them replaces the preset).
    configured: std::collections::BTreeSet<String>,
    unknown: UnknownTask,
    /// What [`Tasks::virtual_models`] gives, made once.
    virtual_models: Vec<(String, String)>,
}

impl Tasks {
    /// The presets and the configured rules (a rule named like a preset replaces it). The configuration was
    /// validated, so names and lists parse; anything that still does not is left out with a warning.
    pub(crate) fn from_config(config: &Config) -> Tasks {
        let mut by_name = BTreeMap::new();
        for preset in switchyard_core::config::TASK_PRESETS {
            if let Some(rule) = preset_rule(preset, &config.routing) {
                by_name.insert(preset.to_string(), rule);
            }
        }
        for (name, rule) in &config.tasks {
            by_name.insert(name.clone(), effective_rule(name, rule, &config.routing));
        }
        let by_name = by_name
            .into_iter()
            .filter_map(|(name, rule)| match resolve(&name, &rule) {
                Ok(task) => Some((name, Arc::new(task))),
                Err(e) => {
                    tracing::warn!(task = %name, error = %e, "task rule left out");
                    None
                }
            })
            .collect();
        let mut virtual_models: Vec<(String, String)> =
            crate::api::ollama::VIRTUAL_MODELS.iter().map(|(n, d)| ((*n).to_string(), (*d).to_string())).collect();
        for name in config.tasks.keys() {
            let model = format!("auto:{name}");
            if !virtual_models.iter().any(|(n, _)| *n == model) {
                virtual_models.push((model, format!("routes each request by the task rule {name}")));
            }
        }
        Tasks {
            by_name,
            configured: config.tasks.keys().cloned().collect(),
            unknown: config.routing.unknown_task,
            virtual_models,
        }
    }

    /// The virtual models the listing routes show: `auto`, `auto:fast`, `auto:quality`, and `auto:NAME` for each
    /// configured task, each with a description.
    pub(crate) fn virtual_models(&self) -> &[(String, String)] {
        &self.virtual_models
    }

    /// The task names, for error messages.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Finds the task a request names, by its model (`auto:NAME`, rewritten to `auto` in `body`) or else by the
    /// task header. `auto:fast` and `auto:quality` stay the built-in preferences unless a rule of that name exists.
    pub(crate) fn find(
        &self,
        body: &mut Map<String, Value>,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Task>>, RouterError> {
        let from_model = match body.get("model").and_then(Value::as_str).map(str::trim) {
            Some(model) => match model.strip_prefix("auto:") {
                Some("latest") | None => None,
                Some(name @ ("fast" | "quality")) if !self.configured(name) => None,
                Some(name) => Some(name.to_string()),
            },
            None => None,
        };
        let (name, via_model) = match from_model {
            Some(name) => (name, true),
            None => match headers.get(TASK_HEADER) {
                Some(v) => {
                    let v = v.to_str().map_err(|_| RouterError::bad(format!("{TASK_HEADER} must be ASCII"), None))?;
                    (v.trim().to_string(), false)
                }
                None => return Ok(None),
            },
        };
        if via_model {
            body.insert("model".into(), Value::String("auto".into()));
        }
        match self.by_name.get(&name) {
            Some(task) => Ok(Some(Arc::clone(task))),
            None if self.unknown == UnknownTask::Auto => Ok(None),
            None => Err(RouterError::bad(
                format!(
                    "unknown task {name:?}: define [tasks.{name}] in the configuration, or use one of: {}",
                    self.names().collect::<Vec<_>>().join(", ")
                ),
                Some(if via_model { "model".into() } else { TASK_HEADER.into() }),
            )),
        }
    }

    /// True when the configuration itself defines `name` (not only a preset).
    fn configured(&self, name: &str) -> bool {
        self.configured.contains(name)
    }
}

/// Builds a task from its merged rule.
fn resolve(name: &str, rule: &TaskRule) -> Result<Task, String> {
    let parse = |n: &String| ModelName::parse(n).map_err(|e| e.to_string());
    let allow = match (&rule.model, &rule.models) {
        (Some(model), _) => Some(vec![parse(model)?]),
        (None, Some(models)) => Some(models.iter().map(parse).collect::<Result<Vec<_>, _>>()?),
        (None, None) => None,
    };
    let cascade = match &rule.cascade {
        None => None,
        Some(steps) => Some(Cascade {
            models: match steps {
                CascadeSteps::List(list) => Some(list.iter().map(parse).collect::<Result<Vec<_>, _>>()?),
                CascadeSteps::Auto(_) => None,
            },
            max_steps: rule.cascade_max_steps.unwrap_or(DEFAULT_CASCADE_STEPS) as usize,
            checks: match &rule.validators {
                Some(names) => Checks::from_names(names)?,
                // The rule's own cap would make every long answer "truncated", and a stronger model hits it too.
                None if rule.max_tokens.is_some() => Checks { truncated: false, ..Checks::default() },
                None => Checks::default(),
            },
            judge: rule.judge_model.as_ref().map(parse).transpose()?,
            judge_min_score: rule.judge_min_score.unwrap_or(DEFAULT_JUDGE_MIN_SCORE),
            judge_warned: std::sync::atomic::AtomicBool::new(false),
        }),
    };
    Ok(Task {
        name: Arc::from(name),
        fingerprint: switchyard_core::text::stable_hash_parts(&[name.as_bytes(), format!("{rule:?}").as_bytes()]),
        category: rule.category,
        quality_preference: rule.quality_preference,
        allow,
        max_tokens: rule.max_tokens,
        temperature: rule.temperature,
        cascade,
    })
}

impl Task {
    /// Applies the rule to a prepared request. `quality_header`: the client set `x-switchyard-quality`, which wins.
    pub(crate) fn apply(&self, prepared: &mut Prepared, quality_header: bool) {
        // An embedding request has no category, answer or sampling, and its models are embedding models.
        if prepared.endpoint.is_embedding() {
            return;
        }
        let expected =
            |p: &Prepared| p.max_output_tokens.unwrap_or_else(|| expected_output_tokens(p.classification.category));
        // The prompt's own tokens, before the category or the cap change the answer's expected length.
        let prompt_tokens = prepared.classification.needs.context_tokens.saturating_sub(expected(prepared));
        if let Target::Auto { preference, .. } = &mut prepared.target {
            if let Some(w) = self.quality_preference
                && !quality_header
            {
                *preference = w;
            }
            if let Some(category) = self.category {
                let c = &mut prepared.classification;
                c.category = category;
                c.confidence = 1.0;
                c.scores = [0.0; 7];
                c.scores[category.index()] = 1.0;
            }
        }
        if self.max_tokens.is_some() || self.temperature.is_some() {
            let options = prepared.body.entry("options").or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(options) = options {
                if let Some(cap) = self.max_tokens {
                    // Negative values ask for no limit (-1) or the whole context (-2): more than any cap.
                    let asked = options.get("num_predict").and_then(Value::as_i64).and_then(|n| u64::try_from(n).ok());
                    let applied = asked.map_or(cap, |n| n.min(cap));
                    options.insert("num_predict".into(), Value::from(applied));
                    prepared.max_output_tokens = Some(applied);
                }
                if let Some(t) = self.temperature {
                    options.insert("temperature".into(), Value::from(t));
                }
            }
        }
        prepared.classification.needs.context_tokens = prompt_tokens.saturating_add(expected(prepared));
    }

    /// The task as `/admin/explain` and decisions show it.
    pub(crate) fn describe(&self) -> Value {
        let names = |list: &[ModelName]| list.iter().map(ModelName::to_string).collect::<Vec<_>>();
        serde_json::json!({
            "name": &*self.name,
            "category": self.category,
            "quality_preference": self.quality_preference,
            "models": self.allow.as_deref().map(names),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "cascade": self.cascade.as_ref().map(|c| serde_json::json!({
                "models": c.models.as_deref().map_or_else(|| serde_json::json!("auto"), |m| serde_json::json!(names(m))),
                "max_steps": c.max_steps,
                "judge": c.judge.as_ref().map(ModelName::to_string),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classifier;
    use crate::request::{Endpoint, PrepareContext, prepare_native};
    use serde_json::json;

    fn config(toml_text: &str) -> Config {
        let config: Config = toml::from_str(toml_text).unwrap();
        config.validate().unwrap();
        config
    }

    fn prepared(
        config: &Config,
        body: Value,
        headers: &HeaderMap,
    ) -> Result<(Prepared, Option<Arc<Task>>), RouterError> {
        let tasks = Tasks::from_config(config);
        let Value::Object(mut body) = body else { unreachable!() };
        let task = tasks.find(&mut body, headers)?;
        let classifier = Classifier::rules();
        let mut p = prepare_native(
            Endpoint::Chat,
            body,
            PrepareContext { routing: &config.routing, classifier: &classifier, quality_header: None },
        )?;
        if let Some(t) = &task {
            t.apply(&mut p, false);
        }
        Ok((p, task))
    }

    #[test]
    fn rules_apply_to_the_native_request() {
        let c = config(
            r#"[tasks.summarizer]
               category = "extraction"
               quality_preference = 0.3
               models = ["llama3.2:3b", "qwen2.5:7b"]
               max_tokens = 128
               temperature = 0.1"#,
        );
        let body = json!({"model": "auto:summarizer", "messages": [{"role": "user", "content": "Write a poem"}],
                          "options": {"num_predict": 1000, "temperature": 0.9}});
        let (p, task) = prepared(&c, body, &HeaderMap::new()).unwrap();
        assert_eq!(&*task.unwrap().name, "summarizer");
        assert_eq!(p.classification.category, Category::Extraction);
        assert!(matches!(p.target, Target::Auto { preference, .. } if (preference - 0.3).abs() < 1e-12));
        assert_eq!(p.body["options"]["num_predict"], json!(128));
        assert_eq!(p.body["options"]["temperature"], json!(0.1));
        assert_eq!(p.max_output_tokens, Some(128));
        // A client asking for less keeps its own limit; one asking for nothing gets the cap.
        let body =
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 10}});
        let mut h = HeaderMap::new();
        h.insert(TASK_HEADER, "summarizer".parse().unwrap());
        let (p, _) = prepared(&c, body, &h).unwrap();
        assert_eq!(p.body["options"]["num_predict"], json!(10));
        let body =
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": -1}});
        let (p, _) = prepared(&c, body, &h).unwrap();
        assert_eq!(p.body["options"]["num_predict"], json!(128));
        // The request's size follows the cap: its prompt plus the answer it may now have.
        let long =
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 1000}});
        let (uncapped, _) = prepared(&c, long.clone(), &HeaderMap::new()).unwrap();
        let (capped, _) = prepared(&c, long, &h).unwrap();
        assert_eq!(
            uncapped.classification.needs.context_tokens - capped.classification.needs.context_tokens,
            1000 - 128
        );
    }

    #[test]
    fn unknown_tasks_are_refused_or_routed_as_auto() {
        let c = config("[tasks.planner]\nquality_preference = 0.9");
        let body = json!({"model": "auto:plannr", "messages": [{"role": "user", "content": "hi"}]});
        let err = prepared(&c, body.clone(), &HeaderMap::new()).unwrap_err();
        assert!(err.to_string().contains("unknown task \"plannr\""), "{err}");
        assert!(err.to_string().contains("planner"), "{err}");
        let lenient = config("[routing]\nunknown_task = \"auto\"\n[tasks.planner]\nquality_preference = 0.9");
        let (p, task) = prepared(&lenient, body, &HeaderMap::new()).unwrap();
        assert!(task.is_none());
        assert!(matches!(p.target, Target::Auto { .. }));
    }

    #[test]
    fn presets_are_tasks_and_auto_fast_keeps_its_meaning() {
        let c = config("");
        let body = json!({"model": "auto:balanced", "messages": [{"role": "user", "content": "hi"}]});
        let (_, task) = prepared(&c, body, &HeaderMap::new()).unwrap();
        assert!(task.unwrap().cascade.is_some());
        let body = json!({"model": "auto:fast", "messages": [{"role": "user", "content": "hi"}]});
        let (p, task) = prepared(&c, body, &HeaderMap::new()).unwrap();
        assert!(task.is_none());
        assert!(matches!(p.target, Target::Auto { label: "auto:fast", .. }));
        // A rule named fast replaces the built-in preference.
        let own = config("[tasks.fast]\nmodel = \"llama3.2:1b\"");
        let body = json!({"model": "auto:fast", "messages": [{"role": "user", "content": "hi"}]});
        let (_, task) = prepared(&own, body, &HeaderMap::new()).unwrap();
        assert_eq!(task.unwrap().allow.as_deref().unwrap()[0].as_str(), "llama3.2:1b");
    }

    #[test]
    fn explicit_models_keep_their_model_and_get_the_caps() {
        let c = config("[tasks.reviewer]\nmodel = \"qwen2.5:7b\"\nmax_tokens = 50\ncategory = \"coding\"");
        let mut h = HeaderMap::new();
        h.insert(TASK_HEADER, "reviewer".parse().unwrap());
        let body =
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "Write a poem about rain"}]});
        let (p, _) = prepared(&c, body, &h).unwrap();
        assert!(matches!(&p.target, Target::Model(m) if m.as_str() == "llama3.2:3b"));
        assert_eq!(p.body["options"]["num_predict"], json!(50));
        assert_ne!(p.classification.category, Category::Coding);
    }
}
