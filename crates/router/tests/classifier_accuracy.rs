//! The labelled prompt sets in `data/`, read by the rule classifier (the baseline the learned model replaced) and
//! by the learned classifier's conversation handling.
//!
//! `classifier-prompts.jsonl` is the main set the rules were tuned on; `classifier-holdout.jsonl` was written
//! before tuning and never tuned against. Their single-prompt lines are one training source of the learned model
//! (its held-out figures come from public data: `docs/classifier.md`); their multi-turn lines are not, so the
//! learned model's figure on those is held out. Run with `--no-capture` to see
//! the confusion matrices, per-category accuracy and the misclassified prompts. A last test prints the cost of
//! one classification (meaningful in release mode); it asserts nothing about time.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::path::Path;
use std::time::Instant;
use switchyard::classify::{Classification, Classifier, ClassifyInput, Role, RuleClassifier, Turn};
use switchyard_core::Category;

/// One labelled line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Labelled {
    category: Category,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    turns: Option<Vec<OwnedTurn>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnedTurn {
    role: Role,
    text: String,
}

impl Labelled {
    fn owned_turns(&self) -> anyhow::Result<Vec<(Role, &str)>> {
        match (&self.prompt, &self.turns) {
            (Some(p), None) => Ok(vec![(Role::User, p.as_str())]),
            (None, Some(turns)) => Ok(turns.iter().map(|t| (t.role, t.text.as_str())).collect()),
            _ => bail!("a line needs exactly one of prompt and turns"),
        }
    }

    fn label(&self) -> String {
        let text = match (&self.prompt, &self.turns) {
            (Some(p), _) => p.clone(),
            (_, Some(turns)) => turns.last().map(|t| format!("[{} turns] {}", turns.len(), t.text)).unwrap_or_default(),
            _ => String::new(),
        };
        let flat: String = text.chars().map(|c| if c.is_whitespace() { ' ' } else { c }).collect();
        flat.chars().take(90).collect()
    }
}

fn load(name: &str) -> anyhow::Result<Vec<Labelled>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{name}:{}", i + 1)))
        .collect()
}

