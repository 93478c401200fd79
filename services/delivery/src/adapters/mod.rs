//! Backends of the delivery service, one module per engine. Both share the statements in
//! [`sql`].

pub mod mysql;
mod sql;
pub mod sqlite;
