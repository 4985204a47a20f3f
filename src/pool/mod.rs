//! Upstream pools: the replicas of one registry (one storage behind them),
//! which one each attempt of a request goes to, and what is known about
//! their health.
//!
//! - [`select`]: the policies, on `pingora-load-balancing`'s selectors;
//! - [`health`]: active checks (the crate's health state, our check, one
//!   background service);
//! - [`passive`]: in-flight counts, and ejection after failed connections.
//!
//! A replica is known by its identity, its URL and TLS settings: its
//! in-flight count, ejection and health outlive a reload that keeps it.
//! An upstream with one `url` is a pool of one.

mod health;
mod passive;
mod select;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use pingora::lb::{Backend, Extensions};
use pingora::upstreams::peer::HttpPeer;

pub use health::{HealthGroup, HealthGroups, HealthService, USER_AGENT_VALUE};
pub use passive::Probe;

use crate::config::values::UpstreamUrl;
use crate::config::{PassiveSettings, PolicySetting, PoolSettings};
use crate::metrics::{ReplicaMetrics, ReplicaSample, Selection, UpstreamFailure};
use passive::{InFlight, ReplicaExt, ReplicaState};
use select::Selector;

/// One replica as `runtime` hands it over: where it is and the peer
/// requests use (TLS settings applied).
pub struct ReplicaSpec {
    pub url: UpstreamUrl,
    pub peer: HttpPeer,
    /// The URL and TLS settings: what makes two replicas the same one.
    pub identity: String,
}

/// A replica with everything the hot path needs precomputed.
#[derive(Debug)]
pub struct Replica {
    /// `scheme://host:port/prefix`: the replica's name in logs and metrics.
    pub url: String,
    pub address: SocketAddr,
    /// `host:port` as written in the URL, lower-cased; what the replica
    /// puts in absolute URLs it builds from its own name.
    pub authority: String,
    /// Path the registry is served under (`/mirror`); empty for the root.
    pub path_prefix: String,
    /// The Host header sent in `HostHeaderMode::Upstream`.
    pub authority_header: HeaderValue,
    /// Names this replica in upload URLs (`affinity`): 12 hex digits of
    /// the SHA-256 of `url`, the same in every gateway process.
    pub upload_key: String,
    pub metrics: ReplicaMetrics,
    peer: HttpPeer,
    /// `timeouts.upstream_header`, bounded by `upstream_read`.
    header_timeout: Duration,
    state: Arc<ReplicaState>,
    backend: Backend,
}

impl Replica {
    /// A fresh peer for one attempt (Pingora takes ownership of it).
    /// `quick`: a request the registry answers at once (GET, HEAD, DELETE):
    /// a replica silent for `upstream_header` gets a 504. Pingora has no
    /// time-to-head timeout, so this is its per-read timeout, which also
    /// bounds idle gaps inside the response body. Uploads keep the long
    /// idle timeout: committing a multi-GB blob on object storage can take
    /// minutes, even for a PUT without a body.
    pub fn peer(&self, quick: bool) -> Box<HttpPeer> {
        let mut peer = Box::new(self.peer.clone());
        if quick {
            peer.options.read_timeout = Some(self.header_timeout);
        }
        peer
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight()
    }
}

/// The replica one attempt goes to, counted in flight while held (in the
/// request's context, until the request ends or a retry replaces it).
pub struct Pick {
    pub index: usize,
    pub why: Selection,
    _in_flight: InFlight,
}

/// The replicas of one upstream and how to choose among them.
pub struct Pool {
    /// The upstream's name, for logs and metric labels.
    name: String,
    replicas: Vec<Replica>,
    selector: Selector,
    health: Option<Arc<HealthGroup>>,
    passive: Option<PassiveSettings>,
    policy: PolicySetting,
    shared_secret: bool,
    /// The replicas' upload keys, joined: pools with the same replicas
    /// have the same key, across reloads.
    key: String,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({}: {})", self.name, self.describe())
    }
}

