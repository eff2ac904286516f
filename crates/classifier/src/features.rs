//! The learned classifier's features of one text, shared by training and inference so the two cannot drift.
//!
//! A text is read through a bounded **view**: all of it when short; otherwise its head (where the instruction
//! usually is), its tail (where the question of a few-shot or reading-comprehension prompt is) and evenly spaced
//! samples of the middle (what the document is). The view caps the cost of a 2 MB paste at that of a 2 KB one.
//!
//! From the view come hashed features, each a bucket index in `0..2^bits`:
//! - word unigrams and bigrams (ASCII lower-cased; digits folded to `0`, a bare number to its length class;
//!   punctuation marks are tokens of their own, since `{`, `=` and `$` say a lot);
//! - the first words of the text and the last words of it, tagged by position (the instruction and the question);
//! - the text's shape in coarse buckets (code lines, stack-trace lines, table rows, JSON pairs, arithmetic, powers,
//!   numbers, question marks, lines, length), from the rule engine's structural scan;
//! - the rule lexicon's cue votes per category in coarse buckets, and the category the hand-written rules would
//!   pick (with whether they are sure), which the model weighs like any other feature.
//!
//! Features are binary (present or not) and the set is L2-normalised by the model, so a long text is not more
//! confident for being long.

use crate::rules::scan::{self, Shape, TurnVotes};

/// Texts up to this many bytes are read whole.
pub const WHOLE: usize = 2048;
/// Bytes read from the head of a longer text.
pub const HEAD: usize = 1024;
/// Bytes read from the tail of a longer text.
pub const TAIL: usize = 512;
/// Evenly spaced samples read from the middle of a longer text.
pub const SAMPLES: usize = 4;
/// Bytes in each middle sample.
pub const SAMPLE: usize = 128;
/// Leading tokens of a text that also count as position-tagged "head" features.
const HEAD_TOKENS: usize = 8;
/// Trailing tokens of a text that also count as position-tagged "tail" features.
const TAIL_TOKENS: usize = 16;
/// Longest token kept whole; longer runs are cut (hashing a 10 KB base64 blob as one word says nothing more).
const MAX_TOKEN: usize = 24;

/// Feature namespaces, mixed into each hash so that a word and a bigram never share a bucket by construction.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Space {
    Word = 0x9e37_79b9_7f4a_7c15,
    Pair = 0xc2b2_ae3d_27d4_eb4f,
    Head = 0x1656_67b1_9e37_79f9,
    Tail = 0x27d4_eb2f_1656_67c5,
    Shape = 0x85eb_ca77_c2b2_ae63,
    Cue = 0xd6e8_feb8_6659_fd93,
    Verdict = 0x2545_f491_4f6c_dd1d,
}

/// A part of a text that the view reads.
pub fn view(text: &str) -> impl Iterator<Item = &str> {
    let len = text.len();
    let mut parts: [Option<&str>; SAMPLES + 2] = [None; SAMPLES + 2];
    if len <= WHOLE {
        parts[0] = Some(text);
    } else {
        parts[0] = Some(slice(text, 0, HEAD));
        let middle = len - HEAD - TAIL;
        let step = middle / (SAMPLES + 1);
        for (i, part) in parts.iter_mut().skip(1).take(SAMPLES).enumerate() {
            let start = HEAD + step * (i + 1) - SAMPLE / 2;
            *part = Some(slice(text, start, start + SAMPLE));
        }
        parts[SAMPLES + 1] = Some(slice(text, len - TAIL, len));
    }
    parts.into_iter().flatten()
}

/// `text[start..end]` moved inward to character boundaries.
fn slice(text: &str, start: usize, end: usize) -> &str {
    let mut s = start.min(text.len());
    while !text.is_char_boundary(s) {
        s += 1;
    }
    let mut e = end.min(text.len()).max(s);
    while !text.is_char_boundary(e) {
        e -= 1;
    }
    if e < s { "" } else { &text[s..e] }
}

