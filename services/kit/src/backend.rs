//! Backend selection by URL scheme.
//!
//! Every backend a service uses is named by a URL, and its scheme picks the adapter: the real
//! engine that Kubernetes runs, or the embedded twin that `storefront up` runs on one machine.
//! An unknown scheme or a malformed URL is a startup error that names the accepted schemes.
//! Passwords in URLs never appear in `Debug` or `Display`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use url::Url;

/// What a backend is for; each kind accepts its own schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Relational store: `mysql://` (MariaDB/MySQL) or `sqlite://`.
    Sql,
    /// Cache: `redis://` or `memory://`.
    Cache,
    /// Event bus: `kafka://host:port[,host:port]` or `memory://` (in-process).
    Events,
    /// Search index: `http(s)://` (Elasticsearch API) or `tantivy://path`.
    SearchIndex,
    /// Document store for the catalog: `mongodb://` or `sqlite://`.
    Documents,
    /// Outgoing mail: `smtp(s)://` or `file://path` (a mailbox of .eml files).
    Mail,
}

impl BackendKind {
    /// The schemes this kind accepts, real engine first.
    pub fn accepted(self) -> &'static [&'static str] {
        match self {
            Self::Sql => &["mysql", "sqlite"],
            Self::Cache => &["redis", "memory"],
            Self::Events => &["kafka", "memory"],
            Self::SearchIndex => &["http", "https", "tantivy"],
            Self::Documents => &["mongodb", "sqlite"],
            Self::Mail => &["smtp", "smtps", "file"],
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Sql => "database",
            Self::Cache => "cache",
            Self::Events => "event bus",
            Self::SearchIndex => "search index",
            Self::Documents => "document store",
            Self::Mail => "mail",
        }
    }

    fn accepted_list(self) -> String {
        self.accepted()
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendUrlError {
    #[error("{kind} URL `{shown}` has unknown scheme `{scheme}`; accepted: {accepted}")]
    UnknownScheme {
        kind: &'static str,
        shown: String,
        scheme: String,
        accepted: String,
    },
    #[error("{kind} URL `{shown}` is malformed ({reason}); accepted: {accepted}")]
    Malformed {
        kind: &'static str,
        shown: String,
        reason: String,
        accepted: String,
    },
}

/// Where a backend lives, as far as its scheme tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A network server: one or more `host:port` pairs.
    Network(Vec<(String, u16)>),
    /// A path on local disk (SQLite file, Tantivy directory, mailbox directory).
    Path(PathBuf),
    /// In this process's memory.
    InProcess,
}

/// A validated backend URL of one [`BackendKind`].
#[derive(Clone, PartialEq, Eq)]
pub struct BackendUrl {
    kind: BackendKind,
    scheme: String,
    raw: String,
    location: Location,
}

