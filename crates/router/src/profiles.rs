//! What routing knows about each model's quality and speed: profiles from the store, and live averages of the
//! timings in responses.
//!
//! Both are read on every routed request without locks: the profile table is replaced whole through an `ArcSwap`
//! after a profiling job or a catalog change, and live averages are atomics updated by the forwarder.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_core::catalog::Catalog;
use switchyard_core::ollama::Timings;
use switchyard_core::store::{ModelRecord, ScoreRecord};
use switchyard_core::{Category, ModelName};

/// Profiled quality of one (model, category).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoryQuality {
    pub n: u32,
    pub successes: u32,
    /// Wilson 95% interval.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Mean answer length in this category, in tokens.
    pub mean_output_tokens: Option<f64>,
}

/// Everything profiled about one model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelProfile {
    /// Per category, indexed by `Category::index`.
    pub categories: [Option<CategoryQuality>; 7],
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    /// Median time to first token across items.
    pub ttft_ms: Option<f64>,
    pub load_seconds: Option<f64>,
    pub vram_bytes: Option<u64>,
    /// The profile was measured on another digest than the one pulled now.
    pub stale: bool,
}

impl ModelProfile {
    /// Quality counts for `category`; `General` pools every profiled category.
    pub fn counts(&self, category: Category) -> (u32, u32) {
        if category == Category::General {
            return self.categories.iter().flatten().fold((0, 0), |(n, s), q| (n + q.n, s + q.successes));
        }
        self.categories[category.index()].map_or((0, 0), |q| (q.n, q.successes))
    }

    /// True when any category was profiled.
    pub fn profiled(&self) -> bool {
        self.categories.iter().any(Option::is_some)
    }
}

/// A map keyed by model name, read for every model on every routing decision: hashed with foldhash, several
/// times faster than the standard library's SipHash on short keys (the keys are names of pulled models).
pub type ModelMap<V> = HashMap<ModelName, V, foldhash::fast::RandomState>;

/// Every model's profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileTable {
    pub models: ModelMap<ModelProfile>,
}

impl ProfileTable {
    /// Builds the table from the store's scores and model measurements, marking profiles stale whose digest differs
    /// from the catalog's.
    pub fn build(scores: &[ScoreRecord], models: &[ModelRecord], catalog: &Catalog) -> Self {
        let mut table: ModelMap<ModelProfile> = ModelMap::default();
        let mut speed: HashMap<ModelName, (f64, f64, f64, Vec<f64>)> = HashMap::new();
        for s in scores {
            let (Ok(name), Ok(category)) = (ModelName::parse(&s.model), s.category.parse::<Category>()) else {
                continue;
            };
            let profile = table.entry(name.clone()).or_default();
            profile.categories[category.index()] = Some(CategoryQuality {
                n: s.n,
                successes: s.successes,
                ci_low: s.ci_low,
                ci_high: s.ci_high,
                mean_output_tokens: s.mean_output_tokens,
            });
            if catalog.get(&name).is_some_and(|spec| spec.digest != s.digest) {
                profile.stale = true;
            }
            let acc = speed.entry(name).or_insert((0.0, 0.0, 0.0, Vec::new()));
            let w = f64::from(s.n.max(1));
            if let (Some(p), Some(d)) = (s.prefill_tps, s.decode_tps) {
                acc.0 += p * w;
                acc.1 += d * w;
                acc.2 += w;
            }
            if let Some(t) = s.ttft_p50_ms {
                acc.3.push(t);
            }
        }
        for (name, (p, d, w, mut ttfts)) in speed {
            if let Some(profile) = table.get_mut(&name) {
                if w > 0.0 {
                    profile.prefill_tps = Some(p / w);
                    profile.decode_tps = Some(d / w);
                }
                ttfts.sort_by(f64::total_cmp);
                profile.ttft_ms = ttfts.get(ttfts.len() / 2).copied();
            }
        }
        for m in models {
            let Ok(name) = ModelName::parse(&m.name) else { continue };
            if m.load_seconds.is_some() || m.vram_bytes.is_some() {
                let profile = table.entry(name).or_default();
                profile.load_seconds = m.load_seconds;
                profile.vram_bytes = m.vram_bytes;
            }
        }
        Self { models: table }
    }

    pub fn get(&self, name: &ModelName) -> Option<&ModelProfile> {
        self.models.get(name)
    }
}

/// A float in an atomic; zero means "no value yet".
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.0.load(Ordering::Relaxed));
        (v > 0.0).then_some(v)
    }

    fn blend(&self, sample: f64, alpha: f64) {
        if !(sample.is_finite() && sample > 0.0) {
            return;
        }
        let next = match self.get() {
            Some(old) => old + alpha * (sample - old),
            None => sample,
        };
        self.0.store(next.to_bits(), Ordering::Relaxed);
    }
}

