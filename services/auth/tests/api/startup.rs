//! Startup rules that only apply to one backend.

use std::time::Duration;

use storefront_kit::server::Platform;

use crate::helpers::{mysql_settings, settings};

fn platform(dir: &std::path::Path) -> Platform {
    Platform::new(dir, Duration::from_secs(5))
}

#[tokio::test]
async fn mariadb_without_signing_keys_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, _db) = mysql_settings(settings()).await.expect("database");
    let Err(err) = storefront_auth::app::build(&settings, &platform(dir.path())).await else {
        panic!("started without keys");
    };
    assert!(err.to_string().contains("signing_keys"), "{err}");
}

#[tokio::test]
async fn embedded_keys_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = platform(dir.path());
    let first = storefront_auth::app::build(&settings(), &p)
        .await
        .expect("build");
    let jwks = first.state().keys.jwks();
    drop(first);
    let second = storefront_auth::app::build(&settings(), &p)
        .await
        .expect("rebuild");
    assert_eq!(second.state().keys.jwks(), jwks);
}
