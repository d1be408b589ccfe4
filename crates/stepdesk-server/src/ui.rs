//! The web console: the Svelte app built into `ui/dist` (`make ui`), embedded in the binary
//! so the console works offline and from any directory. (`build.rs` puts a placeholder page
//! there when the console has not been built, so that `cargo build` works on a fresh clone.)
//!
//! Every file is sent with the same Content-Security-Policy as the desktop window's
//! (`tauri.conf.json`): scripts, styles and connections only from this server, no inline
//! script, no framing. The console loads nothing remote. Vite names the files under
//! `assets/` by their content's hash, so they may be cached for good; `index.html` (which
//! names them) is revalidated every time.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::AppState;

#[derive(RustEmbed)]
#[folder = "$STEPDESK_UI_DIST"]
struct Assets;

/// The console's Content-Security-Policy in a browser.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The response for one embedded file (`path` as in `ui/dist`, e.g. `assets/index-X.js`).
fn asset(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let hashed = path.starts_with("assets/");
    let not_modified = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let h = res.headers_mut();
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime.ends_with("javascript") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if hashed { IMMUTABLE } else { "no-cache" }),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `/` (the console's page) and one route per embedded file, so that any other path still
/// gets the server's JSON 404.
pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move { asset("index.html", &headers) }),
    );
    for path in Assets::iter() {
        let path: &'static str = match path {
            std::borrow::Cow::Borrowed(p) => p,
            std::borrow::Cow::Owned(p) => Box::leak(p.into_boxed_str()),
        };
        router = router.route(
            &format!("/{path}"),
            get(move |headers: HeaderMap| async move { asset(path, &headers) }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_page_is_embedded() {
        let index = Assets::get("index.html").expect("index.html is embedded");
        let text = String::from_utf8_lossy(&index.data);
        assert!(text.contains("<title>Stepdesk</title>"), "{text}");
        assert!(asset("index.html", &HeaderMap::new()).status().is_success());
        assert_eq!(
            asset("no/such/file", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn files_carry_their_type_the_csp_and_the_right_caching() {
        let index = asset("index.html", &HeaderMap::new());
        let h = index.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        // Revalidation: the same ETag answers 304.
        let mut req = HeaderMap::new();
        req.insert(header::IF_NONE_MATCH, h[header::ETAG].clone());
        assert_eq!(asset("index.html", &req).status(), StatusCode::NOT_MODIFIED);

        // Hashed assets (absent from the placeholder build) are cached for good.
        for path in Assets::iter().filter(|p| p.starts_with("assets/")) {
            let res = asset(&path, &HeaderMap::new());
            let h = res.headers();
            assert_eq!(h[header::CACHE_CONTROL], IMMUTABLE, "{path}");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
            let ct = h[header::CONTENT_TYPE].to_str().unwrap();
            if path.ends_with(".js") {
                assert_eq!(ct, "text/javascript; charset=utf-8", "{path}");
            } else if path.ends_with(".css") {
                assert_eq!(ct, "text/css; charset=utf-8", "{path}");
            }
        }
    }
}
