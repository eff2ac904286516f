//! Checkers: decide whether an answer is correct without a judge.
//!
//! Every variant is verifiable from the answer text alone. `Judge` items are open-ended and need an LLM judge
//! (see `judge`); without one they are skipped.

use serde::Deserialize;

/// How an item's answer is checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The final answer equals `answer` after trimming, case-folding (unless `case_sensitive`) and dropping a
    /// trailing period.
    Exact {
        answer: String,
        #[serde(default)]
        case_sensitive: bool,
    },
    /// The last number in the answer equals `value` within `tolerance`.
    Numeric {
        value: f64,
        #[serde(default)]
        tolerance: f64,
    },
}

/// The outcome of checking one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Verifiably right or wrong, with a score in [0, 1].
    Scored { correct: bool, score: f64 },
    /// Needs a judge that is not configured.
    NeedsJudge,
}

impl Check {
    /// Checks the checker itself (a regex that compiles, a schema that is an object...).
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Judges `answer`.
    pub fn evaluate(&self, answer: &str) -> Verdict {
        let correct = match self {
            Check::Exact { answer: want, case_sensitive } => {
                let got = answer.trim().trim_end_matches('.');
                if *case_sensitive { got == want } else { got.eq_ignore_ascii_case(want) }
            }
            Check::Numeric { value, tolerance } => {
                last_number(answer).is_some_and(|n| (n - value).abs() <= tolerance.max(1e-9))
            }
        };
        Verdict::Scored { correct, score: if correct { 1.0 } else { 0.0 } }
    }

    /// An answer that this checker rejects, for the simulator's wrong answers and for tests.
    pub fn incorrect_answer(&self) -> String {
        match self {
            Check::Exact { .. } => "I am not sure.".to_string(),
            Check::Numeric { value, .. } => format!("{}", value + 1.0 + value.abs() * 0.5),
        }
    }
}

/// The last number (integer or decimal, optionally negative, commas allowed as thousands separators) in `text`.
pub fn last_number(text: &str) -> Option<f64> {
    let cleaned: String = text.chars().filter(|c| *c != ',').collect();
    let mut last = None;
    let bytes = cleaned.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() || (bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit() || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            last = cleaned[start..i].parse().ok().or(last);
        } else {
            i += 1;
        }
    }
    last
}
