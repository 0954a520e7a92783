//! The client address of a request for the per-address limits, when the server is behind
//! proxies (an ingress controller, a Gateway): every connection then comes from the proxies'
//! pods, so the TCP peer says nothing about the client. For a peer inside a trusted CIDR
//! (`--trusted-proxies`), the client is read from `X-Forwarded-For`, which every common
//! ingress controller (ingress-nginx, Traefik, Envoy, HAProxy) appends to; `Forwarded`
//! (RFC 7239) is not read, so a proxy that sets only `Forwarded` but passes a client's own
//! `X-Forwarded-For` on could not be made to trust it. A header from any other peer is never
//! read: anyone can write one.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The CIDRs of the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `--trusted-proxies` entry: a CIDR, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet(pub IpNet);

impl FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(ProxyNet(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| ProxyNet(IpNet::from(ip)))
            .map_err(|_| format!("{s:?} is neither a CIDR (10.0.0.0/8) nor an address"))
    }
}

/// IPv4 clients of a dual-stack listener are seen as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// One `X-Forwarded-For` entry: an address, `a.b.c.d:port` or `[v6]:port`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

impl TrustedProxies {
    /// The proxies `nets` name.
    pub fn new(nets: &[ProxyNet]) -> Self {
        TrustedProxies(nets.iter().map(|n| n.0).collect())
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client a request from `peer` with `headers` comes from: `peer` itself unless it is
    /// a trusted proxy; then the rightmost `X-Forwarded-For` address that is not a trusted
    /// proxy (entries to its left were written by the client and may be anything). When every
    /// entry is a trusted proxy, the leftmost; when the header is missing or an entry before
    /// an untrusted one cannot be read, `peer` (one key for what the proxy sent unreadably,
    /// rather than a key an attacker chooses).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Several headers are one list, in order (RFC 9110 5.3).
        let mut entries = Vec::new();
        for v in headers.get_all("x-forwarded-for") {
            let Ok(v) = v.to_str() else {
                return peer;
            };
            entries.extend(v.split(',').map(str::trim).filter(|e| !e.is_empty()));
        }
        let mut leftmost_trusted = None;
        for e in entries.iter().rev() {
            let Some(ip) = parse_entry(e) else {
                return peer;
            };
            if !self.contains(ip) {
                return ip;
            }
            leftmost_trusted = Some(ip);
        }
        leftmost_trusted.unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(s: &[&str]) -> TrustedProxies {
        let nets: Vec<ProxyNet> = s.iter().map(|n| n.parse().unwrap()).collect();
        TrustedProxies::new(&nets)
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = xff(&["203.0.113.5"]);
        assert_eq!(p.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        // Nothing trusted at all: the default.
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        // The client wrote "1.1.1.1" itself; the edge proxy appended the real address, and
        // an inner proxy its own.
        let h = xff(&["1.1.1.1, 203.0.113.5, 10.1.2.3"]);
        assert_eq!(p.client(ip("192.168.1.1"), &h), ip("203.0.113.5"));
        // The same list split over several headers.
        let h = xff(&["1.1.1.1", "203.0.113.5", "10.1.2.3"]);
        assert_eq!(p.client(ip("10.9.9.9"), &h), ip("203.0.113.5"));
        // Only proxies: the leftmost.
        let h = xff(&["10.0.0.7, 10.0.0.8"]);
        assert_eq!(p.client(ip("10.9.9.9"), &h), ip("10.0.0.7"));
        // With ports.
        let h = xff(&["203.0.113.5:4711"]);
        assert_eq!(p.client(ip("10.9.9.9"), &h), ip("203.0.113.5"));
    }

    #[test]
    fn ipv6_peers_entries_and_mapped_ipv4() {
        let p = proxies(&["fd00::/8", "10.0.0.0/8"]);
        let h = xff(&["2001:db8::1, fd00::5"]);
        assert_eq!(p.client(ip("fd00::9"), &h), ip("2001:db8::1"));
        let h = xff(&["[2001:db8::2]:443"]);
        assert_eq!(p.client(ip("fd00::9"), &h), ip("2001:db8::2"));
        // An IPv4 proxy seen through a dual-stack listener.
        let h = xff(&["203.0.113.5"]);
        assert_eq!(p.client(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.5"));
        assert_eq!(
            p.client(ip("::ffff:10.0.0.1"), &xff(&["::ffff:203.0.113.6"])),
            ip("203.0.113.6")
        );
    }

    #[test]
    fn missing_or_garbage_headers_give_the_peer() {
        let p = proxies(&["127.0.0.1"]);
        let peer = ip("127.0.0.1");
        assert_eq!(p.client(peer, &HeaderMap::new()), peer);
        assert_eq!(p.client(peer, &xff(&["unknown"])), peer);
        assert_eq!(p.client(peer, &xff(&["", " , "])), peer);
        assert_eq!(p.client(peer, &xff(&["203.0.113.5, garbage"])), peer);
        // Garbage the client wrote left of the real address does not matter.
        assert_eq!(
            p.client(peer, &xff(&["garbage, 203.0.113.5"])),
            ip("203.0.113.5")
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.5\xff").unwrap(),
        );
        assert_eq!(p.client(peer, &h), peer);
    }

    #[test]
    fn entries_parse_as_cidrs_or_addresses() {
        assert_eq!(
            "10.1.2.3/8".parse::<ProxyNet>().unwrap().0,
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            " 127.0.0.1 ".parse::<ProxyNet>().unwrap().0,
            "127.0.0.1/32".parse::<IpNet>().unwrap()
        );
        assert!("fd00::/8".parse::<ProxyNet>().is_ok());
        assert!("10.0.0.0/33".parse::<ProxyNet>().is_err());
        assert!("ingress".parse::<ProxyNet>().is_err());
    }
}
