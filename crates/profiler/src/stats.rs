//! Statistics of profiling results: success rates with Wilson 95% intervals, latency percentiles, speed means.

use switchyard_core::store::{ItemResult, ScoreRecord, now_ms};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `successes` out of `n` at 95%. `(0, 1)` when `n` is 0.
pub fn wilson(successes: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = f64::from(n);
    let p = f64::from(successes) / n_f;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = Z95 * ((p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt()) / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The `q`-th percentile (0..=1) of `values` by nearest rank; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.filter(|v| v.is_finite()).fold((0.0, 0u32), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / f64::from(count))
}

/// The score of one (model, category) from its item results. Items that failed to run count as incorrect.
pub fn score(model: &str, category: &str, digest: &str, suite_version: &str, results: &[ItemResult]) -> ScoreRecord {
    let n = results.len() as u32;
    let successes = results.iter().filter(|r| r.correct).count() as u32;
    let (ci_low, ci_high) = wilson(successes, n);
    let ttft: Vec<f64> = results.iter().filter_map(|r| r.ttft_ms).collect();
    let latency: Vec<f64> = results.iter().filter_map(|r| r.total_ms).collect();
    ScoreRecord {
        model: model.to_string(),
        category: category.to_string(),
        digest: digest.to_string(),
        suite_version: suite_version.to_string(),
        n,
        successes,
        mean: if n == 0 { 0.0 } else { f64::from(successes) / f64::from(n) },
        ci_low,
        ci_high,
        ttft_p50_ms: percentile(&ttft, 0.5),
        ttft_p95_ms: percentile(&ttft, 0.95),
        latency_p50_ms: percentile(&latency, 0.5),
        latency_p95_ms: percentile(&latency, 0.95),
        prefill_tps: mean(results.iter().filter_map(|r| r.prefill_tps)),
        decode_tps: mean(results.iter().filter_map(|r| r.decode_tps)),
        mean_output_tokens: mean(results.iter().filter_map(|r| r.output_tokens.map(|t| t as f64))),
        updated_at: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 8 of 10: the textbook interval is [0.490, 0.943].
        let (lo, hi) = wilson(8, 10);
        assert!((lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3, "{lo} {hi}");
        let (lo, hi) = wilson(0, 20);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.1611).abs() < 1e-3, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 0.95), Some(5.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
