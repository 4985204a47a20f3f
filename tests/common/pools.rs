//! Upstream pools in tests: registry:2 replicas on one storage directory,
//! a gateway in front of them, and what its metrics say per replica.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::http::Request;
use super::registry::Registry;
use super::{Gateway, free_addr, sample, scrape, tail, wait_until};

/// `n` registry:2 replicas sharing `storage`; `secrets[i]` is replica i's
/// `http.secret` (one secret for all when it has one entry).
pub fn replicas(storage: &Path, n: usize, secrets: &[&str]) -> Vec<Registry> {
    (0..n)
        .map(|i| Registry::start_replica(storage, secrets[i.min(secrets.len() - 1)]))
        .collect()
}

/// A gateway config whose one registry's upstream is the pool of `urls`,
/// listening on `listen`; `pool` is YAML under the upstream (indented four
/// spaces: `    policy: ...`).
pub fn pool_yaml(urls: &[String], pool: &str, listen: SocketAddr) -> String {
    let list: Vec<String> = urls.iter().map(|u| format!("      - \"{u}\"\n")).collect();
    format!(
        "listeners:\n  - name: plain\n    address: \"{listen}\"\n\
         upstreams:\n  registry:\n    urls:\n{}{pool}\n\
         registries:\n  - name: main\n    default: true\n    upstream: registry\n",
        list.concat()
    )
}

/// A gateway started from [`pool_yaml`].
pub fn start_pool_gateway(urls: &[String], pool: &str) -> Gateway {
    let listen = free_addr();
    Gateway::start_yaml(&pool_yaml(urls, pool, listen), listen)
}

/// `registry_gateway_replica_<name>{replica=url,...labels}`.
pub fn replica_metric(gateway: &Gateway, name: &str, url: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("replica", url)];
    all.extend_from_slice(labels);
    sample(
        &scrape(gateway.metrics_addr()),
        &format!("registry_gateway_replica_{name}"),
        &all,
    )
}

/// Waits until the gateway reports the replica up (or down); how long it took.
#[track_caller]
pub fn wait_replica_up(gateway: &Gateway, url: &str, up: bool, timeout: Duration) -> Duration {
    let start = Instant::now();
    let want = if up { 1.0 } else { 0.0 };
    let seen = wait_until(timeout, || replica_metric(gateway, "up", url, &[]) == want);
    assert!(
        seen,
        "replica {url} not {} within {timeout:?}; metrics:\n{}\nlog:\n{}",
        if up { "up" } else { "down" },
        scrape(gateway.metrics_addr()),
        tail(&gateway.log(), 3000)
    );
    start.elapsed()
}

/// `GET /readyz` status.
pub fn readyz(gateway: &Gateway) -> u16 {
    Request::get("/readyz").send(gateway.metrics_addr()).status
}

/// The upload hint (`_gw=`) the gateway gives uploads answered by the
/// replica at `url`: 12 hex digits of the SHA-256 of its URL.
pub fn upload_key(url: &str) -> String {
    let digest = super::oci::sha256_bytes(url.as_bytes());
    digest["sha256:".len()..][..12].to_owned()
}
