//! Task rules: what a client step (`x-switchyard-task: planner`, or the virtual model `auto:planner`) gets routed
//! with. A rule may fix the category (no classification), the quality preference, one model or an allow-list,
//! caps on output tokens, the temperature, and a cascade of models whose answers are validated before they are
//! accepted. Three presets (`fast`, `balanced`, `quality`) are both usable task names and a base a rule can start
//! from (`preset = "balanced"`).

use crate::category::Category;
use crate::error::CoreError;
use crate::model::ModelName;
use serde::{Deserialize, Serialize};

/// Most steps a cascade may take.
pub const MAX_CASCADE_STEPS: u32 = 8;

/// The names of the built-in presets.
pub const TASK_PRESETS: [&str; 3] = ["fast", "balanced", "quality"];

/// Every key a `[tasks.NAME]` table may hold.
pub const TASK_KEYS: [&str; 12] = [
    "preset",
    "category",
    "quality_preference",
    "model",
    "models",
    "max_tokens",
    "temperature",
    "cascade",
    "cascade_max_steps",
    "validators",
    "judge_model",
    "judge_min_score",
];

/// The validators a cascade may run on an answer.
pub const VALIDATORS: [&str; 6] = ["nonempty", "truncated", "refusal", "json", "tools", "code"];

/// Which models a cascade tries, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CascadeSteps {
    /// These models, cheapest first.
    List(Vec<String>),
    /// `"auto"`: the eligible models ordered by predicted cost, each step better in quality than the one before.
    Auto(String),
}

impl CascadeSteps {
    /// True for `cascade = "auto"`.
    pub fn is_auto(&self) -> bool {
        matches!(self, CascadeSteps::Auto(_))
    }
}

/// One `[tasks.NAME]` table. Every field is optional; an unset field leaves routing as it would be without a rule
/// (or as the preset sets it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskRule {
    /// Starts from a preset (`fast`, `balanced`, `quality`); the rule's own keys win.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The category to route by; the request is not classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// Weight of quality against speed (0 = fastest, 1 = best); `x-switchyard-quality` still overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_preference: Option<f64>,
    /// The one model this task uses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The models `auto` may choose from for this task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Most output tokens: applied when the client asks for more or sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The sampling temperature, replacing the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Models to try in turn, each answer validated before it is accepted: a list, or `"auto"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeSteps>,
    /// Most steps of the cascade (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade_max_steps: Option<u32>,
    /// Which validators judge a step's answer (default: all of [`VALIDATORS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validators: Option<Vec<String>>,
    /// A model that scores each step's answer from 0 to 10 (none by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_model: Option<String>,
    /// Least judge score, in [0, 1], an answer needs (default 0.7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_min_score: Option<f64>,
}

/// What to do with a task name that no rule or preset defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownTask {
    /// A 400 naming the known tasks.
    #[default]
    Reject,
    /// Route as plain `auto`.
    Auto,
}

/// A preset's rule, with the preferences of `[routing]`.
pub fn preset_rule(name: &str, routing: &super::RoutingConfig) -> Option<TaskRule> {
    let rule = match name {
        "fast" => TaskRule { quality_preference: Some(routing.fast_preference), ..TaskRule::default() },
        "balanced" => TaskRule {
            quality_preference: Some(routing.quality_preference),
            cascade: Some(CascadeSteps::Auto("auto".to_string())),
            cascade_max_steps: Some(2),
            ..TaskRule::default()
        },
        "quality" => TaskRule { quality_preference: Some(routing.best_preference), ..TaskRule::default() },
        _ => return None,
    };
    Some(rule)
}

/// The rule that applies for the task `name`: `rule` over its preset, or over the preset of its own name (a rule
/// called `balanced` keeps the balanced cascade unless it says otherwise).
pub fn effective_rule(name: &str, rule: &TaskRule, routing: &super::RoutingConfig) -> TaskRule {
    let base = rule.preset.as_deref().or(Some(name)).and_then(|p| preset_rule(p, routing)).unwrap_or_default();
    rule.clone().over(base)
}

