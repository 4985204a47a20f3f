//! Active health checks. `pingora-load-balancing` keeps each replica's
//! health (unhealthy after `fall` failing checks in a row, healthy again
//! after `rise` passing ones) in a [`HealthRegistry`] shared by every pool
//! with the same check settings and keyed by replica identity: a reload
//! that keeps a replica keeps its health.
//!
//! The check itself is ours ([`RegistryCheck`]): the crate's
//! `HttpHealthCheck` sends one request template through one peer template
//! (one SNI name, one Host, one path) to every backend, where each replica
//! needs its own peer (TLS name, CA, client certificate) and path prefix.
//! Checks are run by one background service ([`HealthService`]) over the
//! pools of the configuration in force: Pingora services cannot be added
//! once the server runs, and a reload may bring pools with new settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::{HOST, USER_AGENT};
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::{Backend, HealthRegistry};
use pingora::prelude::*;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::passive::{Probe, ReplicaExt};
use crate::config::HealthSettings;

/// Sent with every check, so registry logs (and the test harness) can tell
/// checks from requests.
pub const USER_AGENT_VALUE: &str = concat!("registry-gateway-health/", env!("CARGO_PKG_VERSION"));

/// How often the service looks for pools a reload added, at most.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Shortest sleep: a group woken while its pass still runs is not spun on.
const MIN_TICK: Duration = Duration::from_millis(50);

/// The replicas checked with one set of settings, and when next.
pub struct HealthGroup {
    settings: HealthSettings,
    registry: Arc<HealthRegistry>,
    /// When the next pass starts; passes are `interval` apart, start to start.
    next: Mutex<Instant>,
    running: AtomicBool,
}

/// Live groups. Weak: settings no pool uses any more are forgotten.
static GROUPS: LazyLock<Mutex<Vec<Weak<HealthGroup>>>> = LazyLock::new(Default::default);

/// The group for `settings`: the live one, or a new one due at once.
pub(super) fn group_for(settings: &HealthSettings) -> Arc<HealthGroup> {
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    groups.retain(|g| g.strong_count() > 0);
    if let Some(group) = groups
        .iter()
        .filter_map(Weak::upgrade)
        .find(|g| g.settings == *settings)
    {
        return group;
    }
    let registry = HealthRegistry::with_equivalence(|backend: &Backend| match backend.ext.get::<ReplicaExt>() {
        Some(ReplicaExt(state)) => state.key,
        // Every backend a pool builds carries its state.
        None => 0,
    });
    registry.set_health_check(Box::new(RegistryCheck {
        path: settings.path.clone(),
        timeout: settings.timeout,
        rise: settings.rise as usize,
        fall: settings.fall as usize,
        connector: Connector::new(None),
    }));
    let group = Arc::new(HealthGroup {
        settings: settings.clone(),
        registry: Arc::new(registry),
        next: Mutex::new(Instant::now()),
        running: AtomicBool::new(false),
    });
    groups.push(Arc::downgrade(&group));
    group
}

impl HealthGroup {
    pub(super) fn registry(&self) -> &Arc<HealthRegistry> {
        &self.registry
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    /// Checks at once: a build added replicas it has never checked.
    pub(super) fn wake(&self) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Starts a pass when one is due and none runs; returns when the next is due.
    fn poll(self: &Arc<Self>, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if *next <= now && !self.running.swap(true, Ordering::AcqRel) {
            *next = now + self.settings.interval;
            let group = self.clone();
            tokio::spawn(async move {
                // Checks every target at once; each is bounded by `timeout`.
                group.registry.run_health_check(true).await;
                group.running.store(false, Ordering::Release);
            });
        }
        (*next).max(now + MIN_TICK)
    }
}

/// `GET <prefix><path>` on the replica, through its own peer; 200 or 401
/// (a registry with auth) pass, anything else or no answer within
/// `timeout` fails. Every check connects anew, as a new client would.
struct RegistryCheck {
    path: String,
    timeout: Duration,
    rise: usize,
    fall: usize,
    connector: Connector,
}

impl RegistryCheck {
    async fn status(&self, probe: &Probe, target: &str) -> Result<u16> {
        let mut peer = probe.peer.clone();
        peer.options.connection_timeout = Some(self.timeout);
        peer.options.read_timeout = Some(self.timeout);
        peer.options.write_timeout = Some(self.timeout);
        let (mut s, _) = self.connector.get_http_session(&peer).await?;
        let mut req = RequestHeader::build("GET", target.as_bytes(), None)?;
        req.insert_header(HOST, probe.host.clone())?;
        req.insert_header(USER_AGENT, USER_AGENT_VALUE)?;
        s.write_request_header(Box::new(req)).await?;
        s.finish_body().await?;
        s.read_response().await?;
        let status = s.get_status().map_or(0, |s| s.as_u16());
        // registry:2 answers `{}` or a short error: read it so the exchange
        // completes; the connection is then dropped, never pooled.
        while s.read_body_ref().await?.is_some() {}
        Ok(status)
    }
}

#[async_trait]
impl HealthCheck for RegistryCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let Some(ReplicaExt(state)) = target.ext.get::<ReplicaExt>() else {
            return Ok(());
        };
        let probe = state.probe();
        let path = format!("{}{}", probe.path_prefix, self.path);
        let result = match tokio::time::timeout(self.timeout, self.status(&probe, &path)).await {
            Err(_) => Error::e_explain(
                ErrorType::ReadTimedout,
                format!("GET {path}: no answer within {:?}", self.timeout),
            ),
            Ok(Err(e)) => Err(e),
            Ok(Ok(200 | 401)) => Ok(()),
            Ok(Ok(status)) => Error::e_explain(
                ErrorType::CustomCode("health check", status),
                format!("GET {path} answered {status}, expected 200 or 401"),
            ),
        };
        if result.is_ok() {
            state.check_passed();
        }
        result
    }

    fn health_threshold(&self, success: bool) -> usize {
        if success { self.rise } else { self.fall }
    }

    /// Named in the crate's "becomes unhealthy" / "becomes healthy" lines.
    fn backend_summary(&self, target: &Backend) -> String {
        match target.ext.get::<ReplicaExt>() {
            Some(ReplicaExt(state)) => format!("upstream replica {}", state.url),
            None => format!("{target:?}"),
        }
    }
}

/// What is configured now: the groups of the configuration in force
/// (each once).
pub type HealthGroups = Box<dyn Fn() -> Vec<Arc<HealthGroup>> + Send + Sync>;

/// Runs every group's passes, each at its own interval.
pub struct HealthService {
    groups: HealthGroups,
}

impl HealthService {
    pub fn new(groups: HealthGroups) -> HealthService {
        HealthService { groups }
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let now = Instant::now();
            let wake = (self.groups)()
                .iter()
                .map(|g| g.poll(now))
                .fold(now + IDLE_TICK, Instant::min);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
        }
    }
}
