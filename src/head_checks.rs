//! Checks of a request head before anything routes on it: methods a
//! registry never serves, heads larger than any registry request needs, and
//! framing or Host values that proxies and backends may read differently.
//!
//! Pingora has already parsed the head with fixed caps of its own (1 MiB and
//! 256 headers, answered with a plain 400) and rejected a Transfer-Encoding
//! other than chunked, differing Content-Length values and a Host with
//! userinfo. What it lets through is checked here.

use http::Method;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

pub use crate::config::HeadLimits;

/// Why a head is refused; each maps to one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRejection {
    MethodNotAllowed,
    RequestLineTooLong,
    HeadersTooLarge(&'static str),
    /// Content-Length beside Transfer-Encoding (RFC 9112 6.3: a smuggling
    /// shape), or a Host whose port is not 1-65535.
    Malformed(&'static str),
}

/// `raw_head`: the head's bytes as received (HTTP/1); `None` for HTTP/2,
/// whose sizes are counted from the parsed fields.
pub fn check(req: &RequestHeader, raw_head: Option<&[u8]>, limits: &HeadLimits) -> Result<(), HeadRejection> {
    if !is_registry_method(&req.method) {
        return Err(HeadRejection::MethodNotAllowed);
    }
    let target_len = req.raw_path().len();
    if req.method.as_str().len() + target_len + " HTTP/1.1".len() + 1 > limits.request_line {
        return Err(HeadRejection::RequestLineTooLong);
    }
    if req.headers.len() > limits.headers {
        return Err(HeadRejection::HeadersTooLarge("too many header lines"));
    }
    let mut block = 0;
    for (name, value) in &req.headers {
        let line = name.as_str().len() + 2 + value.len();
        if line > limits.header_line {
            return Err(HeadRejection::HeadersTooLarge("a header line is too long"));
        }
        block += line + 2;
    }
    if raw_head.map_or(block, <[u8]>::len) > limits.header_block {
        return Err(HeadRejection::HeadersTooLarge("request header block is too large"));
    }
    if let Some(raw) = raw_head {
        // Pingora drops Content-Length when Transfer-Encoding is present and
        // would forward the body chunked; the raw head still shows both.
        if req.headers.contains_key(TRANSFER_ENCODING) && has_header_line(raw, CONTENT_LENGTH.as_str().as_bytes()) {
            return Err(HeadRejection::Malformed("both Content-Length and Transfer-Encoding"));
        }
    }
    if let Some(host) = req.headers.get(http::header::HOST) {
        if !valid_host_port(host.as_bytes()) {
            return Err(HeadRejection::Malformed("Host port must be a number from 1 to 65535"));
        }
    }
    Ok(())
}

fn is_registry_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::OPTIONS
    )
}

/// Whether a header line named `name` (lower case) starts any line of `raw`.
fn has_header_line(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name) && {
            let rest = &line[name.len()..];
            rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b':')
        }
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with a port of 1-65535 if any.
fn valid_host_port(host: &[u8]) -> bool {
    let port = match host.first() {
        Some(b'[') => match host.iter().position(|&b| b == b']') {
            Some(end) => match &host[end + 1..] {
                [] => return true,
                [b':', port @ ..] => port,
                _ => return false,
            },
            None => return false,
        },
        _ => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[colon + 1..],
            None => return true,
        },
    };
    !port.is_empty()
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(port)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| (1..=65535).contains(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn methods_outside_the_registry_api_are_refused() {
        let l = HeadLimits::default();
        for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert_eq!(check(&req(m, "/v2/", &[]), None, &l), Ok(()), "{m}");
        }
        for m in ["TRACE", "PROPFIND", "FOO"] {
            assert_eq!(
                check(&req(m, "/v2/", &[]), None, &l),
                Err(HeadRejection::MethodNotAllowed),
                "{m}"
            );
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let l = HeadLimits::default();
        let long = format!("/v2/{}", "a".repeat(9000));
        assert_eq!(
            check(&req("GET", &long, &[]), None, &l),
            Err(HeadRejection::RequestLineTooLong)
        );
        let big = "b".repeat(17 << 10);
        assert!(matches!(
            check(&req("GET", "/v2/", &[("x-big", &big)]), None, &l),
            Err(HeadRejection::HeadersTooLarge(_))
        ));
        let many: Vec<(String, String)> = (0..101).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(matches!(
            check(&req("GET", "/v2/", &many), None, &l),
            Err(HeadRejection::HeadersTooLarge(_))
        ));
        let raw = vec![b'x'; (64 << 10) + 1];
        assert!(matches!(
            check(&req("GET", "/v2/", &[]), Some(&raw), &l),
            Err(HeadRejection::HeadersTooLarge(_))
        ));
    }

    #[test]
    fn content_length_beside_transfer_encoding_is_found_in_the_raw_head() {
        let l = HeadLimits::default();
        let r = req("PATCH", "/v2/x/blobs/uploads/u", &[("transfer-encoding", "chunked")]);
        let both = b"PATCH /v2/x/blobs/uploads/u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nCONTENT-LENGTH : 5\r\n\r\n";
        assert!(matches!(check(&r, Some(both), &l), Err(HeadRejection::Malformed(_))));
        let te_only =
            b"PATCH /v2/x/blobs/uploads/u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Content-Length-Note: 5\r\n\r\n";
        assert_eq!(check(&r, Some(te_only), &l), Ok(()));
    }

    #[test]
    fn host_ports_are_numbers_from_1_to_65535() {
        for ok in ["h", "h:1", "h:65535", "[::1]", "[::1]:5000", "1.2.3.4:80"] {
            assert!(valid_host_port(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "h:",
            "h:0",
            "h:65536",
            "h:99999999999",
            "h:8o",
            "[::1",
            "[::1]x",
            "[::1]:",
            "h:+80",
        ] {
            assert!(!valid_host_port(bad.as_bytes()), "{bad}");
        }
    }
}
