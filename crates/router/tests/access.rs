//! Access control: loopback by default, the admin key on admin routes, client keys on inference routes, refusal to
//! listen on the network without a key, prompts kept out of the logs unless asked for, and browser origins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Binary, start_with};
use serde_json::json;
use std::time::Duration;
use switchyard_sim::SimOptions;

#[tokio::test]
async fn admin_routes_need_the_admin_key_when_one_is_set() {
    let h = start_with(SimOptions::default(), |c| c.server.admin_key = "s3cret-admin".into()).await;
    let a = h.get("/admin/vram").await;
    assert_eq!(a.status, 401);
    assert!(a.json()["error"].as_str().unwrap().contains("SWITCHYARD_ADMIN_KEY"));
    let wrong =
        h.call(http::Method::GET, &h.url("/admin/vram"), None, &[("authorization", "Bearer s3cret-admiN")]).await;
    assert_eq!(wrong.status, 401);
    let prefix = h.call(http::Method::GET, &h.url("/admin/vram"), None, &[("authorization", "Bearer s3cret")]).await;
    assert_eq!(prefix.status, 401, "a prefix of the key is not the key");
    let ok = h.call(http::Method::GET, &h.url("/admin/vram"), None, &[("authorization", "Bearer s3cret-admin")]).await;
    assert_eq!(ok.status, 200);
    let header =
        h.call(http::Method::GET, &h.url("/admin/models"), None, &[("x-switchyard-admin-key", "s3cret-admin")]).await;
    assert_eq!(header.status, 200);
    // Inference stays open without client keys; health and metrics need no key.
    assert_eq!(
        h.post("/api/generate", json!({"model": "llama3.2:3b", "prompt": "hi", "stream": false})).await.status,
        200
    );
    assert_eq!(h.get("/health").await.status, 200);
    assert_eq!(h.get("/metrics").await.status, 200);
    h.stop().await;
}

