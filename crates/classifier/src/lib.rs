//! Request classification for `model: "auto"`: which task category a conversation belongs to, how sure that is
//! (calibrated probabilities over every category), and what the request needs from a model (tools, vision, JSON
//! output, thinking, fill-in-the-middle, context length).
//!
//! [`Classifier`] is a multinomial logistic regression over hashed word and structure features ([`features`]),
//! trained offline on public labelled prompts by `switchyard-train` (see `docs/classifier.md`) and shipped inside
//! the binary with 8-bit weights ([`model`]). It takes microseconds: each turn is read through a bounded view
//! (head, tail and samples of the middle), so a huge prompt costs no more than a long message.
//!
//! A conversation is weighed as follows: the last user turn decides; earlier user turns and the system prompt (most
//! recent first, within a byte budget) add their own centred logits with small weights (earlier user turns 0.45
//! decaying by 0.7 per turn, the system prompt 0.3), so that a follow-up without cues ("why?") keeps
//! the conversation's category while a clear new request wins. Earlier turns pull towards task categories only:
//! small talk in the history does not make the current request chat.
//!
//! The hand-written [`RuleClassifier`] stays as the baseline the training report compares against and as the
//! fallback should the shipped model ever fail to load.

mod error;
pub mod features;
pub mod model;
pub mod rules;
pub mod train;

pub use error::ClassifierError;
pub use rules::RuleClassifier;

use features::Features;
use model::{CLASSES, LinearModel};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use switchyard_core::Category;
use switchyard_core::text::estimate_tokens;

/// Who spoke a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions framing the conversation (`system`, and OpenAI's `developer`).
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
    /// Results of tool calls (`tool`, and OpenAI's older `function`).
    Tool,
}

impl Role {
    /// Maps a wire role name (Ollama or OpenAI) to a role; `None` for names no client sends. `chatbot` and `model`
    /// (Cohere's and Gemini's names for the assistant, which LlamaIndex passes on as they are) are the assistant.
    pub fn from_name(name: &str) -> Option<Role> {
        let name = name.trim();
        [
            ("system", Role::System),
            ("developer", Role::System),
            ("user", Role::User),
            ("assistant", Role::Assistant),
            ("chatbot", Role::Assistant),
            ("model", Role::Assistant),
            ("tool", Role::Tool),
            ("function", Role::Tool),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, role)| role)
    }
}

/// One turn of the conversation, borrowed from the parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn<'a> {
    /// Who spoke it.
    pub role: Role,
    /// Its text (for a generate request, the prompt as a user turn and the system prompt as a system turn).
    pub text: &'a str,
    /// How many images it carries.
    pub images: usize,
}

/// What the classifier looks at.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyInput<'a> {
    /// The conversation, oldest turn first.
    pub turns: &'a [Turn<'a>],
    /// The request offers tools to call.
    pub has_tools: bool,
    /// The request asks for JSON output (`format` or `response_format` set).
    pub wants_json: bool,
    /// The client's cap on output tokens (`num_predict`, `max_tokens`), if any.
    pub max_output_tokens: Option<u64>,
    /// The request asks the model to think (`think` set, or OpenAI's `reasoning_effort`).
    pub wants_thinking: bool,
    /// The request fills in the middle (a `suffix` on generate or completions).
    pub wants_insert: bool,
}

impl<'a> ClassifyInput<'a> {
    /// A plain conversation: no tools, no JSON, no cap on the answer, no thinking or fill-in-the-middle.
    pub fn text(turns: &'a [Turn<'a>]) -> Self {
        Self {
            turns,
            has_tools: false,
            wants_json: false,
            max_output_tokens: None,
            wants_thinking: false,
            wants_insert: false,
        }
    }
}

/// What a model must offer to serve the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Needs {
    /// Tool calling.
    pub tools: bool,
    /// Image input.
    pub vision: bool,
    /// Structured JSON output.
    pub json: bool,
    /// Thinking (`think`, `reasoning_effort`).
    pub thinking: bool,
    /// Fill-in-the-middle (`suffix`).
    pub insert: bool,
    /// Context window the request will fill: the prompt's estimated tokens plus the expected (or capped) output.
    pub context_tokens: u64,
}

impl Needs {
    /// Needs of `input` once its category is known (the category sets the expected output length).
    pub fn of(input: &ClassifyInput<'_>, category: Category) -> Needs {
        let prompt: u64 = input.turns.iter().map(|t| estimate_tokens(t.text)).fold(0, u64::saturating_add);
        let output = input.max_output_tokens.unwrap_or_else(|| expected_output_tokens(category));
        Needs {
            tools: input.has_tools,
            vision: input.turns.iter().any(|t| t.images > 0),
            json: input.wants_json,
            thinking: input.wants_thinking,
            insert: input.wants_insert,
            context_tokens: prompt.saturating_add(output),
        }
    }
}

/// The classifier's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    /// The chosen category.
    pub category: Category,
    /// How sure the classifier is, 0 to 1 (the chosen category's share of the scores).
    pub confidence: f32,
    /// What a model must offer.
    pub needs: Needs,
    /// Score per category, indexed like [`Category::ALL`], summing to 1; shown by `/admin/explain`.
    pub scores: [f32; 7],
}

/// Output tokens to expect from a request of `category` when the profiles have no measured figure.
pub fn expected_output_tokens(category: Category) -> u64 {
    match category {
        Category::Coding => 600,
        Category::Math => 400,
        Category::Reasoning => 500,
        Category::Factual => 150,
        Category::Creative => 500,
        Category::Extraction => 300,
        Category::General => 200,
    }
}

