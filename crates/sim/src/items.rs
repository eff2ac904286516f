//! Profiling items the simulator recognises, and whether a model answers one correctly.
//!
//! The profiler's suites are indexed by exact prompt text. For the item at 0-based position `i` of its suite, a
//! model answers correctly iff `u < skill(model, category)` with `u = frac(vdc(i) + r)`: `vdc` is the base-2 van
//! der Corput radical inverse and `r` a hash of (model, seed) mapped to [0, 1). Because `vdc` is a low-discrepancy
//! sequence, any prefix of a suite comes out within about one item of `skill x n` correct, which the profiler's
//! accuracy tests rely on; the shift `r` keeps models and seeds from all failing the same items.
//!
//! The profiler's optional LLM judge sends prompts built by `switchyard_profiler::judge::judge_prompt`; they are
//! recognised here and answered with a score: high (8-10) when the judged answer is the item's reference (or passes
//! its checker), low (1-3) otherwise, so a simulated judge agrees with the checkers.
//!
//! A cascade's judge of any answer sends `switchyard_profiler::judge::answer_judge_prompt(task, answer)`, scored the
//! same way. When the task is a profiling item's prompt (the whole task, or what follows a blank line in it, as the
//! router puts the system prompt first), a good answer is the item's reference or one its checker accepts; for any
//! other task, a good answer is one that is neither empty nor a refusal ("I'm sorry", "I cannot", "I can't"). For
//! items a simulated judge is as reliable as its skill in the item's category: the verdict is flipped with
//! probability `1 - skill(judge, category)`, decided by a hash of (judge model, task, answer) so that the same
//! question always gets the same score. Other tasks, and the profiler's item judge prompts, are never flipped.

use crate::filler::Rng;
use crate::fleet::FleetModel;
use std::collections::HashMap;
use switchyard_core::Category;
use switchyard_core::text::stable_hash_parts;
use switchyard_profiler::Suite;
use switchyard_profiler::check::Check;

/// What the simulator needs to know of one item.
#[derive(Debug, Clone)]
pub(crate) struct ItemEntry {
    /// The item's category, whose skill decides it.
    pub category: Category,
    /// Its 0-based position in its suite, the argument of the van der Corput sequence.
    pub index: usize,
    /// The answer given when the model gets it right.
    pub reference: String,
    /// The answer given when the model gets it wrong (one its checker rejects).
    pub incorrect: String,
    /// The item's checker, for a judge of answers to its prompt.
    pub check: Check,
}

/// What a judge needs to know of one item: how to tell a good answer.
#[derive(Debug, Clone)]
struct JudgedItem {
    /// The reference answer (always good).
    reference: String,
    /// The item's checker (an answer it accepts is good).
    check: Check,
}

/// The items, by prompt text and by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ItemBook {
    /// Exact prompt text to item; the first suite to use a prompt wins.
    by_prompt: HashMap<String, ItemEntry>,
    /// Item id to what a judge compares answers with.
    by_id: HashMap<String, JudgedItem>,
}

impl ItemBook {
    /// The profiler's built-in suites; empty (with a warning) if they cannot be read.
    pub(crate) fn builtin() -> Self {
        match switchyard_profiler::suite::builtin() {
            Ok(suites) => Self::from_suites(&suites),
            Err(e) => {
                tracing::warn!(error = %e, "profiling suites unavailable; the simulator will not recognise items");
                Self::default()
            }
        }
    }

    /// Indexes `suites`.
    pub(crate) fn from_suites(suites: &[Suite]) -> Self {
        let mut by_prompt = HashMap::new();
        let mut by_id = HashMap::new();
        for suite in suites {
            for (index, item) in suite.items.iter().enumerate() {
                by_id
                    .entry(item.id.clone())
                    .or_insert_with(|| JudgedItem { reference: item.reference.clone(), check: item.check.clone() });
                by_prompt.entry(item.prompt.clone()).or_insert_with(|| ItemEntry {
                    category: suite.category,
                    index,
                    reference: item.reference.clone(),
                    incorrect: item.check.incorrect_answer(),
                    check: item.check.clone(),
                });
            }
        }
        Self { by_prompt, by_id }
    }

    /// The item whose prompt is exactly `prompt` (surrounding whitespace ignored as a fallback).
    pub(crate) fn lookup(&self, prompt: &str) -> Option<&ItemEntry> {
        self.by_prompt.get(prompt).or_else(|| self.by_prompt.get(prompt.trim()))
    }

    /// The item whose prompt `task` is: the whole task, else what follows one of its blank lines (the router sends
    /// the system prompt, a blank line, then the user's turn), the longest such part first.
    fn task_item(&self, task: &str) -> Option<&ItemEntry> {
        self.lookup(task)
            .or_else(|| task.match_indices("\n\n").find_map(|(at, sep)| self.lookup(&task[at + sep.len()..])))
    }

