//! Rate limiting: the first rule matching a request (else the defaults) counts it in its bucket
//! (per user, per client IP, or global) in the configured store. A refused request gets 429
//! problem+json with `Retry-After`, `RateLimit` and `RateLimit-Policy`; a store that cannot
//! answer within `storeTimeoutMs` admits the request (`failureMode: open`) or refuses it with
//! 503 (`closed`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, header};
use storefront_kit::auth::Identity;
use storefront_kit::problem::ApiError;

use crate::domain::client_ip::push_ip;
use crate::domain::config::{FailureMode, LimitKey};
use crate::domain::gcra::{self, Decision, Gcra};
use crate::domain::routing::prefix_matches;
use crate::ports::{Checked, LimitStore};

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// One compiled rule.
pub struct Rule {
    pub name: String,
    pub path_prefix: Option<String>,
    pub upstream: Option<String>,
    pub key: LimitKey,
    pub gcra: Gcra,
    pub store: Arc<dyn LimitStore>,
    pub memory: bool,
    /// The start of its responses' [`RateLimitFields`]: the `RateLimit-Policy` line, and the
    /// `RateLimit` line up to its figures ([`gcra::ratelimit_start`]); where each value is in
    /// it.
    lines_start: String,
    policy_at: (usize, usize),
    ratelimit_at: usize,
}

impl Rule {
    pub fn new(
        name: &str,
        path_prefix: Option<String>,
        upstream: Option<String>,
        key: LimitKey,
        gcra: Gcra,
        store: Arc<dyn LimitStore>,
        memory: bool,
    ) -> Self {
        let header_text = |text: String, otherwise: &str| {
            if HeaderValue::from_str(&text).is_ok() {
                text
            } else {
                otherwise.to_owned()
            }
        };
        let policy = header_text(gcra::policy_header(name, &gcra), "\"rule\"");
        let ratelimit_start = header_text(gcra::ratelimit_start(name), "\"rule\";r=");
        let mut lines_start = format!("{RATELIMIT_POLICY}: ");
        let policy_at = (lines_start.len(), lines_start.len() + policy.len());
        lines_start.push_str(&policy);
        lines_start.push_str(&format!("\r\n{RATELIMIT}: "));
        let ratelimit_at = lines_start.len();
        lines_start.push_str(&ratelimit_start);
        Self {
            name: name.to_string(),
            path_prefix,
            upstream,
            key,
            gcra,
            store,
            memory,
            lines_start,
            policy_at,
            ratelimit_at,
        }
    }

    fn matches(&self, path: &str, service: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|p| prefix_matches(p, path))
            && self.upstream.as_deref().is_none_or(|u| u == service)
    }

    /// The bucket of a request: `<rule>:u:<sub>`, `<rule>:ip:<addr>` or `<rule>:global`.
    /// A per-user rule counts anonymous requests per client IP.
    pub fn bucket(&self, client_ip: IpAddr, identity: Option<&Identity>) -> String {
        // Pushed, not `format!`ed: one of these is made for every limited request.
        let mut bucket = String::with_capacity(self.name.len() + 48);
        bucket.push_str(&self.name);
        match (self.key, identity) {
            (LimitKey::User, Some(id)) => {
                bucket.push_str(":u:");
                bucket.push_str(&id.subject);
            }
            (LimitKey::User | LimitKey::Ip, _) => {
                bucket.push_str(":ip:");
                push_ip(&mut bucket, client_ip);
            }
            (LimitKey::Global, _) => bucket.push_str(":global"),
        }
        bucket
    }
}

/// The compiled rate-limit section.
pub struct Limits {
    pub enabled: bool,
    pub failure_mode: FailureMode,
    pub store_timeout: Duration,
    pub rules: Vec<Rule>,
    pub default: Option<Rule>,
}