/// Classifies every item (or only the multi-turn ones), prints the report and returns the overall accuracy.
fn evaluate(
    name: &str,
    conversations_only: bool,
    classify: impl Fn(&ClassifyInput<'_>) -> Classification,
) -> anyhow::Result<f64> {
    let items: Vec<Labelled> = load(name)?.into_iter().filter(|l| !conversations_only || l.turns.is_some()).collect();
    let mut matrix = [[0usize; 7]; 7];
    let mut misses = Vec::new();
    for item in &items {
        let owned = item.owned_turns()?;
        let turns: Vec<Turn<'_>> = owned.iter().map(|(role, text)| Turn { role: *role, text, images: 0 }).collect();
        let input = ClassifyInput::text(&turns);
        let got = classify(&input);
        matrix[item.category.index()][got.category.index()] += 1;
        if got.category != item.category {
            misses.push(format!(
                "  {:<10} -> {:<10} ({:.2})  {}",
                item.category.as_str(),
                got.category.as_str(),
                got.confidence,
                item.label()
            ));
        }
    }
    let correct: usize = (0..7).map(|i| matrix[i][i]).sum();
    let accuracy = correct as f64 / items.len() as f64;

    println!("\n{name}: {correct}/{} correct, accuracy {accuracy:.3}", items.len());
    print!("{:<12}", "true\\pred");
    for c in Category::ALL {
        print!("{:>7}", &c.as_str()[..c.as_str().len().min(6)]);
    }
    println!("{:>9}", "acc");
    for (i, row) in matrix.iter().enumerate() {
        print!("{:<12}", Category::ALL[i].as_str());
        for n in row {
            print!("{n:>7}");
        }
        let total: usize = row.iter().sum();
        let acc = if total == 0 { 0.0 } else { row[i] as f64 / total as f64 };
        println!("{acc:>9.3}");
    }
    if !misses.is_empty() {
        println!("misclassified (expected -> got (confidence)):");
        for m in &misses {
            println!("{m}");
        }
    }
    Ok(accuracy)
}

#[test]
fn rules_main_set_accuracy() -> anyhow::Result<()> {
    let rules = RuleClassifier::new();
    let accuracy = evaluate("classifier-prompts.jsonl", false, |i| rules.classify(i))?;
    assert!(accuracy >= 0.90, "main-set accuracy {accuracy:.3} < 0.90");
    Ok(())
}

#[test]
fn rules_holdout_accuracy() -> anyhow::Result<()> {
    let rules = RuleClassifier::new();
    let accuracy = evaluate("classifier-holdout.jsonl", false, |i| rules.classify(i))?;
    assert!(accuracy >= 0.80, "held-out accuracy {accuracy:.3} < 0.80");
    Ok(())
}

#[test]
fn conversation_context_does_not_hurt_the_learned_classifier() {
    // Multi-turn lines are not in the learned model's training corpus (it takes single prompts only). Reading the
    // earlier turns must do at least as well as reading the last user turn alone. (Measured: 11 of 12 with them, 10
    // from the last turn alone; these natural, lower-case follow-ups are where the learned model is weakest, see
    // docs/classifier.md.)
    let learned = Classifier::new();
    let mut with_context = 0;
    let mut last_alone = 0;
    let mut total = 0;
    for name in ["classifier-prompts.jsonl", "classifier-holdout.jsonl"] {
        for item in load(name).unwrap().iter().filter(|l| l.turns.is_some()) {
            let owned = item.owned_turns().unwrap();
            let turns: Vec<Turn<'_>> = owned.iter().map(|(role, text)| Turn { role: *role, text, images: 0 }).collect();
            let last = turns.iter().rev().find(|t| t.role == Role::User).copied().unwrap();
            with_context += usize::from(learned.classify(&ClassifyInput::text(&turns)).category == item.category);
            last_alone += usize::from(learned.classify(&ClassifyInput::text(&[last])).category == item.category);
            total += 1;
        }
    }
    println!("conversations: {with_context}/{total} with context, {last_alone}/{total} from the last turn alone");
    assert!(total >= 8, "{total} conversations");
    assert!(with_context >= last_alone, "context hurt: {with_context} < {last_alone} of {total}");
}

#[test]
fn prompt_sets_are_large_and_balanced() -> anyhow::Result<()> {
    let main = load("classifier-prompts.jsonl")?;
    let holdout = load("classifier-holdout.jsonl")?;
    assert!(main.len() >= 350, "{}", main.len());
    assert!(holdout.len() >= 60, "{}", holdout.len());
    for category in Category::ALL {
        assert!(main.iter().filter(|l| l.category == category).count() >= 45, "{category}");
        assert!(holdout.iter().filter(|l| l.category == category).count() >= 8, "{category}");
    }
    Ok(())
}

/// Prints nanoseconds per classification over the main set (build with `--release` for a meaningful figure).
#[test]
fn cost_per_call() -> anyhow::Result<()> {
    let items = load("classifier-prompts.jsonl")?;
    let owned = items.iter().map(Labelled::owned_turns).collect::<anyhow::Result<Vec<_>>>()?;
    let turns: Vec<Vec<Turn<'_>>> =
        owned.iter().map(|o| o.iter().map(|(role, text)| Turn { role: *role, text, images: 0 }).collect()).collect();
    let classifier = Classifier::new();
    let classify = |t: &[Turn<'_>]| {
        let input = ClassifyInput::text(t);
        classifier.classify(&input)
    };
    for t in &turns {
        std::hint::black_box(classify(t));
    }
    let mut per_call = Vec::with_capacity(turns.len() * 20);
    for _ in 0..20 {
        for t in &turns {
            let start = Instant::now();
            std::hint::black_box(classify(std::hint::black_box(t)));
            per_call.push(start.elapsed().as_nanos());
        }
    }
    per_call.sort_unstable();
    let pct = |p: f64| per_call[((per_call.len() - 1) as f64 * p) as usize];
    let mean = per_call.iter().sum::<u128>() / per_call.len() as u128;
    println!(
        "\nrule classifier over {} prompts x 20: mean {mean} ns, p50 {} ns, p99 {} ns, max {} ns",
        turns.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );

    let mut huge = "lorem ipsum dolor sit amet ".repeat(40_000);
    huge.push_str("\nsummarize the text above");
    let huge_turn = [Turn { role: Role::User, text: &huge, images: 0 }];
    let start = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(classify(std::hint::black_box(&huge_turn)));
    }
    println!("1 MB prompt: {} ns per call", start.elapsed().as_nanos() / 100);
    Ok(())
}
