//! What `switchyard-cascade-bench` measures and how it reports it: task cascades (`[tasks.NAME] cascade = ...`)
//! against each model alone, on the profiler's verifiable items.
//!
//! Training and evaluation are kept apart. Each category's verifiable items (no `judge` check, no system prompt) are
//! split in two by their order in the suite: the first half is written as a suite directory of its own
//! (`profiler.suite_dir`) and profiled by the router's real profiling job, so the routing profiles (and with them a
//! `cascade = "auto"` chain) are learnt from it alone; the second half is held out and only ever asked as requests,
//! to each model alone and to each cascade. The judge's threshold stays at its default: nothing is tuned on the
//! held-out items.
//!
//! GPU time is the simulated model time Ollama reports, `total_duration`: of the one answer for a model alone, and
//! for a cascade the delta of the router's `switchyard_cascade_model_seconds_total` over the request (every step's
//! answer and every judge call).

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use switchyard_core::config::{CascadeSteps, TaskRule};
use switchyard_profiler::suite::{self, Item, Suite};

/// The cheap first step of the listed cascades.
pub const CHEAP: &str = "llama3.2:3b";
/// The mid-size model: a judge.
pub const MID: &str = "llama3.1:8b";
/// The strong model: the last step of the listed cascades, and the reference every figure is compared with.
pub const STRONG: &str = "llama3.3:70b";

/// The goal: at least this share of the strong model's accuracy...
pub const GOAL_ACCURACY: f64 = 0.90;
/// ...for at most this share of its GPU time.
pub const GOAL_GPU: f64 = 0.50;

/// The suite files the profiler embeds (`crates/profiler/src/suite.rs`), as text: the training suites are these
/// files with the held-out items taken out, so that everything else in them (version, checks) stays as written.
const SUITE_FILES: [(&str, &str); 6] = [
    ("coding.toml", include_str!("../../profiler/suites/coding.toml")),
    ("math.toml", include_str!("../../profiler/suites/math.toml")),
    ("reasoning.toml", include_str!("../../profiler/suites/reasoning.toml")),
    ("factual.toml", include_str!("../../profiler/suites/factual.toml")),
    ("creative.toml", include_str!("../../profiler/suites/creative.toml")),
    ("extraction.toml", include_str!("../../profiler/suites/extraction.toml")),
];

/// How one category's items were divided.
#[derive(Debug, Clone, Serialize)]
pub struct CategorySplit {
    pub category: String,
    /// Items in the suite.
    pub items: usize,
    /// Left out of both halves: `judge` items (no verifiable answer) and items with a system prompt.
    pub skipped: usize,
    /// The first half of the verifiable items: profiled.
    pub training: usize,
    /// The second half: evaluated.
    pub held_out: usize,
}

/// The training and held-out halves of the built-in suites.
#[derive(Debug, Clone)]
pub struct Split {
    /// Ids of the training items.
    pub training: BTreeSet<String>,
    /// The first training item of each category, for warm-up requests (never measured).
    pub warmup: Vec<Item>,
    /// The held-out items, category after category in suite order.
    pub held_out: Vec<Item>,
    pub categories: Vec<CategorySplit>,
}

/// Splits each suite's verifiable items (no `judge` check, no system prompt) in two by their order: the first
/// `n / 2` for training, the rest (at most `limit` of them per category when `limit` > 0) held out.
pub fn split(suites: &[Suite], limit: usize) -> Split {
    let mut out = Split { training: BTreeSet::new(), warmup: Vec::new(), held_out: Vec::new(), categories: Vec::new() };
    for s in suites {
        let verifiable: Vec<&Item> = s.items.iter().filter(|i| !i.check.needs_judge() && i.system.is_none()).collect();
        let half = verifiable.len() / 2;
        let (train, rest) = verifiable.split_at(half);
        let rest = if limit > 0 && rest.len() > limit { &rest[..limit] } else { rest };
        out.training.extend(train.iter().map(|i| i.id.clone()));
        out.warmup.extend(train.first().map(|i| (*i).clone()));
        out.held_out.extend(rest.iter().map(|i| (*i).clone()));
        out.categories.push(CategorySplit {
            category: s.category.to_string(),
            items: s.items.len(),
            skipped: s.items.len() - verifiable.len(),
            training: train.len(),
            held_out: rest.len(),
        });
    }
    out
}

