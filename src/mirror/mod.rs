//! Virtual registries as mirrors: `ns` routing to several upstreams
//! through one host, read-only mirrors (`push: deny`), and the cache that
//! answers blob and manifest reads itself ([`blobs`], [`manifests`]).
//! Works on upstreams and requests only; never on `VirtualRegistry`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pingora::prelude::*;
use pingora::proxy::Session;

use crate::cache::Store;
use crate::operation::Operation;
use crate::upstream::Upstream;

mod blobs;
mod manifests;
mod mapped;
pub mod respond;
mod upstream;

pub use respond::CacheStatus;

/// A registry's cache and how it treats tags.
#[derive(Debug)]
pub struct CacheUse {
    pub store: Arc<Store>,
    pub tag_ttl: Duration,
    pub max_stale: Duration,
    pub mismatch_backoff: Duration,
}

/// The mirror side of one virtual registry.
#[derive(Debug, Default)]
pub struct Mirror {
    /// Normalized `ns` value → upstream.
    pub ns: HashMap<String, Arc<Upstream>>,
    pub ns_in_path: bool,
    pub push_deny: bool,
    pub cache: Option<CacheUse>,
}

impl Mirror {
    /// For `check`: the `ns` map, `push: deny` and the cache.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut by_upstream: Vec<(&str, Vec<&str>)> = Vec::new();
        let mut keys: Vec<(&String, &Arc<Upstream>)> = self.ns.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, u) in keys {
            match by_upstream.iter_mut().find(|(n, _)| *n == u.name) {
                Some((_, ks)) => ks.push(k),
                None => by_upstream.push((&u.name, vec![k])),
            }
        }
        for (u, ks) in by_upstream {
            let how = if self.ns_in_path {
                "?ns= or first path segment"
            } else {
                "?ns="
            };
            out.push(format!("ns {} -> {u} ({how})", ks.join(", ")));
        }
        if self.push_deny {
            out.push("push: deny (writes get 405 UNSUPPORTED)".to_owned());
        }
        if let Some(c) = &self.cache {
            out.push(format!(
                "cache {} (max {} bytes, now {} bytes; tags revalidated after {:?}, served stale up to {:?})",
                c.store.label(),
                c.store.max_size(),
                c.store.size(),
                c.tag_ttl,
                c.max_stale
            ));
        }
        out
    }
}

/// Where `ns` sends a request.
#[derive(Debug)]
pub enum NsRoute<'a> {
    /// No `ns`: the route's upstream.
    Default,
    To {
        upstream: &'a Arc<Upstream>,
        /// The `/<ns>` path segment to remove after `/v2` (`ns_in_path`).
        path_segment: Option<&'a str>,
    },
    Unknown,
    /// `ns` given twice.
    Ambiguous,
}

impl Mirror {
    /// Routes by `?ns=` (containerd) or, with `ns_in_path`, by the first
    /// path segment. `ns` is only ever a key into the configured map.
    pub fn route<'a>(&'a self, path: &'a str, query: Option<&str>) -> NsRoute<'a> {
        if self.ns.is_empty() {
            return NsRoute::Default;
        }
        if let Some(q) = query {
            let mut values = crate::query::pairs(q).filter(|(k, _, _)| k == "ns").map(|(_, v, _)| v);
            if let Some(v) = values.next() {
                if values.next().is_some() {
                    return NsRoute::Ambiguous;
                }
                let norm = crate::config::normalize_ns(&v);
                return match norm.and_then(|n| self.ns.get(&n)) {
                    Some(upstream) => NsRoute::To {
                        upstream,
                        path_segment: None,
                    },
                    None => NsRoute::Unknown,
                };
            }
        }
        if self.ns_in_path
            && let Some(rest) = path.strip_prefix("/v2/")
            && let Some((first, after)) = rest.split_once('/')
            && !after.is_empty()
            && let Some(upstream) = crate::config::normalize_ns(first).and_then(|n| self.ns.get(&n))
        {
            return NsRoute::To {
                upstream,
                path_segment: Some(&path[3..4 + first.len()]),
            };
        }
        NsRoute::Default
    }
}

/// A read the cache may answer.
pub struct Lookup<'a> {
    pub cache: &'a CacheUse,
    pub upstream: &'a Arc<Upstream>,
    pub repository: &'a str,
    /// The metrics label of the virtual registry.
    pub registry: Arc<str>,
}

/// What the mirror did, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    pub cache: Option<CacheStatus>,
    /// The last upstream status seen (0: none).
    pub upstream_status: u16,
}

impl Answered {
    fn status(cache: Option<CacheStatus>, upstream_status: u16) -> Answered {
        Answered { cache, upstream_status }
    }
}

/// Answers a blob or manifest read from the cache; `None`: not one the
/// cache serves (it is proxied).
pub async fn answer(
    session: &mut Session,
    r: &Lookup<'_>,
    operation: Operation,
    reference: &str,
) -> Result<Option<Answered>> {
    match operation {
        Operation::BlobGet | Operation::BlobHead => match crate::cache::Digest::parse(reference) {
            Some(d) => blobs::answer(session, r, d).await,
            None => Ok(None),
        },
        Operation::ManifestGet | Operation::ManifestHead => manifests::answer(session, r, reference).await,
        _ => Ok(None),
    }
}

/// A manifest write or delete by tag: the cached tag is dropped at once,
/// so the next read asks the upstream.
pub fn invalidate(cache: &CacheUse, upstream: &Upstream, repository: &str, reference: &str) {
    if !reference.contains(':') {
        cache
            .store
            .records()
            .remove_tag(&upstream.cache_key, repository, reference);
    }
}
