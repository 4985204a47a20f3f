//! Prometheus metrics under the `registry_gateway_` prefix.
//!
//! Everything is registered in the default registry of the `prometheus`
//! version that `pingora-prometheus` re-exports, so Pingora's own metrics
//! service and ours read the same registry. Label handles are resolved once
//! per (virtual registry, operation, status class) on first use and kept in
//! [`RegistryMetrics`], so recording a request is a few atomic adds.

mod access;
mod connections;
pub mod endpoint;
pub mod mirror;
mod reloads;
mod replicas;

pub use connections::{client_header_timeout, connection_closed, connection_opened, connection_refused};
pub use reloads::{config_loaded, config_reload};
pub use replicas::{ReplicaMetrics, ReplicaSample, ReplicaSamples, Selection};

/// Registers the per-replica gauges, read from `samples` at each scrape.
pub fn init_pools(samples: ReplicaSamples) {
    replicas::init(samples)
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{
    self, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use crate::operation::Operation;

/// Requests received and not yet finished; the proxy counts, scrapes read.
pub static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Handshakes per TLS listener: started (certificate chosen) and completed.
#[derive(Debug, Default)]
pub struct TlsStats {
    pub started: AtomicU64,
    pub completed: AtomicU64,
}

/// From a 1 ms manifest HEAD to a half-hour blob push.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0,
];

/// Label of requests that matched no virtual registry.
pub const NO_REGISTRY: &str = "none";
/// Label shared by virtual registries beyond `metrics.max_registry_labels`.
pub const OTHER_REGISTRIES: &str = "other";

struct Families {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    upstream_connect_failures: IntCounterVec,
    upstream_timeouts: IntCounterVec,
    upstream_5xx: IntCounterVec,
    auth: IntCounterVec,
    auth_cache: IntCounterVec,
    reloads: IntCounterVec,
    access_log_dropped: IntCounter,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(c.clone());
    c
}

fn register(c: impl Collector + 'static) {
    // Already registered only when a test builds the families twice.
    let _ = prometheus::register(Box::new(c));
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "registry_gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by registry operation.",
        )
        .buckets(DURATION_BUCKETS.to_vec()),
        &["operation"],
    )
    .expect("valid metric definition");
    register(duration.clone());
    let access_log_dropped = IntCounter::new(
        "registry_gateway_access_log_dropped_total",
        "Access log lines dropped because the log output could not keep up.",
    )
    .expect("valid metric definition");
    register(access_log_dropped.clone());
    let build_info = IntGaugeVec::new(
        Opts::new("registry_gateway_build_info", "Always 1; the version as a label."),
        &["version"],
    )
    .expect("valid metric definition");
    register(build_info.clone());
    build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Families {
        requests: counter_vec(
            "registry_gateway_requests_total",
            "Requests answered, by virtual registry, registry operation and status class.",
            &["registry", "operation", "status"],
        ),
        duration,
        request_bytes: counter_vec(
            "registry_gateway_request_body_bytes_total",
            "Request body bytes received from clients.",
            &["registry", "operation"],
        ),
        response_bytes: counter_vec(
            "registry_gateway_response_body_bytes_total",
            "Response body bytes sent to clients.",
            &["registry", "operation"],
        ),
        upstream_connect_failures: counter_vec(
            "registry_gateway_upstream_connect_failures_total",
            "Connections to any replica of the upstream that failed or timed out (each attempt, retried ones included).",
            &["upstream"],
        ),
        upstream_timeouts: counter_vec(
            "registry_gateway_upstream_timeouts_total",
            "Requests that timed out waiting on the upstream (connect, read or write).",
            &["upstream"],
        ),
        upstream_5xx: counter_vec(
            "registry_gateway_upstream_5xx_responses_total",
            "5xx responses received from the upstream.",
            &["upstream"],
        ),
        auth: counter_vec(
            "registry_gateway_auth_total",
            "Basic auth checks by outcome: success, failure (wrong or unknown credentials), missing, throttled.",
            &["outcome"],
        ),
        auth_cache: counter_vec(
            "registry_gateway_auth_cache_total",
            "Credential cache lookups: hit (no hashing) or miss (verified against the htpasswd hash).",
            &["result"],
        ),
        reloads: counter_vec(
            "registry_gateway_reloads_total",
            "Re-reads of htpasswd files and certificates, by kind and result.",
            &["kind", "result"],
        ),
        access_log_dropped,
    }
});

