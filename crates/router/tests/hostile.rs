//! A corpus of hostile and malformed requests thrown at a running router: every one gets a clean 4xx in its
//! surface's error shape, never a 5xx or a crash, and the router keeps serving afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{start, start_with};
use serde_json::{Value, json};
use switchyard_sim::SimOptions;

/// A path, a raw body, and extra headers.
type Case = (&'static str, Vec<u8>, Vec<(&'static str, &'static str)>);

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |path: &'static str, body: Vec<u8>| cases.push((path, body, Vec::new()));
    let native = ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"];
    let malformed: [&[u8]; 14] = [
        b"",
        b"   ",
        b"{",
        b"{\"model\":}",
        b"[]",
        b"null",
        b"\"model\"",
        b"123",
        b"{\"model\":\"llama3.2:3b\"} trailing",
        b"\xff\xfe\xfd",
        b"{\"model\":\"\xff\xfe\"}",
        b"{\"model\":\"llama3.2:3b\",\"prompt\":\"\xc3\x28\"}",
        b"{\"model\" \"x\"}",
        b"\x00\x00\x00",
    ];
    for path in native.iter().chain(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"].iter()) {
        for body in malformed {
            add(path, body.to_vec());
        }
    }
    let deep = format!("{{\"model\":\"llama3.2:3b\",\"x\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000));
    let deep_object = format!("{{\"model\":\"llama3.2:3b\",\"x\":{}1{}}}", "{\"a\":".repeat(200), "}".repeat(200));
    let long_name = "a".repeat(10_000);
    let json_cases: Vec<(&'static str, Value)> = vec![
        ("/api/chat", json!({})),
        ("/api/chat", json!({"messages": []})),
        ("/api/chat", json!({"model": 123, "messages": []})),
        ("/api/chat", json!({"model": null, "messages": []})),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": "hi"})),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [1, 2]})),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [{"role": 5, "content": "x"}]})),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": {"a": 1}}]})),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x", "images": "abc"}]})),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": []})),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": -1}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": 1e308}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": -100}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 1.5}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"top_k": -5}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"num_ctx": 1e12}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"seed": "x"}}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "options": {"stop": [1]}}),
        ),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "stream": "yes"})),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "keep_alive": true}),
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "keep_alive": "300"}),
        ),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "tools": {}})),
        (
            "/api/chat",
            json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
        ),
        ("/api/chat", json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "format": 5})),
        ("/api/chat", json!({"model": "nomic-embed-text", "messages": [{"role": "user", "content": "x"}]})),
        (
            "/api/chat",
            json!({"model": "deepseek-r1:14b", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}),
        ),
        ("/api/chat", json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})),
        ("/api/chat", json!({"model": "../../etc/passwd", "messages": [{"role": "user", "content": "x"}]})),
        ("/api/chat", json!({"model": "a/../b", "messages": [{"role": "user", "content": "x"}]})),
        ("/api/chat", json!({"model": "/abs/path", "messages": [{"role": "user", "content": "x"}]})),
        ("/api/chat", json!({"model": "model\u{0000}", "messages": [{"role": "user", "content": "x"}]})),
        ("/api/chat", json!({"model": long_name, "messages": [{"role": "user", "content": "x"}]})),
        ("/api/chat", json!({"model": "auto", "messages": []})),
        ("/api/generate", json!({"model": "llama3.2:3b", "prompt": 5})),
        ("/api/generate", json!({"model": "llama3.2:3b", "prompt": "x", "images": [1]})),
        ("/api/generate", json!({"model": "llama3.2:3b", "prompt": "x", "system": []})),
        ("/api/embed", json!({"model": "nomic-embed-text", "input": 5})),
        ("/api/embed", json!({"model": "nomic-embed-text", "input": [1, 2]})),
        ("/api/show", json!({})),
        ("/api/show", json!({"model": "no-such-model"})),
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "x"}]})),
        ("/v1/chat/completions", json!({"model": "auto", "messages": []})),
        ("/v1/chat/completions", json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "n": 5})),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": "x"}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": 1e308}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://evil/x.png"}}]}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
        ),
        ("/v1/chat/completions", json!({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]})),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}]}]}),
        ),
        ("/v1/chat/completions", json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})),
        ("/v1/completions", json!({"model": "auto", "prompt": ["a", "b"]})),
        ("/v1/completions", json!({"model": "auto", "prompt": "x", "echo": true})),
        ("/v1/embeddings", json!({"model": "nomic-embed-text", "input": [[1, 2, 3]]})),
        ("/v1/embeddings", json!({"model": "nomic-embed-text", "input": "x", "encoding_format": "hex"})),
        ("/admin/vram/pin", json!({"model": "../../x"})),
        ("/admin/vram/load", json!({})),
        ("/admin/profile", json!({"models": ["no-such-model"]})),
        ("/admin/profile", json!({"categories": ["poetry"]})),
        ("/admin/profile", json!({"unknown_field": 1})),
    ];
    for (path, body) in json_cases {
        add(path, body.to_string().into_bytes());
    }
    add("/api/chat", deep.into_bytes());
    add("/api/chat", deep_object.into_bytes());
    add(
        "/v1/chat/completions",
        format!(
            "{{\"model\":\"auto\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
            "x".repeat(2 * 1024 * 1024)
        )
        .into_bytes(),
    );
    let chat = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).to_string().into_bytes();
    cases.push(("/api/chat", chat.clone(), vec![("x-switchyard-quality", "2")]));
    cases.push(("/api/chat", chat.clone(), vec![("x-switchyard-quality", "high")]));
    cases.push(("/v1/chat/completions", chat, vec![("content-length", "999999999")]));
    cases
}

