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

/// Verifiable instruction-following constraints of a `constraints` check. Every field is optional; those given
/// must all hold.
///
/// Words are whitespace-separated tokens holding a letter or digit; lines are non-empty lines; sentences end
/// with `.`, `!` or `?` followed by whitespace or the end (a final unterminated sentence counts too); paragraphs
/// are blocks separated by blank lines.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// At least this many words.
    pub min_words: Option<usize>,
    /// At most this many words.
    pub max_words: Option<usize>,
    /// Exactly this many words.
    pub exact_words: Option<usize>,
    /// At least this many non-empty lines.
    pub min_lines: Option<usize>,
    /// At most this many non-empty lines.
    pub max_lines: Option<usize>,
    /// Exactly this many non-empty lines.
    pub exact_lines: Option<usize>,
    /// At least this many sentences.
    pub min_sentences: Option<usize>,
    /// At most this many sentences.
    pub max_sentences: Option<usize>,
    /// At most this many characters (after trimming).
    pub max_chars: Option<usize>,
    /// Words or phrases that must appear (case-insensitive, word boundaries).
    #[serde(default)]
    pub required_words: Vec<String>,
    /// Words or phrases that must not appear (case-insensitive, word boundaries).
    #[serde(default)]
    pub forbidden_words: Vec<String>,
    /// The answer begins with this text (case-insensitive; leading markdown and quotes ignored).
    pub starts_with: Option<String>,
    /// The answer ends with this text (case-insensitive; trailing punctuation may follow or be left out).
    pub ends_with: Option<String>,
    /// No uppercase letter anywhere.
    #[serde(default)]
    pub all_lowercase: bool,
    /// No lowercase letter anywhere.
    #[serde(default)]
    pub all_uppercase: bool,
    /// Exactly this many bullet lines (starting with `- ` or `* `).
    pub bullet_count: Option<usize>,
    /// Exactly this many numbered lines (`1. ` or `1) `).
    pub numbered_count: Option<usize>,
    /// No comma anywhere.
    #[serde(default)]
    pub no_commas: bool,
    /// The answer ends with a question mark (closing quotes or markdown may follow).
    #[serde(default)]
    pub must_end_with_question: bool,
    /// Exactly this many paragraphs.
    pub paragraphs: Option<usize>,
    /// The first letters of the lines spell this word (case-insensitive), one line per letter.
    pub acrostic: Option<String>,
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

// ---------------------------------------------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------------------------------------------

/// Lowercase with runs of whitespace collapsed to one space and the ends trimmed.
fn normalize(text: &str) -> String {
    collapse_ws(&text.to_lowercase())
}

