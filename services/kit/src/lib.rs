//! Shared plumbing for every Storefront service.
//!
//! Each module is one concern: [`settings`] (layered configuration and secrets),
//! [`backend`] (backend selection by URL scheme), [`telemetry`] (tracing subscriber, OTLP),
//! [`context`] (request id and W3C trace context), [`metrics`] (Prometheus),
//! [`health`] (`/healthz` and `/readyz`), [`problem`] (RFC 9457 errors and JSON extractors),
//! [`shutdown`] (signals and draining), [`client`] (typed REST client base),
//! [`event`] (the event envelope), [`outbox`] (transactional outbox and consumer dedupe)
//! and [`server`] (one HTTP service with all of the above).

pub mod auth;
pub mod backend;
pub mod bus;
pub mod client;
pub mod context;
pub mod event;
pub mod health;
pub mod metrics;
pub mod outbox;
pub mod problem;
pub mod redis;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod sql;
pub mod telemetry;