impl Classification {
    /// The `n` most likely categories with their probabilities, most likely first.
    pub fn top(&self, n: usize) -> Vec<(Category, f32)> {
        let mut all: Vec<(Category, f32)> = Category::ALL.iter().map(|c| (*c, self.scores[c.index()])).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.truncate(n);
        all
    }
}

/// The model shipped in the binary, written by `scripts/train-classifier.sh`.
pub const SHIPPED_MODEL: &[u8] = include_bytes!("../model/classifier.bin");

/// The shipped model, read once per process. `None` only if the file is malformed, which a unit test rules out.
static SHIPPED: LazyLock<Option<LinearModel<'static>>> = LazyLock::new(|| LinearModel::from_bytes(SHIPPED_MODEL).ok());

thread_local! {
    /// Each thread's feature buffer, reused across requests (it holds a bitmap of the model's buckets).
    static BUFFER: std::cell::RefCell<Features> = std::cell::RefCell::new(Features::new());
}

/// Bytes read from the head of any turn other than the last user turn.
const CONTEXT_BYTES: usize = 768;
/// Bytes read over all other turns together, most recent first; older turns beyond it are not read.
const CONTEXT_BUDGET: usize = 6144;

/// The learned classifier `auto` uses: the shipped model, or the rules if that model could not be read.
///
/// Cheap to clone (the model's weights are the binary's own bytes).
#[derive(Debug, Clone)]
pub struct Classifier {
    model: Option<LinearModel<'static>>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier {
    /// The classifier over the shipped model. Construct one at start-up: the first call reads the model and
    /// compiles the rule lexicon its features use (a few milliseconds).
    pub fn new() -> Self {
        rules::scan::prepare();
        Classifier { model: SHIPPED.clone() }
    }

    /// The hand-written rules alone (`routing.classifier = "rules"`).
    pub fn rules() -> Self {
        rules::scan::prepare();
        Classifier { model: None }
    }

    /// A classifier over another model (training and evaluation).
    pub fn with_model(model: LinearModel<'static>) -> Self {
        rules::scan::prepare();
        Classifier { model: Some(model) }
    }

    /// True when the learned model is in use (false: the rules answer).
    pub fn learned(&self) -> bool {
        self.model.is_some()
    }

    /// Classifies a conversation.
    pub fn classify(&self, input: &ClassifyInput<'_>) -> Classification {
        let Some(model) = &self.model else { return RuleClassifier::new().classify(input) };
        let logits = BUFFER.with_borrow_mut(|features| conversation_logits(model, input.turns, features));
        let scores = model.probabilities(&logits);
        let best = model::argmax(&scores);
        let category = Category::ALL[best];
        Classification { category, confidence: scores[best], needs: Needs::of(input, category), scores }
    }

    /// Probabilities of one text on its own, as a single user turn (training reports use it).
    pub fn probabilities(&self, text: &str) -> [f32; CLASSES] {
        let turns = [Turn { role: Role::User, text, images: 0 }];
        self.classify(&ClassifyInput::text(&turns)).scores
    }
}

/// Logits of a conversation: the last user turn's, plus the weighted, centred logits of earlier turns.
fn conversation_logits(model: &LinearModel<'_>, turns: &[Turn<'_>], features: &mut Features) -> [f32; CLASSES] {
    let focus = turns.iter().rposition(|t| t.role == Role::User).or(turns.len().checked_sub(1));
    let Some(focus) = focus else {
        features::extract("", model.bits(), features);
        return model.logits(features);
    };
    features::extract(turns[focus].text, model.bits(), features);
    let mut logits = model.logits(features);
    let mut context = [0.0f32; CLASSES];
    let mut total_weight = 0.0f32;
    let mut earlier_users = 0;
    let mut budget = CONTEXT_BUDGET;
    for (i, turn) in turns.iter().enumerate().rev() {
        // The model's own replies and tool results are phrased by the model, not the user ("Happy to help!"):
        // the user's and the system's words state the task.
        if i == focus || turn.text.is_empty() || matches!(turn.role, Role::Assistant | Role::Tool) {
            continue;
        }
        if budget == 0 {
            break;
        }
        let want = turn.text.len().min(CONTEXT_BYTES).min(budget);
        budget -= want;
        let weight = context_weight(turn.role, &mut earlier_users);
        features::extract(window(turn.text, want), model.bits(), features);
        let turn_logits = model.logits(features);
        let mean = turn_logits.iter().sum::<f32>() / CLASSES as f32;
        for (c, l) in context.iter_mut().zip(turn_logits) {
            *c += weight * (l - mean);
        }
        // Small talk earlier in the conversation ("hello", "Sure, go ahead") does not make the current request
        // chat: earlier turns may pull towards a task, never towards `general`.
        let general = Category::General.index();
        context[general] = context[general].min(0.0);
        total_weight += weight;
    }
    let norm = total_weight.max(1.0);
    for (l, c) in logits.iter_mut().zip(context) {
        *l += c / norm;
    }
    logits
}

/// How much a turn other than the last user turn weighs in the conversation's category: earlier user turns 0.45,
/// decaying by 0.7 per turn (`earlier_users` counts them, most recent first), the system prompt 0.3, assistant
/// turns 0.15, tool results 0.1. The rules weigh every role so; the learned classifier reads only user and system
/// turns.
pub(crate) fn context_weight(role: Role, earlier_users: &mut i32) -> f32 {
    match role {
        Role::User => {
            *earlier_users += 1;
            0.45 * 0.7f32.powi(*earlier_users - 1)
        }
        Role::System => 0.3,
        Role::Assistant => 0.15,
        Role::Tool => 0.1,
    }
}

/// The first `want` bytes of `text`, cut on a character boundary.
fn window(text: &str, want: usize) -> &str {
    if text.len() <= want {
        return text;
    }
    let mut end = want;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
