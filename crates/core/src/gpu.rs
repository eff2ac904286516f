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
