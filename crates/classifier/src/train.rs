//! Training and evaluation of the learned classifier (`switchyard-train`).
//!
//! The corpus is JSON lines of `{"text", "category", "source", "split"}` written by
//! `scripts/classifier/fetch_corpus.py`; `split` is `train`, `validation` or `test`, decided per source, so that
//! validation and test figures are on sources never seen in training. The run:
//! 1. trains on the training sources and evaluates on the validation sources: the figures used to choose settings
//!    and data, and the softmax temperature that minimises the log loss there;
//! 2. trains on training and validation sources and evaluates on the test sources (accuracy per category with
//!    Wilson intervals, confusion matrix, reliability table), next to the rule classifier on the same prompts;
//! 3. trains the shipped model on all sources with the same settings and that temperature.
//!
//! Everything is single-threaded and seeded, so the same corpus gives the same model bytes.

use crate::error::ClassifierError;
use crate::features::{self, Features};
use crate::model::{CLASSES, LinearModel, ROW, softmax};
use crate::{Classifier, ClassifyInput, Role, RuleClassifier, Turn};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use switchyard_core::Category;

/// Which part of the corpus an example belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to train every model.
    Train,
    /// Held out of the first model to choose settings and fit the temperature; trains the later ones.
    Validation,
    /// Held out by source: only evaluated, until the shipped model is trained on everything.
    Test,
}

/// One labelled prompt.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    /// The prompt as a user would send it.
    pub text: String,
    /// Its category.
    pub category: Category,
    /// The public source it came from.
    pub source: String,
    /// Train or test.
    pub split: Split,
    /// For a derived example (a prompt of another source rewritten, e.g. with material attached), that source: the
    /// cross-validation holds it out together with that source, so that no fold is predicted by a model trained on
    /// its own prompts in another form.
    #[serde(default)]
    pub derived_from: Option<String>,
}

impl Example {
    /// The source whose fold of the cross-validation this example belongs to.
    fn fold_source(&self) -> &str {
        self.derived_from.as_deref().unwrap_or(&self.source)
    }
}

/// Reads a JSON-lines corpus; duplicate texts keep their first line.
pub fn read_corpus(jsonl: &str) -> Result<Vec<Example>, ClassifierError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ex: Example =
            serde_json::from_str(line).map_err(|e| ClassifierError::Corpus { line: i + 1, message: e.to_string() })?;
        if seen.insert(ex.text.clone()) {
            out.push(ex);
        }
    }
    Ok(out)
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Feature buckets are `2^bits`.
    pub bits: u32,
    /// Passes over the training data.
    pub epochs: u32,
    /// AdaGrad's learning rate.
    pub learning_rate: f32,
    /// L2 penalty per update on the rows an example touches.
    pub l2: f32,
    /// At most this many examples of one training or validation source are used (a deterministic sample), so that
    /// no source dominates; test sources are evaluated whole.
    pub max_per_source: usize,
    /// Seed of the shuffles and samples.
    pub seed: u64,
    /// Within a category, an example weighs `1 / n^source_power`, `n` its source's examples of that category: 0
    /// weighs every example the same (a large source dominates), 1 every source the same.
    pub source_power: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { bits: 19, epochs: 6, learning_rate: 0.3, l2: 1e-6, max_per_source: 3000, seed: 7, source_power: 0.5 }
    }
}

/// A featurised example.
struct Row {
    ids: Vec<u32>,
    structure: Vec<u32>,
    label: usize,
    /// The example's weight: its category's and its source's.
    weight: f32,
}

/// What a run produces.
#[derive(Debug)]
pub struct Outcome {
    /// The model trained on every source, to ship.
    pub model: LinearModel<'static>,
    /// The evaluation report (markdown).
    pub report: String,
    /// The held-out figures of the learned model.
    pub learned: Evaluation,
    /// The rule classifier's figures on the same held-out prompts.
    pub rules: Evaluation,
    /// Figures on the validation sources of a model trained without them (for choosing settings without looking
    /// at the test sources); `None` without validation sources.
    pub validation: Option<Evaluation>,
}

