//! Validators of a cascade: whether a cheap model's buffered answer is good enough to return, or the request must
//! escalate to a stronger model.
//!
//! Every check is a pure function of the native Ollama answer and the native request it answers; none calls a model,
//! so a check costs microseconds against the seconds an escalation costs. The checks are deliberately conservative
//! in what they reject: a false rejection only buys a second, stronger answer, but a check that rejects good answers
//! often makes the cascade slower and dearer than sending everything to the strong model.
//!
//! Checks, in the order [`validate`] runs them (the cheapest and most telling first):
//!
//! | check       | rejects                                                                                    |
//! |-------------|--------------------------------------------------------------------------------------------|
//! | `nonempty`  | blank text and no tool call                                                                |
//! | `truncated` | `done_reason: "length"` (the model hit its token limit)                                    |
//! | `refusal`   | an answer that opens with a refusal, or a short one that is mostly a refusal               |
//! | `json`      | with `format: "json"` or a schema: text that is not JSON, or JSON that breaks the schema   |
//! | `tools`     | a tool call to a tool the request did not offer, or arguments that break its parameters    |
//! | `code`      | a fenced block in Python, JavaScript, Rust, Go, shell or JSON that has a syntax error      |
//!
//! The code check uses tree-sitter grammars, each a C parser compiled by its crate's build script. Measured on the
//! 2-core development machine (`cargo build --timings`, the tree-sitter crates cleaned first, dev profile): build
//! script, C compile and rlib together take bash 3.2 s, rust 2.2 s, javascript 2.0 s, python 1.8 s, go 1.1 s,
//! json 0.6 s of CPU, and the `tree-sitter` runtime 6.6 s; 11 s of wall time for all of them. A grammar that alone
//! cost more than 40 s would not be worth its language.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::{Map, Value};
use std::sync::LazyLock;
use switchyard_profiler::check::schema_violation;
use tree_sitter::{Language, Node, Parser};

/// Why an answer failed validation; `as_str()` gives a stable snake_case label used in metrics and headers
/// ("empty", "truncated", "invalid_json", "schema_mismatch", "bad_tool_call", "code_syntax", "refusal").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    /// No text and no tool call.
    Empty,
    /// The model stopped at its token limit.
    Truncated,
    /// JSON was asked for and the text does not parse as JSON.
    InvalidJson,
    /// The JSON parses but breaks the requested schema.
    SchemaMismatch,
    /// A tool call names an unknown tool or carries arguments that break the tool's parameters.
    BadToolCall,
    /// A fenced code block in a language we parse has a syntax error.
    CodeSyntax,
    /// The model declined the task.
    Refusal,
}

impl Failure {
    /// Every failure, in declaration order (the tests check their labels are distinct and stable).
    #[cfg(test)]
    pub(crate) const ALL: [Failure; 7] = [
        Failure::Empty,
        Failure::Truncated,
        Failure::InvalidJson,
        Failure::SchemaMismatch,
        Failure::BadToolCall,
        Failure::CodeSyntax,
        Failure::Refusal,
    ];

    /// The stable snake_case label; metrics and headers carry it, so it never changes once released.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Empty => "empty",
            Failure::Truncated => "truncated",
            Failure::InvalidJson => "invalid_json",
            Failure::SchemaMismatch => "schema_mismatch",
            Failure::BadToolCall => "bad_tool_call",
            Failure::CodeSyntax => "code_syntax",
            Failure::Refusal => "refusal",
        }
    }
}

/// Which checks run (all true by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checks {
    /// Reject blank answers without tool calls.
    pub nonempty: bool,
    /// Reject answers cut at the token limit.
    pub truncated: bool,
    /// Reject non-JSON text (and schema violations) when the request asks for JSON.
    pub json: bool,
    /// Reject tool calls to unknown tools or with bad arguments.
    pub tools: bool,
    /// Reject fenced code blocks with syntax errors.
    pub code: bool,
    /// Reject refusals.
    pub refusal: bool,
}

impl Default for Checks {
    /// Every check on.
    fn default() -> Checks {
        Checks { nonempty: true, truncated: true, json: true, tools: true, code: true, refusal: true }
    }
}

/// The config names of the checks, in the order [`validate`] runs them.
const CHECK_NAMES: [&str; 6] = ["nonempty", "truncated", "refusal", "json", "tools", "code"];

impl Checks {
    /// The checks named in a config list ("nonempty", "truncated", "json", "tools", "code", "refusal"); the others
    /// are off, so an empty list turns every check off. An unknown name is an error that lists the valid ones, so a
    /// typo never silently disables a check.
    pub(crate) fn from_names(names: &[String]) -> Result<Checks, String> {
        let mut checks =
            Checks { nonempty: false, truncated: false, json: false, tools: false, code: false, refusal: false };
        for name in names {
            let flag = match name.as_str() {
                "nonempty" => &mut checks.nonempty,
                "truncated" => &mut checks.truncated,
                "json" => &mut checks.json,
                "tools" => &mut checks.tools,
                "code" => &mut checks.code,
                "refusal" => &mut checks.refusal,
                other => {
                    return Err(format!("unknown cascade check {other:?} (valid: {})", CHECK_NAMES.join(", ")));
                }
            };
            *flag = true;
        }
        Ok(checks)
    }
}

/// A rejected answer: what failed and a short human-readable detail (<= 200 chars, no answer text beyond a short
/// excerpt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// What failed.
    pub failure: Failure,
    /// Why, for logs and headers: at most [`DETAIL_MAX`] characters.
    pub detail: String,
}

/// The longest [`Rejection::detail`], in characters; details travel in headers and logs.
const DETAIL_MAX: usize = 200;

/// The longest excerpt of the answer a detail quotes: enough to recognise it, too little to leak it.
const EXCERPT_MAX: usize = 60;

/// A rejection with its detail clipped to [`DETAIL_MAX`].
fn reject(failure: Failure, detail: &str) -> Rejection {
    Rejection { failure, detail: clip(detail, DETAIL_MAX) }
}