/// The built-in suites, checked to be the same files [`SUITE_FILES`] holds.
pub fn builtin_suites() -> Result<Vec<Suite>> {
    let suites = suite::builtin().context("reading the profiler's built-in suites")?;
    for (file, text) in SUITE_FILES {
        let parsed = Suite::parse(file, text).with_context(|| format!("parsing {file}"))?;
        if !suites.iter().any(|s| s.category == parsed.category && s.version == parsed.version) {
            bail!("{file} differs from the suite the profiler embeds");
        }
    }
    Ok(suites)
}

/// Writes the training suites into `dir`: each built-in suite file with only the items in `training` (the file's
/// other keys as they are). Returns the number of items written per category, as the profiler reads them back.
pub fn write_training_suites(dir: &Path, training: &BTreeSet<String>) -> Result<BTreeMap<String, usize>> {
    for (file, text) in SUITE_FILES {
        let mut table: toml::Table = toml::from_str(text).with_context(|| format!("parsing {file}"))?;
        let Some(toml::Value::Array(items)) = table.get_mut("items") else {
            bail!("{file} has no [[items]]");
        };
        items.retain(|item| item.get("id").and_then(toml::Value::as_str).is_some_and(|id| training.contains(id)));
        let text = toml::to_string(&table).with_context(|| format!("rendering the training part of {file}"))?;
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let written = suite::load_dir(dir).context("reading the training suites back")?;
    Ok(written.iter().map(|s| (s.category.to_string(), s.items.len())).collect())
}

/// One cascade configuration: a task of the router's configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Configuration {
    /// The task's name (`auto:NAME`).
    pub task: &'static str,
    /// What the table calls it.
    pub label: &'static str,
    #[serde(skip)]
    pub rule: TaskRule,
}

/// The cascades measured. The judge threshold is the default (0.7) in every one.
pub fn configurations() -> Vec<Configuration> {
    let listed = || Some(CascadeSteps::List(vec![CHEAP.to_string(), STRONG.to_string()]));
    vec![
        Configuration {
            task: "cheap-strong-judge-8b",
            label: "(1) 3b -> 70b, judge 8b",
            rule: TaskRule { cascade: listed(), judge_model: Some(MID.into()), ..TaskRule::default() },
        },
        Configuration {
            task: "cheap-strong-judge-70b",
            label: "(2) 3b -> 70b, judge 70b",
            rule: TaskRule { cascade: listed(), judge_model: Some(STRONG.into()), ..TaskRule::default() },
        },
        Configuration {
            task: "auto-judge-8b",
            label: "(3) auto (3 steps), judge 8b",
            rule: TaskRule {
                cascade: Some(CascadeSteps::Auto("auto".into())),
                cascade_max_steps: Some(3),
                judge_model: Some(MID.into()),
                ..TaskRule::default()
            },
        },
        Configuration {
            task: "cheap-strong-validators",
            label: "(4) 3b -> 70b, validators only",
            rule: TaskRule { cascade: listed(), ..TaskRule::default() },
        },
    ]
}

/// The Ollama `/api/chat` body for `item` to `model` (a model or `auto:TASK`): buffered, greedy, the item's token
/// cap (else the profiler's default of 512), as the profiler asks it.
pub fn item_body(model: &str, item: &Item) -> Value {
    serde_json::json!({
        "model": model,
        "stream": false,
        "messages": [{"role": "user", "content": item.prompt}],
        "options": {"temperature": 0, "num_predict": item.max_tokens.unwrap_or(512)},
    })
}

/// Whether `answer` is right by the item's own checker.
pub fn is_correct(item: &Item, answer: &str) -> bool {
    item.check.evaluate(answer).correct() == Some(true)
}