/// Runs the whole pipeline on `examples`.
pub fn run(examples: &[Example], settings: &Settings) -> Result<Outcome, ClassifierError> {
    let sampled = sample_per_source(examples, settings);
    // A training prompt that is a test prompt up to case and punctuation ("who plays donna noble?" in two
    // question sets) would leak the answer into the held-out figures: it is left out of every model but the last.
    let test_texts: HashSet<String> =
        sampled.iter().filter(|e| e.split == Split::Test).map(|e| loose_text(&e.text)).collect();
    let leaked = |e: &Example| e.split != Split::Test && test_texts.contains(&loose_text(&e.text));
    let overlap = sampled.iter().filter(|e| leaked(e)).count();
    let pool: Vec<&Example> = sampled.iter().copied().filter(|e| !leaked(e)).collect();
    let of = |split: Split| -> Vec<&Example> { pool.iter().copied().filter(|e| e.split == split).collect() };
    let (train, validation_set, test) = (of(Split::Train), of(Split::Validation), of(Split::Test));
    for c in Category::ALL {
        if !train.iter().any(|e| e.category == c) {
            return Err(ClassifierError::Unusable(format!("no training example of {c}")));
        }
    }
    if test.is_empty() {
        return Err(ClassifierError::Unusable("no test source".into()));
    }

    // 1. Validation: settings are chosen and the temperature fitted here, never on the test sources.
    let (temperature, validation) = if validation_set.is_empty() {
        (1.0, None)
    } else {
        let classifier = Classifier::with_model(fit_model(&train, settings));
        let scored: Vec<([f32; CLASSES], usize)> =
            validation_set.iter().map(|e| (raw_logits(&classifier, &e.text), e.category.index())).collect();
        let temperature = best_temperature(&scored);
        let calibrated = Classifier::with_model(fit_model(&train, settings).with_temperature(temperature));
        let mut eval = evaluate(&validation_set, |text| calibrated.probabilities(text));
        for e in &validation_set {
            let p = calibrated.probabilities(&e.text);
            let predicted = Category::ALL[crate::model::argmax(&p)];
            if predicted != e.category {
                let text: String = e.text.chars().take(300).map(|c| if c == '\n' { ' ' } else { c }).collect();
                eval.errors.push(format!(
                    "{}\t{}\t{}\t{:.2}\t{}",
                    e.source,
                    e.category,
                    predicted,
                    p[predicted.index()],
                    text
                ));
            }
        }
        (temperature, Some(eval))
    };
    let train: Vec<&Example> = train.into_iter().chain(validation_set).collect();

    // 2. Held-out evaluation.
    let model = fit_model(&train, settings).with_temperature(temperature);
    let classifier = Classifier::with_model(model);
    let learned = evaluate(&test, |text| classifier.probabilities(text));
    let rules_classifier = RuleClassifier::new();
    let rules = evaluate(&test, |text| {
        let turns = [Turn { role: Role::User, text, images: 0 }];
        rules_classifier.classify(&ClassifyInput::text(&turns)).scores
    });

    // 3. The shipped model, on everything.
    let all: Vec<&Example> = sampled.to_vec();
    let model = fit_model(&all, settings).with_temperature(temperature);

    let mut report = render_report(&pool, temperature, settings, &learned, &rules, validation.as_ref());
    report.insert_str(
        0,
        &format!("{overlap} training or validation prompts equal to a test prompt up to case and punctuation were left out.\n\n"),
    );
    Ok(Outcome { model, report, learned, rules, validation })
}

/// Cross-validation by source over the training and validation sources (never the test sources): the sources are
/// dealt into `folds` groups, round-robin within each source's main category in a seeded order, and each group is
/// predicted by a model trained on the others. It asks what the held-out split asks (how well does the model read a
/// source it has never seen?) over many more sources, so data and settings can be chosen on it.
pub struct CrossValidation {
    /// Accuracy of each source's prompts of each category when its group was held out: (source, category, right,
    /// prompts).
    pub per_source: Vec<(String, Category, u32, u32)>,
    /// The pooled confusion matrix (its reliability bins and log loss are left empty).
    pub pooled: Evaluation,
}

impl CrossValidation {
    /// Per category: the mean over its sources of their accuracy (each source weighs the same), and how many. A
    /// source counts in a category where it has at least [`MIN_SOURCE_PROMPTS`] prompts of it, so a handful of
    /// prompts a mixed source gives a category does not weigh like a whole benchmark.
    pub fn source_mean(&self, category: Category) -> Option<(f64, usize)> {
        let accuracies: Vec<f64> = self
            .per_source
            .iter()
            .filter(|(_, c, _, n)| *c == category && *n >= MIN_SOURCE_PROMPTS)
            .map(|(_, _, k, n)| f64::from(*k) / f64::from(*n))
            .collect();
        (!accuracies.is_empty()).then(|| (accuracies.iter().sum::<f64>() / accuracies.len() as f64, accuracies.len()))
    }
}

