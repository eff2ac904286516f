//! The `constraints` checker: verifiable instruction-following constraints (counts of words, lines and sentences,
//! required and forbidden words, casing, list formats, acrostics) and how an answer is measured against them.

use super::non_blank;
use super::text::{contains_phrase, normalize};
use serde::Deserialize;

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
    pub(super) fn validate(&self) -> Result<(), String> {
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
    use crate::check::Verdict;
    use crate::check::tests::{check, invalid, passes};

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
}
