//! Client addresses: address ranges (CIDR) and the client behind trusted proxies.
//! X-Forwarded-For and Forwarded are believed only when the peer is a configured
//! trusted proxy, and then read from the right, past every trusted hop: the first
//! address that is not a trusted proxy is the client. Anything else sent in those
//! headers could be made up by the client.

use std::net::IpAddr;

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDRESS[/PREFIX]`.
    pub fn parse(text: &str) -> Option<IpNet> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(IpNet { addr, prefix })
    }

    /// True when `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = canonical(*ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop of X-Forwarded-For or a `for=` of Forwarded: `203.0.113.7`,
/// `"[2001:db8::1]:4711"`, `198.51.100.1:80`.
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':').and_then(|(ip, _port)| ip.parse().ok())
}

/// Which header a trusted proxy writes the client's address to. Only that one is
/// read: a proxy that appends to X-Forwarded-For passes a client's own Forwarded
/// header through untouched, and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

impl ForwardedHeader {
    pub fn parse(text: &str) -> Option<ForwardedHeader> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(ForwardedHeader::XForwardedFor),
            "forwarded" => Some(ForwardedHeader::Forwarded),
            _ => None,
        }
    }

    /// The header's name, lower-case.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The client of a request from `peer`, believing `header` (every line of it, in
/// order, joined) only from `trusted` proxies.
pub fn client_ip(peer: IpAddr, trusted: &[IpNet], header: ForwardedHeader, value: Option<&str>) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(value) = value else { return peer };
    let hops: Vec<Option<IpAddr>> = match header {
        ForwardedHeader::Forwarded => value
            .split(',')
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then(|| hop(value)).flatten()
                })
            })
            .collect(),
        ForwardedHeader::XForwardedFor => value.split(',').map(hop).collect(),
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        // An unreadable hop (a made-up value, "unknown"): stop at the last one believed.
        let Some(ip) = hop.map(canonical) else { return client };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// The part of an address rate limits count by: the address for IPv4, its /64 for
/// IPv6 (one subscriber's network, where any address is the client's to pick).
pub fn limit_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        v4 => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(&ip("10.1.255.3")) && !net.contains(&ip("10.2.0.1")));
        assert!(net.contains(&ip("::ffff:10.1.0.9")), "IPv4-mapped");
        assert!(IpNet::parse("2001:db8::/32").unwrap().contains(&ip("2001:db8:1::5")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(&ip("192.0.2.1")));
        assert!(IpNet::parse("192.0.2.1").unwrap().contains(&ip("192.0.2.1")));
        for bad in ["10.0.0.0/33", "proxy", "10.0.0/8", "::/129"] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let xff = ForwardedHeader::XForwardedFor;
        let chain = Some("203.0.113.9, 198.51.100.4, 10.0.0.2");
        // Not from a proxy: the header is the client's word, ignored.
        assert_eq!(client_ip(ip("192.0.2.50"), &trusted, xff, chain), ip("192.0.2.50"));
        assert_eq!(client_ip(ip("192.0.2.50"), &[], xff, chain), ip("192.0.2.50"));
        // From a proxy: the right-most hop that is not a trusted proxy.
        assert_eq!(client_ip(ip("10.0.0.1"), &trusted, xff, chain), ip("198.51.100.4"));
        let forwarded = Some(r#"for=192.0.2.60;proto=https, for="[2001:db8::7]:4711", for=10.0.0.3"#);
        assert_eq!(client_ip(ip("10.0.0.1"), &trusted, ForwardedHeader::Forwarded, forwarded), ip("2001:db8::7"));
        assert_eq!(client_ip(ip("10.0.0.1"), &trusted, xff, Some("garbage, 10.0.0.5")), ip("10.0.0.5"));
        assert_eq!(client_ip(ip("10.0.0.1"), &trusted, xff, None), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), limit_key(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(limit_key(ip("2001:db8:1:2::1")), limit_key(ip("2001:db8:1:3::1")));
        assert_eq!(limit_key(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(limit_key(ip("::ffff:192.0.2.7")), "192.0.2.7");
    }
}
