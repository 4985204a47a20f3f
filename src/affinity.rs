//! Upload affinity: every request of a blob upload goes to the upstream that
//! started it, also after a reload moved the route elsewhere.
//!
//! The upload URL handed to the client carries a hint naming that upstream
//! (`_gw=<key>`, the key derived from the upstream's URL, so every gateway
//! process with the same upstream computes the same one). The hint is
//! stripped before forwarding and only ever selects among upstreams the
//! same virtual registry has used, so a client cannot steer a request
//! anywhere else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;
use sha2::{Digest, Sha256};

/// The query parameter carrying the hint.
pub const PARAM: &str = "_gw";

/// The hint for an upstream at `url`: 12 hex digits of its SHA-256.
pub fn upstream_key(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hint in a request's query, if any.
pub fn hint(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(PARAM)?.strip_prefix('='))
}

/// `path_and_query` without the hint parameter.
pub fn strip(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            !(pair
                .strip_prefix(PARAM)
                .is_some_and(|r| r.is_empty() || r.starts_with('=')))
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// `location` with the hint `key` added when it is an upload session's URL
/// (`.../blobs/uploads/<id>`); `None` otherwise.
pub fn tag_location(location: &[u8], key: &str) -> Option<HeaderValue> {
    let text = std::str::from_utf8(location).ok()?;
    let (before_fragment, fragment) = match text.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (text, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    let (_, id) = path.rsplit_once("/blobs/uploads/")?;
    if id.is_empty() || id.contains('/') || hint(query).is_some() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + PARAM.len() + key.len() + 2);
    out.push_str(before_fragment);
    match query {
        Some(q) if !q.is_empty() => out.push('&'),
        Some(_) => {} // a bare `?` already ends the URL
        None => out.push('?'),
    }
    out.push_str(PARAM);
    out.push('=');
    out.push_str(key);
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    HeaderValue::from_str(&out).ok()
}

/// A push is several uploads and a manifest PUT. When an upload that
/// started before a reload continues on its old upstream, the rest of that
/// push (blob checks, further uploads, the manifest) follows it there
/// while writes keep coming; after this long without one, the repository
/// takes the new route.
pub const PIN_IDLE: Duration = Duration::from_secs(60);

/// Repositories whose pushes straddle a reload, and the upstream each one
/// stays on. Empty (one atomic load per request) except after a reload
/// that moved a registry.
#[derive(Debug)]
pub struct RepositoryPins<T> {
    any: AtomicBool,
    pins: Mutex<HashMap<String, (T, Instant)>>,
}

impl<T> Default for RepositoryPins<T> {
    fn default() -> Self {
        RepositoryPins {
            any: AtomicBool::new(false),
            pins: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> RepositoryPins<T> {
    #[inline]
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Relaxed)
    }

    /// Keeps `repository` on `target` for [`PIN_IDLE`] from now.
    pub fn pin(&self, repository: &str, target: T) {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.insert(repository.to_owned(), (target, Instant::now()));
        self.any.store(true, Ordering::Relaxed);
    }

    /// Where `repository` is pinned; a write renews the pin.
    pub fn get(&self, repository: &str, write: bool) -> Option<T> {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        pins.retain(|_, (_, at)| now.duration_since(*at) < PIN_IDLE);
        self.any.store(!pins.is_empty(), Ordering::Relaxed);
        let (target, at) = pins.get_mut(repository)?;
        if write {
            *at = now;
        }
        Some(target.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_hold_a_repository_and_clear_when_idle() {
        let pins = RepositoryPins::default();
        assert!(pins.is_empty());
        pins.pin("team/app", 7);
        assert!(!pins.is_empty());
        assert_eq!(pins.get("team/app", false), Some(7));
        assert_eq!(pins.get("team/other", true), None);
        pins.pins.lock().unwrap().get_mut("team/app").unwrap().1 -= PIN_IDLE;
        assert_eq!(pins.get("team/app", false), None);
        assert!(pins.is_empty());
    }

    #[test]
    fn keys_are_stable_and_differ_per_url() {
        let a = upstream_key("http://127.0.0.1:5000");
        assert_eq!(a, upstream_key("http://127.0.0.1:5000"));
        assert_eq!(a.len(), 12);
        assert_ne!(a, upstream_key("http://127.0.0.1:5001"));
    }

    #[test]
    fn upload_locations_get_the_hint_and_others_do_not() {
        let tag = |l: &str| tag_location(l.as_bytes(), "abc").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            tag("/v2/a/b/blobs/uploads/u-1?_state=x").as_deref(),
            Some("/v2/a/b/blobs/uploads/u-1?_state=x&_gw=abc")
        );
        assert_eq!(
            tag("https://h:5443/v2/a/blobs/uploads/u-1").as_deref(),
            Some("https://h:5443/v2/a/blobs/uploads/u-1?_gw=abc")
        );
        assert_eq!(
            tag("/v2/a/blobs/uploads/u-1?").as_deref(),
            Some("/v2/a/blobs/uploads/u-1?_gw=abc")
        );
        assert_eq!(tag("/v2/a/blobs/uploads/"), None);
        assert_eq!(tag("/v2/a/blobs/sha256:00"), None);
        assert_eq!(tag("/v2/a/manifests/latest"), None);
        assert_eq!(tag("/v2/a/blobs/uploads/u-1?_gw=old"), None);
    }

    #[test]
    fn the_hint_is_found_and_stripped_alone() {
        assert_eq!(hint(Some("_state=x&_gw=abc&digest=d")), Some("abc"));
        assert_eq!(hint(Some("_gwx=abc")), None);
        assert_eq!(hint(None), None);
        assert_eq!(
            strip("/v2/a/blobs/uploads/u?_state=x&_gw=abc&digest=d"),
            "/v2/a/blobs/uploads/u?_state=x&digest=d"
        );
        assert_eq!(strip("/v2/a/blobs/uploads/u?_gw=abc"), "/v2/a/blobs/uploads/u");
        assert_eq!(strip("/v2/a/blobs/uploads/u?_gwx=1"), "/v2/a/blobs/uploads/u?_gwx=1");
    }
}
