//! Token verification at the edge: kit's [`Verifier`] (JWKS from the auth service, EdDSA only,
//! `iss`, `aud`, `exp`, `nbf`) with its cache of verified tokens sized by the gateway's
//! `token_cache_capacity`, so a token seen before costs no signature check.

use std::sync::Arc;

use storefront_kit::auth::{AuthError, Identity, Verifier};

/// Verified tokens, cached.
#[derive(Clone)]
pub struct Tokens {
    verifier: Verifier,
}

impl Tokens {
    pub fn new(verifier: Verifier, capacity: u64) -> Self {
        Self {
            verifier: verifier.with_token_cache(capacity.max(1)),
        }
    }

    /// The identity of a bearer token: from the cache when this token was verified before and
    /// has not expired, else verified (and remembered).
    pub async fn verify(&self, token: &[u8]) -> Result<Arc<Identity>, AuthError> {
        match self.verifier.verified_lately(token) {
            Some(identity) => Ok(identity),
            // Boxed: the whole check's state (a JWKS fetch on an unknown key) is over 1.5 KiB,
            // and would be part of every request's future, moved and allocated with it.
            None => Box::pin(self.verifier.verify_shared(token)).await,
        }
    }

    /// Verifies without the cache (benchmarks compare the two).
    pub async fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        self.verifier.verify_signature(token).await
    }

    /// Tokens currently remembered.
    pub fn cached(&self) -> u64 {
        self.verifier.cached_tokens()
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
        let first = tokens.verify(token.as_bytes()).await.expect("valid");
        let second = tokens.verify(token.as_bytes()).await.expect("cached");
        assert_eq!(first, second);
        assert_eq!(tokens.cached(), 1);
        assert!(tokens.verify(b"not-a-token").await.is_err());
        let stranger = TestIssuer::new().token("u-2", &[Role::Admin]);
        assert!(tokens.verify(stranger.as_bytes()).await.is_err());
        assert_eq!(tokens.cached(), 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let issuer = TestIssuer::new();
        let tokens = Tokens::new(issuer.verifier(), 5);
        for i in 0..50 {
            let t = issuer.token(&format!("u-{i}"), &[Role::Customer]);
            tokens.verify(t.as_bytes()).await.expect("valid");
        }
        assert!(tokens.cached() <= 5, "{}", tokens.cached());
    }
}
