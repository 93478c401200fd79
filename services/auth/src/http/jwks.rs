//! `GET /.well-known/jwks.json`: every public key, so tokens signed by a retiring key keep
//! verifying during a rotation.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::service::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

/// The public signing keys (JWK set, `kid` per key).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, description = "JWK set (OKP / Ed25519, alg EdDSA)", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.keys.jwks()),
    )
}
