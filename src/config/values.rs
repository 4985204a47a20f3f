//! Scalar values of `gateway.yaml` that carry a syntax of their own.
//!
//! Each parses itself during deserialization, so serde_yaml attaches the key
//! path and line to the error, and the rest of the code only ever sees the
//! parsed form.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A span of time: `500ms`, `10s`, `15m`, `1h`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad =
            || format!("invalid duration `{text}`: expected a number with a unit such as `500ms`, `10s`, `15m`, `1h`");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let d = match unit.trim() {
            "ms" => std::time::Duration::from_millis(n),
            "" | "s" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => std::time::Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(Duration(d))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `10s` or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration(std::time::Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(|v| Duration(std::time::Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("invalid duration `{v}`: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn deserialize_parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(de::Error::custom)
}

/// A number of bytes: `8192`, `8KiB` / `8k`, `1MiB` / `1m`, `2GiB` / `2g`, `1TiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || {
            format!("invalid size `{text}`: expected a number of bytes, or one with a unit such as `8KiB` or `1MiB`")
        };
        let n: usize = digits.parse().map_err(|_| bad())?;
        let scale = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(scale).map(ByteSize).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `8KiB` or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                usize::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size `{v}` is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                usize::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size `{v}`: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A socket address to listen on, such as `0.0.0.0:5000` or `[::]:443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddress(pub SocketAddr);

impl FromStr for ListenAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.parse().map(ListenAddress).map_err(|_| {
            format!("invalid listen address `{text}`: expected IP:PORT such as `0.0.0.0:5000` or `[::]:5000`")
        })
    }
}

impl<'de> Deserialize<'de> for ListenAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

/// An IP network in CIDR form (`10.0.0.0/8`), or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
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

/// IPv4-mapped IPv6 peers (dual-stack sockets) compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid IP network `{text}`: expected an address or CIDR such as `10.0.0.0/8`");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

/// Where an upstream registry lives: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// Path the registry is served under (registry:2's `http.prefix`),
    /// without the trailing slash: `/mirror`; empty for the root.
    pub path_prefix: String,
    /// Lower-cased `host:port` as a client of the upstream would write it.
    pub authority: String,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// Resolved once at load; the hot path never resolves names.
    pub address: SocketAddr,
    pub tls: bool,
}

impl UpstreamUrl {
    /// `scheme://authority/prefix`: the replica's name in logs, metrics,
    /// messages and upload hints (`affinity::upstream_key` of this).
    pub fn canonical(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path_prefix)
    }
}

impl FromStr for UpstreamUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (rest, tls) = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, false),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (rest, true),
            _ => {
                return Err(format!(
                    "invalid upstream URL `{text}`: expected http://HOST[:PORT] or https://..."
                ));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains(['?', '#', '@']) || path.contains(['?', '#']) {
            return Err(format!(
                "invalid upstream URL `{text}`: only SCHEME://HOST[:PORT][/PREFIX] is supported (no query or user info)"
            ));
        }
        let path_prefix = path.trim_end_matches('/');
        let bad_segment = path_prefix.split('/').skip(1).any(|seg| {
            seg.is_empty()
                || seg == "."
                || seg == ".."
                || seg == "v2"
                || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
        if bad_segment {
            return Err(format!(
                "invalid upstream URL `{text}`: the path prefix `{path}` must be plain segments such as `/mirror` (letters, digits, `-._~`; not `v2`)"
            ));
        }
        let uri: http::uri::Authority = authority
            .parse()
            .map_err(|_| format!("invalid upstream URL `{text}`: bad host or port"))?;
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("invalid upstream URL `{text}`: missing host"));
        }
        // `Authority` takes any text after the colon; `port_u16` then says
        // "no port", which would silently mean 80.
        if let Some(p) = authority.get(uri.host().len()..).and_then(|r| r.strip_prefix(':'))
            && !matches!(p.parse::<u16>(), Ok(1..))
        {
            return Err(format!("invalid upstream URL `{text}`: bad port `{p}`"));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let address = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("upstream URL `{text}`: cannot resolve host `{host}`"))?;
        let authority = match uri.port_u16() {
            Some(_) => uri.as_str().to_ascii_lowercase(),
            None => uri.host().to_ascii_lowercase(),
        };
        Ok(UpstreamUrl {
            path_prefix: path_prefix.to_owned(),
            authority,
            host: host.to_ascii_lowercase(),
            port,
            address,
            tls,
        })
    }
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("10s".parse::<Duration>().unwrap().0.as_secs(), 10);
        assert_eq!("15m".parse::<Duration>().unwrap().0.as_secs(), 900);
        assert_eq!("250ms".parse::<Duration>().unwrap().0.as_millis(), 250);
        assert_eq!("7".parse::<Duration>().unwrap().0.as_secs(), 7);
        assert!("ten seconds".parse::<Duration>().unwrap_err().contains("`ten seconds`"));
        assert!("10 parsecs".parse::<Duration>().is_err());
    }

    #[test]
    fn networks() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.9.8.7".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
    }

    #[test]
    fn upstream_urls() {
        let u: UpstreamUrl = "http://127.0.0.1:15000".parse().unwrap();
        assert_eq!(u.authority, "127.0.0.1:15000");
        assert_eq!(u.address, "127.0.0.1:15000".parse().unwrap());
        let u: UpstreamUrl = "HTTP://LocalHost:15000/".parse().unwrap();
        assert_eq!(u.authority, "localhost:15000");
        let u: UpstreamUrl = "http://[::1]:15000".parse().unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority, "[::1]:15000");
        let u: UpstreamUrl = "http://127.0.0.1".parse().unwrap();
        assert_eq!(u.port, 80);
        assert_eq!(u.path_prefix, "");
        let u: UpstreamUrl = "http://127.0.0.1:15000/mirror/".parse().unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path_prefix.as_str()),
            ("127.0.0.1:15000", "/mirror")
        );
        let u: UpstreamUrl = "https://127.0.0.1/a/b-c".parse().unwrap();
        assert_eq!(u.path_prefix, "/a/b-c");
        for bad in [
            "ftp://x",
            "http://",
            "127.0.0.1:5000",
            "http://h:1/v2",
            "http://h:1/mirror/v2/",
            "http://h:1//x",
            "http://h:1/a/../b",
            "http://h:1/a%2fb",
            "http://h:1/x?y=1",
            "http://h:1?x=1",
            "http://u@h:1",
            "http://127.0.0.1:nope",
            "http://127.0.0.1:",
            "http://127.0.0.1:0",
            "http://[::1]:x",
        ] {
            assert!(bad.parse::<UpstreamUrl>().is_err(), "{bad} accepted");
        }
    }
}
