//! The dashboard: one HTML page embedded in the binary (`src/ui/dashboard.html`: inline CSS and script, no external
//! assets), served at `GET /ui` behind the admin key like `/admin/*`. It reads the admin routes it shows (`/admin/vram`,
//! `/admin/vram/events`, `/admin/models`, `/admin/decisions`, `/admin/explain`, `/metrics`) from the same origin, every
//! `vram.poll_interval_ms` (written into the page as it is served).
//!
//! A browser cannot send a bearer header on navigation, so `GET /ui?key=KEY` with the right key answers with a
//! `SameSite=Strict`, `HttpOnly` cookie and a redirect to `/ui`. The cookie holds a token derived from the key (a
//! SHA-256 of it), not the key: other services on the same host name receive the host's cookies, and the token opens
//! only `/ui` and `/admin/*`, and only from the page's own origin (the gate checks `Sec-Fetch-Site` or `Origin`,
//! since `SameSite` does not tell one port of a host from another).

use crate::error::{OllamaError, RouterError};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::Deserialize;

/// The page.
const DASHBOARD: &str = include_str!("../ui/dashboard.html");

/// The poll interval's attribute in the page, replaced when it is served.
const POLL_META: &str = "content=\"2000\"";

/// The cookie that carries the admin key for the dashboard.
pub const KEY_COOKIE: &str = "switchyard_admin_key";

/// The cookie's value for `admin_key`: hex SHA-256 of it, under a label of its own.
pub fn cookie_token(admin_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::new().chain_update(b"switchyard-dashboard-cookie\0").chain_update(admin_key.as_bytes()).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `?key=` on `/ui`.
#[derive(Debug, Deserialize)]
pub struct UiQuery {
    #[serde(default)]
    key: Option<String>,
}

/// `GET /ui`: the dashboard; with `?key=` (already checked by the gate), a cookie holding the key and a redirect to
/// the same page without the key in its address.
pub async fn dashboard(
    State(state): State<AppState>,
    q: Result<Query<UiQuery>, QueryRejection>,
) -> Result<Response<Body>, OllamaError> {
    let q = super::query(q)?;
    let mut response = match q.key.filter(|k| !k.is_empty()) {
        Some(key) => {
            // The key was checked by the gate (it matched the configured key).
            let cookie = format!("{KEY_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", cookie_token(&key));
            let cookie = HeaderValue::from_str(&cookie).map_err(|e| RouterError::Internal(e.to_string()))?;
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/ui"));
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        None => {
            // The page polls at the VRAM poll interval (at least every 0.5 s).
            let poll_ms = state.config.vram.poll_interval_ms.max(500);
            let page = DASHBOARD.replacen(POLL_META, &format!("content=\"{poll_ms}\""), 1);
            let mut r = Response::new(Body::from(page));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
