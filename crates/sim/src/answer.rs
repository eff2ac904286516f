//! What a simulated model answers: deterministic from (model, prompt, seed).
//!
//! In order: a tool call when tools are offered and the user spoke last; a judge's score for a profiler judge
//! prompt; a profiling item's reference (or a wrong answer, by the model's skill, see `items`); a JSON document for
//! `format`; an answer about a tool result; and otherwise plausible filler prose. Thinking models asked to think put
//! reasoning first. `num_predict` and `stop` cut the answer the way they cut a real one.
//!
//! A `bad_answer` fault (see `faults::BadAnswer`) spoils the plan: no content (`empty`); the first few tokens and
//! `done_reason` length (`truncated`); the planned JSON without its last closing bracket (`invalid_json`); a fixed
//! refusal (`refusal`) or python block that does not parse (`bad_code`); a tool call with `{}` as arguments
//! (`bad_tool_args`); valid JSON that breaks the requested schema (`schema_mismatch`); a profiling item's incorrect
//! answer whatever the skill (`wrong`).

use crate::faults::BadAnswer;
use crate::filler::{self, Rng};
use crate::fleet::FleetModel;
use crate::items::{self, ItemBook};
use crate::schema::{self, PromptValues};
use serde_json::{Map, Value, json};
use switchyard_core::text::{estimate_tokens, stable_hash_parts};

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DoneReason {
    /// The model finished (or hit a stop sequence).
    Stop,
    /// `num_predict` was reached.
    Length,
}

impl DoneReason {
    /// Ollama's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DoneReason::Stop => "stop",
            DoneReason::Length => "length",
        }
    }
}

/// A tool call the model makes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    /// `call_` and eight characters, deterministic.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// Its arguments, filled from the function's JSON schema.
    pub arguments: Map<String, Value>,
}

impl ToolCall {
    /// The call in Ollama's native shape (arguments as an object).
    pub(crate) fn native_json(&self, index: usize) -> Value {
        json!({"id": self.id, "function": {"index": index, "name": self.name, "arguments": self.arguments}})
    }
}

/// One streamed unit of an answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    /// A token of reasoning (`message.thinking`).
    Thinking(String),
    /// A token of the answer.
    Content(String),
    /// The tool calls, sent together in one chunk.
    ToolCalls(Vec<ToolCall>),
}

impl Piece {
    /// Output tokens this piece stands for.
    pub(crate) fn tokens(&self) -> u64 {
        match self {
            Piece::Thinking(_) | Piece::Content(_) => 1,
            Piece::ToolCalls(calls) => calls
                .iter()
                .map(|c| estimate_tokens(&Value::Object(c.arguments.clone()).to_string()) + 4)
                .sum::<u64>()
                .max(1),
        }
    }
}

/// A whole answer, before timing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    /// What is streamed, in order.
    pub pieces: Vec<Piece>,
    /// Why it ended.
    pub done_reason: DoneReason,
}

impl Answer {
    /// Output tokens in all (`eval_count`).
    pub(crate) fn tokens(&self) -> u64 {
        self.pieces.iter().map(Piece::tokens).sum()
    }

    /// The concatenated answer text.
    #[cfg(test)]
    pub(crate) fn content(&self) -> String {
        self.pieces.iter().filter_map(|p| if let Piece::Content(t) = p { Some(t.as_str()) } else { None }).collect()
    }

    /// The concatenated reasoning text.
    #[cfg(test)]
    pub(crate) fn thinking(&self) -> String {
        self.pieces.iter().filter_map(|p| if let Piece::Thinking(t) = p { Some(t.as_str()) } else { None }).collect()
    }

    /// The tool calls made.
    #[cfg(test)]
    pub(crate) fn tool_calls(&self) -> Vec<ToolCall> {
        self.pieces
            .iter()
            .filter_map(|p| if let Piece::ToolCalls(c) = p { Some(c.clone()) } else { None })
            .flatten()
            .collect()
    }
}

/// Structured output asked for with `format`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Format {
    /// Any JSON (`"json"`).
    Json,
    /// JSON satisfying this schema.
    Schema(Value),
}

