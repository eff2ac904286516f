//! The Switchyard router: Ollama and OpenAI surfaces, auto routing by quality and latency, VRAM admission and a
//! streaming forwarder.

pub mod classify;