/// Fewest prompts of a category a source needs to count in that category's mean over sources.
pub const MIN_SOURCE_PROMPTS: u32 = 20;

/// Runs the cross-validation by source (see [`CrossValidation`]) in `folds` groups (at least 2).
pub fn cross_validate(examples: &[Example], settings: &Settings, folds: usize) -> CrossValidation {
    let sampled = sample_per_source(examples, settings);
    let pool: Vec<&Example> = sampled.into_iter().filter(|e| e.split != Split::Test).collect();
    // Sources are dealt by their own prompts; derived ones follow the source they were made from.
    let mut counts: BTreeMap<&str, [usize; CLASSES]> = BTreeMap::new();
    for e in pool.iter().filter(|e| e.derived_from.is_none()) {
        counts.entry(e.source.as_str()).or_insert([0; CLASSES])[e.category.index()] += 1;
    }
    let mut by_category: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (source, n) in &counts {
        let main = (0..CLASSES).max_by_key(|c| (n[*c], CLASSES - c)).unwrap_or(0);
        by_category.entry(main).or_default().push(source);
    }
    let folds = folds.max(2);
    let mut fold_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut next = 0;
    for sources in by_category.values_mut() {
        sources.sort_by_key(|s| text_hash(s, settings.seed));
        for source in sources.iter() {
            fold_of.insert(source, next % folds);
            next += 1;
        }
    }
    let mut pooled = evaluate(&[], |_| [0.0; CLASSES]);
    let mut tally: BTreeMap<(String, usize), (u32, u32)> = BTreeMap::new();
    for fold in 0..folds {
        let held: Vec<&Example> =
            pool.iter().copied().filter(|e| fold_of.get(e.fold_source()) == Some(&fold)).collect();
        if held.is_empty() {
            continue;
        }
        let train: Vec<&Example> =
            pool.iter().copied().filter(|e| fold_of.get(e.fold_source()) != Some(&fold)).collect();
        let classifier = Classifier::with_model(fit_model(&train, settings));
        for e in &held {
            let predicted = crate::model::argmax(&classifier.probabilities(&e.text));
            pooled.confusion[e.category.index()][predicted] += 1;
            let entry = tally.entry((e.source.clone(), e.category.index())).or_default();
            entry.0 += u32::from(predicted == e.category.index());
            entry.1 += 1;
        }
    }
    let per_source = tally.into_iter().map(|((s, c), (k, n))| (s, Category::ALL[c], k, n)).collect();
    CrossValidation { per_source, pooled }
}

/// Logits a classifier gives one text before its temperature (temperature 1 is applied by a unit-temperature copy).
fn raw_logits(classifier: &Classifier, text: &str) -> [f32; CLASSES] {
    let p = classifier.probabilities(text);
    // The classifier's temperature is 1 while calibrating, so log-probabilities are logits up to a constant.
    let mut out = [0.0f32; CLASSES];
    for (o, q) in out.iter_mut().zip(p) {
        *o = q.max(1e-30).ln();
    }
    out
}

/// The temperature in 0.25..8 (steps of 5%) that minimises the mean log loss of `scored`.
fn best_temperature(scored: &[([f32; CLASSES], usize)]) -> f32 {
    let mut best = (1.0f32, f64::INFINITY);
    let mut t = 0.25f32;
    while t <= 8.0 {
        let loss: f64 = scored.iter().map(|(l, y)| -f64::from(softmax(l, t)[*y].max(1e-12)).ln()).sum();
        if loss < best.1 {
            best = (t, loss);
        }
        t *= 1.05;
    }
    best.0
}

/// At most `max_per_source` examples of each training or validation source, chosen by a seeded hash of the text
/// (stable under reordering); test sources are kept whole.
fn sample_per_source<'a>(examples: &'a [Example], settings: &Settings) -> Vec<&'a Example> {
    let mut by_source: BTreeMap<&str, Vec<&Example>> = BTreeMap::new();
    for e in examples {
        by_source.entry(e.source.as_str()).or_default().push(e);
    }
    let mut out = Vec::new();
    for (_, mut list) in by_source {
        list.sort_by_key(|e| (text_hash(&e.text, settings.seed), e.text.len()));
        // The cap shapes training; the held-out figures are always on the whole test sources.
        if list.iter().any(|e| e.split != Split::Test) {
            list.truncate(settings.max_per_source);
        }
        out.extend(list);
    }
    out
}

