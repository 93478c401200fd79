//! JWT access tokens: issuing (the auth service, and tests with real keys) and verifying (every
//! service and the gateway). Tokens are EdDSA (Ed25519) signed, carry `iss`, `aud`, `sub`, `exp`,
//! `nbf`, `iat`, `jti` and `roles`, and name their key with `kid`; verifiers take public keys
//! from a JWKS and refresh it when they meet an unknown `kid`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use http::request::Parts;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moka::Expiry;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;
use utoipa::ToSchema;

use crate::context::Credentials;
use crate::problem::ApiError;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;
/// A JWKS is fetched again for an unknown `kid` at most this often.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);

/// Verified tokens a [`Verifier`] remembers by default (see [`Verifier::with_token_cache`]).
pub const DEFAULT_TOKEN_CACHE: u64 = 10_000;

/// A verified token is remembered by its text, hashed with aHash (a keyed hash, seeded per
/// process). Keyed by its SHA-256, with the cache counters looked up on every call, a cached
/// check took 451 ns; now 241 ns (bench/gateway, `tokens/verify_cached`). Only tokens the
/// issuer signed get there, so their size is the issuer's.
type TokenKey = Box<str>;
type TokenHasher = ahash::RandomState;
/// A refused token is remembered by its SHA-256: anyone can send one, of any length, and a
/// full cache of long ones must stay small.
type RefusedKey = [u8; 32];

/// A remembered token lives until its `exp`.
struct UntilExp;

impl Expiry<TokenKey, Arc<Identity>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<Identity>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.expires_at.saturating_sub(now_secs()),
        ))
    }
}

/// How long a refused token is remembered as refused.
pub const REFUSED_TOKEN_TTL: Duration = Duration::from_secs(60);

/// Refused tokens, remembered for [`REFUSED_TOKEN_TTL`] when the refusal cannot change: a bad
/// signature, a wrong issuer or audience, an expired or malformed token. A client that keeps
/// sending one then costs a hash and a lookup, not a signature check. A token that is not
/// valid *yet* (`nbf`), names an unknown key (a rotation may publish it) or met an unreachable
/// JWKS is never remembered.
fn refused_cache(capacity: u64) -> Option<Cache<RefusedKey, AuthError>> {
    (capacity > 0).then(|| {
        Cache::builder()
            .max_capacity(capacity)
            .time_to_live(REFUSED_TOKEN_TTL)
            .build()
    })
}

/// Identities are shared: a hit hands out a pointer, not three new strings.
fn token_cache(capacity: u64) -> Option<Cache<TokenKey, Arc<Identity>, TokenHasher>> {
    (capacity > 0).then(|| {
        Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilExp)
            .build_with_hasher(TokenHasher::new())
    })
}

/// Verified tokens each thread keeps besides the shared cache, per verifier and generation
/// (see [`RecentTokens`]); fewer in tests, which fill generations (a token costs them a
/// signature and its check).
const RECENT_PER_THREAD: usize = if cfg!(test) { 64 } else { 1024 };

/// A token's entry in [`RecentTokens`]: its whole text (compared on a hit) and this thread's
/// own copy of its identity (a pointer no other thread counts references of).
type RecentToken = (TokenKey, Arc<Identity>);

/// One verifier's tokens in one thread's [`RECENT`], by [`recent_key`], in two generations:
/// tokens go into `current`; when it is full it becomes `previous` (the one before is
/// dropped), and a token found in `previous` moves back into `current`. So the tokens in use
/// stay when more callers come than a generation holds, where emptying a full list dropped
/// them all at once (each then took the shared cache's path again); at most twice
/// [`RECENT_PER_THREAD`] are kept.
#[derive(Default)]
struct RecentTokens {
    current: HashMap<u64, RecentToken, TokenHasher>,
    previous: HashMap<u64, RecentToken, TokenHasher>,
}