/// A reusable feature buffer: the bucket indices of one text, without repeats once [`extract`] returns (word ids
/// in order of first appearance, structure ids sorted). Reuse one per thread: it keeps a bitmap of `2^bits` bits.
#[derive(Debug, Default, Clone)]
pub struct Features {
    /// Bucket indices of the word features.
    pub ids: Vec<u32>,
    /// Bucket indices of the structure features (shape and cue buckets).
    pub structure: Vec<u32>,
    /// Token hashes of the current part, kept to form bigrams and the position tags.
    tokens: Vec<u64>,
    /// One bit per bucket: the word ids already in `ids` (cleared again before `extract` returns).
    seen: Vec<u64>,
}

impl Features {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a word id unless it is already there.
    fn add(&mut self, id: u32) {
        let (word, bit) = ((id >> 6) as usize, 1u64 << (id & 63));
        if let Some(w) = self.seen.get_mut(word)
            && *w & bit == 0
        {
            *w |= bit;
            self.ids.push(id);
        }
    }
}

/// Fills `out` with the features of `text` for a model of `2^bits` buckets.
pub fn extract(text: &str, bits: u32, out: &mut Features) {
    out.ids.clear();
    out.structure.clear();
    let words = (1usize << bits).div_ceil(64);
    if out.seen.len() != words {
        out.seen = vec![0; words];
    }
    let mut shape = Shape::default();
    let mut cues: TurnVotes = [0.0; 8];
    let mut tokens = std::mem::take(&mut out.tokens);
    let mut parts = view(text).peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        let bytes = part.as_bytes();
        let last = parts.peek().is_none();
        // The rule scans read the head and the tail; the middle samples add words only.
        if first || last {
            scan::scan_shape(bytes, &mut shape);
            scan::vote_cues(bytes, &mut cues);
        }
        tokens.clear();
        tokenize(bytes, &mut tokens);
        let mut previous = None;
        for t in &tokens {
            out.add(bucket(mix(Space::Word as u64, *t), bits));
            if let Some(p) = previous {
                out.add(bucket(mix(Space::Pair as u64 ^ u64::rotate_left(p, 17), *t), bits));
            }
            previous = Some(*t);
        }
        if first {
            for t in tokens.iter().take(HEAD_TOKENS) {
                out.add(bucket(mix(Space::Head as u64, *t), bits));
            }
            first = false;
        }
        if last {
            for t in tokens.iter().rev().take(TAIL_TOKENS) {
                out.add(bucket(mix(Space::Tail as u64, *t), bits));
            }
        }
    }
    out.tokens = tokens;
    for id in &out.ids {
        if let Some(w) = out.seen.get_mut((id >> 6) as usize) {
            *w = 0;
        }
    }
    shape_features(&shape, bits, &mut out.structure);
    let (rule, score) = crate::rules::verdict(&cues, &shape, text.len());
    let confident = u64::from(score >= 0.6);
    out.structure.push(bucket(mix(Space::Verdict as u64, (rule as u64) << 8 | confident), bits));
    for (slot, votes) in cues.iter().enumerate() {
        let level = match *votes {
            v if v <= 0.0 => continue,
            v if v < 1.0 => 1,
            v if v < 2.0 => 2,
            v if v < 4.0 => 3,
            _ => 4,
        };
        out.structure.push(bucket(mix(Space::Cue as u64, (slot as u64) << 8 | level), bits));
    }
    out.structure.sort_unstable();
    out.structure.dedup();
}

/// Shape counts as coarse buckets: 0, 1, 2-3, 4-7, 8+.
fn shape_features(shape: &Shape, bits: u32, ids: &mut Vec<u32>) {
    let length = (shape.bytes.max(1) as f32).log2() as u32;
    let counts = [
        shape.code_lines,
        shape.trace_lines,
        shape.table_lines,
        shape.json_pairs,
        shape.arithmetic,
        shape.powers,
        shape.percents,
        shape.coefficients,
        shape.numbers,
        shape.questions,
        shape.quantified,
        shape.lines,
        length,
    ];
    for (kind, count) in counts.into_iter().enumerate() {
        let level = match count {
            0 => 0,
            1 => 1,
            2..=3 => 2,
            4..=7 => 3,
            _ => 4,
        };
        ids.push(bucket(mix(Space::Shape as u64, (kind as u64) << 8 | level), bits));
    }
}

