//! The dashboard: one HTML page embedded in the binary (`src/ui/dashboard.html`: inline CSS and script, no external
//! assets), served at `GET /ui` behind the admin key like `/admin/*`. It reads the admin routes it shows (`/admin/vram`,
//! `/admin/vram/events`, `/admin/models`, `/admin/decisions`, `/admin/explain`, `/metrics`) from the same origin, every
//! `vram.poll_interval_ms` (written into the page as it is served).
//!
//! A browser cannot send a bearer header on navigation, so `GET /ui?key=KEY` with the right key answers with a
//! `SameSite=Strict`, `HttpOnly` cookie holding it and a redirect to `/ui`; the gate accepts that cookie wherever it
//! accepts the admin key (`SameSite=Strict` keeps other sites' pages from sending it).

use crate::error::{OllamaError, RouterError};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::Deserialize;

/// The page.
const DASHBOARD: &str = include_str!("../ui/dashboard.html");

/// The poll interval's attribute in the page, replaced when it is served.
const POLL_META: &str = "content=\"2000\"";

/// The cookie that carries the admin key for the dashboard.
pub const KEY_COOKIE: &str = "switchyard_admin_key";

/// `?key=` on `/ui`.
#[derive(Debug, Deserialize)]
pub struct UiQuery {
    #[serde(default)]
    key: Option<String>,
}

/// `GET /ui`: the dashboard; with `?key=` (already checked by the gate), a cookie holding the key and a redirect to
/// the same page without the key in its address.
pub async fn dashboard(State(state): State<AppState>, Query(q): Query<UiQuery>) -> Result<Response<Body>, OllamaError> {
    let mut response = match q.key.filter(|k| !k.is_empty()) {
        Some(key) => {
            // The key's characters are checked by the gate (it matched the configured key); a key that cannot be a
            // cookie value is refused rather than mangled.
            let cookie = format!("{KEY_COOKIE}={key}; Path=/; HttpOnly; SameSite=Strict");
            let cookie = HeaderValue::from_str(&cookie)
                .ok()
                .filter(|_| key.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\')))
                .ok_or_else(|| {
                    RouterError::bad(
                        "this admin key cannot be carried in a cookie (it has spaces, quotes, commas or semicolons); \
                         use the admin routes with an Authorization header instead",
                        Some("key".into()),
                    )
                })?;
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