impl RecentTokens {
    fn insert(&mut self, key: u64, token: RecentToken) {
        if self.current.len() >= RECENT_PER_THREAD && !self.current.contains_key(&key) {
            // The older generation's table, emptied, takes the new one's entries.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(key, token);
    }

    /// The identity under `key` if `token` is the one kept there and it has not expired.
    fn get(&mut self, key: u64, token: &[u8], now: u64) -> Option<Arc<Identity>> {
        let usable = |(text, identity): &RecentToken| {
            (text.as_bytes() == token && identity.expires_at > now).then(|| identity.clone())
        };
        if let Some(entry) = self.current.get(&key) {
            return usable(entry);
        }
        let identity = usable(self.previous.get(&key)?)?;
        if let Some(entry) = self.previous.remove(&key) {
            self.insert(key, entry);
        }
        Some(identity)
    }
}

thread_local! {
    /// The tokens this thread verified lately, by verifier ([`Verifier::id`]): the shared
    /// cache's entries this thread used. A hit here touches no memory another thread writes
    /// (the shared cache records every read for its eviction policy, from every serving
    /// thread).
    static RECENT: std::cell::RefCell<Vec<(u64, RecentTokens)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// Keys [`recent_key`]'s hash, per thread.
    static RECENT_HASHER: TokenHasher = TokenHasher::new();
}

/// What [`RECENT`] finds a token by: a hash of its last 32 bytes, which are its signature's
/// (random to anyone without the issuer's key), not of the whole token (a few hundred bytes
/// hashed on every request); a token whose key matches another's is told apart by its text.
fn recent_key(token: &[u8]) -> u64 {
    let tail = &token[token.len().saturating_sub(32)..];
    RECENT_HASHER.with(|hasher| hasher.hash_one(tail))
}

/// `token`'s identity if this thread verified it lately for verifier `id` and it has not
/// expired.
fn recent(id: u64, token: &[u8], now: u64) -> Option<Arc<Identity>> {
    RECENT.with_borrow_mut(|recent| {
        let (_, tokens) = recent.iter_mut().find(|(v, _)| *v == id)?;
        tokens.get(recent_key(token), token, now)
    })
}

fn remember_recent(id: u64, token: &str, identity: &Identity) {
    RECENT.with_borrow_mut(|recent| {
        let index = match recent.iter().position(|(v, _)| *v == id) {
            Some(i) => i,
            None => {
                recent.push((id, RecentTokens::default()));
                recent.len() - 1
            }
        };
        recent[index].1.insert(
            recent_key(token.as_bytes()),
            (token.into(), Arc::new(identity.clone())),
        );
    });
}

/// Tells verifiers apart in each thread's [`RECENT`] tokens.
static NEXT_VERIFIER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `auth_token_cache_total{result}`, taken once per verifier (and its clones).
struct CacheCounters {
    hit: metrics::Counter,
    refused: metrics::Counter,
    miss: metrics::Counter,
}

impl CacheCounters {
    fn new() -> Self {
        // The recorder before the handles (one taken without it would count nowhere).
        crate::metrics::handle();
        let counter =
            |result: &'static str| metrics::counter!("auth_token_cache_total", "result" => result);
        Self {
            hit: counter("hit"),
            refused: counter("refused"),
            miss: counter("miss"),
        }
    }
}

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
    Partner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
            Self::Partner => "partner",
        }
    }
}

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub roles: Vec<Role>,
}

/// The verified caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub subject: String,
    pub roles: Vec<Role>,
    /// The token id (`jti`).
    pub token_id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

