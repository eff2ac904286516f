//! Thinking levels a model refuses.
//!
//! `think` may be a level (`"low"`, `"medium"`, `"high"`); OpenAI's `reasoning_effort` becomes one. Ollama takes a
//! level only for models it parses with the harmony format (gpt-oss) and answers any other model's with a 400
//! (`think value "high" is not supported for this model`), while `true` works for every thinking model. So a level
//! refused by a model is asked again as `true` on the same lease, and the model is remembered: its later requests
//! are sent `true` from the start. Under `auto` a level thus never costs a request that a thinking model other than
//! gpt-oss scored best for.

use crate::request::Prepared;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Mutex;
use switchyard_core::ModelName;

/// The models known to refuse a thinking level (in memory, until restart; Ollama's rule does not change per request).
#[derive(Debug, Default)]
pub(crate) struct ThinkLevels {
    refused: Mutex<HashSet<ModelName>>,
}

impl ThinkLevels {
    /// Whether `model` is known to refuse a level.
    pub(crate) fn refused(&self, model: &ModelName) -> bool {
        self.refused.lock().is_ok_and(|set| set.contains(model))
    }

    /// Remembers that `model` refused a level.
    pub(crate) fn refuse(&self, model: &ModelName) {
        if let Ok(mut set) = self.refused.lock() {
            set.insert(model.clone());
        }
    }
}

/// Whether the request asks for a thinking level rather than `true` or `false`.
pub(crate) fn asks_level(prepared: &Prepared) -> bool {
    matches!(prepared.body.get("think"), Some(Value::String(_)))
}

/// Whether an upstream 400's message is Ollama's refusal of a thinking level.
pub(crate) fn is_level_refusal(message: &str) -> bool {
    message.starts_with("think value ") && message.ends_with("is not supported for this model")
}

/// `prepared` with its level turned into `think: true`.
pub(crate) fn as_true(prepared: &Prepared) -> Prepared {
    let mut p = prepared.clone();
    p.body.insert("think".into(), Value::Bool(true));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ollamas_refusal_only() {
        assert!(is_level_refusal(r#"think value "high" is not supported for this model"#));
        assert!(is_level_refusal(r#"think value "low" is not supported for this model"#));
        assert!(!is_level_refusal(r#""llama3.2:3b" does not support thinking"#));
        assert!(!is_level_refusal("invalid think value: \"max\""));
    }

    #[test]
    fn remembers_refusing_models() {
        let levels = ThinkLevels::default();
        let m = ModelName::parse("deepseek-r1:14b").unwrap();
        assert!(!levels.refused(&m));
        levels.refuse(&m);
        assert!(levels.refused(&m));
        assert!(!levels.refused(&ModelName::parse("gpt-oss:20b").unwrap()));
    }
}
