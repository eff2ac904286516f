//! The profiling summary as a terminal table: models x categories (quality with its interval), tokens/s, load
//! time, VRAM and how each model's profiling ended.

use crate::runner::{ModelOutcome, Summary};
use switchyard_core::Category;

/// The summary table: models x categories (quality with its interval), tokens/s, load time, VRAM.
pub fn render_table(summary: &Summary, categories: &[Category]) -> String {
    let mut out = String::new();
    let mut header = format!("{:<28}", "model");
    for c in categories {
        header.push_str(&format!(" {:>19}", c.as_str()));
    }
    header.push_str(&format!(" {:>8} {:>7} {:>9}  {}", "tok/s", "load s", "VRAM", "status"));
    out.push_str(&header);
    out.push('\n');
    for m in &summary.models {
        let mut line = format!("{:<28}", truncate(&m.model, 28));
        for c in categories {
            let cell = m
                .scores
                .iter()
                .find(|s| s.category == c.as_str())
                .map_or_else(|| "-".to_string(), |s| format!("{:.2} [{:.2},{:.2}]", s.mean, s.ci_low, s.ci_high));
            line.push_str(&format!(" {cell:>19}"));
        }
        let decode: Vec<f64> = m.scores.iter().filter_map(|s| s.decode_tps).collect();
        let tps = if decode.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", decode.iter().sum::<f64>() / decode.len() as f64)
        };
        let load = m.load_seconds.map_or_else(|| "-".to_string(), |s| format!("{s:.1}"));
        let mut vram = m.vram_bytes.map_or_else(|| "-".to_string(), |b| switchyard_core::size::Bytes(b).to_string());
        if let (Some(all), Some(gpu)) = (m.vram_bytes, m.gpu_bytes)
            && all > gpu + gpu / 20
        {
            // Part of it ran from CPU memory: say how much was on the GPU.
            vram = format!("{vram} ({} on GPU)", switchyard_core::size::Bytes(gpu));
        }
        let status = match &m.outcome {
            ModelOutcome::Profiled => "profiled".to_string(),
            ModelOutcome::Skipped(r) => format!("skipped: {r}"),
            ModelOutcome::Failed(e) => format!("failed: {e}"),
        };
        line.push_str(&format!(" {tps:>8} {load:>7} {vram:>9}  {status}"));
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{ModelOutcome, ModelSummary};

    fn model(name: &str, vram: Option<u64>, gpu: Option<u64>) -> ModelSummary {
        ModelSummary {
            model: name.into(),
            outcome: ModelOutcome::Profiled,
            load_seconds: Some(24.0),
            vram_bytes: vram,
            gpu_bytes: gpu,
            scores: Vec::new(),
        }
    }

    #[test]
    fn vram_is_the_memory_needed_with_the_gpu_share_when_part_runs_on_the_cpu() {
        const GIB: u64 = 1 << 30;
        let summary = Summary {
            models: vec![
                model("big:70b", Some(42 * GIB), Some(22 * GIB)),
                model("small:3b", Some(3 * GIB), Some(3 * GIB)),
            ],
            ..Summary::default()
        };
        let table = render_table(&summary, &[Category::Math]);
        let big = table.lines().find(|l| l.starts_with("big:70b")).unwrap();
        assert!(big.contains("42.0 GiB (22.0 GiB on GPU)"), "{table}");
        let small = table.lines().find(|l| l.starts_with("small:3b")).unwrap();
        assert!(small.contains("3.0 GiB") && !small.contains("on GPU"), "{table}");
    }
}
