//! Invariants of the built-in suites that the profiler and the simulator rely on: every reference passes its own
//! checker, every stock wrong answer fails it and is deterministic, ids are unique, each category has enough
//! verifiable items, and judge prompts round-trip.

use std::collections::{BTreeSet, HashSet};
use switchyard_core::Category;
use switchyard_profiler::check::{Check, Verdict, extract_json};
use switchyard_profiler::judge::{judge_prompt, parse_judge_prompt};
use switchyard_profiler::suite::{self, Suite};

/// Fewest verifiable (non-judge) items a category may have.
const MIN_VERIFIABLE: usize = 25;

/// The built-in suites, or the message of the first one that fails to parse or validate.
fn suites() -> Result<Vec<Suite>, String> {
    suite::builtin().map_err(|e| e.to_string())
}

#[test]
fn every_profiled_category_has_one_suite() {
    let categories: Vec<Category> = suites().unwrap().iter().map(|s| s.category).collect();
    for category in Category::PROFILED {
        assert_eq!(categories.iter().filter(|c| **c == category).count(), 1, "{category}");
    }
    assert_eq!(categories.len(), Category::PROFILED.len());
}

#[test]
fn every_reference_passes_its_own_check() {
    for suite in suites().unwrap() {
        for item in &suite.items {
            let verdict = item.check.evaluate(&item.reference);
            if item.check.needs_judge() {
                assert_eq!(verdict, Verdict::NeedsJudge, "{}", item.id);
            } else {
                assert_eq!(verdict, Verdict::Scored { correct: true, score: 1.0 }, "{}: {:?}", item.id, item.reference);
            }
        }
    }
}

#[test]
fn every_incorrect_answer_fails_and_is_deterministic() {
    let again = suites().unwrap();
    for (suite, other) in suites().unwrap().iter().zip(&again) {
        for (item, twin) in suite.items.iter().zip(&other.items) {
            let wrong = item.check.incorrect_answer();
            assert_eq!(wrong, item.check.incorrect_answer(), "{}", item.id);
            assert_eq!(wrong, twin.check.incorrect_answer(), "{}: same across loads", item.id);
            assert_ne!(wrong.trim(), item.reference.trim(), "{}", item.id);
            if item.check.needs_judge() {
                assert_eq!(item.check.evaluate(&wrong), Verdict::NeedsJudge, "{}", item.id);
            } else {
                assert_eq!(item.check.evaluate(&wrong).correct(), Some(false), "{}: {wrong:?} must fail", item.id);
            }
        }
    }
}

#[test]
fn ids_are_unique_and_name_their_category() {
    let mut seen = HashSet::new();
    for suite in suites().unwrap() {
        for item in &suite.items {
            assert!(seen.insert(item.id.clone()), "{} appears twice", item.id);
            assert!(item.id.starts_with(&format!("{}-", suite.category)), "{} is not in {}", item.id, suite.category);
            assert_eq!(item.category, suite.category, "{}", item.id);
        }
    }
}

#[test]
fn each_category_has_enough_verifiable_items_of_the_intended_kinds() {
    for suite in suites().unwrap() {
        let verifiable: Vec<_> = suite.items.iter().filter(|i| !i.check.needs_judge()).collect();
        assert!(
            verifiable.len() >= MIN_VERIFIABLE,
            "{} has {} verifiable items, fewer than {MIN_VERIFIABLE}",
            suite.category,
            verifiable.len()
        );
        let kinds: BTreeSet<&str> = suite.items.iter().map(|i| i.check.kind()).collect();
        let wanted: &[&str] = match suite.category {
            Category::Coding => &["code_output", "regex", "must_include", "exact"],
            Category::Math => &["numeric"],
            Category::Reasoning => &["exact", "numeric", "regex"],
            Category::Factual => &["exact", "must_include", "numeric"],
            Category::Creative => &["constraints", "judge"],
            Category::Extraction => &["json", "exact", "regex"],
            Category::General => &[],
        };
        for kind in wanted {
            assert!(kinds.contains(kind), "{} has no {kind} item (has {kinds:?})", suite.category);
        }
        assert!(!suite.description.trim().is_empty(), "{}", suite.category);
        assert!(suite.version.starts_with("v1-"), "{}: {}", suite.category, suite.version);
    }
}

