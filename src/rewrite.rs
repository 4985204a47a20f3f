//! Header building toward the upstream and Location rewriting toward the
//! client. Pure functions over header maps, so they are unit-tested here.
//!
//! registry:2 builds absolute upload URLs from `Forwarded` if present (then
//! ignoring X-Forwarded-* entirely), else from X-Forwarded-Proto/Host, else
//! from Host. So `Forwarded` is never sent upstream, and X-Forwarded-* always
//! carry what the gateway itself decided the client-facing address is.

use std::net::IpAddr;

use http::header::{HOST, LOCATION};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::HostHeaderMode;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// Written in registry:2's spelling; Pingora keeps the case it is given.
pub const API_VERSION_TITLE: &str = "Docker-Distribution-Api-Version";
pub const API_VERSION_VALUE: HeaderValue = HeaderValue::from_static("registry/2.0");

/// Forwarding headers of other proxies that an untrusted client may not set.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn parse(v: &[u8]) -> Option<Scheme> {
        if v.eq_ignore_ascii_case(b"http") {
            Some(Scheme::Http)
        } else if v.eq_ignore_ascii_case(b"https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

/// How the client reached the gateway, as far as the gateway believes it.
#[derive(Debug, Clone)]
pub struct ClientView {
    pub scheme: Scheme,
    /// `host[:port]` exactly as the client (or a trusted proxy) sent it.
    pub authority: Option<HeaderValue>,
    pub ip: Option<IpAddr>,
    /// Whether the peer is a trusted proxy whose forwarding headers count.
    pub trusted: bool,
}

impl ClientView {
    pub fn from_request(req: &RequestHeader, ip: Option<IpAddr>, conn: Scheme, trusted: bool) -> Self {
        let mut scheme = conn;
        let mut authority = None;
        if trusted {
            let (fwd_proto, fwd_host) = forwarded_proto_host(req);
            let proto = fwd_proto.or_else(|| first_list_item(req.headers.get(&X_FORWARDED_PROTO)));
            if let Some(s) = proto.and_then(|p| Scheme::parse(p.as_bytes())) {
                scheme = s;
            }
            authority = fwd_host
                .or_else(|| first_list_item(req.headers.get(&X_FORWARDED_HOST)))
                .and_then(|h| HeaderValue::from_str(h).ok());
        }
        let authority = authority.or_else(|| request_authority(req));
        ClientView {
            scheme,
            authority,
            ip,
            trusted,
        }
    }
}

/// Host header, or the URI authority of HTTP/2 and absolute-form requests.
pub fn request_authority(req: &RequestHeader) -> Option<HeaderValue> {
    if let Some(h) = req.headers.get(HOST) {
        return Some(h.clone());
    }
    req.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

fn first_list_item(v: Option<&HeaderValue>) -> Option<&str> {
    let first = v?.to_str().ok()?.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// `proto=` and `host=` of the first element of an RFC 7239 `Forwarded`.
fn forwarded_proto_host(req: &RequestHeader) -> (Option<&str>, Option<&str>) {
    let Some(first) = first_list_item(req.headers.get(&FORWARDED)) else {
        return (None, None);
    };
    let (mut proto, mut host) = (None, None);
    for pair in first.split(';') {
        if let Some((k, v)) = pair.split_once('=') {
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "proto" => proto = Some(v),
                "host" => host = Some(v),
                _ => {}
            }
        }
    }
    (proto, host)
}

/// Forwarding headers as they go upstream, in the spelling of nginx's
/// registry recipe (Pingora writes a name in the case it is given).
const X_FORWARDED_FOR_TITLE: &str = "X-Forwarded-For";
const X_FORWARDED_HOST_TITLE: &str = "X-Forwarded-Host";
const X_FORWARDED_PROTO_TITLE: &str = "X-Forwarded-Proto";
const X_REAL_IP_TITLE: &str = "X-Real-IP";

/// Sets the forwarding headers and Host of the request sent upstream.
pub fn prepare_upstream_request(
    req: &mut RequestHeader,
    view: &ClientView,
    host_mode: HostHeaderMode,
    upstream_authority: &HeaderValue,
) {
    // Most requests carry no forwarding headers at all: one pass over the
    // names spares a hash lookup for each header that might need removing.
    if req.headers.keys().any(is_forwarding_header) {
        req.remove_header(&FORWARDED);
        if !view.trusted {
            // Every X-Forwarded-* of an untrusted client goes, including
            // spellings no list names (X-Forwarded-Scheme, ...); the ones
            // the gateway vouches for are set again below.
            let names: Vec<HeaderName> = req
                .headers
                .keys()
                .filter(|n| is_forwarding_header(n))
                .cloned()
                .collect();
            for name in names {
                req.remove_header(&name);
            }
        }
        if view.authority.is_none() {
            req.remove_header(&X_FORWARDED_HOST);
        }
    }
    let ip = view.ip.map(ip_header_value);
    if view.trusted {
        match (req.headers.get(&X_FORWARDED_FOR), &ip) {
            (Some(prev), Some(ip)) => {
                let chain = prev
                    .to_str()
                    .ok()
                    .and_then(|p| HeaderValue::from_str(&format!("{p}, {}", ip.to_str().unwrap_or_default())).ok());
                set_or_remove(req, X_FORWARDED_FOR_TITLE, &X_FORWARDED_FOR, chain);
            }
            // A chain that is not text cannot be extended or trusted.
            (Some(prev), None) if prev.to_str().is_err() => {
                req.remove_header(&X_FORWARDED_FOR);
            }
            (Some(_), None) | (None, None) => {}
            (None, Some(ip)) => set_or_remove(req, X_FORWARDED_FOR_TITLE, &X_FORWARDED_FOR, Some(ip.clone())),
        }
        if !req.headers.contains_key(&X_REAL_IP) && ip.is_some() {
            set_or_remove(req, X_REAL_IP_TITLE, &X_REAL_IP, ip);
        }
    } else {
        set_or_remove(req, X_FORWARDED_FOR_TITLE, &X_FORWARDED_FOR, ip.clone());
        set_or_remove(req, X_REAL_IP_TITLE, &X_REAL_IP, ip);
    }
    let _ = req.insert_header(X_FORWARDED_PROTO_TITLE, HeaderValue::from_static(view.scheme.as_str()));
    if let Some(a) = &view.authority {
        let _ = req.insert_header(X_FORWARDED_HOST_TITLE, a.clone());
    }
    match host_mode {
        HostHeaderMode::Upstream => {
            let _ = req.insert_header(HOST, upstream_authority.clone());
        }
        // HTTP/2 clients send :authority only; HTTP/1.1 upstreams need Host.
        HostHeaderMode::Client if req.headers.get(HOST).is_none() => {
            if let Some(a) = &view.authority {
                let _ = req.insert_header(HOST, a.clone());
            }
        }
        HostHeaderMode::Client => {}
    }
}

/// `Forwarded` and the `X-Forwarded-*` family (lower-case, as `http` keeps names).
fn is_forwarding_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == "forwarded" || n.starts_with("x-forwarded-")
}

/// The client address as a header value.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).expect("an IPv6 address is a valid header value");
    };
    let (buf, n) = ipv4_text(v4);
    HeaderValue::from_bytes(&buf[..n]).expect("digits and dots are a valid header value")
}

