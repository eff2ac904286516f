//! Cross-origin requests from browsers, as Ollama answers them: web pages and apps on this machine (localhost,
//! desktop apps, VS Code webviews, browser extensions) and the origins in `server.cors_origins` may call the API;
//! a browser request from any other web origin gets 403, so a page on the internet cannot make the GPU work or unload
//! models through a user's browser. Requests without an `Origin` header (every non-browser client) are not affected.
//!
//! Switchyard's own pages (the dashboard) are same-origin. On a loopback address they are reached as `localhost` or
//! `127.0.0.1`, which are allowed anyway; only on a network address is an origin that names the request's own `Host`
//! allowed as well. Not on loopback, because both headers come from the page in a DNS-rebinding attack (a page at
//! `http://evil.example:11435` whose name is made to point at 127.0.0.1).

use axum::http::{HeaderMap, HeaderValue, Method, header};

/// Origins allowed without configuration: Ollama's defaults.
const LOCAL_ORIGINS: [&str; 20] = [
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
    "chrome-extension://*",
    "moz-extension://*",
    "safari-web-extension://*",
];

/// Response headers a browser script may read (the routing decision and the request id).
const EXPOSED: &str = "x-switchyard-model, x-switchyard-category, x-switchyard-cache, x-switchyard-cascade-step, \
                       x-switchyard-cascade-escalations, x-switchyard-cascade-unvalidated, x-switchyard-node, \
                       x-request-id, retry-after";

/// Request headers a preflight allows when the browser does not list its own.
const ALLOWED_HEADERS: &str = "authorization, content-type, accept, user-agent, x-requested-with, x-api-key, \
                               x-request-id, x-switchyard-quality, x-switchyard-task, x-switchyard-cascade, \
                               x-switchyard-conversation, x-switchyard-admin-key";

/// Whether `pattern` (an origin, with at most one `*` standing for a host, a port or an extension id) admits
/// `origin`.
fn matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let Some((prefix, suffix)) = pattern.split_once('*') else {
        return pattern.eq_ignore_ascii_case(origin);
    };
    if origin.len() < prefix.len() + suffix.len()
        || !origin.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        || !origin.get(origin.len() - suffix.len()..).is_some_and(|s| s.eq_ignore_ascii_case(suffix))
    {
        return false;
    }
    let wild = &origin[prefix.len()..origin.len() - suffix.len()];
    if prefix.ends_with(':') {
        // A port: digits only, so `http://localhost:*` does not admit `http://localhost:1.evil.example`.
        !wild.is_empty() && wild.bytes().all(|b| b.is_ascii_digit())
    } else {
        !wild.contains('/')
    }
}

/// Whether a request from `origin` (its `Origin` header) may be served, given the configured extra origins and, on a
/// network address only, the request's `Host` header (a page served by Switchyard itself is same-origin).
pub fn allowed(origin: &str, host: Option<&str>, extra: &[String]) -> bool {
    let same_origin = host.is_some_and(|host| {
        origin
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host))
    });
    same_origin || LOCAL_ORIGINS.iter().any(|p| matches(p, origin)) || extra.iter().any(|p| matches(p.trim(), origin))
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The headers of the answer to an allowed preflight from `origin`.
pub fn preflight_headers(origin: &HeaderValue, request: &HeaderMap, out: &mut HeaderMap) {
    allow_origin(origin, out);
    out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"));
    let asked = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS)));
    out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
}

/// Adds the headers that let the browser page at `origin` read an answer.
pub fn allow_origin(origin: &HeaderValue, out: &mut HeaderMap) {
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    out.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_response_header_of_the_api_reference_is_exposed_to_scripts() {
        // The rows of docs/api.md's response header table: a browser script may read each of them.
        let api = include_str!("../../../docs/api.md");
        let table = api.split("## Response headers").nth(1).and_then(|t| t.split("\n## ").next()).unwrap();
        let documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|h| h.starts_with("x-") || *h == "retry-after")
            .collect();
        assert!(documented.len() >= 8, "{documented:?}");
        let exposed: Vec<&str> = EXPOSED.split(',').map(str::trim).collect();
        for header in documented {
            assert!(exposed.contains(&header), "{header} is not in Access-Control-Expose-Headers");
        }
    }

    #[test]
    fn local_pages_apps_and_extensions_are_allowed_and_other_web_origins_are_not() {
        for origin in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://0.0.0.0:8080",
            "app://obsidian.md",
            "file://",
            "vscode-webview://1abc",
            "chrome-extension://jfgfiigpkhlkbnfnbobbkinehhfdhndo",
            "moz-extension://4b1a6f6e-7d4e-4f7c-9d3a-0c8a2f7b9e11",
        ] {
            assert!(allowed(origin, None, &[]), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://localhost:1.evil.example",
            "http://localhost:",
            "http://127.0.0.1.nip.io",
            "null",
        ] {
            assert!(!allowed(origin, None, &[]), "{origin}");
        }
    }

    #[test]
    fn configured_origins_and_the_servers_own_are_allowed() {
        let extra = vec!["https://chat.example.com".to_string(), "https://*.corp.example".to_string()];
        assert!(allowed("https://chat.example.com", None, &extra));
        assert!(allowed("https://ai.corp.example", None, &extra));
        assert!(!allowed("https://ai.corp.example/x", None, &extra));
        assert!(!allowed("https://chat.example.org", None, &extra));
        assert!(allowed("https://anything.example", None, &["*".to_string()]));
        // The dashboard served by Switchyard on a LAN address calls its own API.
        assert!(allowed("http://gpu-box:11435", Some("gpu-box:11435"), &[]));
        assert!(!allowed("http://gpu-box:11435", Some("other:11435"), &[]));
        assert!(!allowed("ftp://gpu-box:11435", Some("gpu-box:11435"), &[]));
    }
}
