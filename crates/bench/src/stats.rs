//! Percentiles of latency samples, and the spread of a figure over repeated runs.

use serde::Serialize;
use std::time::Duration;

/// The value at percentile `p` (0..=100) of `sorted`, by nearest rank; zero when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Samples behind the figures.
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises durations as milliseconds.
    pub fn of_durations(samples: &[Duration]) -> Self {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Self::of(ms)
    }

    /// Summarises plain values.
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let mean = if n == 0 { 0.0 } else { values.iter().sum::<f64>() / n as f64 };
        Self {
            n,
            mean,
            p50: percentile(&values, 50.0),
            p95: percentile(&values, 95.0),
            p99: percentile(&values, 99.0),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// Median, minimum and maximum of one figure over repeated runs.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            median: percentile(&sorted, 50.0),
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }

    /// `median (min..max)` with `decimals` digits, or just the median for a single run.
    pub fn show(&self, decimals: usize) -> String {
        if (self.max - self.min).abs() < f64::EPSILON {
            format!("{:.decimals$}", self.median)
        } else {
            format!("{:.decimals$} ({:.decimals$}..{:.decimals$})", self.median, self.min, self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let s = Summary::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.n, s.p50, s.max), (3, 2.0, 3.0));
    }

    #[test]
    fn spreads_show_the_range_only_when_there_is_one() {
        assert_eq!(Spread::of(&[2.0]).show(1), "2.0");
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]).show(1), "2.0 (1.0..3.0)");
    }
}