/// Dotted-quad text of an IPv4 address and its length, written by hand:
/// `Display` goes through the formatter machinery, which showed up per
/// request in profiles.
pub(crate) fn ipv4_text(ip: std::net::Ipv4Addr) -> ([u8; 15], usize) {
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    (buf, n)
}

fn set_or_remove(req: &mut RequestHeader, title: &'static str, name: &HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            let _ = req.insert_header(title, v);
        }
        None => {
            req.remove_header(name);
        }
    }
}

/// The client-facing form of a `Location` that points at the upstream (or
/// at the address the upstream was told the client used), with the
/// upstream's path prefix taken off. Anything else, such as a redirect to
/// object storage with a signed URL, is left alone: `None`.
pub fn rewrite_location(
    location: &[u8],
    upstream_authority: &str,
    path_prefix: &str,
    view: &ClientView,
) -> Option<HeaderValue> {
    let client_authority = view.authority.as_ref()?.as_bytes();
    let (scheme_len, rest) = if location.len() >= 7 && location[..7].eq_ignore_ascii_case(b"http://") {
        (7, &location[7..])
    } else if location.len() >= 8 && location[..8].eq_ignore_ascii_case(b"https://") {
        (8, &location[8..])
    } else {
        // A relative Location keeps its form; only the prefix goes.
        let stripped = strip_prefix(location, path_prefix)?;
        return HeaderValue::from_bytes(stripped).ok();
    };
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let ours = authority.eq_ignore_ascii_case(upstream_authority.as_bytes())
        || authority.eq_ignore_ascii_case(client_authority);
    if !ours {
        return None;
    }
    let stripped = strip_prefix(tail, path_prefix);
    let scheme = view.scheme.as_str();
    if stripped.is_none()
        && authority == client_authority
        && location[..scheme_len - 3].eq_ignore_ascii_case(scheme.as_bytes())
    {
        return None; // already client-facing
    }
    let tail = stripped.unwrap_or(tail);
    let mut out = Vec::with_capacity(scheme.len() + 3 + client_authority.len() + tail.len());
    out.extend_from_slice(scheme.as_bytes());
    out.extend_from_slice(b"://");
    out.extend_from_slice(client_authority);
    out.extend_from_slice(tail);
    HeaderValue::from_bytes(&out).ok()
}

