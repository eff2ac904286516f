//! GPU probes: where the ledger learns how much memory each GPU has and uses.
//!
//! - [`NvmlProbe`]: NVIDIA's management library, loaded at run time through `nvml-wrapper`. Per GPU total/used/free
//!   and per-process usage. On a machine without the driver, [`NvmlProbe::new`] fails and the manager falls back.
//! - [`OllamaProbe`]: no measurement at all; GPUs of a configured size, used = what `/api/ps` says Ollama holds.
//! - [`SimProbe`]: the simulator's `/sim/gpu`.
//!
//! What each model holds always comes from Ollama's `/api/ps`, read by the manager beside the probe.

use crate::error::VramError;
use async_trait::async_trait;
use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::ProbeKind;
use switchyard_core::gpu::{GpuMemory, GpuProcess, GpuSnapshot};
use switchyard_core::ollama::OllamaClient;
use switchyard_core::ollama::types::PsModel;

/// A source of GPU memory readings.
#[async_trait]
pub trait GpuProbe: Send + Sync + std::fmt::Debug {
    /// `nvml`, `ollama` or `sim`, as shown in `/admin/vram`.
    fn name(&self) -> &'static str;

    /// Reads every GPU. `ps` is Ollama's current `/api/ps`, for probes that cannot measure.
    async fn read(&self, ps: &[PsModel]) -> Result<GpuSnapshot, VramError>;

    /// Whether `read` measures the GPUs' memory (other processes' included), rather than deriving it from Ollama's
    /// own models.
    fn measures(&self) -> bool {
        true
    }
}

/// NVML, through the driver's `libnvidia-ml.so` loaded at run time.
#[derive(Debug, Clone)]
pub struct NvmlProbe {
    nvml: Arc<Nvml>,
}

impl NvmlProbe {
    /// Loads NVML. Fails on machines without an NVIDIA driver.
    pub fn new() -> Result<Self, VramError> {
        let nvml = Nvml::init().map_err(|e| VramError::ProbeUnavailable { probe: "nvml", message: e.to_string() })?;
        let count =
            nvml.device_count().map_err(|e| VramError::ProbeUnavailable { probe: "nvml", message: e.to_string() })?;
        if count == 0 {
            return Err(VramError::ProbeUnavailable { probe: "nvml", message: "the driver reports no GPU".into() });
        }
        Ok(Self { nvml: Arc::new(nvml) })
    }

    fn read_blocking(nvml: &Nvml) -> Result<GpuSnapshot, VramError> {
        let err =
            |e: nvml_wrapper::error::NvmlError| VramError::ProbeUnavailable { probe: "nvml", message: e.to_string() };
        let mut snapshot = GpuSnapshot::default();
        for index in 0..nvml.device_count().map_err(err)? {
            let device = nvml.device_by_index(index).map_err(err)?;
            let memory = device.memory_info().map_err(err)?;
            snapshot.gpus.push(GpuMemory {
                index,
                name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                total_bytes: memory.total,
                used_bytes: memory.used,
                free_bytes: memory.free,
            });
            // Process lists are unavailable in some containers; memory figures still are.
            let mut processes = device.running_compute_processes().unwrap_or_default();
            processes.extend(device.running_graphics_processes().unwrap_or_default());
            for p in processes {
                let UsedGpuMemory::Used(used) = p.used_gpu_memory else { continue };
                snapshot.processes.push(GpuProcess {
                    gpu_index: index,
                    pid: p.pid,
                    name: process_name(p.pid),
                    used_bytes: used,
                });
            }
        }
        Ok(snapshot)
    }
}

fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_string())
}

#[async_trait]
impl GpuProbe for NvmlProbe {
    fn name(&self) -> &'static str {
        "nvml"
    }

    async fn read(&self, _ps: &[PsModel]) -> Result<GpuSnapshot, VramError> {
        let nvml = Arc::clone(&self.nvml);
        tokio::task::spawn_blocking(move || Self::read_blocking(&nvml))
            .await
            .map_err(|e| VramError::ProbeUnavailable { probe: "nvml", message: e.to_string() })?
    }
}

/// GPUs of a configured size; used memory is what Ollama reports holding.
#[derive(Debug, Clone)]
pub struct OllamaProbe {
    /// Bytes per GPU.
    pub total_per_gpu: u64,
    pub gpu_count: u32,
    /// The size is an assumption (`vram.total` is not set), not configured.
    pub assumed: bool,
}

#[async_trait]
impl GpuProbe for OllamaProbe {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn measures(&self) -> bool {
        false
    }

    async fn read(&self, ps: &[PsModel]) -> Result<GpuSnapshot, VramError> {
        Ok(ollama_view(self.total_per_gpu, self.gpu_count, self.assumed, ps))
    }
}

/// The configured GPUs with Ollama's holdings placed on them, fullest GPU first.
fn ollama_view(total_per_gpu: u64, gpu_count: u32, assumed: bool, ps: &[PsModel]) -> GpuSnapshot {
    let source = if assumed { "size assumed: vram.total is not set" } else { "size from vram.total" };
    let mut used = vec![0u64; gpu_count.max(1) as usize];
    for model in ps {
        if let Some(slot) = used.iter_mut().min_by_key(|u| **u) {
            *slot += model.size_vram;
        }
    }
    GpuSnapshot {
        gpus: used
            .iter()
            .enumerate()
            .map(|(i, u)| GpuMemory {
                index: i as u32,
                name: format!("GPU {i} ({source})"),
                total_bytes: total_per_gpu,
                used_bytes: (*u).min(total_per_gpu),
                free_bytes: total_per_gpu.saturating_sub(*u),
            })
            .collect(),
        processes: Vec::new(),
    }
}

