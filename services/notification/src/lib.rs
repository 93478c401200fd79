//! The notification service: order and delivery emails.
//!
//! Rooms: [`domain`] (money, what is kept of an order, which event becomes which message,
//! the templates), [`ports`] (traits the domain needs), [`adapters`] (one module per backend),
//! [`service`] (sending, retries, dead letters), [`http`] (routers) and [`app`] (build, run).

pub mod adapters;
pub mod app;
pub mod domain;
pub mod http;
pub mod ports;
pub mod service;
pub mod settings;

pub use app::{Application, NAME};
pub use settings::Settings;