/// `path` without `prefix` when it starts with `prefix/`.
fn strip_prefix<'a>(path: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    if prefix.is_empty() {
        return None;
    }
    let rest = path.strip_prefix(prefix.as_bytes())?;
    rest.starts_with(b"/").then_some(rest)
}

/// The upstream's request target: the client's, under the upstream's path
/// prefix. `None` when there is no prefix (the target is forwarded as is).
pub fn prefixed_target(path_and_query: &str, path_prefix: &str) -> Option<http::Uri> {
    if path_prefix.is_empty() {
        return None;
    }
    let mut target = String::with_capacity(path_prefix.len() + path_and_query.len());
    target.push_str(path_prefix);
    target.push_str(path_and_query);
    http::Uri::try_from(target).ok()
}

/// Applies Location rewriting and the API version header to a response
/// from the replica at `authority` (serving under `path_prefix`).
pub fn prepare_client_response(
    resp: &mut ResponseHeader,
    authority: &str,
    path_prefix: &str,
    view: &ClientView,
    v2: bool,
) {
    if let Some(new) = resp
        .headers
        .get(LOCATION)
        .and_then(|loc| rewrite_location(loc.as_bytes(), authority, path_prefix, view))
    {
        let _ = resp.insert_header(LOCATION, new);
    }
    if v2 && !resp.headers.contains_key(&API_VERSION) {
        let _ = resp.insert_header(API_VERSION_TITLE, API_VERSION_VALUE);
    }
}

