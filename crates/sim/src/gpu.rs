//! Where a model goes on the simulated GPUs, decided the way Ollama decides it.
//!
//! Ollama sizes a load against the free memory it *believes* each GPU has: the total minus what its own loaded
//! models hold. Memory other processes use is not in that belief, which is why back-to-back loads can run a real
//! GPU out of memory; [`overflows`] checks a placement against the real usage so the simulator can report that.
//! These are plain functions over byte counts, tested directly.

/// Share of the believed-free memory a model must fit in when other models are loaded (Ollama keeps headroom).
const FIT_FRACTION: f64 = 0.8;

/// Memory left free on each GPU when a model is partly offloaded (CUDA context and scratch space).
const OFFLOAD_RESERVE: u64 = 512 * 1024 * 1024;

/// Where one loaded model lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Bytes on each GPU that holds part of the model, as (GPU index, bytes); empty when it runs on the CPU alone.
    pub shares: Vec<(usize, u64)>,
    /// Bytes the instance uses in all (GPU and CPU): what `/api/ps` reports as `size`.
    pub size: u64,
}

impl Placement {
    /// Bytes in GPU memory: `/api/ps`'s `size_vram`.
    pub(crate) fn size_vram(&self) -> u64 {
        self.shares.iter().map(|(_, b)| b).sum()
    }

    /// True when part of the model runs on the CPU (decode is then about ten times slower).
    pub(crate) fn offloaded(&self) -> bool {
        self.size_vram() < self.size
    }

    /// Bytes on GPU `gpu`.
    pub(crate) fn on(&self, gpu: usize) -> u64 {
        self.shares.iter().filter(|(g, _)| *g == gpu).map(|(_, b)| b).sum()
    }

    /// The GPU holding the largest share (0 when none holds any).
    pub(crate) fn primary_gpu(&self) -> usize {
        self.shares.iter().max_by_key(|(g, b)| (*b, std::cmp::Reverse(*g))).map_or(0, |(g, _)| *g)
    }
}

/// Plans a load of `need` bytes given each GPU's total and the bytes Ollama's own models hold on it.
///
/// With other models loaded (`alone == false`) the model must fit in 80% of the believed-free memory; `None` then
/// means "evict one and retry". A model that fits on one GPU goes to the one with the most free memory; it is split
/// across GPUs only when it fits on none alone, its layers dealt round-robin to the GPUs with room (an even split,
/// each share capped by its GPU's room: `spread_evenly`). Alone and too big for every GPU together, it is partly offloaded:
/// whole layers go to the GPUs (out of `layers + 1` equal parts, the output layer staying on the CPU).
pub(crate) fn plan(totals: &[u64], used: &[u64], need: u64, layers: u64, alone: bool) -> Option<Placement> {
    let free: Vec<u64> = totals.iter().zip(used).map(|(t, u)| t.saturating_sub(*u)).collect();
    let usable: Vec<u64> =
        free.iter().map(|f| if alone { *f } else { (*f as f64 * FIT_FRACTION).floor() as u64 }).collect();

    let single = (0..usable.len()).filter(|&g| usable[g] >= need).max_by_key(|&g| (usable[g], std::cmp::Reverse(g)));
    if let Some(gpu) = single {
        return Some(Placement { shares: vec![(gpu, need)], size: need });
    }

    if usable.len() > 1 {
        let room: Vec<(u32, u64)> = usable.iter().enumerate().map(|(g, u)| (g as u32, *u)).collect();
        if let Some(shares) = switchyard_core::gpu::spread_evenly(&room, need) {
            let shares = shares.into_iter().map(|(g, b)| (g as usize, b)).collect();
            return Some(Placement { shares, size: need });
        }
    }

    if !alone {
        return None;
    }
    let layer_bytes = need.div_ceil(layers + 1).max(1);
    let mut layers_left = layers;
    let mut shares = Vec::new();
    let mut order: Vec<usize> = (0..free.len()).collect();
    order.sort_by_key(|&g| (std::cmp::Reverse(free[g]), g));
    for g in order {
        let fit = (free[g].saturating_sub(OFFLOAD_RESERVE) / layer_bytes).min(layers_left);
        if fit > 0 {
            shares.push((g, fit * layer_bytes));
            layers_left -= fit;
        }
    }
    shares.sort_unstable();
    Some(Placement { shares, size: need })
}

/// Plans a load with `gpu_layers` of the model's `layers` on the GPUs (an explicit `num_gpu`): that part goes where
/// a model of its size would go (whole on the GPU with the most room, else split across them), the rest runs on the
/// CPU. Ollama honours an explicit layer count even when it does not fit, so alone it is placed anyway, on the GPU
/// with the most free memory (where it may run the GPU out of memory); beside other models `None` means "evict one
/// and retry" as for any load.
pub(crate) fn plan_layers(
    totals: &[u64],
    used: &[u64],
    need: u64,
    layers: u64,
    gpu_layers: u64,
    alone: bool,
) -> Option<Placement> {
    let layer_bytes = need.div_ceil(layers + 1).max(1);
    let gpu_part = gpu_layers.min(layers) * layer_bytes;
    if gpu_part == 0 {
        return Some(Placement { shares: Vec::new(), size: need });
    }
    match plan(totals, used, gpu_part, layers, alone) {
        Some(p) if p.size_vram() == gpu_part => Some(Placement { shares: p.shares, size: need }),
        _ if !alone => None,
        _ => {
            let free = |g: usize| totals[g].saturating_sub(used.get(g).copied().unwrap_or(0));
            let gpu = (0..totals.len()).max_by_key(|&g| (free(g), std::cmp::Reverse(g)))?;
            Some(Placement { shares: vec![(gpu, gpu_part)], size: need })
        }
    }
}

