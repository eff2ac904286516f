//! The `json` checker: extracting a JSON value from an answer, the supported JSON-schema subset, and the partial
//! values of `expect`.

use super::Verdict;
use super::number::numbers_close;
use super::output::fenced_blocks;
use super::text::normalize;
use serde_json::Value;

/// The JSON value an answer holds: a fenced block (`json` or untagged), the whole answer, or the first object or
/// array embedded in prose.
pub fn extract_json(answer: &str) -> Option<Value> {
    let blocks = fenced_blocks(answer);
    let tagged = blocks.iter().filter(|(tag, _)| tag == "json" || tag.is_empty());
    for (_, content) in tagged.chain(blocks.iter()) {
        if let Ok(v) = serde_json::from_str::<Value>(content.trim()) {
            return Some(v);
        }
    }
    if let Ok(v) = serde_json::from_str::<Value>(answer.trim()) {
        return Some(v);
    }
    for (pos, _) in answer.match_indices(['{', '[']).take(64) {
        let mut stream = serde_json::Deserializer::from_str(&answer[pos..]).into_iter::<Value>();
        if let Some(Ok(v)) = stream.next()
            && (v.is_object() || v.is_array())
        {
            return Some(v);
        }
    }
    None
}

/// The verdict of a `json` check: the schema counts as one part, each expected leaf value as one more.
pub(super) fn json_verdict(answer: &str, schema: &Value, expect: Option<&Value>) -> Verdict {
    let Some(value) = extract_json(answer) else {
        return Verdict::pass_fail(false);
    };
    let schema_ok = violation_at(schema, &value, "$").is_none();
    let (matched, total) = expect.map_or((0, 0), |e| expect_matches(e, Some(&value)));
    Verdict::partial(usize::from(schema_ok) + matched, 1 + total)
}

/// The schema keywords this subset understands.
const SCHEMA_KEYWORDS: [&str; 15] = [
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "additionalProperties",
    "title",
    "description",
];

/// The JSON types a schema may name.
const SCHEMA_TYPES: [&str; 7] = ["object", "array", "string", "number", "integer", "boolean", "null"];

/// Checks that `schema` is a well-formed schema of the supported subset; `path` names it in errors.
pub(super) fn validate_schema(schema: &Value, path: &str) -> Result<(), String> {
    let Some(map) = schema.as_object() else {
        return Err(format!("{path} must be an object (a JSON schema), not {schema}"));
    };
    for key in map.keys() {
        if !SCHEMA_KEYWORDS.contains(&key.as_str()) {
            return Err(format!("{path}: unsupported keyword {key:?} (supported: {})", SCHEMA_KEYWORDS.join(", ")));
        }
    }
    if let Some(t) = map.get("type") {
        let names: Vec<&Value> = match t {
            Value::Array(list) if !list.is_empty() => list.iter().collect(),
            other => vec![other],
        };
        for name in names {
            if !name.as_str().is_some_and(|n| SCHEMA_TYPES.contains(&n)) {
                return Err(format!("{path}.type: unknown type {name} (one of {})", SCHEMA_TYPES.join(", ")));
            }
        }
    }
    if let Some(props) = map.get("properties") {
        let Some(props) = props.as_object() else {
            return Err(format!("{path}.properties must be an object"));
        };
        for (name, sub) in props {
            validate_schema(sub, &format!("{path}.properties.{name}"))?;
        }
    }
    if let Some(required) = map.get("required") {
        let Some(list) = required.as_array().filter(|l| l.iter().all(Value::is_string)) else {
            return Err(format!("{path}.required must be an array of strings"));
        };
        let closed = map.get("additionalProperties") == Some(&Value::Bool(false));
        for name in list.iter().filter_map(Value::as_str) {
            if closed && map.get("properties").and_then(|p| p.get(name)).is_none() {
                return Err(format!("{path}.required names {name:?}, which additionalProperties = false forbids"));
            }
        }
    }
    if let Some(items) = map.get("items") {
        validate_schema(items, &format!("{path}.items"))?;
    }
    if let Some(list) = map.get("enum")
        && list.as_array().is_none_or(Vec::is_empty)
    {
        return Err(format!("{path}.enum must be a non-empty array"));
    }
    match map.get("additionalProperties") {
        None | Some(Value::Bool(_)) => {}
        Some(sub) => validate_schema(sub, &format!("{path}.additionalProperties"))?,
    }
    let number = |key: &str| -> Result<Option<f64>, String> {
        match map.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("{path}.{key} must be a number")),
        }
    };
    if let (Some(lo), Some(hi)) = (number("minimum")?, number("maximum")?)
        && lo > hi
    {
        return Err(format!("{path}.minimum ({lo}) is greater than {path}.maximum ({hi})"));
    }
    let count = |key: &str| -> Result<Option<u64>, String> {
        match map.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{path}.{key} must be a non-negative integer")),
        }
    };
    for (lo_key, hi_key) in [("minItems", "maxItems"), ("minLength", "maxLength")] {
        if let (Some(lo), Some(hi)) = (count(lo_key)?, count(hi_key)?)
            && lo > hi
        {
            return Err(format!("{path}.{lo_key} ({lo}) is greater than {path}.{hi_key} ({hi})"));
        }
    }
    for key in ["title", "description"] {
        if map.get(key).is_some_and(|v| !v.is_string()) {
            return Err(format!("{path}.{key} must be a string"));
        }
    }
    Ok(())
}