/// Where a plain-HTTP request is sent on a redirecting listener: the same
/// host (its port replaced) on `https_port`, same path and query.
pub fn https_redirect_location(authority: &str, https_port: u16, path_and_query: &str) -> String {
    let host = match authority.rsplit_once(':') {
        // `[::1]:80` and `host:80`, but not a bare IPv6 literal's colons.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']')) => h,
        _ => authority,
    };
    if https_port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{https_port}{path_and_query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v2/x/blobs/uploads/", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
        req.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn client_addresses_are_written_as_std_writes_them() {
        for a in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "::ffff:10.1.2.3",
            "2001:db8::5",
        ] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(ip_header_value(a).to_str().unwrap(), a.to_string());
        }
    }

    #[test]
    fn forwarding_headers_go_upstream_in_nginx_spelling() {
        let mut req = request(&[("Host", "gw.example")]);
        let view = ClientView::from_request(&req, ip("10.0.0.7"), Scheme::Https, false);
        prepare_upstream_request(
            &mut req,
            &view,
            HostHeaderMode::Client,
            &HeaderValue::from_static("up:5000"),
        );
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        for line in [
            "X-Forwarded-For: 10.0.0.7",
            "X-Real-IP: 10.0.0.7",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: gw.example",
        ] {
            assert!(wire.contains(line), "{line:?} not in {wire:?}");
        }
    }

    #[test]
    fn untrusted_client_forwarding_headers_are_replaced() {
        let mut req = request(&[
            ("Host", "gw.example:5000"),
            ("Forwarded", "for=1.2.3.4;proto=https;host=evil.example"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-Scheme", "https"),
            ("X-Forwarded-Uri", "/admin"),
            ("X-Real-IP", "6.6.6.6"),
        ]);
        let view = ClientView::from_request(&req, ip("10.1.2.3"), Scheme::Http, false);
        assert_eq!(view.authority.as_ref().unwrap(), "gw.example:5000");
        let up = HeaderValue::from_static("127.0.0.1:15000");
        prepare_upstream_request(&mut req, &view, HostHeaderMode::Client, &up);
        assert_eq!(header(&req, "forwarded"), None);
        assert_eq!(header(&req, "x-forwarded-port"), None);
        assert_eq!(
            header(&req, "x-forwarded-scheme"),
            None,
            "found by fuzzing forwarding_headers"
        );
        assert_eq!(header(&req, "x-forwarded-uri"), None);
        assert_eq!(header(&req, "host"), Some("gw.example:5000"));
        assert_eq!(header(&req, "x-forwarded-host"), Some("gw.example:5000"));
        assert_eq!(header(&req, "x-forwarded-proto"), Some("http"));
        assert_eq!(header(&req, "x-forwarded-for"), Some("10.1.2.3"));
        assert_eq!(header(&req, "x-real-ip"), Some("10.1.2.3"));
    }

    #[test]
    fn trusted_proxy_headers_are_believed() {
        let mut req = request(&[
            ("Host", "internal:5000"),
            ("X-Forwarded-Host", "registry.example:8443, other"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "203.0.113.9"),
        ]);
        let view = ClientView::from_request(&req, ip("10.0.0.2"), Scheme::Http, true);
        assert_eq!(view.scheme, Scheme::Https);
        assert_eq!(view.authority.as_ref().unwrap(), "registry.example:8443");
        let up = HeaderValue::from_static("127.0.0.1:15000");
        prepare_upstream_request(&mut req, &view, HostHeaderMode::Upstream, &up);
        assert_eq!(header(&req, "host"), Some("127.0.0.1:15000"));
        assert_eq!(header(&req, "x-forwarded-for"), Some("203.0.113.9, 10.0.0.2"));
        assert_eq!(header(&req, "x-forwarded-host"), Some("registry.example:8443"));
        assert_eq!(header(&req, "x-forwarded-proto"), Some("https"));
        assert_eq!(header(&req, "x-real-ip"), Some("10.0.0.2"));
    }

    #[test]
    fn trusted_forwarded_header_is_translated_not_passed() {
        let mut req = request(&[
            ("Host", "internal"),
            ("Forwarded", "for=1.2.3.4;proto=https;host=\"r.example\""),
        ]);
        let view = ClientView::from_request(&req, ip("10.0.0.2"), Scheme::Http, true);
        assert_eq!(view.scheme, Scheme::Https);
        assert_eq!(view.authority.as_ref().unwrap(), "r.example");
        let up = HeaderValue::from_static("u:1");
        prepare_upstream_request(&mut req, &view, HostHeaderMode::Client, &up);
        assert_eq!(header(&req, "forwarded"), None);
        assert_eq!(header(&req, "x-forwarded-host"), Some("r.example"));
    }

    #[test]
    fn https_redirects_keep_host_path_and_query() {
        assert_eq!(
            https_redirect_location("r.example:80", 443, "/v2/?a=b"),
            "https://r.example/v2/?a=b"
        );
        assert_eq!(
            https_redirect_location("r.example", 5443, "/v2/"),
            "https://r.example:5443/v2/"
        );
        assert_eq!(
            https_redirect_location("[::1]:5000", 5443, "/v2/"),
            "https://[::1]:5443/v2/"
        );
        assert_eq!(https_redirect_location("[::1]", 443, "/"), "https://[::1]/");
    }

    fn view(authority: &str, scheme: Scheme) -> ClientView {
        ClientView {
            scheme,
            authority: Some(HeaderValue::from_str(authority).unwrap()),
            ip: None,
            trusted: false,
        }
    }

    fn rw(loc: &str, v: &ClientView) -> Option<String> {
        rewrite_location(loc.as_bytes(), "127.0.0.1:15000", "", v).map(|h| h.to_str().unwrap().to_owned())
    }

    #[test]
    fn the_upstream_path_prefix_is_added_to_targets_and_taken_off_locations() {
        assert_eq!(prefixed_target("/v2/x?n=1", ""), None);
        assert_eq!(
            prefixed_target("/v2/x?n=1", "/mirror").unwrap().to_string(),
            "/mirror/v2/x?n=1"
        );
        let v = view("gw.example:5000", Scheme::Https);
        let rw = |loc: &str| {
            rewrite_location(loc.as_bytes(), "127.0.0.1:15000", "/mirror", &v).map(|h| h.to_str().unwrap().to_owned())
        };
        let want = Some("https://gw.example:5000/v2/x/blobs/uploads/u1?_state=s".to_owned());
        assert_eq!(rw("http://127.0.0.1:15000/mirror/v2/x/blobs/uploads/u1?_state=s"), want);
        // Built from the forwarded client address, prefix still on.
        assert_eq!(
            rw("https://gw.example:5000/mirror/v2/x/blobs/uploads/u1?_state=s"),
            want
        );
        assert_eq!(
            rw("/mirror/v2/x/blobs/uploads/u1"),
            Some("/v2/x/blobs/uploads/u1".to_owned())
        );
        // Not under the prefix, or only sharing its first letters: untouched.
        assert_eq!(rw("/v2/x/blobs/uploads/u1"), None);
        assert_eq!(rw("/mirrored/v2/x"), None);
        assert_eq!(rw("https://gw.example:5000/v2/x"), None);
        assert_eq!(rw("https://s3.example/bucket/mirror/v2/x?sig=1"), None);
    }

    #[test]
    fn location_pointing_at_upstream_becomes_client_facing() {
        let v = view("gw.example:5000", Scheme::Http);
        assert_eq!(
            rw("http://127.0.0.1:15000/v2/x/blobs/uploads/u1?_state=a%2Fb&x=1", &v).as_deref(),
            Some("http://gw.example:5000/v2/x/blobs/uploads/u1?_state=a%2Fb&x=1")
        );
        let tls = view("gw.example", Scheme::Https);
        assert_eq!(
            rw("http://gw.example/v2/", &tls).as_deref(),
            Some("https://gw.example/v2/")
        );
        assert_eq!(
            rw("HTTP://127.0.0.1:15000", &tls).as_deref(),
            Some("https://gw.example")
        );
    }

    #[test]
    fn foreign_and_relative_locations_pass_untouched() {
        let v = view("gw.example:5000", Scheme::Http);
        assert_eq!(rw("https://bucket.s3.example/blob?X-Amz-Signature=abc", &v), None);
        assert_eq!(rw("/v2/x/blobs/uploads/u1", &v), None);
        assert_eq!(rw("http://gw.example:5000/v2/", &v), None, "already right");
        assert_eq!(rw("http://127.0.0.1:150001/v2/", &v), None);
    }
}
