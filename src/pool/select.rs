//! Choosing a replica. Round robin and consistent hashing are
//! `pingora-load-balancing`'s selectors (`Weighted<RoundRobin>`, Ketama)
//! over the pool's backends; the crate's health (active checks) and ours
//! (passive ejection, the replica a retry avoids) decide which backends are
//! acceptable. Least in-flight requests is ours: the crate's selectors know
//! nothing of load, so it walks the replicas itself and asks the crate only
//! for their health.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use pingora::lb::discovery::Static;
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, RoundRobin};
use pingora::lb::{Backend, Backends, HealthRegistry, LoadBalancer};

use super::Replica;
use crate::config::PolicySetting;

/// Steps a crate selector may take looking for an acceptable backend: its
/// iterators repeat backends (Ketama walks 160 points per backend). When it
/// gives up, the pool's own fallback still finds one.
const MAX_ITERATIONS: usize = 256;

pub(super) enum Selector {
    RoundRobin(LoadBalancer<RoundRobin>),
    /// The balancer only holds the backends and their health.
    LeastRequests {
        lb: LoadBalancer<RoundRobin>,
        next: AtomicUsize,
    },
    /// Requests without a repository (`/v2/`, the catalog) rotate instead:
    /// hashing the empty key would send them all to one replica.
    ConsistentHash {
        lb: LoadBalancer<Consistent>,
        next: AtomicUsize,
    },
}

impl Selector {
    /// `health`: the registry of the pool's check settings; `None` (checks
    /// `off`): a private registry without a check, where every backend
    /// stays healthy.
    pub(super) fn new(
        policy: PolicySetting,
        backends: BTreeSet<Backend>,
        health: Option<&Arc<HealthRegistry>>,
    ) -> Selector {
        let view = || {
            let discovery = Static::new(backends.clone());
            match health {
                Some(registry) => Backends::new_with_health_registry(discovery, registry.clone()),
                None => Backends::new(discovery),
            }
        };
        match policy {
            PolicySetting::RoundRobin => Selector::RoundRobin(balancer(view())),
            PolicySetting::LeastRequests => Selector::LeastRequests {
                lb: balancer(view()),
                next: AtomicUsize::new(0),
            },
            PolicySetting::ConsistentHash => Selector::ConsistentHash {
                lb: balancer(view()),
                next: AtomicUsize::new(0),
            },
        }
    }

    fn backends(&self) -> &Backends {
        match self {
            Selector::RoundRobin(lb) | Selector::LeastRequests { lb, .. } => lb.backends(),
            Selector::ConsistentHash { lb, .. } => lb.backends(),
        }
    }

    /// Whether the active checks let `backend` take requests (always, with
    /// checks `off`).
    pub(super) fn healthy(&self, backend: &Backend) -> bool {
        self.backends().ready(backend)
    }

    /// The replica for a request with `key` (a repository name; only
    /// consistent hashing reads it) among the healthy ones `acceptable`
    /// admits; `None` when there is none.
    pub(super) fn choose(&self, replicas: &[Replica], key: &[u8], acceptable: impl Fn(usize) -> bool) -> Option<usize> {
        let index_of = |b: &Backend| replicas.iter().position(|r| r.backend.addr == b.addr);
        let accept = |b: &Backend, healthy: bool| healthy && index_of(b).is_some_and(&acceptable);
        match self {
            Selector::RoundRobin(lb) => lb.select_with(b"", MAX_ITERATIONS, accept).and_then(|b| index_of(&b)),
            Selector::ConsistentHash { lb, .. } if !key.is_empty() => {
                lb.select_with(key, MAX_ITERATIONS, accept).and_then(|b| index_of(&b))
            }
            Selector::ConsistentHash { next, .. } => {
                rotation(next, replicas.len()).find(|&i| acceptable(i) && self.healthy(&replicas[i].backend))
            }
            Selector::LeastRequests { next, .. } => {
                let usable = |i: &usize| acceptable(*i) && self.healthy(&replicas[*i].backend);
                let load = |i: usize| replicas[i].state.in_flight();
                let least = (0..replicas.len()).filter(usable).map(load).min()?;
                // Equal loads (an idle pool) take turns: the k-th of the
                // least loaded, k counting up per request.
                let tied = (0..replicas.len()).filter(usable).filter(|&i| load(i) == least);
                // Loads move meanwhile: the count may be 0, the k-th gone.
                let k = next.fetch_add(1, Ordering::Relaxed) % tied.clone().count().max(1);
                tied.clone()
                    .nth(k)
                    .or_else(|| (0..replicas.len()).filter(usable).min_by_key(|&i| load(i)))
            }
        }
    }
}

/// `0..n` starting one further at each call.
fn rotation(next: &AtomicUsize, n: usize) -> impl Iterator<Item = usize> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    (0..n).map(move |k| start.wrapping_add(k) % n.max(1))
}

fn balancer<S>(backends: Backends) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let lb = LoadBalancer::from_backends(backends);
    // Static discovery answers at once: the first update builds the
    // selector here, on the reload thread, without a runtime.
    let updated = ready_now(lb.update()).expect("static discovery never waits");
    updated.expect("static discovery never fails");
    lb
}

/// Polls `future` once; `None` when it is not ready.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}
