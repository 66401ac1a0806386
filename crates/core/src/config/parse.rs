//! Parsers for the value kinds settings use. Each returns `None` when the text is not
//! a valid value; the caller turns that into an error that names the setting.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// `30s`, `5m`, `1h30m`, or a bare number of seconds.
pub fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).ok()
}

/// Like [`duration`], with zero meaning "no limit".
pub fn optional_duration(text: &str) -> Option<Option<Duration>> {
    duration(text).map(|d| (!d.is_zero()).then_some(d))
}

/// A socket address; `:8080` is accepted as shorthand for `0.0.0.0:8080`.
pub fn listen_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix(':') {
        let port = port.parse().ok()?;
        return Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)));
    }
    text.parse().ok()
}

/// A byte size: `1048576`, `512KiB`, `1MiB`, `2MB`.
pub fn byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// An integer within `min..=max`.
pub fn integer_in(text: &str, min: u32, max: u32) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|n| (min..=max).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(duration("soon"), None);
        assert_eq!(duration("-5"), None);
        assert_eq!(optional_duration("0"), Some(None));
    }

    #[test]
    fn byte_sizes_accept_binary_and_decimal_units() {
        assert_eq!(byte_size("1048576"), Some(1 << 20));
        assert_eq!(byte_size("1MiB"), Some(1 << 20));
        assert_eq!(byte_size("512 KiB"), Some(512 << 10));
        assert_eq!(byte_size("2MB"), Some(2_000_000));
        assert_eq!(byte_size("lots"), None);
        assert_eq!(byte_size("1GiB"), None);
    }

    #[test]
    fn listen_addresses_accept_the_port_shorthand() {
        assert_eq!(listen_addr(":9000"), "0.0.0.0:9000".parse().ok());
        assert_eq!(listen_addr("[::1]:80"), "[::1]:80".parse().ok());
        assert_eq!(listen_addr("localhost"), None);
        assert_eq!(listen_addr(":99999"), None);
    }
}
