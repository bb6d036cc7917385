//! What kind of network address a name resolved to: public, a private
//! range, this machine, its link-local network, a cloud metadata service, or
//! nothing a server answers on. Policy decides from the class; this module
//! only names it, for the `wasi:http` egress rules
//! (`stepbox_store::policy::egress`) and the redirects a registry sends
//! (`wasm_oci::transfer`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address a resolved name points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Anywhere on the internet.
    Public,
    /// RFC 1918, unique local IPv6, carrier-grade NAT, benchmarking ranges.
    Private,
    /// This machine.
    Loopback,
    /// This machine's link (`169.254.0.0/16`, `fe80::/10`).
    LinkLocal,
    /// A cloud metadata service (`169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`).
    Metadata,
    /// Unspecified, multicast, broadcast, reserved: never a server.
    Unroutable,
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Private => "private-range",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "cloud metadata service",
            AddressClass::Unroutable => "unroutable",
        })
    }
}

/// Classify one address; an IPv4-mapped IPv6 address counts as its IPv4.
pub fn classify(address: IpAddr) -> AddressClass {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, d] = ip.octets();
    if (a, b, c, d) == (169, 254, 169, 254) || (a, b, c, d) == (100, 100, 100, 200) {
        // AWS, GCP, Azure, OpenStack; Alibaba Cloud.
        AddressClass::Metadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || a >= 240 || a == 0 {
        AddressClass::Unroutable
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) || (a == 198 && (b == 18 || b == 19)) {
        // RFC 1918, carrier-grade NAT (RFC 6598), benchmarking (RFC 2544).
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        AddressClass::Metadata // AWS's IPv6 metadata endpoint
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if ip.is_unspecified() || ip.is_multicast() {
        AddressClass::Unroutable
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private // unique local addresses
    } else {
        AddressClass::Public
    }
}

impl AddressClass {
    /// Whether the address is this machine, its link-local network (where a
    /// cloud metadata service answers) or no server at all: where a remote
    /// party must never send stepbox.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            AddressClass::Loopback | AddressClass::LinkLocal | AddressClass::Metadata | AddressClass::Unroutable
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        let cases: &[(&str, AddressClass)] = &[
            ("169.254.169.254", AddressClass::Metadata),
            ("100.100.100.200", AddressClass::Metadata),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.8.9.10", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::Metadata),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("0.0.0.0", AddressClass::Unroutable),
            ("255.255.255.255", AddressClass::Unroutable),
            ("224.0.0.1", AddressClass::Unroutable),
            ("52.94.0.1", AddressClass::Public),
            ("2600:1f18::1", AddressClass::Public),
        ];
        for (text, class) in cases {
            assert_eq!(classify(text.parse().expect(text)), *class, "{text}");
        }
    }
}
