//! Building the mirror side of a snapshot: secrets read for upstream
//! credentials, the gateway's upstream logins, and each registry's `ns`
//! map and cache store (shared by directory, kept across reloads).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::cache::{Limits, Store};
use crate::config::{MirrorSettings, SecretSource, Settings};
use crate::fetch::PeerTimeouts;
use crate::mirror::{CacheUse, Mirror};
use crate::upstream::Upstream;
use crate::upstream_auth::{Secret, UpstreamAuth};

/// Reads an upstream password from its file or variable.
pub fn read_secret(source: &SecretSource) -> Result<Secret, String> {
    let text = match source {
        SecretSource::File(p) => std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        SecretSource::Env(v) => std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))?,
    };
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(format!("{} is empty", source.describe()));
    }
    Ok(Secret::new(text.to_owned()))
}

/// Upstreams a caching registry reads (its route's, and its `ns` ones):
/// they get the token flow even without credentials (anonymous tokens).
pub fn cached_upstreams(settings: &Settings) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (r, m) in settings.file.registries.iter().zip(&settings.mirrors) {
        if m.cache.is_some() {
            out.insert(r.upstream.clone());
            out.extend(m.ns.iter().map(|(_, u)| u.clone()));
        }
    }
    out
}

/// The gateway's login at upstream `name`, or why it cannot be built.
pub fn upstream_auth(
    settings: &Settings,
    name: &str,
    cached: &BTreeSet<String>,
) -> Result<Option<UpstreamAuth>, String> {
    let timeouts = PeerTimeouts {
        connect: settings.timeouts.connect,
        read: settings.timeouts.upstream_header,
    };
    match settings.credentials.get(name) {
        Some(c) => {
            let secret = read_secret(&c.secret)?;
            Ok(Some(UpstreamAuth::new(
                name,
                Some((c.username.clone(), secret, c.secret.describe())),
                timeouts,
            )))
        }
        None if cached.contains(name) => Ok(Some(UpstreamAuth::new(name, None, timeouts))),
        None => Ok(None),
    }
}

/// The mirror of one registry; `Err` names the key and the problem.
pub fn mirror(
    m: &MirrorSettings,
    registry: &str,
    route_upstream: &str,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    stores: &mut HashMap<std::path::PathBuf, Arc<Store>>,
) -> Result<Option<Mirror>, (String, String)> {
    if m.ns.is_empty() && !m.push_deny && m.cache.is_none() {
        return Ok(None);
    }
    let mut ns = HashMap::new();
    for (key, name) in &m.ns {
        // Unknown names were reported by `config`.
        if let Some(u) = upstreams.get(name) {
            ns.insert(key.clone(), u.clone());
        }
    }
    let cache = match &m.cache {
        None => None,
        Some(c) => {
            let limits = Limits {
                max_size: c.max_size,
                fsync: c.fsync,
            };
            let store = match stores.get(&c.dir) {
                Some(s) => s.clone(),
                None => {
                    let s = Store::open(&c.dir, limits).map_err(|e| {
                        (
                            "cache.dir".to_owned(),
                            format!("cannot open cache directory {}: {e}", c.dir.display()),
                        )
                    })?;
                    stores.insert(c.dir.clone(), s.clone());
                    s
                }
            };
            let mut names: Vec<&str> = ns.values().map(|u: &Arc<Upstream>| u.name.as_str()).collect();
            names.push(route_upstream);
            names.sort_unstable();
            names.dedup();
            crate::metrics::mirror::init_registry(registry, &names);
            Some(CacheUse {
                store,
                tag_ttl: c.tag_ttl,
                max_stale: c.max_stale,
                mismatch_backoff: c.mismatch_backoff,
            })
        }
    };
    Ok(Some(Mirror {
        ns,
        ns_in_path: m.ns_in_path,
        push_deny: m.push_deny,
        cache,
    }))
}
