//! `switchyard-train`: trains the request classifier on a labelled corpus, evaluates it on held-out sources and
//! writes the model shipped in the binary. `scripts/train-classifier.sh` runs it; see `docs/classifier.md`.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_classifier::train::{self, Settings};

/// Train Switchyard's request classifier.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Corpus: JSON lines of {"text", "category", "source", "split": train|validation|test} (scripts/classifier/fetch_corpus.py writes it).
    #[arg(long)]
    corpus: PathBuf,
    /// Where to write the trained model (not needed with --cross-validate).
    #[arg(long, required_unless_present = "cross_validate")]
    out: Option<PathBuf>,
    /// Where to write the evaluation report (markdown); printed to stdout as well.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where to write the validation sources' misclassified prompts (tab-separated), for error analysis.
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Where to write labelled examples for the embedding classifier (JSON lines of {"category", "prompt"}).
    #[arg(long)]
    examples_out: Option<PathBuf>,
    /// Examples per category written to --examples-out.
    #[arg(long, default_value_t = 80)]
    examples_per_category: usize,
    /// Feature buckets are 2^bits (the model is 8 * 2^bits bytes).
    #[arg(long, default_value_t = Settings::default().bits, value_parser = clap::value_parser!(u32).range(8..=24))]
    bits: u32,
    /// Passes over the training data.
    #[arg(long, default_value_t = Settings::default().epochs)]
    epochs: u32,
    /// AdaGrad learning rate.
    #[arg(long, default_value_t = Settings::default().learning_rate)]
    learning_rate: f32,
    /// At most this many examples per training or validation source (test sources are evaluated whole).
    #[arg(long, default_value_t = Settings::default().max_per_source)]
    max_per_source: usize,
    /// Seed of shuffles and samples.
    #[arg(long, default_value_t = Settings::default().seed)]
    seed: u64,
    /// Within a category, an example weighs 1 / n^P, n its source's examples of that category (0 to 1; 0: every
    /// example the same, so a large source dominates; 1: every source the same).
    #[arg(long, value_name = "P", default_value_t = Settings::default().source_power, value_parser = power)]
    source_power: f32,
    /// Instead of training: cross-validate by source over the training and validation sources in this many groups
    /// (each predicted by a model trained on the others) and print per-source and per-category accuracy; nothing
    /// else is written.
    #[arg(long, value_name = "GROUPS", value_parser = clap::value_parser!(u64).range(2..),
          conflicts_with_all = ["out", "report", "errors", "examples_out"])]
    cross_validate: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.corpus).with_context(|| format!("reading {}", args.corpus.display()))?;
    let corpus = train::read_corpus(&text)?;
    let settings = Settings {
        bits: args.bits,
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        max_per_source: args.max_per_source,
        seed: args.seed,
        source_power: args.source_power,
        ..Settings::default()
    };
    let Some(out) = &args.out else {
        let groups = args.cross_validate.unwrap_or(5) as usize;
        print_cross_validation(&train::cross_validate(&corpus, &settings, groups));
        return Ok(());
    };
    eprintln!("training on {} examples ...", corpus.len());
    let outcome = train::run(&corpus, &settings)?;
    std::fs::write(out, outcome.model.to_bytes()).with_context(|| format!("writing {}", out.display()))?;
    if let Some(path) = &args.report {
        std::fs::write(path, &outcome.report).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", outcome.report);
    if let Some(path) = &args.examples_out {
        let lines = train::embedding_examples(&corpus, args.examples_per_category, args.seed);
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(path), Some(v)) = (&args.errors, &outcome.validation) {
        std::fs::write(path, v.errors.join("\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(v) = &outcome.validation {
        let per: Vec<String> = switchyard_core::Category::ALL
            .iter()
            .filter_map(|c| {
                let (k, n) = v.category(*c);
                (n > 0).then(|| format!("{c} {:.1}% of {n}", f64::from(k) * 100.0 / f64::from(n)))
            })
            .collect();
        eprintln!("validation: {:.1}%: {}", v.accuracy() * 100.0, per.join(", "));
    }
    eprintln!(
        "held-out accuracy {:.1}%, mean of the categories {:.1}% (rules {:.1}%, {:.1}%); model written to {}",
        outcome.learned.accuracy() * 100.0,
        outcome.learned.macro_accuracy() * 100.0,
        outcome.rules.accuracy() * 100.0,
        outcome.rules.macro_accuracy() * 100.0,
        out.display()
    );
    Ok(())
}

/// The cross-validation's figures: per source, then per category (pooled, and the mean over sources).
fn print_cross_validation(cv: &train::CrossValidation) {
    println!("| source | category | prompts | accuracy |\n|---|---|---:|---:|");
    for (source, category, right, n) in &cv.per_source {
        println!("| {source} | {category} | {n} | {:.1}% |", f64::from(*right) * 100.0 / f64::from((*n).max(1)));
    }
    println!("\n| category | prompts | pooled | mean over sources (sources) |\n|---|---:|---:|---:|");
    let mut means = Vec::new();
    for c in switchyard_core::Category::ALL {
        let (k, n) = cv.pooled.category(c);
        let mean = cv.source_mean(c);
        if let Some((m, _)) = mean {
            means.push(m);
        }
        let mean = mean.map_or_else(|| "-".to_string(), |(m, s)| format!("{:.1}% ({s})", m * 100.0));
        println!("| {c} | {n} | {:.1}% | {mean} |", f64::from(k) * 100.0 / f64::from(n.max(1)));
    }
    let overall = means.iter().sum::<f64>() / means.len().max(1) as f64;
    println!(
        "\npooled {:.1}%, mean over categories of the source means {:.1}%",
        cv.pooled.accuracy() * 100.0,
        overall * 100.0
    );
}

/// `--source-power`: a number from 0 to 1.
fn power(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{text} is not a number from 0 to 1")),
    }
}
