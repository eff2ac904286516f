//! The `switchyard-sim` binary end to end: it starts on port 0, announces its address as the first stdout line,
//! serves, shows a helpful `--help`, refuses bad flags, and stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard-sim");

/// A plain HTTP/1.1 request; the status line and the body.
fn http(addr: &str, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn starts_on_port_zero_serves_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--time-scale", "0", "--gpu-vram", "24GiB,24GiB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("switchyard-sim listening on http://").unwrap_or_else(|| panic!("{first}"));
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);

    let (status, body) = http(url, "GET / HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "Ollama is running");
    let (_, body) = http(url, "GET /sim/gpu HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
    let gpu: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(gpu["gpus"].as_array().unwrap().len(), 2);

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the simulator did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn help_shows_an_example_and_bad_flags_fail() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "--fleet",
        "--gpu-vram",
        "--time-scale",
        "--max-loaded-models",
        "--num-parallel",
        "--max-queue",
        "Examples:",
        "switchyard-sim --listen",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    let out = Command::new(BIN).args(["--listen", "127.0.0.1:0", "--gpu-vram", "lots"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gpu-vram"));
    let out =
        Command::new(BIN).args(["--listen", "127.0.0.1:0", "--fleet", "/nonexistent/fleet.toml"]).output().unwrap();
    assert!(!out.status.success());
}
