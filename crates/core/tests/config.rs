//! Layered configuration: precedence of every layer, presets, and errors that name the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_core::config::{ConfigSources, FlagValue, PRESETS, Source, Strategy, load};

fn write_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn flag(key: &'static str, flag: &'static str, value: &str) -> FlagValue {
    FlagValue { key, flag, value: value.to_string() }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_alone_are_valid() {
    let loaded = load(&ConfigSources::default()).unwrap();
    assert_eq!(loaded.config.server.listen.to_string(), "127.0.0.1:11435");
    assert_eq!(loaded.config.ollama.url, "http://127.0.0.1:11434");
    assert_eq!(loaded.config.vram.strategy, Strategy::Cost);
    assert_eq!(loaded.origin("routing.quality_preference"), Source::Default);
}

#[test]
fn each_layer_overrides_the_one_below() {
    let dir = tempfile::tempdir().unwrap();
    let key = "routing.quality_preference";
    let file = write_file(&dir, "[routing]\nquality_preference = 0.55\n");
    let env_var = "SWITCHYARD_ROUTING_QUALITY_PREFERENCE";

    let preset_only = ConfigSources { preset: Some("low-latency".into()), ..Default::default() };
    let got = load(&preset_only).unwrap();
    assert_eq!(got.config.routing.quality_preference, 0.3);
    assert_eq!(got.origin(key), Source::Preset("low-latency".into()));

    let with_file = ConfigSources { file: Some(file.clone()), ..preset_only.clone() };
    let got = load(&with_file).unwrap();
    assert_eq!(got.config.routing.quality_preference, 0.55);
    assert_eq!(got.origin(key), Source::File(file.clone()));
    // The preset's other values survive under the file.
    assert!(got.config.vram.pin_fastest);

    let with_env = ConfigSources { env: env(&[(env_var, "0.65")]), ..with_file.clone() };
    let got = load(&with_env).unwrap();
    assert_eq!(got.config.routing.quality_preference, 0.65);
    assert_eq!(got.origin(key), Source::Env(env_var.into()));

    let with_flag = ConfigSources { flags: vec![flag(key, "--quality", "0.75")], ..with_env };
    let got = load(&with_flag).unwrap();
    assert_eq!(got.config.routing.quality_preference, 0.75);
    assert_eq!(got.origin(key), Source::Flag("--quality".into()));
}

#[test]
fn env_aliases_and_typed_coercion() {
    let sources = ConfigSources {
        env: env(&[
            ("SWITCHYARD_LISTEN", "127.0.0.1:9999"),
            ("SWITCHYARD_OLLAMA_URL", "http://10.0.0.5:11434"),
            ("SWITCHYARD_VRAM_PINS", "llama3.2:3b, qwen2.5-coder:7b"),
            ("SWITCHYARD_VRAM_PIN_FASTEST", "yes"),
            ("SWITCHYARD_VRAM_POLL_INTERVAL_MS", "250"),
            ("SWITCHYARD_DATABASE_URL", "postgres://u@localhost/sy"),
        ]),
        ..Default::default()
    };
    let cfg = load(&sources).unwrap().config;
    assert_eq!(cfg.server.listen.port(), 9999);
    assert_eq!(cfg.ollama.url, "http://10.0.0.5:11434");
    assert_eq!(cfg.vram.pins, vec!["llama3.2:3b", "qwen2.5-coder:7b"]);
    assert!(cfg.vram.pin_fastest);
    assert_eq!(cfg.vram.poll_interval_ms, 250);
    assert_eq!(cfg.database.resolved_url(), "postgres://u@localhost/sy");
}

#[test]
fn every_preset_loads_and_changes_something() {
    let defaults = load(&ConfigSources::default()).unwrap().config;
    for (name, _) in PRESETS {
        let loaded = load(&ConfigSources { preset: Some(name.to_string()), ..Default::default() })
            .unwrap_or_else(|e| panic!("preset {name}: {e}"));
        if name != "balanced" {
            assert_ne!(loaded.config, defaults, "preset {name} changes nothing");
        }
        assert!(loaded.origins.values().all(|s| *s == Source::Preset(name.to_string())));
    }
    let gpu8 = load(&ConfigSources { preset: Some("gpu-8gb".into()), ..Default::default() }).unwrap().config;
    assert_eq!(gpu8.vram.total, "8GiB");
}

#[test]
fn unknown_preset_lists_the_available_ones() {
    let err = load(&ConfigSources { preset: Some("turbo".into()), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("turbo") && err.contains("low-latency"), "{err}");
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "[vram]\nstratgy = \"lru\"\n");
    let err = load(&ConfigSources { file: Some(file), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("vram.stratgy"), "{err}");
    assert!(err.contains("Did you mean `strategy`"), "{err}");

    let file = write_file(&dir, "[vrma]\nstrategy = \"lru\"\n");
    let err = load(&ConfigSources { file: Some(file), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("vrma") && err.contains("Did you mean `vram`"), "{err}");

    let file = write_file(&dir, "[models.\"llama3.2:3b\"]\nnum_ctxx = 8192\n");
    let err = load(&ConfigSources { file: Some(file), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("num_ctxx") && err.contains("num_ctx"), "{err}");

    let err = load(&ConfigSources { env: env(&[("SWITCHYARD_VRAM_STRATEGIE", "lru")]), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("SWITCHYARD_VRAM_STRATEGIE") && err.contains("SWITCHYARD_VRAM_STRATEGY"), "{err}");
}

#[test]
fn bad_values_name_the_key_and_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[vram]\nstrategy = \"random\"\n", "vram.strategy", "lru"),
        ("[vram]\nstrategy = 5\n", "vram.strategy", "must be one of \"lru\""),
        ("[vram]\nprobe = true\n", "vram.probe", "\"nvml\""),
        ("[vram]\npoll_interval_ms = \"fast\"\n", "vram.poll_interval_ms", "integer"),
        ("[vram]\nlimit = \"150%\"\n", "vram.limit", "between 1% and 100%"),
        ("[vram]\nheadroom = \"12 parsecs\"\n", "vram.headroom", "unit"),
        ("[routing]\nquality_preference = 1.5\n", "routing.quality_preference", "between 0 and 1"),
        ("[ollama]\nurl = \"ftp://x\"\n", "ollama.url", "http://"),
        ("[server]\nlisten = \"not-an-address\"\n", "server.listen", "address"),
        ("[vram]\npins = [\"../etc/passwd\"]\n", "vram.pins", "path-like"),
        ("[routing]\nclassifier = \"embedding\"\n", "routing.embedding_model", "embedding model"),
        ("[server]\ncors_origins = [\"https://chat.example.com/\"]\n", "server.cors_origins", "trailing slash"),
        ("[server]\ncors_origins = [\"chat.example.com\"]\n", "server.cors_origins", "scheme://host"),
        ("[server]\nheader_timeout_secs = 0\n", "server.header_timeout_secs", "at least 1"),
        ("[server]\nbody_timeout_secs = 0\n", "server.body_timeout_secs", "at least 1"),
    ];
    for (text, key, hint) in cases {
        let file = write_file(&dir, text);
        let err = load(&ConfigSources { file: Some(file.clone()), ..Default::default() }).unwrap_err().to_string();
        assert!(err.contains(key), "{text}: {err}");
        assert!(err.to_lowercase().contains(&hint.to_lowercase()), "{text}: {err}");
    }
    let err = load(&ConfigSources { env: env(&[("SWITCHYARD_VRAM_PIN_FASTEST", "maybe")]), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("vram.pin_fastest") && err.contains("SWITCHYARD_VRAM_PIN_FASTEST"), "{err}");
}

#[test]
fn validation_errors_say_which_layer_set_the_value() {
    let sources = ConfigSources { env: env(&[("SWITCHYARD_VRAM_UNLOAD_THRESHOLD_PCT", "140")]), ..Default::default() };
    let err = load(&sources).unwrap_err().to_string();
    assert!(
        err.contains("vram.unload_threshold_pct") && err.contains("env SWITCHYARD_VRAM_UNLOAD_THRESHOLD_PCT"),
        "{err}"
    );
}

#[test]
fn open_listen_needs_an_admin_key_or_explicit_consent() {
    let open = |extra: Vec<FlagValue>, env_pairs: &[(&str, &str)]| {
        let mut flags = vec![flag("server.listen", "--listen", "0.0.0.0:11435")];
        flags.extend(extra);
        load(&ConfigSources { flags, env: env(env_pairs), ..Default::default() })
    };
    let err = open(vec![], &[]).unwrap_err().to_string();
    assert!(err.contains("SWITCHYARD_ADMIN_KEY") && err.contains("--allow-open-admin"), "{err}");
    assert!(open(vec![], &[("SWITCHYARD_ADMIN_KEY", "s3cret")]).is_ok());
    assert!(open(vec![flag("server.allow_open_admin", "--allow-open-admin", "true")], &[]).is_ok());
}

#[test]
fn model_sections_are_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "[models.llama3]\nnum_ctx = 8192\n[models.\"qwen2.5:7b\"]\nexclude = true\n");
    let cfg = load(&ConfigSources { file: Some(file), ..Default::default() }).unwrap().config;
    let llama = switchyard_core::ModelName::parse("llama3").unwrap();
    assert_eq!(cfg.num_ctx_for(&llama), 8192);
    let other = switchyard_core::ModelName::parse("mistral").unwrap();
    assert_eq!(cfg.num_ctx_for(&other), cfg.vram.num_ctx);
    assert!(cfg.models["qwen2.5:7b"].exclude);
}

#[test]
fn show_lists_sources_and_redacts_secrets() {
    let sources = ConfigSources {
        preset: Some("gpu-8gb".into()),
        env: env(&[("SWITCHYARD_ADMIN_KEY", "hunter2")]),
        ..Default::default()
    };
    let shown = load(&sources).unwrap().render().unwrap();
    assert!(shown.contains("total = \"8GiB\"  # preset gpu-8gb"), "{shown}");
    assert!(shown.contains("admin_key = \"<redacted>\"  # env SWITCHYARD_ADMIN_KEY"), "{shown}");
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("strategy = \"cost\"  # default"), "{shown}");
}

