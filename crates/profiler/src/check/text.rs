//! Text helpers shared by the checkers: normalization, phrase search at word boundaries, answer markers, and the
//! tolerant readings of an answer that `exact` compares.

/// Lowercase with runs of whitespace collapsed to one space and the ends trimmed.
pub(super) fn normalize(text: &str) -> String {
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
pub(super) fn contains_phrase(hay: &str, needle: &str) -> bool {
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
pub(super) fn after_marker<'a>(text: &'a str, markers: &[&str]) -> Option<&'a str> {
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
pub(super) fn answer_variants(answer: &str) -> Vec<String> {
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
pub(super) fn exact_matches<'a>(answer: &str, wants: impl Iterator<Item = &'a str>, case_sensitive: bool) -> bool {
    let fold = |s: &str| if case_sensitive { collapse_ws(s) } else { normalize(s) };
    let wants: Vec<String> = wants.map(fold).collect();
    answer_variants(answer).iter().any(|v| wants.contains(&fold(v)))
}

#[cfg(test)]
mod tests {
    use crate::check::Verdict;
    use crate::check::tests::{check, invalid, passes};

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
}
