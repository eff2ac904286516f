//! Checkers: decide whether an answer is correct from its text alone, with no paid judge.
//!
//! Every item of a suite carries one `check` table; its `kind` picks the checker. All kinds but `judge` are
//! verifiable from the answer text; `judge` items are open-ended and scored only by the optional LLM judge (see
//! `judge`), so without one they are skipped.
//!
//! | kind           | fields (TOML)                                                                               |
//! |----------------|---------------------------------------------------------------------------------------------|
//! | `exact`        | `answer = "Paris"`, `case_sensitive = false`, `alternatives = ["..."]`                      |
//! | `numeric`      | `value = 0.25`, `tolerance = 0.001` (absolute, default 0)                                   |
//! | `regex`        | `pattern = '(?i)\bdef\s+slugify\s*\('` (searched anywhere; use `(?i)`, `^`, `$` inline)     |
//! | `must_include` | `all = [...]`, `any = [...]`, `none = [...]` (case-insensitive phrases)                    |
//! | `json`         | `schema = { type = "object", ... }`, `expect = { name = "Ada", total = 12.5 }`              |
//! | `constraints`  | any of the fields of [`Constraints`] (`exact_lines = 3`, `acrostic = "RAIN"`, ...)          |
//! | `code_output`  | `expected = "3\n4"` (what the program prints, compared line by line)                        |
//! | `judge`        | `rubric = "..."` (open-ended; `evaluate` answers `NeedsJudge`)                              |
//!
//! Tolerance: `exact` compares several readings of the answer: the whole answer, its first line and that line's
//! leading clause (`No, because...`), its last line and what follows that line's last ` is `, the text after a
//! final `Answer:` or `answer is`, and the last `**bold**` span; each with whitespace collapsed and, layer by layer,
//! a trailing period, wrapping markdown or quotes, a leading `Answer:` and a leading article removed. `numeric` takes
//! the first number inside the last `\boxed{}`, else the number that the line after the last `answer is` /
//! `answer:` / `answer =` commits to (`Answer: 9 + 4 + 1 = 14` reads 14), else the last number; it reads thousands
//! separators (`1,234`), signs, decimals, exponents and simple fractions (`3/4`). `must_include` and `constraints`
//! phrases match case-insensitively at word boundaries. `json` takes a fenced block, the whole answer, or the first
//! object or array inside prose. `code_output` takes the last fenced block, or the answer without a leading
//! `It prints:`-style line (and, for one-line outputs, the text after `prints` / `Output:`), ignoring trailing
//! whitespace; output lines are compared case-sensitively.
//!
//! Every checker also produces a deterministic answer it rejects (`incorrect_answer`), which the simulator sends
//! when a simulated model gets an item wrong; `validate` refuses a checker for which no such answer exists.
//!
//! Each checker's logic lives in its own file: `text` (normalization and the readings `exact` compares), `number`,
//! `output` (fenced blocks and `code_output`), `json` and `constraints`; this module holds the `Check` type, its
//! validation and dispatch, the cached regex `Pattern` and the `Verdict`.

mod constraints;
mod json;
mod number;
mod output;
mod text;

pub use constraints::Constraints;
pub use json::{extract_json, schema_violation};
pub use number::{final_number, last_number};

use json::{json_verdict, leaf_count, validate_schema};
use number::{format_number, numbers_close};
use output::{output_lines, output_matches};
use text::{contains_phrase, exact_matches, normalize};

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::sync::OnceLock;

/// How an item's answer is checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The final answer equals `answer` (or one of `alternatives`) after the tolerant clean-up described in the
    /// module documentation; case-insensitive unless `case_sensitive`.
    Exact {
        /// The expected answer.
        answer: String,
        /// Compare letter case too (default: no).
        #[serde(default)]
        case_sensitive: bool,
        /// Other accepted spellings (`"USA"` beside `"United States"`).
        #[serde(default)]
        alternatives: Vec<String>,
    },
    /// The answer's final number equals `value` within `tolerance`.
    Numeric {
        /// The expected value.
        value: f64,
        /// Largest accepted absolute difference (default 0: equal up to rounding noise).
        #[serde(default)]
        tolerance: f64,
    },
    /// The regular expression `pattern` matches somewhere in the answer.
    Regex {
        /// The pattern (regex crate syntax), compiled once by `validate` and cached.
        pattern: Pattern,
    },
    /// Phrase presence, case-insensitive; a phrase that begins or ends with a letter or digit must begin or end
    /// at a word boundary (`cat` does not match `category`).
    MustInclude {
        /// Every one of these must appear.
        #[serde(default)]
        all: Vec<String>,
        /// At least one of these must appear (ignored when empty).
        #[serde(default)]
        any: Vec<String>,
        /// None of these may appear.
        #[serde(default)]
        none: Vec<String>,
    },
    /// The answer holds JSON (bare, in a fenced block, or embedded in prose) that satisfies `schema` and, when
    /// given, carries the values of `expect`.
    Json {
        /// A JSON-schema subset: `type`, `properties`, `required`, `items`, `enum`, `const`, `minimum`,
        /// `maximum`, `minItems`, `maxItems`, `minLength`, `maxLength`, `additionalProperties` (a boolean or a
        /// schema), plus `title` and `description`, which are ignored.
        schema: Value,
        /// A partial value the answer must contain: objects match by the keys given (extra keys allowed), arrays
        /// element by element with equal length, strings case-insensitively with whitespace collapsed, numbers
        /// numerically.
        #[serde(default)]
        expect: Option<Value>,
    },
    /// Verifiable instruction-following constraints; all must hold.
    Constraints(Box<Constraints>),
    /// The answer states what a program prints: compared line by line with `expected`.
    CodeOutput {
        /// The exact output of the program.
        expected: String,
    },
    /// Open-ended; scored only by an LLM judge against `rubric`.
    Judge {
        /// What a good answer does, for the judge.
        rubric: String,
    },
}

