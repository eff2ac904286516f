//! The model shipped in the binary: it loads, and it classifies a fixed set of prompts exactly as recorded in
//! `golden.jsonl` (category and every logit), so a build on another machine, compiler or CPU that read it
//! differently would fail here. After retraining (`scripts/train-classifier.sh`), rewrite the file with
//! `SY_UPDATE_GOLDEN=1 cargo test -p switchyard-classifier --test shipped_model` and review the diff.

use serde::{Deserialize, Serialize};
use switchyard_classifier::features::{self, Features};
use switchyard_classifier::model::LinearModel;
use switchyard_classifier::{Classifier, ClassifyInput, Role, SHIPPED_MODEL, Turn};
use switchyard_core::Category;

/// Prompts of every category and shape: short chat, code, equations, a document, a few-shot prompt.
fn prompts() -> Vec<String> {
    let mut p: Vec<String> = [
        "Write a Python function that checks whether a number is prime",
        "What is the capital of Australia?",
        "Prove that there are infinitely many primes",
        "Solve for x: 3x + 7 = 22",
        "hi there! how are you today?",
        "Write a haiku about the first snow of winter.",
        "Context: The Amazon river flows through Brazil, Peru and Colombia.\nQuestion: Which countries does the Amazon flow through? Answer with a span of the text.",
        "Alice, Bob and Claire each hold a ball: red, green, blue. Alice swaps with Bob, then Bob swaps with Claire. What ball does Claire hold?",
        "why does this panic?\n```rust\nfn main() { let v: Vec<u8> = vec![]; println!(\"{}\", v[0]); }\n```",
        "Extract every date and person named in the following email as JSON.\n\nHi Tom, the review with Dana moved to 3 March.",
        "Can you recommend a good book for a long flight?",
        "Who painted the ceiling of the Sistine Chapel?",
        "A train leaves at 3 pm going 60 km/h; another leaves at 4 pm going 80 km/h. When does the second catch up?",
        "If all bloops are razzies and all razzies are lazzies, are all bloops definitely lazzies?",
        "Summarize the article above in three bullet points.",
        "Compose a limerick about a cat who learns to code.",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut few_shot = String::new();
    for i in 0..6 {
        few_shot.push_str(&format!("Q: What is {i} plus {}?\nA: {}\n\n", i + 2, 2 * i + 2));
    }
    few_shot.push_str("Q: Natalia sold clips to 48 friends in April, and half as many in May. How many in all?\nA:");
    p.push(few_shot);
    let mut document = "The quarterly report covers revenue, staffing and the new office. ".repeat(600);
    document.push_str("\n\nWhat was the main reason given for the staffing change?");
    p.push(document);
    p
}

#[derive(Debug, Serialize, Deserialize)]
struct Golden {
    prompt: String,
    category: Category,
    logits: Vec<f32>,
}

fn golden_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden.jsonl")
}

#[test]
fn the_shipped_model_loads_and_is_used() {
    let model = LinearModel::from_bytes(SHIPPED_MODEL).unwrap();
    assert!(model.bits() >= 16, "a real model, not a placeholder");
    assert!(model.temperature() > 0.0);
    assert!(Classifier::new().learned());
    assert!(!Classifier::rules().learned());
}

#[test]
fn fixed_prompts_classify_exactly_as_recorded() {
    let model = LinearModel::from_bytes(SHIPPED_MODEL).unwrap();
    let classifier = Classifier::new();
    let mut features = Features::new();
    let now: Vec<Golden> = prompts()
        .into_iter()
        .map(|prompt| {
            features::extract(&prompt, model.bits(), &mut features);
            let logits = model.logits(&features).to_vec();
            let turns = [Turn { role: Role::User, text: &prompt, images: 0 }];
            let category = classifier.classify(&ClassifyInput::text(&turns)).category;
            Golden { prompt, category, logits }
        })
        .collect();
    if std::env::var("SY_UPDATE_GOLDEN").is_ok() {
        let lines: Vec<String> = now.iter().map(|g| serde_json::to_string(g).unwrap()).collect();
        std::fs::write(golden_path(), lines.join("\n") + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(golden_path()).unwrap();
    let recorded: Vec<Golden> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recorded.len(), now.len(), "the prompt list changed: rewrite golden.jsonl");
    for (r, n) in recorded.iter().zip(&now) {
        assert_eq!(r.prompt, n.prompt);
        assert_eq!(r.category, n.category, "{:?}", n.prompt);
        for (a, b) in r.logits.iter().zip(&n.logits) {
            assert!((a - b).abs() <= 1e-5, "{:?}: logits {:?} recorded, {:?} now", n.prompt, r.logits, n.logits);
        }
    }
}

#[test]
fn obvious_prompts_get_their_category() {
    // Plain requests of each category, written for this test (not in the training corpus). A model that got these
    // wrong would be broken, whatever its held-out figures say.
    let cases = [
        ("Write a JavaScript function that debounces another function.", Category::Coding),
        ("Fix this SQL: SELECT name FROM users WHERE age > 30 ORDER name;", Category::Coding),
        ("What is the derivative of x^3 + 2x?", Category::Math),
        ("Compute 17 * 23 and show your steps.", Category::Math),
        ("Who wrote Pride and Prejudice?", Category::Factual),
        ("When did the Berlin Wall fall?", Category::Factual),
        ("Write a short poem about the sea at night.", Category::Creative),
        ("Tell me a bedtime story about a brave little fox.", Category::Creative),
    ];
    let classifier = Classifier::new();
    for (prompt, want) in cases {
        let turns = [Turn { role: Role::User, text: prompt, images: 0 }];
        let got = classifier.classify(&ClassifyInput::text(&turns));
        assert_eq!(got.category, want, "{prompt:?}: {:?}", got.scores);
    }
}

#[test]
fn a_follow_up_keeps_the_conversations_category_and_a_new_request_wins() {
    let classifier = Classifier::new();
    let conversation = |last: &'static str| {
        vec![
            Turn { role: Role::User, text: "Solve for x: 3x + 2 = 11, and show each step.", images: 0 },
            Turn { role: Role::Assistant, text: "Subtract 2 from both sides: 3x = 9, so x = 3.", images: 0 },
            Turn { role: Role::User, text: last, images: 0 },
        ]
    };
    let turns = conversation("why did you subtract first?");
    let follow_up = classifier.classify(&ClassifyInput::text(&turns));
    let alone = [Turn { role: Role::User, text: "why did you subtract first?", images: 0 }];
    let alone = classifier.classify(&ClassifyInput::text(&alone));
    let math = Category::Math.index();
    assert!(follow_up.scores[math] > alone.scores[math], "{:?} vs {:?}", follow_up.scores, alone.scores);
    let turns = conversation("Now write a haiku about autumn leaves.");
    assert_eq!(classifier.classify(&ClassifyInput::text(&turns)).category, Category::Creative);
}
