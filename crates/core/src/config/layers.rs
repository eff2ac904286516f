//! Layered loading: built-in defaults < preset < config file < `SWITCHYARD_*` environment < flags.
//!
//! Each layer is a TOML table. Before it is merged, every key in it is checked against the defaults' shape, so an
//! unknown key is refused with the layer that carried it and the keys that are allowed. The merge records which
//! layer set each value, for `switchyard config show`. The merged table is then deserialised (type errors name the
//! key) and validated (range errors name the key and where its value came from).

use super::{Config, ModelSettings, TASK_KEYS, presets};
use crate::error::CoreError;
use crate::model::ModelName;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use toml::{Table, Value};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Source {
    Default,
    Preset(String),
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Preset(name) => write!(f, "preset {name}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A value given on the command line for a dotted key (`server.listen` from `--listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    pub key: &'static str,
    pub flag: &'static str,
    pub value: String,
}

/// Everything that can set configuration, besides the defaults.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `--preset NAME`.
    pub preset: Option<String>,
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// Environment variables; only `SWITCHYARD_*` ones are read.
    pub env: Vec<(String, String)>,
    /// Flags, in the order given.
    pub flags: Vec<FlagValue>,
}

impl ConfigSources {
    /// Sources with this process's environment.
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars().filter(|(k, _)| k.starts_with("SWITCHYARD_")).collect();
        self
    }
}

/// A loaded, validated configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Dotted key -> the layer that set it; keys absent here hold their default.
    pub origins: BTreeMap<String, Source>,
}

/// Environment variables that are not `SWITCHYARD_<SECTION>_<KEY>` but are documented shorthands.
pub const ENV_ALIASES: [(&str, &str); 6] = [
    ("SWITCHYARD_LISTEN", "server.listen"),
    ("SWITCHYARD_ADMIN_KEY", "server.admin_key"),
    ("SWITCHYARD_LOG_FORMAT", "server.log_format"),
    ("SWITCHYARD_DATA_DIR", "database.data_dir"),
    ("SWITCHYARD_PRESET", "-preset"),
    ("SWITCHYARD_CONFIG", "-config"),
];

/// True for the variables Kubernetes injects for a Service named `switchyard` (service links): they are not
/// configuration and are ignored.
fn is_service_link(var: &str) -> bool {
    var == "SWITCHYARD_PORT"
        || var.starts_with("SWITCHYARD_PORT_")
        || var == "SWITCHYARD_SERVICE_HOST"
        || var.starts_with("SWITCHYARD_SERVICE_PORT")
}

/// Keys whose values are secrets: shown redacted.
const SECRET_KEYS: [&str; 2] = ["server.admin_key", "server.client_keys"];

/// The environment variable for a dotted key: `vram.unload_threshold_pct` -> `SWITCHYARD_VRAM_UNLOAD_THRESHOLD_PCT`.
pub fn env_name(dotted: &str) -> String {
    format!("SWITCHYARD_{}", dotted.replace('.', "_").to_ascii_uppercase())
}

/// Loads the configuration from `sources` on top of the defaults.
pub fn load(sources: &ConfigSources) -> Result<LoadedConfig, CoreError> {
    let schema = defaults_table()?;
    let mut merged = schema.clone();
    let mut origins = BTreeMap::new();

    let preset = sources
        .preset
        .clone()
        .or_else(|| sources.env.iter().find(|(k, _)| k == "SWITCHYARD_PRESET").map(|(_, v)| v.clone()));
    if let Some(name) = preset {
        let text = presets::preset_text(&name).ok_or_else(|| {
            CoreError::config(
                "--preset",
                format!("unknown preset {name:?}; available: {}", presets::PRESETS.map(|(n, _)| n).join(", ")),
            )
        })?;
        let table = parse_toml(text, &format!("preset {name}"))?;
        merge_layer(&schema, &mut merged, &table, &Source::Preset(name.clone()), &mut origins)?;
    }
    if let Some(path) = &sources.file {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CoreError::Io { path: path.display().to_string(), source })?;
        let table = parse_toml(&text, &path.display().to_string())?;
        merge_layer(&schema, &mut merged, &table, &Source::File(path.clone()), &mut origins)?;
    }
    let env_table = env_layer(&schema, &sources.env)?;
    for (table, source) in env_table {
        merge_layer(&schema, &mut merged, &table, &source, &mut origins)?;
    }
    for flag in &sources.flags {
        let table = single_value_table(&schema, flag.key, &flag.value, flag.flag)?;
        merge_layer(&schema, &mut merged, &table, &Source::Flag(flag.flag.to_string()), &mut origins)?;
    }

    let mut config: Config = serde_path_to_error::deserialize(Value::Table(merged)).map_err(|err| {
        let key = err.path().to_string();
        let source = origins.get(&key).map(|s| format!(" (set by {s})")).unwrap_or_default();
        let message = match choices(&key) {
            // A number or a table where a name is expected reads as "invalid type: unit variant" otherwise.
            Some(allowed) if err.inner().to_string().contains("invalid type") => {
                format!("must be one of {allowed} (a quoted string)")
            }
            _ => plain_type_error(&err.inner().to_string()),
        };
        CoreError::config(key, format!("{message}{source}"))
    })?;
    config.validate().map_err(|err| match err {
        CoreError::Config { key, message } => {
            let source = origins.get(&key).map(|s| format!(" (set by {s})")).unwrap_or_default();
            CoreError::Config { key, message: format!("{message}{source}") }
        }
        other => other,
    })?;
    config.models = normalise_model_keys(std::mem::take(&mut config.models))?;
    Ok(LoadedConfig { config, origins })
}