/// Registers every family (so they show up before the first request) and
/// the collector of the process-wide counters.
pub fn init(tls: Vec<(String, Arc<TlsStats>)>) {
    LazyLock::force(&FAMILIES);
    // Series at 0 from the start: Prometheus' increase() cannot count the
    // first event of a series that appears already at 1.
    for kind in ["htpasswd", "certificate"] {
        for result in ["success", "failure"] {
            FAMILIES.reloads.with_label_values(&[kind, result]);
        }
    }
    connections::init();
    access::init();
    register(RuntimeCollector::new(tls));
}

/// Status classes; `none` when no response was sent (client went away).
const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    match status {
        100..=599 => (status / 100) as usize,
        _ => 0,
    }
}

/// Lazily resolved handles of one (registry, operation).
#[derive(Default)]
struct OperationSlot {
    by_status: [OnceLock<IntCounter>; STATUS_CLASSES.len()],
    request_bytes: OnceLock<IntCounter>,
    response_bytes: OnceLock<IntCounter>,
}

/// The metric handles of one virtual registry (or of the registries that
/// share the `other` label).
pub struct RegistryMetrics {
    label: Arc<str>,
    slots: [OperationSlot; Operation::COUNT],
    access: access::AccessCounters,
}

impl std::fmt::Debug for RegistryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryMetrics({})", self.label)
    }
}

/// What one finished request contributes.
pub struct RequestRecord {
    pub operation: Operation,
    /// 0 when no response was sent.
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration: Duration,
}

impl RegistryMetrics {
    pub fn new(label: &str) -> Arc<RegistryMetrics> {
        Arc::new(RegistryMetrics {
            label: label.into(),
            slots: std::array::from_fn(|_| OperationSlot::default()),
            access: Default::default(),
        })
    }

    /// For requests no virtual registry took.
    pub fn unmatched() -> &'static Arc<RegistryMetrics> {
        static NONE: LazyLock<Arc<RegistryMetrics>> = LazyLock::new(|| RegistryMetrics::new(NO_REGISTRY));
        &NONE
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn record(&self, r: &RequestRecord) {
        let f = &*FAMILIES;
        let op = r.operation.as_str();
        let slot = &self.slots[r.operation.index()];
        let class = status_class(r.status);
        slot.by_status[class]
            .get_or_init(|| f.requests.with_label_values(&[&self.label, op, STATUS_CLASSES[class]]))
            .inc();
        if r.request_bytes > 0 {
            slot.request_bytes
                .get_or_init(|| f.request_bytes.with_label_values(&[&self.label, op]))
                .inc_by(r.request_bytes);
        }
        if r.response_bytes > 0 {
            slot.response_bytes
                .get_or_init(|| f.response_bytes.with_label_values(&[&self.label, op]))
                .inc_by(r.response_bytes);
        }
        operation_histogram(r.operation).observe(r.duration.as_secs_f64());
    }
}

fn operation_histogram(op: Operation) -> &'static Histogram {
    static HISTOGRAMS: [OnceLock<Histogram>; Operation::COUNT] = [const { OnceLock::new() }; Operation::COUNT];
    HISTOGRAMS[op.index()].get_or_init(|| FAMILIES.duration.with_label_values(&[op.as_str()]))
}

/// Failure counters of one upstream, resolved when it is built (series at
/// 0, so the first failure shows in `increase()`).
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    name: String,
    connect_failures: OnceLock<IntCounter>,
    timeouts: OnceLock<IntCounter>,
    responses_5xx: OnceLock<IntCounter>,
}

/// How an exchange with an upstream went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The connection could not be made (timeouts included).
    Connect {
        timed_out: bool,
    },
    /// Connected, then no progress within the read/write timeout.
    Timeout,
    Other,
}

impl UpstreamMetrics {
    pub fn new(name: &str) -> UpstreamMetrics {
        let m = UpstreamMetrics {
            name: name.to_owned(),
            ..UpstreamMetrics::default()
        };
        let f = &*FAMILIES;
        m.counter(&m.connect_failures, &f.upstream_connect_failures);
        m.counter(&m.timeouts, &f.upstream_timeouts);
        m.counter(&m.responses_5xx, &f.upstream_5xx);
        m
    }

