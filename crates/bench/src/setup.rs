//! What both tools set up the same way: the router's configuration against a simulator, and request bodies.

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::json;
use std::path::Path;
use switchyard_core::config::{Config, ProbeKind};

/// Context length every request asks for. The router normalises every model to `vram.num_ctx` (4096 by default);
/// direct requests ask for the same, so that both paths load the same model instances and neither reloads.
pub const NUM_CTX: u64 = 4096;

/// A router configuration against the simulator at `sim_url`, listening on a free loopback port, with its SQLite
/// store in `dir` and the simulator's `/sim/gpu` as the GPU probe.
pub fn router_config(sim_url: &str, dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.ollama.url = sim_url.to_string();
    config.vram.probe = ProbeKind::Sim;
    config.vram.num_ctx = NUM_CTX;
    config.database.url = format!("sqlite://{}", dir.join("switchyard.db").display());
    config
}

/// Writes `config` as a TOML file the `switchyard` binary reads with `--config`.
pub fn write_config(config: &Config, path: &Path) -> Result<()> {
    config.validate().context("the benchmark's router configuration is invalid")?;
    let text = toml::to_string(config).context("rendering the router configuration")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// An Ollama `/api/chat` body with one user turn; `num_predict` caps the answer.
pub fn chat_body(model: &str, prompt: &str, stream: bool, num_predict: u64) -> Bytes {
    Bytes::from(
        json!({
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": stream,
            "options": {"num_ctx": NUM_CTX, "num_predict": num_predict},
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let config = router_config("http://127.0.0.1:1", dir.path());
        let path = dir.path().join("c.toml");
        write_config(&config, &path).unwrap();
        let back: Config = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.ollama.url, "http://127.0.0.1:1");
    }
}