/// Runs of whitespace collapsed to one space, ends trimmed.
fn collapse_ws(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A character that belongs to a word for boundary purposes.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `needle` occurs in `hay` (both already normalized), with word boundaries at each end of the needle
/// that is a word character.
fn contains_phrase(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let bound_start = needle.chars().next().is_some_and(is_word_char);
    let bound_end = needle.chars().next_back().is_some_and(is_word_char);
    let mut from = 0;
    while let Some(pos) = hay[from..].find(needle) {
        let start = from + pos;
        let end = start + needle.len();
        let ok_start = !bound_start || !hay[..start].chars().next_back().is_some_and(is_word_char);
        let ok_end = !bound_end || !hay[end..].chars().next().is_some_and(is_word_char);
        if ok_start && ok_end {
            return true;
        }
        from = start + hay[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The text after the last occurrence of any of `markers` (ASCII case-insensitive; the longest marker wins at
/// one position), to the end of that line, without leading colons and whitespace.
fn after_marker<'a>(text: &'a str, markers: &[&str]) -> Option<&'a str> {
    let lower = text.to_ascii_lowercase();
    let (pos, len) = markers.iter().filter_map(|m| lower.rfind(m).map(|p| (p, m.len()))).max()?;
    let rest = &text[pos + len..];
    Some(rest.lines().next().unwrap_or("").trim_start_matches([':', ' ', '\t']))
}

/// The content of the last complete `**bold**` span.
fn last_bold(text: &str) -> Option<&str> {
    let marks: Vec<usize> = text.match_indices("**").map(|(i, _)| i).collect();
    let pairs = marks.len() / 2;
    if pairs == 0 {
        return None;
    }
    let (open, close) = (marks[2 * pairs - 2], marks[2 * pairs - 1]);
    Some(&text[open + 2..close])
}

/// One layer of formatting removed from an answer, or `None` when nothing is left to remove.
fn peel_once(text: &str) -> Option<String> {
    let t = text.trim();
    if let Some(s) = t.strip_suffix('.')
        && !s.trim().is_empty()
    {
        return Some(s.trim_end().to_string());
    }
    for (open, close) in [("**", "**"), ("__", "__"), ("`", "`"), ("\"", "\""), ("'", "'"), ("*", "*"), ("_", "_")]
        .into_iter()
        .chain([("\u{201c}", "\u{201d}"), ("\u{2018}", "\u{2019}"), ("$", "$"), ("(", ")"), ("[", "]")])
    {
        if let Some(inner) = t.strip_prefix(open).and_then(|s| s.strip_suffix(close))
            && !inner.trim().is_empty()
        {
            return Some(inner.trim().to_string());
        }
    }
    let lower = t.to_ascii_lowercase();
    for prefix in ["final answer:", "answer:", "final answer is", "the answer is"] {
        if lower.starts_with(prefix) {
            let rest = t[prefix.len()..].trim_start_matches([':', ' ', '\t']);
            if !rest.trim().is_empty() {
                return Some(rest.trim().to_string());
            }
        }
    }
    for article in ["the ", "a ", "an "] {
        if lower.starts_with(article) && t.len() > article.len() {
            return Some(t[article.len()..].to_string());
        }
    }
    None
}

/// The readings of an answer that an `exact` check compares: the whole answer, its first line and that line's
/// leading clause (`No, because...`), its last line and what follows that line's last ` is `, the text after a
/// final answer marker, the last bold span, and each of these with formatting peeled off layer by layer.
fn answer_variants(answer: &str) -> Vec<String> {
    let mut roots: Vec<&str> = vec![answer];
    if let Some(first) = answer.lines().find(|l| !l.trim().is_empty()) {
        roots.push(first);
        let clause_end =
            [", ", ". ", "; ", " - ", " \u{2014} ", " because "].iter().filter_map(|sep| first.find(sep)).min();
        if let Some(end) = clause_end {
            roots.push(&first[..end]);
        }
    }
    if let Some(last) = answer.lines().rev().find(|l| !l.trim().is_empty()) {
        roots.push(last);
        if let Some(pos) = last.rfind(" is ") {
            roots.push(&last[pos + " is ".len()..]);
        }
    }
    if let Some(rest) = after_marker(answer, &["answer:", "answer is"]) {
        // `**Answer:** X` leaves a closing `**` behind the marker.
        roots.push(rest);
        roots.push(rest.trim_start_matches(['*', '_', ' ', '\t']).trim_end_matches(['*', '_', ' ']));
    }
    if let Some(bold) = last_bold(answer) {
        roots.push(bold);
    }
    let mut out = Vec::new();
    for root in roots {
        let mut current = collapse_ws(root);
        for _ in 0..8 {
            out.push(current.clone());
            match peel_once(&current) {
                Some(next) => current = collapse_ws(&next),
                None => break,
            }
        }
    }
    out
}

/// Whether any reading of `answer` equals one of `wants`.
fn exact_matches<'a>(answer: &str, wants: impl Iterator<Item = &'a str>, case_sensitive: bool) -> bool {
    let fold = |s: &str| if case_sensitive { collapse_ws(s) } else { normalize(s) };
    let wants: Vec<String> = wants.map(fold).collect();
    answer_variants(answer).iter().any(|v| wants.contains(&fold(v)))
}

// ---------------------------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------------------------

/// Every number in `text`, in order: optional sign, digits with `,` thousands separators, a decimal part, an
/// exponent, or a simple fraction `a/b`.
fn scan_numbers(text: &str) -> Vec<f64> {
    let chars: Vec<char> = text.chars().map(|c| if c == '\u{2212}' { '-' } else { c }).collect();
    let at = |i: usize| chars.get(i).copied();
    let digit = |i: usize| at(i).is_some_and(|c| c.is_ascii_digit());
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev_word = i > 0 && at(i - 1).is_some_and(|p| p.is_alphanumeric());
        let prev_digit = i > 0 && digit(i - 1);
        let after_slash = i > 0 && at(i - 1) == Some('/');
        let signed = matches!(c, '-' | '+') && !prev_word && (digit(i + 1) || (at(i + 1) == Some('.') && digit(i + 2)));
        let bare = c.is_ascii_digit() || (c == '.' && !prev_digit && digit(i + 1));
        if !signed && !bare {
            i += 1;
            continue;
        }
        let mut j = if signed { i + 1 } else { i };
        let mut literal = String::new();
        if c == '-' {
            literal.push('-');
        }
        while digit(j) {
            literal.push(chars[j]);
            j += 1;
            // A comma followed by exactly three digits is a thousands separator.
            if at(j) == Some(',') && digit(j + 1) && digit(j + 2) && digit(j + 3) && !digit(j + 4) {
                j += 1;
            }
        }
        let mut plain_integer = true;
        if at(j) == Some('.') && digit(j + 1) {
            plain_integer = false;
            literal.push('.');
            j += 1;
            while digit(j) {
                literal.push(chars[j]);
                j += 1;
            }
        }
        if matches!(at(j), Some('e' | 'E')) {
            let sign = usize::from(matches!(at(j + 1), Some('+' | '-')));
            if digit(j + 1 + sign) {
                let mut k = j + 1 + sign;
                while digit(k) {
                    k += 1;
                }
                if !at(k).is_some_and(char::is_alphabetic) {
                    plain_integer = false;
                    literal.push('e');
                    literal.extend(&chars[j + 1..k]);
                    j = k;
                }
            }
        }
        let mut value: Option<f64> = literal.parse().ok();
        if plain_integer && !after_slash && at(j) == Some('/') && digit(j + 1) {
            let mut k = j + 1;
            let mut den = String::new();
            while digit(k) {
                den.push(chars[k]);
                k += 1;
            }
            // `3/4/2020` is a date, not a fraction.
            if at(k) != Some('/')
                && let Ok(d) = den.parse::<f64>()
                && d != 0.0
            {
                value = value.map(|n| n / d);
                j = k;
            }
        }
        if let Some(value) = value {
            out.push(value);
        }
        i = j.max(i + 1);
    }
    out
}

/// The last number (integer or decimal, optionally negative, commas allowed as thousands separators, simple
/// fractions read as their value) in `text`.
pub fn last_number(text: &str) -> Option<f64> {
    scan_numbers(text).last().copied()
}

/// The number an answer commits to: the first number inside the last `\boxed{...}`, else the first number after
/// the last `answer is` / `answer:` / `answer =`, else the last number in the text.
pub fn final_number(text: &str) -> Option<f64> {
    if let Some(pos) = text.rfind("\\boxed{")
        && let Some(n) = scan_numbers(&text[pos + "\\boxed{".len()..]).first()
    {
        return Some(*n);
    }
    if let Some(rest) = after_marker(text, &["answer is", "answer:", "answer ="])
        && let Some(n) = committed_number(rest)
    {
        return Some(n);
    }
    last_number(text)
}

/// The number a line after an answer marker commits to: its head (up to `, `, `; `, ` because`, ` since`, or a
/// parenthesis opening a remark) read after the head's last `=` (`9 + 4 + 1 = 14`), else the first number of the
/// line.
fn committed_number(line: &str) -> Option<f64> {
    let remark = line
        .match_indices(" (")
        .map(|(i, _)| i)
        .find(|i| line[i + 2..].chars().next().is_some_and(char::is_alphabetic));
    let head_end = [", ", "; ", " because", " since"].iter().filter_map(|sep| line.find(sep)).chain(remark).min();
    let head = &line[..head_end.unwrap_or(line.len())];
    let result = head.rfind('=').map_or(head, |eq| &head[eq + 1..]);
    scan_numbers(result).first().copied().or_else(|| scan_numbers(line).first().copied())
}

/// Whether `got` equals `want` within `tolerance` (plus a relative allowance for floating-point noise).
fn numbers_close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance.max(1e-9 * want.abs().max(1.0))
}