/// The simulator's `/sim/gpu`.
#[derive(Debug, Clone)]
pub struct SimProbe {
    client: OllamaClient,
}

impl SimProbe {
    pub fn new(client: OllamaClient) -> Self {
        Self { client }
    }
}

#[derive(Deserialize)]
struct SimGpuAnswer {
    gpus: Vec<SimGpu>,
    #[serde(default)]
    processes: Vec<GpuProcess>,
}

#[derive(Deserialize)]
struct SimGpu {
    index: u32,
    name: String,
    total_bytes: u64,
    used_bytes: u64,
    free_bytes: u64,
}

#[async_trait]
impl GpuProbe for SimProbe {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn read(&self, _ps: &[PsModel]) -> Result<GpuSnapshot, VramError> {
        let answer: SimGpuAnswer =
            self.client.http().get_json(&self.client.url("/sim/gpu"), Duration::from_secs(5)).await?;
        Ok(GpuSnapshot {
            gpus: answer
                .gpus
                .into_iter()
                .map(|g| GpuMemory {
                    index: g.index,
                    name: g.name,
                    total_bytes: g.total_bytes,
                    used_bytes: g.used_bytes,
                    free_bytes: g.free_bytes,
                })
                .collect(),
            processes: answer.processes,
        })
    }
}

/// Default GPU size assumed when nothing measures it and `vram.total` is not set.
pub const ASSUMED_TOTAL: u64 = 24 * 1024 * 1024 * 1024;

/// Picks the probe `kind` asks for. `auto` tries NVML and falls back to Ollama's view with `total` (or 24 GiB with
/// a warning). Returns the probe and warnings for `/admin/vram`.
pub fn select(
    kind: ProbeKind,
    client: &OllamaClient,
    total: Option<u64>,
    gpu_count: u32,
) -> Result<(Arc<dyn GpuProbe>, Vec<String>), VramError> {
    let mut warnings = Vec::new();
    let ollama = |warnings: &mut Vec<String>| -> Arc<dyn GpuProbe> {
        let total_per_gpu = total.unwrap_or_else(|| {
            warnings.push(
                "GPU memory is not measured (no NVML) and vram.total is not set: assuming 24 GiB per GPU. Set \
                 vram.total (or use a gpu-* preset) to the real size."
                    .to_string(),
            );
            ASSUMED_TOTAL
        });
        Arc::new(OllamaProbe { total_per_gpu, gpu_count, assumed: total.is_none() })
    };
    let probe: Arc<dyn GpuProbe> = match kind {
        ProbeKind::Nvml => Arc::new(NvmlProbe::new()?),
        ProbeKind::Sim => Arc::new(SimProbe::new(client.clone())),
        ProbeKind::Ollama => ollama(&mut warnings),
        ProbeKind::Auto => match NvmlProbe::new() {
            Ok(nvml) => Arc::new(nvml),
            Err(e) => {
                tracing::info!(reason = %e, "NVML is not available; reading VRAM from Ollama's /api/ps with vram.total");
                warnings.push(format!("NVML unavailable ({e}); foreign GPU memory is not seen"));
                ollama(&mut warnings)
            }
        },
    };
    Ok((probe, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(name: &str, vram: u64) -> PsModel {
        PsModel {
            name: name.into(),
            model: name.into(),
            size: vram,
            size_vram: vram,
            digest: String::new(),
            details: Default::default(),
            expires_at: String::new(),
            context_length: None,
        }
    }

    #[test]
    fn nvml_is_unavailable_without_a_driver_and_says_why() {
        // This machine class has no NVIDIA driver; on one that has, the probe must read at least one GPU.
        match NvmlProbe::new() {
            Err(VramError::ProbeUnavailable { probe, message }) => {
                assert_eq!(probe, "nvml");
                assert!(!message.is_empty());
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(probe) => {
                let snapshot = NvmlProbe::read_blocking(&probe.nvml).unwrap();
                assert!(!snapshot.gpus.is_empty());
                assert!(snapshot.gpus.iter().all(|g| g.total_bytes > 0 && g.used_bytes <= g.total_bytes));
            }
        }
    }

    #[tokio::test]
    async fn auto_falls_back_to_ollamas_view_with_a_warning() {
        let client = OllamaClient::new(Default::default(), "http://127.0.0.1:9");
        let (probe, warnings) = select(ProbeKind::Auto, &client, None, 1).unwrap();
        if probe.name() == "ollama" {
            assert!(warnings.iter().any(|w| w.contains("assuming 24 GiB")), "{warnings:?}");
            let snapshot = probe.read(&[ps("a:latest", 5)]).await.unwrap();
            assert_eq!(snapshot.gpus[0].total_bytes, ASSUMED_TOTAL);
            assert_eq!(snapshot.gpus[0].used_bytes, 5);
        }
        let (probe, warnings) = select(ProbeKind::Ollama, &client, Some(8 << 30), 2).unwrap();
        assert!(warnings.is_empty());
        let snapshot = probe.read(&[ps("a:latest", 5), ps("b:latest", 7)]).await.unwrap();
        assert_eq!(snapshot.gpus.len(), 2);
        assert_eq!(snapshot.used_bytes(), 12);
    }

    #[test]
    fn explicit_nvml_without_a_driver_is_an_error() {
        let client = OllamaClient::new(Default::default(), "http://127.0.0.1:9");
        if NvmlProbe::new().is_err() {
            assert!(select(ProbeKind::Nvml, &client, None, 1).is_err());
        }
    }
}