/// Everything an answer depends on.
#[derive(Debug, Clone)]
pub(crate) struct Ask<'a> {
    /// The model answering.
    pub model: &'a FleetModel,
    /// The text looked up as a profiling item: `prompt` for generate, the last user message for chat.
    pub prompt: &'a str,
    /// The whole conversation as text, hashed for filler so that different conversations differ.
    pub conversation: &'a str,
    /// `options.seed` (0 when absent).
    pub seed: i64,
    /// `options.num_predict` when positive or zero; `None` for unlimited.
    pub num_predict: Option<u64>,
    /// The context length: no answer runs past it (which also bounds a huge `num_predict`).
    pub context: u64,
    /// `options.stop`.
    pub stop: &'a [String],
    /// Whether to produce reasoning first.
    pub think: bool,
    /// `format`.
    pub format: Option<&'a Format>,
    /// Tools to call (only when the user spoke last and the model supports tools).
    pub tools: &'a [Value],
    /// The last tool result, when the conversation ends with one.
    pub tool_result: Option<&'a str>,
    /// Answer badly, this way (an injected fault).
    pub bad_answer: Option<BadAnswer>,
}

/// What a `refusal` bad answer says.
pub(crate) const REFUSAL: &str = "I'm sorry, but I can't help with that request.";

/// What a `bad_code` bad answer says: a python block that does not parse, and a sentence.
pub(crate) const BAD_CODE: &str = "```python\ndef solve(:\n    return\n```\nThis function solves the task.";

/// Content tokens a `truncated` bad answer keeps of the normal answer (fewer when that is as short).
const TRUNCATED_TOKENS: usize = 3;

/// Plans the answer to `ask`.
pub(crate) fn answer(ask: &Ask<'_>, items: &ItemBook) -> Answer {
    let seed_text = ask.seed.to_string();
    let mut rng = Rng::new(stable_hash_parts(&[
        ask.model.name.as_str().as_bytes(),
        ask.conversation.as_bytes(),
        seed_text.as_bytes(),
    ]));
    let thinking: Vec<Piece> = if ask.think {
        let tokens = rng.range(12, 60) as usize;
        filler::split_pieces(&filler::thoughts(&mut rng, tokens)).into_iter().map(Piece::Thinking).collect()
    } else {
        Vec::new()
    };

    let bad = effective_bad_answer(ask);
    if bad == Some(BadAnswer::Empty) {
        return Answer { pieces: thinking, done_reason: DoneReason::Stop };
    }
    let calls_tools = matches!(bad, None | Some(BadAnswer::Wrong | BadAnswer::BadToolArgs));
    if calls_tools && let Some(mut call) = choose_tool(ask.tools, ask.prompt, &mut rng) {
        if bad == Some(BadAnswer::BadToolArgs) {
            call.arguments = Map::new();
        }
        let mut pieces = thinking;
        pieces.push(Piece::ToolCalls(vec![call]));
        return Answer { pieces, done_reason: DoneReason::Stop };
    }

    let (text, fixed, graded) = match bad {
        Some(BadAnswer::Refusal) => (REFUSAL.to_string(), true, false),
        Some(BadAnswer::BadCode) => (BAD_CODE.to_string(), true, false),
        Some(BadAnswer::InvalidJson) => {
            let (text, _, _) = planned_text(ask, items, &mut rng, false);
            (invalid_json(text), true, false)
        }
        Some(BadAnswer::SchemaMismatch) => (schema_mismatch(ask.format), true, false),
        _ => planned_text(ask, items, &mut rng, bad == Some(BadAnswer::Wrong)),
    };

    let (text, stopped) = cut_at_stop(text, ask.stop);
    let mut content = if !fixed || text.contains(char::is_whitespace) {
        filler::split_pieces(&text)
    } else {
        filler::split_chunks(&text)
    };
    let mut thinking = thinking;
    let limit = ask.num_predict.map_or(ask.context, |n| n.min(ask.context));
    let content_limit = if graded {
        limit
    } else {
        thinking.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        limit - thinking.len() as u64
    };
    let mut done_reason = DoneReason::Stop;
    if !stopped && content.len() as u64 >= content_limit {
        if content.len() as u64 > content_limit || (ask.num_predict.is_some() && !fixed) {
            done_reason = DoneReason::Length;
        }
        content.truncate(usize::try_from(content_limit).unwrap_or(usize::MAX));
    }
    if bad == Some(BadAnswer::Truncated) {
        content = truncated(content);
        done_reason = DoneReason::Length;
    }
    let mut pieces = thinking;
    pieces.extend(content.into_iter().map(Piece::Content));
    Answer { pieces, done_reason }
}

