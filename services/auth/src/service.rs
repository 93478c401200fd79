//! What the auth service does: sign-up, login with limits, refresh rotation, logout. The HTTP
//! layer only parses and answers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRef;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use storefront_kit::auth::{Role, Verifier};
use storefront_kit::problem::ApiError;

use crate::domain::{Account, Email, LockPolicy, Name, NewPassword, merge_roles};
use crate::keys::KeyRing;
use crate::ports::{AccountRepo, BackendError, CreateError, NewRefreshToken, Rotation};
use crate::settings::Settings;

/// The one answer for a failed login, whether the account exists or not.
pub const BAD_CREDENTIALS: &str = "Invalid email or password.";
/// The one answer for a refresh token that cannot be used.
pub const BAD_REFRESH: &str = "Invalid or expired refresh token.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("an account with this e-mail exists")]
    EmailTaken,
    #[error("invalid credentials")]
    BadCredentials,
    #[error("invalid refresh token")]
    BadRefresh,
    #[error("locked for {0} s")]
    Locked(u64),
    #[error("no such account")]
    NoAccount,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("token signing: {0}")]
    Sign(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::EmailTaken => {
                ApiError::Conflict("An account with this e-mail address exists.".into())
            }
            Error::BadCredentials => ApiError::Unauthorized(BAD_CREDENTIALS.into()),
            Error::BadRefresh => ApiError::Unauthorized(BAD_REFRESH.into()),
            Error::Locked(secs) => ApiError::TooManyRequests {
                retry_after_secs: secs,
            },
            Error::NoAccount => ApiError::NotFound("No such account.".into()),
            Error::Backend(e) => ApiError::backend(e.unavailable, e),
            e @ (Error::Hash(_) | Error::Sign(_)) => ApiError::internal(e),
        }
    }
}

/// Tokens handed out by login and refresh.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// Argon2id with the configured cost.
#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    /// A hash of a random password, verified when the account does not exist so that a
    /// login takes as long either way.
    dummy: String,
}

