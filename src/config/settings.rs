//! The plain settings of `gateway.yaml`: numbers, durations, addresses and
//! paths, checked and defaulted. Nothing here opens a file other than
//! `gateway.yaml` or builds a runtime object; `runtime` does that.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::{AccessLogFormat, GatewayFile};
use super::grants::{Principal, RepoGlob};
pub use super::mirror_settings::*;
pub use super::upstream_file::PolicySetting;
use super::values::{IpNet, UpstreamUrl};

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub threads: usize,
    pub work_stealing: bool,
    pub upstream_keepalive: usize,
    pub grace_period: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// `None`: derived from the descriptor limit at start.
    pub max_connections: Option<usize>,
    /// Re-read `gateway.yaml` when it changes on disk (SIGHUP always does).
    pub watch_config: bool,
    pub pid_file: Option<PathBuf>,
    /// Where an upgrade hands the listening sockets to the new process.
    pub upgrade_sock: PathBuf,
    /// How long the old process of an upgrade lets transfers finish.
    pub upgrade_grace_period: Duration,
}

/// The metrics listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub address: SocketAddr,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogOutput {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub format: AccessLogFormat,
    pub output: AccessLogOutput,
}

/// Idle (per read / per write) timeouts. There is deliberately no total
/// request timeout: a multi-GB push legitimately runs for many minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub upstream_read: Duration,
    pub upstream_write: Duration,
    pub client_read: Duration,
    pub client_write: Duration,
    /// How long an idle client connection is kept open between requests.
    pub keepalive: Duration,
    /// The whole request head, from the connection's start (first request)
    /// or from the end of the previous response plus `keepalive` (later ones).
    pub client_header: Duration,
    /// Time to the upstream's response head for requests without a body.
    pub upstream_header: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // nginx's registry recipe uses proxy_read_timeout 900.
        Timeouts {
            connect: Duration::from_secs(5),
            upstream_read: Duration::from_secs(900),
            upstream_write: Duration::from_secs(900),
            client_read: Duration::from_secs(900),
            client_write: Duration::from_secs(900),
            keepalive: Duration::from_secs(75),
            // nginx's client_header_timeout.
            client_header: Duration::from_secs(60),
            upstream_header: Duration::from_secs(60),
        }
    }
}

/// Bounds on one request head (nginx: `large_client_header_buffers 4 8k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Method, target and version: 414 past this.
    pub request_line: usize,
    /// One `name: value` line: 431 past this.
    pub header_line: usize,
    /// The whole head: 431 past this.
    pub header_block: usize,
    /// Number of header lines: 431 past this.
    pub headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        // No registry name, digest or JWT comes near these.
        HeadLimits {
            request_line: 8 << 10,
            header_line: 16 << 10,
            header_block: 64 << 10,
            headers: 100,
        }
    }
}

/// Limits on the cost of authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    pub cache_ttl: Duration,
    pub cache_entries: usize,
    /// Wrong credentials per client within `throttle_window`; 0 disables.
    pub max_failures: u32,
    pub throttle_window: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            cache_ttl: Duration::from_secs(300),
            cache_entries: 10_000,
            max_failures: 10,
            throttle_window: Duration::from_secs(60),
        }
    }
}

/// One certificate of a listener as configured (paths resolved against
/// the directory of `gateway.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Extra SNI names beyond the certificate's own SAN names.
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsSettings {
    pub certificates: Vec<CertificateSpec>,
    pub http2: bool,
    /// 421 for requests whose Host would get another certificate than SNI did.
    pub reject_misdirected: bool,
}

/// A listening socket as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    pub name: String,
    pub address: SocketAddr,
    pub tls: Option<ListenerTlsSettings>,
    /// Plain listener answering every request with a redirect to this
    /// HTTPS port.
    pub redirect_to_https: Option<u16>,
}

pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9145";
pub const DEFAULT_MAX_REGISTRY_LABELS: usize = 100;
pub const DEFAULT_WORK_STEALING: bool = true;
/// Pingora's own default pool size.
pub const DEFAULT_UPSTREAM_KEEPALIVE: usize = 128;
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// A multi-GB push over a slow link may take this long.
pub const DEFAULT_UPGRADE_GRACE_PERIOD: Duration = Duration::from_secs(3600);

