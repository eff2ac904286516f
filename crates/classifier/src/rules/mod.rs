//! The rule classifier: cue words and phrases on word boundaries plus the shape of the text, hand-weighted.
//!
//! It was `auto`'s classifier before the learned one ([`crate::Classifier`]); it stays as a baseline the training
//! report compares against, and its structural scan ([`scan`]) feeds the learned model's features.

pub(crate) mod lexicon;
pub(crate) mod scan;

use crate::{Classification, ClassifyInput, Needs, Role};
use scan::{Shape, Votes};
use switchyard_core::Category;

/// Bytes scanned from the start of the last user turn.
const FOCUS_HEAD: usize = 2048;
/// Bytes scanned from the end of the last user turn when it is longer than `FOCUS_HEAD + FOCUS_TAIL`.
const FOCUS_TAIL: usize = 1024;
/// Bytes scanned from the start of any other turn.
const CONTEXT_HEAD: usize = 512;
/// Bytes scanned from the end of any other turn.
const CONTEXT_TAIL: usize = 256;
/// Bytes scanned over all other turns together, most recent first; older turns beyond it are not read.
const CONTEXT_BUDGET: usize = 6144;
/// Most votes a category can get from the turns other than the last user turn.
const CONTEXT_CAP: f32 = 2.5;
/// Beyond this length a turn's small-talk cues count less and less.
const CHAT_BYTES: f32 = 300.0;
/// Task votes at which a turn's small-talk cues count half.
const POLITENESS: f32 = 4.0;
/// Votes `General` gets for free: another category must beat this to claim a request.
const GENERAL_BASELINE: f32 = 1.5;
/// Votes added to `Extraction` when the client asks for JSON output.
const JSON_BIAS: f32 = 2.0;
/// Per-turn votes saturate towards this value, so one long turn cannot drown the others.
const SATURATION: f32 = 12.0;
/// Temperature of the softmax that turns votes into scores.
const TEMPERATURE: f32 = 1.5;

/// The rule-based classifier: cue words and phrases on word boundaries, plus the shape of the text.
///
/// Cheap to copy; the compiled cue table is shared by the whole process.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleClassifier {
    /// Reserved for per-instance settings; keeps construction explicit.
    _private: (),
}

impl RuleClassifier {
    /// A classifier over the built-in cue table. The first call in a process compiles the table (a few
    /// milliseconds), so construct one at start-up rather than on the first request.
    pub fn new() -> Self {
        scan::prepare();
        Self { _private: () }
    }

    /// Classifies a conversation.
    pub fn classify(&self, input: &ClassifyInput<'_>) -> Classification {
        let mut totals = self.votes(input);
        totals[Category::General.index()] += GENERAL_BASELINE;
        if input.wants_json {
            totals[Category::Extraction.index()] += JSON_BIAS;
        }
        let scores = softmax(&totals);
        let (best, confidence) = argmax(&scores);
        let category = Category::ALL[best];
        Classification { category, confidence, needs: Needs::of(input, category), scores }
    }

    /// Votes of the conversation, before the baseline and biases: the last user turn's own votes plus the
    /// weighted mean of the other turns' votes, capped so that no history outvotes a clear request.
    fn votes(&self, input: &ClassifyInput<'_>) -> Votes {
        let turns = input.turns;
        let focus = turns.iter().rposition(|t| t.role == Role::User).or(turns.len().checked_sub(1));
        let mut totals = [0.0f32; 7];
        let mut context = [0.0f32; 7];
        let mut context_weight = 0.0f32;
        let mut earlier_users = 0;
        let mut budget = CONTEXT_BUDGET;
        for (i, turn) in turns.iter().enumerate().rev() {
            if Some(i) == focus {
                let votes = turn_votes(turn.text, Window { head: FOCUS_HEAD, tail: FOCUS_TAIL });
                for (t, v) in totals.iter_mut().zip(votes) {
                    *t += saturate(v);
                }
                continue;
            }
            if budget == 0 {
                break;
            }
            let want = turn.text.len().min(CONTEXT_HEAD + CONTEXT_TAIL).min(budget);
            budget -= want;
            let weight = crate::context_weight(turn.role, &mut earlier_users);
            let votes = turn_votes(turn.text, Window { head: want - want / 3, tail: want / 3 });
            for (c, v) in context.iter_mut().zip(votes) {
                *c += weight * saturate(v);
            }
            context_weight += weight;
        }
        let norm = context_weight.max(1.0);
        for (t, c) in totals.iter_mut().zip(context) {
            *t += (c / norm).min(CONTEXT_CAP);
        }
        totals
    }
}