#[test]
fn the_config_file_variable_and_kubernetes_service_links_are_not_configuration_keys() {
    let sources = ConfigSources {
        env: env(&[
            ("SWITCHYARD_CONFIG", "/etc/switchyard/switchyard.toml"),
            ("SWITCHYARD_SERVICE_HOST", "10.0.0.1"),
            ("SWITCHYARD_SERVICE_PORT", "11435"),
            ("SWITCHYARD_PORT", "tcp://10.0.0.1:11435"),
            ("SWITCHYARD_PORT_11435_TCP_ADDR", "10.0.0.1"),
        ]),
        ..Default::default()
    };
    assert!(load(&sources).is_ok());
}

#[test]
fn a_backends_url_is_its_servers_root_or_its_apis_versioned_base() {
    use switchyard_core::config::BackendConfig;
    let endpoints = |url: &str| BackendConfig { url: url.into(), ..BackendConfig::default() }.endpoints();
    let pair = |api: &str, root: &str| (api.to_string(), root.to_string());
    // A server's root: the API is under /v1 (llama.cpp, vLLM, and providers configured without their version).
    assert_eq!(endpoints("http://127.0.0.1:8080"), pair("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"));
    assert_eq!(endpoints("http://127.0.0.1:8080/"), pair("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"));
    assert_eq!(
        endpoints("https://api.groq.com/openai"),
        pair("https://api.groq.com/openai/v1", "https://api.groq.com/openai")
    );
    // The API's base as providers document it, ending in a version.
    assert_eq!(endpoints("http://gpu:8000/v1/"), pair("http://gpu:8000/v1", "http://gpu:8000"));
    assert_eq!(
        endpoints("https://openrouter.ai/api/v1"),
        pair("https://openrouter.ai/api/v1", "https://openrouter.ai/api")
    );
    assert_eq!(
        endpoints("https://generativelanguage.googleapis.com/v1beta/openai/"),
        pair("https://generativelanguage.googleapis.com/v1beta/openai", "https://generativelanguage.googleapis.com")
    );
    assert_eq!(
        endpoints("https://open.bigmodel.cn/api/paas/v4"),
        pair("https://open.bigmodel.cn/api/paas/v4", "https://open.bigmodel.cn/api/paas")
    );
    assert_eq!(endpoints("http://[::1]:8000/V1"), pair("http://[::1]:8000/V1", "http://[::1]:8000"));
    assert_eq!(endpoints("https://h/v1beta/OpenAI").1, "https://h");
    // Not versions: a name that only starts with v, or a v without digits.
    assert_eq!(endpoints("https://h/vllm").0, "https://h/vllm/v1");
    assert_eq!(endpoints("https://h/v").0, "https://h/v/v1");
}

