//! Values that satisfy a JSON schema: the arguments of simulated tool calls and the answers to `format` requests.
//!
//! Required properties are filled (every property when the schema lists none) with values of the declared type:
//! strings come from the prompt's salient words where there are any (a capitalised word first, so "weather in
//! Paris" gives `location: "Paris"`), numbers from the prompt's numbers, enums take a value the prompt mentions
//! or their first one. Everything is deterministic.

use serde_json::{Map, Number, Value};

/// How deep nested objects and arrays are filled.
const MAX_DEPTH: usize = 6;

/// Words that are never worth putting in an argument.
const STOPWORDS: [&str; 60] = [
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "her", "was", "one", "our", "out", "his",
    "has", "had", "how", "its", "may", "who", "what", "when", "where", "which", "why", "with", "this", "that", "these",
    "those", "from", "into", "about", "please", "tell", "give", "show", "find", "get", "is", "in", "of", "to", "a",
    "an", "me", "my", "it", "be", "do", "does", "will", "would", "could", "should", "there", "their", "today",
];

/// Words and numbers taken from a prompt, handed out in order as a schema is filled.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromptValues {
    /// Salient words, capitalised ones first, each used once before any repeats.
    words: Vec<String>,
    /// Numbers mentioned in the prompt.
    numbers: Vec<f64>,
    /// Every lower-cased word of the prompt, to match enum values.
    all_words: Vec<String>,
    /// How many words have been handed out.
    next_word: usize,
    /// How many numbers have been handed out.
    next_number: usize,
}

impl PromptValues {
    /// Collects the values of `prompt`, leaving out words in `exclude` (the tool's own name and description words).
    pub(crate) fn new(prompt: &str, exclude: &[String]) -> Self {
        let mut capitalised = Vec::new();
        let mut others = Vec::new();
        let mut numbers = Vec::new();
        let mut all_words = Vec::new();
        for raw in prompt.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '.' || c == '_')) {
            let token = raw.trim_matches(|c: char| c == '.' || c == '-' || c == '_');
            if token.is_empty() {
                continue;
            }
            if let Ok(n) = token.parse::<f64>() {
                numbers.push(n);
                continue;
            }
            let lower = token.to_lowercase();
            all_words.push(lower.clone());
            if lower.len() < 3 || STOPWORDS.contains(&lower.as_str()) || exclude.contains(&stem(&lower)) {
                continue;
            }
            let list =
                if token.chars().next().is_some_and(char::is_uppercase) { &mut capitalised } else { &mut others };
            if !list.iter().any(|w: &String| w.eq_ignore_ascii_case(token)) {
                list.push(token.to_string());
            }
        }
        capitalised.extend(others);
        Self { words: capitalised, numbers, all_words, next_word: 0, next_number: 0 }
    }

    fn word(&mut self) -> Option<String> {
        if self.words.is_empty() {
            return None;
        }
        let w = self.words[self.next_word % self.words.len()].clone();
        self.next_word += 1;
        Some(w)
    }

    fn number(&mut self) -> Option<f64> {
        let n = self.numbers.get(self.next_number).copied();
        self.next_number += 1;
        n
    }
}

/// A crude stem for matching prompt words with tool words: lower case, a trailing plural `s` dropped.
pub(crate) fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    match lower.strip_suffix('s') {
        Some(base) if base.len() >= 3 && !base.ends_with('s') => base.to_string(),
        _ => lower,
    }
}

/// A value satisfying `schema`.
pub(crate) fn instance(schema: &Value, values: &mut PromptValues) -> Value {
    fill(schema, values, 0)
}