/// Live exponentially weighted averages of one model's speed, from responses' own timings.
#[derive(Debug, Default)]
pub struct LiveModel {
    prefill_tps: AtomicF64,
    decode_tps: AtomicF64,
    /// Cold-load seconds seen in responses that loaded the model.
    load_seconds: AtomicF64,
    samples: AtomicU64,
}

impl LiveModel {
    pub fn prefill_tps(&self) -> Option<f64> {
        self.prefill_tps.get()
    }

    pub fn decode_tps(&self) -> Option<f64> {
        self.decode_tps.get()
    }

    pub fn load_seconds(&self) -> Option<f64> {
        self.load_seconds.get()
    }

    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

/// Live averages of every model.
#[derive(Debug, Default)]
pub struct LiveStats {
    models: ArcSwap<ModelMap<Arc<LiveModel>>>,
    /// Serialises the rare insert of a new model.
    insert: Mutex<()>,
    /// Answer length per category in real traffic (tokens), indexed by `Category::index`. Profiling items ask for
    /// terse answers, so only live traffic says how long answers really are.
    output_tokens: [AtomicF64; 7],
}

/// A response's load time above this is a cold load (warm ones report a few milliseconds).
const COLD_LOAD_NS: u64 = 300_000_000;

impl LiveStats {
    /// Live averages of `model`, if any response was seen.
    pub fn get(&self, model: &ModelName) -> Option<Arc<LiveModel>> {
        self.models.load().get(model).cloned()
    }

    /// Every model's live averages at once (the scorer reads many models and takes the snapshot once).
    pub fn snapshot(&self) -> Arc<ModelMap<Arc<LiveModel>>> {
        self.models.load_full()
    }

    /// Average answer length in `category` so far, in tokens.
    pub fn output_tokens(&self, category: Category) -> Option<f64> {
        self.output_tokens[category.index()].get()
    }

    /// Folds one answer's length into `category`'s average.
    pub fn observe_output(&self, category: Category, tokens: u64, alpha: f64) {
        if tokens > 0 {
            self.output_tokens[category.index()].blend(tokens as f64, alpha);
        }
    }

    /// Folds one response's timings into `model`'s averages.
    pub fn observe(&self, model: &ModelName, t: &Timings, alpha: f64) {
        let live = match self.get(model) {
            Some(live) => live,
            None => {
                let Ok(_guard) = self.insert.lock() else { return };
                let current = self.models.load();
                match current.get(model) {
                    Some(live) => Arc::clone(live),
                    None => {
                        let live = Arc::new(LiveModel::default());
                        let mut next = ModelMap::clone(&current);
                        next.insert(model.clone(), Arc::clone(&live));
                        self.models.store(Arc::new(next));
                        live
                    }
                }
            }
        };
        if t.prompt_eval_count >= 8 && t.prompt_eval_ns > 0 {
            live.prefill_tps.blend(t.prompt_eval_count as f64 * 1e9 / t.prompt_eval_ns as f64, alpha);
        }
        if t.eval_count >= 2 && t.eval_ns > 0 {
            live.decode_tps.blend(t.eval_count as f64 * 1e9 / t.eval_ns as f64, alpha);
        }
        if t.load_ns > COLD_LOAD_NS {
            live.load_seconds.blend(t.load_ns as f64 / 1e9, alpha);
        }
        live.samples.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_averages_move_toward_new_samples() {
        let stats = LiveStats::default();
        let m = ModelName::parse("m").unwrap();
        let t = |eval_count, eval_ns| Timings { eval_count, eval_ns, total_ns: 1, ..Default::default() };
        stats.observe(&m, &t(100, 1_000_000_000), 0.5);
        assert_eq!(stats.get(&m).unwrap().decode_tps(), Some(100.0));
        stats.observe(&m, &t(200, 1_000_000_000), 0.5);
        assert_eq!(stats.get(&m).unwrap().decode_tps(), Some(150.0));
        assert_eq!(stats.get(&m).unwrap().samples(), 2);
        assert!(stats.get(&m).unwrap().load_seconds().is_none());
    }

    #[test]
    fn general_pools_every_category() {
        let mut p = ModelProfile::default();
        let q = |n, s| Some(CategoryQuality { n, successes: s, ci_low: 0.0, ci_high: 1.0, mean_output_tokens: None });
        p.categories[Category::Math.index()] = q(10, 8);
        p.categories[Category::Coding.index()] = q(10, 4);
        assert_eq!(p.counts(Category::General), (20, 12));
        assert_eq!(p.counts(Category::Math), (10, 8));
        assert_eq!(p.counts(Category::Creative), (0, 0));
    }
}
