//! HTTP API of the order service: one router per resource, merged here.

pub mod orders;
pub mod stock;

use axum::Router;
use storefront_kit::problem::{FieldError, Problem};

use crate::domain::{
    Currency, Customer, CustomerInput, Money, Order, OrderLine, OrderStatus, Partner,
    PlaceOrderInput, Shipping, ShippingInput,
};
use crate::service::AppState;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Storefront order API",
        description = "Orders, stock reservation and the order status lifecycle."
    ),
    paths(
        orders::place_order,
        orders::list_orders,
        orders::get_order,
        orders::cancel_order,
        orders::set_status,
        stock::get_stock,
        stock::put_stock,
    ),
    components(schemas(
        Order, OrderLine, OrderStatus, Customer, Shipping, Partner, Money, Currency,
        PlaceOrderInput, CustomerInput, ShippingInput, orders::OrderPage, orders::StatusInput,
        orders::CancelInput, stock::Stock, stock::StockInput, Problem, FieldError,
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
    Router::new()
        .merge(orders::router())
        .merge(stock::router())
        .with_state(state)
}
