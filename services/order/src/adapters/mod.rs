//! Backends of the order service, one module per engine. Both share the statements in
//! [`sql`].

pub mod mysql;
pub(crate) mod sql;
pub mod sqlite;