/// `text` with whitespace runs collapsed to one space, cut to `max` characters (the last one an ellipsis when cut).
fn clip(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut out: String = collapsed.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The text of a native Ollama buffered answer: `message.content` (chat) or `response` (generate); "" when absent.
pub(crate) fn answer_text(answer: &serde_json::Value) -> &str {
    answer
        .pointer("/message/content")
        .and_then(Value::as_str)
        .or_else(|| answer.get("response").and_then(Value::as_str))
        .unwrap_or("")
}

/// The answer's tool calls; empty when it has none (a generate answer, or a chat answer in prose).
fn tool_calls(answer: &Value) -> &[Value] {
    answer.pointer("/message/tool_calls").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Validates a buffered native Ollama answer (`answer`, the parsed JSON of /api/chat or /api/generate with
/// stream:false) against the native request body it answers (`request`, a JSON object with `messages` or `prompt`,
/// maybe `format`, `tools`, `options`). Runs the enabled checks in the order: nonempty, truncated, refusal, json,
/// tools, code; returns the first failure.
pub(crate) fn validate(
    answer: &serde_json::Value,
    request: &serde_json::Map<String, serde_json::Value>,
    checks: Checks,
) -> Result<(), Rejection> {
    let text = answer_text(answer);
    let calls = tool_calls(answer);
    if checks.nonempty && text.trim().is_empty() && calls.is_empty() {
        return Err(reject(Failure::Empty, "the answer has no text and no tool call"));
    }
    if checks.truncated && answer.get("done_reason").and_then(Value::as_str) == Some("length") {
        let limit = request
            .get("options")
            .and_then(|o| o.get("num_predict"))
            .and_then(Value::as_i64)
            .map_or(String::new(), |n| format!(" (num_predict {n})"));
        return Err(reject(Failure::Truncated, &format!("the model stopped at its token limit{limit}")));
    }
    if checks.refusal {
        check_refusal(text)?;
    }
    // A tool-call turn carries its payload in `tool_calls`; its blank content is not the JSON that `format` asks for.
    if checks.json && (calls.is_empty() || !text.trim().is_empty()) {
        check_json(text, request.get("format"))?;
    }
    if checks.tools && !calls.is_empty() {
        check_tools(calls, request.get("tools"))?;
    }
    if checks.code {
        check_code(text)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// refusal

/// Refusal openings, lower-case with straight apostrophes (the text is normalised to match). Each is specific to
/// declining: "I'm sorry" or "I cannot" alone open plenty of helpful answers ("I'm sorry for the confusion, here is
/// the fix").
const REFUSAL_PHRASES: &[&str] = &[
    "sorry, but i can't",
    "sorry, but i cannot",
    "sorry, but i can not",
    "sorry, but i won't",
    "sorry, but i am unable",
    "sorry, but i'm unable",
    "sorry, i can't",
    "sorry, i cannot",
    "i can't help with",
    "i cannot help with",
    "i can not help with",
    "i can't help you with",
    "i cannot help you with",
    "i can't assist with",
    "i cannot assist with",
    "i can't assist you with",
    "i cannot assist you with",
    "i can't provide",
    "i cannot provide",
    "i can't fulfill",
    "i cannot fulfill",
    "i can't comply",
    "i cannot comply",
    "i am unable to",
    "i'm unable to",
    "i am not able to help",
    "i'm not able to help",
    "i won't be able to",
    "i will not be able to",
    "i must decline",
    "as an ai language model, i cannot",
    "as an ai language model, i can't",
    "as an ai language model, i am unable",
    "as an ai language model, i'm unable",
    "as an ai, i cannot",
    "as an ai, i can't",
];

/// The refusal matcher, built once: ASCII case-insensitive, leftmost-first so the earliest phrase wins.
static REFUSALS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    // Building from a fixed list of short literals cannot fail; if it somehow did, the check is skipped rather
    // than taking the router down.
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(REFUSAL_PHRASES)
        .ok()
});

/// How much of the answer the refusal check reads, in characters: refusals come first, and a bounded read keeps the
/// check cheap on long answers.
const REFUSAL_SCAN: usize = 400;

/// Answers shorter than this (characters, trimmed) that contain a refusal phrase anywhere are refusals: there is
/// too little else in them to be a useful answer.
const SHORT_ANSWER: usize = 400;

/// A refusal phrase counts in a longer answer only when it starts within this many bytes of the normalised
/// opening, which leaves room for a lead-in ("Unfortunately, ", "I apologize, but ") and no more.
const OPENING: usize = 80;

/// Rejects an answer that opens with a refusal, or a short one that contains one.
fn check_refusal(text: &str) -> Result<(), Rejection> {
    let Some(matcher) = REFUSALS.as_ref() else {
        return Ok(());
    };
    // Markdown emphasis, quotes and headings in front of the words do not change what they say.
    let opening = text.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '_' | '>' | '#' | '"'));
    let normalised = normalise_refusal_text(opening);
    let Some(found) = matcher.find(&normalised) else {
        return Ok(());
    };
    let short = text.trim().chars().nth(SHORT_ANSWER - 1).is_none();
    if found.start() < OPENING || short {
        let what = if found.start() < OPENING { "opens with" } else { "is mostly" };
        return Err(reject(
            Failure::Refusal,
            &format!("the answer {what} a refusal: {:?}", clip(opening, EXCERPT_MAX)),
        ));
    }
    Ok(())
}

/// The first [`REFUSAL_SCAN`] characters of `text` with typographic apostrophes made straight and whitespace runs
/// made one space, so the phrase list needs one spelling of each phrase.
fn normalise_refusal_text(text: &str) -> String {
    let mut out = String::with_capacity(REFUSAL_SCAN + 8);
    let mut in_space = false;
    for c in text.chars().take(REFUSAL_SCAN) {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        out.push(match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' | '\u{FF07}' | '`' | '\u{00B4}' => '\'',
            other => other,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// json

/// With `format` `"json"` or a schema object, rejects text that is not JSON (one fenced block around it allowed)
/// and JSON that breaks the schema. Any other `format` (absent, `""`) asks for nothing.
fn check_json(text: &str, format: Option<&Value>) -> Result<(), Rejection> {
    let schema = match format {
        Some(Value::String(s)) if s == "json" => None,
        Some(schema @ Value::Object(_)) => Some(schema),
        _ => return Ok(()),
    };
    let body = strip_json_fence(text.trim());
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(reject(
                Failure::InvalidJson,
                &format!("JSON was requested but the answer is not JSON ({e}): {:?}", clip(body, EXCERPT_MAX)),
            ));
        }
    };
    if let Some(schema) = schema
        && let Some(violation) = schema_violation(schema, &value)
    {
        return Err(reject(Failure::SchemaMismatch, &format!("the JSON breaks the requested schema: {violation}")));
    }
    Ok(())
}

/// The inside of one fenced block (tag `json` or none) that makes up all of `text`; `text` itself otherwise. Models
/// asked for JSON sometimes wrap it in a fence anyway; the content is still what was asked for.
fn strip_json_fence(text: &str) -> &str {
    let Some((first, rest)) = text.split_once('\n') else {
        return text;
    };
    let Some(fence) = opening_fence(first) else {
        return text;
    };
    if !(fence.info.is_empty() || fence.info.eq_ignore_ascii_case("json")) {
        return text;
    }
    let rest = rest.trim_end();
    let (body, last) = rest.rsplit_once('\n').unwrap_or(("", rest));
    if closes(last, &fence) { body } else { text }
}

// ---------------------------------------------------------------------------------------------------------------
// tools

/// Rejects a tool call to a tool the request did not offer, or with arguments that are not an object satisfying
/// the tool's `parameters` schema.
fn check_tools(calls: &[Value], tools: Option<&Value>) -> Result<(), Rejection> {
    let offered: Vec<(&str, Option<&Value>)> = tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let function = t.get("function")?;
            Some((function.get("name")?.as_str()?, function.get("parameters")))
        })
        .collect();
    for (i, call) in calls.iter().enumerate() {
        let n = i + 1;
        let Some(name) = call.pointer("/function/name").and_then(Value::as_str) else {
            return Err(reject(Failure::BadToolCall, &format!("tool call {n} has no function name")));
        };
        let Some((_, parameters)) = offered.iter().find(|(offered_name, _)| *offered_name == name) else {
            let names: Vec<&str> = offered.iter().map(|(name, _)| *name).collect();
            let names = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            return Err(reject(
                Failure::BadToolCall,
                &format!("tool call {n} names unknown tool {:?} (offered: {names})", clip(name, EXCERPT_MAX)),
            ));
        };
        let arguments = match call.pointer("/function/arguments") {
            // A call without arguments is a call with none; the schema says whether some were required.
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(reject(
                        Failure::BadToolCall,
                        &format!("tool {name:?}: arguments are a string that is not a JSON object"),
                    ));
                }
            },
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return Err(reject(Failure::BadToolCall, &format!("tool {name:?}: arguments are not a JSON object")));
            }
        };
        if let Some(schema) = parameters
            && let Some(violation) = schema_violation(schema, &arguments)
        {
            return Err(reject(Failure::BadToolCall, &format!("tool {name:?}: arguments {violation}")));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// code

/// A language whose fenced blocks the code check parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    /// `py`, `python`, `python3`.
    Python,
    /// `js`, `javascript`, `jsx`, `node` (the grammar parses JSX too).
    JavaScript,
    /// `rs`, `rust`.
    Rust,
    /// `go`, `golang`.
    Go,
    /// `sh`, `bash`, `shell`, `zsh` (zsh read as bash: their common syntax is what answers use).
    Bash,
    /// `json`.
    Json,
}

impl Lang {
    /// The language a fence's tag names (case-insensitive); `None` for a tag we do not parse.
    fn from_tag(tag: &str) -> Option<Lang> {
        Some(match tag.to_ascii_lowercase().as_str() {
            "py" | "python" | "python3" => Lang::Python,
            "js" | "javascript" | "jsx" | "node" => Lang::JavaScript,
            "rs" | "rust" => Lang::Rust,
            "go" | "golang" => Lang::Go,
            "sh" | "bash" | "shell" | "zsh" => Lang::Bash,
            "json" => Lang::Json,
            _ => return None,
        })
    }

    /// The name in rejection details.
    fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::JavaScript => "javascript",
            Lang::Rust => "rust",
            Lang::Go => "go",
            Lang::Bash => "bash",
            Lang::Json => "json",
        }
    }

    /// The tree-sitter grammar.
    fn grammar(self) -> Language {
        match self {
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
            Lang::Bash => tree_sitter_bash::LANGUAGE.into(),
            Lang::Json => tree_sitter_json::LANGUAGE.into(),
        }
    }

    /// The REPL prompt that marks input lines in a transcript block (`>>> ` for Python, `$ ` for a shell).
    fn prompt(self) -> Option<&'static str> {
        match self {
            Lang::Python => Some(">>>"),
            Lang::Bash => Some("$ "),
            _ => None,
        }
    }
}

/// One fenced block of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CodeBlock {
    /// The first word of the info string (`python` in ```` ```python title="x" ````); empty when absent.
    tag: String,
    /// The content, dedented by the opening fence's indentation.
    body: String,
    /// The 1-based line of the opening fence in the answer.
    line: usize,
    /// Whether a closing fence ends it (an unclosed block runs to the end of the answer).
    closed: bool,
}

/// An opening fence: its character, length, indentation and info string.
#[derive(Debug, Clone, Copy)]
struct Fence<'a> {
    /// `` ` `` or `~`.
    ch: u8,
    /// The number of fence characters (3 or more).
    len: usize,
    /// Leading spaces before the fence, removed from each content line.
    indent: usize,
    /// The info string, trimmed.
    info: &'a str,
}

/// The fence that `line` opens, if it is one: 3+ backticks or tildes, then an optional info string. Any indentation
/// is allowed because answers nest blocks inside list items.
fn opening_fence(line: &str) -> Option<Fence<'_>> {
    let line = line.trim_end_matches(['\n', '\r']);
    let stripped = line.trim_start_matches([' ', '\t']);
    let ch = *stripped.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = stripped.bytes().take_while(|&b| b == ch).count();
    if len < 3 {
        return None;
    }
    let info = stripped[len..].trim();
    // A backtick in a backtick fence's info string makes it inline code (```` ```x``` ````), not a fence.
    if ch == b'`' && info.contains('`') {
        return None;
    }
    Some(Fence { ch, len, indent: line.len() - stripped.len(), info })
}

