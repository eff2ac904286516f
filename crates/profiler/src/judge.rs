//! The optional LLM judge for open-ended items.
