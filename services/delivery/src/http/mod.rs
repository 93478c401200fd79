//! HTTP API of the delivery service: one router per resource, merged here.

pub mod deliveries;
pub mod partner;
pub mod partners;

use axum::Router;
use storefront_kit::problem::{FieldError, Problem};

use crate::domain::{
    Capacity, Delivery, DeliveryStatus, GeoCircle, NewPartner, Partner, PartnerContact,
    PartnerPatch, ServiceArea,
};
use crate::service::AppState;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Storefront delivery API",
        description = "Delivery partners and their assignment to orders."
    ),
    paths(
        partners::create_partner,
        partners::list_partners,
        partners::get_partner,
        partners::patch_partner,
        partner::me,
        partner::set_availability,
        partner::my_deliveries,
        partner::picked_up,
        partner::out_for_delivery,
        partner::delivered,
        deliveries::get_delivery,
    ),
    components(schemas(
        Partner, NewPartner, PartnerPatch, ServiceArea, GeoCircle, Capacity, PartnerContact,
        Delivery, DeliveryStatus, partners::PartnerPage, partner::Availability,
        partner::DeliveryList, Problem, FieldError,
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
        .merge(partners::router())
        .merge(partner::router())
        .merge(deliveries::router())
        .with_state(state)
}
