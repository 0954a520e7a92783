//! Where a webhook may connect (SSRF protection): only `http`/`https`, and never to loopback,
//! link-local (cloud metadata), private, shared, unspecified, multicast or broadcast addresses
//! unless they are in the allow-list (`--webhook-allowed-cidrs`). Names are resolved here and
//! every resolved address is checked, so a name cannot point the request somewhere forbidden.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("the receiver URL is not a valid URL: {0}")]
    Url(String),
    #[error("the receiver URL must be http or https, not {0}")]
    Scheme(String),
    #[error("the receiver URL must not contain credentials")]
    Credentials,
    #[error(
        "{0} is a loopback, link-local, private or otherwise special address; allow it with the operator's --webhook-allowed-cidrs"
    )]
    Forbidden(IpAddr),
}

/// Addresses that the allow-list must name explicitly.
fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_special_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xfe00) == 0xfc00 // unique local (private)
                || v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) // AWS metadata (IPv6)
        }
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_link_local() // 169.254.0.0/16, incl. 169.254.169.254
        || ip.is_private()
        || ip.is_multicast()
        || ip.is_broadcast()
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || a == 0
        || a >= 240
}

/// The allow-list and the check of one address.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub allowed: Vec<IpNet>,
}

impl Policy {
    pub fn check(&self, ip: IpAddr) -> Result<(), TargetError> {
        if is_special(ip) && !self.allowed.iter().any(|net| net.contains(&ip)) {
            return Err(TargetError::Forbidden(ip));
        }
        Ok(())
    }

    /// Checks the URL itself: scheme, no credentials, and an IP-literal host (a literal is not
    /// resolved, so [`SafeResolver`] never sees it).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, TargetError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| TargetError::Url(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(TargetError::Scheme(parsed.scheme().into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(TargetError::Credentials);
        }
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
            None => return Err(TargetError::Url("no host".into())),
        }
        Ok(parsed)
    }
}

/// A DNS resolver for reqwest that drops forbidden addresses (and fails when none is left).
pub struct SafeResolver(pub Arc<Policy>);

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused
                    .map(|e| format!("{host}: {e}"))
                    .unwrap_or_else(|| format!("{host}: no address"));
                return Err(why.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_special_addresses_unless_allowed() {
        let strict = Policy::default();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://[fe80::1]/",
        ] {
            assert!(
                matches!(strict.check_url(url), Err(TargetError::Forbidden(_))),
                "{url}"
            );
        }
        assert!(strict.check_url("https://hooks.example.com/x").is_ok());
        assert!(strict.check_url("https://93.184.216.34/x").is_ok());
        let local = Policy {
            allowed: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(local.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(local.check_url("http://127.0.0.2/").is_err());
        assert!(local.check_url("http://169.254.169.254/").is_err());
    }

    #[test]
    fn refuses_other_schemes_and_credentials() {
        let p = Policy::default();
        assert_eq!(
            p.check_url("file:///etc/passwd").unwrap_err(),
            TargetError::Scheme("file".into())
        );
        assert_eq!(
            p.check_url("https://u:p@hooks.example.com/").unwrap_err(),
            TargetError::Credentials
        );
    }
}