/// The judge calls a cascade request made, from its headers: one for each step refused by the judge, and one for
/// the returned answer when it passed the validators and was not the last step's (the router does not judge the
/// last step's answer: it is returned whatever the score).
pub fn judge_calls(escalations: &[String], unvalidated: Option<&str>, step: usize, steps: usize) -> usize {
    let refused = escalations.iter().filter(|e| e.ends_with("=judge")).count();
    refused + usize::from(unvalidated.is_none() && step < steps)
}

/// The sum of every series of the metric `name` whose labels contain `label` (all of them when `None`), from
/// Prometheus text.
pub fn metric_sum(text: &str, name: &str, label: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter(|l| label.is_none_or(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// What one held-out item got from one configuration (a model alone or a cascade).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub item: String,
    pub category: String,
    /// The category the router classified the prompt as (cascades).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routed_category: Option<String>,
    pub correct: bool,
    /// Answer plus judge seconds.
    pub gpu_seconds: f64,
    pub answer_seconds: f64,
    pub judge_seconds: f64,
    /// The model whose answer came back.
    pub model: String,
    /// The 1-based step that answered, and the cascade's steps (cascades).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// The cascade's planned chain, from `/admin/decisions`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Each refused step: `model=reason`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<String>,
    /// Why the returned (last) answer failed validation too, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unvalidated: Option<String>,
    /// Judge calls the request made (cascades with a judge): one per step but the last whose answer passed the
    /// validators.
    pub judge_calls: usize,
    /// A failed request (counted as wrong, with no GPU time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The figures of one category.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CategoryFigures {
    pub n: usize,
    pub correct: usize,
    pub gpu_seconds: f64,
    /// Requests answered by step 1 (cascades).
    pub step1: usize,
}

/// The figures of one configuration over the held-out items.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub name: String,
    /// `model`, `cascade` or `derived` (computed from the models' answers, not run).
    pub kind: &'static str,
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Wilson 95% interval of the accuracy.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Accuracy over the strong model's.
    pub accuracy_vs_strong: f64,
    pub gpu_seconds: f64,
    pub answer_seconds: f64,
    pub judge_seconds: f64,
    /// GPU seconds over the strong model's.
    pub gpu_vs_strong: f64,
    /// Share of requests answered by step 1 (cascades).
    pub step1_share: Option<f64>,
    /// Requests by the step that answered.
    pub by_step: BTreeMap<usize, usize>,
    /// Requests answered by each model.
    pub by_model: BTreeMap<String, usize>,
    /// Escalations by reason.
    pub escalations: BTreeMap<String, usize>,
    /// Last-step answers returned although they failed validation too.
    pub unvalidated: usize,
    /// Judge calls.
    pub judge_calls: usize,
    pub errors: usize,
    /// Cascade chains the router planned, with how many requests got each.
    pub chains: BTreeMap<String, usize>,
    /// Model loads in the simulator while the configuration was measured (0: every figure is warm).
    pub loads: u64,
    pub by_category: BTreeMap<String, CategoryFigures>,
    /// What became of the first step's answers (cascades).
    pub step_one: Option<StepOne>,
    /// `accuracy_vs_strong >= 90 %` and `gpu_vs_strong <= 50 %`.
    pub goal_met: bool,
}

impl Figures {
    /// Sums `outcomes`; the ratios to the strong model are filled by [`Figures::against`].
    pub fn of(name: &str, kind: &'static str, outcomes: &[Outcome], loads: u64) -> Figures {
        let n = outcomes.len();
        let correct = outcomes.iter().filter(|o| o.correct).count();
        let (ci_low, ci_high) = switchyard_profiler::stats::wilson(
            u32::try_from(correct).unwrap_or(u32::MAX),
            u32::try_from(n).unwrap_or(u32::MAX),
        );
        let mut by_step = BTreeMap::new();
        let mut by_model = BTreeMap::new();
        let mut escalations = BTreeMap::new();
        let mut chains = BTreeMap::new();
        let mut by_category: BTreeMap<String, CategoryFigures> = BTreeMap::new();
        for o in outcomes {
            if let Some(step) = o.step {
                *by_step.entry(step).or_insert(0) += 1;
            }
            if !o.model.is_empty() {
                *by_model.entry(o.model.clone()).or_insert(0) += 1;
            }
            for e in &o.escalations {
                let reason = e.rsplit('=').next().unwrap_or(e).to_string();
                *escalations.entry(reason).or_insert(0) += 1;
            }
            if !o.chain.is_empty() {
                *chains
                    .entry(format!("{}: {}", o.routed_category.as_deref().unwrap_or("?"), o.chain.join(" -> ")))
                    .or_insert(0) += 1;
            }
            let c = by_category.entry(o.category.clone()).or_default();
            c.n += 1;
            c.correct += usize::from(o.correct);
            c.gpu_seconds += o.gpu_seconds;
            c.step1 += usize::from(o.step == Some(1));
        }
        let step1_share = (!by_step.is_empty()).then(|| share(by_step.get(&1).copied().unwrap_or(0), n));
        Figures {
            name: name.to_string(),
            kind,
            n,
            correct,
            accuracy: share(correct, n),
            ci_low,
            ci_high,
            accuracy_vs_strong: 0.0,
            gpu_seconds: outcomes.iter().map(|o| o.gpu_seconds).sum(),
            answer_seconds: outcomes.iter().map(|o| o.answer_seconds).sum(),
            judge_seconds: outcomes.iter().map(|o| o.judge_seconds).sum(),
            gpu_vs_strong: 0.0,
            step1_share,
            by_step,
            by_model,
            escalations,
            unvalidated: outcomes.iter().filter(|o| o.unvalidated.is_some()).count(),
            judge_calls: outcomes.iter().map(|o| o.judge_calls).sum(),
            errors: outcomes.iter().filter(|o| o.error.is_some()).count(),
            chains,
            loads,
            by_category,
            step_one: None,
            goal_met: false,
        }
    }

    /// Fills the ratios to `strong`'s accuracy and GPU time, and whether the goal is met.
    pub fn against(mut self, strong: &Figures) -> Figures {
        self.accuracy_vs_strong = ratio(self.accuracy, strong.accuracy);
        self.gpu_vs_strong = ratio(self.gpu_seconds, strong.gpu_seconds);
        self.goal_met = self.accuracy_vs_strong >= GOAL_ACCURACY && self.gpu_vs_strong <= GOAL_GPU;
        self
    }
}

/// What a cascade did with its first step's answers, split by whether that answer was right (the first model's
/// own answer to the item, asked alone: the simulator answers the same item the same way every time).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StepOne {
    pub right_accepted: usize,
    pub right_refused_by_judge: usize,
    pub right_refused_by_validator: usize,
    pub wrong_accepted: usize,
    pub wrong_refused_by_judge: usize,
    pub wrong_refused_by_validator: usize,
    /// Requests whose first step failed or whose first model was not measured alone.
    pub unknown: usize,
}