impl Identity {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller has `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "This needs the {} role.",
                role.as_str()
            )))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token signed with an algorithm we do not accept")]
    Algorithm,
    #[error("token names no key or an unknown key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("cannot fetch the JWKS: {0}")]
    Jwks(String),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Jwks(_) => ApiError::Unavailable("Cannot verify tokens right now.".into()),
            AuthError::Missing => ApiError::Unauthorized("Authentication required.".into()),
            // One message for every rejected token: no oracle for attackers.
            _ => ApiError::Unauthorized("Invalid or expired token.".into()),
        }
    }
}

/// Why a token was refused, and whether the same token would be refused again later.
struct Refusal {
    error: AuthError,
    lasting: bool,
}

impl Refusal {
    fn lasting(error: AuthError) -> Self {
        Self {
            error,
            lasting: true,
        }
    }

    fn passing(error: AuthError) -> Self {
        Self {
            error,
            lasting: false,
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Signs access tokens with one Ed25519 key.
#[derive(Clone)]
pub struct Issuer {
    kid: String,
    issuer: String,
    audience: String,
    signing: SigningKey,
    encoding: EncodingKey,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// A new random key.
    pub fn generate(kid: &str, issuer: &str, audience: &str) -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        Self::from_signing_key(kid, issuer, audience, SigningKey::from_bytes(&seed))
    }

    /// A key from its PKCS#8 PEM (a Kubernetes Secret, a file written on first start).
    pub fn from_pkcs8_pem(
        kid: &str,
        issuer: &str,
        audience: &str,
        pem: &str,
    ) -> Result<Self, AuthError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Self::from_signing_key(kid, issuer, audience, key))
    }

    fn from_signing_key(kid: &str, issuer: &str, audience: &str, signing: SigningKey) -> Self {
        let der = signing
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        Self {
            kid: kid.to_string(),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            encoding: EncodingKey::from_ed_der(&der),
            signing,
        }
    }

    /// The private key as PKCS#8 PEM, to store it.
    pub fn to_pkcs8_pem(&self) -> Result<String, AuthError> {
        self.signing
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK for `/.well-known/jwks.json`.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_id: Some(self.kid.clone()),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(self.signing.verifying_key().to_bytes()),
            }),
        }
    }

    /// Claims for `subject` valid for `ttl` from now.
    pub fn claims(&self, subject: &str, roles: &[Role], ttl: Duration) -> Claims {
        let now = now_secs();
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_string(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
            jti: uuid::Uuid::now_v7().to_string(),
            roles: roles.to_vec(),
        }
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// A token for `subject` with `roles`, valid for `ttl`.
    pub fn token(&self, subject: &str, roles: &[Role], ttl: Duration) -> Result<String, AuthError> {
        self.sign(&self.claims(subject, roles, ttl))
    }
}

/// Where a verifier finds its keys and what it expects of a token.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifierSettings {
    /// JWKS URL of the auth service.
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        Self {
            jwks_url: "http://127.0.0.1:8081/.well-known/jwks.json".into(),
            issuer: "storefront".into(),
            audience: "storefront".into(),
        }
    }
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Verifies access tokens. A token verified once is remembered (keyed by its text, until
/// its `exp`, bounded), so a caller's repeated requests cost no signature check; each thread
/// also keeps the ones it used lately ([`RECENT_PER_THREAD`] a verifier), read without
/// touching what other threads write. Cloning shares the key cache and the token cache.
#[derive(Clone)]
pub struct Verifier {
    /// This verifier's (and its clones') own, for its entries in each thread's recent tokens.
    id: u64,
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    http: reqwest::Client,
    cache: Arc<RwLock<KeyCache>>,
    tokens: Option<Cache<TokenKey, Arc<Identity>, TokenHasher>>,
    refused: Option<Cache<RefusedKey, AuthError>>,
    counters: Arc<OnceLock<CacheCounters>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier that fetches keys from `settings.jwks_url` when it meets an unknown `kid`.
    pub fn from_settings(settings: &VerifierSettings) -> Self {
        Self::new(
            &settings.issuer,
            &settings.audience,
            Some(settings.jwks_url.clone()),
            JwkSet { keys: Vec::new() },
        )
    }

    /// A verifier with fixed keys (and optionally a JWKS URL for more).
    pub fn new(issuer: &str, audience: &str, jwks_url: Option<String>, keys: JwkSet) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
            .pool_idle_timeout(crate::server::IDLE_CONNECTION_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            id: NEXT_VERIFIER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            jwks_url,
            http,
            cache: Arc::new(RwLock::new(KeyCache {
                keys: decoding_keys(&keys),
                fetched: None,
            })),
            tokens: token_cache(DEFAULT_TOKEN_CACHE),
            refused: refused_cache(DEFAULT_TOKEN_CACHE),
            counters: Arc::default(),
        }
    }

    /// Remembers at most `capacity` verified tokens, and as many refused ones (0: none, every
    /// call checks the signature).
    pub fn with_token_cache(mut self, capacity: u64) -> Self {
        self.tokens = token_cache(capacity);
        self.refused = refused_cache(capacity);
        self
    }

    /// Verifies a bearer token (see [`Verifier::verify_signature`]), from the token cache
    /// when this token was verified before and has not expired. A cached token stays valid
    /// until its `exp` even if its key leaves the JWKS meanwhile (at most the token's
    /// lifetime, about 15 minutes).
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_shared(token.as_bytes())
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// The identity of `token` when this thread verified it lately (with this verifier's
    /// token cache on) and it has not expired: [`Verifier::verify_shared`]'s first look, which
    /// needs no `await`, so a caller can keep the rest of it (a few kilobytes of future) out
    /// of its own state until a token is not found here.
    pub fn verified_lately(&self, token: &[u8]) -> Option<Arc<Identity>> {
        self.tokens.as_ref()?;
        let identity = recent(self.id, token, now_secs())?;
        self.counters
            .get_or_init(CacheCounters::new)
            .hit
            .increment(1);
        Some(identity)
    }

    /// [`Verifier::verify`], the identity shared with the token cache (a cached token costs
    /// no copy of it), of a token given as bytes ([`crate::context::bearer_bytes`]): one this
    /// thread verified lately is found without reading them as text (the gateway checks a
    /// token on every request).
    pub async fn verify_shared(&self, token: &[u8]) -> Result<Arc<Identity>, AuthError> {
        let text = |token| std::str::from_utf8(token).map_err(|_| AuthError::Malformed);
        let Some(tokens) = &self.tokens else {
            return self.verify_signature(text(token)?).await.map(Arc::new);
        };
        if let Some(identity) = self.verified_lately(token) {
            return Ok(identity);
        }
        let counters = self.counters.get_or_init(CacheCounters::new);
        let now = now_secs();
        let token = text(token)?;
        if let Some(identity) = tokens.get(token)
            && identity.expires_at > now
        {
            counters.hit.increment(1);
            remember_recent(self.id, token, &identity);
            return Ok(identity);
        }
        let refused_key: RefusedKey = Sha256::digest(token.as_bytes()).into();
        if let Some(error) = self.refused.as_ref().and_then(|r| r.get(&refused_key)) {
            counters.refused.increment(1);
            return Err(error);
        }
        counters.miss.increment(1);
        match self.check(token).await {
            Ok(identity) => {
                let identity = Arc::new(identity);
                tokens.insert(token.into(), identity.clone());
                remember_recent(self.id, token, &identity);
                Ok(identity)
            }
            Err(Refusal { error, lasting }) => {
                if lasting && let Some(refused) = &self.refused {
                    refused.insert(refused_key, error.clone());
                }
                Err(error)
            }
        }
    }

    /// Refused tokens currently remembered.
    pub fn refused_tokens(&self) -> u64 {
        self.refused.as_ref().map_or(0, |r| {
            r.run_pending_tasks();
            r.entry_count()
        })
    }

    /// Verified tokens remembered now.
    pub fn cached_tokens(&self) -> u64 {
        self.tokens.as_ref().map_or(0, |t| {
            t.run_pending_tasks();
            t.entry_count()
        })
    }

    /// Verifies a bearer token without the token cache: signature by a known key, algorithm
    /// EdDSA only, issuer, audience, expiry and not-before.
    pub async fn verify_signature(&self, token: &str) -> Result<Identity, AuthError> {
        self.check(token).await.map_err(|r| r.error)
    }

    async fn check(&self, token: &str) -> Result<Identity, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Refusal::lasting(AuthError::Malformed))?;
        if header.alg != Algorithm::EdDSA {
            return Err(Refusal::lasting(AuthError::Algorithm));
        }
        let kid = header.kid.ok_or(Refusal::lasting(AuthError::UnknownKey))?;
        // Bind first: a guard held in the `match` scrutinee would deadlock `refresh`.
        let cached = self.cache.read().await.keys.get(&kid).cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                self.refresh().await.map_err(Refusal::passing)?;
                self.cache
                    .read()
                    .await
                    .keys
                    .get(&kid)
                    .cloned()
                    .ok_or(Refusal::passing(AuthError::UnknownKey))?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            let error = AuthError::Invalid(e.to_string());
            match e.kind() {
                // Valid later, perhaps: `nbf` is still ahead.
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => Refusal::passing(error),
                _ => Refusal::lasting(error),
            }
        })?;
        let c = data.claims;
        Ok(Identity {
            subject: c.sub,
            roles: c.roles,
            token_id: c.jti,
            expires_at: c.exp,
        })
    }

    /// Fetches the JWKS again, at most once per [`JWKS_MIN_REFRESH`].
    async fn refresh(&self) -> Result<(), AuthError> {
        let Some(url) = &self.jwks_url else {
            return Err(AuthError::UnknownKey);
        };
        let mut cache = self.cache.write().await;
        if cache
            .fetched
            .is_some_and(|t| t.elapsed() < JWKS_MIN_REFRESH)
        {
            return Ok(());
        }
        let set: JwkSet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::Jwks(e.to_string()))?;
        cache.keys.extend(decoding_keys(&set));
        cache.fetched = Some(Instant::now());
        Ok(())
    }
}

fn decoding_keys(set: &JwkSet) -> HashMap<String, DecodingKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    DecodingKey::from_jwk(jwk).ok().map(|k| (kid, k))
                }
                _ => None,
            }
        })
        .collect()
}

/// The verified caller: 401 problem without a valid bearer token.
impl<S> FromRequestParts<S> for Identity
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(identity.clone());
        }
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .cloned()
            .map(Credentials::new)
            .and_then(|c| c.bearer_token().map(str::to_owned))
            .ok_or(AuthError::Missing)?;
        let identity = Verifier::from_ref(state).verify(&token).await?;
        parts.extensions.insert(identity.clone());
        Ok(identity)
    }
}

/// Real keys for tests: a freshly generated Ed25519 issuer and a verifier that trusts it.
pub mod testing {
    use super::*;

    pub const ISSUER: &str = "storefront";
    pub const AUDIENCE: &str = "storefront";

    #[derive(Clone, Debug)]
    pub struct TestIssuer {
        issuer: Issuer,
    }

    impl Default for TestIssuer {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TestIssuer {
        pub fn new() -> Self {
            Self {
                issuer: Issuer::generate(&uuid::Uuid::new_v4().to_string(), ISSUER, AUDIENCE),
            }
        }

        pub fn issuer(&self) -> &Issuer {
            &self.issuer
        }

        pub fn verifier(&self) -> Verifier {
            Verifier::new(
                ISSUER,
                AUDIENCE,
                None,
                JwkSet {
                    keys: vec![self.issuer.jwk()],
                },
            )
        }

        /// A valid 15-minute token.
        pub fn token(&self, subject: &str, roles: &[Role]) -> String {
            self.issuer
                .token(subject, roles, Duration::from_secs(900))
                .expect("sign test token")
        }
    }

    /// Tokens every verifier that trusts `i`'s key must refuse (401), each with its name: alg
    /// none, HS256 signed with the public key, wrong iss, wrong aud, expired, future nbf,
    /// unknown kid, tampered payload, garbage. Used by the kit's, the gateway's and the
    /// services' tests alike.
    pub fn negative_corpus(i: &Issuer) -> Vec<(&'static str, String)> {
        let now = now_secs();
        let b64 =
            |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
        let good = i
            .token("user-a", &[Role::Customer], Duration::from_secs(600))
            .expect("sign");
        let parts: Vec<&str> = good.split('.').collect();
        let mut cases = Vec::new();
        let none = b64(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": i.kid()}));
        cases.push(("alg none", format!("{none}.{}.", parts[1])));
        let public = match &i.jwk().algorithm {
            AlgorithmParameters::OctetKeyPair(p) => URL_SAFE_NO_PAD.decode(&p.x).expect("x"),
            _ => Vec::new(),
        };
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(i.kid().to_string());
        let claims = i.claims("user-a", &[Role::Admin], Duration::from_secs(60));
        cases.push((
            "HS256 signed with the public key",
            jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public)).expect("hs"),
        ));
        let mut c = i.claims("user-a", &[Role::Customer], Duration::from_secs(60));
        c.iss = "evil".into();
        cases.push(("wrong iss", i.sign(&c).expect("sign")));
        let mut c = i.claims("user-a", &[Role::Customer], Duration::from_secs(60));
        c.aud = "another-service".into();
        cases.push(("wrong aud", i.sign(&c).expect("sign")));
        let mut c = i.claims("user-a", &[Role::Customer], Duration::from_secs(60));
        c.exp = now - 120;
        c.nbf = now - 600;
        c.iat = now - 600;
        cases.push(("expired", i.sign(&c).expect("sign")));
        let mut c = i.claims("user-a", &[Role::Customer], Duration::from_secs(600));
        c.nbf = now + 300;
        cases.push(("future nbf", i.sign(&c).expect("sign")));
        cases.push((
            "unknown kid",
            TestIssuer::new().token("user-a", &[Role::Admin]),
        ));
        let escalated =
            b64(
                &serde_json::to_value(i.claims("user-a", &[Role::Admin], Duration::from_secs(60)))
                    .expect("claims"),
            );
        cases.push((
            "tampered payload",
            format!("{}.{escalated}.{}", parts[0], parts[2]),
        ));
        cases.push(("garbage", "not-a-token".into()));
        cases.push(("garbage with dots", "not.a.token".into()));
        cases
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestIssuer;
    use super::*;

    #[tokio::test]
    async fn a_verified_token_is_remembered_and_refused_ones_are_not() {
        let t = TestIssuer::new();
        let verifier = t.verifier();
        let token = t.token("user-1", &[Role::Customer]);
        let first = verifier.verify(&token).await.expect("valid");
        let again = verifier.clone().verify(&token).await.expect("cached");
        assert_eq!(first, again);
        assert_eq!(verifier.cached_tokens(), 1, "clones share the cache");
        assert!(verifier.verify("not-a-token").await.is_err());
        let stranger = TestIssuer::new().token("user-2", &[Role::Admin]);
        assert!(verifier.verify(&stranger).await.is_err());
        assert_eq!(verifier.cached_tokens(), 1);
        // A tampered copy of the cached token is another key: checked, and refused.
        let tampered = format!("{token}x");
        assert!(verifier.verify(&tampered).await.is_err());

        let uncached = t.verifier().with_token_cache(0);
        uncached.verify(&token).await.expect("valid");
        assert_eq!(uncached.cached_tokens(), 0);
    }

    #[tokio::test]
    async fn a_token_one_verifier_took_on_this_thread_is_checked_anew_by_another() {
        let t = TestIssuer::new();
        let token = t.token("user-1", &[Role::Customer]);
        let trusting = t.verifier();
        trusting.verify(&token).await.expect("valid");
        trusting.verify(&token).await.expect("remembered");
        // The same issuer's token, to a verifier of another audience, and to one without the
        // key: each checks it itself (on the same thread, which remembers it for the first).
        let other_audience = Verifier::new(
            testing::ISSUER,
            "another-audience",
            None,
            JwkSet {
                keys: vec![t.issuer().jwk()],
            },
        );
        assert!(matches!(
            other_audience.verify(&token).await,
            Err(AuthError::Invalid(_))
        ));
        let keyless = TestIssuer::new().verifier();
        assert!(keyless.verify(&token).await.is_err());
        // Clones share what was remembered, as they share the cache.
        assert_eq!(
            trusting
                .clone()
                .verify(&token)
                .await
                .expect("valid")
                .subject,
            "user-1"
        );
    }

    #[tokio::test]
    async fn a_token_ending_as_a_remembered_one_ends_is_checked_itself() {
        let t = TestIssuer::new();
        let verifier = t.verifier();
        let token = t.token("user-1", &[Role::Customer]);
        verifier.verify(&token).await.expect("valid");
        // Another payload under the remembered token's signature: found by the same key in
        // this thread's tokens (its last bytes), refused by its text and its signature.
        let (header, rest) = token.split_once('.').expect("three parts");
        let (_, signature) = rest.split_once('.').expect("three parts");
        let claims = URL_SAFE_NO_PAD.encode(
            serde_json::json!({
                "sub": "admin-9", "roles": ["admin"], "iss": testing::ISSUER,
                "aud": testing::AUDIENCE, "exp": now_secs() + 600, "nbf": 0, "iat": 0, "jti": "x",
            })
            .to_string(),
        );
        let forged = format!("{header}.{claims}.{signature}");
        assert_eq!(recent_key(forged.as_bytes()), recent_key(token.as_bytes()));
        assert!(matches!(
            verifier.verify(&forged).await,
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            verifier.verify(&token).await.expect("valid").subject,
            "user-1"
        );
    }

    #[tokio::test]
    async fn a_token_in_use_stays_among_the_recent_ones_when_more_callers_come() {
        let t = TestIssuer::new();
        let verifier = t.verifier();
        let token = |i: usize| t.token(&format!("user-{i}"), &[Role::Customer]);
        let kept = token(0);
        verifier.verify(&kept).await.expect("valid");
        // A generation's worth of other callers, the kept token used now and then: it stays.
        for i in 1..=2 * RECENT_PER_THREAD {
            verifier.verify(&token(i)).await.expect("valid");
            if i % (RECENT_PER_THREAD / 2) == 0 {
                assert!(verifier.verified_lately(kept.as_bytes()).is_some(), "{i}");
            }
        }
        assert!(verifier.verified_lately(kept.as_bytes()).is_some());
        // Unused for two generations, it is gone (and found in the shared cache again).
        let idle = token(0);
        verifier.verify(&idle).await.expect("valid");
        for i in 1..=2 * RECENT_PER_THREAD + 1 {
            verifier.verify(&token(10_000 + i)).await.expect("valid");
        }
        assert!(verifier.verified_lately(idle.as_bytes()).is_none());
        RECENT.with_borrow(|recent| {
            let (_, tokens) = recent
                .iter()
                .find(|(v, _)| *v == verifier.id)
                .expect("this verifier's tokens");
            assert!(tokens.current.len() + tokens.previous.len() <= 2 * RECENT_PER_THREAD);
        });
        assert_eq!(
            verifier.verify(&idle).await.expect("cached").subject,
            "user-0"
        );
    }

    #[tokio::test]
    async fn a_token_is_verified_lately_once_this_thread_verified_it() {
        let t = TestIssuer::new();
        let verifier = t.verifier();
        let token = t.token("user-1", &[Role::Customer]);
        assert!(verifier.verified_lately(token.as_bytes()).is_none());
        let verified = verifier
            .verify_shared(token.as_bytes())
            .await
            .expect("valid");
        let lately = verifier
            .verified_lately(token.as_bytes())
            .expect("remembered");
        assert_eq!(verified, lately);
        assert!(verifier.verified_lately(b"not-a-token").is_none());
        // Another verifier of the same issuer has its own tokens.
        assert!(t.verifier().verified_lately(token.as_bytes()).is_none());
        // Without a token cache nothing is remembered.
        let uncached = t.verifier().with_token_cache(0);
        uncached
            .verify_shared(token.as_bytes())
            .await
            .expect("valid");
        assert!(uncached.verified_lately(token.as_bytes()).is_none());
    }

    #[tokio::test]
    async fn a_valid_token_yields_the_identity() {
        let t = TestIssuer::new();
        let token = t.token("user-1", &[Role::Customer, Role::Admin]);
        let id = t.verifier().verify(&token).await.expect("valid");
        assert_eq!(id.subject, "user-1");
        assert!(id.has(Role::Admin) && id.has(Role::Customer) && !id.has(Role::Partner));
        assert!(id.require(Role::Partner).is_err());
    }

    #[tokio::test]
    async fn the_negative_corpus_is_rejected() {
        let t = TestIssuer::new();
        let v = t.verifier();
        let cases = super::testing::negative_corpus(t.issuer());
        assert!(cases.len() >= 9);
        for (name, token) in cases {
            let err = v.verify(&token).await.expect_err(name);
            assert_eq!(
                ApiError::from(err).status(),
                http::StatusCode::UNAUTHORIZED,
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn lasting_refusals_are_remembered_and_passing_ones_are_not() {
        let t = TestIssuer::new();
        let v = t.verifier();
        for (name, token) in super::testing::negative_corpus(t.issuer()) {
            let before = v.refused_tokens();
            let first = v.verify(&token).await.expect_err(name);
            // Not valid yet, or signed by a key a JWKS refresh may still bring: asked again.
            let passing = matches!(name, "future nbf" | "unknown kid");
            assert_eq!(v.refused_tokens() > before, !passing, "{name}: {first}");
            let again = v.verify(&token).await.expect_err(name);
            assert_eq!(again, first, "{name}: refused the same way");
        }
        assert_eq!(t.verifier().with_token_cache(0).refused_tokens(), 0);
    }

    #[tokio::test]
    async fn keys_round_trip_through_pem() {
        let i = Issuer::generate("k1", "storefront", "storefront");
        let pem = i.to_pkcs8_pem().expect("pem");
        assert!(pem.contains("BEGIN PRIVATE KEY"));
        let back = Issuer::from_pkcs8_pem("k1", "storefront", "storefront", &pem).expect("parse");
        assert_eq!(back.jwk(), i.jwk());
        let printed = format!("{i:?}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_the_jwks_from_the_auth_service() {
        use axum::{Json, Router, routing::get};
        let t = TestIssuer::new();
        let set = JwkSet {
            keys: vec![t.issuer().jwk()],
        };
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let set = set.clone();
                async move { Json(set) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let v = Verifier::from_settings(&VerifierSettings {
            jwks_url: format!("http://{addr}/.well-known/jwks.json"),
            ..VerifierSettings::default()
        });
        let id = v
            .verify(&t.token("u-7", &[Role::Partner]))
            .await
            .expect("fetched key");
        assert!(id.has(Role::Partner));
    }
}