/// The bytes of a turn that are scanned: its first `head` and its last `tail`.
#[derive(Debug, Clone, Copy)]
struct Window {
    head: usize,
    tail: usize,
}

/// Votes of one turn's text, scanning at most its window.
fn turn_votes(text: &str, window: Window) -> Votes {
    let bytes = text.as_bytes();
    let mut raw = [0.0f32; 8];
    let mut shape = Shape::default();
    if bytes.len() <= window.head + window.tail {
        scan::vote_cues(bytes, &mut raw);
        scan::scan_shape(bytes, &mut shape);
    } else {
        let head = &bytes[..window.head];
        let tail = &bytes[bytes.len() - window.tail..];
        scan::vote_cues(head, &mut raw);
        scan::vote_cues(tail, &mut raw);
        scan::scan_shape(head, &mut shape);
        scan::scan_shape(tail, &mut shape);
    }
    votes_of(raw, &shape, bytes.len())
}

/// The rules' single-turn verdict from a text's cue votes (before the shape's) and shape: the category they would
/// pick and its score. The learned model takes it as a feature.
pub(crate) fn verdict(cues: &scan::TurnVotes, shape: &Shape, len: usize) -> (usize, f32) {
    let mut totals = votes_of(*cues, shape, len).map(saturate);
    totals[Category::General.index()] += GENERAL_BASELINE;
    argmax(&softmax(&totals))
}

/// A turn's votes from its cue votes and shape.
fn votes_of(mut raw: scan::TurnVotes, shape: &Shape, len: usize) -> Votes {
    scan::vote_shape(shape, &mut raw);
    let general = Category::General.index();
    let task = (0..7).filter(|i| *i != general).map(|i| raw[i]).fold(0.0f32, f32::max);
    // Small talk is short: inside a pasted document ("Hi all, thanks for the call") its cues say little.
    let length = (CHAT_BYTES / len.max(1) as f32).clamp(0.3, 1.0);
    // Advice and small-talk cues compete with task cues; courtesy ("Hi! ... Thanks!") around a task is politeness
    // and fades quickly once the turn asks for something.
    let courtesy = raw[scan::COURTESY_SLOT] / (1.0 + task * task / 2.0);
    let mut votes = [0.0f32; 7];
    votes.copy_from_slice(&raw[..7]);
    votes[general] = length * (raw[general] / (1.0 + task / POLITENESS) + courtesy);
    votes
}

/// Maps votes to `[0, SATURATION)`, close to linear for small counts.
fn saturate(v: f32) -> f32 {
    if v <= 0.0 { 0.0 } else { v / (1.0 + v / SATURATION) }
}

fn softmax(totals: &Votes) -> [f32; 7] {
    let max = totals.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut out = [0.0f32; 7];
    let mut sum = 0.0;
    for (o, t) in out.iter_mut().zip(totals) {
        *o = ((t - max) / TEMPERATURE).exp();
        sum += *o;
    }
    for o in &mut out {
        *o /= sum;
    }
    out
}