/// Whether `line` closes `fence`: only the same character, at least as many, and whitespace.
fn closes(line: &str, fence: &Fence<'_>) -> bool {
    let t = line.trim();
    t.len() >= fence.len && t.bytes().all(|b| b == fence.ch)
}

/// The fenced blocks of `text`, in order; an unclosed block at the end counts, running to the end.
fn fenced_blocks(text: &str) -> Vec<CodeBlock> {
    let mut blocks = Vec::new();
    let mut open: Option<(Fence<'_>, CodeBlock)> = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        match open.take() {
            None => {
                if let Some(fence) = opening_fence(line) {
                    let tag = fence.info.split_whitespace().next().unwrap_or("").to_string();
                    open = Some((fence, CodeBlock { tag, body: String::new(), line: i + 1, closed: false }));
                }
            }
            Some((fence, mut block)) => {
                if closes(line, &fence) {
                    block.closed = true;
                    blocks.push(block);
                } else {
                    block.body.push_str(dedent(line, fence.indent));
                    open = Some((fence, block));
                }
            }
        }
    }
    if let Some((_, block)) = open {
        blocks.push(block);
    }
    blocks
}

/// `line` without up to `indent` leading spaces or tabs: a block indented inside a list item has its content
/// indented as much, and Python would read that as an unexpected indent.
fn dedent(line: &str, indent: usize) -> &str {
    let strip = line.bytes().take(indent).take_while(|b| *b == b' ' || *b == b'\t').count();
    &line[strip..]
}

