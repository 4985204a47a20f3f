//! Request-head checks before routing: `head_checks::check` with the head
//! as Pingora parses it (HTTP/1, raw bytes passed too) and as HTTP/2 would
//! deliver it (no raw bytes).
//!
//! Input: a raw HTTP/1 request head (anything after the blank line is the
//! body and ignored). Heads Pingora itself refuses are skipped.
#![no_main]

use fuzz_support::pingora_h1_head;
use http::Method;
use libfuzzer_sys::fuzz_target;
use registry_gateway::head_checks::{HeadLimits, HeadRejection, check};

fuzz_target!(|data: &[u8]| {
    let Some((req, len)) = pingora_h1_head(data) else {
        return;
    };
    let raw = &data[..len];
    let limits = HeadLimits::default();
    let h1 = check(&req, Some(raw), &limits);
    let h2 = check(&req, None, &limits);

    for result in [h1, h2] {
        match result {
            Ok(()) => {
                assert!(
                    matches!(
                        req.method,
                        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::OPTIONS
                    ),
                    "{} accepted",
                    req.method
                );
                assert!(req.method.as_str().len() + req.raw_path().len() + 10 <= limits.request_line);
                assert!(req.headers.len() <= limits.headers);
                if let Some(host) = req.headers.get("host") {
                    assert!(host_port_ok(host.as_bytes()), "Host {host:?} accepted");
                }
            }
            Err(HeadRejection::MethodNotAllowed) => assert!(!matches!(
                req.method,
                Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::OPTIONS
            )),
            Err(_) => {}
        }
    }
    // The raw head only adds checks: HTTP/1 never accepts what the parsed
    // fields alone refuse, except where the raw size is the smaller one.
    if h2 == Err(HeadRejection::MethodNotAllowed) || h2 == Err(HeadRejection::RequestLineTooLong) {
        assert_eq!(h1, h2);
    }
    if h1.is_ok() && h2.is_err() {
        assert!(matches!(h2, Err(HeadRejection::HeadersTooLarge(_))), "{h1:?} vs {h2:?}");
    }
    // Content-Length beside Transfer-Encoding is refused on HTTP/1.
    if h1.is_ok() {
        let te = req.headers.contains_key("transfer-encoding");
        let cl = raw
            .split(|&b| b == b'\n')
            .skip(1)
            .any(|line| line.len() > 15 && line[..14].eq_ignore_ascii_case(b"content-length") && line[14] == b':');
        assert!(!(te && cl), "Content-Length beside Transfer-Encoding accepted");
    }
});

/// An independent statement of the Host rule: a port, if any, is 1-65535.
fn host_port_ok(host: &[u8]) -> bool {
    let port: &[u8] = if host.first() == Some(&b'[') {
        let Some(end) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        match &host[end + 1..] {
            [] => return true,
            [b':', port @ ..] => port,
            _ => return false,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(i) => &host[i + 1..],
            None => return true,
        }
    };
    std::str::from_utf8(port)
        .ok()
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u64>().ok())
        .is_some_and(|p| (1..=65535).contains(&p))
}