/// Rewrites serde's type vocabulary (`expected u64`) into words users know, without the trailing key path.
/// The names a key that takes one of a fixed set of names accepts.
fn choices(key: &str) -> Option<&'static str> {
    match key {
        "vram.strategy" => Some("\"lru\", \"largest\", \"lfu\", \"cost\""),
        "vram.probe" => Some("\"auto\", \"nvml\", \"ollama\", \"sim\""),
        "routing.classifier" => Some("\"learned\", \"rules\", \"embedding\""),
        "routing.remote" => Some("\"never\", \"fallback\", \"scored\""),
        "routing.unknown_task" => Some("\"reject\", \"auto\""),
        "server.log_format" => Some("\"pretty\", \"json\""),
        _ => None,
    }
}

fn plain_type_error(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    [
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ]
    .iter()
    .fold(first.to_string(), |text, (from, to)| text.replace(from, to))
}

fn normalise_model_keys(models: BTreeMap<String, ModelSettings>) -> Result<BTreeMap<String, ModelSettings>, CoreError> {
    let mut out = BTreeMap::new();
    for (name, settings) in models {
        let normalised =
            ModelName::parse(&name).map_err(|e| CoreError::config(format!("models.{name:?}"), e.to_string()))?;
        if out.insert(normalised.to_string(), settings).is_some() {
            return Err(CoreError::config(
                format!("models.{name:?}"),
                format!("{name:?} and another entry both name {normalised}"),
            ));
        }
    }
    Ok(out)
}

fn defaults_table() -> Result<Table, CoreError> {
    Table::try_from(Config::default()).map_err(|e| CoreError::config("(defaults)", e.to_string()))
}

fn model_schema() -> Result<Table, CoreError> {
    Table::try_from(ModelSettings::default()).map_err(|e| CoreError::config("(defaults)", e.to_string()))
}

fn parse_toml(text: &str, origin: &str) -> Result<Table, CoreError> {
    text.parse::<Table>().map_err(|e| CoreError::config(origin, format!("not valid TOML: {e}")))
}

/// Checks every key of `layer` against `schema` and writes its values into `merged`.
fn merge_layer(
    schema: &Table,
    merged: &mut Table,
    layer: &Table,
    source: &Source,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), CoreError> {
    for (section, value) in layer {
        if section == "models" {
            merge_models(merged, value, source, origins)?;
            continue;
        }
        if section == "tasks" {
            merge_tasks(merged, value, source, origins)?;
            continue;
        }
        if section == "backends" {
            // A list of tables: a later layer replaces the whole list; each entry is checked when deserialised.
            let Value::Array(_) = value else {
                return Err(CoreError::config(
                    "backends",
                    format!("must be a list of [[backends]] tables (in {source})"),
                ));
            };
            merged.insert(section.clone(), value.clone());
            origins.insert(section.clone(), source.clone());
            continue;
        }
        let Some(section_schema) = schema.get(section) else {
            return Err(unknown_key(section, schema.keys(), source, None));
        };
        let (Value::Table(section_schema), Value::Table(values)) = (section_schema, value) else {
            return Err(CoreError::config(section.clone(), format!("must be a table ([{section}]) (in {source})")));
        };
        let target = merged.entry(section.clone()).or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(target) = target else {
            return Err(CoreError::config(section.clone(), "internal: section is not a table"));
        };
        for (key, v) in values {
            let dotted = format!("{section}.{key}");
            if !section_schema.contains_key(key) {
                return Err(unknown_key(&dotted, section_schema.keys(), source, Some(section)));
            }
            target.insert(key.clone(), v.clone());
            origins.insert(dotted, source.clone());
        }
    }
    Ok(())
}

