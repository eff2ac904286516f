//! Where a model's weights sit: its bytes on each GPU. One share for a model that fits on one GPU; several when
//! Ollama splits a model that fits on no single GPU across them.

use smallvec::SmallVec;
use std::fmt;
use switchyard_core::size::Bytes;

/// A model's GPU memory per GPU, ordered by GPU index, each share non-zero. Inline up to two GPUs: planning builds
/// one for every candidate model on every routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shares(SmallVec<[(u32, u64); 2]>);

impl Shares {
    /// All of `bytes` on `gpu`.
    pub fn one(gpu: u32, bytes: u64) -> Self {
        let mut shares = SmallVec::new();
        if bytes > 0 {
            shares.push((gpu, bytes));
        }
        Self(shares)
    }

    /// Shares from `(gpu, bytes)` pairs in any order; empty shares are dropped, repeated GPUs added up.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, u64)>) -> Self {
        let mut shares: SmallVec<[(u32, u64); 2]> = SmallVec::new();
        for (gpu, bytes) in pairs.into_iter().filter(|(_, b)| *b > 0) {
            match shares.iter_mut().find(|(g, _)| *g == gpu) {
                Some((_, b)) => *b = b.saturating_add(bytes),
                None => shares.push((gpu, bytes)),
            }
        }
        shares.sort_unstable_by_key(|(g, _)| *g);
        Self(shares)
    }

    /// Bytes over every GPU.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, b)| b).sum()
    }

    /// Bytes on `gpu`.
    pub fn on(&self, gpu: u32) -> u64 {
        self.0.iter().find(|(g, _)| *g == gpu).map_or(0, |(_, b)| *b)
    }

    /// True when some of it is on `gpu`.
    pub fn touches(&self, gpu: u32) -> bool {
        self.on(gpu) > 0
    }

    /// `(gpu, bytes)` pairs in GPU order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The GPUs it uses, in order.
    pub fn gpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|(g, _)| *g)
    }

    /// The GPU holding the largest share (the lowest index on a tie); `None` when empty.
    pub fn primary(&self) -> Option<u32> {
        self.0.iter().max_by_key(|(g, b)| (*b, std::cmp::Reverse(*g))).map(|(g, _)| *g)
    }

    /// Spread over more than one GPU.
    pub fn is_split(&self) -> bool {
        self.0.len() > 1
    }

    /// The same proportions over `total` bytes (a measured size replacing a predicted one). The last share takes
    /// the rounding, so the result adds up to `total` exactly.
    pub fn scaled_to(&self, total: u64) -> Self {
        let old = self.total();
        if old == 0 || self.0.is_empty() {
            return self.clone();
        }
        let mut left = total;
        let last = self.0.len() - 1;
        let pairs = self.0.iter().enumerate().map(|(i, (g, b))| {
            let share = if i == last { left } else { (u128::from(*b) * u128::from(total) / u128::from(old)) as u64 };
            let share = share.min(left);
            left -= share;
            (*g, share)
        });
        Self::from_pairs(pairs.collect::<Vec<_>>())
    }
}

impl fmt::Display for Shares {
    /// `GPU 0` for one share; `GPU 0 (24.0 GiB) + GPU 1 (19.3 GiB)` for a split.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(gpu, _)] = self.0.as_slice() {
            return write!(f, "GPU {gpu}");
        }
        for (i, (gpu, bytes)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "GPU {gpu} ({})", Bytes(*bytes))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn pairs_are_ordered_merged_and_empty_ones_dropped() {
        let s = Shares::from_pairs([(1, 3), (0, 0), (0, 5), (1, 2)]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(0, 5), (1, 5)]);
        assert_eq!(s.total(), 10);
        assert_eq!(s.on(1), 5);
        assert_eq!(s.on(2), 0);
        assert!(s.is_split());
        assert_eq!(s.primary(), Some(0));
    }

    #[test]
    fn scaling_keeps_proportions_and_adds_up_exactly() {
        let s = Shares::from_pairs([(0, 24 * GIB), (1, 12 * GIB)]);
        let m = s.scaled_to(30 * GIB + 1);
        assert_eq!(m.total(), 30 * GIB + 1);
        assert_eq!(m.on(0), 20 * GIB);
        assert_eq!(m.on(1), 10 * GIB + 1);
        assert_eq!(Shares::one(2, 7).scaled_to(9), Shares::one(2, 9));
        assert_eq!(Shares::default().scaled_to(9), Shares::default());
    }

    #[test]
    fn display_names_the_gpus() {
        assert_eq!(Shares::one(1, GIB).to_string(), "GPU 1");
        let split = Shares::from_pairs([(0, 2 * GIB), (1, GIB)]).to_string();
        assert!(split.starts_with("GPU 0 (") && split.contains(") + GPU 1 ("), "{split}");
    }
}