#[tokio::test]
async fn hostile_requests_get_clean_4xx_in_their_surfaces_shape() {
    let h = start_with(SimOptions::default(), |c| c.server.max_body = switchyard_core::config::ByteSize::mib(1)).await;
    let corpus = cases();
    let mut statuses = std::collections::BTreeMap::new();
    for (path, body, headers) in &corpus {
        let a = h.post_raw(path, body, headers).await;
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        assert!(a.status.is_client_error(), "{path} {shown:?} -> {} {}", a.status, a.text());
        let v: Value =
            serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("{path} {shown:?}: not JSON: {}", a.text()));
        if path.starts_with("/v1/") {
            assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string(), "{path} {shown:?}: {v}");
        } else {
            assert!(v["error"].is_string(), "{path} {shown:?}: {v}");
        }
        *statuses.entry(a.status.as_u16()).or_insert(0) += 1;
    }
    println!("{} hostile requests: {statuses:?}", corpus.len());
    assert_eq!(statuses.get(&413), Some(&2), "the oversized bodies are 413");
    // Wrong methods are 405, not a crash.
    let a = h.get("/api/chat").await;
    assert_eq!(a.status, 405);
    // The router still serves normal traffic.
    let ok = h.post("/api/chat", json!({"model": "auto", "stream": false, "messages": [{"role": "user", "content": "Hello there 👋 — ¿qué tal? \u{202e}"}]})).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    h.stop().await;
}

#[tokio::test]
async fn explain_takes_long_prompts_by_post_and_refuses_a_query_that_is_not_utf8() {
    let h = start().await;
    let bad = h.get("/admin/explain?prompt=%ff%ff").await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.json()["error"].as_str().unwrap().contains("UTF-8"), "{}", bad.text());
    let missing = h.get("/admin/explain?model=auto").await;
    assert_eq!(missing.status, 400, "{}", missing.text());
    assert!(missing.json()["error"].as_str().is_some(), "errors come in the admin routes' JSON shape");
    // About 10 KB: more than many proxies and servers take in a URL.
    let prompt = format!(
        "Write a Python function that parses this log format. {}",
        "Example line: 2026-01-01 INFO ok. ".repeat(300)
    );
    let long = h.post("/admin/explain", json!({"prompt": prompt, "model": "auto", "quality": 0.5})).await;
    assert_eq!(long.status, 200, "{}", long.text());
    let v = long.json();
    assert_eq!(v["model"], "auto");
    assert!(v["chosen"].is_string(), "{v}");
    assert!(v["needs"]["context_tokens"].as_u64().unwrap() > 2_000, "{v}");
    let not_json = h.post_raw("/admin/explain", b"prompt=hi", &[]).await;
    assert_eq!(not_json.status, 400, "{}", not_json.text());
    // `switchyard explain` sends its prompt in the body, so a long one works from the command line too.
    let url = h.router.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["explain", "--server", &url, "--json", &prompt])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["category"], v["category"]);
    h.stop().await;
}

