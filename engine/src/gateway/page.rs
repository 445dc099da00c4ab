//! The status page at `GET /`: static HTML, CSS and vanilla JS compiled into the binary.
//!
//! The page polls `GET /_/status` once a second and draws everything in the browser (rates
//! derived between polls, line charts on `<canvas>`); it loads nothing from elsewhere, so it
//! works on machines without network access. Assets live under `/_/page/`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Path of the page's script.
pub const APP_JS_PATH: &str = "/_/page/app.js";
/// Path of the page's style sheet.
pub const STYLE_CSS_PATH: &str = "/_/page/style.css";

/// `GET /`: the page itself.
pub fn index() -> Response<Full<Bytes>> {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /_/page/app.js`.
pub fn script() -> Response<Full<Bytes>> {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /_/page/style.css`.
pub fn style() -> Response<Full<Bytes>> {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change with the binary; have browsers revalidate rather than keep stale ones.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_links_its_assets_by_their_routes() {
        assert!(INDEX_HTML.contains(APP_JS_PATH));
        assert!(INDEX_HTML.contains(STYLE_CSS_PATH));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
    }
}
