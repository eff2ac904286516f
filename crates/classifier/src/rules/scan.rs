//! The rule engine: cue matching on word boundaries plus a structural scan (code lines, fences, equations, tables).
//!
//! Everything here works on bytes of one text and adds votes into a per-category array; how turns are windowed
//! and weighted is the caller's business. The cue automaton is built once per process.

use super::lexicon::{COURTESY, CUES};
use aho_corasick::{AhoCorasick, Input, MatchKind};
use std::sync::LazyLock;
use switchyard_core::Category;

/// Votes per category, indexed like [`Category::ALL`].
pub(crate) type Votes = [f32; 7];

/// Votes of one text: the seven categories, then courtesy at [`COURTESY_SLOT`].
pub(crate) type TurnVotes = [f32; 8];

/// Index of the courtesy votes in [`TurnVotes`].
pub(crate) const COURTESY_SLOT: usize = 7;

/// How a pattern's edges must sit in the text.
#[derive(Debug, Clone, Copy)]
struct Edges {
    /// The byte before the match must not be a word byte.
    left: bool,
    /// The byte after the match must not be a word byte.
    right: bool,
    /// The match must be the tail of a CamelCase word: preceded by a lower-case letter, starting upper-case.
    camel: bool,
}

/// The compiled cue table.
struct Lexicon {
    /// One automaton over every distinct pattern (ASCII case-insensitive, leftmost-longest).
    automaton: AhoCorasick,
    /// Per pattern id: its boundary rules.
    edges: Vec<Edges>,
    /// Per pattern id: the votes one occurrence adds.
    weights: Vec<TurnVotes>,
}

/// The lexicon, compiled on first use. `None` only if the automaton could not be built, which the unit tests rule
/// out for the table as shipped; the structural rules still work without it.
static LEXICON: LazyLock<Option<Lexicon>> = LazyLock::new(Lexicon::build);

impl Lexicon {
    fn build() -> Option<Lexicon> {
        let mut patterns: Vec<String> = Vec::with_capacity(CUES.len());
        let mut edges = Vec::with_capacity(CUES.len());
        let mut weights: Vec<TurnVotes> = Vec::with_capacity(CUES.len() + COURTESY.len());
        let cues = CUES.iter().map(|&(spec, category, weight)| (spec, category.index(), weight));
        let courtesy = COURTESY.iter().map(|&(spec, weight)| (spec, COURTESY_SLOT, weight));
        for (spec, slot, weight) in cues.chain(courtesy) {
            let (pattern, edge) = parse_spec(spec);
            let pattern = pattern.to_ascii_lowercase();
            let id = match patterns.iter().position(|p| *p == pattern) {
                Some(id) => id,
                None => {
                    patterns.push(pattern);
                    edges.push(edge);
                    weights.push([0.0; 8]);
                    patterns.len() - 1
                }
            };
            weights[id][slot] += weight;
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&patterns)
            .ok()?;
        Some(Lexicon { automaton, edges, weights })
    }

    /// Adds the votes of every cue found in `hay`, honouring word boundaries. A cue seen again in the same text
    /// adds `REPEAT_WEIGHT` of its weight: ten mentions of "api" in a pasted log are not ten times the evidence.
    fn vote(&self, hay: &[u8], votes: &mut TurnVotes) {
        let mut seen = Seen::default();
        let mut pos = 0;
        while pos < hay.len() {
            let Some(m) = self.automaton.find(Input::new(hay).span(pos..hay.len())) else { break };
            let id = m.pattern().as_usize();
            if self.edges[id].accepts(hay, m.start(), m.end()) {
                let scale = if seen.insert(id) { 1.0 } else { REPEAT_WEIGHT };
                for (v, w) in votes.iter_mut().zip(&self.weights[id]) {
                    *v += scale * w;
                }
                pos = m.end();
            } else {
                // A shorter pattern may still match at a later start; resume just after this one's start.
                pos = m.start() + 1;
            }
        }
    }
}

/// Share of a cue's weight added by its second and later occurrences in one text.
const REPEAT_WEIGHT: f32 = 0.3;

/// Pattern ids already matched in the current text; a fixed array so that matching does not allocate. Past its
/// capacity every cue counts as new, which only matters for texts with hundreds of distinct cues.
struct Seen {
    ids: [u32; 96],
    len: usize,
}

