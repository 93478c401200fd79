//! Storefront operator: the `Storefront` custom resource (`storefront.dev/v1alpha1`)
//! and the controller that reconciles it.
//!
//! - [`crd`] holds the resource types; their rustdoc becomes the CRD's field
//!   descriptions and their `#[x_kube(validation = ...)]` attributes its CEL rules.
//! - [`Component`] names the seven services and their default ports.
//! - [`children`] builds every child object (pure functions), [`gateway_config`]
//!   renders the gateway's routes and rate limits, [`topics`] manages Kafka topics,
//!   [`status`] computes conditions, [`leader`] elects a leader on a Lease, and
//!   [`controller`] ties them into the reconcile loop.
//! - [`crd_yaml`] renders the CRD exactly as committed in `crds/storefront.yaml`
//!   (`cargo run -q -p storefront-operator --bin crdgen > crds/storefront.yaml`).

pub mod children;
pub mod component;
pub mod controller;
pub mod crd;
pub mod gateway_config;
pub mod leader;
pub mod status;
pub mod topics;

pub use component::Component;
pub use crd::{
    ComponentSpec, ComponentStatus, Storefront, StorefrontSpec, StorefrontStatus, crd_yaml,
};

/// Errors from this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A component name that is none of the seven services.
    #[error(
        "unknown component {0:?}; expected one of gateway, auth, search, cart, order, delivery, notification"
    )]
    UnknownComponent(String),

    /// The CRD could not be converted to JSON.
    #[error("could not convert the CRD to JSON")]
    Json(#[from] serde_json::Error),

    /// The CRD could not be rendered as YAML.
    #[error("could not render the CRD as YAML")]
    Yaml(#[from] serde_yaml::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
