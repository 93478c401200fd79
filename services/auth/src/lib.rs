//! The auth service: accounts, JWT issuing and JWKS.
//!
//! Rooms: [`domain`] (types that validate on construction), [`ports`] (traits the domain
//! needs), [`adapters`] (one module per backend), [`keys`] (signing keys), [`service`] (what
//! the service does), [`http`] (routers) and [`app`] (build, run).

pub mod adapters;
pub mod app;
pub mod domain;
pub mod http;
pub mod keys;
pub mod ports;
pub mod service;
pub mod settings;

pub use app::{Application, NAME, seed_account};
pub use settings::Settings;