impl Pool {
    /// `specs` is not empty (`config` checked it).
    pub fn new(name: &str, specs: Vec<ReplicaSpec>, settings: &PoolSettings, header_timeout: Duration) -> Pool {
        let health = settings.health.as_ref().map(health::group_for);
        let mut fresh = false;
        let mut replicas = Vec::with_capacity(specs.len());
        for spec in specs {
            let url = spec.url.canonical();
            let authority_header =
                HeaderValue::from_str(&spec.url.authority).expect("authority was parsed by http::uri::Authority");
            let probe = Probe {
                peer: spec.peer.clone(),
                host: authority_header.clone(),
                path_prefix: spec.url.path_prefix.clone(),
            };
            let (state, new) = passive::state_for(&spec.identity, &url, probe);
            fresh |= new;
            let mut ext = Extensions::new();
            ext.insert(ReplicaExt(state.clone()));
            let backend = Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(spec.url.address),
                weight: 1,
                ext,
            };
            replicas.push(Replica {
                upload_key: crate::affinity::upstream_key(&url),
                metrics: ReplicaMetrics::new(name, &url),
                address: spec.url.address,
                authority: spec.url.authority.clone(),
                path_prefix: spec.url.path_prefix.clone(),
                authority_header,
                peer: spec.peer,
                header_timeout,
                state,
                backend,
                url,
            });
        }
        let backends: BTreeSet<Backend> = replicas.iter().map(|r| r.backend.clone()).collect();
        let selector = Selector::new(settings.policy, backends, health.as_ref().map(|g| g.registry()));
        if let (true, Some(group)) = (fresh, &health) {
            group.wake();
        }
        let key = replicas
            .iter()
            .map(|r| r.upload_key.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Pool {
            name: name.to_owned(),
            replicas,
            selector,
            health,
            passive: settings.passive,
            policy: settings.policy,
            shared_secret: settings.shared_secret,
            key,
        }
    }

    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    pub fn replica(&self, index: usize) -> &Replica {
        &self.replicas[index]
    }

    pub fn policy(&self) -> PolicySetting {
        self.policy
    }

