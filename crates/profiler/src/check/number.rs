//! Numbers in answers: reading every number of a text, the number an answer commits to, and comparing numbers
//! within a tolerance.

use super::text::after_marker;

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
pub(super) fn numbers_close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance.max(1e-9 * want.abs().max(1.0))
}

/// A number as a model would write it: integers without a decimal point.
pub(super) fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests::{check, passes};

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
}