fn merge_models(
    merged: &mut Table,
    value: &Value,
    source: &Source,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), CoreError> {
    let allowed: Vec<String> = model_schema()?.keys().cloned().collect();
    merge_named(("models", "[models.\"name\"]", "models.\"<name>\""), &allowed, merged, value, source, origins)
}

/// `[tasks.NAME]` tables: each key checked against [`TASK_KEYS`]; a later layer's key replaces the earlier one's.
fn merge_tasks(
    merged: &mut Table,
    value: &Value,
    source: &Source,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), CoreError> {
    let allowed: Vec<String> = TASK_KEYS.iter().map(ToString::to_string).collect();
    merge_named(("tasks", "[tasks.NAME]", "tasks.<name>"), &allowed, merged, value, source, origins)
}

/// A section of named tables (`[models."qwen2.5:7b"]`, `[tasks.planner]`): each table's keys are checked against
/// `allowed` and written into `merged`, key by key, so that a later layer changes only the keys it sets. `section`
/// is (its name, how a table of it is written, how its tables are named in messages); model names are quoted in
/// keys, task names are plain.
fn merge_named(
    (section, written, hint): (&str, &str, &str),
    allowed: &[String],
    merged: &mut Table,
    value: &Value,
    source: &Source,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), CoreError> {
    let Value::Table(tables) = value else {
        return Err(CoreError::config(section, format!("must be a table of {written} tables (in {source})")));
    };
    let target = merged.entry(section.to_string()).or_insert_with(|| Value::Table(Table::new()));
    let Value::Table(target) = target else {
        return Err(CoreError::config(section, format!("internal: {section} is not a table")));
    };
    for (name, settings) in tables {
        let shown = if section == "models" { format!("{name:?}") } else { name.clone() };
        let Value::Table(settings) = settings else {
            return Err(CoreError::config(format!("{section}.{shown}"), format!("must be a table (in {source})")));
        };
        let entry = target.entry(name.clone()).or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(entry) = entry else {
            return Err(CoreError::config(section, format!("internal: a {section} entry is not a table")));
        };
        for (key, v) in settings {
            let dotted = format!("{section}.{shown}.{key}");
            if !allowed.contains(key) {
                return Err(unknown_key(&dotted, allowed.iter(), source, Some(hint)));
            }
            entry.insert(key.clone(), v.clone());
            origins.insert(dotted, source.clone());
        }
    }
    Ok(())
}

fn unknown_key<'a>(
    key: &str,
    allowed: impl Iterator<Item = &'a String>,
    source: &Source,
    section: Option<&str>,
) -> CoreError {
    let allowed: Vec<&str> = allowed.map(String::as_str).collect();
    let last = key.rsplit('.').next().unwrap_or(key);
    let suggestion = allowed
        .iter()
        .map(|a| (edit_distance(a, last), *a))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, a)| format!(" Did you mean `{a}`?"))
        .unwrap_or_default();
    let place = section.map(|s| format!(" in [{s}]")).unwrap_or_default();
    CoreError::config(key, format!("unknown key (in {source}).{suggestion} Allowed{place}: {}", allowed.join(", ")))
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Every leaf key of the schema, dotted (`vram.strategy`), except the open `models` and `tasks` maps.
fn leaf_keys(schema: &Table) -> Vec<String> {
    let mut keys = Vec::new();
    for (section, value) in schema {
        if let Value::Table(fields) = value {
            if section == "models" || section == "tasks" {
                continue;
            }
            keys.extend(fields.keys().map(|k| format!("{section}.{k}")));
        }
    }
    keys
}

/// Builds one layer per environment variable (each is its own source).
fn env_layer(schema: &Table, env: &[(String, String)]) -> Result<Vec<(Table, Source)>, CoreError> {
    let keys = leaf_keys(schema);
    let mut layers = Vec::new();
    let mut vars: Vec<&(String, String)> = env.iter().filter(|(k, _)| k.starts_with("SWITCHYARD_")).collect();
    vars.sort();
    for (var, value) in vars {
        if is_service_link(var) {
            continue;
        }
        let dotted = match ENV_ALIASES.iter().find(|(alias, _)| alias == var) {
            Some((_, "-preset" | "-config")) => continue,
            Some((_, dotted)) => dotted.to_string(),
            None => match keys.iter().find(|k| env_name(k) == *var) {
                Some(k) => k.clone(),
                None => {
                    let known: Vec<String> = keys.iter().map(|k| env_name(k)).collect();
                    let suggestion = known
                        .iter()
                        .map(|k| (edit_distance(k, var), k))
                        .filter(|(d, _)| *d <= 3)
                        .min()
                        .map(|(_, k)| format!(" Did you mean {k}?"))
                        .unwrap_or_default();
                    return Err(CoreError::config(
                        var.clone(),
                        format!(
                            "unknown environment variable.{suggestion} See docs/configuration.md for the full list."
                        ),
                    ));
                }
            },
        };
        layers.push((single_value_table(schema, &dotted, value, var)?, Source::Env(var.clone())));
    }
    Ok(layers)
}

