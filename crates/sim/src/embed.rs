//! Deterministic, meaningful embeddings: feature hashing of words and character trigrams.
//!
//! Each lower-cased word adds a signed unit at a hashed dimension, and each of its character trigrams a smaller
//! one, so texts that share words (or word stems) point in similar directions and their cosine similarity is
//! higher. The vector is L2-normalised, as Ollama's `/api/embed` returns it.

use switchyard_core::text::stable_hash_parts;

/// Weight of a character trigram relative to a whole word.
const TRIGRAM_WEIGHT: f32 = 0.3;

/// The embedding of `text` by `model` in `dims` dimensions (a unit vector; the first axis for empty text).
pub(crate) fn embed(model: &str, dims: usize, text: &str) -> Vec<f32> {
    let dims = dims.max(1);
    let mut v = vec![0f32; dims];
    let lower = text.to_lowercase();
    for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        add(&mut v, model, b"w", word.as_bytes(), 1.0);
        let padded: Vec<char> = std::iter::once('<').chain(word.chars()).chain(std::iter::once('>')).collect();
        for gram in padded.windows(3) {
            let gram: String = gram.iter().collect();
            add(&mut v, model, b"t", gram.as_bytes(), TRIGRAM_WEIGHT);
        }
    }
    normalize(&mut v);
    v
}

/// Keeps the first `dimensions` components and normalises again (Ollama's `dimensions` option).
pub(crate) fn truncate(mut v: Vec<f32>, dimensions: usize) -> Vec<f32> {
    if dimensions > 0 && dimensions < v.len() {
        v.truncate(dimensions);
        normalize(&mut v);
    }
    v
}

fn add(v: &mut [f32], model: &str, kind: &[u8], feature: &[u8], weight: f32) {
    let h = stable_hash_parts(&[model.as_bytes(), kind, feature]);
    let index = (h % v.len() as u64) as usize;
    let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
    v[index] += sign * weight;
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 1e-12 {
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32);
    } else if let Some(first) = v.first_mut() {
        *first = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn unit_length_deterministic_and_meaningful() {
        let a = embed("m", 768, "Write a Python function to sort a list");
        let b = embed("m", 768, "python function that sorts a list of numbers");
        let c = embed("m", 768, "The capital of France is Paris");
        assert_eq!(a, embed("m", 768, "Write a Python function to sort a list"));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(cosine(&a, &b) > cosine(&a, &c) + 0.2, "{} vs {}", cosine(&a, &b), cosine(&a, &c));
        assert_eq!(embed("m", 4, ""), vec![1.0, 0.0, 0.0, 0.0]);
        let t = truncate(a, 16);
        assert_eq!(t.len(), 16);
        assert!((t.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }
}