    /// The reply of the judge model `judge` to `prompt` when it is a judge prompt (an item's, or one about any
    /// answer): a short justification and `Score: N` out of 10, 8-10 for a good answer and 1-3 for a bad one (the
    /// exact value drawn from `rng`). See the module documentation for what is good, and when a judge errs.
    pub(crate) fn judge_reply(&self, prompt: &str, judge: &FleetModel, rng: &mut Rng) -> Option<String> {
        let good = if let Some((id, answer)) = switchyard_profiler::judge::parse_judge_prompt(prompt) {
            self.by_id.get(&id).is_some_and(|item| passes(&answer, &item.reference, &item.check))
        } else {
            let (task, answer) = switchyard_profiler::judge::parse_answer_judge_prompt(prompt)?;
            match self.task_item(&task) {
                Some(item) => {
                    let good = passes(&answer, &item.reference, &item.check);
                    let u = unit(stable_hash_parts(&[
                        b"judge",
                        judge.name.as_str().as_bytes(),
                        task.as_bytes(),
                        answer.as_bytes(),
                    ]));
                    if u < judge.skill(item.category) { good } else { !good }
                }
                None => plausible(&answer),
            }
        };
        let reply = if good {
            format!(
                "The answer addresses the task, is correct and follows the requested format.\nScore: {}",
                rng.range(8, 10)
            )
        } else {
            format!("The answer is wrong, incomplete or ignores the task.\nScore: {}", rng.range(1, 3))
        };
        Some(reply)
    }

    /// Number of items indexed.
    pub(crate) fn len(&self) -> usize {
        self.by_prompt.len()
    }
}

/// True when `answer` is the reference (surrounding whitespace aside) or passes the checker.
fn passes(answer: &str, reference: &str, check: &Check) -> bool {
    answer.trim() == reference.trim() || check.evaluate(answer).correct() == Some(true)
}

/// True when an answer to a task that is no profiling item looks like an answer: not empty, not a refusal.
fn plausible(answer: &str) -> bool {
    let start: String =
        answer.trim_start().chars().take(12).collect::<String>().replace('\u{2019}', "'").to_lowercase();
    !start.is_empty() && !["i'm sorry", "i am sorry", "i cannot", "i can't"].iter().any(|r| start.starts_with(r))
}

/// True when `model` answers `item` correctly under `seed`.
pub(crate) fn answers_correctly(model: &FleetModel, item: &ItemEntry, seed: i64) -> bool {
    let r = unit(stable_hash_parts(&[model.name.as_str().as_bytes(), seed.to_string().as_bytes()]));
    let u = (van_der_corput(item.index) + r).fract();
    u < model.skill(item.category)
}

/// The base-2 radical inverse of `i`: 0, 1/2, 1/4, 3/4, 1/8, 5/8, ...
pub(crate) fn van_der_corput(i: usize) -> f64 {
    let mut n = i as u64;
    let mut value = 0.0;
    let mut weight = 0.5;
    while n > 0 {
        if n & 1 == 1 {
            value += weight;
        }
        n >>= 1;
        weight /= 2.0;
    }
    value
}

