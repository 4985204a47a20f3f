//! The `upstreams` section of `gateway.yaml`: one registry (`url`) or the
//! replicas of one registry (`urls`), how they are chosen and watched, and
//! the TLS settings they share.

use std::path::PathBuf;

use serde::Deserialize;

use super::file::{BlockName, Switch};
use super::values::{Duration, UpstreamUrl};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// One registry. With several replicas, `urls` instead.
    pub url: Option<UpstreamUrl>,
    /// Replicas of one registry on shared storage: each request goes to
    /// one of them, chosen by `policy` among those up.
    pub urls: Option<Vec<UpstreamUrl>>,
    #[serde(default)]
    pub policy: PolicySetting,
    /// The replicas share one `http.secret`: an upload whose replica is
    /// down may go on on another one.
    #[serde(default)]
    pub shared_secret: bool,
    /// Active checks of every replica; `off`: replicas count as up.
    pub health: Option<Switch<HealthSection>>,
    /// Skipping a replica after failed connections; `off`: never.
    pub passive: Option<Switch<PassiveSection>>,
    #[serde(default)]
    pub host_header: HostHeaderMode,
    /// Keep the client's Authorization header on requests the gateway
    /// authenticated itself (it is removed by default).
    #[serde(default)]
    pub forward_authorization: bool,
    /// For `https://` upstreams; applies to every replica.
    pub tls: Option<UpstreamTlsSection>,
    /// The gateway logs in to the upstream itself (Basic or token flow);
    /// clients' Authorization never reaches it.
    pub credentials: Option<super::mirror_file::CredentialsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// PEM CA bundle to verify the upstream with, instead of the system roots.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Name sent as SNI and verified, instead of the URL's host.
    pub server_name: Option<String>,
    /// Skip certificate verification entirely. Logged at start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Which Host header the upstream registry receives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostHeaderMode {
    /// The client's Host, port included (nginx: `proxy_set_header Host $http_host`).
    #[default]
    Client,
    /// The upstream's own `host:port` from its URL.
    Upstream,
}

/// How a pool chooses a replica.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySetting {
    /// In turn (pingora-load-balancing's round robin).
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight from this gateway process.
    LeastRequests,
    /// By repository name (pingora-load-balancing's Ketama ring): one
    /// repository's blobs stay warm in one replica's cache.
    ConsistentHash,
}

impl PolicySetting {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySetting::RoundRobin => "round_robin",
            PolicySetting::LeastRequests => "least_requests",
            PolicySetting::ConsistentHash => "consistent_hash",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    /// Passing checks in a row that bring a replica back.
    pub rise: Option<u32>,
    /// Failing checks in a row that take it out.
    pub fall: Option<u32>,
    /// GET under the replica's path prefix; 200 or 401 pass.
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSection {
    /// Failed connections or timeouts in a row that eject a replica.
    pub failures: Option<u32>,
    /// How long an ejected replica is skipped.
    pub ejection: Option<Duration>,
}

impl BlockName for HealthSection {
    const EXPECTED: &'static str = "`off` or a health block with `interval`, `timeout`, `rise`, `fall`, `path`";
}

impl BlockName for PassiveSection {
    const EXPECTED: &'static str = "`off` or a passive block with `failures` and `ejection`";
}