impl Default for Seen {
    fn default() -> Self {
        Seen { ids: [0; 96], len: 0 }
    }
}

impl Seen {
    /// Records `id`; true when it was not seen before.
    fn insert(&mut self, id: usize) -> bool {
        let id = id as u32;
        if self.ids[..self.len].contains(&id) {
            return false;
        }
        if self.len < self.ids.len() {
            self.ids[self.len] = id;
            self.len += 1;
        }
        true
    }
}

/// Splits the `*`/`~` markers off a pattern and derives its boundary rules.
fn parse_spec(spec: &str) -> (&str, Edges) {
    let (camel, spec) = match spec.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let (open_left, spec) = match spec.strip_prefix('*') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let (open_right, spec) = match spec.strip_suffix('*') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let bytes = spec.as_bytes();
    let left = !camel && !open_left && bytes.first().is_some_and(|b| is_ascii_word(*b));
    let right = !open_right && bytes.last().is_some_and(|b| is_ascii_word(*b));
    (spec, Edges { left, right, camel })
}

impl Edges {
    fn accepts(self, hay: &[u8], start: usize, end: usize) -> bool {
        if self.left && start > 0 && is_word(hay[start - 1]) {
            return false;
        }
        if self.right && end < hay.len() && is_word(hay[end]) {
            return false;
        }
        if self.camel {
            let after_lower = start > 0 && hay[start - 1].is_ascii_lowercase();
            if !after_lower || !hay[start].is_ascii_uppercase() {
                return false;
            }
        }
        true
    }
}

/// Letters, digits and `_`: the bytes that make up an ASCII word.
fn is_ascii_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A byte that continues a word: ASCII word bytes and any byte of a non-ASCII character (so that a cue never
/// matches the start of "naïve"-like words).
fn is_word(b: u8) -> bool {
    is_ascii_word(b) || b >= 0x80
}

/// Shape counts gathered by one pass over a text's lines and bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Shape {
    /// Lines that read as source code (statements, block openers, indented code).
    pub code_lines: u32,
    /// Lines that read as a stack trace frame (`File "x.py", line 3`, `at foo (bar.js:1:2)`).
    pub trace_lines: u32,
    /// Non-empty lines.
    pub lines: u32,
    /// Markdown table rows and bare CSV rows.
    pub table_lines: u32,
    /// JSON-like `"key":` pairs.
    pub json_pairs: u32,
    /// Arithmetic: an operand, an operator and an operand (`3x + 7`, `48 * 27`, `y(0) = 2`).
    pub arithmetic: u32,
    /// Powers and superscripts (`x^2`, `2^100`, `x²`).
    pub powers: u32,
    /// A number with a percent sign.
    pub percents: u32,
    /// Coefficients glued to a variable (`3x`, `2y`).
    pub coefficients: u32,
    /// Numbers (runs of digits).
    pub numbers: u32,
    /// Question marks.
    pub questions: u32,
    /// Quantified clauses of a syllogism: "all/some/no X are".
    pub quantified: u32,
    /// Bytes scanned.
    pub bytes: u32,
}

/// Adds the cue votes of `hay` into `votes`.
pub(crate) fn vote_cues(hay: &[u8], votes: &mut TurnVotes) {
    if let Some(lexicon) = LEXICON.as_ref() {
        lexicon.vote(hay, votes);
    }
}

/// Compiles the cue table now if it is not yet compiled.
pub(crate) fn prepare() {
    LazyLock::force(&LEXICON);
}

/// True when the cue automaton compiled (it always should; checked by the tests).
#[cfg(test)]
pub(crate) fn lexicon_ready() -> bool {
    LEXICON.is_some()
}

/// Scans the lines and bytes of `hay` for structure.
pub(crate) fn scan_shape(hay: &[u8], shape: &mut Shape) {
    for line in hay.split(|b| *b == b'\n') {
        scan_line(line, shape);
    }
    scan_math(hay, shape);
    scan_quantifiers(hay, shape);
    shape.questions += count(hay, b'?') as u32;
    shape.bytes += hay.len() as u32;
}