/// Runs the `switchyard` binary with no `SWITCHYARD_*` variables but `env`; (success, stdout, stderr).
async fn cli(args: Vec<String>, env: Vec<(&'static str, &'static str)>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SWITCHYARD_")) {
            cmd.env_remove(k);
        }
        let out = cmd.args(&args).envs(env).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_command_line_names_what_to_fix() {
    let h = start_with(SimOptions::default(), |c| c.server.admin_key = "sekret".into()).await;
    let bare = h.router.addr.to_string();
    // Without the key: the message says which variable to set, not which header to send.
    let (ok, _, err) = cli(vec!["vram".into(), "status".into(), "--server".into(), bare.clone()], vec![]).await;
    assert!(!ok);
    assert!(err.contains("SWITCHYARD_ADMIN_KEY"), "{err}");
    // `--server HOST:PORT` without a scheme reaches the server (plain HTTP).
    let (ok, out, err) = cli(
        vec!["vram".into(), "status".into(), "--server".into(), bare.clone(), "--json".into()],
        vec![("SWITCHYARD_ADMIN_KEY", "sekret")],
    )
    .await;
    assert!(ok, "{err}");
    assert!(serde_json::from_str::<Value>(&out).unwrap()["gpus"].is_array(), "{out}");
    // A virtual model is not something to load.
    let (ok, _, err) = cli(
        vec!["vram".into(), "load".into(), "auto".into(), "--server".into(), bare],
        vec![("SWITCHYARD_ADMIN_KEY", "sekret")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("auto is not a model") && !err.contains("auto:latest"), "{err}");
    h.stop().await;
}

/// Reads from `stream` until the router closes it (end of file), or fails at `deadline`; returns what was read.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, deadline: std::time::Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(deadline, stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the router kept the connection open for {deadline:?}; read so far: {got:?}");
    got
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_and_a_stalled_body_gets_an_answer() {
    // The behaviour under test is the server's own timers on real sockets, so the timeouts are set to their least
    // (1 s) and each socket is read until it closes, with a deadline; nothing sleeps.
    use tokio::io::AsyncWriteExt;
    let h = start_with(SimOptions::default(), |c| {
        c.server.header_timeout_secs = 1;
        c.server.body_timeout_secs = 1;
    })
    .await;
    let addr = h.router.url().trim_start_matches("http://").to_string();
    let deadline = std::time::Duration::from_secs(15);
    // Connects and sends nothing.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Sends half a request head.
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /api/chat HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    // A whole request, then nothing more on the kept-alive connection.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    // Declares a body of 100 bytes and sends 4.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"mo",
        )
        .await
        .unwrap();
    assert!(read_until_closed(&mut silent, deadline).await.is_empty());
    let half_answer = read_until_closed(&mut half, deadline).await;
    assert!(!String::from_utf8_lossy(&half_answer).starts_with("HTTP/1.1 2"), "{half_answer:?}");
    let kept_answer = String::from_utf8_lossy(&read_until_closed(&mut kept, deadline).await).into_owned();
    assert!(kept_answer.starts_with("HTTP/1.1 200"), "the request on it was answered first: {kept_answer}");
    let stalled_answer = String::from_utf8_lossy(&read_until_closed(&mut stalled, deadline).await).into_owned();
    assert!(stalled_answer.starts_with("HTTP/1.1 400"), "{stalled_answer}");
    assert!(stalled_answer.contains("server.body_timeout_secs"), "{stalled_answer}");
    // The router still serves.
    assert_eq!(h.get("/health").await.status, 200);
    h.stop().await;
}

#[tokio::test]
async fn bad_paths_and_query_strings_are_answered_in_the_surfaces_shape() {
    let h = start().await;
    for path in ["/v1/models/%ff", "/v1"] {
        let a = h.get(path).await;
        assert!(a.status.is_client_error(), "{path}: {}", a.status);
        let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("{path}: not JSON: {}", a.text()));
        assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string(), "{path}: {v}");
    }
    for path in [
        "/admin/profile/%ff",
        "/admin/vram/events?limit=abc",
        "/admin/vram/events?limit=-1",
        "/admin/decisions?limit=-5",
        "/admin/decisions?limit=1e3",
    ] {
        let a = h.get(path).await;
        assert_eq!(a.status, 400, "{path}: {}", a.text());
        let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("{path}: not JSON: {}", a.text()));
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    h.stop().await;
}