impl Limits {
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            failure_mode: FailureMode::Open,
            store_timeout: Duration::from_millis(100),
            rules: Vec::new(),
            default: None,
        }
    }

    /// The rule a request falls under: the first matching rule, else the defaults.
    pub fn rule_for(&self, path: &str, service: &str) -> Option<&Rule> {
        if !self.enabled {
            return None;
        }
        self.rules
            .iter()
            .find(|r| r.matches(path, service))
            .or(self.default.as_ref())
    }

    /// Every rule, for maintenance.
    pub fn all(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().chain(self.default.iter())
    }
}

/// What to do with a request.
pub enum Outcome {
    /// Forward it, adding these fields to the response (none when the store failed open).
    Admit(Option<RateLimitFields>),
    /// Answer this instead.
    Refuse(Response),
}

/// The `RateLimit-Policy` and `RateLimit` fields of a response under a rule, as head lines
/// made when the request is admitted (copied from the rule rather than shared with it: the
/// serving threads would count references to the same memory on every request):
/// written as they are where the response is (the fast path's, [`RateLimitFields::write`]), or
/// made header values (hyper's).
pub struct RateLimitFields {
    /// `ratelimit-policy: <value>\r\nratelimit: <value>\r\n`.
    lines: Vec<u8>,
    /// Where each value starts and ends in `lines`.
    ratelimit: (usize, usize),
    policy: (usize, usize),
}

impl RateLimitFields {
    fn new(rule: &Rule, decision: Decision) -> Self {
        let mut lines = Vec::with_capacity(rule.lines_start.len() + 40);
        lines.extend_from_slice(rule.lines_start.as_bytes());
        gcra::push_ratelimit_figures(&mut lines, &decision);
        let end = lines.len();
        lines.extend_from_slice(b"\r\n");
        Self {
            lines,
            ratelimit: (rule.ratelimit_at, end),
            policy: rule.policy_at,
        }
    }

    /// Both fields as head lines, each ending in CRLF.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.lines);
    }

    /// Both fields set in `headers`.
    pub fn insert_into(self, headers: &mut http::HeaderMap) {
        let value = |(start, end): (usize, usize)| HeaderValue::from_bytes(&self.lines[start..end]);
        if let Ok(policy) = value(self.policy) {
            headers.insert(RATELIMIT_POLICY, policy);
        }
        if let Ok(ratelimit) = value(self.ratelimit) {
            headers.insert(RATELIMIT, ratelimit);
        }
    }
}

/// Second of the last "store unavailable" warning: with Redis down every request fails over,
/// and one line a second says so as well as a thousand would.
static LAST_STORE_WARNING: AtomicU64 = AtomicU64::new(0);

fn warn_now() -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    LAST_STORE_WARNING.swap(now, Ordering::Relaxed) != now
}

