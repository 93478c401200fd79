//! Route matching: the longest path prefix that matches at a `/` boundary wins, and `rewrite`
//! replaces the prefix in the forwarded path.

/// Whether `path` lies under `prefix`: equal, or continuing with `/` after it.
/// `/api/cart` matches `/api/cart`, `/api/cart/` and `/api/cart/items`, never `/api/cartography`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Index of the route whose prefix is the longest match for `path`.
pub fn longest_match<'a, I>(prefixes: I, path: &str) -> Option<usize>
where
    I: IntoIterator<Item = &'a str>,
{
    prefixes
        .into_iter()
        .enumerate()
        .filter(|(_, p)| prefix_matches(p, path))
        .max_by_key(|(_, p)| p.trim_end_matches('/').len())
        .map(|(i, _)| i)
}

/// The forwarded path: `rewrite` in place of `prefix` (no rewrite keeps the path), with one
/// `/` between the parts and never an empty path.
pub fn rewrite_path(prefix: &str, rewrite: Option<&str>, path: &str) -> String {
    let Some(rewrite) = rewrite else {
        return path.to_string();
    };
    let rest = path
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or(path);
    let base = rewrite.trim_end_matches('/');
    // Pushed, not `format!`ed: every proxied request on a rewritten route makes one.
    let mut out = String::with_capacity(base.len() + rest.len() + 1);
    out.push_str(base);
    if rest == "/" {
        if !base.is_empty() {
            out.push('/');
        }
    } else {
        out.push_str(rest);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether a path holds a `.` or `..` segment, literally or percent-encoded: such paths could
/// leave the matched prefix once an upstream normalizes them, so the gateway refuses them.
/// Checked on every request, so without allocating.
pub fn has_dot_segments(path: &str) -> bool {
    // Most paths hold no dot, percent sign or backslash: one look at each byte answers those.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return false;
    }
    path.split('/').any(is_dot_segment)
        || path
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%2f"))
        || path.contains('\\')
}

/// `.` or `..`, each dot possibly written `%2e` or `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        assert!(prefix_matches("/api/cart", "/api/cart"));
        assert!(prefix_matches("/api/cart", "/api/cart/"));
        assert!(prefix_matches("/api/cart", "/api/cart/items/1"));
        assert!(prefix_matches("/api/cart/", "/api/cart/items"));
        assert!(!prefix_matches("/api/cart", "/api/cartography"));
        assert!(!prefix_matches("/api/cart", "/api"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches(
            "/.well-known/jwks.json",
            "/.well-known/jwks.json"
        ));
    }

    #[test]
    fn the_longest_prefix_wins() {
        let prefixes = ["/api/products", "/api/admin/products", "/api", "/api/admin"];
        assert_eq!(longest_match(prefixes, "/api/admin/products/7"), Some(1));
        assert_eq!(longest_match(prefixes, "/api/products"), Some(0));
        assert_eq!(longest_match(prefixes, "/api/admin/users"), Some(3));
        assert_eq!(longest_match(prefixes, "/api/other"), Some(2));
        assert_eq!(longest_match(prefixes, "/other"), None);
    }

    #[test]
    fn rewrite_replaces_the_prefix() {
        assert_eq!(
            rewrite_path("/api/cart", Some("/v1/cart"), "/api/cart"),
            "/v1/cart"
        );
        assert_eq!(
            rewrite_path("/api/cart", Some("/v1/cart"), "/api/cart/items/3"),
            "/v1/cart/items/3"
        );
        assert_eq!(
            rewrite_path("/api/cart", Some("/v1/cart"), "/api/cart/"),
            "/v1/cart/"
        );
        assert_eq!(
            rewrite_path("/api/cart/", Some("/v1/cart/"), "/api/cart/x"),
            "/v1/cart/x"
        );
        assert_eq!(rewrite_path("/api/x", Some(""), "/api/x/y"), "/y");
        assert_eq!(rewrite_path("/api/x", Some(""), "/api/x"), "/");
        assert_eq!(rewrite_path("/api/x", None, "/api/x/y"), "/api/x/y");
        assert_eq!(
            rewrite_path(
                "/.well-known/jwks.json",
                Some("/.well-known/jwks.json"),
                "/.well-known/jwks.json"
            ),
            "/.well-known/jwks.json"
        );
    }

    #[test]
    fn dot_segments_and_encoded_slashes_are_spotted() {
        for (path, refused) in [
            ("/api/products/../admin/products", true),
            ("/api/products/%2E%2E/admin", true),
            ("/api/./x", true),
            ("/api/products%2f..%2fadmin", true),
            ("/api/%2e", true),
            ("/api/.%2E/x", true),
            ("/api/x/..", true),
            ("/api/x%2Fy", true),
            ("/api\\x", true),
            ("/api/products/a.b/c..d", false),
            ("/.well-known/jwks.json", false),
            ("/api/.../x", false),
            ("/api/%2e%2e%2e", false),
            ("/api/%2", false),
            ("/api/x/", false),
        ] {
            assert_eq!(has_dot_segments(path), refused, "{path}");
        }
    }
}
