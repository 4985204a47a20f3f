//! Which route a request path takes.
//!
//! Paths are checked once here and then forwarded byte for byte: a path is
//! either a well-formed registry path or rejected, never rewritten, so what
//! the routing (and later auth) decided on is exactly what the upstream sees.

/// The kinds of path the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/v2`, `/v2/...`: the registry API.
    V2,
    /// `/_ping` and `/v1/_ping`: liveness probes of old clients.
    Ping,
    /// Other `/v1/...` paths: the legacy API, only where configured.
    V1,
}

/// Why a path gets no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRejection {
    /// A path no registry serves (`/`, `/admin`).
    Unknown,
    /// Dot or empty segments, encoded separators or NUL, bad escapes:
    /// no registry name or reference contains them.
    Malformed,
}

/// Classifies a request path (without its query string).
pub fn classify(path: &[u8]) -> Result<Route, PathRejection> {
    check_segments(path)?;
    let route = match path {
        b"/v2" => Route::V2,
        p if p.starts_with(b"/v2/") => Route::V2,
        b"/_ping" | b"/v1/_ping" => Route::Ping,
        b"/v1" => Route::V1,
        p if p.starts_with(b"/v1/") => Route::V1,
        _ => return Err(PathRejection::Unknown),
    };
    Ok(route)
}

fn check_segments(path: &[u8]) -> Result<(), PathRejection> {
    let Some(rest) = path.strip_prefix(b"/") else {
        return Err(PathRejection::Malformed);
    };
    let mut segments = rest.split(|b| *b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        // A trailing slash (`/v2/`, `.../uploads/`) is part of the API.
        if seg.is_empty() && !last {
            return Err(PathRejection::Malformed);
        }
        if seg == b"." || seg == b".." {
            return Err(PathRejection::Malformed);
        }
        check_bytes(seg)?;
    }
    Ok(())
}

fn check_bytes(seg: &[u8]) -> Result<(), PathRejection> {
    let mut i = 0;
    while i < seg.len() {
        match seg[i] {
            b'\\' | 0 => return Err(PathRejection::Malformed),
            b'%' => {
                let hex = seg.get(i + 1..i + 3).ok_or(PathRejection::Malformed)?;
                let byte = decode_hex(hex).ok_or(PathRejection::Malformed)?;
                if matches!(byte, b'.' | b'/' | b'\\' | 0) {
                    return Err(PathRejection::Malformed);
                }
                i += 3;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn decode_hex(hex: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(digit(hex[0])? << 4 | digit(hex[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> Result<Route, PathRejection> {
        classify(p.as_bytes())
    }

    #[test]
    fn registry_paths_route() {
        for p in [
            "/v2",
            "/v2/",
            "/v2/_catalog",
            "/v2/library/alpine/manifests/latest",
            "/v2/a/b/c/blobs/sha256:0123abcd",
            "/v2/repo/blobs/uploads/",
            "/v2/repo/blobs/uploads/3f0e-11",
            "/v2/my.repo/tags/list",
            "/v2/a..b/tags/list",
        ] {
            assert_eq!(c(p), Ok(Route::V2), "{p}");
        }
        assert_eq!(c("/_ping"), Ok(Route::Ping));
        assert_eq!(c("/v1/_ping"), Ok(Route::Ping));
        assert_eq!(c("/v1/search"), Ok(Route::V1));
        assert_eq!(c("/v1"), Ok(Route::V1));
    }

    #[test]
    fn other_paths_are_unknown() {
        for p in ["/", "/admin", "/v3/", "/v2x", "/V2/", "/_ping/x", "/favicon.ico"] {
            assert_eq!(c(p), Err(PathRejection::Unknown), "{p}");
        }
    }

    #[test]
    fn traversal_and_encoded_separators_are_malformed() {
        for p in [
            "",
            "v2/",
            "//v2/",
            "/v2//x",
            "/v2/../admin",
            "/v2/./x",
            "/v2/x/..",
            "/v2/%2e%2e/admin",
            "/v2/%2E%2E/admin",
            "/v2/a%2fb/tags/list",
            "/v2/a%2Fb/tags/list",
            "/v2/a%5cb",
            "/v2/a%00",
            "/v2/a\\b",
            "/v2/a%zz",
            "/v2/a%2",
            "/v2/%2e/x",
        ] {
            assert_eq!(c(p), Err(PathRejection::Malformed), "{p:?}");
        }
        // Other escapes are not separators; registry:2 itself rejects them.
        assert_eq!(c("/v2/a%41/tags/list"), Ok(Route::V2));
    }
}