    /// The replicas share one `http.secret`: an upload may go on elsewhere.
    pub fn shared_secret(&self) -> bool {
        self.shared_secret
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn health_group(&self) -> Option<&Arc<HealthGroup>> {
        self.health.as_ref()
    }

    /// The replica an upload hint names.
    pub fn by_upload_key(&self, key: &str) -> Option<usize> {
        self.replicas.iter().position(|r| r.upload_key == key)
    }

    /// Whether requests may go to replica `index` now: its active checks
    /// pass and no failed connection ejected it.
    pub fn is_available(&self, index: usize) -> bool {
        let r = &self.replicas[index];
        self.selector.healthy(&r.backend) && !r.state.is_ejected(passive::now_ms())
    }

    /// Up, as `/readyz` and `replica_up` say: an active check passed and
    /// the checks pass now (always, with checks `off`). Passive ejection is
    /// left out: it comes and goes with single requests.
    pub fn is_up(&self, index: usize) -> bool {
        let r = &self.replicas[index];
        match &self.health {
            None => true,
            Some(_) => r.state.has_passed() && self.selector.healthy(&r.backend),
        }
    }

    pub fn any_up(&self) -> bool {
        (0..self.replicas.len()).any(|i| self.is_up(i))
    }

    /// The replica for an attempt: by policy among the available ones but
    /// `avoid` (a retry's failed replica). When none is available the
    /// request is not refused: the least loaded other replica that passes
    /// its checks, or else any, is tried (`Fallback`); with one replica
    /// that is the replica itself, as before pools existed.
    pub fn choose(&self, key: &[u8], avoid: Option<usize>) -> Pick {
        // One replica: nothing to choose (and no selector walk, health
        // lookup or backend clone on the hot path: 2.4k instructions).
        if self.replicas.len() == 1 {
            let why = if avoid.is_some() {
                Selection::Fallback
            } else {
                Selection::Policy
            };
            return self.pick(0, why);
        }
        let now = passive::now_ms();
        let acceptable = |i: usize| Some(i) != avoid && !self.replicas[i].state.is_ejected(now);
        if let Some(i) = self.selector.choose(&self.replicas, key, acceptable) {
            let why = if avoid.is_some() {
                Selection::Retry
            } else {
                Selection::Policy
            };
            return self.pick(i, why);
        }
        let fallback = (0..self.replicas.len())
            .filter(|&i| Some(i) != avoid)
            .min_by_key(|&i| {
                let r = &self.replicas[i];
                (!self.selector.healthy(&r.backend), r.state.in_flight())
            })
            .or(avoid)
            .unwrap_or(0);
        self.pick(fallback, Selection::Fallback)
    }

    /// Whether a retry of a request that failed on `tried` has somewhere
    /// else to go.
    pub fn has_alternative(&self, tried: usize) -> bool {
        (0..self.replicas.len()).any(|i| i != tried && self.is_available(i))
    }

    /// Replica `index` for an attempt, counted.
    pub fn pick(&self, index: usize, why: Selection) -> Pick {
        let r = &self.replicas[index];
        r.metrics.selected(why);
        Pick {
            index,
            why,
            _in_flight: InFlight::new(&r.state),
        }
    }

    /// An attempt on replica `index` failed before or while exchanging.
    /// Connection failures and timeouts count toward ejection.
    pub fn failed(&self, index: usize, kind: UpstreamFailure, error: &dyn std::fmt::Display) {
        let r = &self.replicas[index];
        r.metrics.failure(kind);
        let counts = matches!(kind, UpstreamFailure::Connect { .. } | UpstreamFailure::Timeout);
        if let (true, Some(settings)) = (counts, &self.passive)
            && let Some(ejection) = r.state.failed(settings)
        {
            log::warn!(
                "upstream {}: replica {} skipped for {ejection:?} after {} failed connection(s): {error}",
                self.name,
                r.url,
                settings.failures
            );
        }
    }

    /// Replica `index` answered with `status`.
    pub fn answered(&self, index: usize, status: u16) {
        let r = &self.replicas[index];
        r.state.answered();
        r.metrics.response(status);
    }

    /// `http://a:5000` for one replica; `http://a:5000, http://b:5000
    /// (least_requests)` for several.
    pub fn describe(&self) -> String {
        let urls: Vec<&str> = self.replicas.iter().map(|r| r.url.as_str()).collect();
        match urls.len() {
            1 => urls[0].to_owned(),
            _ => format!("{} ({})", urls.join(", "), self.policy.as_str()),
        }
    }

    /// How replicas are watched, for `check`: `health: GET /v2/ every 2s
    /// (timeout 2s, rise 2, fall 2); passive: skip 10s after 1 failure`.
    pub fn describe_watch(&self) -> String {
        let health = match &self.health {
            Some(g) => {
                let h = g.settings();
                format!(
                    "health: GET {} every {:?} (timeout {:?}, rise {}, fall {})",
                    h.path, h.interval, h.timeout, h.rise, h.fall
                )
            }
            None => "health: off".to_owned(),
        };
        let passive = match &self.passive {
            Some(p) => format!(
                "passive: skip {:?} after {} failed connection(s)",
                p.ejection, p.failures
            ),
            None => "passive: off".to_owned(),
        };
        format!("{health}; {passive}")
    }

    /// Each replica for the scrape-time gauges.
    pub fn samples(&self) -> impl Iterator<Item = ReplicaSample> + '_ {
        self.replicas.iter().enumerate().map(|(i, r)| ReplicaSample {
            upstream: self.name.clone(),
            replica: r.url.clone(),
            up: self.is_up(i),
            in_flight: r.in_flight(),
        })
    }
}

#[cfg(test)]
mod tests;