/// One checked `access` block. A registry's own block carries the groups
/// of the gateway-level block too, so each block stands on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    /// Where the block is written: `access` or `registries[2].access`;
    /// rules are `{key}.rules[i]` in messages.
    pub key: String,
    /// Group → members, sorted, without duplicates.
    pub groups: BTreeMap<String, Vec<String>>,
    pub rules: Vec<AccessRuleSettings>,
}

impl AccessSettings {
    pub fn rule_key(&self, i: usize) -> String {
        format!("{}.rules[{i}]", self.key)
    }
}

/// One rule as written (principals not yet expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRuleSettings {
    pub repositories: Vec<RepoGlob>,
    pub pull: Vec<Principal>,
    pub push: Vec<Principal>,
    pub delete: Vec<Principal>,
}

/// Which rules a virtual registry is under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAccess {
    /// No rules: every request the auth block lets through may do anything
    /// (the behaviour without an `access` block).
    Open,
    /// The gateway-level block (`Settings::access`).
    Gateway,
    /// The registry's own block.
    Own(AccessSettings),
}

/// `gateway.yaml` with its plain settings checked; the sections that name
/// other files or build runtime objects (upstreams, registries, auth) stay
/// in `file` for `runtime` to build.
#[derive(Debug)]
pub struct Settings {
    pub source: PathBuf,
    /// Relative paths in the file are relative to this directory.
    pub dir: PathBuf,
    pub server: ServerSettings,
    pub listeners: Vec<ListenerSettings>,
    pub timeouts: Timeouts,
    pub limits: HeadLimits,
    pub auth_limits: AuthLimits,
    /// `None`: `metrics: off`.
    pub metrics: Option<MetricsSettings>,
    /// Registries past this many (in file order) share one metrics label.
    pub max_registry_labels: usize,
    /// `None`: `access_log: off`.
    pub access_log: Option<AccessLogSettings>,
    /// The gateway-level `access` block; `None` when absent or `off`.
    pub access: Option<AccessSettings>,
    /// Per registry, in file order, inheritance resolved.
    pub registry_access: Vec<RegistryAccess>,
    /// Per upstream name, checked; TLS files are loaded by `runtime`.
    pub pools: BTreeMap<String, PoolSettings>,
    /// Per upstream name, for upstreams the gateway logs in to.
    pub credentials: BTreeMap<String, CredentialSettings>,
    /// Per registry, in file order.
    pub mirrors: Vec<MirrorSettings>,
    pub file: GatewayFile,
    /// The YAML as read, to point messages at lines.
    pub text: String,
}

pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTH_RISE: u32 = 2;
pub const DEFAULT_HEALTH_FALL: u32 = 2;
pub const DEFAULT_HEALTH_PATH: &str = "/v2/";
pub const DEFAULT_PASSIVE_FAILURES: u32 = 1;
pub const DEFAULT_PASSIVE_EJECTION: Duration = Duration::from_secs(10);

/// Active checks of an upstream's replicas. Pools with equal settings
/// share one health registry (and one check per replica).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthSettings {
    pub interval: Duration,
    /// For the whole check: connect, request, response head and body.
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub path: String,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_HEALTH_RISE,
            fall: DEFAULT_HEALTH_FALL,
            path: DEFAULT_HEALTH_PATH.to_owned(),
        }
    }
}

/// Ejection after failed connections (nginx: `max_fails`, `fail_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveSettings {
    pub failures: u32,
    pub ejection: Duration,
}

impl Default for PassiveSettings {
    fn default() -> Self {
        PassiveSettings {
            failures: DEFAULT_PASSIVE_FAILURES,
            ejection: DEFAULT_PASSIVE_EJECTION,
        }
    }
}

/// One upstream's replicas and how they are chosen and watched.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    /// Not empty once checked without issues; one scheme, distinct addresses.
    pub urls: Vec<UpstreamUrl>,
    pub policy: PolicySetting,
    pub shared_secret: bool,
    /// `None`: `health: off`.
    pub health: Option<HealthSettings>,
    /// `None`: `passive: off`.
    pub passive: Option<PassiveSettings>,
}