#[test]
fn backends_load_from_the_file_and_bad_entries_name_their_key() {
    use switchyard_core::config::{BackendKind, BackendModel, RemotePolicy};
    let dir = tempfile::tempdir().unwrap();
    let good = "[routing]\nremote = \"scored\"\n\n[[backends]]\nname = \"llamacpp\"\nurl = \"http://127.0.0.1:8080\"\n\n\
                [[backends]]\nname = \"premium\"\nurl = \"https://api.example.com\"\napi_key_env = \"PREMIUM_KEY\"\n\
                models = [\"big\", { name = \"embedder\", embedding = true }]\nprice_output_per_mtok = 15.0\n";
    let file = write_file(&dir, good);
    let loaded = load(&ConfigSources { file: Some(file), ..Default::default() }).unwrap();
    let shown = loaded.render().unwrap();
    assert_eq!(shown.matches("[[backends]]").count(), 2, "config show prints every entry: {shown}");
    assert!(shown.contains("api_key_env = \"PREMIUM_KEY\""), "{shown}");
    let config = loaded.config;
    assert_eq!(config.routing.remote, RemotePolicy::Scored);
    assert_eq!(config.backends.len(), 2);
    assert_eq!(config.backends[0].kind, BackendKind::Openai);
    assert!(!config.backends[0].priced() && config.backends[1].priced());
    assert!(matches!(&config.backends[1].models[0], BackendModel::Name(n) if n == "big"));
    assert!(config.backends[1].models[1].details().embedding);

    let refused = |text: &str| {
        let file = write_file(&dir, text);
        load(&ConfigSources { file: Some(file), ..Default::default() }).unwrap_err().to_string()
    };
    let entry = |body: &str| format!("[[backends]]\n{body}\n");
    let e = refused(&entry("name = \"ollama\"\nurl = \"http://h:1\""));
    assert!(e.contains("backends[0].name") && e.contains("taken"), "{e}");
    let e = refused(&entry("name = \"x\"\nkind = \"ollama\"\nurl = \"http://h:1\""));
    assert!(e.contains("backends[0].kind"), "{e}");
    let e = refused(&entry("name = \"x\"\nurl = \"https://user:sk-123@api.example.com\""));
    assert!(e.contains("backends[0].url") && e.contains("api_key_env") && !e.contains("sk-123"), "{e}");
    let e = refused(&entry("name = \"x\"\nurl = \"https://h/openai/deployments/d?api-version=1\""));
    assert!(e.contains("backends[0].url") && e.contains("query"), "{e}");
    let e = refused(&entry("name = \"x\"\nurl = \"http://h:1\"\napi_key_env = \"sk-live key\""));
    assert!(e.contains("backends[0].api_key_env"), "{e}");
    let e = refused(&entry("name = \"x\"\nurl = \"http://h:1\"\nmax_concurrency = 0"));
    assert!(e.contains("backends[0].max_concurrency"), "{e}");
    let e = refused(&entry("name = \"x\"\nurl = \"http://h:1\"\nprice = 3"));
    assert!(e.contains("price"), "unknown keys are refused: {e}");
    let e = refused("[routing]\nremote = \"sometimes\"\n");
    assert!(e.contains("routing.remote") && e.contains("fallback"), "{e}");
}

