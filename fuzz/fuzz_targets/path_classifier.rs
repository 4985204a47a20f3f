//! Request paths: `routing::classify` (route or rejection) and
//! `operation::classify` (registry operation, repository, reference), as
//! the proxy calls them: the route comes from the same path.
//!
//! Input: one byte choosing the method, then the path.
#![no_main]

use fuzz_support::take_byte;
use http::Method;
use libfuzzer_sys::fuzz_target;
use registry_gateway::operation::{self, Operation};
use registry_gateway::routing::{self, PathRejection, Route};

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

fuzz_target!(|data: &[u8]| {
    let (m, path) = take_byte(data);
    let method = &METHODS[usize::from(m) % METHODS.len()];
    let routed = routing::classify(path);
    if let Ok(route) = routed {
        check_accepted(path, route);
    }
    if routed == Err(PathRejection::Unknown) {
        // Only well-formed paths get as far as "unknown".
        assert!(path.starts_with(b"/"));
    }
    // The proxy hands operation::classify `uri.path()`, a str.
    let Ok(text) = std::str::from_utf8(path) else {
        return;
    };
    let req = operation::classify(method, routed.ok(), text);
    let range = text.as_bytes().as_ptr_range();
    for part in [req.repository, req.reference] {
        assert!(
            part.is_empty() || range.contains(&part.as_ptr()),
            "{part:?} is not borrowed from the path"
        );
        assert!(text.contains(part));
    }
    assert!(!req.reference.contains('/'), "reference {:?} has a slash", req.reference);
    match routed {
        Ok(Route::Ping) => assert_eq!(req.operation, Operation::Ping),
        Ok(Route::V1) => assert_eq!(req.operation, Operation::V1),
        Ok(Route::V2) => assert!(!matches!(req.operation, Operation::Ping | Operation::V1)),
        Err(_) => assert_eq!(req.operation, Operation::Other),
    }
    // Operations that name a repository only come from V2 paths that have one.
    if !req.repository.is_empty() {
        assert_eq!(routed, Ok(Route::V2));
    }
    let expect_method: &[Method] = match req.operation {
        Operation::ManifestGet | Operation::BlobGet => &[Method::GET],
        Operation::ManifestHead | Operation::BlobHead => &[Method::HEAD],
        Operation::ManifestPut | Operation::UploadComplete => &[Method::PUT],
        Operation::ManifestDelete | Operation::BlobDelete | Operation::UploadCancel => &[Method::DELETE],
        Operation::UploadStart => &[Method::POST],
        Operation::UploadChunk => &[Method::PATCH],
        Operation::Base | Operation::Catalog | Operation::TagsList | Operation::Referrers | Operation::UploadStatus => {
            &[Method::GET, Method::HEAD]
        }
        Operation::Ping | Operation::V1 | Operation::Other => &METHODS,
    };
    assert!(expect_method.contains(method), "{method} {text:?} -> {:?}", req.operation);
    let _ = req.operation.as_str();
    assert!(req.operation.index() < Operation::COUNT);
});

/// A path that routes is forwarded byte for byte: nothing in it may change
/// meaning between the gateway and the upstream.
fn check_accepted(path: &[u8], route: Route) {
    assert!(path.starts_with(b"/"), "{path:?}");
    let rest = &path[1..];
    let segments: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(*seg != b"." && *seg != b"..", "dot segment in accepted {path:?}");
        assert!(!seg.is_empty() || i + 1 == segments.len(), "empty segment in accepted {path:?}");
    }
    assert!(!path.contains(&0) && !path.contains(&b'\\'), "NUL or backslash in accepted {path:?}");
    let lower = path.to_ascii_lowercase();
    for bad in [&b"%2f"[..], b"%5c", b"%00", b"%2e"] {
        assert!(!lower.windows(3).any(|w| w == bad), "encoded {bad:?} in accepted {path:?}");
    }
    // Every `%` starts a complete escape.
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            assert!(
                path.len() >= i + 3 && path[i + 1].is_ascii_hexdigit() && path[i + 2].is_ascii_hexdigit(),
                "bad escape in accepted {path:?}"
            );
            i += 3;
        } else {
            i += 1;
        }
    }
    let want = match path {
        b"/_ping" | b"/v1/_ping" => Route::Ping,
        p if p == b"/v2" || p.starts_with(b"/v2/") => Route::V2,
        _ => Route::V1,
    };
    assert_eq!(route, want, "{path:?}");
}