/// Maps a hash to [0, 1) with 53 bits of precision.
pub(crate) fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;

    #[test]
    fn van_der_corput_is_the_radical_inverse() {
        let got: Vec<f64> = (0..8).map(van_der_corput).collect();
        assert_eq!(got, vec![0.0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]);
        assert!(unit(u64::MAX) < 1.0);
    }

    #[test]
    fn any_prefix_is_close_to_skill_times_n() {
        let fleet = Fleet::builtin();
        for model in &fleet.models {
            for category in Category::PROFILED {
                let skill = model.skill(category);
                for seed in [0i64, 7, 42] {
                    let mut correct = 0usize;
                    for n in 1..=200usize {
                        let item = ItemEntry {
                            category,
                            index: n - 1,
                            reference: String::new(),
                            incorrect: String::new(),
                            check: Check::Judge { rubric: String::new() },
                        };
                        correct += usize::from(answers_correctly(model, &item, seed));
                        let expected = skill * n as f64;
                        // A shifted van der Corput sequence has discrepancy O(log n / n): within a few items.
                        assert!(
                            (correct as f64 - expected).abs() <= 2.0 + (n as f64).log2(),
                            "{} {category} seed {seed}: {correct} of {n}, expected {expected:.1}",
                            model.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn judge_prompts_get_scores_that_agree_with_the_checkers() {
        use switchyard_profiler::judge::{judge_prompt, parse_judge_reply};
        let suites = switchyard_profiler::suite::builtin().unwrap();
        let book = ItemBook::from_suites(&suites);
        let mut rng = Rng::new(1);
        // Item judge prompts are never flipped, whatever the judge's skill.
        let judge = judge_with_skill(0.0);
        for suite in &suites {
            let item = &suite.items[0];
            let good = book.judge_reply(&judge_prompt(item, &item.reference), &judge, &mut rng).unwrap();
            assert!(parse_judge_reply(&good).unwrap() >= 0.8, "{}: {good}", item.id);
            let bad = book.judge_reply(&judge_prompt(item, &item.check.incorrect_answer()), &judge, &mut rng).unwrap();
            assert!(parse_judge_reply(&bad).unwrap() <= 0.3, "{}: {bad}", item.id);
        }
        assert!(book.judge_reply("Is this a judge prompt?", &judge, &mut rng).is_none());
    }

    /// A model of the built-in fleet with `skill` in every category.
    fn judge_with_skill(skill: f64) -> FleetModel {
        let mut model = Fleet::builtin().models[0].clone();
        model.skills = Category::PROFILED.into_iter().map(|c| (c, skill)).collect();
        model
    }

    /// The score of a judge reply, in [0, 1].
    fn score(book: &ItemBook, judge: &FleetModel, task: &str, answer: &str) -> f64 {
        let prompt = switchyard_profiler::judge::answer_judge_prompt(task, answer);
        let reply = book.judge_reply(&prompt, judge, &mut Rng::new(3)).unwrap();
        switchyard_profiler::judge::parse_judge_reply(&reply).unwrap()
    }

    #[test]
    fn answer_judge_prompts_about_items_agree_with_the_checkers_for_a_perfect_judge() {
        let suites = switchyard_profiler::suite::builtin().unwrap();
        let book = ItemBook::from_suites(&suites);
        let judge = judge_with_skill(1.0);
        for suite in &suites {
            for item in suite.take(5) {
                // As the router sends it: the system prompt, a blank line, the user's turn; or the turn alone.
                let task = match &item.system {
                    Some(system) => format!("{system}\n\n{}", item.prompt),
                    None => item.prompt.clone(),
                };
                for task in [task.clone(), format!("You are a careful assistant.\n\n{task}")] {
                    let good = score(&book, &judge, &task, &item.reference);
                    assert!((0.8..=1.0).contains(&good), "{}: {good}", item.id);
                    let bad = score(&book, &judge, &task, &item.check.incorrect_answer());
                    assert!((0.1..=0.3).contains(&bad), "{}: {bad}", item.id);
                }
                let padded = format!("  {}\n", item.reference);
                assert!(score(&book, &judge, &item.prompt, &padded) >= 0.8, "{}: whitespace aside", item.id);
            }
        }
    }

    #[test]
    fn answer_judge_prompts_about_other_tasks_reject_empty_answers_and_refusals() {
        let book = ItemBook::from_suites(&switchyard_profiler::suite::builtin().unwrap());
        // No flipping outside items, even for a judge with no skill at all.
        let judge = judge_with_skill(0.0);
        let task = "Be brief.\n\nWrite a haiku about trains.";
        assert!(
            score(
                &book,
                &judge,
                task,
                "Steel wheels hum at dusk\nplatform lights blink one by one\nhome is two stops on"
            ) >= 0.8
        );
        assert!(score(&book, &judge, task, "```python\ndef solve(:\n```") >= 0.8, "only the form is judged");
        for bad in [
            "",
            "  \n ",
            "I'm sorry, but I can't help with that request.",
            "I cannot do that.",
            "i can't write poems",
            "I\u{2019}m sorry, no.",
        ] {
            assert!(score(&book, &judge, task, bad) <= 0.3, "{bad:?}");
        }
    }

    #[test]
    fn a_judge_errs_on_items_as_often_as_its_skill_says() {
        let suites = switchyard_profiler::suite::builtin().unwrap();
        let book = ItemBook::from_suites(&suites);
        let judge = judge_with_skill(0.5);
        let item = &suites[0].items[0];
        // 200 distinct answers the checker rejects: a reliable judge scores all low, this one flips about half.
        let flipped = (0..200)
            .filter(|i| {
                let answer = format!("{} (attempt {i})", item.check.incorrect_answer());
                assert!(!passes(&answer, &item.reference, &item.check));
                score(&book, &judge, &item.prompt, &answer) >= 0.8
            })
            .count();
        assert!((60..=140).contains(&flipped), "{flipped} of 200 flipped");
        // The verdict is deterministic per (judge, task, answer).
        let answer = format!("{} (attempt 7)", item.check.incorrect_answer());
        assert_eq!(score(&book, &judge, &item.prompt, &answer), score(&book, &judge, &item.prompt, &answer));
        let reliable = judge_with_skill(1.0);
        assert!(score(&book, &reliable, &item.prompt, &answer) <= 0.3);
    }

    #[test]
    fn builtin_items_are_indexed_by_prompt() {
        let book = ItemBook::builtin();
        let suites = switchyard_profiler::suite::builtin().unwrap();
        assert!(book.len() >= suites.len());
        let first = &suites[0].items[0];
        let entry = book.lookup(&first.prompt).unwrap();
        assert_eq!(entry.index, 0);
        assert_eq!(entry.reference, first.reference);
        assert!(book.lookup("certainly not an item prompt").is_none());
    }
}