/// Whether `value` has the JSON type `name`.
fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// Equality of JSON values with numbers compared numerically.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => numbers_close(x, y, 0.0),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The first way `value` violates `schema`, as `$.path: reason` (`$` is the value itself); `None` when it
/// conforms.
///
/// Unlike [`Check::validate`](super::Check::validate), which refuses a suite schema outside the subset, this only
/// reads the keywords it knows and ignores every other one (`$schema`, `$defs`, `anyOf`, `format`...), so it can be
/// pointed at schemas written by others (a client's `format`, a tool's `parameters`): an unknown keyword never
/// causes a violation, it only goes unchecked.
pub fn schema_violation(schema: &Value, value: &Value) -> Option<String> {
    violation_at(schema, value, "$")
}

/// [`schema_violation`] at `path`, the location of `value` inside the top-level value.
fn violation_at(schema: &Value, value: &Value, path: &str) -> Option<String> {
    let map = schema.as_object()?;
    if let Some(t) = map.get("type") {
        let ok = match t {
            Value::Array(list) => list.iter().filter_map(Value::as_str).any(|n| has_type(value, n)),
            other => other.as_str().is_some_and(|n| has_type(value, n)),
        };
        if !ok {
            return Some(format!("{path}: expected type {t}"));
        }
    }
    if let Some(options) = map.get("enum").and_then(Value::as_array)
        && !options.iter().any(|o| json_equal(o, value))
    {
        return Some(format!("{path}: not one of the enum values"));
    }
    if let Some(c) = map.get("const")
        && !json_equal(c, value)
    {
        return Some(format!("{path}: not the const value"));
    }
    if let Some(n) = value.as_f64() {
        if map.get("minimum").and_then(Value::as_f64).is_some_and(|lo| n < lo) {
            return Some(format!("{path}: below minimum"));
        }
        if map.get("maximum").and_then(Value::as_f64).is_some_and(|hi| n > hi) {
            return Some(format!("{path}: above maximum"));
        }
    }
    let within = |len: usize, lo: &str, hi: &str| {
        let len = len as u64;
        map.get(lo).and_then(Value::as_u64).is_none_or(|m| len >= m)
            && map.get(hi).and_then(Value::as_u64).is_none_or(|m| len <= m)
    };
    if let Some(s) = value.as_str()
        && !within(s.chars().count(), "minLength", "maxLength")
    {
        return Some(format!("{path}: string length out of bounds"));
    }
    if let Some(list) = value.as_array() {
        if !within(list.len(), "minItems", "maxItems") {
            return Some(format!("{path}: item count out of bounds"));
        }
        if let Some(items) = map.get("items") {
            for (i, item) in list.iter().enumerate() {
                if let Some(v) = violation_at(items, item, &format!("{path}[{i}]")) {
                    return Some(v);
                }
            }
        }
    }
    if let Some(object) = value.as_object() {
        for name in map.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Some(format!("{path}: missing required {name:?}"));
            }
        }
        let props = map.get("properties").and_then(Value::as_object);
        for (key, v) in object {
            match props.and_then(|p| p.get(key)) {
                Some(sub) => {
                    if let Some(violation) = violation_at(sub, v, &format!("{path}.{key}")) {
                        return Some(violation);
                    }
                }
                None => match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => return Some(format!("{path}: unexpected property {key:?}")),
                    Some(sub @ Value::Object(_)) => {
                        if let Some(violation) = violation_at(sub, v, &format!("{path}.{key}")) {
                            return Some(violation);
                        }
                    }
                    _ => {}
                },
            }
        }
    }
    None
}

