//! Startup rules that only apply to one backend.

use std::time::Duration;

use storefront_auth::Application;
use storefront_kit::bus::MemoryBus;
use storefront_kit::server::Platform;
use storefront_kit::shutdown::Shutdown;

use crate::helpers::{mysql_settings, settings};

fn platform(dir: &std::path::Path) -> Platform {
    Platform {
        data_dir: dir.to_path_buf(),
        shutdown: Shutdown::new(Duration::from_secs(5)),
        memory_bus: MemoryBus::new(),
    }
}

#[tokio::test]
async fn mariadb_without_signing_keys_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, _db) = mysql_settings(settings()).await.expect("database");
    let Err(err) = Application::build(&settings, &platform(dir.path())).await else {
        panic!("started without keys");
    };
    assert!(err.to_string().contains("signing_keys"), "{err}");
}

#[tokio::test]
async fn embedded_keys_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = platform(dir.path());
    let first = Application::build(&settings(), &p).await.expect("build");
    let jwks = first.state().keys.jwks();
    drop(first);
    let second = Application::build(&settings(), &p).await.expect("rebuild");
    assert_eq!(second.state().keys.jwks(), jwks);
}
