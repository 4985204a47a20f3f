//! `registry-gateway route`: the decisions the proxy would make for a
//! request, spelled out, using the same functions the proxy uses.

use std::fmt::Write;

use http::Method;

use crate::access::{self, AccessPolicy, Action, Requirement};
use crate::auth::AuthScope;
use crate::query;
use crate::routing::{self, PathRejection, Route};
use crate::runtime::Snapshot;
use crate::vhost::{RouteTarget, Why};

/// `user`: decide access as this user, as if they had logged in (`None`:
/// a client without credentials).
pub fn route(config: &Snapshot, host: &str, path: &str, port: Option<u16>, method: &str, user: Option<&str>) -> String {
    let mut out = String::new();
    let path_only = path.split('?').next().unwrap_or(path);
    let Some((registry, why)) = config.registry_for(Some(host), port) else {
        let _ = write!(out, "no virtual registry matches host `{host}`");
        if let Some(p) = port {
            let _ = write!(out, " on port {p}");
        }
        out.push_str(" and there is no default: 404 NOT_FOUND");
        return out;
    };
    let index = config
        .registries
        .iter()
        .position(|r| std::sync::Arc::ptr_eq(r, registry))
        .unwrap_or(0);
    let reason = match why {
        Why::Host => "its hosts list the name",
        Why::Regex => "its host_regex matches the name",
        Why::Default => "no other registry matches, and it is the default",
    };
    let _ = writeln!(
        out,
        "registry: {} (registries[{index}]: {}), because {reason}",
        registry.name,
        config.router.rule(index).describe()
    );
    let route = match routing::classify(path_only.as_bytes()) {
        Ok(r) => r,
        Err(PathRejection::Unknown) => {
            out.push_str("route: none, not a registry path: 404 NOT_FOUND, never forwarded");
            return out;
        }
        Err(PathRejection::Malformed) => {
            out.push_str(
                "route: rejected (dot or empty segment, or encoded separator): 404 NOT_FOUND, never forwarded",
            );
            return out;
        }
    };
    let name = match route {
        Route::V2 => "v2",
        Route::Ping => "ping",
        Route::V1 => "v1",
    };
    let Some(target) = registry.routes.target(route) else {
        let _ = write!(out, "route: {name}, no legacy upstream configured: 404 NOT_FOUND");
        return out;
    };
    let _ = writeln!(out, "route: {name}");
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let mut upstream = &target.upstream;
    let mut ns_routed = false;
    if let (Some(m), Route::V2) = (&registry.mirror, route) {
        match mirror_decision(&mut out, m, &method, path_only, path.split_once('?').map(|(_, q)| q)) {
            Some(Some(u)) => (upstream, ns_routed) = (u, true),
            Some(None) => {}
            None => return out,
        }
    }
    let _ = writeln!(out, "upstream: {} ({})", upstream.name, upstream.describe());
    let login = if ns_routed {
        upstream.auth.as_deref()
    } else {
        upstream.logs_in()
    };
    if let Some(login) = login {
        let _ = writeln!(
            out,
            "upstream login: the gateway {}; the client's Authorization is never forwarded",
            login.describe()
        );
    }
    match &target.auth {
        None if login.is_some() => out.push_str("auth: none at the gateway"),
        None => out.push_str("auth: none (Authorization passes through)"),
        Some(policy) if !policy.applies_to(&method) => {
            let _ = write!(out, "auth: not for {method} (scope writes, realm \"{}\")", policy.realm);
        }
        Some(policy) => {
            let _ = write!(
                out,
                "auth: Basic, realm \"{}\", users from {}",
                policy.realm,
                policy.users.path().display()
            );
        }
    }
    out.push('\n');
    match (&registry.access, route) {
        (_, Route::Ping) => out.push_str("access: not under access rules"),
        (Some(policy), _) => explain_access(&mut out, policy, target, route, &method, path, user),
        (None, _) => out.push_str("access: no rules (any request the auth block lets through may do anything)"),
    }
    out
}

