//! Forwarding headers toward the upstream: `ClientView::from_request` and
//! `rewrite::prepare_upstream_request`, for untrusted and trusted peers.
//!
//! Input: one control byte (peer address kind, connection scheme, Host
//! header mode), then a request head as `METHOD TARGET` and `name: value`
//! lines (see `fuzz_support::lenient_head`; lines `RequestHeader` refuses
//! are skipped).
//!
//! For an untrusted peer nothing the client wrote in `Forwarded` or
//! `X-Forwarded-*` may reach the upstream: `Forwarded`, `X-Forwarded-Port`,
//! `-Prefix`, `-Server`, `-Ssl` are gone and `-For`, `-Proto`, `-Host` carry
//! what the gateway decided. Other `X-Forwarded-*` names (`-Scheme`,
//! `-Uri`, ...) pass through today: asserted only with FUZZ_STRICT=1 (see
//! README.md, "Known findings").
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fuzz_support::{lenient_head, take_byte};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;
use registry_gateway::config::HostHeaderMode;
use registry_gateway::rewrite::{ClientView, Scheme, prepare_upstream_request, request_authority};

const SET_BY_GATEWAY: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];
const REMOVED_FOR_UNTRUSTED: [&str; 5] =
    ["forwarded", "x-forwarded-port", "x-forwarded-prefix", "x-forwarded-server", "x-forwarded-ssl"];

fuzz_target!(|data: &[u8]| {
    let (ctl, head) = take_byte(data);
    let Some(original) = lenient_head(head) else {
        return;
    };
    let ip = match ctl & 3 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        2 => Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5))),
        _ => Some(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped())),
    };
    let conn = if ctl & 4 == 0 { Scheme::Http } else { Scheme::Https };
    let mode = if ctl & 8 == 0 { HostHeaderMode::Client } else { HostHeaderMode::Upstream };
    let upstream_authority = HeaderValue::from_static("127.0.0.1:15000");

    for trusted in [false, true] {
        let view = ClientView::from_request(&original, ip, conn, trusted);
        assert_eq!(view.trusted, trusted);
        assert_eq!(view.ip, ip);
        if !trusted {
            assert_eq!(view.scheme, conn, "untrusted peer changed the scheme");
            assert_eq!(view.authority, request_authority(&original), "untrusted peer changed the authority");
        }
        let mut req = original.clone();
        prepare_upstream_request(&mut req, &view, mode, &upstream_authority);

        assert!(req.headers.get("forwarded").is_none(), "Forwarded reached the upstream");
        assert_eq!(one(&req, "x-forwarded-proto"), Some(view.scheme.as_str().as_bytes()));
        if let Some(a) = &view.authority {
            assert_eq!(one(&req, "x-forwarded-host"), Some(a.as_bytes()));
        }
        match mode {
            HostHeaderMode::Upstream => assert_eq!(one(&req, "host"), Some(upstream_authority.as_bytes())),
            HostHeaderMode::Client => {
                if original.headers.get("host").is_none() {
                    assert_eq!(req.headers.get("host"), view.authority.as_ref());
                } else {
                    assert_eq!(req.headers.get_all("host").iter().count(), original.headers.get_all("host").iter().count());
                }
            }
        }
        let ip_text = ip.map(|ip| ip.to_string());
        if trusted {
            // The chain is extended with the peer, never replaced.
            if let (Some(ip), Some(xff)) = (&ip_text, req.headers.get("x-forwarded-for")) {
                assert!(xff.as_bytes().ends_with(ip.as_bytes()), "{xff:?} does not end with the peer {ip}");
            }
            continue;
        }
        // Untrusted: the gateway's values only.
        for name in REMOVED_FOR_UNTRUSTED {
            assert!(req.headers.get(name).is_none(), "client's {name} reached the upstream");
        }
        assert_eq!(one(&req, "x-forwarded-for"), ip_text.as_deref().map(str::as_bytes));
        assert_eq!(one(&req, "x-real-ip"), ip_text.as_deref().map(str::as_bytes));
        if view.authority.is_none() {
            assert!(req.headers.get("x-forwarded-host").is_none(), "client's X-Forwarded-Host reached the upstream");
        }
        if fuzz_support::strict() {
            for name in req.headers.keys() {
                let n = name.as_str();
                assert!(
                    !n.starts_with("x-forwarded-") || SET_BY_GATEWAY.contains(&n),
                    "client's {n} reached the upstream"
                );
            }
        }
        check_wire(&req);
    }
});

/// The value of a header that must appear exactly once.
fn one<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    let mut all = req.headers.get_all(name).iter();
    let first = all.next()?;
    assert!(all.next().is_none(), "{name} appears more than once");
    Some(first.as_bytes())
}

/// What goes on the wire toward the upstream is well-formed HTTP/1.
fn check_wire(req: &RequestHeader) {
    let mut wire = Vec::new();
    req.header_to_h1_wire(&mut wire);
    let mut headers = [httparse::EMPTY_HEADER; 512];
    let mut parsed = httparse::Request::new(&mut headers);
    let mut full = wire.clone();
    full.extend_from_slice(b"\r\n");
    // The request line is written by Pingora separately; parse the fields
    // behind a stand-in request line.
    let mut with_line = b"GET / HTTP/1.1\r\n".to_vec();
    with_line.extend_from_slice(&full);
    match parsed.parse(&with_line) {
        Ok(httparse::Status::Complete(_)) => {
            assert_eq!(parsed.headers.len(), req.headers.len(), "header count changed on the wire");
        }
        other => panic!("upstream head does not parse: {other:?}: {:?}", String::from_utf8_lossy(&wire)),
    }
}