/// A number as a model would write it: integers without a decimal point.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

// ---------------------------------------------------------------------------------------------------------------
// Fenced blocks, program output
// ---------------------------------------------------------------------------------------------------------------

/// Markdown fenced blocks (```lang ... ```) of `text`: (language tag, content). An unclosed fence runs to the end.
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match current.take() {
            None => {
                if let Some(tag) = trimmed.strip_prefix("```") {
                    current = Some((tag.trim().to_ascii_lowercase(), Vec::new()));
                }
            }
            Some((tag, mut lines)) => {
                if trimmed.starts_with("```") {
                    out.push((tag, lines.join("\n")));
                } else {
                    lines.push(line);
                    current = Some((tag, lines));
                }
            }
        }
    }
    if let Some((tag, lines)) = current {
        out.push((tag, lines.join("\n")));
    }
    out
}

/// Lines of program output: trailing whitespace dropped, leading and trailing blank lines dropped.
fn output_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|l| !l.is_empty());
    let last = lines.iter().rposition(|l| !l.is_empty());
    match (first, last) {
        (Some(a), Some(b)) => lines[a..=b].to_vec(),
        _ => Vec::new(),
    }
}

/// Whether `answer` states exactly the output `expected`.
fn output_matches(answer: &str, expected: &str) -> bool {
    let want = output_lines(expected);
    if want.is_empty() {
        return false;
    }
    let mut candidates: Vec<String> = Vec::new();
    if let Some((_, last)) = fenced_blocks(answer).pop() {
        candidates.push(last);
    }
    candidates.push(answer.to_string());
    // Without a leading "It prints:" line, and the first paragraph of what remains.
    let lines: Vec<&str> = answer.lines().collect();
    let body_start = lines.iter().position(|l| {
        let t = l.trim();
        !t.is_empty() && !t.ends_with(':')
    });
    if let Some(start) = body_start {
        let body = &lines[start..];
        candidates.push(body.join("\n"));
        let end = body.iter().position(|l| l.trim().is_empty()).unwrap_or(body.len());
        candidates.push(body[..end].join("\n"));
    }
    if want.len() == 1 {
        let markers = ["prints:", "prints", "outputs:", "outputs", "output is", "output:", "answer:", "answer is"];
        if let Some(rest) = after_marker(answer, &markers) {
            candidates.push(rest.to_string());
        }
        let variants: Vec<String> = candidates.iter().flat_map(|c| answer_variants(c)).collect();
        candidates.extend(variants);
    }
    candidates.iter().any(|c| output_lines(c) == want)
}

