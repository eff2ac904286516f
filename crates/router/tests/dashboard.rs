//! The dashboard's server side: the page is served behind the admin key, the key travels in a `SameSite=Strict`
//! cookie set by `/ui?key=`, that cookie opens the admin routes the page reads and nothing else, and the page's
//! load-event timeline has its route.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::start_with;
use http::{Method, StatusCode};
use serde_json::json;
use switchyard_sim::SimOptions;

#[tokio::test]
async fn the_page_and_its_data_need_the_admin_key_which_a_cookie_carries() {
    let h = start_with(SimOptions::default(), |c| {
        c.server.admin_key = "s3cret-key".into();
        c.server.client_keys = vec!["client-key".into()];
    })
    .await;
    let ui = h.url("/ui");
    let a = h.call(Method::GET, &ui, None, &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.text().contains("/ui?key="), "{}", a.text());
    assert_eq!(h.call(Method::GET, &format!("{ui}?key=wrong"), None, &[]).await.status, StatusCode::UNAUTHORIZED);

    let a = h.call(Method::GET, &format!("{ui}?key=s3cret-key"), None, &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), Some("/ui"), "the key leaves the address bar");
    let cookie = a.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("s3cret-key"), "the cookie holds a token, not the key: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();

    let page = h.call(Method::GET, &ui, None, &[("cookie", &pair)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(page.text().contains("<html"), "the embedded page");
    // The same key as a bearer header opens the page too.
    let a = h.call(Method::GET, &ui, None, &[("authorization", "Bearer s3cret-key")]).await;
    assert_eq!(a.status, StatusCode::OK);

    // The cookie opens the admin routes the page uses, reads and writes...
    let a = h.call(Method::GET, &h.url("/admin/vram"), None, &[("cookie", &pair)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let pin = || Some(bytes::Bytes::from(json!({"model": "llama3.2:3b"}).to_string()));
    let from_page = [("cookie", pair.as_str()), ("sec-fetch-site", "same-origin")];
    let a = h.call(Method::POST, &h.url("/admin/vram/pin"), pin(), &from_page).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // A write carried by the cookie alone, or from another origin (another port of the same host), is refused.
    let host = h.router.url().trim_start_matches("http://").to_string();
    for headers in [
        vec![("cookie", pair.as_str())],
        vec![("cookie", pair.as_str()), ("sec-fetch-site", "same-site")],
        vec![("cookie", pair.as_str()), ("origin", "http://127.0.0.1:3000")],
    ] {
        let a = h.call(Method::POST, &h.url("/admin/vram/unpin"), pin(), &headers).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    let origin = format!("http://{host}");
    let same = [("cookie", pair.as_str()), ("origin", origin.as_str())];
    let a = h.call(Method::POST, &h.url("/admin/vram/pin"), pin(), &same).await;
    assert_eq!(a.status, StatusCode::OK, "an Origin equal to the host is the page's own: {}", a.text());
    // The raw key as a cookie value is not the token.
    let raw = [("cookie", "switchyard_admin_key=s3cret-key"), ("sec-fetch-site", "same-origin")];
    assert_eq!(h.call(Method::GET, &h.url("/admin/vram"), None, &raw).await.status, StatusCode::UNAUTHORIZED);
    // ...and nothing else: it is not a client key, and a wrong cookie opens nothing.
    let chat = Some(bytes::Bytes::from(
        json!({"model": "llama3.2:3b", "stream": false, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    ));
    let a = h.call(Method::POST, &h.url("/api/chat"), chat, &[("cookie", &pair)]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = h.call(Method::GET, &h.url("/admin/vram"), None, &[("cookie", "switchyard_admin_key=nope")]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // The timeline's data: the pin loaded the model.
    let a = h.call(Method::GET, &h.url("/admin/vram/events?limit=10"), None, &[("cookie", &pair)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let ok = common::eventually(std::time::Duration::from_secs(10), || async {
        let a = h.call(Method::GET, &h.url("/admin/vram/events?model=llama3.2:3b"), None, &[("cookie", &pair)]).await;
        a.json()["events"].as_array().unwrap().iter().any(|e| e["kind"] == "load" && e["model"] == "llama3.2:3b")
    })
    .await;
    assert!(ok, "the load is listed");
    let a = h.call(Method::GET, &h.url("/admin/vram/events?limit=x"), None, &[("cookie", &pair)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    h.stop().await;
}

#[tokio::test]
async fn without_an_admin_key_the_page_is_open_like_the_admin_routes() {
    let h = start_with(SimOptions::default(), |c| c.vram.poll_interval_ms = 750).await;
    let a = h.get("/ui").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert!(a.text().contains(r#"<meta name="switchyard-poll-ms" content="750">"#), "polls at the VRAM poll interval");
    h.stop().await;
}

#[tokio::test]
async fn a_decision_learns_how_long_its_request_took_and_which_model_served_it() {
    let h = start_with(SimOptions::default(), |_| {}).await;
    for stream in [false, true] {
        let body =
            json!({"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "Name a prime."}]});
        let a = h.post("/api/chat", body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let served = a.header("x-switchyard-model").unwrap().to_string();
        let decision = h.get("/admin/decisions?limit=1").await.json()["decisions"][0].clone();
        assert_eq!(decision["served_by"], served.as_str(), "{decision}");
        let ms = decision["measured_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms < 60_000.0, "{decision}");
        assert!(
            decision["scoring"]["candidates"][0]["latency"]["total"].as_f64().is_some(),
            "the prediction beside it"
        );
    }
    // An explicit model makes no decision to measure.
    let body = json!({"model": "llama3.2:3b", "stream": false, "messages": [{"role": "user", "content": "hi"}]});
    h.post("/api/chat", body).await;
    assert_eq!(h.get("/admin/decisions").await.json()["decisions"].as_array().unwrap().len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn the_page_is_covered_by_the_rate_limits() {
    let h = start_with(SimOptions::default(), |c| {
        c.limits.per_ip_rps = 0.001;
        c.limits.burst = 2;
    })
    .await;
    let codes: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(h.get("/ui").await.status);
        }
        v
    };
    assert_eq!(codes, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(h.get("/admin/vram").await.status, StatusCode::OK, "the admin routes without the page's cookie are not");
    h.stop().await;
}