/// The bad answer to give, with the kinds that need something the request lacks (`format` for `invalid_json`, tools
/// for `bad_tool_args`) turned into `wrong`.
fn effective_bad_answer(ask: &Ask<'_>) -> Option<BadAnswer> {
    match ask.bad_answer? {
        BadAnswer::InvalidJson if ask.format.is_none() => Some(BadAnswer::Wrong),
        BadAnswer::BadToolArgs if ask.tools.is_empty() => Some(BadAnswer::Wrong),
        BadAnswer::SchemaMismatch if !matches!(ask.format, Some(Format::Schema(_))) => Some(BadAnswer::Wrong),
        kind => Some(kind),
    }
}

/// Valid JSON that a schema asking for anything of substance rejects: an empty array where it asks for an object,
/// an empty object otherwise (missing whatever the schema requires, and of the wrong type for any other).
fn schema_mismatch(format: Option<&Format>) -> String {
    let wants_object =
        matches!(format, Some(Format::Schema(s)) if s.get("type").and_then(Value::as_str) == Some("object"));
    if wants_object { "[]".to_string() } else { "{}".to_string() }
}

/// The answer's text when no tool is called: `(text, fixed, graded)`. `fixed`: the text has a length of its own
/// (not filler sized to num_predict). `graded`: a profiling item or a judge reply, whose reasoning does not eat into
/// num_predict, so that skills come out exactly as configured. `wrong` gives an item its incorrect answer whatever
/// the model's skill.
fn planned_text(ask: &Ask<'_>, items: &ItemBook, rng: &mut Rng, wrong: bool) -> (String, bool, bool) {
    if let Some(reply) = items.judge_reply(ask.prompt, ask.model, rng) {
        (reply, true, true)
    } else if let Some(item) = items.lookup(ask.prompt) {
        let correct = !wrong && items::answers_correctly(ask.model, item, ask.seed);
        (if correct { item.reference.clone() } else { item.incorrect.clone() }, true, true)
    } else if let Some(format) = ask.format {
        let value = match format {
            Format::Json => json!({"answer": filler::prose(rng, 12)}),
            Format::Schema(schema) => schema::instance(schema, &mut PromptValues::new(ask.prompt, &[])),
        };
        (value.to_string(), true, false)
    } else if let Some(result) = ask.tool_result {
        let quoted: Vec<&str> = result.split_whitespace().take(24).collect();
        let tokens = ask.num_predict.map_or_else(|| rng.range(12, 60), |n| n.min(ask.context).saturating_sub(4));
        (format!("The tool returned {}. {}", quoted.join(" "), filler::prose(rng, tokens as usize)), false, false)
    } else {
        let tokens = ask.num_predict.map_or_else(|| rng.range(20, 200), |n| n.min(ask.context));
        (filler::prose(rng, tokens as usize), false, false)
    }
}

/// `text` made into something that is not valid JSON: a JSON object or array without its last closing bracket,
/// other JSON wrapped in an unclosed object; text that is not JSON already stays as it is.
fn invalid_json(mut text: String) -> String {
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_) | Value::Array(_)) => {
            let trimmed = text.trim_end().len();
            text.truncate(trimmed.saturating_sub(1));
            text
        }
        Ok(_) => format!("{{\"answer\": {}", text.trim()),
        Err(_) if text.trim().is_empty() => "{\"answer\": ".to_string(),
        Err(_) => text,
    }
}

