//! Who the client is, for per-IP limits: the socket peer, unless the peer is a trusted proxy;
//! then the right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Entries to
//! the left of that one were written by the client and are never believed, so a spoofed
//! header buys no fresh bucket.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether `ip` is in one of the trusted networks (IPv4-mapped IPv6 counts as IPv4).
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: a bare address, `[v6]`, or `v4:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = e.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    e.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(canonical)
}

/// The client address of a request that came from `peer` with `headers`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // Every X-Forwarded-For header in order, as one list.
    let entries: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut last_trusted = peer;
    for entry in entries.iter().rev() {
        match parse_entry(entry) {
            // Garbage was written by someone we do not trust: the hop that handed it to us
            // is the best we know.
            None => return last_trusted,
            Some(ip) if is_trusted(ip, trusted) => last_trusted = ip,
            Some(ip) => return ip,
        }
    }
    // Every hop is trusted (or no header): the furthest one.
    last_trusted
}

/// The `X-Forwarded-For` value to send upstream: what a trusted peer sent, plus the peer.
/// From an untrusted peer only the peer itself is sent, so upstreams never see spoofed hops.
pub fn forwarded_for(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> String {
    let peer = canonical(peer);
    if is_trusted(peer, trusted) {
        let prior: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !prior.is_empty() {
            let mut out = prior.join(", ");
            out.push_str(", ");
            push_ip(&mut out, peer);
            return out;
        }
    }
    let mut out = String::with_capacity(15);
    push_ip(&mut out, peer);
    out
}

/// Appends `ip` as its `Display` writes it; an IPv4 address without the formatting machinery,
/// which costs about ten times as much (every proxied request writes its client's address).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Each octet's digits written in place, the text pushed once.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .filter_map(|s| crate::domain::config::parse_cidr(s))
            .collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).expect("hv"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &[]), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_right_most_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.1"]);
        // The client spoofed 1.1.1.1; the edge proxy appended the real client 198.51.100.7;
        // an inner proxy appended the edge proxy.
        let h = xff(&["1.1.1.1, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(client_ip(ip("10.9.9.9"), &h, &trusted), ip("198.51.100.7"));
        let h = xff(&["198.51.100.7:4711"]);
        assert_eq!(
            client_ip(ip("192.168.1.1"), &h, &trusted),
            ip("198.51.100.7")
        );
        let h = xff(&["[2001:db8::5]:443"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::5"));
    }

    #[test]
    fn garbage_or_an_all_trusted_chain_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = xff(&["unknown, 10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.5"));
        let h = xff(&["10.0.0.7, 10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.7"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_count_as_ipv4() {
        let trusted = nets(&["127.0.0.0/8"]);
        let h = xff(&["198.51.100.7"]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_for_drops_what_an_untrusted_peer_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = xff(&["1.1.1.1"]);
        assert_eq!(
            forwarded_for(ip("203.0.113.9"), &h, &trusted),
            "203.0.113.9"
        );
        assert_eq!(
            forwarded_for(ip("10.0.0.2"), &h, &trusted),
            "1.1.1.1, 10.0.0.2"
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let mut out = String::from("x=");
            push_ip(&mut out, ip(text));
            assert_eq!(out, format!("x={}", ip(text)));
        }
    }
}