#[test]
fn creative_has_a_few_judged_items() {
    let creative = suites().unwrap().into_iter().find(|s| s.category == Category::Creative).expect("creative suite");
    let judged = creative.items.iter().filter(|i| i.check.needs_judge()).count();
    assert!((2..=5).contains(&judged), "{judged} judged items");
}

#[test]
fn verifiable_prompts_state_the_answer_format() {
    let cues = ["only", "exactly", "nothing else", "answer with", "answer yes or no", "reply with", "at most", "must"];
    for suite in suites().unwrap() {
        for item in suite.items.iter().filter(|i| !i.check.needs_judge()) {
            let prompt = item.prompt.to_lowercase();
            assert!(cues.iter().any(|c| prompt.contains(c)), "{}: the prompt does not say what to output", item.id);
        }
    }
}

#[test]
fn extraction_json_items_check_values_not_just_shape() {
    for suite in suites().unwrap() {
        for item in &suite.items {
            if let Check::Json { expect, .. } = &item.check {
                assert!(expect.is_some(), "{}: a json item without expect only checks the shape", item.id);
            }
        }
    }
}

#[test]
fn judge_prompts_round_trip_for_every_item() {
    for suite in suites().unwrap() {
        for item in &suite.items {
            for answer in [item.reference.clone(), item.check.incorrect_answer()] {
                let prompt = judge_prompt(item, &answer);
                assert_eq!(parse_judge_prompt(&prompt), Some((item.id.clone(), answer)), "{}", item.id);
            }
            assert_eq!(parse_judge_prompt(&item.prompt), None, "{}: an item prompt is not a judge prompt", item.id);
        }
    }
}

#[test]
fn embedded_suites_match_the_files_on_disk() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let from_disk = suite::load_dir(&dir).expect("suites/ loads");
    let embedded = suites().unwrap();
    let mut embedded_sorted: Vec<&Suite> = embedded.iter().collect();
    embedded_sorted.sort_by_key(|s| s.category);
    for (disk, builtin) in from_disk.iter().zip(embedded_sorted) {
        assert_eq!(disk.category, builtin.category);
        assert_eq!(disk.version, builtin.version);
        assert_eq!(disk.items.len(), builtin.items.len());
    }
}

/// Typical ways a model wraps a short answer.
fn short_answer_wrappers(answer: &str) -> Vec<String> {
    vec![
        format!("**{answer}**"),
        format!("Answer: {answer}"),
        format!("The answer is {answer}."),
        format!("Let me work through this carefully.\n\nFinal answer: {answer}"),
        format!("{answer}\n"),
    ]
}

#[test]
fn short_references_survive_common_wrappers() {
    for suite in suites().unwrap() {
        for item in &suite.items {
            let short = !item.reference.contains('\n') && item.reference.split_whitespace().count() <= 3;
            let wrapped = match &item.check {
                Check::Exact { .. } | Check::Numeric { .. } | Check::Regex { .. } if short => {
                    short_answer_wrappers(&item.reference)
                }
                Check::CodeOutput { expected } if !expected.contains('\n') => vec![
                    format!("It prints `{expected}`."),
                    format!("```\n{expected}\n```"),
                    format!("Output:\n{expected}"),
                    format!("The program prints {expected}"),
                ],
                Check::CodeOutput { expected } => vec![
                    format!("```text\n{expected}\n```"),
                    format!("The program prints:\n\n{expected}\n"),
                    format!("Output:\n```\n{expected}\n```\n\nEach line comes from one print call."),
                ],
                Check::Json { .. } => {
                    let value = extract_json(&item.reference).expect("the reference holds JSON");
                    vec![
                        format!("Here is the JSON:\n\n```json\n{value:#}\n```"),
                        format!("{value}\n\nLet me know if you need anything else."),
                        format!("```\n{value}\n```"),
                    ]
                }
                _ => Vec::new(),
            };
            for answer in wrapped {
                assert_eq!(item.check.evaluate(&answer).correct(), Some(true), "{}: {answer:?}", item.id);
            }
        }
    }
}