/// Counts clauses like "all bloops are", "some pets are", "no cats are": a quantifier word at most three words
/// before " are ".
fn scan_quantifiers(hay: &[u8], shape: &mut Shape) {
    for at in memchr::memmem::find_iter(hay, b" are ") {
        let from = at.saturating_sub(40);
        let before = &hay[from..at];
        let words = before.rsplit(|b| *b == b' ').take(4);
        if words
            .into_iter()
            .any(|w| w.eq_ignore_ascii_case(b"all") || w.eq_ignore_ascii_case(b"some") || w.eq_ignore_ascii_case(b"no"))
        {
            shape.quantified += 1;
        }
    }
}

/// Line-start prefixes that only source code has.
const CODE_PREFIXES: &[&[u8]] = &[
    b"def ",
    b"fn ",
    b"pub fn ",
    b"pub struct ",
    b"class ",
    b"#include",
    b"#!/",
    b"function ",
    b"func ",
    b"const ",
    b"let ",
    b"var ",
    b"import ",
    b"package ",
    b"public ",
    b"private ",
    b"elif ",
    b"else:",
    b"try:",
    b"except",
    b"return ",
    b"print(",
    b"println!",
    b"console.",
    b"if (",
    b"for (",
    b"while (",
    b"SELECT ",
    b"INSERT ",
    b"UPDATE ",
    b"CREATE ",
    b"#[",
    b"//",
    b"<?php",
    b"location ",
    b"server {",
];

fn scan_line(line: &[u8], shape: &mut Shape) {
    let trimmed = trim_start(line);
    let trimmed = trim_end(trimmed);
    if trimmed.is_empty() {
        return;
    }
    shape.lines += 1;
    let indent = line.len() - trim_start(line).len();
    let last = trimmed[trimmed.len() - 1];
    let first = trimmed[0];

    if trimmed.starts_with(b"File \"")
        || (trimmed.starts_with(b"at ") && contains(trimmed, b"(") && contains(trimmed, b":"))
    {
        shape.trace_lines += 1;
        return;
    }
    let code_prefix = CODE_PREFIXES.iter().any(|p| trimmed.starts_with(p));
    let code_end = matches!(last, b';' | b'{' | b'}') && trimmed.len() > 1 || trimmed == b"}";
    let block_header = last == b':'
        && (trimmed.starts_with(b"if ")
            || trimmed.starts_with(b"for ")
            || trimmed.starts_with(b"while ")
            || trimmed.starts_with(b"with ")
            || trimmed.starts_with(b"else"));
    let indented_code = indent >= 2 && trimmed.iter().any(|b| matches!(b, b'(' | b'=' | b'[' | b'{' | b';'));
    if code_prefix || code_end || block_header || indented_code {
        shape.code_lines += 1;
    }
    shape.json_pairs += memchr::memmem::find_iter(trimmed, b"\":").count() as u32;
    let markdown_row = first == b'|' && last == b'|';
    let csv_row = !code_end && count(trimmed, b',') >= 2 && !contains(trimmed, b", ");
    if markdown_row || csv_row {
        shape.table_lines += 1;
    }
}

/// Counts arithmetic, powers, percents and coefficients in one pass.
fn scan_math(hay: &[u8], shape: &mut Shape) {
    let n = hay.len();
    let mut i = 0;
    while i < n {
        let b = hay[i];
        if b == b'^' {
            let before = i > 0 && (hay[i - 1].is_ascii_alphanumeric() || hay[i - 1] == b')');
            let after = i + 1 < n && (hay[i + 1].is_ascii_alphanumeric() || hay[i + 1] == b'(');
            if before && after {
                shape.powers += 1;
            }
            i += 1;
            continue;
        }
        // Superscript two and three (U+00B2, U+00B3) after a letter or digit.
        if b == 0xC2 && i + 1 < n && matches!(hay[i + 1], 0xB2 | 0xB3) {
            if i > 0 && hay[i - 1].is_ascii_alphanumeric() {
                shape.powers += 1;
            }
            i += 2;
            continue;
        }
        let operand_end = if b.is_ascii_digit() && (i == 0 || !is_ascii_word(hay[i - 1]) || hay[i - 1].is_ascii_digit())
        {
            // A number, possibly a coefficient glued to a one-letter variable (`3x`).
            shape.numbers += 1;
            let mut j = i;
            while j < n && (hay[j].is_ascii_digit() || (hay[j] == b'.' && j + 1 < n && hay[j + 1].is_ascii_digit())) {
                j += 1;
            }
            if j < n && hay[j] == b'%' {
                shape.percents += 1;
            }
            if j < n && matches!(hay[j], b'x' | b'y' | b'z' | b'n') && (j + 1 == n || !hay[j + 1].is_ascii_alphabetic())
            {
                shape.coefficients += 1;
                j += 1;
            }
            Some(j)
        } else if b.is_ascii_alphabetic() {
            // Skip a whole word at once; only a letter standing alone (`x` in "x + 1") is an operand.
            let mut j = i + 1;
            while j < n && is_word(hay[j]) {
                j += 1;
            }
            if j == i + 1 && (i == 0 || !is_word(hay[i - 1])) {
                Some(j)
            } else {
                i = j;
                continue;
            }
        } else if b == b')' {
            Some(i + 1)
        } else {
            None
        };
        let Some(end) = operand_end else {
            i += 1;
            continue;
        };
        if has_operator_then_operand(hay, end) {
            shape.arithmetic += 1;
        }
        i = end.max(i + 1);
    }
}

