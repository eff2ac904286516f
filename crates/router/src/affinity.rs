//! Conversation affinity: the model that answered a conversation's previous turn, so that the next turn can stay
//! where its prefix is already processed.
//!
//! Ollama keeps the KV cache of a loaded model's recent prompts; a next turn sent to the same model reprocesses only
//! what is new, while any other model reprocesses the whole history. The scorer uses what is remembered here to
//! charge that prefill only to the models that would have to do it (`score`): a conversation stays on its model
//! while another is only marginally better, and moves when another is much better, or when its model was unloaded
//! (its cache is gone with it, so nothing is saved by staying).
//!
//! A turn is remembered under a hash of its whole message history; the next turn, which resends that history
//! followed by the answer and its new messages, finds it under the hash of its messages before its last assistant
//! turn. Only an unchanged history matches, so two conversations that merely open alike never share an entry. The
//! `x-switchyard-conversation` header names a conversation explicitly instead. Memory is an LRU of
//! `routing.affinity_conversations` entries of a hash and a model name; nothing is persisted.

use crate::request::{Endpoint, Prepared};
use hashlink::LruCache;
use http::HeaderMap;
use serde_json::Value;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use switchyard_core::ModelName;
use switchyard_core::text::{estimate_tokens, stable_hash_parts};

/// The header naming a conversation explicitly.
pub(crate) const CONVERSATION_HEADER: &str = "x-switchyard-conversation";

/// What a request knows of its conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conversation {
    /// The key its previous turn was remembered under: the messages before its last assistant turn (what the
    /// previous request sent), or the conversation header. `None` on a first turn.
    pub lookup: Option<u64>,
    /// The key this turn is remembered under: all of its messages, or the conversation header.
    pub record: u64,
    /// Estimated tokens up to and including the last assistant turn: what the model that wrote it holds processed,
    /// and any other model has to process again.
    pub prefix_tokens: u64,
}

impl Conversation {
    /// The conversation of a chat request. `None` for other endpoints.
    pub(crate) fn of(prepared: &Prepared, headers: &HeaderMap) -> Option<Conversation> {
        if prepared.endpoint != Endpoint::Chat {
            return None;
        }
        let messages = prepared.body.get("messages").and_then(Value::as_array)?;
        let last_assistant = messages.iter().rposition(|m| role(m) == "assistant");
        let prefix_tokens = last_assistant.map_or(0, |i| messages[..=i].iter().map(tokens).sum());
        match headers.get(CONVERSATION_HEADER).and_then(|v| v.to_str().ok()).map(str::trim) {
            Some(id) if !id.is_empty() => {
                let key = stable_hash_parts(&[b"header", id.as_bytes()]);
                Some(Conversation { lookup: Some(key), record: key, prefix_tokens })
            }
            _ => Some(Conversation {
                lookup: last_assistant.map(|i| history_key(&messages[..i])),
                record: history_key(messages),
                prefix_tokens,
            }),
        }
    }
}

/// A key of a message history. A later turn resends it unchanged, followed by the answer and the new turns.
fn history_key(messages: &[Value]) -> u64 {
    let mut h = DefaultHasher::new();
    for m in messages {
        role(m).hash(&mut h);
        content(m).hash(&mut h);
        if let Some(calls) = m.get("tool_calls") {
            calls.to_string().hash(&mut h);
        }
    }
    h.finish()
}