#[tokio::test]
async fn inference_routes_need_a_client_key_when_keys_are_configured() {
    let h = start_with(SimOptions::default(), |c| c.server.client_keys = vec!["team-a".into(), "team-b".into()]).await;
    let body = json!({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let a = h.post("/api/chat", body.clone()).await;
    assert_eq!(a.status, 401);
    assert!(a.json()["error"].is_string());
    let a = h.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    let ok = h
        .call(
            http::Method::POST,
            &h.url("/v1/chat/completions"),
            Some(body.to_string().into()),
            &[("authorization", "Bearer team-b")],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    h.stop().await;
}

#[tokio::test]
async fn the_binary_refuses_an_open_listen_address_without_an_admin_key() {
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refused =
        Binary::start(&sim.url(), dir.path(), &["--listen", "0.0.0.0:0"], &[]).await.err().expect("must refuse");
    assert!(refused.contains("SWITCHYARD_ADMIN_KEY") && refused.contains("--allow-open-admin"), "{refused}");
    let keyed =
        Binary::start(&sim.url(), dir.path(), &["--listen", "0.0.0.0:0"], &[("SWITCHYARD_ADMIN_KEY", "k")]).await;
    assert!(keyed.is_ok(), "{:?}", keyed.err());
    drop(keyed);
    let consented = Binary::start(&sim.url(), dir.path(), &["--listen", "0.0.0.0:0", "--allow-open-admin"], &[]).await;
    assert!(consented.is_ok(), "{:?}", consented.err());
    // The default is loopback.
    let default = switchyard_core::config::Config::default();
    assert!(default.server.listen.ip().is_loopback());
    sim.shutdown().await;
}

#[tokio::test]
async fn prompts_are_not_logged_unless_turned_on() {
    let sim = switchyard_sim::spawn(SimOptions::default()).await.unwrap();
    let http = switchyard_core::http::HttpClient::default();
    for (log_prompts, expected) in [("false", false), ("true", true)] {
        let dir = tempfile::tempdir().unwrap();
        let bin = Binary::start(
            &sim.url(),
            dir.path(),
            &[],
            &[("RUST_LOG", "debug"), ("SWITCHYARD_SERVER_LOG_PROMPTS", log_prompts)],
        )
        .await
        .unwrap();
        let marker = format!("secret-marker-{log_prompts}-7f3a");
        for path in ["/api/chat", "/v1/chat/completions"] {
            let body = json!({"model": "auto", "stream": false, "messages": [{"role": "user", "content": format!("Tell me about {marker}")}]});
            let request = switchyard_core::http::build_request(
                http::Method::POST,
                &format!("{}{path}", bin.url),
                Some(body.to_string().into()),
            )
            .unwrap();
            assert_eq!(http.send_buffered(request, Duration::from_secs(10)).await.unwrap().status, 200);
        }
        bin.signal("TERM").await;
        let mut bin = bin;
        bin.child.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let logs = bin.stderr();
        assert!(logs.contains("routing decision"), "debug logs were written: {logs}");
        assert_eq!(logs.contains(&marker), expected, "log_prompts = {log_prompts}:\n{logs}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn browsers_on_local_and_configured_origins_may_call_and_other_web_origins_get_403() {
    let h =
        start_with(SimOptions::default(), |c| c.server.cors_origins = vec!["https://chat.example.com".into()]).await;
    let chat = json!({"model": "llama3.2:3b", "stream": false, "messages": [{"role": "user", "content": "hi"}]});
    let body = Some(bytes::Bytes::from(chat.to_string()));
    // A preflight from a local page is answered by Switchyard itself.
    let pre = h
        .call(
            http::Method::OPTIONS,
            &h.url("/v1/chat/completions"),
            None,
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type, authorization"),
            ],
        )
        .await;
    assert_eq!(pre.status, 204, "{}", pre.text());
    assert_eq!(pre.header("access-control-allow-origin"), Some("http://localhost:3000"));
    assert!(pre.header("access-control-allow-methods").unwrap().contains("POST"));
    assert_eq!(pre.header("access-control-allow-headers"), Some("content-type, authorization"));
    // The request itself is served, and the page may read the answer and the routing headers.
    for origin in ["http://localhost:3000", "https://chat.example.com", "chrome-extension://abcdefghijklmnop"] {
        let a = h.call(http::Method::POST, &h.url("/api/chat"), body.clone(), &[("origin", origin)]).await;
        assert_eq!(a.status, 200, "{origin}: {}", a.text());
        assert_eq!(a.header("access-control-allow-origin"), Some(origin));
        assert!(a.header("access-control-expose-headers").unwrap().contains("x-switchyard-model"));
    }
    // Any other web origin is refused, in each surface's shape, before anything runs.
    let evil = [("origin", "https://evil.example")];
    let a = h.call(http::Method::POST, &h.url("/api/chat"), body.clone(), &evil).await;
    assert_eq!(a.status, 403);
    assert!(a.json()["error"].as_str().unwrap().contains("server.cors_origins"), "{}", a.text());
    assert!(a.header("access-control-allow-origin").is_none());
    let a = h.call(http::Method::POST, &h.url("/v1/chat/completions"), body.clone(), &evil).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"]["type"], "permission_error", "{}", a.text());
    let a = h
        .call(http::Method::POST, &h.url("/admin/vram/unload"), Some(r#"{"model":"llama3.2:3b"}"#.into()), &evil)
        .await;
    assert_eq!(a.status, 403, "a web page cannot unload models through a browser");
    let pre = h
        .call(
            http::Method::OPTIONS,
            &h.url("/api/chat"),
            None,
            &[("origin", "https://evil.example"), ("access-control-request-method", "POST")],
        )
        .await;
    assert_eq!(pre.status, 403);
    // On loopback an origin naming the request's own host is not trusted: a DNS-rebinding page sets both.
    let port = h.router.url().rsplit(':').next().unwrap().to_string();
    let rebound = format!("http://rebound.example:{port}");
    let host = format!("rebound.example:{port}");
    let a =
        h.call(http::Method::POST, &h.url("/api/chat"), body.clone(), &[("origin", &rebound), ("host", &host)]).await;
    assert_eq!(a.status, 403, "{}", a.text());
    // Clients that are not browsers send no origin and see no change.
    let a = h.call(http::Method::POST, &h.url("/api/chat"), body, &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.header("access-control-allow-origin").is_none());
    h.stop().await;
}
