//! Checking mirrors: upstream credentials (exactly one secret source, no
//! forwarding of client credentials beside them), `ns` maps (parseable
//! keys, known upstreams, Docker Hub's aliases agreeing) and cache blocks
//! (one size per directory).

use std::collections::BTreeMap;

use super::Checker;
use crate::config::file::{GatewayFile, PushSetting, RegistrySection, UpstreamSection};
use crate::config::mirror_settings::*;

impl Checker<'_> {
    pub(super) fn credentials(&mut self, file: &GatewayFile) -> BTreeMap<String, CredentialSettings> {
        let mut out = BTreeMap::new();
        for (name, u) in &file.upstreams {
            if let Some(c) = self.upstream_credentials(name, u) {
                out.insert(name.clone(), c);
            }
        }
        out
    }

    fn upstream_credentials(&mut self, name: &str, u: &UpstreamSection) -> Option<CredentialSettings> {
        let c = u.credentials.as_ref()?;
        let key = format!("upstreams.{name}.credentials");
        if c.username.is_empty() || c.username.contains(':') {
            self.issue(
                format!("{key}.username"),
                format!("`{}`: must be non-empty and without `:`", c.username),
            );
        }
        if u.forward_authorization {
            self.issue(
                format!("upstreams.{name}.forward_authorization"),
                "cannot be used with `credentials`: the gateway logs in to this upstream itself",
            );
        }
        let secret = match (&c.password_file, &c.password_env) {
            (Some(p), None) => SecretSource::File(self.dir.join(p)),
            (None, Some(v)) if !v.is_empty() => SecretSource::Env(v.clone()),
            (None, Some(_)) => {
                self.issue(format!("{key}.password_env"), "must name an environment variable");
                return None;
            }
            (Some(_), Some(_)) => {
                self.issue(key, "give `password_file` or `password_env`, not both");
                return None;
            }
            (None, None) => {
                self.issue(
                    key,
                    "needs `password_file` or `password_env` (the password is never written in gateway.yaml)",
                );
                return None;
            }
        };
        Some(CredentialSettings {
            username: c.username.clone(),
            secret,
        })
    }

    /// One per registry, in file order.
    pub(super) fn mirrors(&mut self, file: &GatewayFile) -> Vec<MirrorSettings> {
        let mirrors: Vec<MirrorSettings> = (file.registries.iter().enumerate())
            .map(|(i, r)| self.mirror(file, i, r))
            .collect();
        // A shared directory is one store with one bound.
        for (i, m) in mirrors.iter().enumerate() {
            let Some(c) = &m.cache else { continue };
            let earlier = mirrors[..i]
                .iter()
                .enumerate()
                .find_map(|(j, e)| e.cache.as_ref().filter(|e| e.dir == c.dir).map(|e| (j, e)));
            if let Some((j, e)) = earlier
                && (e.max_size != c.max_size || e.fsync != c.fsync)
            {
                self.issue(
                    format!("registries[{i}].cache.max_size"),
                    format!(
                        "cache dir {} is shared with registries[{j}], which sets another max_size or fsync: a shared cache has one",
                        c.dir.display()
                    ),
                );
            }
        }
        mirrors
    }

    fn mirror(&mut self, file: &GatewayFile, i: usize, r: &RegistrySection) -> MirrorSettings {
        let mut ns: Vec<(String, String)> = Vec::new();
        for (value, upstream) in &r.ns {
            let key = format!("registries[{i}].ns.{value}");
            if !file.upstreams.contains_key(upstream) {
                self.issue(key.clone(), format!("unknown upstream `{upstream}`"));
            }
            let Some(norm) = normalize_ns(value) else {
                self.issue(
                    key,
                    format!("`{value}` is not a registry host name (such as `docker.io` or `ghcr.io`)"),
                );
                continue;
            };
            let names: Vec<String> = if DOCKER_HUB_ALIASES.contains(&norm.as_str()) {
                DOCKER_HUB_ALIASES.iter().map(|s| s.to_string()).collect()
            } else {
                vec![norm]
            };
            for n in names {
                match ns.iter().find(|(k, _)| *k == n) {
                    Some((_, other)) if other != upstream => self.issue(
                        key.clone(),
                        format!("`{n}` (Docker Hub's names are one) already maps to upstream `{other}`"),
                    ),
                    Some(_) => {}
                    None => ns.push((n, upstream.clone())),
                }
            }
        }
        if r.ns_in_path && ns.is_empty() {
            self.issue(format!("registries[{i}].ns_in_path"), "needs an `ns` map");
        }
        let cache = r.cache.as_ref().map(|c| {
            let key = format!("registries[{i}].cache");
            let max_size = c.max_size.0 as u64;
            if max_size < MIN_CACHE_SIZE {
                self.issue(format!("{key}.max_size"), format!("`{max_size}` bytes: at least 1MiB"));
            }
            let max_stale = c.max_stale.map_or(DEFAULT_MAX_STALE, |d| d.0);
            CacheSettings {
                dir: self.dir.join(&c.dir),
                max_size,
                tag_ttl: c.tag_ttl.map_or(DEFAULT_TAG_TTL, |d| d.0),
                max_stale,
                fsync: c.fsync.unwrap_or(true),
                mismatch_backoff: c.mismatch_backoff.map_or(DEFAULT_MISMATCH_BACKOFF, |d| d.0),
            }
        });
        MirrorSettings {
            ns,
            ns_in_path: r.ns_in_path,
            push_deny: r.push == PushSetting::Deny,
            cache,
        }
    }
}
