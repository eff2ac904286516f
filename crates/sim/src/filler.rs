//! Deterministic text: a small random generator seeded from a stable hash, plausible English filler built from it,
//! and the split of any text into the "tokens" the simulator streams one per chunk.

/// A SplitMix64 generator: tiny, fast and the same everywhere, which is all deterministic answers need.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    /// The generator's state.
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// One element of `items` (which must not be empty; returns the first for an empty slice's caller bug).
    pub(crate) fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        let i = (self.next_u64() % items.len().max(1) as u64) as usize;
        items.get(i).copied().unwrap_or("")
    }
}

/// Words the filler is made of: common English, so that the text reads as plausible prose.
const WORDS: &[&str] = &[
    "the",
    "system",
    "can",
    "use",
    "a",
    "simple",
    "approach",
    "to",
    "handle",
    "this",
    "case",
    "and",
    "keep",
    "every",
    "result",
    "clear",
    "when",
    "data",
    "arrives",
    "it",
    "is",
    "checked",
    "first",
    "then",
    "stored",
    "for",
    "later",
    "review",
    "in",
    "most",
    "situations",
    "answer",
    "depends",
    "on",
    "context",
    "of",
    "question",
    "we",
    "should",
    "consider",
    "both",
    "cost",
    "benefit",
    "before",
    "choosing",
    "one",
    "option",
    "over",
    "another",
    "good",
    "plan",
    "starts",
    "with",
    "small",
    "steps",
    "that",
    "are",
    "easy",
    "measure",
    "each",
    "step",
    "brings",
    "closer",
    "goal",
    "while",
    "risks",
    "stay",
    "low",
    "team",
    "often",
    "finds",
    "better",
    "ways",
    "work",
    "after",
    "testing",
    "ideas",
    "carefully",
    "practice",
    "experience",
    "shows",
    "value",
    "steady",
    "progress",
    "model",
    "reads",
    "input",
    "writes",
    "short",
    "summary",
    "points",
    "out",
    "key",
];

/// Opening phrases of the reasoning text of thinking models.
const THOUGHTS: &[&str] = &[
    "Let me think about what is being asked.",
    "First I should work out the key facts.",
    "The question has a few parts to consider.",
    "I need to check this step by step.",
    "Start with what is known and build from there.",
    "Consider the simplest explanation first.",
];

/// Plausible English prose of exactly `tokens` tokens (as [`split_pieces`] counts them).
pub(crate) fn prose(rng: &mut Rng, tokens: usize) -> String {
    let mut text = String::new();
    let mut sentence_left = 0u64;
    for i in 0..tokens {
        let mut word = rng.pick(WORDS).to_string();
        if sentence_left == 0 {
            sentence_left = rng.range(6, 14);
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                word = first.to_uppercase().chain(chars).collect();
            }
        }
        sentence_left -= 1;
        if sentence_left == 0 || i + 1 == tokens {
            word.push('.');
            sentence_left = 0;
        }
        if i > 0 {
            text.push(' ');
        }
        text.push_str(&word);
    }
    text
}

/// Reasoning text for a thinking model: a fixed opening thought then prose, `tokens` tokens in all (at least the
/// opening).
pub(crate) fn thoughts(rng: &mut Rng, tokens: usize) -> String {
    let opening = rng.pick(THOUGHTS);
    let used = split_pieces(opening).len();
    let rest = tokens.saturating_sub(used);
    if rest == 0 { opening.to_string() } else { format!("{opening} {}", prose(rng, rest)) }
}

/// Splits `text` into stream pieces: each is a run of whitespace followed by a run of non-whitespace, so that the
/// pieces concatenate back to exactly `text`. Empty text has no pieces.
pub(crate) fn split_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if in_word {
                pieces.push(std::mem::take(&mut current));
                in_word = false;
            }
        } else {
            in_word = true;
        }
        current.push(c);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Splits compact text without spaces (JSON) into pieces of about four bytes, on character boundaries.
pub(crate) fn split_chunks(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if current.len() >= 4 {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_back_to_the_text() {
        for text in ["", "one", "  lead", "def f(x):\n    return x + 1\n", "a  b\tc "] {
            assert_eq!(split_pieces(text).concat(), text);
            assert_eq!(split_chunks(text).concat(), text);
        }
        assert_eq!(split_pieces("Paris is big."), vec!["Paris", " is", " big."]);
    }

    #[test]
    fn prose_is_deterministic_and_has_the_length_asked() {
        let a = prose(&mut Rng::new(7), 37);
        let b = prose(&mut Rng::new(7), 37);
        assert_eq!(a, b);
        assert_eq!(split_pieces(&a).len(), 37);
        assert!(a.ends_with('.'));
        assert!(a.chars().next().unwrap().is_uppercase());
        assert_ne!(a, prose(&mut Rng::new(8), 37));
        assert_eq!(split_pieces(&thoughts(&mut Rng::new(1), 30)).len(), 30);
    }
}
