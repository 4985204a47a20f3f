//! Location rewriting toward the client (`rewrite::rewrite_location`), the
//! upstream request target under a path prefix (`rewrite::prefixed_target`)
//! and the HTTPS redirect (`rewrite::https_redirect_location`).
//!
//! Input: one control byte (client view, upstream prefix, HTTPS port), then
//! the bytes used as the Location value, the client's path and query, and
//! the client's authority for the redirect.
#![no_main]

use fuzz_support::take_byte;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use registry_gateway::rewrite::{ClientView, Scheme, https_redirect_location, prefixed_target, rewrite_location};

const UPSTREAM_AUTHORITY: &str = "127.0.0.1:15000";
/// What `UpstreamUrl` accepts as prefixes, and none.
const PREFIXES: [&str; 3] = ["", "/mirror", "/a/b-c"];
const CLIENT_AUTHORITIES: [&str; 4] = ["gw.example:5000", "gw.example", "[::1]:5443", "Registry.Example"];

fuzz_target!(|data: &[u8]| {
    let (ctl, rest) = take_byte(data);
    let prefix = PREFIXES[usize::from(ctl & 3) % PREFIXES.len()];
    let scheme = if ctl & 4 == 0 { Scheme::Http } else { Scheme::Https };
    let client = CLIENT_AUTHORITIES[usize::from(ctl >> 3 & 3)];
    let no_authority = ctl & 0x20 != 0;
    let view = ClientView {
        scheme,
        authority: (!no_authority).then(|| HeaderValue::from_static(client)),
        ip: None,
        trusted: ctl & 0x40 != 0,
    };

    if let Some(out) = rewrite_location(rest, UPSTREAM_AUTHORITY, prefix, &view) {
        assert!(!no_authority, "rewritten without a client authority");
        let out = out.as_bytes();
        let absolute = starts_with_ignore_case(rest, b"http://") || starts_with_ignore_case(rest, b"https://");
        if absolute {
            let want = format!("{}://{client}", scheme.as_str());
            assert!(out.starts_with(want.as_bytes()), "{out:?} does not point at {want}");
            let tail = &out[want.len()..];
            assert!(tail.is_empty() || matches!(tail[0], b'/' | b'?' | b'#'), "{out:?}: authority not ended");
            assert!(rest.ends_with(tail), "{out:?}: tail not from the Location");
        } else {
            // A relative Location only loses the upstream's prefix.
            assert!(!prefix.is_empty());
            assert!(out.starts_with(b"/"));
            let mut want = prefix.as_bytes().to_vec();
            want.extend_from_slice(out);
            assert_eq!(want, rest, "relative Location changed beyond its prefix");
        }
    }

    // The request target under the prefix: what the upstream sees.
    if let Ok(path_and_query) = std::str::from_utf8(rest) {
        match prefixed_target(path_and_query, prefix) {
            None => {}
            Some(uri) => {
                assert!(!prefix.is_empty());
                assert!(uri.authority().is_none() && uri.scheme().is_none(), "{uri} is not origin-form");
                assert!(uri.path().starts_with(prefix), "{uri} left the prefix {prefix}");
                if path_and_query.starts_with('/') {
                    assert!(uri.path()[prefix.len()..].starts_with('/'), "{uri} left the prefix {prefix}");
                }
            }
        }

        // The HTTPS redirect: host kept, port replaced, path and query kept.
        let (authority, pq) = match path_and_query.find('/') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, "/"),
        };
        let port = [443, 5443, 8443][usize::from(ctl >> 6) % 3];
        let location = https_redirect_location(authority, port, pq);
        assert!(location.starts_with("https://"));
        assert!(location.ends_with(pq));
        if port != 443 {
            assert!(location.ends_with(&format!(":{port}{pq}")), "{location:?}");
        }
    }
});

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}
