//! `gateway.yaml` parsing and compilation: `Snapshot::parse` on
//! arbitrary UTF-8, `summary` and host routing on what parses.
//!
//! The configuration is read as if it lived in `fixtures/` (a throwaway
//! htpasswd file, certificate, key and CA), so auth and TLS blocks that name
//! those files compile too; any other relative name resolves to a missing
//! file. Two things a config does would make the fuzzer unsafe or slow, so
//! inputs that could trigger them are skipped (see `safe_to_parse`):
//! - an upstream URL whose host is not an IP literal is resolved through
//!   DNS at load (no queries may leave this machine);
//! - an absolute path or a `..` component could name `/dev/zero`,
//!   `/dev/stdin` or a huge file that is then read whole.
#![no_main]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use registry_gateway::runtime::{self, Snapshot};
use registry_gateway::vhost::{Why, normalize_host};

static CONFIG_PATH: LazyLock<PathBuf> =
    LazyLock::new(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("gateway.yaml"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !safe_to_parse(text) {
        if fuzz_support::verbose() {
            eprintln!("skipped: names a host to resolve or a file outside fixtures/");
        }
        return;
    }
    let cfg = match Snapshot::parse(text, &CONFIG_PATH) {
        Ok(cfg) => cfg,
        Err(e) => {
            if fuzz_support::verbose() {
                eprintln!("error: {e}");
            }
            return;
        }
    };
    let summary = runtime::summary(&cfg);
    if fuzz_support::verbose() {
        eprint!("{summary}");
    }
    assert!(summary.starts_with("listeners:\n"), "summary: {summary:?}");
    assert!(!cfg.listeners.is_empty() && !cfg.registries.is_empty() && !cfg.upstreams.is_empty());
    // Every registry has its host rule, in the same order.
    for i in 0..cfg.registries.len() {
        let _ = cfg.router.rule(i).describe();
    }
    let defaults = cfg.registries.iter().filter(|r| r.is_default).count();
    assert!(defaults <= 1, "{defaults} default registries");
    // Route a few hosts: each rule's own names, and some fixed ones.
    let mut hosts: Vec<String> = vec!["registry.example".into(), "[::1]:5000".into(), "nowhere".into(), "".into()];
    for i in 0..cfg.registries.len().min(8) {
        hosts.extend(cfg.router.rule(i).hosts.iter().take(4).cloned());
    }
    let ports = [None, Some(443), Some(5000)];
    for host in &hosts {
        for port in ports {
            for authority in [Some(host.as_str()), None] {
                if let Some((registry, why)) = cfg.registry_for(authority, port) {
                    let index = cfg
                        .registries
                        .iter()
                        .position(|r| std::ptr::eq(r.as_ref(), registry.as_ref()))
                        .expect("registry_for returns one of the registries");
                    let rule = cfg.router.rule(index);
                    match why {
                        Why::Default => assert!(registry.is_default && rule.default),
                        Why::Host => {
                            let want = normalize_host(authority.expect("Host match without a Host"));
                            assert!(rule.hosts.iter().any(|h| normalize_host(h) == want));
                        }
                        Why::Regex => assert!(authority.is_some() && rule.host_regex.is_some()),
                    }
                    assert!(rule.ports.is_empty() || port.is_some_and(|p| rule.ports.contains(&p)));
                }
            }
        }
    }
    for ip in ["127.0.0.1", "10.1.2.3", "::1", "::ffff:10.1.2.3"] {
        let _ = cfg.is_trusted_proxy(ip.parse().unwrap());
    }
});

/// Whether parsing `text` can neither resolve a host name nor read a file
/// outside `fixtures/`. Decided on the YAML as serde_yaml reads it (escapes,
/// anchors and block scalars already resolved), over every string, keys
/// included; inputs that are not YAML at all are safe (they fail to parse).
fn safe_to_parse(text: &str) -> bool {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(v) => value_is_safe(&v),
        // A document the generic reader refuses (several documents,
        // duplicate keys, ...) may still be one the typed reader accepts;
        // skip it rather than guess.
        Err(_) => false,
    }
}

fn value_is_safe(v: &serde_yaml::Value) -> bool {
    use serde_yaml::Value;
    match v {
        Value::String(s) => string_is_safe(s),
        Value::Sequence(items) => items.iter().all(value_is_safe),
        Value::Mapping(m) => m.iter().all(|(k, v)| value_is_safe(k) && value_is_safe(v)),
        Value::Tagged(t) => string_is_safe(&t.tag.to_string()) && value_is_safe(&t.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

fn string_is_safe(s: &str) -> bool {
    if s.starts_with('/') || s.split('/').any(|c| c == "..") {
        return false;
    }
    // What `UpstreamUrl::from_str` would resolve: the host of the authority
    // after the first `://`, unless it is an IP literal.
    let Some((_, rest)) = s.split_once("://") else {
        return true;
    };
    let authority = rest.find('/').map_or(rest, |i| &rest[..i]);
    match authority.parse::<http::uri::Authority>() {
        Ok(a) => a.host().trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok(),
        Err(_) => true,
    }
}