/// True when `hay[i]` is a letter standing alone (`x` in "x + 1", not in "box").
fn is_single_letter(hay: &[u8], i: usize) -> bool {
    hay[i].is_ascii_alphabetic()
        && (i == 0 || !is_word(hay[i - 1]))
        && (i + 1 == hay.len() || !is_word(hay[i + 1]) || hay[i + 1] == b'(')
}

/// Looks after an operand at `pos` for an arithmetic operator and a second operand.
fn has_operator_then_operand(hay: &[u8], pos: usize) -> bool {
    let n = hay.len();
    let mut k = pos;
    while k < n && hay[k] == b' ' {
        k += 1;
    }
    let spaced_before = k > pos;
    if k >= n {
        return false;
    }
    let op = hay[k];
    let (op_len, needs_spaces) = match op {
        b'+' | b'*' | b'=' => (1, false),
        b'-' | b'/' => (1, true),
        // The multiplication sign and the division sign (U+00D7, U+00F7).
        0xC3 if k + 1 < n && matches!(hay[k + 1], 0x97 | 0xB7) => (2, false),
        _ => return false,
    };
    let mut m = k + op_len;
    // `==`, `+=`, `=>`, `->`, `++`, `//`: programming, not arithmetic.
    if m < n && matches!(hay[m], b'=' | b'>' | b'+' | b'-' | b'/' | b'*') {
        return false;
    }
    let spaced_after = m < n && hay[m] == b' ';
    if needs_spaces && !(spaced_before && spaced_after) {
        return false;
    }
    while m < n && hay[m] == b' ' {
        m += 1;
    }
    m < n && (hay[m].is_ascii_digit() || hay[m] == b'(' || is_single_letter(hay, m))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    &s[start..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |p| p + 1);
    &s[..end]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

fn count(hay: &[u8], byte: u8) -> usize {
    memchr::memchr_iter(byte, hay).count()
}

/// Turns a shape into votes.
pub(crate) fn vote_shape(shape: &Shape, votes: &mut TurnVotes) {
    let code = shape.code_lines as f32;
    votes[Category::Coding.index()] += 1.2 * code + 2.0 * shape.trace_lines as f32;
    let math = 1.5 * shape.arithmetic as f32 + 1.5 * shape.powers as f32 + 0.8 * shape.coefficients as f32;
    // Arithmetic inside code (`i + 1`) says little about math.
    let math = if shape.code_lines >= 2 { math * 0.3 } else { math };
    votes[Category::Math.index()] += math + 0.8 * shape.percents as f32;
    // A short question with several numbers reads as a word problem.
    if shape.numbers >= 3 && shape.questions > 0 && shape.bytes < 400 && shape.code_lines == 0 {
        votes[Category::Math.index()] += 1.5;
    }
    votes[Category::Reasoning.index()] += 1.5 * shape.quantified as f32;
    let data = 0.6 * shape.table_lines as f32 + if shape.json_pairs >= 2 { 0.3 * shape.json_pairs as f32 } else { 0.0 };
    votes[Category::Extraction.index()] += data;
    // A pasted document: several lines of prose that are not code.
    if shape.lines >= 4 && shape.code_lines * 3 < shape.lines {
        votes[Category::Extraction.index()] += 1.5;
    }
}
