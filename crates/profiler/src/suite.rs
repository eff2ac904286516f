//! Profiling suites: one TOML file per category, each item a prompt with a checker that needs no judge.
//!
//! A suite file looks like this:
//!
//! ```toml
//! category = "math"
//! version = 1                      # bump when items change meaning; the content hash is added anyway
//! description = "Arithmetic, algebra and word problems with one numeric answer."
//!
//! [[items]]
//! id = "math-001"
//! prompt = "What is 17 * 23? Answer with the number only."
//! reference = "391"                # a correct answer; tests check it passes its own checker
//! check = { kind = "numeric", value = 391 }
//! ```
//!
//! The suite's version string is `v{version}-{hash}` where the hash covers the file's bytes, so any edit marks the
//! profiles measured with the old file stale.

use crate::check::Check;
use crate::error::ProfileError;
use serde::Deserialize;
use std::path::Path;
use switchyard_core::Category;
use switchyard_core::text::stable_hash;

/// The embedded suites, one per profiled category.
const BUILTIN: [(&str, &str); 6] = [
    ("coding.toml", include_str!("../suites/coding.toml")),
    ("math.toml", include_str!("../suites/math.toml")),
    ("reasoning.toml", include_str!("../suites/reasoning.toml")),
    ("factual.toml", include_str!("../suites/factual.toml")),
    ("creative.toml", include_str!("../suites/creative.toml")),
    ("extraction.toml", include_str!("../suites/extraction.toml")),
];

/// One category's items.
#[derive(Debug, Clone)]
pub struct Suite {
    pub category: Category,
    /// `v{version}-{hash of the file}`.
    pub version: String,
    pub description: String,
    pub items: Vec<Item>,
}

/// One profiling item.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Unique within the suite, stable across edits (`math-001`).
    pub id: String,
    /// Filled from the suite's category when loading.
    #[serde(skip, default = "default_category")]
    pub category: Category,
    /// The user message sent to the model.
    pub prompt: String,
    /// An optional system message.
    #[serde(default)]
    pub system: Option<String>,
    /// A correct answer. Every reference must pass its own checker (a test enforces it); the simulator answers it
    /// when it decides the model gets the item right.
    pub reference: String,
    /// How an answer is judged.
    pub check: Check,
    /// Most output tokens for this item (the profiler's default otherwise).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

fn default_category() -> Category {
    Category::General
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    category: String,
    version: u32,
    #[serde(default)]
    description: String,
    items: Vec<Item>,
}

impl Suite {
    /// Parses one suite file's text. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Suite, ProfileError> {
        let err = |message: String| ProfileError::Suite { file: file.to_string(), message };
        let raw: SuiteFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let category: Category =
            raw.category.parse().map_err(|e: switchyard_core::category::UnknownCategory| err(e.to_string()))?;
        if category == Category::General {
            return Err(err("the general category has no suite".to_string()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut items = raw.items;
        for item in &mut items {
            if item.id.trim().is_empty() {
                return Err(err("an item has an empty id".to_string()));
            }
            if !seen.insert(item.id.clone()) {
                return Err(err(format!("item id {:?} appears twice", item.id)));
            }
            if item.prompt.trim().is_empty() {
                return Err(err(format!("item {:?} has an empty prompt", item.id)));
            }
            item.check.validate().map_err(|m| err(format!("item {:?}: {m}", item.id)))?;
            item.category = category;
        }
        if items.is_empty() {
            return Err(err("the suite has no items".to_string()));
        }
        let version = format!("v{}-{:08x}", raw.version, stable_hash(text.as_bytes()) as u32);
        Ok(Suite { category, version, description: raw.description, items })
    }

    /// The first `n` items (all when `n` is 0 or larger than the suite).
    pub fn take(&self, n: usize) -> &[Item] {
        if n == 0 || n >= self.items.len() { &self.items } else { &self.items[..n] }
    }
}

/// The embedded suites.
pub fn builtin() -> Result<Vec<Suite>, ProfileError> {
    BUILTIN.iter().map(|(file, text)| Suite::parse(file, text)).collect()
}

/// Every `*.toml` suite in `dir`, sorted by category. A category may appear at most once.
pub fn load_dir(dir: &Path) -> Result<Vec<Suite>, ProfileError> {
    let io_err = |e: std::io::Error| ProfileError::Suite { file: dir.display().to_string(), message: e.to_string() };
    let mut suites = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io_err)?.collect::<Result<_, _>>().map_err(io_err)?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ProfileError::Suite { file: path.display().to_string(), message: e.to_string() })?;
        let suite = Suite::parse(&path.display().to_string(), &text)?;
        if suites.iter().any(|s: &Suite| s.category == suite.category) {
            return Err(ProfileError::Suite {
                file: path.display().to_string(),
                message: format!("a second suite for category {}", suite.category),
            });
        }
        suites.push(suite);
    }
    if suites.is_empty() {
        return Err(ProfileError::Suite {
            file: dir.display().to_string(),
            message: "no *.toml suites found".to_string(),
        });
    }
    suites.sort_by_key(|s| s.category);
    Ok(suites)
}

