//! The delivery service: delivery partners and their assignment to orders.
//!
//! Rooms: [`domain`] (types that validate on construction, the assignment ranking), [`ports`]
//! (traits the domain needs), [`adapters`] (one module per backend), [`service`] (the order
//! follower and the pending-assignment worker), [`http`] (routers) and [`app`] (build, run).

pub mod adapters;
pub mod app;
pub mod domain;
pub mod http;
pub mod ports;
pub mod service;
pub mod settings;

pub use app::{Application, NAME};
pub use settings::Settings;
