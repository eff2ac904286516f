//! The documentation and deployment files against the code they describe.
//!
//! - every configuration key and its environment variable, and every environment alias, is in
//!   `docs/configuration.md`;
//! - every preset in `profiles/` has a row in the preset table of `docs/configuration.md` naming each value it sets;
//! - every route registered in `src/server.rs` is in `docs/api.md` with each of its methods;
//! - every `SWITCHYARD_*` variable named in `deploy/` or `docs/` is one the configuration loader accepts (or one the
//!   docs say it refuses, and it does);
//! - the `switchyard.toml` of the Kubernetes ConfigMap loads with the real loader.

use anyhow::{Context, Result, bail, ensure};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use switchyard_core::config::{ConfigSources, ENV_ALIASES, PRESETS, Source, documented_keys, load};

/// Variables the docs name only to say that the loader refuses them; each must really be refused.
const REFUSED_NAMES: [&str; 1] = [
    // The misspelt variable of the error example in docs/configuration.md.
    "SWITCHYARD_VRAM_HEADROM",
];

/// Variables the docs name that are not settings and that the loader lets through; each must really be accepted.
const IGNORED_NAMES: [&str; 4] =
    ["SWITCHYARD_CONFIG", "SWITCHYARD_SERVICE_HOST", "SWITCHYARD_SERVICE_PORT", "SWITCHYARD_PORT"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> Result<String> {
    let path = root().join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Every file under `dir` (recursively), relative paths sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn every_configuration_key_and_variable_is_documented() -> Result<()> {
    let doc = read("docs/configuration.md")?;
    let mut missing = Vec::new();
    for (key, env) in documented_keys()? {
        if !doc.contains(&format!("`{key}`")) {
            missing.push(format!("key `{key}`"));
        }
        if !doc.contains(&format!("`{env}`")) {
            missing.push(format!("environment variable `{env}` (for {key})"));
        }
    }
    for (alias, target) in ENV_ALIASES {
        if !doc.contains(&format!("`{alias}`")) {
            missing.push(format!("environment alias `{alias}` (for {target})"));
        }
    }
    ensure!(missing.is_empty(), "docs/configuration.md does not mention:\n  {}", missing.join("\n  "));
    Ok(())
}

/// The keys a preset sets, with their values as `config show` renders them (`vram.total = "24GiB"`).
fn preset_values(name: &str) -> Result<BTreeMap<String, String>> {
    let loaded = load(&ConfigSources { preset: Some(name.to_string()), ..ConfigSources::default() })
        .with_context(|| format!("loading preset {name}"))?;
    let rendered = loaded.render()?;
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in rendered.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let Some((assignment, origin)) = line.split_once("  # ") else { continue };
        if origin != format!("preset {name}") {
            continue;
        }
        let (key, value) = assignment.split_once(" = ").context("a rendered line without ` = `")?;
        out.insert(format!("{section}.{key}"), value.to_string());
    }
    for (key, source) in &loaded.origins {
        ensure!(*source == Source::Preset(name.to_string()), "{key} of preset {name} comes from {source}");
    }
    ensure!(
        out.len() == loaded.origins.len(),
        "preset {name}: rendered {} values, set {}",
        out.len(),
        loaded.origins.len()
    );
    Ok(out)
}

#[test]
fn every_preset_has_a_row_with_its_values() -> Result<()> {
    let doc = read("docs/configuration.md")?;
    let mut files: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("profiles"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let stem = path.file_stem().and_then(|s| s.to_str()).context("preset file name")?;
            files.insert(stem.to_string());
        }
    }
    let embedded: BTreeSet<String> = PRESETS.iter().map(|(n, _)| n.to_string()).collect();
    ensure!(files == embedded, "profiles/ holds {files:?} but the binary embeds {embedded:?}");
    let mut problems = Vec::new();
    for name in &files {
        let prefix = format!("| `{name}` |");
        let Some(row) = doc.lines().find(|l| l.starts_with(&prefix)) else {
            problems.push(format!("no preset table row starting with {prefix}"));
            continue;
        };
        for (key, value) in preset_values(name)? {
            let wanted = format!("`{key} = {value}`");
            if !row.contains(&wanted) {
                problems.push(format!("the row of `{name}` does not show {wanted}"));
            }
        }
    }
    ensure!(problems.is_empty(), "docs/configuration.md:\n  {}", problems.join("\n  "));
    Ok(())
}