/// The number of leaf values in an `expect` value (an empty object or array counts as one).
pub(super) fn leaf_count(expect: &Value) -> usize {
    match expect {
        Value::Object(m) if !m.is_empty() => m.values().map(leaf_count).sum(),
        Value::Array(a) if !a.is_empty() => a.iter().map(leaf_count).sum(),
        _ => 1,
    }
}

/// (matched, total) leaves of `expect` found in `got`.
fn expect_matches(expect: &Value, got: Option<&Value>) -> (usize, usize) {
    match expect {
        Value::Object(m) if !m.is_empty() => {
            let got = got.and_then(Value::as_object);
            m.iter().fold((0, 0), |(a, b), (k, v)| {
                let (x, y) = expect_matches(v, got.and_then(|g| g.get(k)));
                (a + x, b + y)
            })
        }
        Value::Array(list) if !list.is_empty() => match got.and_then(Value::as_array) {
            Some(g) if g.len() == list.len() => list.iter().zip(g).fold((0, 0), |(a, b), (e, v)| {
                let (x, y) = expect_matches(e, Some(v));
                (a + x, b + y)
            }),
            _ => (0, leaf_count(expect)),
        },
        Value::String(want) => {
            let ok = got.and_then(Value::as_str).is_some_and(|s| normalize(s) == normalize(want));
            (usize::from(ok), 1)
        }
        leaf => (usize::from(got.is_some_and(|g| json_equal(leaf, g))), 1),
    }
}

#[cfg(test)]
mod tests {
    use crate::check::Verdict;
    use crate::check::tests::{PERSON_SCHEMA, check, invalid, passes};

