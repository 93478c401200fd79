//! Token verification at the edge: kit's [`Verifier`] (JWKS from the auth service, EdDSA only,
//! `iss`, `aud`, `exp`, `nbf`) behind a bounded cache keyed by the token's SHA-256, each entry
//! living until the token's `exp`, so a token seen before costs no signature check.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use storefront_kit::auth::{AuthError, Identity, Verifier};

type TokenHash = [u8; 32];

struct UntilExp;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Expiry<TokenHash, Identity> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        value: &Identity,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.expires_at.saturating_sub(now_secs()),
        ))
    }
}

/// Verified tokens, cached.
#[derive(Clone)]
pub struct Tokens {
    verifier: Verifier,
    cache: Cache<TokenHash, Identity>,
}

impl Tokens {
    pub fn new(verifier: Verifier, capacity: u64) -> Self {
        Self {
            verifier,
            cache: Cache::builder()
                .max_capacity(capacity.max(1))
                .expire_after(UntilExp)
                .build(),
        }
    }

    /// The identity of a bearer token: from the cache when this token was verified before and
    /// has not expired, else verified (and remembered).
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let key: TokenHash = Sha256::digest(token.as_bytes()).into();
        if let Some(identity) = self.cache.get(&key)
            && identity.expires_at > now_secs()
        {
            metrics::counter!("gateway_token_cache_total", "result" => "hit").increment(1);
            return Ok(identity);
        }
        metrics::counter!("gateway_token_cache_total", "result" => "miss").increment(1);
        let identity = self.verifier.verify(token).await?;
        self.cache.insert(key, identity.clone());
        Ok(identity)
    }

    /// Verifies without the cache (benchmarks compare the two).
    pub async fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        self.verifier.verify(token).await
    }

    /// Tokens currently remembered.
    pub fn cached(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_kit::auth::Role;
    use storefront_kit::auth::testing::TestIssuer;

    #[tokio::test]
    async fn a_repeated_token_is_served_from_the_cache_and_bad_ones_are_not_cached() {
        let issuer = TestIssuer::new();
        let tokens = Tokens::new(issuer.verifier(), 10);
        let token = issuer.token("u-1", &[Role::Customer]);
        let first = tokens.verify(&token).await.expect("valid");
        let second = tokens.verify(&token).await.expect("cached");
        assert_eq!(first, second);
        assert_eq!(tokens.cached(), 1);
        assert!(tokens.verify("not-a-token").await.is_err());
        let stranger = TestIssuer::new().token("u-2", &[Role::Admin]);
        assert!(tokens.verify(&stranger).await.is_err());
        assert_eq!(tokens.cached(), 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let issuer = TestIssuer::new();
        let tokens = Tokens::new(issuer.verifier(), 5);
        for i in 0..50 {
            let t = issuer.token(&format!("u-{i}"), &[Role::Customer]);
            tokens.verify(&t).await.expect("valid");
        }
        assert!(tokens.cached() <= 5, "{}", tokens.cached());
    }
}