impl BackendUrl {
    pub fn parse(kind: BackendKind, raw: &str) -> Result<Self, BackendUrlError> {
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once(':') else {
            return Err(malformed(kind, raw, "no scheme"));
        };
        let scheme = scheme.to_ascii_lowercase();
        if !kind.accepted().contains(&scheme.as_str()) {
            return Err(BackendUrlError::UnknownScheme {
                kind: kind.describe(),
                shown: redact(raw),
                scheme,
                accepted: kind.accepted_list(),
            });
        }
        let location = match scheme.as_str() {
            "memory" => Location::InProcess,
            "sqlite" | "tantivy" | "file" => {
                let path = rest.trim_start_matches("//");
                let path = path.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(malformed(kind, raw, "a path is required"));
                }
                Location::Path(PathBuf::from(path))
            }
            "kafka" => {
                let hosts = rest
                    .strip_prefix("//")
                    .ok_or_else(|| malformed(kind, raw, "expected kafka://host:port"))?;
                let hosts = hosts.trim_end_matches('/');
                let mut out = Vec::new();
                for part in hosts.split(',') {
                    out.push(host_port(part, 9092).ok_or_else(|| {
                        malformed(kind, raw, &format!("bad broker address `{part}`"))
                    })?);
                }
                Location::Network(out)
            }
            _ => {
                let url = Url::parse(raw).map_err(|e| malformed(kind, raw, &e.to_string()))?;
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| malformed(kind, raw, "a host is required"))?;
                let port = url
                    .port_or_known_default()
                    .unwrap_or_else(|| default_port(&scheme));
                Location::Network(vec![(host.trim_matches(['[', ']']).to_string(), port)])
            }
        };
        Ok(Self {
            kind,
            scheme,
            raw: raw.to_string(),
            location,
        })
    }

    /// An embedded backend on a file or directory path, e.g. `sqlite://data/cart.db`.
    pub fn embedded_path(kind: BackendKind, scheme: &str, path: &Path) -> Self {
        Self {
            kind,
            scheme: scheme.to_string(),
            raw: format!("{scheme}://{}", path.display()),
            location: Location::Path(path.to_path_buf()),
        }
    }

    /// The in-process backend `memory://`.
    pub fn in_memory(kind: BackendKind) -> Self {
        Self {
            kind,
            scheme: "memory".into(),
            raw: "memory://".into(),
            location: Location::InProcess,
        }
    }

    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// True for the embedded twins (SQLite, in-process, Tantivy, file mailbox).
    pub fn is_embedded(&self) -> bool {
        !matches!(self.location, Location::Network(_))
    }

    /// The full URL including any password. Only adapters connecting to the backend call this.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL with any password replaced, safe to log and to show in `/readyz`.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackendUrl({})", self.redacted())
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn malformed(kind: BackendKind, raw: &str, reason: &str) -> BackendUrlError {
    BackendUrlError::Malformed {
        kind: kind.describe(),
        shown: redact(raw),
        reason: reason.to_string(),
        accepted: kind.accepted_list(),
    }
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "mysql" => 3306,
        "redis" => 6379,
        "mongodb" => 27017,
        "smtp" => 25,
        "smtps" => 465,
        "https" => 443,
        _ => 80,
    }
}

fn host_port(s: &str, default: u16) -> Option<(String, u16)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_string(), default)),
    }
}

/// Replaces the password in `user:password@host` with `***`.
fn redact(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => raw.to_string(),
    }
}

