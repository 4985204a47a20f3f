//! Per-request pieces of the gateway, measured in isolation:
//! `cargo bench --bench hot_path`.
//!
//! Host matching with 1, 100 and 1,000 virtual registries (half exact
//! names, half regex rules), path classification, registry operation
//! classification, recording a request in metrics, Location rewriting and
//! a cached credential check.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use registry_gateway::access::{AccessPolicy, Action};
use registry_gateway::config::{AccessRuleSettings, AccessSettings};

use http::HeaderValue;
use registry_gateway::rewrite::{ClientView, Scheme, rewrite_location};
use registry_gateway::routing::classify;
use registry_gateway::vhost::{HostRouter, HostRule};

fn router(n: usize) -> HostRouter {
    let rules = (0..n)
        .map(|i| HostRule {
            hosts: if i % 2 == 0 {
                vec![format!("registry{i}.corp")]
            } else {
                vec![]
            },
            host_regex: (i % 2 == 1).then(|| format!(r"(a|b)\.mirror{i}\.corp")),
            ports: vec![],
            default: i + 1 == n,
        })
        .collect();
    HostRouter::new(rules).unwrap()
}

fn host_matching(c: &mut Criterion) {
    for n in [1usize, 100, 1000] {
        let r = router(n);
        let exact = format!("registry{}.corp:443", (n - 1) / 2 * 2);
        c.bench_function(&format!("host match, {n} registries, exact name"), |b| {
            b.iter(|| r.select(Some(black_box(&exact)), Some(443)))
        });
        if n > 1 {
            let last_regex = (0..n).rev().find(|i| i % 2 == 1).unwrap();
            let regex_hit = format!("b.mirror{last_regex}.corp:443");
            c.bench_function(&format!("host match, {n} registries, last regex rule"), |b| {
                b.iter(|| r.select(Some(black_box(&regex_hit)), Some(443)))
            });
        }
        c.bench_function(&format!("host match, {n} registries, no match"), |b| {
            b.iter(|| r.select(Some(black_box("unknown.example:443")), Some(443)))
        });
    }
}

fn path_and_location(c: &mut Criterion) {
    c.bench_function("classify manifest path", |b| {
        b.iter(|| classify(black_box(b"/v2/library/alpine/manifests/sha256:0123456789abcdef")))
    });
    let method = http::Method::PATCH;
    c.bench_function("registry operation of an upload chunk", |b| {
        b.iter(|| {
            registry_gateway::operation::classify(
                black_box(&method),
                Some(registry_gateway::routing::Route::V2),
                black_box("/v2/team/app/blobs/uploads/5b1f0c2e-8d1e-4a55-9c0e-1f2e3d4c5b6a"),
            )
        })
    });
    let metrics = registry_gateway::metrics::RegistryMetrics::new("bench");
    let record = registry_gateway::metrics::RequestRecord {
        operation: registry_gateway::operation::Operation::ManifestHead,
        status: 200,
        request_bytes: 0,
        response_bytes: 0,
        duration: std::time::Duration::from_micros(800),
    };
    c.bench_function("record a request in metrics", |b| {
        b.iter(|| metrics.record(black_box(&record)))
    });
    let view = ClientView {
        scheme: Scheme::Https,
        authority: Some(HeaderValue::from_static("registry.corp:5443")),
        ip: None,
        trusted: false,
    };
    let loc = b"http://127.0.0.1:15000/v2/a/b/blobs/uploads/5b1f0c2e?_state=abcdefghijklmnopqrstuvwxyz0123456789";
    c.bench_function("rewrite upload Location", |b| {
        b.iter(|| rewrite_location(black_box(loc), "127.0.0.1:15000", "", &view))
    });
}

fn cached_credential(c: &mut Criterion) {
    use registry_gateway::auth::{AuthLimits, AuthPolicy, AuthScope, Authenticator, HtpasswdFile};
    let dir = std::env::temp_dir().join(format!("rg-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("htpasswd");
    let line = registry_gateway::passwd::bcrypt_line("alice", "secret", 10).unwrap();
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let policy = AuthPolicy::new(
        "bench",
        AuthScope::All,
        std::sync::Arc::new(HtpasswdFile::load(&path).unwrap()),
        0,
    );
    let auth = Authenticator::new(AuthLimits::default());
    let header = HeaderValue::from_static("Basic YWxpY2U6c2VjcmV0");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(auth.check(&policy, Some(&header), None)); // the one bcrypt run
    c.bench_function("auth check, cached bcrypt-10 credential", |b| {
        b.iter(|| rt.block_on(auth.check(&policy, Some(black_box(&header)), None)))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn rule(pattern: &str, pull: &str, push: &str) -> AccessRuleSettings {
    AccessRuleSettings {
        repositories: vec![pattern.parse().unwrap()],
        pull: vec![pull.parse().unwrap()],
        push: vec![push.parse().unwrap()],
        delete: vec![],
    }
}

/// `n` team rules `team-{i}/**` (pull: authenticated, push: u{i}) and a final `**`.
fn team_policy(n: usize) -> AccessPolicy {
    let mut rules: Vec<_> = (0..n.saturating_sub(1))
        .map(|i| rule(&format!("team-{i}/**"), "authenticated", &format!("u{i}")))
        .collect();
    rules.push(rule("**", "authenticated", "admin"));
    AccessPolicy::new(&AccessSettings {
        key: "access".into(),
        groups: Default::default(),
        rules,
    })
}

/// `n` rules that all start with a wildcard (`*-{i}`): the cached path.
fn floating_policy(n: usize) -> AccessPolicy {
    let rules = (0..n)
        .map(|i| rule(&format!("*-{i}"), "authenticated", "admin"))
        .collect();
    AccessPolicy::new(&AccessSettings {
        key: "access".into(),
        groups: Default::default(),
        rules,
    })
}

fn access_decisions(c: &mut Criterion) {
    for n in [1usize, 100, 1000] {
        let p = team_policy(n);
        let last = n.saturating_sub(2);
        let (user, repo) = (format!("u{last}"), format!("team-{last}/app"));
        c.bench_function(&format!("access decide, {n} rules, team rule hit"), |b| {
            b.iter(|| p.decide(Some(black_box(&user)), black_box(&repo), Action::Push))
        });
        c.bench_function(&format!("access decide, {n} rules, catch-all"), |b| {
            b.iter(|| p.decide(Some(black_box("someone")), black_box("elsewhere/app"), Action::Pull))
        });
        c.bench_function(&format!("access decide, {n} rules, denied"), |b| {
            b.iter(|| p.decide(Some(black_box("intruder")), black_box(&repo), Action::Push))
        });
        let f = floating_policy(n);
        let hit = format!("app-{}", n - 1);
        c.bench_function(
            &format!("access decide, {n} rules, floating worst case (cached)"),
            |b| b.iter(|| f.decide(Some(black_box("x")), black_box(&hit), Action::Pull)),
        );
    }
    let p = team_policy(100);
    let names: Vec<String> = (0..1000).map(|i| format!("team-{}/app-{i}", i % 150)).collect();
    c.bench_function("access catalog filter, 1000 names, 100 rules", |b| {
        b.iter(|| names.iter().filter(|n| p.may_pull(Some("u7"), n)).count())
    });
}

criterion_group!(
    benches,
    host_matching,
    path_and_location,
    cached_credential,
    access_decisions
);
criterion_main!(benches);
