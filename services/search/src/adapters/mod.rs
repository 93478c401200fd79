//! Backends of the search service, one module per engine.

pub mod elastic;
pub mod memory;
pub mod mongo;
pub mod redis;
pub mod sqlite;
pub mod tantivy;
