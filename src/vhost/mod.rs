//! Virtual registries (their routes, upstreams and auth) and which one a
//! request belongs to, by the host name the client
//! used (Host or HTTP/2 :authority) and the port it connected to.
//!
//! The rule that comes first in the file wins, also when exact names are
//! looked up in a hash map: every candidate carries its rule index and the
//! lowest index wins. Exact names cost one hash lookup; regexes are
//! compiled once into a single RegexSet, so matching cost grows with the
//! number of regex rules only, not with the number of registries.

use std::borrow::Cow;
use std::collections::HashMap;

use std::sync::Arc;

use regex::{Regex, RegexSet};

use http::Method;

use crate::affinity::{self, RepositoryPins};
use crate::auth::AuthPolicy;
use crate::operation;
use crate::routing::Route;
use crate::upstream::Upstream;

/// The host part of one registry's match, as configured.
#[derive(Debug, Clone, Default)]
pub struct HostRule {
    /// Normalised exact names.
    pub hosts: Vec<String>,
    /// Anchored, case-insensitive pattern as written.
    pub host_regex: Option<String>,
    /// Local ports the rule is limited to; empty: any.
    pub ports: Vec<u16>,
    pub default: bool,
}

impl HostRule {
    /// `hosts a, b; regex x; ports 443; default`, for `check` and `route`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.hosts.is_empty() {
            parts.push(format!("hosts {}", self.hosts.join(", ")));
        }
        if let Some(r) = &self.host_regex {
            parts.push(format!("host_regex {r}"));
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            parts.push(format!("ports {}", ports.join(", ")));
        }
        if self.default {
            parts.push("default".to_owned());
        }
        parts.join("; ")
    }

    fn port_ok(&self, port: Option<u16>) -> bool {
        self.ports.is_empty() || port.is_some_and(|p| self.ports.contains(&p))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid host_regex `{pattern}`: {source}")]
pub struct BadRegex {
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

/// Compiled host rules of all virtual registries, in file order.
#[derive(Debug)]
pub struct HostRouter {
    rules: Vec<HostRule>,
    exact: HashMap<String, Vec<usize>>,
    regex_set: RegexSet,
    /// Rule index of each pattern in `regex_set`.
    regex_rules: Vec<usize>,
    default: Option<usize>,
}

/// Lower case, without port, brackets or a trailing dot.
pub fn normalize_host(authority: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: `[::1]:5000` or `[::1]`.
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else if authority.bytes().filter(|&b| b == b':').count() > 1 {
        authority // bare IPv6 literal, as written in config
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn anchored(pattern: &str) -> String {
    format!("(?i)^(?:{pattern})$")
}

impl HostRouter {
    pub fn new(rules: Vec<HostRule>) -> Result<Self, (usize, BadRegex)> {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut patterns = Vec::new();
        let mut regex_rules = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for h in &rule.hosts {
                exact.entry(normalize_host(h).into_owned()).or_default().push(i);
            }
            if let Some(p) = &rule.host_regex {
                // Compiled alone first for an error that names the pattern.
                Regex::new(&anchored(p)).map_err(|source| {
                    (
                        i,
                        BadRegex {
                            pattern: p.clone(),
                            source,
                        },
                    )
                })?;
                patterns.push(anchored(p));
                regex_rules.push(i);
            }
        }
        // Patterns that compile alone can still be too large together.
        let regex_set = RegexSet::new(&patterns).map_err(|source| {
            let last = *regex_rules.last().expect("a set that fails has patterns");
            (
                last,
                BadRegex {
                    pattern: format!("all {} host_regex patterns together", patterns.len()),
                    source,
                },
            )
        })?;
        let default = rules.iter().position(|r| r.default);
        Ok(HostRouter {
            rules,
            exact,
            regex_set,
            regex_rules,
            default,
        })
    }

    pub fn rule(&self, i: usize) -> &HostRule {
        &self.rules[i]
    }

    /// The index of the registry for `authority` on local `port`, with the
    /// reason it was chosen.
    pub fn select(&self, authority: Option<&str>, port: Option<u16>) -> Option<(usize, Why)> {
        let mut best: Option<(usize, Why)> = None;
        // With no host rules (the single-registry setup) the Host is not
        // even looked at: no normalizing on every request.
        let has_host_rules = !self.exact.is_empty() || !self.regex_rules.is_empty();
        if let Some(authority) = authority.filter(|_| has_host_rules) {
            let host = normalize_host(authority);
            if let Some(candidates) = self.exact.get(host.as_ref()) {
                best = candidates
                    .iter()
                    .find(|&&i| self.rules[i].port_ok(port))
                    .map(|&i| (i, Why::Host));
            }
            if !self.regex_rules.is_empty() {
                let limit = best.map_or(usize::MAX, |(i, _)| i);
                for m in self.regex_set.matches(&host).iter() {
                    let i = self.regex_rules[m];
                    if i < limit && self.rules[i].port_ok(port) {
                        best = Some((i, Why::Regex));
                        break; // set matches come in pattern order, which is rule order
                    }
                }
            }
        }
        best.or_else(|| {
            self.default
                .filter(|&i| self.rules[i].port_ok(port))
                .map(|i| (i, Why::Default))
        })
    }

    /// Rules that can never be chosen because earlier rules take all their
    /// hosts: `(shadowed, by)`. Regexes are compared only when identical.
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (j, rule) in self.rules.iter().enumerate() {
            if rule.default || (rule.hosts.is_empty() && rule.host_regex.is_none()) {
                continue;
            }
            let covers = |i: usize| {
                let earlier = &self.rules[i];
                let ports_cover = earlier.ports.is_empty()
                    || rule.ports.iter().all(|p| earlier.ports.contains(p)) && !rule.ports.is_empty();
                let hosts_cover = rule.hosts.iter().all(|h| {
                    earlier.hosts.iter().any(|e| normalize_host(e) == normalize_host(h))
                        || earlier
                            .host_regex
                            .as_ref()
                            .is_some_and(|p| Regex::new(&anchored(p)).is_ok_and(|r| r.is_match(&normalize_host(h))))
                });
                let regex_cover = match (&rule.host_regex, &earlier.host_regex) {
                    (None, _) => true,
                    (Some(a), Some(b)) => a == b,
                    (Some(_), None) => false,
                };
                ports_cover && hosts_cover && regex_cover
            };
            if let Some(i) = (0..j).find(|&i| covers(i)) {
                out.push((j, i));
            }
        }
        out
    }
}

/// Why a registry was selected, for `registry-gateway route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Host,
    Regex,
    Default,
}

/// Where one route of a virtual registry goes, and who may use it.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub upstream: Arc<Upstream>,
    /// `None`: no credentials required (Authorization passes through).
    pub auth: Option<Arc<AuthPolicy>>,
}

