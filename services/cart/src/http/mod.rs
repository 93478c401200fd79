//! HTTP API of the cart service: one router per resource, merged here.

pub mod cart;

use axum::Router;
use storefront_kit::problem::{FieldError, Problem};
use storefront_search::domain::{Currency, Money, ProductId, Sku};

use crate::domain::{CartLineView, CartView};
use crate::service::{AddItemInput, AppState, SetQuantityInput};

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Storefront cart API", description = "Shopping carts."),
    paths(
        cart::get_cart,
        cart::add_item,
        cart::set_quantity,
        cart::remove_item,
        cart::clear_cart,
    ),
    components(schemas(
        CartView, CartLineView, AddItemInput, SetQuantityInput, Money, Currency, ProductId, Sku,
        Problem, FieldError,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/v1` routes.
pub fn router(state: AppState) -> Router {
    Router::new().merge(cart::router()).with_state(state)
}