/// The first few pieces of `content`, always fewer than it had: a short answer is cut within its text.
fn truncated(mut content: Vec<String>) -> Vec<String> {
    if content.len() > TRUNCATED_TOKENS {
        content.truncate(TRUNCATED_TOKENS);
        return content;
    }
    let text = content.concat();
    let keep = text.chars().count() / 2;
    let half: String = text.chars().take(keep).collect();
    if half.contains(char::is_whitespace) { filler::split_pieces(&half) } else { filler::split_chunks(&half) }
}

/// Cuts `text` before the first stop sequence in it; true when one was found.
fn cut_at_stop(mut text: String, stop: &[String]) -> (String, bool) {
    let first = stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min();
    match first {
        Some(at) => {
            text.truncate(at);
            (text, true)
        }
        None => (text, false),
    }
}

/// Picks the tool whose name and description best match the prompt (else the first) and fills its arguments.
fn choose_tool(tools: &[Value], prompt: &str, rng: &mut Rng) -> Option<ToolCall> {
    let prompt_words: Vec<String> = words(prompt).iter().map(|w| schema::stem(w)).collect();
    let mut best: Option<(usize, &Value, Vec<String>)> = None;
    for tool in tools {
        let function = tool.get("function").unwrap_or(tool);
        let Some(name) = function.get("name").and_then(Value::as_str) else { continue };
        let name_words: Vec<String> = words(name).iter().map(|w| schema::stem(w)).collect();
        let description = function.get("description").and_then(Value::as_str).unwrap_or("");
        let description_words: Vec<String> = words(description).iter().map(|w| schema::stem(w)).collect();
        let score = 2 * name_words.iter().filter(|w| w.len() >= 3 && prompt_words.contains(w)).count()
            + description_words.iter().filter(|w| w.len() >= 4 && prompt_words.contains(w)).count();
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            let mut own = name_words;
            own.extend(description_words);
            best = Some((score, function, own));
        }
    }
    let (_, function, own_words) = best?;
    let name = function.get("name").and_then(Value::as_str)?.to_string();
    let parameters = function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}));
    let arguments = match schema::instance(&parameters, &mut PromptValues::new(prompt, &own_words)) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::from("call_");
    for _ in 0..8 {
        id.push(char::from(ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize]));
    }
    Some(ToolCall { id, name, arguments })
}