/// The routes of a virtual registry.
#[derive(Debug)]
pub struct RouteTable {
    pub v2: RouteTarget,
    pub ping: RouteTarget,
    /// `None`: legacy paths answer 404.
    pub v1: Option<RouteTarget>,
}

impl RouteTable {
    pub fn target(&self, route: Route) -> Option<&RouteTarget> {
        match route {
            Route::V2 => Some(&self.v2),
            Route::Ping => Some(&self.ping),
            Route::V1 => self.v1.as_ref(),
        }
    }
}

/// A registry as clients see it: a name, its routes and their upstreams.
#[derive(Debug)]
pub struct VirtualRegistry {
    pub name: String,
    pub is_default: bool,
    pub routes: RouteTable,
    pub metrics: Arc<crate::metrics::RegistryMetrics>,
    /// Upstreams whose replicas uploads of this registry may continue on: those of its
    /// routes now, then those it had before reloads (newest first).
    pub upload_upstreams: Vec<Arc<Upstream>>,
    /// Repositories whose push straddles a reload, on their old upstream.
    pub pins: RepositoryPins<Arc<Upstream>>,
    /// Per-repository access rules; `None`: any request auth lets through.
    pub access: Option<Arc<crate::access::AccessPolicy>>,
    /// `ns` routing, `push: deny` and the cache; `None`: a plain proxy.
    pub mirror: Option<Arc<crate::mirror::Mirror>>,
}

/// Uploads started before this many reloads ago that moved the registry's
/// upstream no longer find their upstream.
pub const MAX_UPLOAD_UPSTREAMS: usize = 16;

/// Where a `/v2` request goes: the upstream, and the replica an upload's
/// hint names (its requests must reach the replica that holds its state).
#[derive(Debug, Clone)]
pub struct Destination {
    pub upstream: Arc<Upstream>,
    pub replica: Option<usize>,
}

impl Destination {
    fn to(upstream: &Arc<Upstream>) -> Destination {
        Destination {
            upstream: upstream.clone(),
            replica: None,
        }
    }
}

impl VirtualRegistry {
    /// The replica an upload URL's hint names, among the upstreams this
    /// registry has used (its current ones first).
    pub fn upload_replica(&self, key: &str) -> Option<(&Arc<Upstream>, usize)> {
        (self.upload_upstreams.iter()).find_map(|u| Some((u, u.pool.by_upload_key(key)?)))
    }

    /// Where a `/v2` request whose route says `routed` goes: an upload's
    /// own replica (by its hint), or where a push that straddled a reload
    /// is pinned, or the route's upstream.
    pub fn v2_destination(
        &self,
        routed: &Arc<Upstream>,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Destination {
        // Most requests carry no query at all: no path scan for them.
        let hint = affinity::hint(query).filter(|_| path.contains("/blobs/uploads/"));
        if let Some(key) = hint {
            let Some((owner, replica)) = self.upload_replica(key) else {
                return Destination::to(routed);
            };
            if routed.pool.by_upload_key(key).is_none() {
                // Started before a reload moved the route: the rest of the
                // push follows the upload to the old upstream.
                let request = operation::classify(method, Some(Route::V2), path);
                self.pins.pin(request.repository, owner.clone());
            }
            return Destination {
                upstream: owner.clone(),
                replica: Some(replica),
            };
        }
        if !self.pins.is_empty() {
            let request = operation::classify(method, Some(Route::V2), path);
            let write = !matches!(*method, Method::GET | Method::HEAD);
            if let Some(pinned) = self.pins.get(request.repository, write) {
                return Destination::to(&pinned);
            }
        }
        Destination::to(routed)
    }

    /// Adds the upstreams `older` (this registry before a reload) had,
    /// after the current ones.
    pub fn inherit_upload_upstreams(&mut self, older: &VirtualRegistry) {
        for u in &older.upload_upstreams {
            if self.upload_upstreams.len() >= MAX_UPLOAD_UPSTREAMS {
                break;
            }
            if !self.upload_upstreams.iter().any(|x| x.pool.key() == u.pool.key()) {
                self.upload_upstreams.push(u.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