/// A text lower-cased with every run of non-alphanumeric characters made one space, to compare prompts loosely.
fn loose_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

fn text_hash(text: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Labelled examples for the embedding classifier: up to `per_category` short prompts of each category from the
/// training and validation sources (never the test sources, nor derived examples), taken round-robin over sources so
/// every source is represented, in a seeded order. Lines of `{"category", "prompt"}`.
pub fn embedding_examples(examples: &[Example], per_category: usize, seed: u64) -> String {
    let mut out = String::new();
    for c in Category::ALL {
        let mut by_source: BTreeMap<&str, Vec<&Example>> = BTreeMap::new();
        for e in examples.iter().filter(|e| e.category == c && e.split != Split::Test && e.derived_from.is_none()) {
            if e.text.len() <= 600 && !e.text.trim().is_empty() {
                by_source.entry(e.source.as_str()).or_default().push(e);
            }
        }
        for list in by_source.values_mut() {
            list.sort_by_key(|e| text_hash(&e.text, seed));
        }
        let mut taken = 0;
        let mut round = 0;
        while taken < per_category && by_source.values().any(|l| l.len() > round) {
            for list in by_source.values() {
                if let Some(e) = list.get(round)
                    && taken < per_category
                {
                    let line = serde_json::json!({"category": c, "prompt": e.text});
                    let _ = writeln!(out, "{line}");
                    taken += 1;
                }
            }
            round += 1;
        }
    }
    out
}

/// A small deterministic generator (xorshift64*) for the shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Each example's weight in training: within its category `1 / n^power`, `n` its source's examples of that category;
/// scaled so that every category present weighs the same in total and the weights average 1.
fn example_weights(examples: &[&Example], power: f32) -> Vec<f32> {
    let mut per_source: BTreeMap<(&str, usize), usize> = BTreeMap::new();
    for e in examples {
        *per_source.entry((e.source.as_str(), e.category.index())).or_default() += 1;
    }
    let own = |e: &Example| {
        let n = per_source.get(&(e.source.as_str(), e.category.index())).copied().unwrap_or(1);
        (n as f32).powf(-power)
    };
    let mut totals = [0.0f32; CLASSES];
    for e in examples {
        totals[e.category.index()] += own(e);
    }
    let present = totals.iter().filter(|t| **t > 0.0).count().max(1) as f32;
    examples.iter().map(|e| examples.len() as f32 * own(e) / (present * totals[e.category.index()])).collect()
}

/// Trains a model on `examples` (each category weighs the same in total, its sources as `example_weights` says) and
/// quantises it.
pub fn fit_model(examples: &[&Example], settings: &Settings) -> LinearModel<'static> {
    let weights = example_weights(examples, settings.source_power);
    let mut buf = Features::new();
    let rows: Vec<Row> = examples
        .iter()
        .zip(weights)
        .map(|(e, weight)| {
            features::extract(&e.text, settings.bits, &mut buf);
            Row { ids: buf.ids.clone(), structure: buf.structure.clone(), label: e.category.index(), weight }
        })
        .collect();

    let size = (1usize << settings.bits) * ROW;
    let mut w = vec![0.0f32; size];
    let mut g2 = vec![0.0f32; size];
    let mut bias = [0.0f32; CLASSES];
    let mut bias_g2 = [0.0f32; CLASSES];
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = Rng(settings.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let lr = settings.learning_rate;
    for _ in 0..settings.epochs {
        rng.shuffle(&mut order);
        for &i in &order {
            let row = &rows[i];
            let blocks = [&row.ids, &row.structure];
            let values = blocks.map(|b| if b.is_empty() { 0.0 } else { 1.0 / (b.len() as f32).sqrt() });
            let mut z = bias;
            for (block, v) in blocks.iter().zip(values) {
                for id in block.iter() {
                    let base = *id as usize * ROW;
                    for (c, zc) in z.iter_mut().enumerate() {
                        *zc += v * w[base + c];
                    }
                }
            }
            let p = softmax(&z, 1.0);
            let mut grad = [0.0f32; CLASSES];
            for (c, g) in grad.iter_mut().enumerate() {
                let y = if c == row.label { 1.0 } else { 0.0 };
                *g = row.weight * (p[c] - y);
            }
            for ((b, b2), g) in bias.iter_mut().zip(bias_g2.iter_mut()).zip(grad) {
                *b2 += g * g;
                *b -= lr * g / (b2.sqrt() + 1e-6);
            }
            for (block, v) in blocks.iter().zip(values) {
                for id in block.iter() {
                    let base = *id as usize * ROW;
                    for (c, gc) in grad.iter().enumerate() {
                        let k = base + c;
                        let g = gc * v + settings.l2 * w[k];
                        g2[k] += g * g;
                        w[k] -= lr * g / (g2[k].sqrt() + 1e-6);
                    }
                }
            }
        }
    }
    quantise(settings.bits, &w, bias)
}

/// 8-bit weights with one scale for the whole table.
fn quantise(bits: u32, w: &[f32], bias: [f32; CLASSES]) -> LinearModel<'static> {
    let max = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let bytes: Vec<u8> = w.iter().map(|x| ((x / scale).round().clamp(-127.0, 127.0) as i8) as u8).collect();
    LinearModel::from_parts(bits, scale, 1.0, bias, bytes)
}

