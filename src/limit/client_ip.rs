//! The client's address (§9): the socket's peer, or — only when that peer
//! is a trusted proxy — the right-most untrusted hop of the one forwarding
//! header the proxies set (`X-Forwarded-For` by default, or `Forwarded`:
//! `rate_limit.forwarded_header`). Anyone else's forwarding headers are
//! ignored, and so is the other header even from a proxy (which may pass
//! it along untouched), so a client cannot choose the address it is
//! limited (or API-keyed) by.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The address a request is attributed to; put in the request's
/// extensions by the edge layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Addresses and CIDR blocks (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Default)]
pub struct Networks(Vec<IpNet>);

impl Networks {
    /// `key` names the setting in errors.
    pub fn parse(entries: &[String], key: &str) -> Result<Networks, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{key}: '{e}' is not an address or CIDR block"))
            })
            .collect::<Result<_, _>>()
            .map(Networks)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `rate_limit.trusted_proxies`, and which header they set.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    proxies: Networks,
    /// `Forwarded` (RFC 7239) rather than `X-Forwarded-For`.
    rfc7239: bool,
}

impl TrustedProxies {
    /// Proxies that set `X-Forwarded-For` ([`TrustedProxies::reading`]
    /// changes that).
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        Networks::parse(entries, "rate_limit.trusted_proxies").map(|proxies| TrustedProxies {
            proxies,
            rfc7239: false,
        })
    }

    /// Reads `Forwarded` instead of `X-Forwarded-For` when `rfc7239`.
    pub fn reading(self, rfc7239: bool) -> TrustedProxies {
        TrustedProxies { rfc7239, ..self }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.contains(ip)
    }

    /// The client of a request from `peer` carrying `headers`.
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?.ip());
        if !self.trusts(peer) {
            return Some(peer);
        }
        // Hops in order, nearest to the client first; the proxies we
        // trust appended theirs on the right.
        let hops = forwarded_hops(headers, self.rfc7239);
        Some(
            hops.iter()
                .rev()
                .copied()
                .find(|ip| !self.trusts(*ip))
                // Every hop is trusted: the left-most is the client.
                .or(hops.first().copied())
                .unwrap_or(peer),
        )
    }
}

/// `::ffff:1.2.3.4` is 1.2.3.4 (a dual-stack socket reports IPv4 peers so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The `for=` addresses of `Forwarded` (RFC 7239) when `rfc7239`, else
/// those of `X-Forwarded-For`. A hop that is not an address (`unknown`, an
/// obfuscated name, garbage) ends the chain there: nothing left of it can
/// be trusted either.
fn forwarded_hops(headers: &HeaderMap, rfc7239: bool) -> Vec<IpAddr> {
    let raw: Vec<String> = if rfc7239 {
        headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
                    .unwrap_or_default()
            })
            .collect()
    } else {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let mut hops = Vec::with_capacity(raw.len());
    for hop in raw.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => hops.push(canonical(ip)),
            None => break,
        }
    }
    hops.reverse();
    hops
}

/// `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80`, `::1`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(s.parse().unwrap(), 5555))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(t.client(peer("203.0.113.9"), &h), ip("203.0.113.9"));
        let none = TrustedProxies::default();
        assert_eq!(none.client(peer("10.1.1.1"), &h), ip("10.1.1.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_counts() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        // The client forged the left-most entry; its real address is the
        // one our proxy appended.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 192.0.2.7")]);
        assert_eq!(t.client(peer("10.0.0.2"), &h), ip("198.51.100.4"));
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https, for=192.0.2.7",
        )]);
        let rfc = t.clone().reading(true);
        assert_eq!(rfc.client(peer("10.0.0.2"), &h), ip("2001:db8::1"));
        // Only trusted hops: the left-most is the client.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 192.0.2.7")]);
        assert_eq!(t.client(peer("10.0.0.2"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            t.client(peer("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        // Garbage ends the chain: what lies left of it is not trusted.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, nonsense")]);
        assert_eq!(t.client(peer("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    /// A proxy that appends to one header may pass the other along as the
    /// client wrote it: only the configured header is read.
    #[test]
    fn only_the_configured_forwarding_header_is_read() {
        let h = headers(&[("forwarded", "for=7.7.7.7"), ("x-forwarded-for", "1.2.3.4")]);
        let xff = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        assert_eq!(xff.client(peer("10.0.0.2"), &h), ip("1.2.3.4"));
        let rfc = xff.clone().reading(true);
        assert_eq!(rfc.client(peer("10.0.0.2"), &h), ip("7.7.7.7"));
        let only_forwarded = headers(&[("forwarded", "for=7.7.7.7")]);
        assert_eq!(
            xff.client(peer("10.0.0.2"), &only_forwarded),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn mapped_ipv4_is_ipv4_and_bad_entries_are_refused() {
        let t = TrustedProxies::parse(&["127.0.0.1".into()]).unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.4")]);
        assert_eq!(t.client(peer("::ffff:127.0.0.1"), &h), ip("198.51.100.4"));
        assert!(TrustedProxies::parse(&["10.0.0.0/99".into()]).is_err());
    }
}