/// Index and value of the largest score; ties go to the earlier category.
fn argmax(scores: &[f32; 7]) -> (usize, f32) {
    let mut best = (Category::General.index(), f32::NEG_INFINITY);
    for (i, s) in scores.iter().enumerate() {
        if *s > best.1 {
            best = (i, *s);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Turn, expected_output_tokens};
    use switchyard_core::text::estimate_tokens;

    fn user(text: &str) -> Turn<'_> {
        Turn { role: Role::User, text, images: 0 }
    }

    fn classify_turns(turns: &[Turn<'_>]) -> Classification {
        let input = ClassifyInput::text(turns);
        RuleClassifier::new().classify(&input)
    }

    fn category_of(text: &str) -> Category {
        classify_turns(&[user(text)]).category
    }

    fn cue_votes(text: &str) -> scan::TurnVotes {
        let mut votes = [0.0; 8];
        scan::vote_cues(text.as_bytes(), &mut votes);
        votes
    }

    #[test]
    fn lexicon_compiles_and_is_well_formed() {
        assert!(scan::lexicon_ready());
        for (pattern, _, weight) in lexicon::CUES {
            assert!(!pattern.trim_matches(['*', '~']).is_empty(), "empty pattern");
            assert!(weight.is_finite() && *weight > 0.0, "{pattern}: weight {weight}");
            assert_eq!(pattern.trim(), *pattern, "{pattern:?} has stray spaces");
        }
    }

    #[test]
    fn capital_is_a_word_not_a_substring_trigger() {
        assert_eq!(category_of("What is the capital of France?"), Category::Factual);
        assert_eq!(cue_votes("What is the capital of France?")[Category::Coding.index()], 0.0);
        // "capita" and "capitalize" contain no cue of their own.
        assert_eq!(cue_votes("income per capita")[Category::Factual.index()], 0.0);
    }

    #[test]
    fn define_a_function_is_coding() {
        assert_eq!(category_of("How do I define a function with default arguments in Kotlin?"), Category::Coding);
        assert_eq!(category_of("define a function that returns the largest element of a list"), Category::Coding);
    }

    #[test]
    fn def_inside_longer_words_does_not_count() {
        assert_eq!(cue_votes("the constant was predefined and then redefined")[Category::Coding.index()], 0.0);
        assert_eq!(cue_votes("defined by default")[Category::Coding.index()], 0.0);
        let undefined = cue_votes("undefined")[Category::Coding.index()];
        let with_def = cue_votes("undefined def")[Category::Coding.index()];
        assert!(with_def > undefined, "a standalone def must count once");
        // Phrases win over their parts: "area code" is not a coding cue.
        assert_eq!(cue_votes("what's the area code for Seattle")[Category::Coding.index()], 0.0);
    }

    #[test]
    fn camel_case_error_names_count_but_plain_words_do_not() {
        assert!(cue_votes("KeyError: 'user'")[Category::Coding.index()] > 0.0);
        assert_eq!(cue_votes("a reign of terror")[Category::Coding.index()], 0.0);
    }

    #[test]
    fn structure_alone_identifies_code_and_equations() {
        let code = "fn main() {\n    let v = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}";
        assert_eq!(category_of(code), Category::Coding);
        assert_eq!(category_of("3x + 7 = 22"), Category::Math);
        assert_eq!(category_of("x^2 - 4 = 0, x = ?"), Category::Math);
    }

    #[test]
    fn greetings_and_empty_input_are_general() {
        assert_eq!(category_of("hi"), Category::General);
        assert_eq!(category_of(""), Category::General);
        assert_eq!(classify_turns(&[]).category, Category::General);
        assert_eq!(category_of("ok"), Category::General);
    }

    #[test]
    fn needs_come_from_the_request() {
        let image = Turn { role: Role::User, text: "what is in this picture?", images: 1 };
        let input = ClassifyInput {
            turns: &[image],
            has_tools: true,
            wants_json: true,
            max_output_tokens: Some(64),
            wants_thinking: false,
            wants_insert: false,
        };
        let c = RuleClassifier::new().classify(&input);
        assert!(c.needs.tools && c.needs.vision && c.needs.json);
        assert_eq!(c.needs.context_tokens, estimate_tokens(image.text) + 64);

        let plain = [user("write a haiku about rain")];
        let c = classify_turns(&plain);
        assert!(!c.needs.tools && !c.needs.vision && !c.needs.json);
        assert_eq!(c.category, Category::Creative);
        assert_eq!(c.needs.context_tokens, estimate_tokens(plain[0].text) + expected_output_tokens(Category::Creative));
    }

    #[test]
    fn wants_json_biases_towards_extraction() {
        let turns = [user("Jane Doe, 34, lives in Oslo and works as a nurse.")];
        let base = classify_turns(&turns);
        let input = ClassifyInput {
            turns: &turns,
            has_tools: false,
            wants_json: true,
            max_output_tokens: None,
            wants_thinking: false,
            wants_insert: false,
        };
        let json = RuleClassifier::new().classify(&input);
        assert!(json.scores[Category::Extraction.index()] > base.scores[Category::Extraction.index()]);
        assert_eq!(json.category, Category::Extraction);
    }

    #[test]
    fn scores_are_a_distribution() {
        let c = classify_turns(&[user("Prove that the square root of 2 is irrational.")]);
        let sum: f32 = c.scores.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        assert!(c.confidence > 0.0 && c.confidence <= 1.0);
        assert_eq!(c.confidence, c.scores[c.category.index()]);
        assert_eq!(c.category, Category::Math);
    }

    #[test]
    fn the_last_user_turn_weighs_most() {
        let turns = [
            user("how do I sort a vector of structs by a field in rust?"),
            Turn { role: Role::Assistant, text: "Use `v.sort_by_key(|p| p.age);`", images: 0 },
            user("thanks, that worked!"),
        ];
        assert_eq!(classify_turns(&turns).category, Category::General);

        let turns = [
            Turn { role: Role::System, text: "You are a senior Rust programmer who reviews code.", images: 0 },
            user("write a haiku about spring rain"),
        ];
        assert_eq!(classify_turns(&turns).category, Category::Creative);
    }

    #[test]
    fn earlier_turns_decide_a_follow_up_without_cues() {
        let turns = [
            user("solve for x: 3x + 2 = 11 and show each step"),
            Turn { role: Role::Assistant, text: "Subtract 2 from both sides: 3x = 9, so x = 3.", images: 0 },
            user("why did you do that first?"),
        ];
        assert_eq!(classify_turns(&turns).category, Category::Math);
    }

    #[test]
    fn huge_inputs_are_scanned_by_head_and_tail() {
        let mut text = String::from("Here is my program, it crashes with a segfault:\n```c\n");
        while text.len() < 2_000_000 {
            text.push_str("    total += values[i] * weights[i]; // accumulate\n");
        }
        text.push_str("```\nwhy does it crash?");
        let c = classify_turns(&[user(&text)]);
        assert_eq!(c.category, Category::Coding);
        assert_eq!(c.needs.context_tokens, estimate_tokens(&text) + expected_output_tokens(Category::Coding));

        let mut prose = "lorem ipsum dolor sit amet ".repeat(50_000);
        prose.push_str("\n\nSummarize the text above in three bullet points.");
        assert_eq!(category_of(&prose), Category::Extraction);
    }

    #[test]
    fn politeness_around_a_task_does_not_make_it_small_talk() {
        assert_eq!(category_of("Hi! Can you fix this Python error please? Thanks so much!"), Category::Coding);
        assert_eq!(
            category_of("hello, thank you for yesterday. could you write a limerick about a goose?"),
            Category::Creative
        );
    }

    #[test]
    fn long_conversations_are_read_within_a_budget() {
        let code = "fn main() {\n    let x: u32 = \"5\".parse().unwrap();\n    println!(\"{x}\");\n}\n".repeat(200);
        let mut turns = Vec::new();
        for _ in 0..100 {
            turns.push(user(&code));
            turns.push(Turn { role: Role::Assistant, text: &code, images: 0 });
        }
        turns.push(user("now write a haiku about autumn rain"));
        assert_eq!(classify_turns(&turns).category, Category::Creative);
        turns.pop();
        assert_eq!(classify_turns(&turns).category, Category::Coding);
    }

    #[test]
    fn multibyte_text_at_window_edges_is_harmless() {
        let text = "é".repeat(10_000);
        let c = classify_turns(&[user(&text)]);
        assert_eq!(c.category, Category::General);
    }

    #[test]
    fn roles_parse_from_wire_names() {
        assert_eq!(Role::from_name("developer"), Some(Role::System));
        assert_eq!(Role::from_name("Assistant"), Some(Role::Assistant));
        assert_eq!(Role::from_name("function"), Some(Role::Tool));
        assert_eq!(Role::from_name("narrator"), None);
    }

    #[test]
    fn max_output_tokens_replaces_the_category_default() {
        let turns = [user("write a long story about a lighthouse")];
        let input = ClassifyInput {
            turns: &turns,
            has_tools: false,
            wants_json: false,
            max_output_tokens: Some(4000),
            wants_thinking: false,
            wants_insert: false,
        };
        let c = RuleClassifier::new().classify(&input);
        assert_eq!(c.needs.context_tokens, estimate_tokens(turns[0].text) + 4000);
        for category in Category::ALL {
            assert!(expected_output_tokens(category) > 0);
        }
    }
}