/// The combined version of several suites, recorded on a profile run (`coding=v1-…;math=v1-…`).
pub fn combined_version(suites: &[&Suite]) -> String {
    suites.iter().map(|s| format!("{}={}", s.category, s.version)).collect::<Vec<_>>().join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATH: &str = r#"
category = "math"
version = 1
description = "Arithmetic."

[[items]]
id = "math-001"
prompt = "What is 17 * 23? Answer with the number only."
reference = "391"
check = { kind = "numeric", value = 391 }

[[items]]
id = "math-002"
prompt = "What is 2 + 2? Answer with the number only."
reference = "4"
check = { kind = "numeric", value = 4 }
"#;

    const FACTUAL: &str = r#"
category = "factual"
version = 3
description = "Capitals."

[[items]]
id = "factual-001"
prompt = "What is the capital of France? Answer with the name only."
reference = "Paris"
check = { kind = "exact", answer = "Paris" }
"#;

    fn parse_err(text: &str) -> String {
        Suite::parse("test.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn parses_items_and_fills_the_category() {
        let suite = Suite::parse("math.toml", MATH).unwrap();
        assert_eq!(suite.category, Category::Math);
        assert_eq!(suite.items.len(), 2);
        assert!(suite.items.iter().all(|i| i.category == Category::Math));
        assert_eq!(suite.take(1).len(), 1);
        assert_eq!(suite.take(0).len(), 2);
        assert_eq!(suite.take(10).len(), 2);
    }

    #[test]
    fn version_follows_the_file_text() {
        let base = Suite::parse("math.toml", MATH).unwrap().version;
        assert!(base.starts_with("v1-"), "{base}");
        assert_eq!(Suite::parse("other-name.toml", MATH).unwrap().version, base, "the file name does not count");
        let reworded = MATH.replace("What is 2 + 2?", "What is two plus two?");
        assert_ne!(Suite::parse("math.toml", &reworded).unwrap().version, base);
        let spaced = format!("{MATH}\n");
        assert_ne!(Suite::parse("math.toml", &spaced).unwrap().version, base);
        let bumped = MATH.replace("version = 1", "version = 2");
        assert!(Suite::parse("math.toml", &bumped).unwrap().version.starts_with("v2-"));
    }

    #[test]
    fn errors_name_the_file_item_and_field() {
        let bad_regex = MATH.replace(r#"{ kind = "numeric", value = 4 }"#, r#"{ kind = "regex", pattern = "(" }"#);
        let message = parse_err(&bad_regex);
        assert!(message.contains("test.toml") && message.contains("math-002") && message.contains("check.pattern"));
        let twice = MATH.replace("math-002", "math-001");
        assert!(parse_err(&twice).contains("appears twice"));
        assert!(parse_err(&MATH.replace("category = \"math\"", "category = \"general\"")).contains("general"));
        assert!(parse_err(&MATH.replace("category = \"math\"", "category = \"poetry\"")).contains("poetry"));
        assert!(parse_err(&MATH.replace("reference = \"4\"", "reference = \"4\"\nweight = 2")).contains("weight"));
    }

    #[test]
    fn load_dir_reads_every_toml_sorted_by_category() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b-math.toml"), MATH).unwrap();
        std::fs::write(dir.path().join("a-factual.toml"), FACTUAL).unwrap();
        std::fs::write(dir.path().join("notes.md"), "not a suite").unwrap();
        let suites = load_dir(dir.path()).unwrap();
        let categories: Vec<Category> = suites.iter().map(|s| s.category).collect();
        assert_eq!(categories, vec![Category::Math, Category::Factual]);
        let refs: Vec<&Suite> = suites.iter().collect();
        let combined = combined_version(&refs);
        assert!(combined.starts_with("math=v1-") && combined.contains(";factual=v3-"), "{combined}");

        std::fs::write(dir.path().join("c-math-again.toml"), MATH).unwrap();
        assert!(load_dir(dir.path()).unwrap_err().to_string().contains("a second suite"));
    }

    #[test]
    fn load_dir_refuses_an_empty_or_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_dir(dir.path()).unwrap_err().to_string().contains("no *.toml"));
        assert!(load_dir(&dir.path().join("missing")).is_err());
    }
}
