//! Integration tests of the delivery service on the local stack (MariaDB, Kafka), plus one
//! run on the embedded twins (SQLite, in-process bus). Order events are published by the
//! tests themselves onto per-test topics.

mod behaviour;
mod helpers;
