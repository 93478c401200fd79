//! The cart service: shopping carts, one per user.
//!
//! Rooms: [`domain`] (types that validate on construction), [`ports`] (traits the domain
//! needs), [`adapters`] (one module per backend), [`service`] (what the API does over the
//! ports), [`http`] (routers), [`client`] (typed client for other services) and [`app`]
//! (build, run).

pub mod adapters;
pub mod app;
pub mod client;
pub mod domain;
pub mod http;
pub mod ports;
pub mod service;
pub mod settings;

pub use app::{Application, NAME};
pub use client::CartClient;
pub use settings::Settings;
