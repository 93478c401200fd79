//! Backends of the cart service, one module per engine. The two SQL databases share the
//! statements in [`sql`].

pub mod memory;
pub mod mysql;
pub mod redis;
pub mod search;
mod sql;
pub mod sqlite;
