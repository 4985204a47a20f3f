//! `registry-gateway check`'s description of a snapshot.

use std::fmt::Write;

use super::Snapshot;
use crate::auth::AuthScope;
use crate::vhost::RouteTarget;

fn describe_target(t: &RouteTarget) -> String {
    match &t.auth {
        None => format!("{} (no auth)", t.upstream.name),
        Some(a) => {
            let scope = match a.scope {
                AuthScope::All => "all requests",
                AuthScope::Writes => "writes only",
            };
            format!(
                "{} (auth: {} users from {}, realm \"{}\", {scope})",
                t.upstream.name,
                a.users.table().len(),
                a.users.path().display(),
                a.realm
            )
        }
    }
}

/// A short human-readable description, printed by `registry-gateway check`.
pub fn summary(c: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "listeners:");
    for l in &c.listeners {
        let _ = writeln!(out, "  {}", crate::listeners::describe(l));
        if let Some(tls) = &l.tls {
            for spec in tls.certificates.specs().iter() {
                let _ = writeln!(
                    out,
                    "    certificate {} (key {})",
                    spec.cert.display(),
                    spec.key.display()
                );
            }
            let _ = writeln!(out, "    SNI names: {}", tls.certificates.names().join(", "));
        }
    }
    let _ = writeln!(out, "upstreams:");
    for u in &c.upstreams {
        let replicas = u.pool.replicas();
        if let [r] = replicas {
            // One replica: the line as before pools.
            let _ = writeln!(
                out,
                "  {} {} ({}), Host header: {:?}",
                u.name,
                r.url,
                r.address,
                u.host_mode()
            );
        } else {
            let shared = if u.pool.shared_secret() { ", shared secret" } else { "" };
            let _ = writeln!(
                out,
                "  {} ({} replicas, {}{shared}), Host header: {:?}",
                u.name,
                replicas.len(),
                u.pool.policy().as_str(),
                u.host_mode()
            );
            for r in replicas {
                let _ = writeln!(out, "    {} ({})", r.url, r.address);
            }
        }
        let _ = writeln!(out, "    {}", u.pool.describe_watch());
        if let Some(auth) = &u.auth {
            let _ = writeln!(out, "    gateway login: {}", auth.describe());
        }
    }
    let _ = writeln!(out, "registries:");
    for (i, r) in c.registries.iter().enumerate() {
        let _ = writeln!(out, "  {} ({})", r.name, c.router.rule(i).describe());
        let _ = writeln!(out, "    /v2/...            -> {}", describe_target(&r.routes.v2));
        let _ = writeln!(out, "    /_ping, /v1/_ping  -> {}", describe_target(&r.routes.ping));
        let v1 = r
            .routes
            .v1
            .as_ref()
            .map_or("404 (no legacy upstream)".to_owned(), describe_target);
        let _ = writeln!(out, "    /v1/...            -> {v1}");
        let _ = writeln!(out, "    other paths        -> 404");
        for line in r.mirror.iter().flat_map(|m| m.describe()) {
            let _ = writeln!(out, "    {line}");
        }
        match &r.access {
            None => {}
            Some(policy) => {
                let _ = writeln!(
                    out,
                    "    access ({}; first matching rule decides, push and delete include pull):",
                    policy.key()
                );
                for line in policy.describe() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let t = &c.timeouts;
    let _ = writeln!(
        out,
        "timeouts: connect {:?}, upstream header {:?}, upstream read/write {:?}/{:?}, client header {:?}, \
         client read/write {:?}/{:?}, keepalive {:?}",
        t.connect,
        t.upstream_header,
        t.upstream_read,
        t.upstream_write,
        t.client_header,
        t.client_read,
        t.client_write,
        t.keepalive
    );
    let l = &c.limits;
    let _ = writeln!(
        out,
        "request heads: line {} B, header line {} B, head {} B, {} headers; client connections: {}",
        l.request_line,
        l.header_line,
        l.header_block,
        l.headers,
        c.server
            .max_connections
            .map_or("half the descriptor limit, at most 10000".to_owned(), |n| n.to_string())
    );
    let _ = writeln!(
        out,
        "shutdown grace period: {:?}, threads: {}, work stealing: {}, idle upstream connections kept: {}",
        c.server.grace_period, c.server.threads, c.server.work_stealing, c.server.upstream_keepalive
    );
    match &c.metrics {
        Some(m) => {
            let _ = writeln!(out, "metrics: http://{}/metrics, /healthz, /readyz", m.address);
        }
        None => {
            let _ = writeln!(out, "metrics: off");
        }
    }
    let access = match &c.access_log {
        Some(a) => format!("{:?} to {:?}", a.format, a.output).to_lowercase(),
        None => "off".to_owned(),
    };
    let _ = writeln!(out, "access log: {access}");
    for w in &c.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