/// `(METHOD, path)` of every `.route("path", method(..).method(..))` in `src/server.rs`, however it is wrapped.
fn registered_routes() -> Result<Vec<(String, String)>> {
    let server = read("crates/router/src/server.rs")?;
    let path = Regex::new(r#"^\s*"([^"]+)"\s*,"#)?;
    let method = Regex::new(r"\b(get|post|put|delete|patch|head|options)\(")?;
    let mut out = Vec::new();
    for (start, _) in server.match_indices(".route(") {
        // The call's arguments: up to the parenthesis that closes `.route(`.
        let rest = &server[start + ".route(".len()..];
        let mut depth = 1usize;
        let end = rest
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .context("a .route( call without its closing parenthesis")?;
        let args = &rest[..end];
        let Some(p) = path.captures(args) else { continue };
        let route = p[1].replace("{*", "{");
        let methods: Vec<String> =
            method.captures_iter(&args[p[0].len()..]).map(|m| m[1].to_ascii_uppercase()).collect();
        ensure!(!methods.is_empty(), "no method found for the route {route:?}");
        out.extend(methods.into_iter().map(|m| (m, route.clone())));
    }
    ensure!(out.len() >= 20, "only {} routes parsed from server.rs; has its layout changed?", out.len());
    Ok(out)
}

#[test]
fn every_route_is_documented_with_its_methods() -> Result<()> {
    let doc = read("docs/api.md")?;
    let missing: Vec<String> = registered_routes()?
        .into_iter()
        .map(|(m, p)| format!("{m} {p}"))
        .filter(|route| !doc.contains(&format!("`{route}`")))
        .collect();
    ensure!(missing.is_empty(), "docs/api.md does not document:\n  {}", missing.join("\n  "));
    Ok(())
}

/// Whether the loader knows `var`: a key's variable or a documented alias.
fn accepted(var: &str, known: &BTreeSet<String>) -> bool {
    known.contains(var) || ENV_ALIASES.iter().any(|(alias, _)| *alias == var)
}

#[test]
fn every_named_environment_variable_is_one_the_loader_accepts() -> Result<()> {
    let known: BTreeSet<String> = documented_keys()?.into_iter().map(|(_, env)| env).collect();
    let name = Regex::new(r"SWITCHYARD_[A-Z0-9][A-Z0-9_]*[A-Z0-9]")?;
    let mut files = files_under(&root().join("deploy"))?;
    files.extend(files_under(&root().join("docs"))?.into_iter().filter(|p| !p.ends_with("benchmarks.md")));
    let mut problems = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for m in name.find_iter(&text) {
            let var = m.as_str();
            if REFUSED_NAMES.contains(&var) || IGNORED_NAMES.contains(&var) || accepted(var, &known) {
                continue;
            }
            problems.push(format!("{}: {var}", path.strip_prefix(root()).unwrap_or(&path).display()));
        }
    }
    problems.dedup();
    ensure!(problems.is_empty(), "variables the configuration loader would refuse:\n  {}", problems.join("\n  "));
    for var in REFUSED_NAMES {
        let sources = ConfigSources { env: vec![(var.to_string(), "x".to_string())], ..ConfigSources::default() };
        match load(&sources) {
            Err(e) if e.to_string().contains("unknown environment variable") => {}
            Err(e) => bail!("{var} is refused, but not as unknown: {e}"),
            Ok(_) => bail!("{var} is now accepted: update the docs that say it is refused, and REFUSED_NAMES"),
        }
    }
    for var in IGNORED_NAMES {
        let sources = ConfigSources { env: vec![(var.to_string(), "x".to_string())], ..ConfigSources::default() };
        if let Err(e) = load(&sources) {
            bail!("{var} is refused ({e}): update the docs that say it is ignored, and IGNORED_NAMES");
        }
    }
    Ok(())
}

/// The `switchyard.toml` of a ConfigMap manifest, loaded by the real configuration loader with the Secret's admin key.
fn configmap_config(path: &str) -> Result<switchyard_core::config::Config> {
    let manifest = read(path)?;
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "switchyard.toml: |").skip(1).peekable();
    let indent = lines.peek().map(|l| l.len() - l.trim_start().len()).context("switchyard.toml is empty")?;
    let toml: String = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("switchyard.toml");
    std::fs::write(&file, &toml)?;
    let sources = ConfigSources {
        file: Some(file),
        env: vec![("SWITCHYARD_ADMIN_KEY".to_string(), "from-the-secret".to_string())],
        ..ConfigSources::default()
    };
    Ok(load(&sources).map_err(|e| anyhow::anyhow!("{path} switchyard.toml: {e}"))?.config)
}

#[test]
fn the_kubernetes_configmap_loads() -> Result<()> {
    let config = configmap_config("deploy/k8s/configmap.yaml")?;
    ensure!(config.ollama.url == "http://127.0.0.1:11434", "Switchyard must reach Ollama on loopback");
    ensure!(config.server.listen.port() == 11435, "the pods listen on 11435");
    let front = configmap_config("deploy/k8s/fleet/front.yaml")?;
    ensure!(!front.ollama.enabled, "a fleet front has no Ollama of its own");
    ensure!(
        !front.backends.is_empty()
            && front.backends.iter().all(|b| b.kind == switchyard_core::config::BackendKind::Switchyard),
        "the fleet front's backends are its nodes"
    );
    Ok(())
}