/// A regular expression, compiled on first use and cached for the life of the item.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "String")]
pub struct Pattern {
    /// The pattern as written in the suite.
    source: String,
    /// The compiled expression, filled by `validate` or the first evaluation.
    compiled: OnceLock<Regex>,
}

/// The outcome of checking one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Verifiably right or wrong, with a score in [0, 1] (partial credit for multi-part checkers).
    Scored {
        /// Every part of the check holds.
        correct: bool,
        /// The share of the check's parts that hold.
        score: f64,
    },
    /// An open-ended item: only a judge can score it.
    NeedsJudge,
}

impl Verdict {
    /// Right (score 1) or wrong (score 0).
    pub fn pass_fail(correct: bool) -> Verdict {
        Verdict::Scored { correct, score: if correct { 1.0 } else { 0.0 } }
    }

    /// `passed` of `total` parts hold; correct when all do.
    pub fn partial(passed: usize, total: usize) -> Verdict {
        if total == 0 {
            return Verdict::pass_fail(false);
        }
        Verdict::Scored { correct: passed == total, score: passed as f64 / total as f64 }
    }

    /// Whether the answer is right; `None` for items that need a judge.
    pub fn correct(&self) -> Option<bool> {
        match self {
            Verdict::Scored { correct, .. } => Some(*correct),
            Verdict::NeedsJudge => None,
        }
    }
}

