//! The command line: every command's `--help` is complete and shows an example, `migrate` applies the migrations
//! once, configuration errors name the key and exit non-zero.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SWITCHYARD_")) {
        cmd.env_remove(k);
    }
    let out = cmd.args(args).envs(env.iter().copied()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands: [&[&str]; 17] = [
        &[],
        &["serve"],
        &["demo"],
        &["profile"],
        &["vram"],
        &["vram", "status"],
        &["vram", "pin"],
        &["models"],
        &["explain"],
        &["migrate"],
        &["config"],
        &["config", "show"],
        &["vram", "unload"],
        &["vram", "load"],
        &["cache"],
        &["cache", "status"],
        &["cache", "clear"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let (ok, out, err) = switchyard(&args, &[]);
        assert!(ok, "{args:?}: {err}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
        let top_level_or_group = command.is_empty() || *command == ["vram"] || *command == ["config"];
        if !top_level_or_group {
            assert!(out.contains("Example"), "{args:?} has no example:\n{out}");
        }
    }
    let (_, out, _) = switchyard(&["--help"], &[]);
    for word in [
        "serve",
        "demo",
        "profile",
        "vram",
        "models",
        "cache",
        "explain",
        "migrate",
        "config",
        "Examples:",
        "SWITCHYARD_",
    ] {
        assert!(out.contains(word), "top-level help lacks {word}:\n{out}");
    }
}

#[test]
fn migrate_applies_the_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let (ok, out, err) = switchyard(&["migrate"], &[("SWITCHYARD_DATABASE_URL", &url)]);
    assert!(ok, "{err}");
    assert!(out.starts_with("4 migration(s) applied"), "{out}");
    let (ok, out, _) = switchyard(&["migrate"], &[("SWITCHYARD_DATABASE_URL", &url)]);
    assert!(ok);
    assert!(out.starts_with("0 migration(s) applied"), "{out}");
}

#[test]
fn configuration_errors_name_the_key_and_fail() {
    let (ok, _, err) = switchyard(&["config", "show"], &[("SWITCHYARD_VRAM_STRATEGY", "random")]);
    assert!(!ok);
    assert!(err.contains("vram.strategy") && err.contains("SWITCHYARD_VRAM_STRATEGY"), "{err}");
    let (ok, out, _) = switchyard(&["--preset", "high-quality", "config", "show"], &[]);
    assert!(ok);
    assert!(out.contains("quality_preference = 0.9  # preset high-quality"), "{out}");
    let (ok, _, err) = switchyard(&["--preset", "nope", "config", "show"], &[]);
    assert!(!ok && err.contains("available"), "{err}");
}

#[test]
fn client_commands_say_how_to_start_a_server_when_none_runs() {
    let (ok, _, err) = switchyard(&["vram", "status", "--server", "http://127.0.0.1:9"], &[]);
    assert!(!ok);
    assert!(err.contains("switchyard serve"), "{err}");
}
