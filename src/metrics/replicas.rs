//! Per-replica metrics of upstream pools. Counters are resolved (at 0)
//! when a replica is built and kept with it, so the request path only adds. Up and in-flight are read from the pools of the
//! configuration in force at scrape time (like `requests_in_flight`): a
//! replica a reload removed drops out of the gauges at once.

use std::sync::LazyLock;

use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};

use super::{UpstreamFailure, counter_vec, register};

/// Why a replica took an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The upstream's policy chose it.
    Policy,
    /// An upload hint (`_gw=`) named it.
    Upload,
    /// A retry after another replica failed to connect.
    Retry,
    /// No replica was up: tried anyway rather than refusing the request.
    Fallback,
}

impl Selection {
    const ALL: [Selection; 4] = [
        Selection::Policy,
        Selection::Upload,
        Selection::Retry,
        Selection::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Policy => "policy",
            Selection::Upload => "upload",
            Selection::Retry => "retry",
            Selection::Fallback => "fallback",
        }
    }
}

/// `kind` label values of `replica_failures_total`.
const FAILURE_KINDS: [&str; 4] = ["connect", "timeout", "error", "5xx"];

struct Families {
    requests: IntCounterVec,
    failures: IntCounterVec,
    selected: IntCounterVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families {
    requests: counter_vec(
        "registry_gateway_replica_requests_total",
        "Responses received from each replica of an upstream pool.",
        &["upstream", "replica"],
    ),
    failures: counter_vec(
        "registry_gateway_replica_failures_total",
        "Failed attempts on each replica by kind: connect (refused, unreachable, TLS), timeout (connect, read or write), error (the connection broke), 5xx (answered 5xx).",
        &["upstream", "replica", "kind"],
    ),
    selected: counter_vec(
        "registry_gateway_replica_selected_total",
        "Attempts sent to each replica, by why it was chosen: policy, upload (hint), retry, fallback (none was up).",
        &["upstream", "replica", "reason"],
    ),
});

/// The counters of one replica of one upstream.
#[derive(Debug)]
pub struct ReplicaMetrics {
    requests: IntCounter,
    failures: [IntCounter; FAILURE_KINDS.len()],
    selected: [IntCounter; Selection::ALL.len()],
}

impl ReplicaMetrics {
    /// Every series is made at 0 here, so the first event of each shows
    /// in Prometheus' `increase()`.
    pub fn new(upstream: &str, replica: &str) -> ReplicaMetrics {
        let f = &*FAMILIES;
        let labels = [upstream, replica];
        ReplicaMetrics {
            requests: f.requests.with_label_values(&labels),
            failures: FAILURE_KINDS.map(|k| f.failures.with_label_values(&[upstream, replica, k])),
            selected: Selection::ALL.map(|w| f.selected.with_label_values(&[upstream, replica, w.as_str()])),
        }
    }

    pub fn selected(&self, why: Selection) {
        self.selected[why as usize].inc();
    }

    /// A response head arrived (any status).
    pub fn response(&self, status: u16) {
        self.requests.inc();
        if status >= 500 {
            self.failure_kind(3);
        }
    }

    pub fn failure(&self, kind: UpstreamFailure) {
        self.failure_kind(match kind {
            UpstreamFailure::Connect { timed_out: false } => 0,
            UpstreamFailure::Connect { timed_out: true } | UpstreamFailure::Timeout => 1,
            UpstreamFailure::Other => 2,
        });
    }

    fn failure_kind(&self, i: usize) {
        self.failures[i].inc();
    }
}

/// One replica as the configuration in force sees it, at scrape time.
pub struct ReplicaSample {
    pub upstream: String,
    pub replica: String,
    /// Active checks pass (or are off).
    pub up: bool,
    pub in_flight: usize,
}

/// Reads the pools of the configuration in force.
pub type ReplicaSamples = Box<dyn Fn() -> Vec<ReplicaSample> + Send + Sync>;

/// `replica_up`, `replica_in_flight` and `upstream_up` (any replica up),
/// set from the pools at each scrape.
struct PoolCollector {
    samples: ReplicaSamples,
    replica_up: IntGaugeVec,
    in_flight: IntGaugeVec,
    upstream_up: IntGaugeVec,
    descs: Vec<Desc>,
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Reset: replicas and upstreams a reload removed disappear.
        self.replica_up.reset();
        self.in_flight.reset();
        self.upstream_up.reset();
        for s in (self.samples)() {
            let labels = [s.upstream.as_str(), s.replica.as_str()];
            self.replica_up.with_label_values(&labels).set(s.up as i64);
            self.in_flight.with_label_values(&labels).set(s.in_flight as i64);
            let any = self.upstream_up.with_label_values(&[&s.upstream]);
            any.set(any.get().max(s.up as i64));
        }
        let mut out = self.replica_up.collect();
        out.extend(self.in_flight.collect());
        out.extend(self.upstream_up.collect());
        out
    }
}

/// Registers the families and the scrape-time collector of the pools.
pub fn init(samples: ReplicaSamples) {
    LazyLock::force(&FAMILIES);
    let replica_up = gauge_vec(
        "registry_gateway_replica_up",
        "1 while the replica passes its active health checks (or they are off).",
        &["upstream", "replica"],
    );
    let in_flight = gauge_vec(
        "registry_gateway_replica_in_flight",
        "Attempts on the replica not yet finished (what least_requests balances).",
        &["upstream", "replica"],
    );
    let upstream_up = gauge_vec(
        "registry_gateway_upstream_up",
        "1 while at least one replica of the upstream passes its active health checks.",
        &["upstream"],
    );
    let descs = [&replica_up, &in_flight, &upstream_up]
        .iter()
        .flat_map(|v| v.desc())
        .cloned()
        .collect();
    register(PoolCollector {
        samples,
        replica_up,
        in_flight,
        upstream_up,
        descs,
    });
}