    fn counter<'a>(&'a self, cell: &'a OnceLock<IntCounter>, family: &IntCounterVec) -> &'a IntCounter {
        cell.get_or_init(|| family.with_label_values(&[&self.name]))
    }

    pub fn failure(&self, kind: UpstreamFailure) {
        let f = &*FAMILIES;
        match kind {
            UpstreamFailure::Connect { timed_out } => {
                self.counter(&self.connect_failures, &f.upstream_connect_failures).inc();
                if timed_out {
                    self.counter(&self.timeouts, &f.upstream_timeouts).inc();
                }
            }
            UpstreamFailure::Timeout => self.counter(&self.timeouts, &f.upstream_timeouts).inc(),
            UpstreamFailure::Other => {}
        }
    }

    pub fn response(&self, status: u16) {
        if status >= 500 {
            self.counter(&self.responses_5xx, &FAMILIES.upstream_5xx).inc();
        }
    }
}

/// Outcomes of a Basic auth check, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Success,
    Failure,
    Missing,
    Throttled,
}

pub fn auth_outcome(r: AuthResult) {
    static HANDLES: LazyLock<[IntCounter; 4]> =
        LazyLock::new(|| ["success", "failure", "missing", "throttled"].map(|o| FAMILIES.auth.with_label_values(&[o])));
    HANDLES[r as usize].inc();
}

pub fn auth_cache(hit: bool) {
    static HANDLES: LazyLock<[IntCounter; 2]> =
        LazyLock::new(|| ["hit", "miss"].map(|o| FAMILIES.auth_cache.with_label_values(&[o])));
    HANDLES[usize::from(!hit)].inc();
}

/// What was re-read from disk.
#[derive(Debug, Clone, Copy)]
pub enum ReloadKind {
    Htpasswd,
    Certificate,
}

pub fn reload(kind: ReloadKind, ok: bool) {
    let kind = match kind {
        ReloadKind::Htpasswd => "htpasswd",
        ReloadKind::Certificate => "certificate",
    };
    let result = if ok { "success" } else { "failure" };
    FAMILIES.reloads.with_label_values(&[kind, result]).inc();
}

pub fn access_log_dropped() {
    FAMILIES.access_log_dropped.inc();
}

/// TLS handshakes that failed, counted from Pingora's error log line (it
/// offers no callback for failures).
pub static TLS_HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Reads the process-wide atomics at scrape time, so the request path
/// only touches plain atomics for them.
struct RuntimeCollector {
    in_flight: IntGauge,
    handshakes: IntCounterVec,
    tls: Vec<(String, Arc<TlsStats>)>,
    descs: Vec<Desc>,
}

impl RuntimeCollector {
    fn new(tls: Vec<(String, Arc<TlsStats>)>) -> Self {
        let in_flight = IntGauge::new(
            "registry_gateway_requests_in_flight",
            "Requests received and not yet finished.",
        )
        .expect("valid metric definition");
        let handshakes = IntCounterVec::new(
            Opts::new(
                "registry_gateway_tls_handshakes_total",
                "TLS handshakes by listener and stage: started (certificate chosen), completed, failed (all listeners: listener=\"any\").",
            ),
            &["listener", "stage"],
        )
        .expect("valid metric definition");
        let descs = in_flight.desc().into_iter().chain(handshakes.desc()).cloned().collect();
        RuntimeCollector {
            in_flight,
            handshakes,
            tls,
            descs,
        }
    }
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.in_flight.set(IN_FLIGHT.load(Ordering::Relaxed) as i64);
        for (listener, stats) in &self.tls {
            let set = |stage: &str, v: u64| {
                let c = self.handshakes.with_label_values(&[listener.as_str(), stage]);
                c.inc_by(v.saturating_sub(c.get()));
            };
            set("started", stats.started.load(Ordering::Relaxed));
            set("completed", stats.completed.load(Ordering::Relaxed));
        }
        if !self.tls.is_empty() {
            let c = self.handshakes.with_label_values(&["any", "failed"]);
            c.inc_by(TLS_HANDSHAKE_FAILURES.load(Ordering::Relaxed).saturating_sub(c.get()));
        }
        let mut out = self.in_flight.collect();
        out.extend(self.handshakes.collect());
        out
    }
}
