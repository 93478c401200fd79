//! Traits the auth domain needs from the outside world.

use futures::future::BoxFuture;
use storefront_kit::auth::Role;

use crate::domain::{Account, LockPolicy};

/// A backend failure, with the backend's name; never shown to clients.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
    /// The backend could not be reached (no connection in time, refused, broken): callers
    /// get 503, not 500.
    pub unavailable: bool,
}

impl BackendError {
    pub fn new(backend: &'static str, err: impl std::fmt::Display + 'static) -> Self {
        Self {
            backend,
            message: err.to_string(),
            unavailable: storefront_kit::sql::is_unavailable_any(&err),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("an account with this e-mail exists")]
    EmailTaken,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A refresh token to store: only its hash is kept.
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub family_id: String,
    pub account_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// What presenting a refresh token led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live: it is spent now and the new one replaces it.
    Rotated { account_id: String },
    /// The token was spent before: its whole family is revoked now.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Accounts, refresh token families and login failure counters.
pub trait AccountRepo: Send + Sync {
    /// A real query, for `/readyz`.
    fn check(&self) -> BoxFuture<'_, Result<()>>;

    fn create_account<'a>(&'a self, account: &'a Account)
    -> BoxFuture<'a, Result<(), CreateError>>;

    fn account_by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<Option<Account>>>;

    fn account_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Account>>>;

    /// Replaces the roles; `false` when there is no such account.
    fn set_roles<'a>(&'a self, id: &'a str, roles: &'a [Role]) -> BoxFuture<'a, Result<bool>>;

    /// Stores the first token of a new family.
    fn start_family<'a>(&'a self, token: &'a NewRefreshToken) -> BoxFuture<'a, Result<()>>;

    /// Spends the token with hash `old_hash` and stores `new` in its family (`new.family_id`
    /// and `new.account_id` are filled from the old token).
    fn rotate<'a>(
        &'a self,
        old_hash: &'a str,
        new: &'a NewRefreshToken,
        now: i64,
    ) -> BoxFuture<'a, Result<Rotation>>;

    /// Revokes the family of the token with this hash; `false` when the token is unknown.
    fn revoke_family<'a>(&'a self, hash: &'a str, now: i64) -> BoxFuture<'a, Result<bool>>;

    /// The latest `locked_until` (epoch seconds) over `keys`, if any is in the future.
    fn locked_until<'a>(
        &'a self,
        keys: &'a [String],
        now: i64,
    ) -> BoxFuture<'a, Result<Option<i64>>>;

    /// Counts a failed login for `key` and locks it as `policy` says.
    fn record_failure<'a>(
        &'a self,
        key: &'a str,
        now: i64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes refresh tokens and families expired before `now`, and failure counters
    /// untouched since `failures_before` whose lock is over. Returns the rows deleted.
    fn prune(&self, now: i64, failures_before: i64) -> BoxFuture<'_, Result<u64>>;

    /// Forgets the failures of `key` (after a successful login).
    fn clear_failures<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
}