#[tokio::test]
async fn openai_embeddings_take_at_most_openais_own_limit_of_inputs() {
    let h = start().await;
    let inputs = vec!["hi"; switchyard::translate::OPENAI_MAX_EMBEDDING_INPUTS + 1];
    let a = h.post("/v1/embeddings", json!({"model": "nomic-embed-text", "input": inputs})).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("at most 2048"), "{}", a.text());
    let a = h.post("/v1/embeddings", json!({"model": "nomic-embed-text", "input": ["hi", "there"]})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert!(v["data"][0]["embedding"].as_array().is_some_and(|e| !e.is_empty()), "{v}");
    h.stop().await;
}

/// Codex sends its requests zstd-compressed (`Content-Encoding: zstd`), as Ollama accepts: such a body is served as
/// the same body uncompressed would be, on both surfaces; a body that is not zstd, a frame cut short, or one that
/// decompresses past `server.max_body` gets a clear 4xx in the surface's shape, and another encoding a 415.
#[tokio::test]
async fn zstd_request_bodies_are_decompressed_within_the_body_limit() {
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};
    let h = start_with(SimOptions::default(), |c| c.server.max_body = switchyard_core::config::ByteSize::mib(1)).await;
    let zstd = [("content-type", "application/json"), ("content-encoding", "zstd")];
    let compress = |v: &Value| compress_to_vec(v.to_string().as_bytes(), CompressionLevel::Fastest);
    let responses = json!({"model": "llama3.2:3b", "input": "Say hi", "max_output_tokens": 8});
    let a = h.post_raw("/v1/responses", &compress(&responses), &zstd).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["status"], "completed", "{}", a.text());
    let chat = json!({"model": "llama3.2:3b", "stream": false, "messages": [{"role": "user", "content": "hi"}]});
    // Two frames in a row are one body, as the format allows.
    let text = chat.to_string();
    let (head, tail) = text.split_at(text.len() / 2);
    let mut two = compress_to_vec(head.as_bytes(), CompressionLevel::Fastest);
    two.extend(compress_to_vec(tail.as_bytes(), CompressionLevel::Fastest));
    let a = h.post_raw("/api/chat", &two, &[("content-encoding", "ZSTD")]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(!a.json()["message"]["content"].as_str().unwrap().is_empty(), "{}", a.text());
    // Not zstd, and a frame cut short: 400s that name the cause.
    let plain = h.post_raw("/v1/chat/completions", chat.to_string().as_bytes(), &zstd).await;
    assert_eq!(plain.status, 400, "{}", plain.text());
    assert!(plain.json()["error"]["message"].as_str().unwrap().contains("decompress the zstd"), "{}", plain.text());
    let whole = compress(&chat);
    let cut = h.post_raw("/api/chat", &whole[..whole.len() - 4], &zstd).await;
    assert_eq!(cut.status, 400, "{}", cut.text());
    assert!(cut.json()["error"].as_str().unwrap().contains("zstd"), "{}", cut.text());
    // Under the 1 MiB limit compressed, 4 MiB decompressed: refused, and never held whole.
    let padding = " ".repeat(4 << 20);
    let bomb = compress_to_vec(
        format!("{{\"model\":\"llama3.2:3b\",\"prompt\":\"hi\"{padding}}}").as_bytes(),
        CompressionLevel::Fastest,
    );
    assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
    let a = h.post_raw("/api/generate", &bomb, &zstd).await;
    assert_eq!(a.status, 413, "{}", a.text());
    let gzip = h.post_raw("/v1/chat/completions", &whole, &[("content-encoding", "gzip")]).await;
    assert_eq!(gzip.status, 415, "{}", gzip.text());
    assert!(gzip.json()["error"]["message"].as_str().unwrap().contains("uncompressed or as zstd"), "{}", gzip.text());
    h.stop().await;
}