/// Counts the request against `rule` and decides.
pub async fn check(
    limits: &Limits,
    rule: &Rule,
    client_ip: IpAddr,
    identity: Option<&Identity>,
) -> Outcome {
    let bucket = rule.bucket(client_ip, identity);
    // The in-memory store answers at once; only a remote one needs a deadline.
    let result = match rule.store.check(bucket, rule.gcra) {
        Checked::Now(result) => result,
        Checked::Later(decided) => {
            match tokio::time::timeout(limits.store_timeout, decided).await {
                Ok(r) => r,
                Err(_) => Err(crate::ports::StoreError(format!(
                    "no answer within {:?}",
                    limits.store_timeout
                ))),
            }
        }
    };
    match result {
        Ok(decision) if decision.allowed => {
            Outcome::Admit(Some(RateLimitFields::new(rule, decision)))
        }
        Ok(decision) => {
            metrics::counter!("gateway_rate_limited_total", "rule" => rule.name.clone())
                .increment(1);
            tracing::info!(rule = %rule.name, key = ?rule.key, client_ip = %client_ip, "request rate limited");
            let retry_after = gcra::retry_after_secs(&decision);
            let mut response = ApiError::TooManyRequests {
                retry_after_secs: retry_after,
            }
            .into_response();
            RateLimitFields::new(rule, decision).insert_into(response.headers_mut());
            Outcome::Refuse(response)
        }
        Err(e) => {
            metrics::counter!("gateway_rate_limit_store_errors_total", "rule" => rule.name.clone())
                .increment(1);
            match limits.failure_mode {
                FailureMode::Open => {
                    if warn_now() {
                        tracing::warn!(rule = %rule.name, error = %e, "rate-limit store unavailable; admitting (failureMode: open)");
                    }
                    Outcome::Admit(None)
                }
                FailureMode::Closed => {
                    if warn_now() {
                        tracing::warn!(rule = %rule.name, error = %e, "rate-limit store unavailable; refusing (failureMode: closed)");
                    }
                    let mut response = ApiError::Unavailable(
                        "Rate limiting is unavailable; try again shortly.".into(),
                    )
                    .into_response();
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    Outcome::Refuse(response)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::GovernorStore;

    fn rule(name: &str, prefix: Option<&str>, upstream: Option<&str>, key: LimitKey) -> Rule {
        let gcra = Gcra {
            interval_us: 1_000_000,
            burst: 1,
        };
        Rule::new(
            name,
            prefix.map(str::to_owned),
            upstream.map(str::to_owned),
            key,
            gcra,
            Arc::new(GovernorStore::new(gcra)),
            true,
        )
    }

    #[test]
    fn the_first_matching_rule_wins_then_the_defaults() {
        let limits = Limits {
            enabled: true,
            rules: vec![
                rule("login", Some("/api/auth/login"), None, LimitKey::Ip),
                rule("orders", None, Some("order"), LimitKey::User),
                rule("both", Some("/api/x"), Some("x"), LimitKey::Ip),
            ],
            default: Some(rule("default", None, None, LimitKey::Ip)),
            ..Limits::disabled()
        };
        let name = |p: &str, s: &str| limits.rule_for(p, s).map(|r| r.name.as_str());
        assert_eq!(name("/api/auth/login", "auth"), Some("login"));
        assert_eq!(name("/api/orders/1", "order"), Some("orders"));
        assert_eq!(name("/api/x/1", "y"), Some("default"));
        assert_eq!(name("/api/x/1", "x"), Some("both"));
        let off = Limits {
            enabled: false,
            ..limits
        };
        assert!(off.rule_for("/api/auth/login", "auth").is_none());
    }

    #[test]
    fn rate_limit_fields_are_the_same_as_lines_and_as_header_values() {
        let gcra = Gcra {
            interval_us: 100_000,
            burst: 5,
        };
        let rule = Rule::new(
            "login",
            None,
            None,
            LimitKey::Ip,
            gcra,
            Arc::new(GovernorStore::new(gcra)),
            true,
        );
        let (decision, _) = gcra.decide(None, 0);
        let fields = RateLimitFields::new(&rule, decision);
        let mut lines = Vec::new();
        fields.write(&mut lines);
        let mut headers = http::HeaderMap::new();
        fields.insert_into(&mut headers);
        let policy = gcra::policy_header("login", &gcra);
        let ratelimit = gcra::ratelimit_header("login", &decision);
        assert_eq!(
            String::from_utf8(lines).expect("text"),
            format!("ratelimit-policy: {policy}\r\nratelimit: {ratelimit}\r\n")
        );
        assert_eq!(headers[RATELIMIT_POLICY], policy.as_str());
        assert_eq!(headers[RATELIMIT], ratelimit.as_str());
    }

    #[test]
    fn buckets_are_per_user_per_ip_or_global() {
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        let id = Identity {
            subject: "u-1".into(),
            roles: vec![],
            token_id: "j".into(),
            expires_at: 0,
        };
        let user = rule("r", None, None, LimitKey::User);
        assert_eq!(user.bucket(ip, Some(&id)), "r:u:u-1");
        assert_eq!(user.bucket(ip, None), "r:ip:198.51.100.7");
        assert_eq!(
            rule("r", None, None, LimitKey::Ip).bucket(ip, Some(&id)),
            "r:ip:198.51.100.7"
        );
        assert_eq!(
            rule("r", None, None, LimitKey::Global).bucket(ip, None),
            "r:global"
        );
    }
}