    #[test]
    fn json_extracts_from_fences_and_prose() {
        let c = check(PERSON_SCHEMA);
        let bare = r#"{"name": "Ada Lovelace", "age": 36, "tags": ["a"]}"#;
        assert!(passes(&c, bare));
        assert!(passes(&c, &format!("```json\n{bare}\n```")));
        assert!(passes(&c, &format!("Here is the JSON:\n\n{bare}\n\nLet me know if you need more.")));
        assert!(passes(&c, r#"{"name": "ada  lovelace", "age": 36.0, "tags": ["a", "b"], "email": null}"#));
        assert!(!passes(&c, "no json here"));
    }

    #[test]
    fn json_schema_subset_rejects_violations() {
        let c = check(PERSON_SCHEMA);
        for bad in [
            r#"{"name": "Ada Lovelace", "age": 36}"#,
            r#"{"name": "Ada Lovelace", "age": 36.5, "tags": ["a"]}"#,
            r#"{"name": "Ada Lovelace", "age": 200, "tags": ["a"]}"#,
            r#"{"name": "Ada Lovelace", "age": 36, "tags": []}"#,
            r#"{"name": "Ada Lovelace", "age": 36, "tags": ["a", "b", "a"]}"#,
            r#"{"name": "Ada Lovelace", "age": 36, "tags": ["c"]}"#,
            r#"{"name": "Ada Lovelace", "age": 36, "tags": ["a"], "extra": 1}"#,
            r#"{"name": "", "age": 36, "tags": ["a"]}"#,
            r#"{"name": "Ada Lovelace", "age": "36", "tags": ["a"]}"#,
            r#"{"name": "Ada Lovelace", "age": 36, "tags": ["a"], "email": 5}"#,
            r#"["Ada Lovelace", 36]"#,
        ] {
            assert!(!passes(&c, bad), "{bad}");
        }
        let c = check(r#"check = { kind = "json", schema = { type = "object", properties = { v = { const = 3 } } } }"#);
        assert!(passes(&c, r#"{"v": 3}"#));
        assert!(!passes(&c, r#"{"v": 4}"#));
    }

    #[test]
    fn json_expect_checks_values_with_partial_credit() {
        let c = check(PERSON_SCHEMA);
        assert_eq!(
            c.evaluate(r#"{"name": "Grace Hopper", "age": 36, "tags": ["a"]}"#),
            Verdict::Scored { correct: false, score: 2.0 / 3.0 }
        );
        let c = check(
            r#"check = { kind = "json", schema = { type = "array" }, expect = [{ sku = "A1", qty = 2 }, { sku = "B2" }] }"#,
        );
        assert!(passes(&c, r#"[{"sku": "a1", "qty": 2, "note": "x"}, {"sku": "B2", "qty": 1}]"#));
        assert!(!passes(&c, r#"[{"sku": "B2"}, {"sku": "A1", "qty": 2}]"#));
        assert!(!passes(&c, r#"[{"sku": "A1", "qty": 2}]"#));
    }

    #[test]
    fn schema_violation_ignores_keywords_outside_the_subset() {
        use crate::check::schema_violation;
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"unit": {"enum": ["c", "f"]}},
            "type": "object",
            "properties": {
                "city": {"type": "string", "format": "hostname", "pattern": "^x$"},
                "unit": {"$ref": "#/$defs/unit"}
            },
            "anyOf": [{"required": ["nothing"]}],
            "required": ["city"],
        });
        assert_eq!(schema_violation(&schema, &serde_json::json!({"city": "Oslo", "unit": 5})), None);
        assert_eq!(
            schema_violation(&schema, &serde_json::json!({"unit": "c"})).as_deref(),
            Some("$: missing required \"city\"")
        );
        assert_eq!(
            schema_violation(&schema, &serde_json::json!({"city": 3})).as_deref(),
            Some("$.city: expected type \"string\"")
        );
    }

    #[test]
    fn json_schema_must_be_well_formed() {
        assert!(invalid(r#"check = { kind = "json", schema = "object" }"#).contains("check.schema must be an object"));
        assert!(invalid(r#"check = { kind = "json", schema = { type = "strng" } }"#).contains("check.schema.type"));
        assert!(
            invalid(r#"check = { kind = "json", schema = { type = "object", properties = { a = { typo = 1 } } } }"#)
                .contains("check.schema.properties.a")
        );
        assert!(invalid(r#"check = { kind = "json", schema = { minItems = 3, maxItems = 1 } }"#).contains("minItems"));
        assert!(invalid(r#"check = { kind = "json", schema = { minimum = 3, maximum = 1 } }"#).contains("minimum"));
        assert!(invalid(r#"check = { kind = "json", schema = { enum = [] } }"#).contains("enum"));
        assert!(
            invalid(r#"check = { kind = "json", schema = { required = ["a"], additionalProperties = false } }"#)
                .contains("required")
        );
    }
}