macro_rules! typed_backend_url {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(BackendUrl);

        impl $name {
            pub const KIND: BackendKind = $kind;

            pub fn parse(raw: &str) -> Result<Self, BackendUrlError> {
                BackendUrl::parse(Self::KIND, raw).map(Self)
            }

            pub fn embedded_path(scheme: &str, path: &Path) -> Self {
                Self(BackendUrl::embedded_path(Self::KIND, scheme, path))
            }

            pub fn in_memory() -> Self {
                Self(BackendUrl::in_memory(Self::KIND))
            }
        }

        impl std::ops::Deref for $name {
            type Target = BackendUrl;
            fn deref(&self) -> &BackendUrl {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_backend_url!(
    /// `mysql://` or `sqlite://`.
    SqlUrl,
    BackendKind::Sql
);
typed_backend_url!(
    /// `redis://` or `memory://`.
    CacheUrl,
    BackendKind::Cache
);
typed_backend_url!(
    /// `kafka://` or `memory://`.
    EventsUrl,
    BackendKind::Events
);
typed_backend_url!(
    /// `http(s)://` (Elasticsearch API) or `tantivy://`.
    SearchIndexUrl,
    BackendKind::SearchIndex
);
typed_backend_url!(
    /// `mongodb://` or `sqlite://`.
    DocumentsUrl,
    BackendKind::Documents
);
typed_backend_url!(
    /// `smtp(s)://` or `file://`.
    MailUrl,
    BackendKind::Mail
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_accepts_its_schemes() {
        let ok = [
            (BackendKind::Sql, "mysql://user:pw@db:3306/cart"),
            (BackendKind::Sql, "sqlite://data/cart.db"),
            (BackendKind::Sql, "sqlite:data/cart.db?mode=rwc"),
            (BackendKind::Cache, "redis://127.0.0.1:6379/0"),
            (BackendKind::Cache, "memory://"),
            (BackendKind::Events, "kafka://k1:9092,k2:9093"),
            (BackendKind::Events, "memory://"),
            (BackendKind::SearchIndex, "http://127.0.0.1:9200"),
            (BackendKind::SearchIndex, "https://search.example:443"),
            (BackendKind::SearchIndex, "tantivy://data/index"),
            (BackendKind::Documents, "mongodb://127.0.0.1:27017/catalog"),
            (BackendKind::Documents, "sqlite://data/catalog.db"),
            (BackendKind::Mail, "smtp://mail:1025"),
            (BackendKind::Mail, "smtps://mail"),
            (BackendKind::Mail, "file://data/mailbox"),
        ];
        for (kind, raw) in ok {
            let url = BackendUrl::parse(kind, raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(url.kind(), kind);
        }
    }

    #[test]
    fn locations_and_embedded_flag_follow_the_scheme() {
        let kafka = BackendUrl::parse(BackendKind::Events, "kafka://k1:9092,k2").expect("kafka");
        assert_eq!(
            kafka.location(),
            &Location::Network(vec![("k1".into(), 9092), ("k2".into(), 9092)])
        );
        assert!(!kafka.is_embedded());
        let sqlite = BackendUrl::parse(BackendKind::Sql, "sqlite://data/cart.db").expect("sqlite");
        assert_eq!(sqlite.location(), &Location::Path("data/cart.db".into()));
        assert!(sqlite.is_embedded());
        let mysql = BackendUrl::parse(BackendKind::Sql, "mysql://db/cart").expect("mysql");
        assert_eq!(
            mysql.location(),
            &Location::Network(vec![("db".into(), 3306)])
        );
    }

    #[test]
    fn unknown_scheme_names_the_accepted_ones() {
        let err = BackendUrl::parse(BackendKind::Sql, "postgres://db/cart").expect_err("reject");
        let msg = err.to_string();
        assert!(msg.contains("unknown scheme `postgres`"), "{msg}");
        assert!(msg.contains("mysql://, sqlite://"), "{msg}");
        let err = BackendUrl::parse(BackendKind::Cache, "memcached://x").expect_err("reject");
        assert!(err.to_string().contains("redis://, memory://"));
    }

    #[test]
    fn malformed_urls_are_rejected_with_a_reason() {
        for (kind, raw) in [
            (BackendKind::Sql, "just-a-word"),
            (BackendKind::Sql, "sqlite://"),
            (BackendKind::Events, "kafka://k1:notaport"),
            (BackendKind::Events, "kafka:k1"),
            (BackendKind::Cache, "redis://"),
            (BackendKind::Mail, "smtp://:25"),
        ] {
            let err = BackendUrl::parse(kind, raw).expect_err(raw);
            assert!(
                matches!(err, BackendUrlError::Malformed { .. }),
                "{raw}: {err}"
            );
            assert!(err.to_string().contains("accepted:"), "{err}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let url = SqlUrl::parse("mysql://shop:s3cret@db:3306/cart").expect("parse");
        for shown in [format!("{url}"), format!("{url:?}"), url.redacted()] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("shop:***@db:3306/cart"), "{shown}");
        }
        assert!(url.expose().contains("s3cret"));
        let err = SqlUrl::parse("postgres://shop:s3cret@db").expect_err("reject");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn typed_urls_deserialize_and_report_errors() {
        #[derive(Deserialize)]
        struct S {
            cache: CacheUrl,
        }
        let s: S = serde_json::from_str(r#"{"cache":"redis://r:6379"}"#).expect("parse");
        assert_eq!(s.cache.scheme(), "redis");
        let err = serde_json::from_str::<S>(r#"{"cache":"mysql://r"}"#)
            .err()
            .expect("reject");
        assert!(err.to_string().contains("redis://, memory://"), "{err}");
    }
}
