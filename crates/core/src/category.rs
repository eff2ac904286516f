//! Task categories: what a request is about, and what the profiler measures per model.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A task category. The first six are profiled; `General` is what a request is when no rule matches, and is
/// scored with the mean of a model's profiled categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Coding,
    Math,
    Reasoning,
    Factual,
    Creative,
    Extraction,
    General,
}

impl Category {
    /// Every category, in a fixed order used for tables and array indices.
    pub const ALL: [Category; 7] = [
        Category::Coding,
        Category::Math,
        Category::Reasoning,
        Category::Factual,
        Category::Creative,
        Category::Extraction,
        Category::General,
    ];

    /// The categories that have profiling suites.
    pub const PROFILED: [Category; 6] = [
        Category::Coding,
        Category::Math,
        Category::Reasoning,
        Category::Factual,
        Category::Creative,
        Category::Extraction,
    ];

    /// Lower-case name, as used in config, URLs, metrics labels and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Coding => "coding",
            Category::Math => "math",
            Category::Reasoning => "reasoning",
            Category::Factual => "factual",
            Category::Creative => "creative",
            Category::Extraction => "extraction",
            Category::General => "general",
        }
    }

    /// Position in [`Category::ALL`], for per-category arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCategory(pub String);

impl fmt::Display for UnknownCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown category {:?} (expected one of coding, math, reasoning, factual, creative, extraction, general)",
            self.0
        )
    }
}

impl std::error::Error for UnknownCategory {}

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCategory(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_matches_position() {
        for (i, c) in Category::ALL.into_iter().enumerate() {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(c.index(), i);
        }
        assert_eq!("  Math ".parse::<Category>().unwrap(), Category::Math);
        assert!("poetry".parse::<Category>().is_err());
    }
}
