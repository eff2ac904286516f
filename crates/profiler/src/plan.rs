//! What a profiling run covers, from the configuration and a request: the suites (`profiler.suite_dir` or the
//! embedded ones), the judge (`profiler.judge`, `profiler.judge_url`) and the run options. Shared by
//! `switchyard profile` and the server's profiling jobs.

use crate::error::ProfileError;
use crate::runner::{JudgeTarget, RunOptions};
use crate::suite::{self, Suite};
use std::path::Path;
use std::time::Duration;
use switchyard_core::config::Config;
use switchyard_core::{Category, ModelName};

/// The suites configured: `profiler.suite_dir` or the embedded ones.
pub fn suites(config: &Config) -> Result<Vec<Suite>, ProfileError> {
    if config.profiler.suite_dir.is_empty() {
        suite::builtin()
    } else {
        suite::load_dir(Path::new(&config.profiler.suite_dir))
    }
}

/// The judge configured, if any: an OpenAI-compatible endpoint when `profiler.judge_url` is set, else a local
/// model when `profiler.judge` is.
pub fn judge(config: &Config) -> Result<Option<JudgeTarget>, ProfileError> {
    let p = &config.profiler;
    if !p.judge_url.is_empty() {
        let model = if p.judge.is_empty() { "gpt-4o-mini".to_string() } else { p.judge.clone() };
        let api_key = std::env::var(&p.judge_key_env).ok().filter(|k| !k.is_empty());
        return Ok(Some(JudgeTarget::OpenAi { base_url: p.judge_url.clone(), api_key, model }));
    }
    if p.judge.is_empty() {
        return Ok(None);
    }
    let model = ModelName::parse(&p.judge).map_err(|e| invalid("--judge", e.to_string()))?;
    Ok(Some(JudgeTarget::Local(model)))
}

/// Run options from the configuration and a request's models, categories and `force`.
pub fn options(
    config: &Config,
    models: &[String],
    categories: &[String],
    force: bool,
) -> Result<RunOptions, ProfileError> {
    let models = models
        .iter()
        .map(|m| ModelName::parse(m).map_err(|e| invalid("models", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let categories = categories
        .iter()
        .map(|c| c.parse::<Category>().map_err(|e| invalid("categories", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if categories.contains(&Category::General) {
        return Err(invalid(
            "categories",
            "general has no suite; pick from coding, math, reasoning, factual, creative, extraction",
        ));
    }
    Ok(RunOptions {
        models,
        categories,
        items_per_category: config.profiler.items_per_category as usize,
        force,
        judge: judge(config)?,
        max_output_tokens: config.profiler.max_output_tokens,
        timeout_floor: Duration::from_secs(config.profiler.timeout_floor_secs),
    })
}

fn invalid(param: &str, message: impl Into<String>) -> ProfileError {
    ProfileError::InvalidOption { param: param.to_string(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(e: ProfileError) -> String {
        match e {
            ProfileError::InvalidOption { param, .. } => param,
            other => panic!("expected InvalidOption, got {other}"),
        }
    }

    #[test]
    fn options_name_the_bad_field() {
        let config = Config::default();
        let o = options(&config, &["qwen3:8b".into()], &["math".into()], true).unwrap();
        assert_eq!(o.models.len(), 1);
        assert_eq!(o.categories, vec![Category::Math]);
        assert!(o.force);
        assert_eq!(param_of(options(&config, &["bad name".into()], &[], false).unwrap_err()), "models");
        assert_eq!(param_of(options(&config, &[], &["cooking".into()], false).unwrap_err()), "categories");
        assert_eq!(param_of(options(&config, &[], &["general".into()], false).unwrap_err()), "categories");
        let mut config = Config::default();
        config.profiler.judge = "bad name".into();
        assert_eq!(param_of(judge(&config).unwrap_err()), "--judge");
    }

    #[test]
    fn the_judge_is_local_unless_an_endpoint_is_set() {
        let mut config = Config::default();
        assert!(judge(&config).unwrap().is_none());
        config.profiler.judge = "llama3:8b".into();
        assert!(matches!(judge(&config).unwrap(), Some(JudgeTarget::Local(_))));
        config.profiler.judge_url = "http://127.0.0.1:1/v1".into();
        assert!(matches!(judge(&config).unwrap(), Some(JudgeTarget::OpenAi { model, .. }) if model == "llama3:8b"));
    }

    #[test]
    fn suites_are_the_embedded_ones_unless_a_directory_is_set() {
        let mut config = Config::default();
        assert!(!suites(&config).unwrap().is_empty());
        config.profiler.suite_dir = "/nonexistent/switchyard-suites".into();
        assert!(matches!(suites(&config).unwrap_err(), ProfileError::Suite { .. }));
    }
}