impl Passwords {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self> {
        let params =
            Params::new(memory_kib, iterations, 1, None).map_err(|e| Error::Hash(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut this = Self {
            argon,
            dummy: String::new(),
        };
        this.dummy = this.hash(&random_token())?;
        Ok(this)
    }

    pub fn hash(&self, password: &str) -> Result<String> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Hash(e.to_string()))?;
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Hash(e.to_string()))
    }

    /// `true` when `password` matches `hash` (`None`: the dummy hash, always `false`).
    pub fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let stored = hash.unwrap_or(&self.dummy);
        let ok = PasswordHash::new(stored)
            .map(|h| self.argon.verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        ok && hash.is_some()
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub repo: Arc<dyn AccountRepo>,
    pub keys: KeyRing,
    pub verifier: Verifier,
    pub passwords: Passwords,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub account_policy: LockPolicy,
    pub ip_policy: LockPolicy,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Refresh tokens are stored as their SHA-256: they are random 256-bit values, so a fast hash
/// is enough and a database leak yields no usable token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl AppState {
    pub fn new(repo: Arc<dyn AccountRepo>, keys: KeyRing, settings: &Settings) -> Result<Self> {
        let verifier = Verifier::new(&settings.issuer, &settings.audience, None, keys.jwks());
        let window_secs = settings.login_failure_window_secs;
        Ok(Self {
            repo,
            keys,
            verifier,
            passwords: Passwords::new(settings.password_memory_kib, settings.password_iterations)?,
            access_ttl: Duration::from_secs(settings.access_ttl_secs.max(1)),
            refresh_ttl: Duration::from_secs(settings.refresh_ttl_secs.max(1)),
            account_policy: LockPolicy {
                max_failures: settings.login_max_failures_per_account,
                max_lock_secs: settings.login_max_lock_secs,
                window_secs,
            },
            ip_policy: LockPolicy {
                max_failures: settings.login_max_failures_per_ip,
                max_lock_secs: settings.login_max_lock_secs,
                window_secs,
            },
        })
    }

    async fn hash_password(&self, password: String) -> Result<String> {
        let passwords = self.passwords.clone();
        tokio::task::spawn_blocking(move || passwords.hash(&password))
            .await
            .map_err(|e| Error::Hash(e.to_string()))?
    }

    async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool> {
        let passwords = self.passwords.clone();
        tokio::task::spawn_blocking(move || passwords.verify(&password, hash.as_deref()))
            .await
            .map_err(|e| Error::Hash(e.to_string()))
    }

    /// Creates an account.
    pub async fn sign_up(
        &self,
        email: Email,
        password: NewPassword,
        name: Name,
        roles: &[Role],
    ) -> Result<Account> {
        let account = Account {
            id: uuid::Uuid::now_v7().to_string(),
            email: email.as_str().to_string(),
            name: name.as_str().to_string(),
            password_hash: self.hash_password(password.expose().to_string()).await?,
            roles: merge_roles(&[Role::Customer], roles),
            created_at: now_secs(),
        };
        match self.repo.create_account(&account).await {
            Ok(()) => Ok(account),
            Err(CreateError::EmailTaken) => Err(Error::EmailTaken),
            Err(CreateError::Backend(e)) => Err(e.into()),
        }
    }

    /// Creates the account, or grants `roles` to an existing one (its password is kept).
    pub async fn seed(
        &self,
        email: Email,
        password: NewPassword,
        name: Name,
        roles: &[Role],
    ) -> Result<Account> {
        if let Some(existing) = self.repo.account_by_email(email.as_str()).await? {
            return self.grant(&existing.id, roles).await;
        }
        match self.sign_up(email.clone(), password, name, roles).await {
            Err(Error::EmailTaken) => {
                let existing = self
                    .repo
                    .account_by_email(email.as_str())
                    .await?
                    .ok_or(Error::NoAccount)?;
                self.grant(&existing.id, roles).await
            }
            other => other,
        }
    }

    /// Adds `roles` to an account.
    pub async fn grant(&self, id: &str, roles: &[Role]) -> Result<Account> {
        let mut account = self.repo.account_by_id(id).await?.ok_or(Error::NoAccount)?;
        account.roles = merge_roles(&account.roles, roles);
        if !self.repo.set_roles(id, &account.roles).await? {
            return Err(Error::NoAccount);
        }
        Ok(account)
    }

    pub async fn account(&self, id: &str) -> Result<Account> {
        self.repo.account_by_id(id).await?.ok_or(Error::NoAccount)
    }

    /// Checks credentials under the per-account and per-IP limits and opens a session.
    pub async fn login(&self, email: Email, password: String, ip: IpAddr) -> Result<Tokens> {
        let now = now_secs();
        let account_key = format!("account:{}", email.as_str());
        let ip_key = format!("ip:{ip}");
        let keys = [account_key.clone(), ip_key.clone()];
        if let Some(until) = self.repo.locked_until(&keys, now).await? {
            return Err(Error::Locked(
                u64::try_from(until.saturating_sub(now)).unwrap_or(1).max(1),
            ));
        }
        let account = self.repo.account_by_email(email.as_str()).await?;
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        let ok = self.verify_password(password, hash).await?;
        match account {
            Some(account) if ok => {
                self.repo.clear_failures(&account_key).await?;
                self.open_session(&account, now).await
            }
            _ => {
                self.repo
                    .record_failure(&account_key, now, self.account_policy)
                    .await?;
                self.repo
                    .record_failure(&ip_key, now, self.ip_policy)
                    .await?;
                Err(Error::BadCredentials)
            }
        }
    }

    fn access_token(&self, account: &Account) -> Result<String> {
        self.keys
            .signer()
            .token(&account.id, &account.roles, self.access_ttl)
            .map_err(|e| Error::Sign(e.to_string()))
    }

    fn tokens(&self, access_token: String, refresh_token: String) -> Tokens {
        Tokens {
            access_token,
            expires_in: self.access_ttl.as_secs(),
            refresh_token,
            refresh_expires_in: self.refresh_ttl.as_secs(),
        }
    }

    async fn open_session(&self, account: &Account, now: i64) -> Result<Tokens> {
        let refresh = random_token();
        self.repo
            .start_family(&NewRefreshToken {
                hash: token_hash(&refresh),
                family_id: uuid::Uuid::now_v7().to_string(),
                account_id: account.id.clone(),
                issued_at: now,
                expires_at: now.saturating_add(secs(self.refresh_ttl)),
            })
            .await?;
        Ok(self.tokens(self.access_token(account)?, refresh))
    }

    /// Spends a refresh token for a new pair; a spent token revokes its family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let now = now_secs();
        let next = random_token();
        let new = NewRefreshToken {
            hash: token_hash(&next),
            family_id: String::new(),
            account_id: String::new(),
            issued_at: now,
            expires_at: now.saturating_add(secs(self.refresh_ttl)),
        };
        match self
            .repo
            .rotate(&token_hash(refresh_token), &new, now)
            .await?
        {
            Rotation::Rotated { account_id } => {
                // Roles are read again, so a grant shows in the next access token.
                let account = self
                    .repo
                    .account_by_id(&account_id)
                    .await?
                    .ok_or(Error::BadRefresh)?;
                Ok(self.tokens(self.access_token(&account)?, next))
            }
            Rotation::Reused => {
                tracing::warn!("a spent refresh token was presented; its family is revoked");
                Err(Error::BadRefresh)
            }
            Rotation::Invalid => Err(Error::BadRefresh),
        }
    }

    /// Ends the session the refresh token belongs to (its whole family).
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        if self
            .repo
            .revoke_family(&token_hash(refresh_token), now_secs())
            .await?
        {
            Ok(())
        } else {
            Err(Error::BadRefresh)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_the_dummy_never_matches() {
        let p = Passwords::new(1024, 1).expect("params");
        let hash = p.hash("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(p.verify("correct horse battery", Some(&hash)));
        assert!(!p.verify("wrong horse battery", Some(&hash)));
        assert!(!p.verify("", None));
        assert!(!p.verify("anything", Some("not a hash")));
    }
}
