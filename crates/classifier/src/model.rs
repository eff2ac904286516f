//! The learned model: a multinomial logistic regression over hashed features, with 8-bit weights.
//!
//! File layout (little-endian), as written by [`LinearModel::to_bytes`] and shipped in the binary:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `SYCLASS1` |
//! | 4 | `bits`: the model has `2^bits` feature buckets |
//! | 4 | number of classes (7, in [`Category::ALL`] order) |
//! | 4 | `scale`: a weight is `scale * i8` |
//! | 4 | `temperature`: logits are divided by it before the softmax (fitted on held-out sources) |
//! | 28 | bias per class, `f32` |
//! | `8 * 2^bits` | weights, one row of 8 `i8` per bucket (7 classes and one pad byte) |
//!
//! Integer accumulation makes the logits of a text the same on every machine, bit for bit.

use crate::error::ClassifierError;
use crate::features::Features;
use switchyard_core::Category;

/// Classes of the model, in [`Category::ALL`] order.
pub const CLASSES: usize = 7;
/// Bytes of one weight row.
pub const ROW: usize = 8;
const MAGIC: &[u8; 8] = b"SYCLASS1";
const HEADER: usize = 8 + 4 * 4 + 4 * CLASSES;

/// A loaded model. Weights are borrowed from the bytes it was read from (the binary's own, when shipped).
#[derive(Debug, Clone)]
pub struct LinearModel<'a> {
    bits: u32,
    scale: f32,
    temperature: f32,
    bias: [f32; CLASSES],
    weights: std::borrow::Cow<'a, [u8]>,
}

impl<'a> LinearModel<'a> {
    /// Reads a model from its file bytes.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, ClassifierError> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(ClassifierError::ModelMagic);
        }
        let word = |i: usize| -> [u8; 4] {
            let at = 8 + 4 * i;
            [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
        };
        let bits = u32::from_le_bytes(word(0));
        let classes = u32::from_le_bytes(word(1)) as usize;
        let scale = f32::from_le_bytes(word(2));
        let temperature = f32::from_le_bytes(word(3));
        if !(8..=24).contains(&bits) {
            return Err(ClassifierError::ModelMalformed(format!("bits = {bits}, expected 8 to 24")));
        }
        if classes != CLASSES {
            return Err(ClassifierError::ModelMalformed(format!("{classes} classes, expected {CLASSES}")));
        }
        if !(scale.is_finite() && scale > 0.0 && temperature.is_finite() && temperature > 0.0) {
            return Err(ClassifierError::ModelMalformed("scale or temperature is not a positive number".into()));
        }
        let mut bias = [0.0f32; CLASSES];
        for (c, b) in bias.iter_mut().enumerate() {
            *b = f32::from_le_bytes(word(4 + c));
            if !b.is_finite() {
                return Err(ClassifierError::ModelMalformed("a bias is not finite".into()));
            }
        }
        let rows = 1usize << bits;
        let body = &bytes[HEADER..];
        if body.len() != rows * ROW {
            return Err(ClassifierError::ModelMalformed(format!(
                "{} weight bytes, expected {}",
                body.len(),
                rows * ROW
            )));
        }
        Ok(LinearModel { bits, scale, temperature, bias, weights: std::borrow::Cow::Borrowed(body) })
    }

    /// Builds a model from trained parts (the trainer's output, before it is written).
    pub fn from_parts(
        bits: u32,
        scale: f32,
        temperature: f32,
        bias: [f32; CLASSES],
        weights: Vec<u8>,
    ) -> LinearModel<'static> {
        LinearModel { bits, scale, temperature, bias, weights: std::borrow::Cow::Owned(weights) }
    }

    /// The file bytes of this model.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.weights.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(&(CLASSES as u32).to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&self.temperature.to_le_bytes());
        for b in self.bias {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out.extend_from_slice(&self.weights);
        out
    }

    /// Feature buckets are `0..2^bits`.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The softmax temperature.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The same model with another temperature.
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }

    /// Raw logits (before the temperature) of a feature set: the bias plus each block's rows summed and divided by
    /// the square root of the block's size; an empty set gives the bias.
    pub fn logits(&self, features: &Features) -> [f32; CLASSES] {
        let mut logits = self.bias;
        for block in [&features.ids, &features.structure] {
            let acc = self.block_sum(block);
            let norm = if block.is_empty() { 0.0 } else { self.scale / (block.len() as f32).sqrt() };
            for (l, a) in logits.iter_mut().zip(acc) {
                *l += norm * a as f32;
            }
        }
        logits
    }

    /// The integer sum of the rows of `ids`.
    fn block_sum(&self, ids: &[u32]) -> [i32; ROW] {
        let mut acc = [0i32; ROW];
        let rows = self.weights.len() / ROW;
        for id in ids {
            let id = *id as usize;
            if id >= rows {
                continue;
            }
            let row = &self.weights[id * ROW..id * ROW + ROW];
            for (a, w) in acc.iter_mut().zip(row) {
                *a += i32::from(*w as i8);
            }
        }
        acc
    }

    /// Probabilities from logits, at the model's temperature.
    pub fn probabilities(&self, logits: &[f32; CLASSES]) -> [f32; CLASSES] {
        softmax(logits, self.temperature)
    }
}

/// Softmax of `logits / temperature`.
pub fn softmax(logits: &[f32; CLASSES], temperature: f32) -> [f32; CLASSES] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut out = [0.0f32; CLASSES];
    let mut sum = 0.0;
    for (o, l) in out.iter_mut().zip(logits) {
        *o = ((l - max) / temperature).exp();
        sum += *o;
    }
    for o in &mut out {
        *o /= sum;
    }
    out
}

/// Index of the largest value; ties go to the earlier class, an all-NaN array to `General`.
pub fn argmax(values: &[f32; CLASSES]) -> usize {
    let mut best = (Category::General.index(), f32::NEG_INFINITY);
    for (i, v) in values.iter().enumerate() {
        if *v > best.1 {
            best = (i, *v);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LinearModel<'static> {
        let mut weights = vec![0u8; ROW << 8];
        weights[5 * ROW + 2] = 100i8 as u8;
        weights[5 * ROW + 6] = (-50i8) as u8;
        LinearModel::from_parts(8, 0.01, 2.0, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5], weights)
    }

    #[test]
    fn round_trips_through_bytes() {
        let m = tiny();
        let bytes = m.to_bytes();
        let back = LinearModel::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.bits(), 8);
        assert_eq!(back.temperature(), 2.0);
    }

    #[test]
    fn logits_sum_rows_and_normalise() {
        let m = tiny();
        let mut f = Features::new();
        f.ids = vec![5];
        let l = m.logits(&f);
        assert!((l[2] - 1.0).abs() < 1e-6 && (l[6] - 0.0).abs() < 1e-6, "{l:?}");
        f.ids = vec![1, 5, 7, 9];
        let l = m.logits(&f);
        assert!((l[2] - 0.5).abs() < 1e-6, "{l:?}");
        assert_eq!(argmax(&l), 2);
        let p = m.probabilities(&l);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn bad_files_are_refused() {
        assert_eq!(LinearModel::from_bytes(b"nope").unwrap_err(), ClassifierError::ModelMagic);
        let mut bytes = tiny().to_bytes();
        bytes.pop();
        assert!(matches!(LinearModel::from_bytes(&bytes), Err(ClassifierError::ModelMalformed(_))));
        let mut bytes = tiny().to_bytes();
        bytes[8] = 40;
        assert!(matches!(LinearModel::from_bytes(&bytes), Err(ClassifierError::ModelMalformed(_))));
    }
}
