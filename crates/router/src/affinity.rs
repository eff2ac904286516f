//! Conversation affinity: the model that answered a conversation's previous turn, so that the next turn can stay
//! where its prefix is already processed.
//!
//! Ollama keeps the KV cache of a loaded model's recent prompts; a next turn sent to the same model reprocesses only
//! what is new, while any other model reprocesses the whole history. The scorer uses what is remembered here to
//! charge that prefill only to the models that would have to do it (`score`): a conversation stays on its model
//! while another is only marginally better, and moves when another is much better, or when its model was unloaded
//! (its cache is gone with it, so nothing is saved by staying).
//!
//! A conversation is named by the `x-switchyard-conversation` header, or else by a hash of its system prompt and
//! first user turn (which every later turn repeats). Memory is an LRU of `routing.affinity_conversations` entries
//! of a hash and a model name; nothing is persisted.

use crate::request::{Endpoint, Prepared};
use hashlink::LruCache;
use http::HeaderMap;
use serde_json::Value;
use std::sync::Mutex;
use switchyard_core::ModelName;
use switchyard_core::text::{estimate_tokens, stable_hash_parts};

/// The header naming a conversation explicitly.
pub(crate) const CONVERSATION_HEADER: &str = "x-switchyard-conversation";

/// What a request knows of its conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conversation {
    /// The conversation's key.
    pub key: u64,
    /// Estimated tokens of the turns before the last user turn: what a model that did not answer the previous
    /// turn has to process again.
    pub prefix_tokens: u64,
}

impl Conversation {
    /// The conversation of a chat request: by header, else by its system prompt and first user turn. `None` for
    /// other endpoints and for chats without a user turn.
    pub(crate) fn of(prepared: &Prepared, headers: &HeaderMap) -> Option<Conversation> {
        if prepared.endpoint != Endpoint::Chat {
            return None;
        }
        let messages = prepared.body.get("messages").and_then(Value::as_array)?;
        let last_user = messages.iter().rposition(|m| role(m) == "user")?;
        let prefix_tokens = messages[..last_user].iter().map(|m| estimate_tokens(content(m)) + 4).sum();
        let key = match headers.get(CONVERSATION_HEADER).and_then(|v| v.to_str().ok()) {
            Some(id) if !id.trim().is_empty() => stable_hash_parts(&[b"header", id.trim().as_bytes()]),
            _ => {
                let mut parts: Vec<&[u8]> = vec![b"messages"];
                for m in messages {
                    let r = role(m);
                    if r == "system" || r == "user" {
                        parts.push(r.as_bytes());
                        parts.push(content(m).as_bytes());
                    }
                    if r == "user" {
                        break;
                    }
                }
                stable_hash_parts(&parts)
            }
        };
        Some(Conversation { key, prefix_tokens })
    }
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

fn content(m: &Value) -> &str {
    m.get("content").and_then(Value::as_str).unwrap_or("")
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
        self.lru.lock().ok()?.get(&c.key).cloned()
    }

    /// Remembers that `model` answered a turn of `conversation`.
    pub(crate) fn answered(&self, conversation: Option<&Conversation>, model: &ModelName) {
        let Some(c) = conversation.filter(|_| self.enabled) else { return };
        if let Ok(mut lru) = self.lru.lock() {
            match lru.get_mut(&c.key) {
                Some(kept) if kept == model => {}
                Some(kept) => *kept = model.clone(),
                None => {
                    lru.insert(c.key, model.clone());
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
    fn later_turns_share_the_first_turns_key_and_carry_their_prefix() {
        let first =
            chat(json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]));
        let second =
            chat(json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
                                 {"role": "assistant", "content": "Hi! How can I help you today?"},
                                 {"role": "user", "content": "Tell me a joke"}]));
        let other = chat(json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Goodbye"}]));
        let h = HeaderMap::new();
        let (a, b, c) = (
            Conversation::of(&first, &h).unwrap(),
            Conversation::of(&second, &h).unwrap(),
            Conversation::of(&other, &h).unwrap(),
        );
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert!(b.prefix_tokens > a.prefix_tokens);
        let mut named = HeaderMap::new();
        named.insert(CONVERSATION_HEADER, "thread-7".parse().unwrap());
        assert_ne!(Conversation::of(&first, &named).unwrap().key, a.key);
        assert_eq!(Conversation::of(&first, &named).unwrap().key, Conversation::of(&other, &named).unwrap().key);
    }

    #[test]
    fn the_lru_is_bounded_and_only_multi_turn_requests_look_up() {
        let m = |n: &str| ModelName::parse(n).unwrap();
        let conversations = Conversations::new(true, 2);
        let c = |key| Conversation { key, prefix_tokens: 10 };
        conversations.answered(Some(&c(1)), &m("a"));
        conversations.answered(Some(&c(2)), &m("b"));
        conversations.answered(Some(&c(3)), &m("c"));
        assert_eq!(conversations.len(), 2);
        assert_eq!(conversations.model_for(Some(&c(1))), None);
        assert_eq!(conversations.model_for(Some(&c(3))), Some(m("c")));
        assert_eq!(conversations.model_for(Some(&Conversation { key: 3, prefix_tokens: 0 })), None);
        conversations.answered(Some(&c(3)), &m("d"));
        assert_eq!(conversations.model_for(Some(&c(3))), Some(m("d")));
        let off = Conversations::new(false, 2);
        off.answered(Some(&c(1)), &m("a"));
        assert_eq!(off.model_for(Some(&c(1))), None);
    }
}