// ---------------------------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------------------------

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
fn json_verdict(answer: &str, schema: &Value, expect: Option<&Value>) -> Verdict {
    let Some(value) = extract_json(answer) else {
        return Verdict::pass_fail(false);
    };
    let schema_ok = schema_violation(schema, &value, "$").is_none();
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
fn validate_schema(schema: &Value, path: &str) -> Result<(), String> {
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

/// The first way `value` violates `schema`, as `path: reason`; `None` when it conforms.
fn schema_violation(schema: &Value, value: &Value, path: &str) -> Option<String> {
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
                if let Some(v) = schema_violation(items, item, &format!("{path}[{i}]")) {
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
                    if let Some(violation) = schema_violation(sub, v, &format!("{path}.{key}")) {
                        return Some(violation);
                    }
                }
                None => match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => return Some(format!("{path}: unexpected property {key:?}")),
                    Some(sub @ Value::Object(_)) => {
                        if let Some(violation) = schema_violation(sub, v, &format!("{path}.{key}")) {
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
fn leaf_count(expect: &Value) -> usize {
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

// ---------------------------------------------------------------------------------------------------------------
// Constraints
// ---------------------------------------------------------------------------------------------------------------

/// Number of words: whitespace-separated tokens holding a letter or digit.
fn count_words(text: &str) -> usize {
    text.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).count()
}

/// The non-empty lines, trimmed.
fn content_lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// Number of sentences: runs of `.`, `!`, `?` followed by whitespace or the end close one; a final unterminated
/// sentence counts too.
fn count_sentences(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    let mut count = 0;
    let mut has_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '.' | '!' | '?') {
            let mut k = i;
            while k < chars.len() && matches!(chars[k], '.' | '!' | '?') {
                k += 1;
            }
            while k < chars.len() && matches!(chars[k], '"' | '\'' | ')' | '*' | '\u{201d}' | '\u{2019}') {
                k += 1;
            }
            if (k == chars.len() || chars[k].is_whitespace()) && has_word {
                count += 1;
                has_word = false;
            }
            i = k.max(i + 1);
            continue;
        }
        if c.is_alphanumeric() {
            has_word = true;
        }
        i += 1;
    }
    count + usize::from(has_word)
}

/// Number of paragraphs: blocks of non-empty lines separated by blank lines.
fn count_paragraphs(text: &str) -> usize {
    let mut count = 0;
    let mut in_block = false;
    for line in text.lines() {
        let blank = line.trim().is_empty();
        if !blank && !in_block {
            count += 1;
        }
        in_block = !blank;
    }
    count
}

/// Whether a line is a bullet (`- ` or `* `).
fn is_bullet(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("- ") || t.starts_with("* ")
}

/// Whether a line is numbered (`1. ` or `1) `).
fn is_numbered(line: &str) -> bool {
    let t = line.trim_start();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && {
        let rest = &t[digits..];
        rest.starts_with(". ") || rest.starts_with(") ")
    }
}

/// Drops trailing sentence punctuation, quotes and markdown.
fn trim_end_punct(text: &str) -> &str {
    text.trim_end_matches(['.', '!', '?', '"', '\'', '*', '_', '\u{201d}', '\u{2019}']).trim_end()
}

/// A counted constraint: its name, its limit when set, the measured count, and the test of count against limit.
type CountBound = (&'static str, Option<usize>, usize, fn(usize, usize) -> bool);

impl Constraints {
    /// Checks the constraints for consistency; messages name the field.
    fn validate(&self) -> Result<(), String> {
        let c = self;
        let active = c.min_words.is_some()
            || c.max_words.is_some()
            || c.exact_words.is_some()
            || c.min_lines.is_some()
            || c.max_lines.is_some()
            || c.exact_lines.is_some()
            || c.min_sentences.is_some()
            || c.max_sentences.is_some()
            || c.max_chars.is_some()
            || !c.required_words.is_empty()
            || !c.forbidden_words.is_empty()
            || c.starts_with.is_some()
            || c.ends_with.is_some()
            || c.all_lowercase
            || c.all_uppercase
            || c.bullet_count.is_some()
            || c.numbered_count.is_some()
            || c.no_commas
            || c.must_end_with_question
            || c.paragraphs.is_some()
            || c.acrostic.is_some();
        if !active {
            return Err("the constraints check sets no constraint".to_string());
        }
        for (name, lo, exact, hi) in [
            ("words", c.min_words, c.exact_words, c.max_words),
            ("lines", c.min_lines, c.exact_lines, c.max_lines),
            ("sentences", c.min_sentences, None, c.max_sentences),
        ] {
            if let (Some(lo), Some(hi)) = (lo, hi)
                && lo > hi
            {
                return Err(format!("check.min_{name} ({lo}) is greater than check.max_{name} ({hi})"));
            }
            if hi == Some(0) {
                return Err(format!("check.max_{name} must be at least 1"));
            }
            if let Some(exact) = exact {
                if exact == 0 {
                    return Err(format!("check.exact_{name} must be at least 1"));
                }
                if lo.is_some_and(|lo| exact < lo) || hi.is_some_and(|hi| exact > hi) {
                    return Err(format!("check.exact_{name} ({exact}) is outside check.min_{name}..check.max_{name}"));
                }
            }
        }
        if c.max_chars == Some(0) {
            return Err("check.max_chars must be at least 1".to_string());
        }
        if c.paragraphs == Some(0) {
            return Err("check.paragraphs must be at least 1".to_string());
        }
        if c.all_lowercase && c.all_uppercase {
            return Err("check.all_lowercase and check.all_uppercase cannot both hold".to_string());
        }
        for (field, list) in [("required_words", &c.required_words), ("forbidden_words", &c.forbidden_words)] {
            for (i, phrase) in list.iter().enumerate() {
                non_blank(&format!("check.{field}[{i}]"), phrase)?;
            }
        }
        for word in &c.required_words {
            if c.forbidden_words.iter().any(|f| normalize(f) == normalize(word)) {
                return Err(format!("check.required_words and check.forbidden_words both hold {word:?}"));
            }
        }
        if let Some(s) = &c.starts_with {
            non_blank("check.starts_with", s)?;
        }
        if let Some(s) = &c.ends_with {
            non_blank("check.ends_with", s)?;
        }
        if let Some(word) = &c.acrostic {
            if word.is_empty() || !word.chars().all(char::is_alphabetic) {
                return Err(format!("check.acrostic must be a word of letters, not {word:?}"));
            }
            let n = word.chars().count();
            if c.exact_lines.is_some_and(|l| l != n) || c.max_lines.is_some_and(|l| l < n) {
                return Err(format!("check.acrostic needs {n} lines, which the line limits forbid"));
            }
        }
        Ok(())
    }

    /// Each active constraint's name and whether `answer` satisfies it.
    pub fn results(&self, answer: &str) -> Vec<(&'static str, bool)> {
        let text = answer.trim();
        let mut out = Vec::new();
        let words = count_words(text);
        let lines = content_lines(text);
        let sentences = count_sentences(text);
        let bounds: [CountBound; 9] = [
            ("min_words", self.min_words, words, |got, n| got >= n),
            ("max_words", self.max_words, words, |got, n| got <= n),
            ("exact_words", self.exact_words, words, |got, n| got == n),
            ("min_lines", self.min_lines, lines.len(), |got, n| got >= n),
            ("max_lines", self.max_lines, lines.len(), |got, n| got <= n),
            ("exact_lines", self.exact_lines, lines.len(), |got, n| got == n),
            ("min_sentences", self.min_sentences, sentences, |got, n| got >= n),
            ("max_sentences", self.max_sentences, sentences, |got, n| got <= n),
            ("max_chars", self.max_chars, text.chars().count(), |got, n| got <= n),
        ];
        for (name, limit, got, holds) in bounds {
            if let Some(n) = limit {
                out.push((name, holds(got, n)));
            }
        }
        let normalized = normalize(text);
        if !self.required_words.is_empty() {
            out.push((
                "required_words",
                self.required_words.iter().all(|w| contains_phrase(&normalized, &normalize(w))),
            ));
        }
        if !self.forbidden_words.is_empty() {
            out.push((
                "forbidden_words",
                !self.forbidden_words.iter().any(|w| contains_phrase(&normalized, &normalize(w))),
            ));
        }
        if let Some(prefix) = &self.starts_with {
            let want = normalize(prefix);
            let start = text.trim_start_matches(['*', '_', '#', '"', '\'', '\u{201c}']);
            out.push(("starts_with", normalized.starts_with(&want) || normalize(start).starts_with(&want)));
        }
        if let Some(suffix) = &self.ends_with {
            let want = normalize(suffix);
            let bare = trim_end_punct(&want);
            let ok = normalized.ends_with(&want) || (!bare.is_empty() && trim_end_punct(&normalized).ends_with(bare));
            out.push(("ends_with", ok));
        }
        let has_letters = text.chars().any(char::is_alphabetic);
        if self.all_lowercase {
            out.push(("all_lowercase", has_letters && !text.chars().any(char::is_uppercase)));
        }
        if self.all_uppercase {
            out.push(("all_uppercase", has_letters && !text.chars().any(char::is_lowercase)));
        }
        if let Some(n) = self.bullet_count {
            out.push(("bullet_count", text.lines().filter(|l| is_bullet(l)).count() == n));
        }
        if let Some(n) = self.numbered_count {
            out.push(("numbered_count", text.lines().filter(|l| is_numbered(l)).count() == n));
        }
        if self.no_commas {
            out.push(("no_commas", !text.contains(',')));
        }
        if self.must_end_with_question {
            let end = text.trim_end_matches(['"', '\'', '*', '_', '\u{201d}', '\u{2019}']);
            out.push(("must_end_with_question", end.ends_with('?')));
        }
        if let Some(n) = self.paragraphs {
            out.push(("paragraphs", count_paragraphs(text) == n));
        }
        if let Some(word) = &self.acrostic {
            let initials: Option<String> = lines.iter().map(|l| l.chars().find(|c| c.is_alphabetic())).collect();
            out.push(("acrostic", initials.is_some_and(|s| s.to_lowercase() == word.to_lowercase())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Check {
        #[derive(Deserialize)]
        struct Wrapper {
            check: Check,
        }
        let w: Wrapper = toml::from_str(toml_text).unwrap();
        w.check.validate().unwrap();
        w.check
    }

    fn passes(c: &Check, answer: &str) -> bool {
        c.evaluate(answer).correct().unwrap()
    }

    fn invalid(toml_text: &str) -> String {
        #[derive(Deserialize)]
        struct Wrapper {
            check: Check,
        }
        match toml::from_str::<Wrapper>(toml_text) {
            Ok(w) => w.check.validate().unwrap_err(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn exact_is_tolerant_of_formatting() {
        let c = check(r#"check = { kind = "exact", answer = "Paris" }"#);
        for ok in [
            "Paris",
            "paris",
            "  Paris.  ",
            "Answer: Paris",
            "**Answer:** Paris",
            "The capital is **Paris**.",
            "Let me think.\nFrance's capital city.\nParis",
            "The answer is Paris.",
            "\"Paris\"",
            "`Paris`",
            "Final answer: **Paris**",
        ] {
            assert!(passes(&c, ok), "{ok:?} should pass");
        }
        for ok in
            ["Paris, of course.", "Paris.\n\nIt has been the capital since 987.", "The capital of France is Paris."]
        {
            assert!(passes(&c, ok), "{ok:?} should pass");
        }
        for bad in ["London", "Lyon, not Paris", "Not Paris at all", "", "Parisian", "Paris is not it; Lyon is."] {
            assert!(!passes(&c, bad), "{bad:?} should fail");
        }
    }

    #[test]
    fn exact_case_sensitivity_and_alternatives() {
        let c = check(r#"check = { kind = "exact", answer = "NaCl", case_sensitive = true }"#);
        assert!(passes(&c, "NaCl"));
        assert!(!passes(&c, "nacl"));
        let c = check(r#"check = { kind = "exact", answer = "United States", alternatives = ["USA", "US"] }"#);
        assert!(passes(&c, "usa"));
        assert!(passes(&c, "United States."));
        assert!(!passes(&c, "Canada"));
        let c = check(r#"check = { kind = "exact", answer = "knight" }"#);
        assert!(passes(&c, "A is a knight."));
        assert!(passes(&c, "No, A is a knight."));
        assert!(!passes(&c, "A is a knave."));
        let c = check(r#"check = { kind = "exact", answer = "__init__" }"#);
        assert!(passes(&c, "Answer: __init__"));
        assert!(passes(&c, "`__init__`"));
        assert!(!passes(&c, "init"));
    }

    #[test]
    fn numbers_are_read_like_a_person_reads_them() {
        assert_eq!(last_number("The total is 1,234,567."), Some(1_234_567.0));
        assert_eq!(last_number("It went from 3 to -12.5 degrees"), Some(-12.5));
        assert_eq!(last_number("x = 3/4"), Some(0.75));
        assert_eq!(last_number("about 1.5e3 units"), Some(1500.0));
        assert_eq!(last_number("values 1,2,3"), Some(3.0));
        assert_eq!(last_number("range 3-5"), Some(5.0));
        assert_eq!(last_number("\u{2212}7"), Some(-7.0));
        assert_eq!(last_number("on 3/4/2020"), Some(2020.0));
        assert_eq!(last_number("no digits"), None);
        assert_eq!(last_number(".5 of it"), Some(0.5));
        assert_eq!(final_number("The answer is 42, since 6 * 7 = 42 and 3 > 2."), Some(42.0));
        assert_eq!(final_number("Step 1: 3\nAnswer: 12\nCheck: 4 * 3"), Some(12.0));
        assert_eq!(final_number("so $\\boxed{17}$ (not 18)"), Some(17.0));
        assert_eq!(final_number("We get 5, then 10"), Some(10.0));
        assert_eq!(final_number("Answer: 9 + 4 + 1 = 14"), Some(14.0));
        assert_eq!(final_number("Answer: 5! / (2! * 2!) = 30"), Some(30.0));
        assert_eq!(final_number("Answer: 7 (since x = 7 and y = 3)"), Some(7.0));
        assert_eq!(final_number("The answer is $1,157.63."), Some(1157.63));
        assert_eq!(final_number("Answer: x = 8"), Some(8.0));
        assert_eq!(final_number("The answer is: **66**"), Some(66.0));
        assert_eq!(final_number("The answer is:\n\n42"), Some(42.0));
    }

    #[test]
    fn numeric_checks_value_and_tolerance() {
        let c = check(r#"check = { kind = "numeric", value = 391 }"#);
        for ok in ["391", "391.", "The answer is 391.", "17 * 23 = 391", "391.0", "**391**"] {
            assert!(passes(&c, ok), "{ok:?}");
        }
        for bad in ["392", "390", "The answer is 39, not 391"] {
            assert!(!passes(&c, bad), "{bad:?}");
        }
        let c = check(r#"check = { kind = "numeric", value = 0.333, tolerance = 0.001 }"#);
        assert!(passes(&c, "0.3333"));
        assert!(passes(&c, "1/3"));
        assert!(!passes(&c, "0.33"));
        let c = check(r#"check = { kind = "numeric", value = -4.5 }"#);
        assert!(passes(&c, "x = -4.5"));
        assert!(!passes(&c, "x = 4.5"));
        let c = check(r#"check = { kind = "numeric", value = 1250000 }"#);
        assert!(passes(&c, "$1,250,000"));
    }

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
    fn must_include_respects_word_boundaries() {
        let c = check(
            r#"check = { kind = "must_include", all = ["cat", "New York"], any = ["dog", "mouse"], none = ["rat"] }"#,
        );
        assert!(passes(&c, "A CAT and a dog live in new   york."));
        assert!(!passes(&c, "A category and a dog live in New York."), "cat is not category");
        assert!(!passes(&c, "A cat and a dog live in New Yorkshire."));
        assert!(!passes(&c, "A cat lives in New York."), "needs one of any");
        assert!(!passes(&c, "A cat, a dog and a rat live in New York."), "none forbids rat");
        assert!(passes(&c, "A cat, a dog and a pirate live in New York."), "pirate is not rat");
        assert_eq!(c.evaluate("A cat lives in New York."), Verdict::Scored { correct: false, score: 0.75 });
        assert!(invalid(r#"check = { kind = "must_include", none = ["x"] }"#).contains("check.all"));
        assert!(invalid(r#"check = { kind = "must_include", all = ["a", " "] }"#).contains("check.all[1]"));
    }

    const PERSON_SCHEMA: &str = r#"check = { kind = "json", schema = { type = "object", required = ["name", "age", "tags"], additionalProperties = false, properties = { name = { type = "string", minLength = 1 }, age = { type = "integer", minimum = 0, maximum = 150 }, tags = { type = "array", items = { type = "string", enum = ["a", "b"] }, minItems = 1, maxItems = 2 }, email = { type = ["string", "null"] } } }, expect = { name = "Ada Lovelace", age = 36 } }"#;

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

    #[test]
    fn constraints_count_words_lines_sentences() {
        let c = check(r#"check = { kind = "constraints", exact_words = 6, exact_lines = 2, max_sentences = 2 }"#);
        assert!(passes(&c, "Red leaves fall.\nWinter is near.\n"));
        assert!(!passes(&c, "Red leaves fall.\nWinter is near now."));
        assert!(!passes(&c, "Red leaves fall. Winter is near."));
        assert_eq!(count_words("- one, two — three's 3.5 !"), 4);
        assert_eq!(count_sentences("Pi is 3.14. Is it? Yes!! \"Quite.\" And"), 5);
        assert_eq!(count_sentences("no terminator"), 1);
        assert_eq!(count_paragraphs("a\nb\n\n\nc\n  \nd"), 3);
    }

    #[test]
    fn constraints_format_rules() {
        let c = check(
            r#"check = { kind = "constraints", bullet_count = 3, numbered_count = 0, no_commas = true, all_lowercase = true }"#,
        );
        assert!(passes(&c, "three things:\n- sun\n* rain\n- wind"));
        assert!(!passes(&c, "three things:\n- Sun\n- rain\n- wind"));
        assert!(!passes(&c, "three things:\n- sun, moon\n- rain\n- wind"));
        assert!(!passes(&c, "- sun\n- rain"));
        let c = check(r#"check = { kind = "constraints", numbered_count = 2, must_end_with_question = true }"#);
        assert!(passes(&c, "1. First\n2) Second\nWhy not?"));
        assert!(!passes(&c, "1. First\n2. Second\nWhy not."));
        let c = check(r#"check = { kind = "constraints", all_uppercase = true, max_words = 4 }"#);
        assert!(passes(&c, "THE LAST TRAIN"));
        assert!(!passes(&c, "The Last Train"));
    }

    #[test]
    fn constraints_words_edges_and_acrostic() {
        let c = check(
            r#"check = { kind = "constraints", required_words = ["moon"], forbidden_words = ["sun"], starts_with = "Night", ends_with = "the end", acrostic = "NOW" }"#,
        );
        assert!(passes(&c, "Night falls under the moon\nOver the quiet sundial\nWaiting for the end."));
        assert!(!passes(&c, "Night falls under the moon\nOver the quiet sun\nWaiting for the end."));
        assert!(!passes(&c, "Night falls under the moons\nOver the hills\nWaiting for the end."));
        assert!(!passes(&c, "Night falls under the moon\nWaiting for the end."));
        assert!(passes(&c, "**Night** falls under the moon\n- Over the hills\nWaiting for THE END"));
        let c2 = check(r#"check = { kind = "constraints", ends_with = "!" }"#);
        assert!(passes(&c2, "Go now!"));
        assert!(!passes(&c2, "Go now."));
        assert_eq!(
            c.evaluate("Night falls under the moon\nOver the hills\nWaiting."),
            Verdict::Scored { correct: false, score: 0.8 }
        );
    }

    #[test]
    fn constraints_refuse_contradictions() {
        assert!(invalid(r#"check = { kind = "constraints" }"#).contains("no constraint"));
        assert!(
            invalid(r#"check = { kind = "constraints", min_words = 10, max_words = 5 }"#).contains("check.min_words")
        );
        assert!(invalid(r#"check = { kind = "constraints", exact_lines = 3, max_lines = 2 }"#).contains("exact_lines"));
        assert!(
            invalid(r#"check = { kind = "constraints", all_lowercase = true, all_uppercase = true }"#)
                .contains("all_lowercase")
        );
        assert!(invalid(r#"check = { kind = "constraints", acrostic = "AB1" }"#).contains("check.acrostic"));
        assert!(invalid(r#"check = { kind = "constraints", acrostic = "ABC", exact_lines = 4 }"#).contains("acrostic"));
        assert!(
            invalid(r#"check = { kind = "constraints", required_words = ["x"], forbidden_words = ["X"] }"#)
                .contains("forbidden_words")
        );
        assert!(invalid(r#"check = { kind = "constraints", max_word = 3 }"#).contains("max_word"));
    }

    #[test]
    fn code_output_tolerates_fences_and_prose() {
        let c = check(r#"check = { kind = "code_output", expected = "3\n[1, 2]" }"#);
        for ok in [
            "3\n[1, 2]",
            "3   \n[1, 2]\n\n",
            "```\n3\n[1, 2]\n```",
            "The program prints:\n\n```text\n3\n[1, 2]\n```\n\nbecause len is 3.",
            "It prints:\n3\n[1, 2]",
            "Output:\n3\n[1, 2]\n\nThe list slice stops before index 2.",
        ] {
            assert!(passes(&c, ok), "{ok:?}");
        }
        for bad in ["3\n[1,2]", "3", "[1, 2]\n3", "It prints 3 and then [1, 2]."] {
            assert!(!passes(&c, bad), "{bad:?}");
        }
        let c = check(r#"check = { kind = "code_output", expected = "True" }"#);
        for ok in ["True", "It prints `True`.", "Output: True", "The program prints True.", "**True**"] {
            assert!(passes(&c, ok), "{ok:?}");
        }
        for bad in ["true", "False", "It prints False."] {
            assert!(!passes(&c, bad), "{bad:?}");
        }
        assert!(invalid(r#"check = { kind = "code_output", expected = "  \n" }"#).contains("check.expected"));
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