/// A table holding one dotted key set from text, coerced to the type of its default.
fn single_value_table(schema: &Table, dotted: &str, text: &str, carrier: &str) -> Result<Table, CoreError> {
    let Some((section, key)) = dotted.split_once('.') else {
        return Err(CoreError::config(carrier, format!("internal: {dotted} is not a dotted key")));
    };
    let default = schema
        .get(section)
        .and_then(|s| s.get(key))
        .ok_or_else(|| CoreError::config(carrier, format!("internal: {dotted} is not a configuration key")))?;
    let value = coerce(default, text).map_err(|m| CoreError::config(dotted, format!("{m} (set by {carrier})")))?;
    let mut inner = Table::new();
    inner.insert(key.to_string(), value);
    let mut outer = Table::new();
    outer.insert(section.to_string(), Value::Table(inner));
    Ok(outer)
}

fn coerce(default: &Value, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match default {
        Value::Integer(_) => text.parse::<i64>().map(Value::Integer).map_err(|_| format!("{text:?} is not an integer")),
        Value::Float(_) => text.parse::<f64>().map(Value::Float).map_err(|_| format!("{text:?} is not a number")),
        Value::Boolean(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("{text:?} is not a boolean (true or false)")),
        },
        Value::Array(_) => Ok(Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_string())).collect(),
        )),
        _ => Ok(Value::String(text.to_string())),
    }
}

impl LoadedConfig {
    /// The effective configuration as TOML, each value followed by where it came from; secrets redacted.
    pub fn render(&self) -> Result<String, CoreError> {
        let table = Table::try_from(&self.config).map_err(|e| CoreError::config("(render)", e.to_string()))?;
        let mut out = String::new();
        for (section, value) in &table {
            if let Value::Array(entries) = value
                && section == "backends"
            {
                // Each [[backends]] entry as written; none of its fields is a secret (the key is in the
                // environment variable `api_key_env` names).
                for entry in entries {
                    let Value::Table(fields) = entry else { continue };
                    out.push_str("\n[[backends]]\n");
                    for (key, v) in fields {
                        push_line(&mut out, key, v, self.origins.get("backends"), false);
                    }
                }
                continue;
            }
            let Value::Table(fields) = value else {
                continue;
            };
            if section == "models" || section == "tasks" {
                for (name, settings) in fields {
                    let Value::Table(settings) = settings else {
                        continue;
                    };
                    let name = if section == "models" { format!("{name:?}") } else { name.clone() };
                    out.push_str(&format!("\n[{section}.{name}]\n"));
                    for (key, v) in settings {
                        let dotted = format!("{section}.{name}.{key}");
                        push_line(&mut out, key, v, self.origins.get(&dotted), false);
                    }
                }
                continue;
            }
            out.push_str(&format!("\n[{section}]\n"));
            for (key, v) in fields {
                let dotted = format!("{section}.{key}");
                let secret = SECRET_KEYS.contains(&dotted.as_str());
                push_line(&mut out, key, v, self.origins.get(&dotted), secret);
            }
        }
        Ok(out.trim_start().to_string())
    }

    /// Where `dotted` got its value.
    pub fn origin(&self, dotted: &str) -> Source {
        self.origins.get(dotted).cloned().unwrap_or(Source::Default)
    }
}

fn push_line(out: &mut String, key: &str, value: &Value, source: Option<&Source>, secret: bool) {
    let empty = match value {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let shown = if secret && !empty { "\"<redacted>\"".to_string() } else { value.to_string() };
    let source = source.cloned().unwrap_or(Source::Default);
    out.push_str(&format!("{key} = {shown}  # {source}\n"));
}

/// Every dotted key with its environment variable, for documentation checks.
pub fn documented_keys() -> Result<Vec<(String, String)>, CoreError> {
    let schema = defaults_table()?;
    Ok(leaf_keys(&schema)
        .into_iter()
        .map(|k| {
            let env = env_name(&k);
            (k, env)
        })
        .collect())
}
