//! Markdown fenced blocks and the `code_output` checker: whether an answer states exactly what a program prints.

use super::text::{after_marker, answer_variants};

/// Markdown fenced blocks (```lang ... ```) of `text`: (language tag, content). An unclosed fence runs to the end.
pub(super) fn fenced_blocks(text: &str) -> Vec<(String, String)> {
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
pub(super) fn output_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|l| !l.is_empty());
    let last = lines.iter().rposition(|l| !l.is_empty());
    match (first, last) {
        (Some(a), Some(b)) => lines[a..=b].to_vec(),
        _ => Vec::new(),
    }
}

/// Whether `answer` states exactly the output `expected`.
pub(super) fn output_matches(answer: &str, expected: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use crate::check::tests::{check, invalid, passes};

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
}