impl StepOne {
    /// Tallies `outcomes` of a cascade; `alone` holds each model's outcomes alone, by model. The first step is the
    /// first model of the planned chain.
    pub fn of(outcomes: &[Outcome], alone: &BTreeMap<String, Vec<Outcome>>) -> StepOne {
        let mut t = StepOne::default();
        for o in outcomes {
            let first = o.chain.first();
            let right = first
                .and_then(|m| alone.get(m))
                .and_then(|answers| answers.iter().find(|a| a.item == o.item))
                .filter(|a| a.error.is_none())
                .map(|a| a.correct);
            let refused = o.escalations.first().map(|e| e.ends_with("=judge"));
            match (right, o.step, refused) {
                (Some(true), Some(1), _) => t.right_accepted += 1,
                (Some(true), _, Some(true)) => t.right_refused_by_judge += 1,
                (Some(true), _, Some(false)) => t.right_refused_by_validator += 1,
                (Some(false), Some(1), _) => t.wrong_accepted += 1,
                (Some(false), _, Some(true)) => t.wrong_refused_by_judge += 1,
                (Some(false), _, Some(false)) => t.wrong_refused_by_validator += 1,
                _ => t.unknown += 1,
            }
        }
        t
    }

    /// Share of the judge's verdicts on first-step answers that were right (accepting a right answer, refusing a
    /// wrong one); `None` when it judged none.
    pub fn judge_right(&self) -> Option<f64> {
        let judged =
            self.right_accepted + self.right_refused_by_judge + self.wrong_accepted + self.wrong_refused_by_judge;
        (judged > 0).then(|| share(self.right_accepted + self.wrong_refused_by_judge, judged))
    }
}

