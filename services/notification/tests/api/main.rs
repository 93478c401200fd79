//! Integration tests of the notification service on the local stack (MariaDB, Kafka,
//! mailpit), plus the embedded twins (SQLite, in-process bus, file mailbox). The tests
//! publish the order and delivery events themselves onto per-test topics.

mod behaviour;
mod helpers;
