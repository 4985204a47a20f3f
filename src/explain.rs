//! `registry-gateway route`: the decisions the proxy would make for a
//! request, spelled out, using the same functions the proxy uses.

use std::fmt::Write;

use http::Method;

use crate::routing::{self, PathRejection, Route};
use crate::runtime::Snapshot;
use crate::vhost::Why;

pub fn route(config: &Snapshot, host: &str, path: &str, port: Option<u16>, method: &str) -> String {
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
    let _ = writeln!(out, "upstream: {} ({})", target.upstream.name, target.upstream.url());
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    match &target.auth {
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
    out
}
