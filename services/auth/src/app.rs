//! Builds and runs the auth service: opens the account database named by the settings, loads
//! (or, embedded, generates) the signing keys, and serves the API.

use std::path::Path;
use std::sync::Arc;

use storefront_kit::auth::Role;
use storefront_kit::backend::Location;
use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{Bound, Platform, Service, startup_error};
use utoipa::OpenApi;

use crate::adapters::mysql::MysqlAccounts;
use crate::adapters::sqlite::SqliteAccounts;
use crate::domain::{Email, Name, NewPassword};
use crate::http;
use crate::keys::KeyRing;
use crate::ports::AccountRepo;
use crate::service::AppState;
use crate::settings::Settings;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "auth";

/// The auth service, bound and ready to run.
pub type Application = Bound<AppState>;

fn io_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    startup_error(NAME, what, e)
}

/// The account database named by the settings, migrated.
pub async fn repo(settings: &Settings, data_dir: &Path) -> std::io::Result<Arc<dyn AccountRepo>> {
    let url = settings.database(data_dir);
    Ok(match url.scheme() {
        "mysql" => Arc::new(
            MysqlAccounts::connect(url.expose())
                .await
                .map_err(|e| io_error("database", e))?,
        ),
        _ => {
            let Location::Path(path) = url.location() else {
                return Err(io_error("database", "expected a sqlite:// file path"));
            };
            Arc::new(
                SqliteAccounts::open(path)
                    .await
                    .map_err(|e| io_error("database", e))?,
            )
        }
    })
}

/// The state of the service: database, keys, password hasher.
pub async fn state(settings: &Settings, data_dir: &Path) -> std::io::Result<AppState> {
    let embedded = settings.database(data_dir).scheme() != "mysql";
    // Keys first: a missing key must fail before anything connects.
    let keys = KeyRing::load(settings, data_dir, embedded).map_err(std::io::Error::other)?;
    let repo = repo(settings, data_dir).await?;
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || AppState::new(repo, keys, &settings))
        .await
        .map_err(|e| io_error("startup", e))?
        .map_err(|e| io_error("startup", e))
}

/// Creates the account or grants `roles` to the existing one (its password is left as it
/// is), so `storefront up` can call it on every start.
pub async fn seed_account(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
    roles: &[Role],
) -> std::io::Result<String> {
    let invalid = |f: storefront_kit::problem::FieldError| {
        io_error("seed account", format!("{}: {}", f.field, f.message))
    };
    let account = state
        .seed(
            Email::parse(email).map_err(invalid)?,
            NewPassword::parse(password).map_err(invalid)?,
            Name::parse(name).map_err(invalid)?,
            roles,
        )
        .await
        .map_err(|e| io_error("seed account", e))?;
    Ok(account.id)
}

/// Deletes expired refresh tokens and stale login failure counters once an hour.
async fn prune(state: AppState, window_secs: u64, stop: tokio_util::sync::CancellationToken) {
    loop {
        let now = crate::service::now_secs();
        let before = now.saturating_sub(i64::try_from(window_secs).unwrap_or(i64::MAX));
        match state.repo.prune(now, before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned expired sessions and login failures"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Connects the backends and binds the listener (so [`Bound::port`] is known).
pub async fn build(settings: &Settings, platform: &Platform) -> std::io::Result<Application> {
    let data_dir = &platform.data_dir;
    let state = state(settings, data_dir).await?;
    let mut readiness = Readiness::new(NAME, platform.shutdown.token());
    readiness.add(
        HealthCheck::on("database", state.repo.clone(), |a| async move {
            a.check().await
        })
        .with_target(settings.database(data_dir).redacted()),
    );
    platform.shutdown.spawn(prune(
        state.clone(),
        settings.login_failure_window_secs,
        platform.shutdown.token(),
    ));
    let service = Service {
        name: NAME,
        router: http::router(state.clone()),
        openapi: http::ApiDoc::openapi(),
        readiness,
    };
    Bound::bind(&settings.listen, service, state).await
}