/// True when `placement` would exceed some GPU's real memory: Ollama's models plus foreign usage plus the new share.
pub(crate) fn overflows(totals: &[u64], used: &[u64], foreign: &[u64], placement: &Placement) -> bool {
    totals.iter().enumerate().any(|(g, total)| {
        let real = used.get(g).copied().unwrap_or(0).saturating_add(foreign.get(g).copied().unwrap_or(0));
        real.saturating_add(placement.on(g)) > *total
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn explicit_gpu_layers_put_that_many_layers_on_the_gpu_and_the_rest_on_the_cpu() {
        // 80 layers + output = 81 parts of 1 GiB; 16 layers on the GPU.
        let p = plan_layers(&[24 * GIB], &[0], 81 * GIB, 80, 16, true).unwrap();
        assert_eq!(p.shares, vec![(0, 16 * GIB)]);
        assert_eq!(p.size, 81 * GIB);
        assert!(p.offloaded());
        // Beside another model the 80% rule applies to the GPU part.
        assert!(plan_layers(&[24 * GIB], &[4 * GIB], 81 * GIB, 80, 16, false).is_some());
        assert!(plan_layers(&[24 * GIB], &[6 * GIB], 81 * GIB, 80, 16, false).is_none());
        // Alone, more layers than fit are placed anyway: the GPU may then run out of memory.
        let p = plan_layers(&[24 * GIB], &[0], 81 * GIB, 80, 30, true).unwrap();
        assert_eq!(p.size_vram(), 30 * GIB);
        assert!(overflows(&[24 * GIB], &[0], &[0], &p));
        // No layers: all on the CPU.
        assert_eq!(plan_layers(&[24 * GIB], &[0], 81 * GIB, 80, 0, true).unwrap().size_vram(), 0);
    }

    #[test]
    fn alone_a_fitting_model_takes_one_gpu() {
        let p = plan(&[24 * GIB], &[0], 10 * GIB, 32, true).unwrap();
        assert_eq!(p.shares, vec![(0, 10 * GIB)]);
        assert!(!p.offloaded());
    }

    #[test]
    fn with_others_loaded_it_must_fit_in_eighty_percent_of_free() {
        // 24 GiB, 10 GiB used: 14 GiB free, 11.2 GiB usable.
        assert!(plan(&[24 * GIB], &[10 * GIB], 11 * GIB, 32, false).is_some());
        assert!(plan(&[24 * GIB], &[10 * GIB], 12 * GIB, 32, false).is_none());
    }

    #[test]
    fn alone_and_too_big_it_is_partly_offloaded_by_layers() {
        let need = 54 * GIB;
        let p = plan(&[24 * GIB], &[0], need, 80, true).unwrap();
        assert!(p.offloaded());
        assert!(p.size_vram() <= 24 * GIB - OFFLOAD_RESERVE && p.size_vram() > 20 * GIB);
        assert_eq!(p.size_vram() % need.div_ceil(81), 0);
    }

    #[test]
    fn most_free_gpu_first_and_split_only_when_no_single_gpu_fits() {
        let p = plan(&[24 * GIB, 24 * GIB], &[8 * GIB, 2 * GIB], 10 * GIB, 32, false).unwrap();
        assert_eq!(p.shares, vec![(1, 10 * GIB)]);
        assert_eq!(p.primary_gpu(), 1);

        let p = plan(&[24 * GIB, 24 * GIB], &[0, 0], 40 * GIB, 80, true).unwrap();
        assert_eq!(p.shares, vec![(0, 20 * GIB), (1, 20 * GIB)]);
        assert!(!p.offloaded());

        // Beside other models each GPU offers 80% of its free memory; the fuller GPU gives all of that.
        let p = plan(&[24 * GIB, 24 * GIB], &[4 * GIB, 14 * GIB], 24 * GIB, 80, false).unwrap();
        assert_eq!(p.shares, vec![(0, 16 * GIB), (1, 8 * GIB)]);
        assert!(plan(&[24 * GIB, 24 * GIB], &[4 * GIB, 14 * GIB], 25 * GIB, 80, false).is_none());
    }

    #[test]
    fn foreign_usage_makes_a_believed_fit_overflow() {
        let p = plan(&[24 * GIB], &[10 * GIB], 10 * GIB, 32, false).unwrap();
        assert!(!overflows(&[24 * GIB], &[10 * GIB], &[0], &p));
        assert!(overflows(&[24 * GIB], &[10 * GIB], &[5 * GIB], &p));
    }
}