/// Held-out figures of one classifier.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// `confusion[true][predicted]`.
    pub confusion: [[u32; CLASSES]; CLASSES],
    /// Reliability bins of the top probability: (examples, summed confidence, correct), ten bins of 0.1.
    pub reliability: [(u32, f64, u32); 10],
    /// Log loss summed over the examples.
    pub log_loss: f64,
    /// Misclassified examples (validation only): source, truth, prediction, its probability, the text's start.
    pub errors: Vec<String>,
}

impl Evaluation {
    /// Examples evaluated.
    pub fn total(&self) -> u32 {
        self.confusion.iter().flatten().sum()
    }

    /// Examples predicted right.
    pub fn correct(&self) -> u32 {
        (0..CLASSES).map(|c| self.confusion[c][c]).sum()
    }

    /// Accuracy over every example.
    pub fn accuracy(&self) -> f64 {
        f64::from(self.correct()) / f64::from(self.total().max(1))
    }

    /// Mean of the per-category accuracies over the categories with examples (every category weighs the same,
    /// however many prompts its sources have).
    pub fn macro_accuracy(&self) -> f64 {
        let rates: Vec<f64> = Category::ALL
            .iter()
            .map(|c| self.category(*c))
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| f64::from(k) / f64::from(n))
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    }

    /// (correct, total) of a category's examples.
    pub fn category(&self, c: Category) -> (u32, u32) {
        let row = &self.confusion[c.index()];
        (row[c.index()], row.iter().sum())
    }

    /// Expected calibration error: the example-weighted mean gap between confidence and accuracy per bin.
    pub fn ece(&self) -> f64 {
        let total = f64::from(self.total().max(1));
        self.reliability
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(_, conf, right)| (conf - f64::from(*right)).abs() / total)
            .sum()
    }
}

/// Evaluates `predict` (probabilities per category) on `examples`.
pub fn evaluate(examples: &[&Example], mut predict: impl FnMut(&str) -> [f32; CLASSES]) -> Evaluation {
    let mut eval = Evaluation {
        confusion: [[0; CLASSES]; CLASSES],
        reliability: [(0, 0.0, 0); 10],
        log_loss: 0.0,
        errors: Vec::new(),
    };
    for e in examples {
        let p = predict(&e.text);
        let best = crate::model::argmax(&p);
        let truth = e.category.index();
        eval.confusion[truth][best] += 1;
        let bin = ((p[best] * 10.0) as usize).min(9);
        let r = &mut eval.reliability[bin];
        r.0 += 1;
        r.1 += f64::from(p[best]);
        r.2 += u32::from(best == truth);
        eval.log_loss -= f64::from(p[truth].max(1e-12)).ln();
    }
    eval
}