/// What each cascade did with its first step's answers, markdown.
pub fn step_one_table(figures: &[Figures]) -> String {
    let mut out = String::from(
        "| configuration | first answer right: accepted | refused by the judge | refused by a validator | first answer wrong: accepted | refused by the judge | refused by a validator | judge's verdicts right |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for f in figures {
        let Some(t) = &f.step_one else { continue };
        // Without judge calls nothing was judged: an accepted answer only passed the validators.
        let judge = t
            .judge_right()
            .filter(|_| f.judge_calls > 0)
            .map_or_else(|| "-".to_string(), |s| format!("{:.0} %", s * 100.0));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {judge} |\n",
            f.name,
            t.right_accepted,
            t.right_refused_by_judge,
            t.right_refused_by_validator,
            t.wrong_accepted,
            t.wrong_refused_by_judge,
            t.wrong_refused_by_validator,
        ));
    }
    out
}

/// A cascade with a judge that is never wrong and costs nothing, from the two models' own answers: `cheap`'s answer
/// when it is right, else `strong`'s; GPU time `cheap`'s plus `strong`'s when escalated. The best any judge could
/// do for this pair (derived, not run). The outcomes are matched by position: both lists answer the same items.
pub fn perfect_judge(cheap: &[Outcome], strong: &[Outcome]) -> Vec<Outcome> {
    cheap
        .iter()
        .zip(strong)
        .map(|(c, s)| {
            if c.correct {
                Outcome { step: Some(1), steps: Some(2), ..c.clone() }
            } else {
                Outcome {
                    correct: s.correct,
                    gpu_seconds: c.gpu_seconds + s.gpu_seconds,
                    answer_seconds: c.answer_seconds + s.answer_seconds,
                    model: s.model.clone(),
                    step: Some(2),
                    steps: Some(2),
                    escalations: vec![format!("{}=wrong", c.model)],
                    ..c.clone()
                }
            }
        })
        .collect()
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The main table: each model alone, then each cascade, markdown.
pub fn summary_table(figures: &[Figures]) -> String {
    let mut out = String::from(
        "| configuration | accuracy (95% CI) | % of 70b accuracy | GPU-s (answer + judge) | % of 70b GPU-s | answered at step 1 | escalations | goal met |\n\
         |---|---:|---:|---:|---:|---:|---|:---:|\n",
    );
    for f in figures.iter().filter(|f| f.kind != "derived") {
        let name = if f.kind == "model" { format!("`{}` alone", f.name) } else { f.name.clone() };
        let gpu = if f.judge_seconds > 0.0 {
            format!("{:.1} ({:.1} + {:.1})", f.gpu_seconds, f.answer_seconds, f.judge_seconds)
        } else {
            format!("{:.1}", f.gpu_seconds)
        };
        let step1 = f.step1_share.map_or_else(|| "-".to_string(), |s| format!("{:.0} %", s * 100.0));
        let escalations = if f.escalations.is_empty() {
            if f.kind == "model" { "-".to_string() } else { "none".to_string() }
        } else {
            f.escalations.iter().map(|(reason, n)| format!("{reason} {n}")).collect::<Vec<_>>().join(", ")
        };
        let goal = match (f.kind, f.goal_met) {
            ("model", _) => "-",
            (_, true) => "yes",
            (_, false) => "no",
        };
        out.push_str(&format!(
            "| {name} | {:.1} % ({:.1}-{:.1}) | {:.0} % | {gpu} | {:.0} % | {step1} | {escalations} | {goal} |\n",
            f.accuracy * 100.0,
            f.ci_low * 100.0,
            f.ci_high * 100.0,
            f.accuracy_vs_strong * 100.0,
            f.gpu_vs_strong * 100.0,
        ));
    }
    out
}

/// The derived two-step cascades with a perfect judge that costs nothing, markdown: the most any judge could give
/// each cheap first step in front of the strong model.
pub fn bound_table(figures: &[Figures]) -> String {
    let mut out = String::from(
        "| first step -> 70b, perfect free judge | accuracy | % of 70b accuracy | GPU-s | % of 70b GPU-s | answered at step 1 | goal met |\n\
         |---|---:|---:|---:|---:|---:|:---:|\n",
    );
    for f in figures.iter().filter(|f| f.kind == "derived") {
        out.push_str(&format!(
            "| `{}` | {:.1} % | {:.0} % | {:.1} | {:.0} % | {:.0} % | {} |\n",
            f.name,
            f.accuracy * 100.0,
            f.accuracy_vs_strong * 100.0,
            f.gpu_seconds,
            f.gpu_vs_strong * 100.0,
            f.step1_share.unwrap_or(0.0) * 100.0,
            if f.goal_met { "yes" } else { "no" }
        ));
    }
    out
}

/// Accuracy (and, for cascades, the share answered at step 1) per category, markdown.
pub fn category_table(figures: &[Figures], categories: &[String]) -> String {
    let mut out = String::from("| configuration |");
    for c in categories {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(categories.len()));
    out.push('\n');
    for f in figures.iter().filter(|f| f.kind != "derived") {
        out.push_str(&format!("| {} |", f.name));
        for c in categories {
            let cell = f.by_category.get(c).map_or_else(String::new, |c| {
                let acc = share(c.correct, c.n) * 100.0;
                if f.kind == "model" {
                    format!(" {acc:.0} % |")
                } else {
                    format!(" {acc:.0} % ({:.0} % step 1) |", share(c.step1, c.n) * 100.0)
                }
            });
            out.push_str(&cell);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halves_are_disjoint_verifiable_and_cover_every_category() {
        let suites = builtin_suites().unwrap();
        let s = split(&suites, 0);
        assert_eq!(s.categories.len(), 6);
        for c in &s.categories {
            assert!(c.training > 10 && c.held_out >= c.training && c.held_out <= c.training + 1, "{c:?}");
            assert_eq!(c.training + c.held_out + c.skipped, c.items);
        }
        assert!(s.held_out.iter().all(|i| !s.training.contains(&i.id) && !i.check.needs_judge()));
        assert_eq!(s.warmup.len(), 6);
        assert!(s.warmup.iter().all(|i| s.training.contains(&i.id)));
        let limited = split(&suites, 3);
        assert_eq!(limited.held_out.len(), 18);
        assert_eq!(limited.training, s.training, "a limit shortens the held-out half only");
    }

    #[test]
    fn the_training_suites_hold_exactly_the_training_items() {
        let suites = builtin_suites().unwrap();
        let s = split(&suites, 0);
        let dir = tempfile::tempdir().unwrap();
        let written = write_training_suites(dir.path(), &s.training).unwrap();
        for c in &s.categories {
            assert_eq!(written.get(&c.category), Some(&c.training), "{}", c.category);
        }
        let back = suite::load_dir(dir.path()).unwrap();
        let ids: BTreeSet<String> = back.iter().flat_map(|s| s.items.iter().map(|i| i.id.clone())).collect();
        assert_eq!(ids, s.training);
    }

    #[test]
    fn metrics_are_summed_by_name_and_label() {
        let text = "# HELP switchyard_cascade_model_seconds_total x\n\
                    switchyard_cascade_model_seconds_total{work=\"answer\"} 1.5\n\
                    switchyard_cascade_model_seconds_total{work=\"judge\"} 0.25\n\
                    switchyard_cascade_model_seconds_total_other 9\n";
        assert_eq!(metric_sum(text, "switchyard_cascade_model_seconds_total", None), 1.75);
        assert_eq!(metric_sum(text, "switchyard_cascade_model_seconds_total", Some("work=\"judge\"")), 0.25);
        assert_eq!(metric_sum(text, "absent", None), 0.0);
    }

    fn outcome(correct: bool, gpu: f64) -> Outcome {
        Outcome {
            item: "x".into(),
            category: "math".into(),
            correct,
            gpu_seconds: gpu,
            answer_seconds: gpu,
            model: "m".into(),
            ..Outcome::default()
        }
    }

    #[test]
    fn figures_ratios_and_the_goal() {
        let strong = Figures::of("s", "model", &[outcome(true, 1.0), outcome(true, 1.0)], 0);
        let strong = strong.clone().against(&strong);
        assert_eq!((strong.accuracy_vs_strong, strong.gpu_vs_strong), (1.0, 1.0));
        let cheap = Figures::of("c", "cascade", &[outcome(true, 0.4), outcome(true, 0.5)], 0).against(&strong);
        assert!(cheap.goal_met, "{cheap:?}");
        let wrong = Figures::of("w", "cascade", &[outcome(true, 0.1), outcome(false, 0.1)], 0).against(&strong);
        assert!(!wrong.goal_met);
        assert_eq!(wrong.accuracy_vs_strong, 0.5);
    }

    #[test]
    fn judge_calls_follow_the_headers() {
        let esc = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        // Accepted at step 1: judged once.
        assert_eq!(judge_calls(&[], None, 1, 2), 1);
        // Refused by the judge; the last step's answer is not judged.
        assert_eq!(judge_calls(&esc(&["a=judge"]), None, 2, 2), 1);
        assert_eq!(judge_calls(&esc(&["a=judge", "b=judge"]), None, 3, 3), 2);
        // Refused by a validator: never judged; the last answer failed a validator too.
        assert_eq!(judge_calls(&esc(&["a=refusal"]), Some("truncated"), 2, 2), 0);
    }

    #[test]
    fn first_answers_are_tallied_against_the_model_alone() {
        let mut alone = BTreeMap::new();
        let answers = vec![
            Outcome { item: "a".into(), correct: true, ..Outcome::default() },
            Outcome { item: "b".into(), correct: false, ..Outcome::default() },
            Outcome { item: "c".into(), correct: false, ..Outcome::default() },
        ];
        alone.insert("small".to_string(), answers);
        let chain = vec!["small".to_string(), "big".to_string()];
        let cascade = vec![
            Outcome { item: "a".into(), step: Some(1), chain: chain.clone(), ..Outcome::default() },
            Outcome {
                item: "b".into(),
                step: Some(2),
                chain: chain.clone(),
                escalations: vec!["small=judge".into()],
                ..Outcome::default()
            },
            Outcome { item: "c".into(), step: Some(1), chain, ..Outcome::default() },
            Outcome { item: "d".into(), step: Some(1), ..Outcome::default() },
        ];
        let t = StepOne::of(&cascade, &alone);
        assert_eq!((t.right_accepted, t.wrong_refused_by_judge, t.wrong_accepted, t.unknown), (1, 1, 1, 1));
        assert_eq!(t.judge_right(), Some(2.0 / 3.0));
    }

    #[test]
    fn a_perfect_judge_escalates_exactly_the_wrong_answers() {
        let cheap = [outcome(true, 0.1), outcome(false, 0.1)];
        let strong = [outcome(false, 1.0), outcome(true, 1.0)];
        let both = perfect_judge(&cheap, &strong);
        assert!(both.iter().all(|o| o.correct));
        assert_eq!(both[0].step, Some(1));
        assert_eq!(both[1].step, Some(2));
        assert!((both[1].gpu_seconds - 1.1).abs() < 1e-9);
    }
}
