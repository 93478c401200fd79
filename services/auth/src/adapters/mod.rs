//! Backends of the auth service, one module per engine. Both share the statements in
//! [`sql`].

pub mod mysql;
mod sql;
pub mod sqlite;