/// Wilson score interval at 95% for `k` successes out of `n`.
pub fn wilson(k: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.96f64;
    let n = f64::from(n);
    let p = f64::from(k) / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn render_report(
    pool: &[&Example],
    temperature: f32,
    settings: &Settings,
    learned: &Evaluation,
    rules: &Evaluation,
    validation: Option<&Evaluation>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Sources used (after at most {} per training source)\n", settings.max_per_source);
    let _ = writeln!(out, "| source | split | {} | total |", Category::ALL.map(|c| c.as_str()).join(" | "));
    let _ = writeln!(out, "|---|---|{}---:|", "---:|".repeat(CLASSES));
    let mut sources: BTreeMap<&str, ([usize; CLASSES], Split)> = BTreeMap::new();
    for e in pool {
        let entry = sources.entry(e.source.as_str()).or_insert(([0; CLASSES], e.split));
        entry.0[e.category.index()] += 1;
    }
    for (source, (counts, split)) in &sources {
        let split = match split {
            Split::Test => "test",
            Split::Validation => "validation",
            Split::Train => "train",
        };
        let cells: Vec<String> = counts.iter().map(|n| if *n == 0 { String::new() } else { n.to_string() }).collect();
        let _ = writeln!(out, "| {source} | {split} | {} | {} |", cells.join(" | "), counts.iter().sum::<usize>());
    }
    let _ = writeln!(
        out,
        "\nSettings: {} buckets (2^{}), {} epochs, learning rate {}, L2 {}, source power {}, seed {}; temperature {:.3}.\n",
        1u64 << settings.bits,
        settings.bits,
        settings.epochs,
        settings.learning_rate,
        settings.l2,
        settings.source_power,
        settings.seed,
        temperature
    );
    if let Some(v) = validation {
        let per: Vec<String> = Category::ALL
            .iter()
            .filter_map(|c| {
                let (k, n) = v.category(*c);
                (n > 0).then(|| format!("{c} {:.1}% of {n}", pct(k, n)))
            })
            .collect();
        let _ = writeln!(
            out,
            "Validation (a model trained without the validation sources): {:.1}% ({}).\n",
            v.accuracy() * 100.0,
            per.join(", ")
        );
    }
    let _ = writeln!(out, "### Held-out accuracy (test sources, never seen in training)\n");
    let _ = writeln!(out, "| category | prompts | learned | 95% interval | rules | 95% interval |");
    let _ = writeln!(out, "|---|---:|---:|---|---:|---|");
    for c in Category::ALL {
        let (k, n) = learned.category(c);
        let (rk, _) = rules.category(c);
        if n == 0 {
            continue;
        }
        let (lo, hi) = wilson(k, n);
        let (rlo, rhi) = wilson(rk, n);
        let _ = writeln!(
            out,
            "| {c} | {n} | {:.1}% | {:.1}-{:.1}% | {:.1}% | {:.1}-{:.1}% |",
            pct(k, n),
            lo * 100.0,
            hi * 100.0,
            pct(rk, n),
            rlo * 100.0,
            rhi * 100.0
        );
    }
    let (lo, hi) = wilson(learned.correct(), learned.total());
    let (rlo, rhi) = wilson(rules.correct(), rules.total());
    let _ = writeln!(
        out,
        "| **all** | {} | **{:.1}%** | {:.1}-{:.1}% | {:.1}% | {:.1}-{:.1}% |",
        learned.total(),
        learned.accuracy() * 100.0,
        lo * 100.0,
        hi * 100.0,
        rules.accuracy() * 100.0,
        rlo * 100.0,
        rhi * 100.0
    );
    let _ = writeln!(
        out,
        "| **mean of the categories** | | **{:.1}%** | | {:.1}% | |",
        learned.macro_accuracy() * 100.0,
        rules.macro_accuracy() * 100.0
    );
    let _ = writeln!(out, "\n### Confusion matrix of the learned model (rows: true category, columns: predicted)\n");
    render_confusion(&mut out, learned);
    let _ = writeln!(out, "\n### Confusion matrix of the rules on the same prompts\n");
    render_confusion(&mut out, rules);
    let _ = writeln!(out, "\n### Reliability of the learned model's confidence (test sources)\n");
    let _ = writeln!(out, "| confidence | prompts | mean confidence | accuracy |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (i, (n, conf, right)) in learned.reliability.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "| {:.1}-{:.1} | {n} | {:.3} | {:.3} |",
            i as f64 / 10.0,
            (i + 1) as f64 / 10.0,
            conf / f64::from(*n),
            f64::from(*right) / f64::from(*n)
        );
    }
    let _ = writeln!(
        out,
        "\nExpected calibration error {:.3}; mean log loss {:.3} (rules: ECE {:.3}, log loss {:.3}).",
        learned.ece(),
        learned.log_loss / f64::from(learned.total().max(1)),
        rules.ece(),
        rules.log_loss / f64::from(rules.total().max(1))
    );
    out
}

fn render_confusion(out: &mut String, eval: &Evaluation) {
    let _ = writeln!(out, "| true \\ predicted | {} |", Category::ALL.map(|c| c.as_str()).join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(CLASSES));
    for c in Category::ALL {
        let row = &eval.confusion[c.index()];
        if row.iter().sum::<u32>() == 0 {
            continue;
        }
        let cells: Vec<String> = row.iter().map(u32::to_string).collect();
        let _ = writeln!(out, "| {c} | {} |", cells.join(" | "));
    }
}

