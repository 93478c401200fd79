//! Domain types of the auth service: they validate on construction and do no I/O.

use storefront_kit::auth::Role;
use storefront_kit::problem::FieldError;

/// Shortest password accepted at sign-up.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (argon2 hashes anything, but unbounded input is a DoS lever).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A normalised (trimmed, lower-case) e-mail address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid =
            || FieldError::new("email", "must be an e-mail address like name@example.com");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.') =>
            {
                Ok(Self(email))
            }
            _ => Err(invalid()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password good enough for a new account.
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 100 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "must be 1 to 100 characters without control characters",
            ));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub created_at: i64,
}

/// Roles as stored: `customer,admin`.
pub fn roles_to_string(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Roles from their stored form; unknown names are dropped.
pub fn roles_from_string(raw: &str) -> Vec<Role> {
    raw.split(',').filter_map(parse_role).collect()
}

pub fn parse_role(raw: &str) -> Option<Role> {
    match raw.trim() {
        "customer" => Some(Role::Customer),
        "admin" => Some(Role::Admin),
        "partner" => Some(Role::Partner),
        _ => None,
    }
}

/// `roles` plus `more`, each once, in a stable order.
pub fn merge_roles(roles: &[Role], more: &[Role]) -> Vec<Role> {
    [Role::Customer, Role::Admin, Role::Partner]
        .into_iter()
        .filter(|r| roles.contains(r) || more.contains(r))
        .collect()
}

/// Growing back-off for failed logins: after `max_failures` failures in a row a key is locked
/// for 2 s, then 4 s, 8 s, ... up to `max_lock_secs`.
#[derive(Clone, Copy, Debug)]
pub struct LockPolicy {
    pub max_failures: u32,
    pub max_lock_secs: u64,
    /// Failures older than this are forgotten.
    pub window_secs: u64,
}

impl LockPolicy {
    /// How long to lock after `failures` failures in a row (`None`: not locked yet).
    pub fn lock_secs(&self, failures: u32) -> Option<u64> {
        if failures < self.max_failures.max(1) {
            return None;
        }
        let n = (failures - self.max_failures.max(1) + 1).min(32);
        Some(2u64.saturating_pow(n).min(self.max_lock_secs.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").expect("valid").as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a b@example.com",
            "a@b@c",
        ] {
            assert_eq!(Email::parse(bad).expect_err(bad).field, "email");
        }
    }

    #[test]
    fn passwords_need_twelve_characters() {
        assert!(NewPassword::parse("elevenchars").is_err());
        assert!(NewPassword::parse("twelve chars").is_ok());
        assert!(NewPassword::parse(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
    }

    #[test]
    fn roles_round_trip() {
        let roles = vec![Role::Customer, Role::Admin];
        assert_eq!(roles_from_string(&roles_to_string(&roles)), roles);
        assert_eq!(
            merge_roles(&[Role::Customer], &[Role::Partner, Role::Customer]),
            vec![Role::Customer, Role::Partner]
        );
    }

    #[test]
    fn locks_grow_and_are_capped() {
        let p = LockPolicy {
            max_failures: 5,
            max_lock_secs: 60,
            window_secs: 900,
        };
        assert_eq!(p.lock_secs(4), None);
        assert_eq!(p.lock_secs(5), Some(2));
        assert_eq!(p.lock_secs(6), Some(4));
        assert_eq!(p.lock_secs(8), Some(16));
        assert_eq!(p.lock_secs(20), Some(60));
        assert_eq!(p.lock_secs(u32::MAX), Some(60));
    }
}
