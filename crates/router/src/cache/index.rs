//! The semantic cache's search: per group, every stored question's unit vector in one contiguous block, scanned in
//! full (the dot product of unit vectors is their cosine similarity).
//!
//! Groups are shared as `Arc`s: a lookup clones the `Arc` under the cache's lock and scans outside it, so a long scan
//! never holds up other requests; an insert or removal copies the group only while a scan still holds the old one.
//! The scan's cost at 10 000 and 100 000 entries, and why no approximate index is used, are in `docs/benchmarks.md`
//! (section 7).

use super::{Key, dot};

/// The stored questions of one group.
#[derive(Debug, Clone, Default)]
pub struct Group {
    dims: usize,
    keys: Vec<Key>,
    /// `dims` components per member, in `keys` order.
    vectors: Vec<f32>,
}

impl Group {
    /// Members.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a member; false (nothing added) when `vector`'s length differs from the group's.
    pub fn push(&mut self, key: Key, vector: &[f32]) -> bool {
        if self.keys.is_empty() {
            self.dims = vector.len();
        }
        if vector.len() != self.dims || vector.is_empty() {
            return false;
        }
        self.keys.push(key);
        self.vectors.extend_from_slice(vector);
        true
    }

    /// Removes the member `key`, if present (the last member takes its place).
    pub fn remove(&mut self, key: &Key) {
        let Some(i) = self.keys.iter().position(|k| k == key) else { return };
        let last = self.keys.len() - 1;
        self.keys.swap_remove(i);
        if i != last {
            let (head, tail) = self.vectors.split_at_mut(last * self.dims);
            head[i * self.dims..(i + 1) * self.dims].copy_from_slice(&tail[..self.dims]);
        }
        self.vectors.truncate(last * self.dims);
    }

    /// The member most similar to the unit vector `query`, with its cosine similarity.
    pub fn nearest(&self, query: &[f32]) -> Option<(Key, f32)> {
        if query.len() != self.dims || self.keys.is_empty() {
            return None;
        }
        let mut best: Option<(usize, f32)> = None;
        for (i, member) in self.vectors.chunks_exact(self.dims).enumerate() {
            let s = dot(member, query);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        best.map(|(i, s)| (self.keys[i], s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dims)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= n);
        v
    }

    fn exact(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn the_nearest_member_is_found_with_its_similarity() {
        let mut g = Group::default();
        let vectors: Vec<Vec<f32>> = (0..300).map(|i| unit(i + 1, 384)).collect();
        for (i, v) in vectors.iter().enumerate() {
            assert!(g.push([i as u8; 32], v));
        }
        // A query near member 17: mostly it, a little of another.
        let mut q: Vec<f32> = vectors[17].iter().zip(&vectors[3]).map(|(a, b)| a * 0.95 + b * 0.05).collect();
        let n = q.iter().map(|a| a * a).sum::<f32>().sqrt();
        q.iter_mut().for_each(|a| *a /= n);
        let (key, s) = g.nearest(&q).unwrap();
        assert_eq!(key, [17; 32]);
        assert!((s - exact(&q, &vectors[17])).abs() < 1e-5, "{s} vs {}", exact(&q, &vectors[17]));
        assert!(!g.push([0; 32], &[1.0, 0.0]), "another length is refused");
        assert!(g.nearest(&[1.0, 0.0]).is_none());
    }

    #[test]
    fn removal_keeps_the_other_members_intact() {
        let mut g = Group::default();
        for i in 0..5u8 {
            g.push([i; 32], &unit(u64::from(i) + 1, 64));
        }
        g.remove(&[1; 32]);
        g.remove(&[9; 32]);
        assert_eq!(g.len(), 4);
        for i in [0u8, 2, 3, 4] {
            let (key, s) = g.nearest(&unit(u64::from(i) + 1, 64)).unwrap();
            assert_eq!(key, [i; 32]);
            assert!(s > 0.99, "{s}");
        }
        for i in [0u8, 2, 3, 4] {
            g.remove(&[i; 32]);
        }
        assert!(g.is_empty() && g.nearest(&unit(1, 64)).is_none());
    }
}
