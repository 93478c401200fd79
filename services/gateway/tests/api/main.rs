//! Integration tests of the gateway against real servers: echo upstreams started here, the
//! real auth service (JWKS) on SQLite, and the local stack's Redis for cluster-wide limits.

mod auth;
mod helpers;
mod rate_limit;
mod reload;
mod resilience;
mod routing;