#[test]
fn task_rules_load_from_the_file_show_their_source_and_name_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[tasks.planner]\npreset = \"quality\"\nmax_tokens = 512\n\n\
                [tasks.programmer]\ncategory = \"coding\"\ncascade = [\"qwen2.5-coder:7b\", \"deepseek-r1:14b\"]\n\
                validators = [\"code\", \"tools\"]\n";
    let loaded = load(&ConfigSources { file: Some(write_file(&dir, text)), ..Default::default() }).unwrap();
    let planner = &loaded.config.tasks["planner"];
    assert_eq!(planner.preset.as_deref(), Some("quality"));
    assert_eq!(planner.max_tokens, Some(512));
    assert_eq!(loaded.config.tasks["programmer"].category, Some(switchyard_core::Category::Coding));
    let shown = loaded.render().unwrap();
    assert!(shown.contains("[tasks.programmer]"), "{shown}");
    assert!(shown.contains("max_tokens = 512  # file"), "{shown}");

    let err =
        load(&ConfigSources { file: Some(write_file(&dir, "[tasks.planner]\nmax_token = 5\n")), ..Default::default() })
            .unwrap_err()
            .to_string();
    assert!(err.contains("tasks.planner.max_token") && err.contains("Did you mean `max_tokens`"), "{err}");
    let err = load(&ConfigSources {
        file: Some(write_file(&dir, "[tasks.planner]\ncascade = [\"llama3.2\"]\n")),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("tasks.planner.cascade") && err.contains("at least two"), "{err}");
}

