//! What a GPU probe reports: per-GPU memory and, where the probe can tell, which processes use it.

use serde::{Deserialize, Serialize};

/// One GPU's memory at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuMemory {
    /// Index as the driver numbers it (NVML index, or the simulator's).
    pub index: u32,
    /// Product name (`NVIDIA GeForce RTX 4090`), or a description for derived views.
    pub name: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
}

/// Memory a process holds on a GPU, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub gpu_index: u32,
    pub pid: u32,
    /// Process name when the probe can read it (`ollama`, `python3`).
    pub name: Option<String>,
    pub used_bytes: u64,
}

/// Everything one probe poll saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuSnapshot {
    pub gpus: Vec<GpuMemory>,
    /// Per-process usage; empty when the probe cannot see processes.
    pub processes: Vec<GpuProcess>,
}

impl GpuSnapshot {
    /// Total memory over every GPU.
    pub fn total_bytes(&self) -> u64 {
        self.gpus.iter().map(|g| g.total_bytes).sum()
    }

    /// Used memory over every GPU.
    pub fn used_bytes(&self) -> u64 {
        self.gpus.iter().map(|g| g.used_bytes).sum()
    }
}

/// How Ollama spreads a model that fits on no single GPU across several: layers go round-robin to the GPUs that
/// still have room, which comes to an even split in which each GPU's share is capped by its room. `room` is
/// (GPU index, bytes that may be used there); the result is (GPU index, bytes) in GPU order, adding up to `need`,
/// or `None` when all the room together is less than `need`.
pub fn spread_evenly(room: &[(u32, u64)], need: u64) -> Option<Vec<(u32, u64)>> {
    if room.iter().fold(0u64, |sum, (_, r)| sum.saturating_add(*r)) < need {
        return None;
    }
    // Fill the smallest first: a GPU that cannot take an even part takes all it has, and the rest share the remainder.
    let mut order: Vec<(u32, u64)> = room.iter().copied().filter(|(_, r)| *r > 0).collect();
    order.sort_unstable_by_key(|&(gpu, r)| (r, gpu));
    let mut left = need;
    let mut shares = Vec::with_capacity(order.len());
    for (k, (gpu, r)) in order.iter().enumerate() {
        let parts = (order.len() - k) as u64;
        let take = left.div_ceil(parts).min(*r);
        if take > 0 {
            shares.push((*gpu, take));
            left -= take;
        }
    }
    shares.sort_unstable();
    Some(shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn an_even_split_where_every_gpu_has_room() {
        assert_eq!(spread_evenly(&[(0, 24 * GIB), (1, 24 * GIB)], 40 * GIB), Some(vec![(0, 20 * GIB), (1, 20 * GIB)]));
        let odd = spread_evenly(&[(0, 10), (1, 10), (2, 10)], 10).unwrap();
        assert_eq!(odd.iter().map(|(_, b)| b).sum::<u64>(), 10);
        assert!(odd.iter().all(|(_, b)| (3..=4).contains(b)), "{odd:?}");
    }

    #[test]
    fn a_gpu_with_little_room_gives_all_it_has_and_the_others_take_the_rest() {
        assert_eq!(spread_evenly(&[(0, 24 * GIB), (1, 6 * GIB)], 26 * GIB), Some(vec![(0, 20 * GIB), (1, 6 * GIB)]));
        assert_eq!(spread_evenly(&[(0, 0), (1, 9)], 9), Some(vec![(1, 9)]));
    }

    #[test]
    fn not_enough_room_together_is_none() {
        assert_eq!(spread_evenly(&[(0, 5), (1, 4)], 10), None);
        assert_eq!(spread_evenly(&[], 1), None);
        assert_eq!(spread_evenly(&[], 0), Some(vec![]));
    }
}