/// Lower-case words of `text`, splitting identifiers on `_`, `-`, `.` and case changes (`getWeather`).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && prev_lower && !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            prev_lower = c.is_lowercase();
            current.extend(c.to_lowercase());
        } else {
            prev_lower = false;
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use switchyard_core::ModelName;

    fn model(name: &str) -> FleetModel {
        Fleet::builtin().get(&ModelName::parse(name).unwrap()).unwrap().clone()
    }

    fn ask<'a>(model: &'a FleetModel, prompt: &'a str) -> Ask<'a> {
        Ask {
            model,
            prompt,
            conversation: prompt,
            seed: 0,
            num_predict: None,
            context: 4096,
            stop: &[],
            think: false,
            format: None,
            tools: &[],
            tool_result: None,
            bad_answer: None,
        }
    }

    #[test]
    fn filler_is_deterministic_per_model_prompt_and_seed() {
        let m = model("llama3.2:3b");
        let items = ItemBook::default();
        let a = answer(&ask(&m, "Tell me a story"), &items);
        assert_eq!(a, answer(&ask(&m, "Tell me a story"), &items));
        assert!((20..=200).contains(&a.tokens()));
        assert_eq!(a.done_reason, DoneReason::Stop);
        let seeded = answer(&Ask { seed: 9, ..ask(&m, "Tell me a story") }, &items);
        assert_ne!(a.content(), seeded.content());
        let other = model("llama3.1:8b");
        assert_ne!(a.content(), answer(&ask(&other, "Tell me a story"), &items).content());
    }

    #[test]
    fn num_predict_and_stop_cut_the_answer() {
        let m = model("llama3.2:3b");
        let items = ItemBook::default();
        let a = answer(&Ask { num_predict: Some(7), ..ask(&m, "hi") }, &items);
        assert_eq!((a.tokens(), a.done_reason), (7, DoneReason::Length));
        let huge = answer(&Ask { num_predict: Some(u64::MAX), context: 50, ..ask(&m, "hi") }, &items);
        assert_eq!((huge.tokens(), huge.done_reason), (50, DoneReason::Length));
        let tiny = answer(&Ask { context: 5, ..ask(&m, "hi") }, &items);
        assert_eq!((tiny.tokens(), tiny.done_reason), (5, DoneReason::Length));
        let full = answer(&ask(&m, "hi"), &items).content();
        let word = full.split_whitespace().nth(3).unwrap().to_string();
        let stop = [word.clone()];
        let cut = answer(&Ask { stop: &stop, ..ask(&m, "hi") }, &items);
        assert_eq!(cut.done_reason, DoneReason::Stop);
        assert!(!cut.content().contains(&word));
    }

    #[test]
    fn thinking_comes_first_and_counts_against_num_predict_except_for_items() {
        let m = model("deepseek-r1:14b");
        let a = answer(&Ask { think: true, ..ask(&m, "Why is the sky blue?") }, &ItemBook::default());
        assert!(matches!(a.pieces[0], Piece::Thinking(_)));
        assert!(!a.thinking().is_empty() && !a.content().is_empty());
        let short = answer(&Ask { think: true, num_predict: Some(8), ..ask(&m, "Why?") }, &ItemBook::default());
        assert_eq!((short.tokens(), short.done_reason), (8, DoneReason::Length));
        assert!(short.content().is_empty(), "the reasoning used the whole budget");

        let suites = switchyard_profiler::suite::builtin().unwrap();
        let book = ItemBook::from_suites(&suites);
        let item = &suites[1].items[0];
        let graded = answer(&Ask { think: true, num_predict: Some(8), ..ask(&m, &item.prompt) }, &book);
        assert!(!graded.thinking().is_empty());
        let text = graded.content();
        assert!(text == item.reference || text == item.check.incorrect_answer(), "{text:?}");
    }

    #[test]
    fn tools_are_chosen_by_words_and_filled_from_the_prompt() {
        let m = model("llama3.1:8b");
        let tools = vec![
            json!({"type": "function", "function": {"name": "get_time", "description": "Current time in a zone",
                "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}),
            json!({"type": "function", "function": {"name": "get_current_weather",
                "description": "Get the weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}),
        ];
        let a = answer(&Ask { tools: &tools, ..ask(&m, "What's the weather like in Toronto?") }, &ItemBook::default());
        let calls = a.tool_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "get_current_weather");
        assert_eq!(Value::Object(calls[0].arguments.clone()), json!({"city": "Toronto", "unit": "celsius"}));
        assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 13);
        let none_match = answer(&Ask { tools: &tools, ..ask(&m, "xyzzy") }, &ItemBook::default());
        assert_eq!(none_match.tool_calls()[0].name, "get_time");
    }

    #[test]
    fn formats_give_json_and_tool_results_give_text() {
        let m = model("llama3.1:8b");
        let schema = Format::Schema(json!({"type": "object", "properties": {"name": {"type": "string"},
            "age": {"type": "integer"}}, "required": ["name", "age"]}));
        let a = answer(&Ask { format: Some(&schema), ..ask(&m, "Alice is 31 years old.") }, &ItemBook::default());
        let v: Value = serde_json::from_str(&a.content()).unwrap();
        assert_eq!(v, json!({"name": "Alice", "age": 31}));
        let a = answer(&Ask { format: Some(&Format::Json), ..ask(&m, "anything") }, &ItemBook::default());
        assert!(serde_json::from_str::<Value>(&a.content()).unwrap().is_object());
        let a = answer(&Ask { tool_result: Some("22 degrees and sunny"), ..ask(&m, "") }, &ItemBook::default());
        assert!(a.content().starts_with("The tool returned 22 degrees and sunny."));
    }

    fn bad(kind: BadAnswer) -> Option<BadAnswer> {
        Some(kind)
    }

    #[test]
    fn bad_answers_empty_refusal_and_bad_code() {
        let m = model("llama3.1:8b");
        let items = ItemBook::default();
        let empty = answer(&Ask { bad_answer: bad(BadAnswer::Empty), ..ask(&m, "Tell me a story") }, &items);
        assert_eq!((empty.pieces.len(), empty.done_reason), (0, DoneReason::Stop));
        let tools = vec![json!({"type": "function", "function": {"name": "get_time", "parameters": {}}})];
        let empty = answer(&Ask { bad_answer: bad(BadAnswer::Empty), tools: &tools, ..ask(&m, "time?") }, &items);
        assert!(empty.pieces.is_empty(), "no tool call either");
        let thinker = model("deepseek-r1:14b");
        let thought = answer(&Ask { think: true, bad_answer: bad(BadAnswer::Empty), ..ask(&thinker, "Why?") }, &items);
        assert!(!thought.thinking().is_empty() && thought.content().is_empty());

        let refusal = answer(&Ask { bad_answer: bad(BadAnswer::Refusal), tools: &tools, ..ask(&m, "x") }, &items);
        assert_eq!((refusal.content(), refusal.done_reason), (REFUSAL.to_string(), DoneReason::Stop));
        assert!(refusal.tool_calls().is_empty());
        let code = answer(&Ask { bad_answer: bad(BadAnswer::BadCode), ..ask(&m, "Write a sort") }, &items);
        assert!(code.content().starts_with("```python\ndef solve(:"), "{}", code.content());
        assert!(code.content().contains("```\n") && code.content().ends_with('.'));
    }

    #[test]
    fn bad_answers_truncated_are_a_few_tokens_of_the_normal_one() {
        let m = model("llama3.1:8b");
        let items = ItemBook::default();
        let normal = answer(&ask(&m, "Tell me a story"), &items).content();
        let cut = answer(&Ask { bad_answer: bad(BadAnswer::Truncated), ..ask(&m, "Tell me a story") }, &items);
        assert_eq!((cut.tokens(), cut.done_reason), (TRUNCATED_TOKENS as u64, DoneReason::Length));
        assert!(normal.starts_with(&cut.content()) && normal.len() > cut.content().len());

        // A short item answer is cut within its text.
        let suites = switchyard_profiler::suite::builtin().unwrap();
        let book = ItemBook::from_suites(&suites);
        let strong = model("llama3.3:70b");
        for item in suites.iter().flat_map(|s| s.take(3)) {
            let normal = answer(&ask(&strong, &item.prompt), &book).content();
            let cut = answer(&Ask { bad_answer: bad(BadAnswer::Truncated), ..ask(&strong, &item.prompt) }, &book);
            assert_eq!(cut.done_reason, DoneReason::Length);
            assert!(normal.starts_with(&cut.content()) && normal.len() > cut.content().len(), "{}", item.id);
        }
    }

    #[test]
    fn bad_answers_invalid_json_needs_a_format() {
        let m = model("llama3.1:8b");
        let items = ItemBook::default();
        let schema = Format::Schema(json!({"type": "object", "properties": {"name": {"type": "string"}},
            "required": ["name"]}));
        for format in [&Format::Json, &schema] {
            let normal = answer(&Ask { format: Some(format), ..ask(&m, "Alice is 31.") }, &items).content();
            let broken = answer(
                &Ask { format: Some(format), bad_answer: bad(BadAnswer::InvalidJson), ..ask(&m, "Alice is 31.") },
                &items,
            );
            assert!(serde_json::from_str::<Value>(&broken.content()).is_err(), "{}", broken.content());
            assert_eq!(format!("{}}}", broken.content()), normal, "the last brace dropped");
        }
        assert!(invalid_json("42".to_string()).starts_with("{\"answer\": 42"));
        assert_eq!(invalid_json("[1]".to_string()), "[1");
        assert!(serde_json::from_str::<Value>(&invalid_json(String::new())).is_err());
        // Without a format: wrong, which answers non-items normally.
        let plain = answer(&Ask { bad_answer: bad(BadAnswer::InvalidJson), ..ask(&m, "hi") }, &items);
        assert_eq!(plain, answer(&ask(&m, "hi"), &items));
    }

    #[test]
    fn bad_answers_schema_mismatch_is_valid_json_the_schema_rejects() {
        let m = model("llama3.1:8b");
        let items = ItemBook::default();
        let object = Format::Schema(json!({"type": "object", "properties": {"name": {"type": "string"}},
            "required": ["name"]}));
        let list = Format::Schema(json!({"type": "array", "items": {"type": "integer"}, "minItems": 1}));
        for (format, expected) in [(&object, json!([])), (&list, json!({}))] {
            let normal = answer(&Ask { format: Some(format), ..ask(&m, "Alice is 31.") }, &items).content();
            assert!(serde_json::from_str::<Value>(&normal).is_ok(), "{normal}");
            let bad = answer(
                &Ask { format: Some(format), bad_answer: bad(BadAnswer::SchemaMismatch), ..ask(&m, "Alice is 31.") },
                &items,
            );
            assert_eq!(serde_json::from_str::<Value>(&bad.content()).ok(), Some(expected));
            assert_eq!(bad.done_reason, DoneReason::Stop);
        }
        // Without a schema: wrong, which answers non-items normally.
        let plain = Ask { format: Some(&Format::Json), bad_answer: bad(BadAnswer::SchemaMismatch), ..ask(&m, "hi") };
        assert_eq!(answer(&plain, &items), answer(&Ask { format: Some(&Format::Json), ..ask(&m, "hi") }, &items));
    }

    #[test]
    fn bad_answers_bad_tool_args_and_wrong() {
        let m = model("llama3.1:8b");
        let items = ItemBook::default();
        let tools = vec![json!({"type": "function", "function": {"name": "get_current_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})];
        let prompt = "What's the weather in Paris?";
        let normal = answer(&Ask { tools: &tools, ..ask(&m, prompt) }, &items).tool_calls();
        assert_eq!(Value::Object(normal[0].arguments.clone()), json!({"city": "Paris"}));
        let a = answer(&Ask { tools: &tools, bad_answer: bad(BadAnswer::BadToolArgs), ..ask(&m, prompt) }, &items);
        let calls = a.tool_calls();
        assert_eq!((calls.len(), calls[0].name.as_str()), (1, "get_current_weather"));
        assert!(calls[0].arguments.is_empty());
        let no_tools = answer(&Ask { bad_answer: bad(BadAnswer::BadToolArgs), ..ask(&m, prompt) }, &items);
        assert_eq!(no_tools, answer(&ask(&m, prompt), &items), "without tools: wrong, normal for a non-item");

        let suites = switchyard_profiler::suite::builtin().unwrap();
        let book = ItemBook::from_suites(&suites);
        let mut perfect = model("llama3.3:70b");
        perfect.skills = switchyard_core::Category::PROFILED.into_iter().map(|c| (c, 1.0)).collect();
        for item in suites.iter().flat_map(|s| s.take(3)) {
            assert_eq!(answer(&ask(&perfect, &item.prompt), &book).content(), item.reference);
            for kind in [BadAnswer::Wrong, BadAnswer::BadToolArgs, BadAnswer::InvalidJson] {
                let wrong = answer(&Ask { bad_answer: bad(kind), ..ask(&perfect, &item.prompt) }, &book);
                assert_eq!(wrong.content(), item.check.incorrect_answer(), "{}: {kind:?}", item.id);
            }
        }
    }

    #[test]
    fn items_are_answered_by_skill() {
        let suites = switchyard_profiler::suite::builtin().unwrap();
        let book = ItemBook::from_suites(&suites);
        let item = &suites[0].items[0];
        let strong = Fleet::builtin();
        let mut saw_right = false;
        for m in &strong.models {
            let a = answer(&ask(m, &item.prompt), &book);
            let text = a.content();
            assert!(text == item.reference || text == item.check.incorrect_answer(), "{}: {text}", m.name);
            saw_right |= text == item.reference;
        }
        assert!(saw_right);
    }
}
