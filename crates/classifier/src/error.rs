//! The crate's one error type: reading a model file, and training from a corpus.

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifierError {
    /// The model file does not start with the magic bytes.
    #[error("not a classifier model (bad magic)")]
    ModelMagic,
    /// The model file's header is out of range or disagrees with the file's length.
    #[error("classifier model is malformed: {0}")]
    ModelMalformed(String),
    /// A corpus line could not be read.
    #[error("corpus line {line}: {message}")]
    Corpus {
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The corpus cannot train or evaluate a model (a category without examples, no test split...).
    #[error("corpus cannot be used: {0}")]
    Unusable(String),
}