/// `ns`, `push: deny` and the cache for one request; `None`: answered
/// here (the line says how), `Some(upstream)`: the `ns` upstream, if any.
fn mirror_decision<'a>(
    out: &mut String,
    m: &'a crate::mirror::Mirror,
    method: &Method,
    path: &'a str,
    query: Option<&str>,
) -> Option<Option<&'a std::sync::Arc<crate::upstream::Upstream>>> {
    use crate::mirror::NsRoute;
    let read = *method == Method::GET || *method == Method::HEAD;
    if m.push_deny && !read {
        out.push_str("answer: 405 UNSUPPORTED (push: deny)");
        return None;
    }
    let (upstream, effective) = match m.route(path, query) {
        NsRoute::Default => (None, path.to_owned()),
        NsRoute::To { upstream, path_segment } => {
            let _ = writeln!(
                out,
                "ns: upstream {} (by {})",
                upstream.name,
                if path_segment.is_some() { "path segment" } else { "?ns=" }
            );
            let effective = path_segment.map_or(path.to_owned(), |seg| format!("/v2{}", &path[3 + seg.len()..]));
            (Some(upstream), effective)
        }
        NsRoute::Unknown => {
            out.push_str("answer: 404 NAME_UNKNOWN (an `ns` this registry does not map)");
            return None;
        }
        NsRoute::Ambiguous => {
            out.push_str("answer: 400 BAD_REQUEST (`ns` given twice)");
            return None;
        }
    };
    if let Some(cache) = &m.cache {
        let request = crate::operation::classify(method, Some(Route::V2), &effective);
        use crate::operation::Operation::*;
        let what = match request.operation {
            BlobGet | BlobHead | ManifestGet | ManifestHead if request.reference.starts_with("sha256:") => {
                "read from the cache; on a miss fetched once from the upstream and verified against its digest"
            }
            ManifestGet | ManifestHead if !request.reference.contains(':') => {
                "the tag's digest from the cache while younger than tag_ttl, else revalidated upstream (stale while the upstream is down)"
            }
            Base => "answered 200 by the gateway (a mirror's ping never needs its upstream)",
            ManifestPut | ManifestDelete => "forwarded; the cached tag is dropped",
            _ => "not cached: forwarded",
        };
        let _ = writeln!(out, "cache {}: {what}", cache.store.label());
    }
    Some(upstream)
}

fn explain_access(
    out: &mut String,
    policy: &AccessPolicy,
    target: &RouteTarget,
    route: Route,
    method: &Method,
    path_and_query: &str,
    user: Option<&str>,
) {
    let (path, q) = path_and_query
        .split_once('?')
        .map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    let auth = target.auth.as_deref();
    let user = match (auth, user) {
        (None, Some(_)) => {
            out.push_str("note: /v2 has no auth block: every client is anonymous, --user is ignored\n");
            None
        }
        (Some(a), Some(u)) if !a.users.table().contains(u) => {
            let _ = writeln!(
                out,
                "note: user {u} is not in {}: they would get 401",
                a.users.path().display()
            );
            Some(u)
        }
        (_, u) => u,
    };
    if path.contains('%') {
        out.push_str(
            "access: the path has a percent escape: refused while access rules are in force\nanswer: 404 NOT_FOUND",
        );
        return;
    }
    let request = crate::operation::classify(method, Some(route), path);
    let challenge = auth.is_some() && user.is_none();
    let denied = |out: &mut String| {
        out.push_str(if challenge {
            "answer: 401 with the challenge (no credentials; logging in may help)"
        } else {
            "answer: 403 DENIED"
        })
    };
    match access::requirement(request.operation) {
        Requirement::Nothing => out.push_str("access: not under access rules"),
        Requirement::Login => {
            out.push_str("access: GET /v2/ needs authentication only\n");
            if challenge && auth.is_some_and(|a| a.scope == AuthScope::All) {
                denied(out);
            } else {
                out.push_str("answer: forwarded");
            }
        }
        Requirement::Catalog => {
            let who = user.map_or("anonymous clients".to_owned(), |u| format!("user {u}"));
            if challenge && !policy.anonymous_may_anywhere(Action::Pull) {
                out.push_str("access: anonymous clients may pull nothing\n");
                denied(out);
            } else {
                let _ = write!(
                    out,
                    "catalog: answered by the gateway with the repositories {who} may pull (n: default 100, at most 1000)"
                );
            }
        }
        Requirement::Refuse => {
            let _ = writeln!(
                out,
                "access: `{}` requests are refused while access rules are in force",
                request.operation.as_str()
            );
            denied(out);
        }
        Requirement::Act(action) => {
            let _ = writeln!(
                out,
                "operation: {}: {} on {}",
                request.operation.as_str(),
                action.as_str(),
                request.repository
            );
            let (decision, text) = policy.explain(user, request.repository, action);
            out.push_str(&text);
            out.push('\n');
            if !decision.allowed {
                denied(out);
                return;
            }
            if request.operation == crate::operation::Operation::UploadStart && query::first(q, "mount").is_some() {
                match query::first(q, "from") {
                    Some(from) if policy.may_pull(user, &from) => {
                        let _ = writeln!(out, "mount: from {from}: may be pulled, the mount is kept");
                    }
                    Some(from) => {
                        let _ = writeln!(
                            out,
                            "mount: from {from}: may not be pulled: `mount` and `from` are removed; registry:2 starts a plain upload"
                        );
                    }
                    None => out.push_str("mount: no `from`: `mount` is removed; registry:2 starts a plain upload\n"),
                }
            }
            let _ = write!(out, "answer: forwarded to {}", target.upstream.name);
        }
    }
}
