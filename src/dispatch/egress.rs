//! Where deliveries may go (contract section 10). A subscription URL asks this service to open
//! connections, so by default deliveries reach only public addresses: the resolver here is the
//! HTTP client's for every attempt, resolves the host itself and hands the client only the
//! addresses it checked (a DNS answer that changes between check and connect cannot slip
//! through); an IP literal, which the client never resolves, is checked the same way before
//! the attempt, and when a subscription is created or changed. `DELIVERY_ALLOW_NETS` names
//! networks let through anyway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What no delivery reaches unless allowed: loopback, private (RFC 1918), shared (RFC 6598),
/// link-local (cloud metadata lives at 169.254.169.254), unique-local, unspecified,
/// multicast, and the ranges reserved for documentation, benchmarks and protocols.
/// IPv4-mapped, NAT64 and 6to4 addresses are checked by the IPv4 address they carry.
static REFUSED: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|net| net.parse().expect("a valid network"))
    .collect()
});

/// An attempt refused because its host is, or resolves only to, addresses deliveries may not
/// reach. The attempt opens no connection and the delivery fails at once.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("address not allowed")]
pub struct AddressNotAllowed;

/// The addresses deliveries may reach: public ones, and those of the allowed networks.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    allowed: Arc<Vec<IpNet>>,
}

impl Egress {
    pub fn new(allowed: Vec<IpNet>) -> Egress {
        Egress {
            allowed: Arc::new(allowed),
        }
    }

    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allowed
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let carried = match ip {
            IpAddr::V6(v6) => carried_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let addresses = [Some(ip), carried];
        let mut addresses = addresses.iter().flatten();
        let allowed = addresses
            .clone()
            .any(|ip| self.allowed.iter().any(|net| net.contains(ip)));
        allowed || !addresses.any(|ip| REFUSED.iter().any(|net| net.contains(ip)))
    }

    /// The check of a subscription's URL when it is given (API and console alike): one whose
    /// host is an address deliveries may not reach is refused now, not at the first delivery.
    pub fn check_subscription_url(&self, url: &str) -> Result<(), crate::domain::FieldError> {
        self.check_url(url).map_err(|_| crate::domain::FieldError {
            field: "url".into(),
            message: "must not be a private, loopback, link-local or reserved address \
                      (DELIVERY_ALLOW_NETS lets named networks through)",
        })
    }

    /// The check of a URL whose host is an IP literal (a name is checked as it resolves).
    pub fn check_url(&self, url: &str) -> Result<(), AddressNotAllowed> {
        // The parser writes every IPv4 form (`2130706433`, `0x7f.1`) as dotted decimals.
        let literal = reqwest::Url::parse(url).ok().and_then(|url| {
            let host = url
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']');
            host.parse::<IpAddr>().ok()
        });
        match literal {
            Some(ip) if !self.allows(ip) => Err(AddressNotAllowed),
            _ => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped (`::ffff:a.b.c.d`), the NAT64
/// well-known prefix (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`).
fn carried_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d, e, f, g, h] = ip.segments();
    let v4 = |high: u16, low: u16| {
        let [b0, b1] = high.to_be_bytes();
        let [b2, b3] = low.to_be_bytes();
        Ipv4Addr::new(b0, b1, b2, b3)
    };
    match (a, b, c, d, e, f) {
        (0, 0, 0, 0, 0, 0xffff) => Some(v4(g, h)),
        (0x64, 0xff9b, 0, 0, 0, 0) => Some(v4(g, h)),
        (0x2002, ..) => Some(v4(b, c)),
        _ => None,
    }
}

impl Resolve for Egress {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.clone();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let checked: Vec<SocketAddr> = resolved
                .filter(|address| egress.allows(address.ip()))
                .collect();
            if checked.is_empty() {
                return Err(Box::new(AddressNotAllowed) as Box<_>);
            }
            Ok(Box::new(checked.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_refused_range_is_refused_and_public_addresses_pass() {
        let egress = Egress::default();
        for refused in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a00:1::",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(!egress.allows(ip(refused)), "{refused}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(egress.allows(ip(public)), "{public}");
        }
    }

    #[test]
    fn allowed_networks_pass_in_every_form() {
        let egress = Egress::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(egress.allows(ip("127.0.0.1")));
        assert!(egress.allows(ip("::ffff:127.0.0.1")));
        assert!(egress.allows(ip("fd12::1")));
        assert!(!egress.allows(ip("10.0.0.1")));
        assert!(!egress.allows(ip("::1")));
    }

    #[test]
    fn literal_hosts_are_checked_and_names_left_to_the_resolver() {
        let egress = Egress::default();
        for refused in [
            "http://127.0.0.1:9/x",
            "http://[::1]/x",
            "https://169.254.169.254/latest/meta-data/",
            "http://[::ffff:7f00:1]/",
            "http://user:pw@10.0.0.1/",
            "http://2130706433/",
        ] {
            assert!(egress.check_url(refused).is_err(), "{refused}");
        }
        for passed in [
            "https://example.com/hook",
            "http://localhost/x",
            "http://8.8.8.8/",
        ] {
            assert!(egress.check_url(passed).is_ok(), "{passed}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_refused_addresses_is_refused() {
        let refused = Egress::default()
            .resolve(Name::from_str("localhost").unwrap())
            .await;
        assert!(refused.is_err());
        let allowed = Egress::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])
        .resolve(Name::from_str("localhost").unwrap())
        .await
        .unwrap();
        assert!(allowed
            .map(|address| address.ip())
            .all(|ip| ip.is_loopback()));
    }
}