/// The source to parse from a block: its body, or for a REPL transcript (first non-blank line starts with the
/// language's prompt) only the prompted input lines, since the output lines between them are not code.
fn source_of(lang: Lang, body: &str) -> String {
    let Some(prompt) = lang.prompt() else {
        return body.to_string();
    };
    let first = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if !first.trim_start().starts_with(prompt) {
        return body.to_string();
    }
    let continuation = if lang == Lang::Python { Some("...") } else { None };
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        let l = line.trim_start();
        let code = l.strip_prefix(prompt).or_else(|| continuation.and_then(|c| l.strip_prefix(c)));
        if let Some(code) = code {
            // The prompt is followed by one space (`>>> x`); more is the code's own indentation.
            out.push_str(code.strip_prefix(' ').unwrap_or(code));
            out.push('\n');
        }
    }
    out
}

/// Rejects the first fenced block in a language we parse whose syntax tree has an error.
fn check_code(text: &str) -> Result<(), Rejection> {
    let mut parser: Option<Parser> = None;
    for (i, block) in fenced_blocks(text).iter().enumerate() {
        let Some(lang) = Lang::from_tag(&block.tag) else {
            continue;
        };
        let source = source_of(lang, &block.body);
        if source.trim().is_empty() {
            continue;
        }
        // One parser per call, made only when a block needs it; grammars switch in place.
        let parser = parser.get_or_insert_with(Parser::new);
        if let Some(line) = syntax_error_line(parser, lang, &source) {
            let unclosed = if block.closed { "" } else { ", unclosed" };
            return Err(reject(
                Failure::CodeSyntax,
                &format!(
                    "{} code block {} (answer line {}{unclosed}) has a syntax error at line {line} of the block",
                    lang.name(),
                    i + 1,
                    block.line,
                ),
            ));
        }
    }
    Ok(())
}

/// The 1-based line of the first syntax error in `source`, or `None` when it parses cleanly. A grammar that does
/// not load or a parse that gives up is `None` too: the check cannot judge, and failing open only costs nothing.
fn syntax_error_line(parser: &mut Parser, lang: Lang, source: &str) -> Option<usize> {
    parser.set_language(&lang.grammar()).ok()?;
    let tree = parser.parse(source, None)?;
    let root = tree.root_node();
    root.has_error().then(|| first_error(root).start_position().row + 1)
}