fn pct(k: u32, n: u32) -> f64 {
    f64::from(k) * 100.0 / f64::from(n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(text: &str, category: Category, source: &str, split: Split) -> Example {
        Example { text: text.to_string(), category, source: source.to_string(), split, derived_from: None }
    }

    #[test]
    fn wilson_interval_brackets_the_rate() {
        let (lo, hi) = wilson(85, 100);
        assert!(lo < 0.85 && hi > 0.85 && lo > 0.75 && hi < 0.92, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn corpus_lines_are_checked_and_deduplicated() {
        let jsonl = "{\"text\":\"a\",\"category\":\"math\",\"source\":\"s\",\"split\":\"train\"}\n\n\
                     {\"text\":\"a\",\"category\":\"coding\",\"source\":\"t\",\"split\":\"test\"}\n";
        let c = read_corpus(jsonl).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].category, Category::Math);
        let err =
            read_corpus("{\"text\":\"a\",\"category\":\"poetry\",\"source\":\"s\",\"split\":\"train\"}").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    /// Five words per category, for tiny corpora a model can learn.
    const WORDS: [(Category, &str); 7] = [
        (Category::Coding, "python function code bug compile"),
        (Category::Math, "solve equation integral number sum"),
        (Category::Reasoning, "puzzle logic deduce who sits left"),
        (Category::Factual, "capital country who invented year"),
        (Category::Creative, "poem story haiku lyrics verse"),
        (Category::Extraction, "passage context extract span answer"),
        (Category::General, "hello thanks advice recommend chat"),
    ];

    #[test]
    fn a_tiny_corpus_trains_a_model_that_learns_it() {
        let mut corpus = Vec::new();
        for (c, vocab) in WORDS {
            let vocab: Vec<&str> = vocab.split(' ').collect();
            for i in 0..40 {
                let text = format!("{} {} {}", vocab[i % 5], vocab[(i / 5) % 5], vocab[(i + 2) % 5]);
                let source = if i % 2 == 0 { "a" } else { "b" };
                let split = match i % 4 {
                    3 => Split::Test,
                    2 => Split::Validation,
                    _ => Split::Train,
                };
                corpus.push(example(&format!("{text} {i}"), c, &format!("{}-{source}", c.as_str()), split));
            }
        }
        let settings = Settings { bits: 12, epochs: 4, ..Settings::default() };
        let outcome = run(&corpus, &settings).unwrap();
        assert!(outcome.learned.accuracy() > 0.9, "{}", outcome.report);
        assert!(outcome.validation.as_ref().is_some_and(|v| v.total() > 0));
        assert!(outcome.report.contains("| **all** |"));
        let again = run(&corpus, &settings).unwrap();
        assert_eq!(outcome.model.to_bytes(), again.model.to_bytes(), "training is deterministic");
    }

    #[test]
    fn cross_validation_predicts_each_source_by_a_model_that_never_saw_it() {
        let mut corpus = Vec::new();
        for (c, vocab) in WORDS {
            let vocab: Vec<&str> = vocab.split(' ').collect();
            for i in 0..60 {
                let text = format!("{} {} {} {i}", vocab[i % 5], vocab[(i / 5) % 5], vocab[(i + 2) % 5]);
                let split = if i % 3 == 2 { Split::Test } else { Split::Train };
                corpus.push(example(&text, c, &format!("{}-{}", c.as_str(), i % 3), split));
            }
        }
        // A source that calls math's words `general`: a model that saw it would learn some of its labels; one that
        // did not reads its prompts as math.
        for i in 0..30 {
            corpus.push(example(&format!("solve equation sum number odd {i}"), Category::General, "odd", Split::Train));
        }
        // Its prompts rewritten (a derived source): held out with it, or the model would have seen them.
        for i in 0..30 {
            let mut e =
                example(&format!("notes: solve equation sum number odd {i}"), Category::General, "re", Split::Train);
            e.derived_from = Some("odd".to_string());
            corpus.push(e);
        }
        let cv = cross_validate(&corpus, &Settings { bits: 12, epochs: 4, ..Settings::default() }, 3);
        let predicted: u32 = cv.per_source.iter().map(|(_, _, _, n)| n).sum();
        let pool = corpus.iter().filter(|e| e.split != Split::Test).count();
        assert_eq!(predicted as usize, pool, "every training prompt is predicted once, no test prompt");
        let odd = cv.per_source.iter().find(|(s, ..)| s == "odd").map(|(_, _, k, n)| (*k, *n));
        assert_eq!(odd, Some((0, 30)), "the odd source and what was derived from it were held out together");
        let derived = cv.per_source.iter().find(|(s, ..)| s == "re").map(|(_, _, k, n)| (*k, *n));
        assert_eq!(derived, Some((0, 30)), "the derived prompts are predicted with the source they came from");
        let (mean, sources) = cv.source_mean(Category::Coding).unwrap();
        assert!(mean > 0.9 && sources == 2, "{mean} over {sources}");
    }

    #[test]
    fn categories_weigh_the_same_and_sources_by_the_power() {
        let mut corpus = Vec::new();
        for i in 0..90 {
            corpus.push(example(&format!("big {i}"), Category::Coding, "big", Split::Train));
        }
        for i in 0..10 {
            corpus.push(example(&format!("small {i}"), Category::Coding, "small", Split::Train));
        }
        for i in 0..25 {
            corpus.push(example(&format!("math {i}"), Category::Math, "math", Split::Train));
        }
        let refs: Vec<&Example> = corpus.iter().collect();
        let total = |w: &[f32], pick: &dyn Fn(&Example) -> bool| -> f32 {
            refs.iter().zip(w).filter(|(e, _)| pick(e)).map(|(_, w)| *w).sum()
        };
        for power in [0.0, 0.5, 1.0] {
            let w = example_weights(&refs, power);
            let coding = total(&w, &|e| e.category == Category::Coding);
            let math = total(&w, &|e| e.category == Category::Math);
            assert!((coding - math).abs() < 1e-3, "power {power}: {coding} against {math}");
            assert!((coding + math - refs.len() as f32).abs() < 1e-2, "power {power}");
            let (big, small) = (total(&w, &|e| e.source == "big"), total(&w, &|e| e.source == "small"));
            // A source's share of its category: n^(1 - power) against the other's.
            let expected = (90f32 / 10f32).powf(1.0 - power);
            assert!((big / small - expected).abs() < 1e-3 * expected, "power {power}: {big} / {small}");
        }
    }

    #[test]
    fn the_cap_per_source_leaves_test_sources_whole() {
        let mut corpus = Vec::new();
        for i in 0..10 {
            corpus.push(example(&format!("train {i}"), Category::Math, "a", Split::Train));
            corpus.push(example(&format!("test {i}"), Category::Math, "b", Split::Test));
        }
        let sampled = sample_per_source(&corpus, &Settings { max_per_source: 3, ..Settings::default() });
        let count = |split: Split| sampled.iter().filter(|e| e.split == split).count();
        assert_eq!((count(Split::Train), count(Split::Test)), (3, 10));
    }

    #[test]
    fn embedding_examples_skip_test_sources_and_cover_sources() {
        let corpus = vec![
            example("train one", Category::Math, "a", Split::Train),
            example("train two", Category::Math, "b", Split::Validation),
            example("test one", Category::Math, "c", Split::Test),
        ];
        let out = embedding_examples(&corpus, 5, 1);
        assert!(out.contains("train one") && out.contains("train two") && !out.contains("test one"), "{out}");
        assert_eq!(embedding_examples(&corpus, 1, 1).lines().count(), 1);
    }

    #[test]
    fn training_copies_of_test_prompts_are_left_out_of_the_evaluated_models() {
        let mut corpus = Vec::new();
        for c in Category::ALL {
            for i in 0..6 {
                let split = if i < 4 { Split::Train } else { Split::Test };
                corpus.push(example(&format!("{} prompt number {i}", c.as_str()), c, &format!("{c}-{i}"), split));
            }
        }
        corpus.push(example("CODING prompt number 4!", Category::Coding, "copy", Split::Train));
        let outcome = run(&corpus, &Settings { bits: 10, epochs: 1, ..Settings::default() }).unwrap();
        assert!(outcome.report.starts_with("1 training or validation prompts"), "{}", outcome.report);
        assert_eq!(loose_text("Who plays  Donna-Noble?"), "who plays donna noble");
    }

    #[test]
    fn a_corpus_missing_a_category_is_refused() {
        let corpus =
            vec![example("x", Category::Math, "s", Split::Train), example("y", Category::Math, "t", Split::Test)];
        assert!(matches!(run(&corpus, &Settings::default()), Err(ClassifierError::Unusable(_))));
    }
}