impl Pattern {
    /// A pattern from its source text; it is compiled by `validate` or on first use.
    pub fn new(source: impl Into<String>) -> Pattern {
        Pattern { source: source.into(), compiled: OnceLock::new() }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled expression, compiling and caching it on first call.
    fn compile(&self) -> Result<&Regex, regex::Error> {
        if let Some(re) = self.compiled.get() {
            return Ok(re);
        }
        let re = Regex::new(&self.source)?;
        Ok(self.compiled.get_or_init(|| re))
    }

    /// Whether the pattern matches somewhere in `text` (false when it does not compile).
    pub fn is_match(&self, text: &str) -> bool {
        self.compile().is_ok_and(|re| re.is_match(text))
    }
}

impl From<String> for Pattern {
    fn from(source: String) -> Pattern {
        Pattern::new(source)
    }
}

impl Check {
    /// The checker's kind as written in suite files (`exact`, `numeric`...).
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Exact { .. } => "exact",
            Check::Numeric { .. } => "numeric",
            Check::Regex { .. } => "regex",
            Check::MustInclude { .. } => "must_include",
            Check::Json { .. } => "json",
            Check::Constraints(_) => "constraints",
            Check::CodeOutput { .. } => "code_output",
            Check::Judge { .. } => "judge",
        }
    }

    /// Whether only an LLM judge can score this item.
    pub fn needs_judge(&self) -> bool {
        matches!(self, Check::Judge { .. })
    }

    /// Checks the checker itself: non-empty expectations, a regex that compiles, a schema that is a well-formed
    /// object, consistent bounds. The message names the offending field (`check.pattern: ...`).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Check::Exact { answer, alternatives, .. } => {
                non_blank("check.answer", answer)?;
                for (i, alt) in alternatives.iter().enumerate() {
                    non_blank(&format!("check.alternatives[{i}]"), alt)?;
                }
            }
            Check::Numeric { value, tolerance } => {
                if !value.is_finite() {
                    return Err("check.value must be a finite number".to_string());
                }
                if !tolerance.is_finite() || *tolerance < 0.0 {
                    return Err(format!("check.tolerance must be a finite number >= 0, not {tolerance}"));
                }
            }
            Check::Regex { pattern } => {
                non_blank("check.pattern", pattern.as_str())?;
                pattern.compile().map_err(|e| format!("check.pattern does not compile: {e}"))?;
            }
            Check::MustInclude { all, any, none } => {
                if all.is_empty() && any.is_empty() {
                    return Err("check.all and check.any are both empty: nothing is required".to_string());
                }
                for (field, list) in [("all", all), ("any", any), ("none", none)] {
                    for (i, phrase) in list.iter().enumerate() {
                        non_blank(&format!("check.{field}[{i}]"), phrase)?;
                    }
                }
                for phrase in all {
                    if none.iter().any(|n| normalize(n) == normalize(phrase)) {
                        return Err(format!("check.all and check.none both hold {phrase:?}"));
                    }
                }
            }
            Check::Json { schema, expect } => {
                validate_schema(schema, "check.schema")?;
                if let Some(expect) = expect
                    && leaf_count(expect) == 0
                {
                    return Err("check.expect holds no value to compare".to_string());
                }
            }
            Check::Constraints(c) => c.validate()?,
            Check::CodeOutput { expected } => {
                if output_lines(expected).is_empty() {
                    return Err("check.expected is empty".to_string());
                }
            }
            Check::Judge { rubric } => non_blank("check.rubric", rubric)?,
        }
        if !self.needs_judge() && self.first_rejected().is_none() {
            return Err(format!(
                "the {} check accepts every stock wrong answer; it cannot tell right from wrong",
                self.kind()
            ));
        }
        Ok(())
    }

    /// Judges `answer`.
    pub fn evaluate(&self, answer: &str) -> Verdict {
        match self {
            Check::Exact { answer: want, case_sensitive, alternatives } => Verdict::pass_fail(exact_matches(
                answer,
                std::iter::once(want).chain(alternatives).map(String::as_str),
                *case_sensitive,
            )),
            Check::Numeric { value, tolerance } => {
                Verdict::pass_fail(final_number(answer).is_some_and(|n| numbers_close(n, *value, *tolerance)))
            }
            Check::Regex { pattern } => Verdict::pass_fail(pattern.is_match(answer)),
            Check::MustInclude { all, any, none } => {
                let text = normalize(answer);
                let mut passed = all.iter().filter(|p| contains_phrase(&text, &normalize(p))).count();
                let mut total = all.len();
                if !any.is_empty() {
                    total += 1;
                    passed += usize::from(any.iter().any(|p| contains_phrase(&text, &normalize(p))));
                }
                total += none.len();
                passed += none.iter().filter(|p| !contains_phrase(&text, &normalize(p))).count();
                Verdict::partial(passed, total)
            }
            Check::Json { schema, expect } => json_verdict(answer, schema, expect.as_ref()),
            Check::Constraints(c) => {
                let results = c.results(answer);
                Verdict::partial(results.iter().filter(|(_, ok)| *ok).count(), results.len())
            }
            Check::CodeOutput { expected } => Verdict::pass_fail(output_matches(answer, expected)),
            Check::Judge { .. } => Verdict::NeedsJudge,
        }
    }

    /// A deterministic answer this checker rejects, for the simulator's wrong answers and for tests. For `judge`
    /// items it is a low-effort answer that a judge scores low.
    pub fn incorrect_answer(&self) -> String {
        match self {
            Check::Judge { .. } => "I don't know.".to_string(),
            _ => self.first_rejected().unwrap_or_else(|| "I am not sure.".to_string()),
        }
    }

    /// The first stock wrong answer this checker rejects.
    fn first_rejected(&self) -> Option<String> {
        self.wrong_candidates().into_iter().find(|c| self.evaluate(c).correct() == Some(false))
    }

    /// Plausible wrong answers for this kind, most realistic first.
    fn wrong_candidates(&self) -> Vec<String> {
        let unsure = "I am not sure.".to_string();
        match self {
            Check::Exact { .. } => vec![unsure, "None of the above.".to_string(), "0".to_string()],
            Check::Numeric { value, tolerance } => {
                let step = if *tolerance < 0.5 { 1.0 } else { (tolerance * 2.0).ceil() + 1.0 };
                vec![format_number(value + step), format_number(value - step), unsure]
            }
            Check::Regex { .. } => vec![unsure, String::new(), "N/A".to_string(), "0".to_string()],
            Check::MustInclude { none, .. } => vec![unsure, none.join(" ")],
            Check::Json { .. } => vec!["{}".to_string(), "I could not find that information.".to_string()],
            Check::Constraints(c) => {
                let sorry = "Sorry, I can't help with that.";
                let long = [sorry; 60].join("\n\n");
                let mut out = vec![sorry.to_string(), long, "Sorry".to_string()];
                if !c.forbidden_words.is_empty() {
                    out.push(format!("{} {}", sorry, c.forbidden_words.join(" ")));
                }
                out
            }
            Check::CodeOutput { .. } => {
                vec!["The program raises an error.".to_string(), "None".to_string(), "0".to_string(), String::new()]
            }
            Check::Judge { .. } => vec!["I don't know.".to_string()],
        }
    }
}

