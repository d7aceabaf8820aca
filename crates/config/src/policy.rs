//! The outbound policy: where deliveries may go.
//!
//! Private, loopback, link-local and other non-public addresses are refused
//! unless listed in `allow_networks`. The check is on IP addresses: a URL's
//! literal IP is checked at load, a host name's addresses at connect time by
//! the delivery client's resolver, so DNS cannot smuggle a refused address in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Refuse `http://` URLs at load.
    pub require_https: bool,
    /// Non-public networks deliveries may still go to.
    pub allow_networks: Vec<IpNet>,
}

impl Policy {
    /// Whether a delivery may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip) || self.allow_networks.iter().any(|net| net.contains(&ip))
    }
}

/// IPv6 addresses that are an IPv4 address written another way are that
/// IPv4 address, so they cannot slip past the IPv4 rules: IPv4-mapped
/// (`::ffff:10.0.0.1`), IPv4-compatible (`::10.0.0.1`, deprecated but still
/// routed by some stacks) and IPv4-translated (`::ffff:0:10.0.0.1`).
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // `::` and `::1` are IPv6's own unspecified and loopback addresses,
    // not IPv4-compatible ones (RFC 4291 §2.5.5.1).
    let compatible = s[..6].iter().all(|x| *x == 0) && !(s[6] == 0 && s[7] <= 1);
    let translated = s[..4].iter().all(|x| *x == 0) && s[4] == 0xffff && s[5] == 0;
    if compatible || translated {
        IpAddr::V4(low)
    } else {
        IpAddr::V6(v6)
    }
}

/// The IPv4 address in segments `hi` and `lo`.
fn v4_of(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                              // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19))   // benchmarking
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let first = s[0];
    // Tunnels that carry an IPv4 address inside: as public as what they
    // lead to. 6to4 (2002::/16): the address in segments 1–2. Teredo
    // (2001:0::/32): the server in 2–3, the client (inverted) in 6–7.
    if first == 0x2002 {
        return is_public_v4(v4_of(s[1], s[2]));
    }
    if first == 0x2001 && s[1] == 0 {
        return is_public_v4(v4_of(s[2], s[3])) && is_public_v4(v4_of(!s[6], !s[7]));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && s[1] == 0x0db8 // documentation
        || first == 0x0064 && s[1] == 0xff9b) // NAT64 (and its local-use /48): could reach private space
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_non_public_addresses() {
        let policy = Policy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "224.0.0.1",
            "255.255.255.255",
            // Found let through: IPv4 written as IPv6, tunnels to it, and
            // the IETF's own block.
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:169.254.169.254",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe", // client 10.0.0.1 (inverted)
            "64:ff9b:1::a00:1",
            "192.0.0.1",
            "192.0.0.170",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused}");
        }
        for allowed in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "::1.1.1.1",
            "2002:0101:0101::1",
            "2001:0:4136:e378:8000:63bf:fefe:fefe", // client 1.1.1.1, server 65.54.227.120
            "192.0.1.1",
        ] {
            assert!(policy.permits(ip(allowed)), "{allowed}");
        }
    }

    #[test]
    fn allow_networks_open_private_ranges() {
        let policy = Policy {
            require_https: false,
            allow_networks: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("::ffff:127.0.0.1")));
        assert!(policy.permits(ip("fd00::5")));
        assert!(!policy.permits(ip("10.0.0.1")));
        // IPv6 loopback stays IPv6: an allowed `::1` is allowed.
        let policy = Policy {
            require_https: false,
            allow_networks: vec!["::1/128".parse().unwrap()],
        };
        assert!(policy.permits(ip("::1")));
        assert!(!policy.permits(ip("::")));
        assert!(!policy.permits(ip("::127.0.0.1")));
    }
}
