//! The web UI, embedded in the binary from `services/gateway/ui/`: files by path, and
//! `index.html` for any other path (the single-page app routes in the browser).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rust_embed::Embed;
use storefront_kit::problem::ApiError;

#[derive(Embed)]
#[folder = "ui/"]
struct Assets;

const INDEX: &str = "index.html";

/// The UI file for `path`, or `index.html` (never cached, so a new release shows at once).
pub fn serve(path: &str, request_headers: &HeaderMap) -> Response {
    let wanted = path.trim_start_matches('/');
    let (name, file) = match Assets::get(if wanted.is_empty() { INDEX } else { wanted }) {
        Some(f) => (if wanted.is_empty() { INDEX } else { wanted }, f),
        None => match Assets::get(INDEX) {
            Some(f) => (INDEX, f),
            None => return ApiError::NotFound("No such page.".into()).into_response(),
        },
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let cache = if name == INDEX {
        "no-cache"
    } else {
        "public, max-age=3600"
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if storefront_kit::server::none_match(request_headers, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, Body::from(file.data.into_owned())).into_response()
}
