//! Metrics of caching mirrors and of the gateway's own logins upstream.
//! Looked up by label on each event: mirror requests are few next to
//! proxied ones, and each already costs a disk or upstream round trip.

use std::sync::LazyLock;

use pingora_prometheus::prometheus::{IntCounterVec, IntGaugeVec, Opts};

use super::{counter_vec, register};

struct Families {
    requests: IntCounterVec,
    bytes: IntCounterVec,
    collapsed: IntCounterVec,
    mismatches: IntCounterVec,
    evictions: IntCounterVec,
    evicted_bytes: IntCounterVec,
    size: IntGaugeVec,
    tokens: IntCounterVec,
    rejected: IntCounterVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    let size = IntGaugeVec::new(
        Opts::new(
            "registry_gateway_cache_size_bytes",
            "Bytes of committed blobs in each cache directory (the part max_size bounds; manifests and tags come on top).",
        ),
        &["dir"],
    )
    .expect("valid metric definition");
    register(size.clone());
    Families {
        requests: counter_vec(
            "registry_gateway_cache_requests_total",
            "Blob, manifest and tag lookups of caching registries by result: hit, miss (read upstream), stale (served while the upstream is down), bypass (not cacheable).",
            &["registry", "kind", "result"],
        ),
        bytes: counter_vec(
            "registry_gateway_cache_response_bytes_total",
            "Body bytes caching registries sent to clients, by source: cache (a hit) or upstream (a fill being read).",
            &["registry", "source"],
        ),
        collapsed: counter_vec(
            "registry_gateway_cache_collapsed_total",
            "Requests for a blob that followed a fill already in progress instead of fetching it again.",
            &["registry"],
        ),
        mismatches: counter_vec(
            "registry_gateway_cache_digest_mismatches_total",
            "Upstream blobs or manifests whose content did not match their digest: never committed, never served whole.",
            &["upstream"],
        ),
        evictions: counter_vec(
            "registry_gateway_cache_evictions_total",
            "Blobs removed from a cache directory to keep it under max_size.",
            &["dir"],
        ),
        evicted_bytes: counter_vec(
            "registry_gateway_cache_evicted_bytes_total",
            "Bytes removed from a cache directory to keep it under max_size.",
            &["dir"],
        ),
        size,
        tokens: counter_vec(
            "registry_gateway_upstream_token_fetches_total",
            "Tokens the gateway fetched from upstream realms with its credentials (or anonymously), by result.",
            &["upstream", "result"],
        ),
        rejected: counter_vec(
            "registry_gateway_upstream_auth_rejected_total",
            "Upstream 401 answers to requests the gateway had logged in for (its token or password refused).",
            &["upstream"],
        ),
    }
});

pub fn cache_request(registry: &str, kind: &str, result: &str) {
    FAMILIES.requests.with_label_values(&[registry, kind, result]).inc();
}

pub fn cache_bytes(registry: &str, from_cache: bool, n: u64) {
    let source = if from_cache { "cache" } else { "upstream" };
    FAMILIES.bytes.with_label_values(&[registry, source]).inc_by(n);
}

pub fn cache_collapsed(registry: &str) {
    FAMILIES.collapsed.with_label_values(&[registry]).inc();
}

pub fn digest_mismatch(upstream: &str) {
    FAMILIES.mismatches.with_label_values(&[upstream]).inc();
}

pub fn evicted(dir: &str, bytes: u64) {
    FAMILIES.evictions.with_label_values(&[dir]).inc();
    FAMILIES.evicted_bytes.with_label_values(&[dir]).inc_by(bytes);
}

pub fn cache_size(dir: &str, bytes: u64) {
    FAMILIES.size.with_label_values(&[dir]).set(bytes as i64);
}

pub fn token_fetch(upstream: &str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    FAMILIES.tokens.with_label_values(&[upstream, result]).inc();
}

pub fn auth_rejected(upstream: &str) {
    FAMILIES.rejected.with_label_values(&[upstream]).inc();
}

/// Series at 0 for a caching registry, so `increase()` sees the first event.
pub fn init_registry(registry: &str, upstreams: &[&str]) {
    for kind in ["blob", "manifest", "tag"] {
        for result in ["hit", "miss", "stale", "bypass"] {
            FAMILIES.requests.with_label_values(&[registry, kind, result]);
        }
    }
    for source in ["cache", "upstream"] {
        FAMILIES.bytes.with_label_values(&[registry, source]);
    }
    FAMILIES.collapsed.with_label_values(&[registry]);
    for u in upstreams {
        FAMILIES.mismatches.with_label_values(&[u]);
    }
}

/// Series at 0 for an upstream the gateway logs in to.
pub fn init_upstream(upstream: &str) {
    for result in ["success", "failure"] {
        FAMILIES.tokens.with_label_values(&[upstream, result]);
    }
    FAMILIES.rejected.with_label_values(&[upstream]);
}

pub fn init_dir(dir: &str) {
    FAMILIES.evictions.with_label_values(&[dir]);
    FAMILIES.evicted_bytes.with_label_values(&[dir]);
}