impl TaskRule {
    /// This rule over its preset: every key the rule sets wins.
    pub fn over(self, base: TaskRule) -> TaskRule {
        TaskRule {
            preset: self.preset,
            category: self.category.or(base.category),
            quality_preference: self.quality_preference.or(base.quality_preference),
            model: self.model.or(base.model),
            models: self.models.or(base.models),
            max_tokens: self.max_tokens.or(base.max_tokens),
            temperature: self.temperature.or(base.temperature),
            cascade: self.cascade.or(base.cascade),
            cascade_max_steps: self.cascade_max_steps.or(base.cascade_max_steps),
            validators: self.validators.or(base.validators),
            judge_model: self.judge_model.or(base.judge_model),
            judge_min_score: self.judge_min_score.or(base.judge_min_score),
        }
    }

    /// Checks the rule named `name`; errors name the key (`tasks.planner.max_tokens`).
    pub fn validate(&self, name: &str) -> Result<(), CoreError> {
        let key = |field: &str| format!("tasks.{name}.{field}");
        if name.is_empty()
            || name.len() > 48
            || !name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
        {
            return Err(CoreError::config(
                format!("tasks.{name:?}"),
                "a task name is 1-48 letters, digits, '-' or '_' (it is sent as a header and in auto:NAME)",
            ));
        }
        if let Some(preset) = &self.preset
            && !TASK_PRESETS.contains(&preset.as_str())
        {
            return Err(CoreError::config(key("preset"), format!("{preset:?} is not one of fast, balanced, quality")));
        }
        let unit = |field: &str, v: Option<f64>| match v {
            Some(v) if !(v.is_finite() && (0.0..=1.0).contains(&v)) => {
                Err(CoreError::config(key(field), format!("{v} is not between 0 and 1")))
            }
            _ => Ok(()),
        };
        unit("quality_preference", self.quality_preference)?;
        unit("judge_min_score", self.judge_min_score)?;
        if let Some(t) = self.temperature
            && !(t.is_finite() && (0.0..=2.0).contains(&t))
        {
            return Err(CoreError::config(key("temperature"), format!("{t} is not between 0 and 2")));
        }
        if self.max_tokens == Some(0) {
            return Err(CoreError::config(key("max_tokens"), "must be at least 1 (leave it out for no cap)"));
        }
        if self.model.is_some() && self.models.is_some() {
            return Err(CoreError::config(key("model"), "set either model (one model) or models (an allow-list)"));
        }
        let names = |field: &str, list: &[String]| -> Result<(), CoreError> {
            for n in list {
                ModelName::parse(n).map_err(|e| CoreError::config(key(field), e.to_string()))?;
            }
            Ok(())
        };
        if let Some(model) = &self.model {
            names("model", std::slice::from_ref(model))?;
        }
        if let Some(models) = &self.models {
            if models.is_empty() {
                return Err(CoreError::config(key("models"), "must name at least one model"));
            }
            names("models", models)?;
        }
        if let Some(judge) = &self.judge_model {
            names("judge_model", std::slice::from_ref(judge))?;
        }
        match &self.cascade {
            Some(CascadeSteps::Auto(word)) if word != "auto" => {
                return Err(CoreError::config(
                    key("cascade"),
                    format!("must be a list of models or \"auto\", got {word:?}"),
                ));
            }
            Some(CascadeSteps::List(list)) => {
                if list.len() < 2 {
                    return Err(CoreError::config(key("cascade"), "a cascade lists at least two models"));
                }
                names("cascade", list)?;
            }
            _ => {}
        }
        if let Some(steps) = self.cascade_max_steps
            && !(2..=MAX_CASCADE_STEPS).contains(&steps)
        {
            return Err(CoreError::config(
                key("cascade_max_steps"),
                format!("must be between 2 and {MAX_CASCADE_STEPS}"),
            ));
        }
        if let Some(validators) = &self.validators {
            for v in validators {
                if !VALIDATORS.contains(&v.as_str()) {
                    return Err(CoreError::config(
                        key("validators"),
                        format!("{v:?} is not a validator; the validators are {}", VALIDATORS.join(", ")),
                    ));
                }
            }
        }
        if self.cascade.is_none()
            && (self.cascade_max_steps.is_some()
                || self.validators.is_some()
                || self.judge_model.is_some()
                || self.judge_min_score.is_some())
        {
            return Err(CoreError::config(
                key("cascade"),
                "cascade_max_steps, validators and judge_* apply to a cascade: set cascade too",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoutingConfig;

    fn rule(toml_text: &str) -> TaskRule {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn rules_read_from_toml_and_validate() {
        let r = rule(
            r#"category = "coding"
               quality_preference = 0.9
               models = ["qwen2.5-coder:7b", "llama3.2:3b"]
               max_tokens = 512
               temperature = 0.2
               cascade = ["llama3.2:3b", "qwen2.5-coder:7b"]
               validators = ["nonempty", "code"]"#,
        );
        assert_eq!(r.category, Some(Category::Coding));
        assert_eq!(r.cascade, Some(CascadeSteps::List(vec!["llama3.2:3b".into(), "qwen2.5-coder:7b".into()])));
        r.validate("programmer").unwrap();
        let auto = rule(r#"cascade = "auto""#);
        assert!(auto.cascade.as_ref().unwrap().is_auto());
        auto.validate("x").unwrap();
    }

    #[test]
    fn bad_rules_name_their_key() {
        let cases = [
            (r#"cascade = "cheapest""#, "tasks.t.cascade"),
            (r#"cascade = ["llama3.2"]"#, "tasks.t.cascade"),
            ("quality_preference = 1.5", "tasks.t.quality_preference"),
            ("temperature = -1.0", "tasks.t.temperature"),
            ("max_tokens = 0", "tasks.t.max_tokens"),
            (r#"validators = ["json"]"#, "tasks.t.cascade"),
            (
                r#"cascade = "auto"
                validators = ["spelling"]"#,
                "tasks.t.validators",
            ),
            (r#"preset = "cheap""#, "tasks.t.preset"),
            (
                r#"model = "a"
                models = ["b"]"#,
                "tasks.t.model",
            ),
            (
                r#"cascade = "auto"
                cascade_max_steps = 1"#,
                "tasks.t.cascade_max_steps",
            ),
        ];
        for (text, key) in cases {
            match rule(text).validate("t") {
                Err(CoreError::Config { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(TaskRule::default().validate("no spaces allowed").is_err());
        assert!(TaskRule::default().validate("v1.plan").is_err());
        assert!(toml::from_str::<TaskRule>("unknown = 1").is_err());
    }

    #[test]
    fn presets_and_overrides() {
        let routing = RoutingConfig::default();
        let balanced = preset_rule("balanced", &routing).unwrap();
        assert!(balanced.cascade.as_ref().unwrap().is_auto());
        let own = TaskRule { cascade_max_steps: Some(3), max_tokens: Some(64), ..TaskRule::default() }.over(balanced);
        assert_eq!(own.cascade_max_steps, Some(3));
        assert_eq!(own.max_tokens, Some(64));
        assert_eq!(own.quality_preference, Some(routing.quality_preference));
        assert_eq!(preset_rule("fast", &routing).unwrap().quality_preference, Some(routing.fast_preference));
        assert!(preset_rule("planner", &routing).is_none());
        for name in TASK_PRESETS {
            preset_rule(name, &routing).unwrap().validate(name).unwrap();
        }
        // A rule named like a preset starts from it; a preset's cascade makes cascade keys valid.
        let named = effective_rule("balanced", &TaskRule { max_tokens: Some(64), ..TaskRule::default() }, &routing);
        assert!(named.cascade.is_some() && named.max_tokens == Some(64));
        let judged = TaskRule {
            preset: Some("balanced".into()),
            judge_model: Some("llama3.1:8b".into()),
            ..TaskRule::default()
        };
        effective_rule("reviewer", &judged, &routing).validate("reviewer").unwrap();
        assert!(judged.validate("reviewer").is_err());
    }
}