/// Estimated tokens of one message: its text, its tool calls and a few for the template around it.
fn tokens(m: &Value) -> u64 {
    let calls = m.get("tool_calls").map_or(0, |c| estimate_tokens(&c.to_string()));
    estimate_tokens(content(m)) + calls + 4
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

fn content(m: &Value) -> &str {
    m.get("content").and_then(Value::as_str).unwrap_or("")
}

/// The model that wrote each `context` an `auto` generate was answered with. That field (Ollama's deprecated memory
/// of a generate conversation) holds token ids only the model that wrote them can read: a next turn that sends it
/// back goes to that model first, and any other model gets the request without it. At most [`Contexts::CAPACITY`]
/// are remembered; nothing is persisted.
#[derive(Debug)]
pub(crate) struct Contexts {
    lru: Mutex<LruCache<u64, ModelName>>,
}

impl Contexts {
    pub(crate) const CAPACITY: usize = 4096;

    pub(crate) fn new() -> Self {
        Self { lru: Mutex::new(LruCache::new(Self::CAPACITY)) }
    }

    /// The key of a `context` value: a non-empty list of token ids (anything else has none).
    pub(crate) fn key(context: Option<&Value>) -> Option<u64> {
        let ids = context?.as_array().filter(|ids| !ids.is_empty())?;
        let mut h = DefaultHasher::new();
        for id in ids {
            id.as_u64()?.hash(&mut h);
        }
        Some(h.finish())
    }

    /// The model that wrote the context with this key, if remembered.
    pub(crate) fn model_for(&self, key: Option<u64>) -> Option<ModelName> {
        let key = key?;
        self.lru.lock().ok()?.get(&key).cloned()
    }

    /// Remembers that `model` wrote the context with this key.
    pub(crate) fn wrote(&self, key: u64, model: &ModelName) {
        if let Ok(mut lru) = self.lru.lock() {
            lru.insert(key, model.clone());
        }
    }
}

/// The remembered conversations.
#[derive(Debug)]
pub(crate) struct Conversations {
    enabled: bool,
    lru: Mutex<LruCache<u64, ModelName>>,
}

impl Conversations {
    pub(crate) fn new(enabled: bool, capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        Self { enabled, lru: Mutex::new(LruCache::new(capacity)) }
    }

    /// The model that answered the conversation's previous turn, when affinity is on and the request has one.
    pub(crate) fn model_for(&self, conversation: Option<&Conversation>) -> Option<ModelName> {
        let c = conversation.filter(|c| self.enabled && c.prefix_tokens > 0)?;
        self.lru.lock().ok()?.get(&c.lookup?).cloned()
    }

    /// Remembers that `model` answered a turn of `conversation`.
    pub(crate) fn answered(&self, conversation: Option<&Conversation>, model: &ModelName) {
        let Some(c) = conversation.filter(|_| self.enabled) else { return };
        if let Ok(mut lru) = self.lru.lock() {
            match lru.get_mut(&c.record) {
                Some(kept) if kept == model => {}
                Some(kept) => *kept = model.clone(),
                None => {
                    lru.insert(c.record, model.clone());
                }
            }
        }
    }

    /// Conversations remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lru.lock().map_or(0, |l| l.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classifier;
    use crate::request::{PrepareContext, prepare_native};
    use serde_json::json;
    use switchyard_core::config::RoutingConfig;

    fn chat(messages: Value) -> Prepared {
        let Value::Object(body) = json!({"model": "auto", "messages": messages}) else { unreachable!() };
        let routing = RoutingConfig::default();
        let classifier = Classifier::rules();
        prepare_native(
            Endpoint::Chat,
            body,
            PrepareContext { routing: &routing, classifier: &classifier, quality_header: None },
        )
        .unwrap()
    }

    #[test]
    fn the_next_turn_finds_the_previous_one_and_carries_its_prefix() {
        let first = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]);
        let mut next = first.clone();
        next.as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": "Hi! How can I help you today?"}),
            json!({"role": "user", "content": "Tell me a joke"}),
        ]);
        let mut edited = next.clone();
        edited[1]["content"] = json!("Hello!");
        let h = HeaderMap::new();
        let of = |m: &Value| Conversation::of(&chat(m.clone()), &h).unwrap();
        let (a, b, c) = (of(&first), of(&next), of(&edited));
        assert_eq!(a.lookup, None);
        assert_eq!(b.lookup, Some(a.record));
        assert_ne!(c.lookup, Some(a.record));
        assert_eq!(a.prefix_tokens, 0);
        assert!(b.prefix_tokens > 0);
        // An agent loop: the answer was a tool call, the next request ends with its result.
        let mut tool = first.clone();
        tool.as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}),
            json!({"role": "tool", "content": "42"}),
        ]);
        assert_eq!(of(&tool).lookup, Some(a.record));
        let mut named = HeaderMap::new();
        named.insert(CONVERSATION_HEADER, "thread-7".parse().unwrap());
        let n1 = Conversation::of(&chat(first), &named).unwrap();
        let n2 = Conversation::of(&chat(edited), &named).unwrap();
        assert_eq!((n1.record, n1.lookup), (n2.record, n2.lookup));
        assert_ne!(n1.record, a.record);
    }

    #[test]
    fn the_lru_is_bounded_and_only_multi_turn_requests_look_up() {
        let m = |n: &str| ModelName::parse(n).unwrap();
        let conversations = Conversations::new(true, 2);
        let c = |key| Conversation { lookup: Some(key), record: key, prefix_tokens: 10 };
        conversations.answered(Some(&c(1)), &m("a"));
        conversations.answered(Some(&c(2)), &m("b"));
        conversations.answered(Some(&c(3)), &m("c"));
        assert_eq!(conversations.len(), 2);
        assert_eq!(conversations.model_for(Some(&c(1))), None);
        assert_eq!(conversations.model_for(Some(&c(3))), Some(m("c")));
        assert_eq!(conversations.model_for(Some(&Conversation { lookup: Some(3), record: 3, prefix_tokens: 0 })), None);
        conversations.answered(Some(&c(3)), &m("d"));
        assert_eq!(conversations.model_for(Some(&c(3))), Some(m("d")));
        let off = Conversations::new(false, 2);
        off.answered(Some(&c(1)), &m("a"));
        assert_eq!(off.model_for(Some(&c(1))), None);
    }
}