/// Refuses an empty or whitespace-only field.
fn non_blank(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() { Err(format!("{field} is empty")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn check(toml_text: &str) -> Check {
        #[derive(Deserialize)]
        struct Wrapper {
            check: Check,
        }
        let w: Wrapper = toml::from_str(toml_text).unwrap();
        w.check.validate().unwrap();
        w.check
    }

    pub(super) fn passes(c: &Check, answer: &str) -> bool {
        c.evaluate(answer).correct().unwrap()
    }

    pub(super) fn invalid(toml_text: &str) -> String {
        #[derive(Deserialize)]
        struct Wrapper {
            check: Check,
        }
        match toml::from_str::<Wrapper>(toml_text) {
            Ok(w) => w.check.validate().unwrap_err(),
            Err(e) => e.to_string(),
        }
    }

    pub(super) const PERSON_SCHEMA: &str = r#"check = { kind = "json", schema = { type = "object", required = ["name", "age", "tags"], additionalProperties = false, properties = { name = { type = "string", minLength = 1 }, age = { type = "integer", minimum = 0, maximum = 150 }, tags = { type = "array", items = { type = "string", enum = ["a", "b"] }, minItems = 1, maxItems = 2 }, email = { type = ["string", "null"] } } }, expect = { name = "Ada Lovelace", age = 36 } }"#;

    #[test]
    fn regex_compiles_once_and_matches_anywhere() {
        let c = check(r#"check = { kind = "regex", pattern = '(?i)\bdef\s+slugify\s*\(' }"#);
        assert!(passes(&c, "```python\ndef slugify(text):\n    return text\n```"));
        assert!(!passes(&c, "def slug(text): ..."));
        if let Check::Regex { pattern } = &c {
            assert!(pattern.compiled.get().is_some(), "validate caches the compiled pattern");
        }
        assert!(invalid(r#"check = { kind = "regex", pattern = "(unclosed" }"#).contains("check.pattern"));
        assert!(invalid(r#"check = { kind = "regex", pattern = "" }"#).contains("check.pattern"));
        assert!(invalid(r#"check = { kind = "regex", pattern = ".*" }"#).contains("stock wrong answer"));
    }

    #[test]
    fn judge_items_need_a_judge() {
        let c = check(r#"check = { kind = "judge", rubric = "Vivid, coherent, on topic." }"#);
        assert_eq!(c.evaluate("anything"), Verdict::NeedsJudge);
        assert_eq!(c.evaluate("anything").correct(), None);
        assert_eq!(c.incorrect_answer(), "I don't know.");
        assert!(invalid(r#"check = { kind = "judge", rubric = "" }"#).contains("check.rubric"));
    }

    #[test]
    fn unknown_kinds_and_fields_are_refused() {
        assert!(invalid(r#"check = { kind = "fuzzy", answer = "x" }"#).contains("fuzzy"));
        assert!(invalid(r#"check = { kind = "exact", answer = "x", tolerance = 1 }"#).contains("tolerance"));
        assert!(invalid(r#"check = { kind = "exact", answer = " " }"#).contains("check.answer"));
        assert!(invalid(r#"check = { kind = "numeric", value = 1, tolerance = -1 }"#).contains("check.tolerance"));
    }

    #[test]
    fn incorrect_answers_fail_and_are_stable() {
        for text in [
            r#"check = { kind = "exact", answer = "I am not sure" }"#,
            r#"check = { kind = "numeric", value = 10, tolerance = 3 }"#,
            r#"check = { kind = "regex", pattern = '^\s*$|sure' }"#,
            r#"check = { kind = "must_include", any = ["sure", "see"] }"#,
            r#"check = { kind = "json", schema = { type = "object" } }"#,
            r#"check = { kind = "constraints", max_words = 10 }"#,
            r#"check = { kind = "constraints", forbidden_words = ["zebra"] }"#,
            r#"check = { kind = "constraints", min_words = 2 }"#,
            r#"check = { kind = "code_output", expected = "The program raises an error." }"#,
            PERSON_SCHEMA,
        ] {
            let c = check(text);
            let wrong = c.incorrect_answer();
            assert!(!passes(&c, &wrong), "{text}: {wrong:?} should fail");
            assert_eq!(wrong, c.incorrect_answer());
        }
        assert_eq!(check(r#"check = { kind = "numeric", value = 391 }"#).incorrect_answer(), "392");
    }
}