/// The first ERROR or MISSING node under `node` in document order (`node` itself when no child holds the error).
fn first_error(node: Node<'_>) -> Node<'_> {
    let mut node = node;
    loop {
        if node.is_error() || node.is_missing() {
            return node;
        }
        let mut cursor = node.walk();
        let Some(child) = node.children(&mut cursor).find(|c| c.has_error()) else {
            return node;
        };
        node = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A chat answer with `content`, `done_reason: "stop"`.
    fn chat(content: &str) -> Value {
        json!({"model": "m", "message": {"role": "assistant", "content": content}, "done": true, "done_reason": "stop"})
    }

    /// A generate answer with `response`, `done_reason: "stop"`.
    fn generate(response: &str) -> Value {
        json!({"model": "m", "response": response, "done": true, "done_reason": "stop"})
    }

    /// A chat answer that calls tools.
    fn calls(content: &str, calls: Value) -> Value {
        json!({
            "message": {"role": "assistant", "content": content, "tool_calls": calls},
            "done": true,
            "done_reason": "stop"
        })
    }

    /// A request body from a JSON object literal.
    fn request(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// A chat request with no format and no tools.
    fn plain() -> Map<String, Value> {
        request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    }

    /// The failure of validating `answer` against `req` with every check on; `None` when it passes.
    fn failure(answer: &Value, req: &Map<String, Value>) -> Option<Failure> {
        validate(answer, req, Checks::default()).err().map(|r| r.failure)
    }

    /// The rejection of `answer` against a plain request, or a test failure when it passes.
    fn rejection(answer: &Value, req: &Map<String, Value>) -> Rejection {
        match validate(answer, req, Checks::default()) {
            Err(r) => r,
            Ok(()) => Rejection { failure: Failure::Empty, detail: "UNEXPECTED PASS".to_string() },
        }
    }

    /// Only the named check on.
    fn only(name: &str) -> Checks {
        Checks::from_names(&[name.to_string()]).unwrap_or_default()
    }

    #[test]
    fn labels_are_stable_and_distinct() {
        let labels: Vec<&str> = Failure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            labels,
            ["empty", "truncated", "invalid_json", "schema_mismatch", "bad_tool_call", "code_syntax", "refusal"]
        );
        let unique: std::collections::HashSet<Failure> = Failure::ALL.into_iter().collect();
        assert_eq!(unique.len(), 7);
    }

    #[test]
    fn checks_from_names() {
        let all: Vec<String> = CHECK_NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(Checks::from_names(&all), Ok(Checks::default()));
        assert_eq!(
            Checks::from_names(&["json".to_string(), "code".to_string(), "json".to_string()]),
            Ok(Checks { nonempty: false, truncated: false, json: true, tools: false, code: true, refusal: false })
        );
        let none = Checks::from_names(&[]);
        assert_eq!(
            none,
            Ok(Checks { nonempty: false, truncated: false, json: false, tools: false, code: false, refusal: false })
        );
        let err = Checks::from_names(&["nonempty".to_string(), "refusals".to_string()]).err().unwrap_or_default();
        assert!(err.contains("\"refusals\""), "{err}");
        for name in CHECK_NAMES {
            assert!(err.contains(name), "{err} lists {name}");
        }
        assert!(Checks::from_names(&["JSON".to_string()]).is_err(), "names are exact");
    }

    #[test]
    fn answer_text_reads_chat_and_generate() {
        assert_eq!(answer_text(&chat("hello")), "hello");
        assert_eq!(answer_text(&generate("world")), "world");
        assert_eq!(answer_text(&json!({"message": {"role": "assistant"}})), "");
        assert_eq!(answer_text(&json!({"done": true})), "");
        assert_eq!(answer_text(&json!("not an object")), "");
    }

    #[test]
    fn good_answers_pass_every_check() {
        for answer in [chat("Paris is the capital of France."), generate("Paris.")] {
            assert_eq!(validate(&answer, &plain(), Checks::default()), Ok(()));
        }
    }

    #[test]
    fn nonempty_rejects_blank_text_without_tool_calls() {
        for answer in [chat(""), chat("  \n\t "), generate(""), json!({"done": true, "done_reason": "stop"})] {
            let r = rejection(&answer, &plain());
            assert_eq!(r.failure, Failure::Empty, "{answer}");
        }
        // The chat shape with an empty tool_calls list is still empty.
        assert_eq!(failure(&calls("", json!([])), &plain()), Some(Failure::Empty));
        let req = request(json!({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}]}));
        let answer = calls("", json!([{"function": {"name": "f", "arguments": {}}}]));
        assert_eq!(failure(&answer, &req), None, "a tool call with empty content is an answer");
        assert_eq!(validate(&chat(""), &plain(), Checks { nonempty: false, ..Checks::default() }), Ok(()));
    }

    #[test]
    fn truncated_rejects_done_reason_length() {
        let mut answer = chat("The first three steps are: one, two, th");
        answer["done_reason"] = json!("length");
        assert_eq!(failure(&answer, &plain()), Some(Failure::Truncated));
        let mut answer = generate("Once upon a time");
        answer["done_reason"] = json!("length");
        let req = request(json!({"prompt": "story", "options": {"num_predict": 16}}));
        let r = rejection(&answer, &req);
        assert_eq!(r.failure, Failure::Truncated);
        assert!(r.detail.contains("num_predict 16"), "{}", r.detail);
        answer["done_reason"] = json!("stop");
        assert_eq!(failure(&answer, &req), None);
        answer["done_reason"] = json!("length");
        assert_eq!(validate(&answer, &req, Checks { truncated: false, ..Checks::default() }), Ok(()));
    }

    #[test]
    fn refusal_at_the_start_is_rejected() {
        for text in [
            "I'm sorry, but I can't help with that.",
            "I’m sorry, but I can’t help with that request.",
            "I cannot help with creating malware.",
            "I can't assist with that.",
            "I am unable to provide that information.",
            "As an AI language model, I cannot browse the internet.",
            "I won't be able to do that.",
            "**I'm sorry, but I cannot** comply.",
            "  I'M SORRY,\n  BUT I CAN'T do that.",
            "Unfortunately, I can't help with that.",
        ] {
            assert_eq!(failure(&chat(text), &plain()), Some(Failure::Refusal), "{text}");
            assert_eq!(failure(&generate(text), &plain()), Some(Failure::Refusal), "{text}");
        }
        // Opening refusal followed by a long lecture is still a refusal.
        let long = format!("I'm sorry, but I can't help with that. {}", "Here is why this matters. ".repeat(40));
        let r = rejection(&chat(&long), &plain());
        assert_eq!(r.failure, Failure::Refusal);
        assert!(r.detail.len() <= 4 * DETAIL_MAX && r.detail.chars().count() <= DETAIL_MAX, "{}", r.detail);
        assert!(!r.detail.contains("Here is why this matters. Here is why this matters. Here"), "excerpt only");
    }

    #[test]
    fn refusal_in_a_short_answer_is_rejected_but_not_in_a_long_helpful_one() {
        let short = "That is a tricky question about your network setup and the firewall rules you described. \
                     Honestly, I am unable to answer it with confidence.";
        assert!(short.find("I am unable").is_some_and(|at| at > OPENING));
        assert_eq!(failure(&chat(short), &plain()), Some(Failure::Refusal));
        // Within the scanned opening but past its first words, in a long answer: a caveat, not a refusal.
        let caveat = format!(
            "Here is how to configure the server so that it listens on the right port and restarts cleanly. \
             Note: I cannot help with Windows paths, but the same steps apply there.\n\n{}",
            "1. Edit the config file and set the port.\n".repeat(10)
        );
        assert!(caveat.find("I cannot help").is_some_and(|at| at > OPENING && at < REFUSAL_SCAN));
        assert_eq!(failure(&chat(&caveat), &plain()), None);
        let long = format!(
            "Here is how to configure the server.\n\n{}\n\
             Note: I cannot help with Windows paths here, but the same steps apply.\n\n{}",
            "1. Edit the config file and set the port.\n".repeat(10),
            "2. Restart the service and check the logs.\n".repeat(10)
        );
        assert!(long.len() > 600);
        assert_eq!(failure(&chat(&long), &plain()), None);
        // Apologies that do not decline pass.
        for text in ["I'm sorry for the confusion: the answer is 42.", "I cannot stress this enough: use a venv."] {
            assert_eq!(failure(&chat(text), &plain()), None, "{text}");
        }
        assert_eq!(validate(&chat("I can't help with that."), &plain(), only("nonempty")), Ok(()));
    }

    #[test]
    fn refusal_normalisation_is_safe_on_multibyte_text() {
        let text = format!("{}I am unable to", "é".repeat(399));
        assert_eq!(failure(&chat(&text), &plain()), None, "past the scanned prefix");
        let text = "日本語".repeat(200);
        assert_eq!(failure(&chat(&text), &plain()), None);
    }

    #[test]
    fn json_format_requires_json() {
        let req = request(json!({"messages": [], "format": "json"}));
        assert_eq!(failure(&chat(r#"{"a": 1}"#), &req), None);
        assert_eq!(failure(&chat("  [1, 2, 3]\n"), &req), None);
        assert_eq!(failure(&chat("```json\n{\"a\": 1}\n```"), &req), None, "one fenced block around it");
        assert_eq!(failure(&chat("```\n{\"a\": 1}\n```\n"), &req), None, "untagged fence");
        assert_eq!(failure(&chat("```python\n{\"a\": 1}\n```"), &req), Some(Failure::InvalidJson));
        assert_eq!(failure(&chat("Sure! Here is the JSON: {\"a\": 1}"), &req), Some(Failure::InvalidJson));
        assert_eq!(failure(&chat("```json\n{\"a\": 1}\n```\nHope it helps!"), &req), Some(Failure::InvalidJson));
        let r = rejection(&generate("{\"a\": 1,}"), &req);
        assert_eq!(r.failure, Failure::InvalidJson);
        assert!(r.detail.contains("line 1"), "{}", r.detail);
        // Without format, prose is fine; with the check off, too.
        assert_eq!(failure(&chat("Sure! Here is the JSON: {\"a\": 1}"), &plain()), None);
        let off = Checks { json: false, ..Checks::default() };
        assert_eq!(validate(&chat("not json"), &req, off), Ok(()));
        let blank_format = request(json!({"messages": [], "format": ""}));
        assert_eq!(failure(&chat("not json"), &blank_format), None);
    }

    #[test]
    fn json_schema_is_enforced() {
        let req = request(json!({"messages": [], "format": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"]
        }}));
        assert_eq!(failure(&chat(r#"{"name": "Ada", "age": 36}"#), &req), None);
        let r = rejection(&chat(r#"{"name": "Ada"}"#), &req);
        assert_eq!(r.failure, Failure::SchemaMismatch);
        assert!(r.detail.contains("missing required \"age\""), "{}", r.detail);
        let r = rejection(&generate(r#"{"name": "Ada", "age": "36"}"#), &req);
        assert_eq!(r.failure, Failure::SchemaMismatch);
        assert!(r.detail.contains("$.age"), "{}", r.detail);
        assert_eq!(failure(&chat("name: Ada"), &req), Some(Failure::InvalidJson));
    }

    #[test]
    fn json_schema_unknown_keywords_are_ignored() {
        let req = request(json!({"messages": [], "format": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"pos": {"type": "integer", "minimum": 0}},
            "type": "object",
            "properties": {
                "city": {"type": "string", "format": "hostname", "pattern": "^[a-z]+$"},
                "when": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "n": {"$ref": "#/$defs/pos"}
            },
            "anyOf": [{"required": ["nope"]}],
            "required": ["city"]
        }}));
        assert_eq!(failure(&chat(r#"{"city": "Oslo", "when": 5, "n": -1}"#), &req), None);
        assert_eq!(failure(&chat(r#"{"when": null}"#), &req), Some(Failure::SchemaMismatch));
    }

    /// A request offering `get_weather(location: string, unit?: "c"|"f")` and `now()`.
    fn tool_request() -> Map<String, Value> {
        request(json!({"messages": [], "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["location"]
            }}},
            {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
        ]}))
    }

    #[test]
    fn tool_calls_are_checked_against_the_offered_tools() {
        let req = tool_request();
        let good = calls("", json!([{"function": {"name": "get_weather", "arguments": {"location": "Oslo"}}}]));
        assert_eq!(failure(&good, &req), None);
        let two = calls(
            "",
            json!([
                {"function": {"name": "now", "arguments": {}}},
                {"function": {"name": "get_weather", "arguments": {"location": "Oslo", "unit": "c"}}}
            ]),
        );
        assert_eq!(failure(&two, &req), None);
        let no_args = calls("", json!([{"function": {"name": "now"}}]));
        assert_eq!(failure(&no_args, &req), None);

        let unknown = calls("", json!([{"function": {"name": "get_wether", "arguments": {"location": "Oslo"}}}]));
        let r = rejection(&unknown, &req);
        assert_eq!(r.failure, Failure::BadToolCall);
        assert!(r.detail.contains("get_wether") && r.detail.contains("get_weather, now"), "{}", r.detail);
        assert_eq!(failure(&unknown, &plain()), Some(Failure::BadToolCall), "no tools offered");

        let missing = calls("", json!([{"function": {"name": "get_weather", "arguments": {"unit": "c"}}}]));
        let r = rejection(&missing, &req);
        assert_eq!(r.failure, Failure::BadToolCall);
        assert!(r.detail.contains("get_weather") && r.detail.contains("missing required \"location\""), "{}", r.detail);
        let bad_enum =
            calls("", json!([{"function": {"name": "get_weather", "arguments": {"location": "x", "unit": "k"}}}]));
        assert_eq!(failure(&bad_enum, &req), Some(Failure::BadToolCall));
        let no_name = calls("", json!([{"function": {"arguments": {}}}]));
        assert_eq!(failure(&no_name, &req), Some(Failure::BadToolCall));
        let array_args = calls("", json!([{"function": {"name": "now", "arguments": [1]}}]));
        assert_eq!(failure(&array_args, &req), Some(Failure::BadToolCall));
        // The second call is the bad one.
        let second = calls(
            "",
            json!([{"function": {"name": "now", "arguments": {}}}, {"function": {"name": "nope", "arguments": {}}}]),
        );
        assert!(rejection(&second, &req).detail.contains("tool call 2"));
        assert_eq!(validate(&unknown, &req, Checks { tools: false, ..Checks::default() }), Ok(()));
    }

    #[test]
    fn tool_arguments_may_be_a_json_string() {
        let req = tool_request();
        let good = calls("", json!([{"function": {"name": "get_weather", "arguments": "{\"location\": \"Oslo\"}"}}]));
        assert_eq!(failure(&good, &req), None);
        let missing = calls("", json!([{"function": {"name": "get_weather", "arguments": "{\"unit\": \"f\"}"}}]));
        assert_eq!(failure(&missing, &req), Some(Failure::BadToolCall));
        for bad in ["not json", "[1, 2]", "\"Oslo\""] {
            let answer = calls("", json!([{"function": {"name": "get_weather", "arguments": bad}}]));
            assert_eq!(failure(&answer, &req), Some(Failure::BadToolCall), "{bad}");
        }
    }

    #[test]
    fn tool_call_answers_skip_the_json_format_check() {
        let mut req = tool_request();
        req.insert("format".to_string(), json!("json"));
        let answer = calls("", json!([{"function": {"name": "now", "arguments": {}}}]));
        assert_eq!(failure(&answer, &req), None);
        // Content beside the calls is still held to the format.
        let answer = calls("Calling now.", json!([{"function": {"name": "now", "arguments": {}}}]));
        assert_eq!(failure(&answer, &req), Some(Failure::InvalidJson));
    }

    #[test]
    fn python_blocks_are_parsed() {
        let good = "Here you go:\n\n```python\ndef f(x):\n    return x + 1\n\nprint(f(2))\n```\n";
        assert_eq!(failure(&chat(good), &plain()), None);
        let bad = "Here you go:\n\n```python\nimport os\n\ndef f(:\n    return 1\n```\n";
        let r = rejection(&chat(bad), &plain());
        assert_eq!(r.failure, Failure::CodeSyntax);
        assert!(r.detail.contains("python") && r.detail.contains("line 3 of the block"), "{}", r.detail);
        assert!(r.detail.contains("answer line 3"), "{}", r.detail);
        for tag in ["py", "python3", "Python"] {
            let text = format!("```{tag}\nprint((1)\n```");
            assert_eq!(failure(&generate(&text), &plain()), Some(Failure::CodeSyntax), "{tag}");
        }
        assert_eq!(validate(&chat(bad), &plain(), Checks { code: false, ..Checks::default() }), Ok(()));
    }

    #[test]
    fn javascript_rust_go_bash_and_json_blocks_are_parsed() {
        let cases = [
            (
                "javascript",
                "const add = (a, b) => a + b;\nconsole.log(add(1, 2));\n",
                "function f( {\n  return 1;\n}\n",
            ),
            ("jsx", "const App = () => <div className=\"x\">{1}</div>;\n", "const App = () => <div>;\n"),
            ("js", "let x = [1, 2, 3].map((v) => v * 2);\n", "let x = [1, 2, 3.map((v) => v * 2);\n"),
            (
                "rust",
                "fn main() {\n    let v: Vec<u32> = vec![1, 2];\n    println!(\"{:?}\", v);\n}\n",
                "fn main() {\n    let v = ;\n}\n",
            ),
            ("rs", "let x = 5;\n", "struct S { a: u32,, }\n"),
            (
                "go",
                "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
                "package main\n\nfunc main() {\n\tfmt.Println(\"hi\"\n}\n",
            ),
            ("bash", "for f in *.txt; do\n  echo \"$f\"\ndone\n", "if [ -f x ]; then\n  echo yes\n"),
            ("sh", "ls -la | grep foo > out.txt\n", "echo $(ls\n"),
            ("json", "{\"a\": [1, 2, {\"b\": null}]}\n", "{\"a\": [1, 2,, 3]}\n"),
        ];
        for (tag, good, bad) in cases {
            let text = format!("Example:\n\n```{tag}\n{good}```\n");
            assert_eq!(failure(&chat(&text), &plain()), None, "{tag} good: {good}");
            let text = format!("Example:\n\n```{tag}\n{bad}```\n");
            let r = rejection(&chat(&text), &plain());
            assert_eq!(r.failure, Failure::CodeSyntax, "{tag} bad: {bad}");
        }
    }

    #[test]
    fn unknown_or_absent_tags_are_not_checked() {
        for text in [
            "```\ndef f(:\n```",
            "```text\ndef f(:\n```",
            "```haskell\nmain = putStrLn \"hi\" ((\n```",
            "```console\n$ cargo build\n   Compiling x v0.1.0 (target(s)\n```",
        ] {
            assert_eq!(failure(&chat(text), &plain()), None, "{text}");
        }
    }

    #[test]
    fn fences_of_both_kinds_lengths_and_indentation() {
        let tilde = "~~~python\ndef f(:\n~~~\n";
        assert_eq!(failure(&chat(tilde), &plain()), Some(Failure::CodeSyntax));
        // A ``` inside a ```` block does not close it; the content, with its inner fence, is not python.
        let long = "````markdown\n```python\ndef f(:\n```\n````\n";
        assert_eq!(failure(&chat(long), &plain()), None);
        // A tilde line does not close a backtick fence.
        let mixed = "```python\nx = 1\n~~~\ny = (\n```\n";
        assert_eq!(failure(&chat(mixed), &plain()), Some(Failure::CodeSyntax));
        // Blocks nested in list items are dedented before parsing.
        let nested = "1. Define it:\n\n   ```python\n   def f(x):\n       return x\n   ```\n2. Call it.\n";
        assert_eq!(failure(&chat(nested), &plain()), None);
        // Inline triple backticks are not a fence.
        assert_eq!(failure(&chat("Use ```python def f(:``` inline."), &plain()), None);
        // Info strings beyond the first word are ignored.
        assert_eq!(failure(&chat("```python title=\"a.py\"\ndef f(:\n```"), &plain()), Some(Failure::CodeSyntax));
        // The second block is the bad one.
        let two = "```python\nx = 1\n```\n\nand\n\n```python\nx = (\n```\n";
        assert!(rejection(&chat(two), &plain()).detail.contains("block 2 (answer line 7)"));
    }

    #[test]
    fn an_unclosed_fence_is_a_block_to_the_end() {
        let bad = "Here:\n```python\ndef f(:\n    pass\n";
        let r = rejection(&chat(bad), &plain());
        assert_eq!(r.failure, Failure::CodeSyntax);
        assert!(r.detail.contains("unclosed"), "{}", r.detail);
        assert_eq!(failure(&chat("Here:\n```python\nprint(1)\n"), &plain()), None);
        let blocks = fenced_blocks("a\n```rust\nfn main() {}");
        assert_eq!(
            blocks,
            vec![CodeBlock { tag: "rust".to_string(), body: "fn main() {}".to_string(), line: 2, closed: false }]
        );
    }

    #[test]
    fn fenced_blocks_extracts_tags_bodies_and_lines() {
        let text = "intro\n```Python extra\na = 1\n```\n~~~~\nplain\n~~~~~\n  ```sh\n  echo hi\n  ```\n";
        let blocks = fenced_blocks(text);
        let got: Vec<(&str, &str, usize, bool)> =
            blocks.iter().map(|b| (b.tag.as_str(), b.body.as_str(), b.line, b.closed)).collect();
        assert_eq!(got, vec![("Python", "a = 1\n", 2, true), ("", "plain\n", 5, true), ("sh", "echo hi\n", 8, true)]);
        assert!(fenced_blocks("no fences here\n``not one``").is_empty());
    }

    #[test]
    fn repl_transcripts_parse_only_their_input_lines() {
        let py = "```python\n>>> def f(x):\n...     return x * 2\n...\n>>> f(3)\n6\n>>> print('a b')\na b\n```";
        assert_eq!(failure(&chat(py), &plain()), None);
        let py_bad = "```python\n>>> f(3\n6\n```";
        assert_eq!(failure(&chat(py_bad), &plain()), Some(Failure::CodeSyntax));
        let sh = "```bash\n$ cargo build\n   Finished `dev` profile [unoptimized] target(s) in 0.5s\n$ ls\n```";
        assert_eq!(failure(&chat(sh), &plain()), None);
    }

    #[test]
    fn every_grammar_loads() {
        let mut parser = Parser::new();
        for lang in [Lang::Python, Lang::JavaScript, Lang::Rust, Lang::Go, Lang::Bash, Lang::Json] {
            assert!(parser.set_language(&lang.grammar()).is_ok(), "{}", lang.name());
            assert_eq!(syntax_error_line(&mut parser, lang, "\n"), None, "{}", lang.name());
        }
        for (tag, lang) in
            [("node", Lang::JavaScript), ("golang", Lang::Go), ("zsh", Lang::Bash), ("shell", Lang::Bash)]
        {
            assert_eq!(Lang::from_tag(tag), Some(lang));
        }
        assert_eq!(Lang::from_tag("typescript"), None);
        assert_eq!(Lang::from_tag(""), None);
    }

    #[test]
    fn checks_run_in_order_and_disabled_ones_are_skipped() {
        // Truncated refusal in JSON mode: truncated comes first, then refusal, then json.
        let req = request(json!({"messages": [], "format": "json"}));
        let mut answer = chat("I'm sorry, but I can't");
        answer["done_reason"] = json!("length");
        assert_eq!(failure(&answer, &req), Some(Failure::Truncated));
        let without_truncated = Checks { truncated: false, ..Checks::default() };
        assert_eq!(validate(&answer, &req, without_truncated).err().map(|r| r.failure), Some(Failure::Refusal));
        let json_only = only("json");
        assert_eq!(validate(&answer, &req, json_only).err().map(|r| r.failure), Some(Failure::InvalidJson));
        let none = Checks::from_names(&[]).unwrap_or_default();
        assert_eq!(validate(&answer, &req, none), Ok(()));
        // Code after JSON: a JSON answer is not a fenced block, so only json judges it.
        assert_eq!(failure(&chat("```json\n{\"a\": 1}\n```"), &req), None);
        assert_eq!(
            validate(&chat("```json\n{\"a\": 1,}\n```"), &req, only("code")).err().map(|r| r.failure),
            Some(Failure::CodeSyntax)
        );
    }

    #[test]
    fn details_are_clipped() {
        let name = "x".repeat(500);
        let answer = calls("", json!([{"function": {"name": name, "arguments": {}}}]));
        let r = rejection(&answer, &tool_request());
        assert_eq!(r.failure, Failure::BadToolCall);
        assert!(r.detail.chars().count() <= DETAIL_MAX, "{}", r.detail.len());
        assert_eq!(clip("a  b\n\nc", 10), "a b c");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
