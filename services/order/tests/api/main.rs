//! Integration tests of the order service: real MariaDB + Kafka of the local stack, and the
//! embedded twin (SQLite + in-process bus), with real search and cart services in-process.

mod flows;
mod helpers;
mod outbox;

use helpers::Backends::{Embedded, Real};

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod real {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { flows::$name(Real).await; })*
        }
        mod embedded {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { flows::$name(Embedded).await; })*
        }
    };
}

both!(
    whole_flow,
    idempotent_retry_replays,
    concurrent_orders_never_oversell,
    relay_after_crash_publishes_exactly_once,
    other_users_orders_are_invisible,
    status_changes_follow_the_machine,
    cancel_releases_stock,
    delivery_events_drive_the_status,
    history_pages_newest_first,
    bad_input_is_named,
    forged_tokens_are_rejected,
);
