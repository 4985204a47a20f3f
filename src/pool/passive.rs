//! What requests teach about a replica, kept across reloads: requests in
//! flight (for `least_requests`), failed connections in a row and the
//! ejection they started, and whether an active check ever passed.
//!
//! There is one state per replica identity (its URL and TLS settings),
//! shared by every configuration generation that names it: a reload that
//! keeps a replica keeps its counts; one that drops it lets them go with
//! the last request that still holds them.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;
use pingora::upstreams::peer::HttpPeer;

use crate::config::PassiveSettings;

/// How an active check reaches a replica: the peer requests use (same TLS
/// name, CA and client certificate) and its Host. Each build stores its
/// own, so a reload that changed a CA file's contents checks with the new.
pub struct Probe {
    pub peer: HttpPeer,
    pub host: HeaderValue,
    /// The registry's path prefix; the check path goes under it.
    pub path_prefix: String,
}

pub struct ReplicaState {
    /// `scheme://host:port/prefix`, for logs.
    pub url: String,
    /// The identity's hash: the replica's key in the health registry.
    pub key: u64,
    in_flight: AtomicUsize,
    /// Failed connections and timeouts since the last answer.
    failures: AtomicU32,
    /// [`now_ms`] until which the replica is skipped; 0: it is not.
    ejected_until: AtomicU64,
    /// An active check passed at least once since the process started.
    passed: AtomicBool,
    probe: ArcSwap<Probe>,
}

impl std::fmt::Debug for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplicaState({}, in flight {})", self.url, self.in_flight())
    }
}

/// Carried in each `Backend`'s extensions, for the health check.
#[derive(Clone)]
pub struct ReplicaExt(pub Arc<ReplicaState>);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since the first call, never 0 (0 means "not ejected").
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64 + 1
}

/// Live states by identity. Weak: a replica no configuration names any
/// more is forgotten once its last request ends.
static STATES: LazyLock<Mutex<HashMap<String, Weak<ReplicaState>>>> = LazyLock::new(Default::default);

/// The state of the replica `identity`: the live one when a configuration
/// still holds it, else a new one (`true`). The probe is replaced either way.
pub fn state_for(identity: &str, url: &str, probe: Probe) -> (Arc<ReplicaState>, bool) {
    let mut states = STATES.lock().unwrap_or_else(|e| e.into_inner());
    states.retain(|_, s| s.strong_count() > 0);
    if let Some(state) = states.get(identity).and_then(Weak::upgrade) {
        state.probe.store(Arc::new(probe));
        return (state, false);
    }
    let mut hasher = DefaultHasher::new();
    identity.hash(&mut hasher);
    let state = Arc::new(ReplicaState {
        url: url.to_owned(),
        key: hasher.finish(),
        in_flight: AtomicUsize::new(0),
        failures: AtomicU32::new(0),
        ejected_until: AtomicU64::new(0),
        passed: AtomicBool::new(false),
        probe: ArcSwap::from_pointee(probe),
    });
    states.insert(identity.to_owned(), Arc::downgrade(&state));
    (state, true)
}

impl ReplicaState {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// A connection that failed or timed out. Returns the ejection it
    /// started, if it started one (an ejected replica that fails again is
    /// ejected anew without a second log line).
    pub fn failed(&self, settings: &PassiveSettings) -> Option<Duration> {
        let n = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n < settings.failures {
            return None;
        }
        let now = now_ms();
        let until = now + settings.ejection.as_millis() as u64;
        let before = self.ejected_until.swap(until, Ordering::Relaxed);
        (before <= now).then_some(settings.ejection)
    }

    /// The replica answered: it is reachable again. One load on the usual
    /// path, no store.
    pub fn answered(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    pub fn check_passed(&self) {
        if !self.passed.load(Ordering::Relaxed) {
            self.passed.store(true, Ordering::Relaxed);
        }
    }

    pub fn has_passed(&self) -> bool {
        self.passed.load(Ordering::Relaxed)
    }

    pub fn probe(&self) -> Arc<Probe> {
        self.probe.load_full()
    }
}

/// One request's attempt on a replica, counted in flight while held.
pub struct InFlight(Arc<ReplicaState>);

impl InFlight {
    pub fn new(state: &Arc<ReplicaState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        Probe {
            peer: HttpPeer::new("127.0.0.1:1", false, String::new()),
            host: HeaderValue::from_static("127.0.0.1:1"),
            path_prefix: String::new(),
        }
    }

    #[test]
    fn one_state_per_identity_while_someone_holds_it() {
        let id = "http://127.0.0.1:45001 None (passive test)";
        let (a, new_a) = state_for(id, "http://127.0.0.1:45001", probe());
        let (b, new_b) = state_for(id, "http://127.0.0.1:45001", probe());
        assert!(new_a && !new_b);
        assert!(Arc::ptr_eq(&a, &b));
        let held = InFlight::new(&a);
        assert_eq!(b.in_flight(), 1);
        drop(held);
        assert_eq!(b.in_flight(), 0);
        drop((a, b));
        let (_, new_c) = state_for(id, "http://127.0.0.1:45001", probe());
        assert!(new_c, "a state nobody holds is forgotten");
    }

    #[test]
    fn failures_eject_once_and_an_answer_clears_them() {
        let (s, _) = state_for("http://127.0.0.1:45002 (passive test)", "x", probe());
        let settings = PassiveSettings {
            failures: 2,
            ejection: Duration::from_secs(10),
        };
        assert_eq!(s.failed(&settings), None);
        assert!(!s.is_ejected(now_ms()));
        assert_eq!(s.failed(&settings), Some(Duration::from_secs(10)));
        assert!(s.is_ejected(now_ms()));
        assert_eq!(s.failed(&settings), None, "already ejected: no second log line");
        s.answered();
        assert!(!s.is_ejected(now_ms()));
        assert_eq!(s.failed(&settings), None, "the count starts over");
    }
}
