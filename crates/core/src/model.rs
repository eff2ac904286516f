//! Model names and capabilities.
//!
//! Ollama accepts `[host/][namespace/]model[:tag]` with the tag defaulting to `latest`, and reports the short form
//! (`llama3.2:latest`) in `/api/tags` and `/api/ps`. Everything that keys on a model (ledger, profiles, breaker)
//! uses [`ModelName`], which is always in that short, tagged form.

use crate::error::CoreError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Longest model name accepted; Ollama's own limit is in the same range and anything longer is hostile input.
const MAX_NAME_LEN: usize = 200;

/// A normalised model name: short form, always with a tag. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(Arc<str>);

impl ModelName {
    /// Parses and normalises a client-supplied name.
    ///
    /// Rejects empty names, names with characters Ollama does not use, path tricks (`..`, a leading `/`, `\`) and
    /// names longer than 200 bytes. Strips the default registry and `library/` namespace and adds `:latest` when
    /// no tag is given.
    pub fn parse(raw: &str) -> Result<Self, CoreError> {
        let invalid = |reason| CoreError::InvalidModelName { name: truncate_for_message(raw), reason };
        let name = raw.trim();
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("the name is longer than 200 characters"));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/')) {
            return Err(invalid("only letters, digits and . - _ : / are allowed"));
        }
        if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
            return Err(invalid("empty path segment"));
        }
        if name.split('/').any(|seg| seg == "." || seg == ".." || seg.starts_with('.')) {
            return Err(invalid("path-like segments are not allowed"));
        }
        let short = name.strip_prefix("registry.ollama.ai/").unwrap_or(name);
        let short = short.strip_prefix("library/").unwrap_or(short);
        let last = short.rsplit('/').next().unwrap_or(short);
        let (base, tag) = match last.split_once(':') {
            Some((base, tag)) => (base, Some(tag)),
            None => (last, None),
        };
        if base.is_empty() {
            return Err(invalid("the model part is empty"));
        }
        if let Some(tag) = tag {
            if tag.is_empty() || tag.contains(':') {
                return Err(invalid("a name has at most one non-empty :tag"));
            }
            return Ok(Self(Arc::from(short)));
        }
        Ok(Self(Arc::from(format!("{short}:latest"))))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its tag (`llama3.2` for `llama3.2:latest`).
    pub fn base(&self) -> &str {
        self.0.rsplit_once(':').map(|(b, _)| b).unwrap_or(&self.0)
    }
}

fn truncate_for_message(raw: &str) -> String {
    raw.chars().take(64).collect()
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Serialize for ModelName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ModelName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a model can do, as `/api/show` reports it in `capabilities`. Never guessed from the name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub completion: bool,
    pub tools: bool,
    pub insert: bool,
    pub vision: bool,
    pub embedding: bool,
    pub thinking: bool,
}

impl Capabilities {
    /// Builds the set from Ollama's list of capability strings; unknown strings are ignored.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut caps = Self::default();
        for name in names {
            match name {
                "completion" => caps.completion = true,
                "tools" => caps.tools = true,
                "insert" => caps.insert = true,
                "vision" => caps.vision = true,
                "embedding" => caps.embedding = true,
                "thinking" => caps.thinking = true,
                _ => {}
            }
        }
        caps
    }

    /// The capability strings in Ollama's spelling, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.completion, "completion"),
            (self.tools, "tools"),
            (self.insert, "insert"),
            (self.vision, "vision"),
            (self.embedding, "embedding"),
            (self.thinking, "thinking"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// True when every capability set in `needed` is also set here.
    pub fn covers(&self, needed: &Capabilities) -> bool {
        (!needed.completion || self.completion)
            && (!needed.tools || self.tools)
            && (!needed.insert || self.insert)
            && (!needed.vision || self.vision)
            && (!needed.embedding || self.embedding)
            && (!needed.thinking || self.thinking)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_to_the_short_tagged_form() {
        let cases = [
            ("llama3.2", "llama3.2:latest"),
            ("llama3.2:3b", "llama3.2:3b"),
            ("library/llama3.2", "llama3.2:latest"),
            ("registry.ollama.ai/library/qwen2.5:7b", "qwen2.5:7b"),
            ("hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M"),
            ("  mistral ", "mistral:latest"),
        ];
        for (raw, want) in cases {
            assert_eq!(ModelName::parse(raw).unwrap().as_str(), want, "{raw}");
        }
        assert_eq!(ModelName::parse("qwen2.5-coder:7b").unwrap().base(), "qwen2.5-coder");
    }

    #[test]
    fn hostile_names_are_rejected() {
        let long = "a".repeat(201);
        for raw in
            ["", " ", "../etc/passwd", "/abs", "a/../b", "a//b", "a b", "a\\b", "x:", ":tag", "a:b:c", &long, "é"]
        {
            assert!(ModelName::parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn capabilities_from_ollama_strings() {
        let caps = Capabilities::from_names(["completion", "tools", "nonsense"]);
        assert!(caps.completion && caps.tools && !caps.vision);
        assert_eq!(caps.names(), vec!["completion", "tools"]);
        let need = Capabilities { tools: true, ..Default::default() };
        assert!(caps.covers(&need));
        assert!(!Capabilities::default().covers(&need));
    }
}