/// Splits `bytes` into token hashes: words (ASCII letters lower-cased, digits folded to `0`, non-ASCII bytes kept)
/// and single punctuation marks. A bare number becomes its length class (`0`, `00`, `000`).
fn tokenize(bytes: &[u8], tokens: &mut Vec<u64>) {
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        let b = bytes[i];
        if is_word_byte(b) {
            let mut h = FNV;
            let mut len = 0;
            let mut digits_only = true;
            while i < n && is_word_byte(bytes[i]) {
                let c = bytes[i];
                if len < MAX_TOKEN {
                    let folded = if c.is_ascii_digit() { b'0' } else { c.to_ascii_lowercase() };
                    digits_only &= c.is_ascii_digit();
                    if !(digits_only && len >= 3) {
                        h = step(h, folded);
                    }
                    len += 1;
                }
                i += 1;
            }
            tokens.push(h);
        } else {
            if b.is_ascii_punctuation() {
                tokens.push(step(step(FNV, 0xff), b));
            }
            i += 1;
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

const FNV: u64 = 0xcbf2_9ce4_8422_2325;

/// One FNV-1a step.
fn step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Mixes a namespace and a value into a well-spread hash (the finaliser of SplitMix64).
fn mix(space: u64, value: u64) -> u64 {
    let mut z = space ^ value.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The top `bits` bits of a hash.
fn bucket(h: u64, bits: u32) -> u32 {
    (h >> (64 - bits)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<u32> {
        let mut f = Features::new();
        extract(text, 18, &mut f);
        f.ids.extend(f.structure);
        f.ids.sort_unstable();
        f.ids
    }

    #[test]
    fn features_are_sorted_unique_and_in_range() {
        let mut f = Features::new();
        extract("Write a Python function that returns the sum of a list. Then write another one!", 18, &mut f);
        let mut unique = f.ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), f.ids.len(), "no repeats");
        assert!(f.structure.windows(2).all(|w| w[0] < w[1]));
        assert!(f.seen.iter().all(|w| *w == 0), "the bitmap is clear again");
        let f = ids("Write a Python function that returns the sum of a list. Then write another one!");
        assert!(f.iter().all(|id| *id < 1 << 18));
        assert!(f.len() > 20);
    }

    #[test]
    fn case_and_digits_fold() {
        assert_eq!(ids("What is 12 + 34?"), ids("what is 56 + 78?"));
        assert_ne!(ids("What is 1 + 34?"), ids("what is 56 + 78?"), "one digit is not two");
    }

    #[test]
    fn long_texts_are_read_through_a_bounded_view() {
        let text = "word ".repeat(100_000);
        let parts: Vec<&str> = view(&text).collect();
        assert_eq!(parts.len(), SAMPLES + 2);
        let read: usize = parts.iter().map(|p| p.len()).sum();
        assert!(read <= HEAD + TAIL + SAMPLES * SAMPLE);
        let short = "a short prompt";
        assert_eq!(view(short).collect::<Vec<_>>(), vec![short]);
    }

    #[test]
    fn the_view_cuts_on_character_boundaries() {
        let text = "é".repeat(10_000) + "ü";
        for part in view(&text) {
            assert!(part.chars().all(|c| c == 'é' || c == 'ü'));
        }
        assert!(!ids(&text).is_empty());
    }

    #[test]
    fn empty_text_has_only_shape_features() {
        let f = ids("");
        assert_eq!(f.len(), 14, "one bucket per shape count, and the rules' verdict");
    }
}