#[test]
fn a_front_names_its_fleet_nodes_and_needs_somewhere_to_send_requests() {
    use switchyard_core::config::BackendKind;
    let dir = tempfile::tempdir().unwrap();
    let front = "[ollama]\nenabled = false\n\n[[backends]]\nname = \"gpu-1\"\nkind = \"switchyard\"\n\
                 url = \"http://10.0.0.11:11435\"\napi_key_env = \"NODE_KEY\"\npoll_interval_ms = 250\n";
    let config = load(&ConfigSources { file: Some(write_file(&dir, front)), ..Default::default() }).unwrap().config;
    assert!(!config.ollama.enabled);
    assert_eq!(config.backends[0].kind, BackendKind::Switchyard);
    assert_eq!(config.backends[0].poll_interval_ms, 250);

    let refused = |text: &str| {
        load(&ConfigSources { file: Some(write_file(&dir, text)), ..Default::default() }).unwrap_err().to_string()
    };
    let e = refused("[ollama]\nenabled = false\n");
    assert!(e.contains("ollama.enabled") && e.contains("[[backends]]"), "{e}");
    let e = refused(&format!("{front}price_output_per_mtok = 2.0\n"));
    assert!(e.contains("not priced"), "{e}");
    let e = refused(&format!("{front}poll_interval_ms = 0\n").replace("poll_interval_ms = 250\n", ""));
    assert!(e.contains("poll_interval_ms"), "{e}");
    let pinned = format!("{front}pin = [\"llama3.1:8b\"]\npreload = [\"qwen2.5-coder:7b\"]\n");
    let config = load(&ConfigSources { file: Some(write_file(&dir, &pinned)), ..Default::default() }).unwrap().config;
    assert_eq!((config.backends[0].pin.len(), config.backends[0].preload.len()), (1, 1));
    let e = refused("[[backends]]\nname = \"x\"\nurl = \"http://127.0.0.1:8080\"\npin = [\"m\"]\n");
    assert!(e.contains("backends[0].pin") && e.contains("fleet nodes"), "{e}");
    let e = refused(&format!("{front}preload = [\"not a name!\"]\n"));
    assert!(e.contains("backends[0].preload[0]"), "{e}");
    let e = refused("[server]\nnode_name = \"has space\"\n");
    assert!(e.contains("server.node_name"), "{e}");
}
