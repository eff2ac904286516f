//! Measures of text that several crates must agree on: the token estimate used when no tokenizer is at hand, and a
//! stable hash (the same on every machine and every run, unlike `std`'s `RandomState`) for versions and seeds.

/// Estimated number of tokens in `text`: one token per four bytes, at least one for non-empty text.
///
/// This is the usual rule of thumb for English with BPE tokenizers; the simulator uses the same rule to fill
/// `prompt_eval_count`, so the router's predictions and the simulator's figures agree.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() { 0 } else { (text.len() as u64).div_ceil(4) }
}

/// 64-bit FNV-1a over `bytes`: stable across runs, platforms and releases.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Hash of several parts, with a separator so that ("ab","c") and ("a","bc") differ.
pub fn stable_hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate_rounds_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
    }

    #[test]
    fn hashes_are_stable_and_part_aware() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(stable_hash_parts(&[b"ab", b"c"]), stable_hash_parts(&[b"a", b"bc"]));
    }
}
