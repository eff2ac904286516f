//! The timings Ollama reports in a final answer chunk (`done: true`), read by the router to learn each model's
//! speed and by the profiler to measure it. One reading of these fields, shared by both.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Timings of one answer, in nanoseconds and tokens, as Ollama names them in its final chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Timings {
    /// Wall time of the whole request inside Ollama.
    #[serde(default, deserialize_with = "lenient_u64", rename = "total_duration")]
    pub total_ns: u64,
    /// Time spent loading the model for this request (0 when it was loaded).
    #[serde(default, deserialize_with = "lenient_u64", rename = "load_duration")]
    pub load_ns: u64,
    /// Prompt tokens evaluated (a cached prefix is not counted).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub prompt_eval_count: u64,
    /// Time spent on the prompt.
    #[serde(default, deserialize_with = "lenient_u64", rename = "prompt_eval_duration")]
    pub prompt_eval_ns: u64,
    /// Tokens generated.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub eval_count: u64,
    /// Time spent generating them.
    #[serde(default, deserialize_with = "lenient_u64", rename = "eval_duration")]
    pub eval_ns: u64,
}

impl Timings {
    /// Reads the timing fields of a final chunk; `None` when it reports none.
    pub fn from_json(value: &Value) -> Option<Self> {
        let get = |k: &str| value.get(k).and_then(Value::as_u64).unwrap_or(0);
        Self {
            total_ns: get("total_duration"),
            load_ns: get("load_duration"),
            prompt_eval_count: get("prompt_eval_count"),
            prompt_eval_ns: get("prompt_eval_duration"),
            eval_count: get("eval_count"),
            eval_ns: get("eval_duration"),
        }
        .reported()
    }

    /// Reads only the timing fields of a final chunk's bytes (other fields are skipped, not built); `None` when the
    /// line is not JSON or reports none. As in [`Timings::from_json`], a field that is not a u64 reads as 0.
    pub fn from_slice(line: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(line).ok().and_then(Self::reported)
    }

    /// Itself when anything was reported.
    fn reported(self) -> Option<Self> {
        (self.total_ns > 0 || self.eval_count > 0 || self.prompt_eval_count > 0).then_some(self)
    }

    /// Prompt tokens per second, when both the count and the time were reported.
    pub fn prefill_tps(&self) -> Option<f64> {
        rate(self.prompt_eval_count, self.prompt_eval_ns)
    }

    /// Generated tokens per second, when both the count and the time were reported.
    pub fn decode_tps(&self) -> Option<f64> {
        rate(self.eval_count, self.eval_ns)
    }
}

/// Reads a timing field as `from_json` does: a value that is not a u64 (a string, a negative or fractional number,
/// null, an object) reads as 0 instead of failing the whole line.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Value::deserialize(deserializer)?.as_u64().unwrap_or(0))
}

fn rate(tokens: u64, ns: u64) -> Option<f64> {
    (tokens > 0 && ns > 0).then(|| tokens as f64 / (ns as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn final_chunks_are_read_by_value_and_by_bytes_alike() {
        let v = json!({"model":"m","done":true,"total_duration":5_000_000_000u64,"load_duration":1,
            "prompt_eval_count":100,"prompt_eval_duration":500_000_000u64,"eval_count":50,"eval_duration":1_000_000_000u64,
            "message":{"role":"assistant","content":"x"}});
        let a = Timings::from_json(&v).unwrap();
        let b = Timings::from_slice(v.to_string().as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.prefill_tps(), Some(200.0));
        assert_eq!(a.decode_tps(), Some(50.0));
        assert_eq!(Timings::from_json(&json!({"done":true})), None);
        assert_eq!(Timings::from_slice(b"not json"), None);
        assert_eq!(Timings::from_slice(br#"{"eval_count":3}"#).unwrap().decode_tps(), None);
    }

    #[test]
    fn a_malformed_field_reads_as_zero_by_bytes_as_by_value() {
        let v = json!({"done":true,"total_duration":"soon","load_duration":null,"prompt_eval_count":-4,
            "prompt_eval_duration":1.5,"eval_count":10,"eval_duration":{"ns":1},"message":{"content":"x"}});
        let a = Timings::from_json(&v).unwrap();
        let b = Timings::from_slice(v.to_string().as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, Timings { eval_count: 10, ..Timings::default() });
        assert_eq!(Timings::from_slice(br#"{"total_duration":[1,2],"eval_count":"3"}"#), None);
    }
}
