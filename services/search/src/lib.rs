//! The search service: product catalog, full-text search and suggestions.
//!
//! Rooms: [`domain`] (types that validate on construction), [`ports`] (traits the domain
//! needs), [`adapters`] (one module per backend), [`service`] (what the API does over the
//! ports), [`http`] (routers), [`client`] (typed client for other services), [`demo`] (the
//! demo catalog) and [`app`] (build, run).

pub mod adapters;
pub mod app;
pub mod client;
pub mod demo;
pub mod domain;
pub mod http;
pub mod ports;
pub mod service;
pub mod settings;

pub use app::{Application, NAME};
pub use client::SearchClient;
pub use settings::Settings;