fn fill(schema: &Value, values: &mut PromptValues, depth: usize) -> Value {
    let Some(obj) = schema.as_object() else { return Value::String("example".to_string()) };
    if let Some(constant) = obj.get("const") {
        return constant.clone();
    }
    if let Some(options) = obj.get("enum").and_then(Value::as_array).filter(|o| !o.is_empty()) {
        let mentioned = options
            .iter()
            .find(|o| o.as_str().is_some_and(|s| values.all_words.iter().any(|w| w.eq_ignore_ascii_case(s))));
        return mentioned.unwrap_or(&options[0]).clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = obj.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return fill(first, values, depth + 1);
        }
    }
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ if obj.contains_key("items") => "array",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            if depth >= MAX_DEPTH {
                return Value::Object(out);
            }
            let empty = Map::new();
            let properties = obj.get("properties").and_then(Value::as_object).unwrap_or(&empty);
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_else(|| properties.keys().map(String::as_str).collect());
            for name in required {
                let sub = properties.get(name).cloned().unwrap_or(Value::Null);
                out.insert(name.to_string(), fill(&sub, values, depth + 1));
            }
            Value::Object(out)
        }
        "array" => {
            if depth >= MAX_DEPTH {
                return Value::Array(Vec::new());
            }
            let count = obj.get("minItems").and_then(Value::as_u64).unwrap_or(1).clamp(1, 8);
            let items = obj.get("items").cloned().unwrap_or(Value::Null);
            Value::Array((0..count).map(|_| fill(&items, values, depth + 1)).collect())
        }
        "integer" => {
            let n = values.number().map(|n| n.round() as i64).unwrap_or(1);
            let n = clamp_i64(n, obj);
            Value::Number(n.into())
        }
        "number" => {
            let n = clamp_f64(values.number().unwrap_or(1.5), obj);
            Number::from_f64(n).map_or(Value::Null, Value::Number)
        }
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => Value::String(string_value(obj, values)),
    }
}

fn string_value(obj: &Map<String, Value>, values: &mut PromptValues) -> String {
    match obj.get("format").and_then(Value::as_str) {
        Some("date") => return "2024-01-01".to_string(),
        Some("date-time") => return "2024-01-01T00:00:00Z".to_string(),
        Some("email") => return "user@example.com".to_string(),
        Some("uri") | Some("url") => return "https://example.com".to_string(),
        _ => {}
    }
    values.word().unwrap_or_else(|| "example".to_string())
}

fn clamp_i64(n: i64, obj: &Map<String, Value>) -> i64 {
    let low = obj.get("minimum").and_then(Value::as_f64).map(|v| v.ceil() as i64);
    let high = obj.get("maximum").and_then(Value::as_f64).map(|v| v.floor() as i64);
    let n = low.map_or(n, |l| n.max(l));
    high.map_or(n, |h| n.min(h))
}

fn clamp_f64(n: f64, obj: &Map<String, Value>) -> f64 {
    let n = obj.get("minimum").and_then(Value::as_f64).map_or(n, |l| n.max(l));
    obj.get("maximum").and_then(Value::as_f64).map_or(n, |h| n.min(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_properties_get_values_of_their_types_from_the_prompt() {
        let schema = json!({
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["fahrenheit", "celsius"]},
                "days": {"type": "integer", "minimum": 1},
                "detailed": {"type": "boolean"},
                "optional": {"type": "string"}
            },
            "required": ["location", "unit", "days", "detailed"]
        });
        let mut values = PromptValues::new("What is the weather in Paris for 3 days, in celsius?", &[stem("weather")]);
        let v = instance(&schema, &mut values);
        assert_eq!(v, json!({"location": "Paris", "unit": "celsius", "days": 3, "detailed": true}));
    }

    #[test]
    fn nested_arrays_objects_and_defaults() {
        let schema = json!({
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string"}},
                "score": {"type": ["number", "null"], "maximum": 1.0},
                "when": {"type": "string", "format": "date"},
                "inner": {"properties": {"ok": {"type": "boolean"}}}
            }
        });
        let v = instance(&schema, &mut PromptValues::default());
        assert_eq!(v, json!({"tags": ["example"], "score": 1.0, "when": "2024-01-01", "inner": {"ok": true}}));
    }
}
