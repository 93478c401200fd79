//! The gateway service: routing, JWT verification, rate limits and load balancing in front of
//! every service, and the web UI.
//!
//! Rooms: [`domain`] (the configuration format, route matching, client IPs, GCRA: pure),
//! [`ports`] and [`adapters`] (rate-limit stores: governor in memory, Redis), [`runtime`] (the
//! compiled configuration and its hot reload), [`upstream`], [`connections`] and [`proxy`]
//! (pools, health, kept connections, forwarding), [`wire`] and [`fast`] (forwarding the kit's
//! fast-path requests without hyper), [`tokens`] (cached JWT verification), [`limits`] (rules
//! and decisions), [`http`] (the request path and the UI) and [`app`] (build, run).

pub mod adapters;
pub mod app;
pub mod connections;
pub mod domain;
pub mod fast;
pub mod http;
pub mod limits;
pub mod ports;
pub mod proxy;
pub mod runtime;
pub mod settings;
pub mod tokens;
pub mod upstream;
pub mod wire;

pub use app::{Application, NAME};
pub use settings::Settings;
