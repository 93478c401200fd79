//! The order service: orders, stock reservation and the order status lifecycle.
//!
//! Rooms: [`domain`] (types that validate on construction), [`ports`] (traits the domain
//! needs), [`adapters`] (one module per backend), [`service`] (what handlers and workers do),
//! [`http`] (routers) and [`app`] (build, run). Events leave through the transactional outbox
//! of `storefront_kit::outbox`.

pub mod adapters;
pub mod app;
pub mod domain;
pub mod http;
pub mod ports;
pub mod service;
pub mod settings;

pub use app::{Application, NAME};
pub use settings::Settings;
