//! The runtime snapshot: everything the proxy consults per request, built
//! from checked [`Settings`](crate::config::Settings) (regexes compiled,
//! upstreams resolved, htpasswd files and certificates loaded, metric
//! handles made). A reload builds a new one and swaps it in whole; a
//! request keeps the one it started with.

mod access;
mod build;
mod current;
mod mirror;
mod summary;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub use current::{Current, Reload, ReloadOutcome};
pub use summary::summary;

use crate::auth::{Authenticator, HtpasswdFile};
use crate::config::{
    self, AccessLogSettings, AuthLimits, ConfigError, HeadLimits, MetricsSettings, ServerSettings, Timeouts,
};
use crate::listeners::{Listener, RedirectTable};
use crate::metrics::ReplicaSample;
use crate::metrics::endpoint::ReadyReport;
use crate::pool::HealthGroup;
use crate::reload::Reloadable;
use crate::upstream::Upstream;
use crate::vhost::{HostRouter, VirtualRegistry, Why};

/// The validated, built configuration.
pub struct Snapshot {
    pub source: PathBuf,
    /// 1 for the configuration loaded at start, +1 per applied reload.
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub server: ServerSettings,
    pub listeners: Vec<Listener>,
    pub redirects: RedirectTable,
    pub upstreams: Vec<Arc<Upstream>>,
    pub registries: Vec<Arc<VirtualRegistry>>,
    pub timeouts: Timeouts,
    pub limits: HeadLimits,
    pub auth_limits: AuthLimits,
    /// Credential cache and throttle: per snapshot, so a reload never
    /// trusts a login checked against an older htpasswd table.
    pub auth: Authenticator,
    /// Every htpasswd file named anywhere, for reloading.
    pub htpasswd_files: Vec<Arc<HtpasswdFile>>,
    /// Host rules of `registries`, in file order.
    pub router: HostRouter,
    /// Suspicious but valid settings (shadowed host rules), for `check` and
    /// the start log.
    pub warnings: Vec<String>,
    /// `None`: `metrics: off`.
    pub metrics: Option<MetricsSettings>,
    /// `None`: `access_log: off`.
    pub access_log: Option<AccessLogSettings>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("source", &self.source)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The check groups of the pools in force, each once.
    pub fn health_groups(&self) -> Vec<Arc<HealthGroup>> {
        let mut out: Vec<Arc<HealthGroup>> = Vec::new();
        for g in self.upstreams.iter().filter_map(|u| u.pool.health_group()) {
            if !out.iter().any(|o| Arc::ptr_eq(o, g)) {
                out.push(g.clone());
            }
        }
        out
    }

    /// `/readyz`: every registry's `/v2` upstream has a replica up.
    pub fn ready_report(&self) -> ReadyReport {
        let registries = (self.registries.iter())
            .map(|r| (r.name.clone(), r.routes.v2.upstream.pool.any_up()))
            .collect();
        let upstreams = self
            .upstreams
            .iter()
            .map(|u| (u.name.clone(), u.pool.any_up()))
            .collect();
        let mut replicas: Vec<(String, bool)> = Vec::new();
        for u in &self.upstreams {
            for (i, r) in u.pool.replicas().iter().enumerate() {
                if !replicas.iter().any(|(url, _)| *url == r.url) {
                    replicas.push((r.url.clone(), u.pool.is_up(i)));
                }
            }
        }
        ReadyReport {
            generation: self.generation,
            registries,
            upstreams,
            replicas,
        }
    }

    pub fn replica_samples(&self) -> Vec<ReplicaSample> {
        self.upstreams.iter().flat_map(|u| u.pool.samples()).collect()
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (settings, issues) = config::read(path)?;
        build::build(settings, issues)
    }

    /// Parses YAML text; `path` only names the source in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let (settings, issues) = config::parse(text, path)?;
        build::build(settings, issues)
    }

    /// The virtual registry for a request: by host name (Host or
    /// :authority) and the local port it arrived on.
    pub fn registry_for(&self, authority: Option<&str>, port: Option<u16>) -> Option<(&Arc<VirtualRegistry>, Why)> {
        self.router
            .select(authority, port)
            .map(|(i, why)| (&self.registries[i], why))
    }

    /// Everything re-read on change and on SIGHUP.
    pub fn reloadable(&self) -> Vec<Arc<dyn Reloadable>> {
        let files = self.htpasswd_files.iter().map(|f| f.clone() as Arc<dyn Reloadable>);
        let certs = self
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .map(|t| t.certificates.clone() as Arc<dyn Reloadable>);
        files.chain(certs).collect()
    }

    /// Handshake counters of the TLS listeners, by listener name.
    pub fn tls_stats(&self) -> Vec<(String, Arc<crate::metrics::TlsStats>)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.tls.as_ref()?.certificates.stats.clone())))
            .collect()
    }

    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.server.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

#[cfg(test)]
mod tests;
