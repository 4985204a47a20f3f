//! The shape of `gateway.yaml` as written by the operator.
//!
//! These structs mirror the file one to one. Scalars that have a syntax of
//! their own (addresses, URLs, durations, CIDRs) are parsed while the YAML is
//! read, so a bad value is reported with the parser's line and column.
//! Cross-references (an upstream named by a registry) are resolved later, in
//! [`super::compile`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use super::mirror_file::{CacheSection, CredentialsSection, PushSetting};
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::grants::{Principal, RepoGlob};
use super::values::{ByteSize, Duration, IpNet, ListenAddress};

pub use super::upstream_file::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    #[serde(default)]
    pub server: ServerSection,
    pub listeners: Vec<ListenerSection>,
    pub upstreams: BTreeMap<String, UpstreamSection>,
    pub registries: Vec<RegistrySection>,
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    /// Bounds on request heads (nginx's `large_client_header_buffers`).
    #[serde(default)]
    pub limits: LimitsSection,
    /// Auth for every registry that does not say otherwise.
    pub auth: Option<AuthSetting>,
    /// Access rules for every registry that does not say otherwise.
    pub access: Option<AccessSetting>,
    /// The metrics listener; on 127.0.0.1:9145 when absent.
    pub metrics: Option<Switch<MetricsSection>>,
    /// One line per request; text on stdout when absent.
    pub access_log: Option<Switch<AccessLogSection>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub address: Option<ListenAddress>,
    /// Registries past this many (in file order) share the label `other`.
    pub max_registry_labels: Option<usize>,
    /// How often upstreams are probed for `/readyz`.
    pub probe_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    #[serde(default)]
    pub format: AccessLogFormat,
    /// `stdout`, `stderr` or a file path (appended to).
    pub output: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// `key=value` pairs (logfmt).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads of the proxy service; defaults to the number of cores.
    pub threads: Option<usize>,
    /// Let idle worker threads take tasks from busy ones (Tokio's
    /// multi-threaded scheduler) instead of one event loop per thread.
    pub work_stealing: Option<bool>,
    /// Idle upstream connections kept for reuse, per process (nginx's
    /// `keepalive N` in an upstream block).
    pub upstream_keepalive: Option<usize>,
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub grace_period: Option<Duration>,
    /// Open client connections, all listeners together; more are refused.
    pub max_connections: Option<usize>,
    /// Re-read this file when it changes on disk (SIGHUP always re-reads it).
    #[serde(default)]
    pub watch_config: bool,
    /// Where the running gateway writes its process id (for `signal`).
    pub pid_file: Option<PathBuf>,
    /// Unix socket the listening sockets are handed over on in an upgrade.
    pub upgrade_sock: Option<PathBuf>,
    /// How long the old process of an upgrade serves its transfers.
    pub upgrade_grace_period: Option<Duration>,
    /// Peers whose `Forwarded` / `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    pub auth_cache: AuthCacheSection,
    #[serde(default)]
    pub auth_throttle: AuthThrottleSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthCacheSection {
    /// How long a verified login is remembered; `0s` disables the cache.
    pub ttl: Option<Duration>,
    pub max_entries: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthThrottleSection {
    /// Wrong credentials per client address within `window`; 0 disables.
    pub max_failures: Option<u32>,
    pub window: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub name: Option<String>,
    pub address: ListenAddress,
    /// Terminate TLS on this listener.
    pub tls: Option<ListenerTlsSection>,
    /// Plain listeners only: answer every request with a redirect to
    /// `https://` on this port.
    pub redirect_to_https: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSection {
    /// The first one is served to clients without SNI or with an unknown name.
    pub certificates: Vec<CertificateSection>,
    /// Offer HTTP/2 by ALPN beside HTTP/1.1.
    #[serde(default = "yes")]
    pub http2: bool,
    /// Answer 421 when the Host needs another certificate than the one the
    /// client's SNI name got.
    #[serde(default)]
    pub reject_misdirected: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// PEM, full chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SNI names served with this certificate beyond its own SAN names.
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    pub name: String,
    /// Exact host names (case-insensitive, port and trailing dot ignored).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Anchored, case-insensitive regular expression over the host name.
    pub host_regex: Option<String>,
    /// Local ports this registry is served on; empty: every listener.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Serves requests that match no other registry's hosts.
    #[serde(default)]
    pub default: bool,
    pub upstream: String,
    #[serde(default)]
    pub routes: RoutesSection,
    pub auth: Option<AuthSetting>,
    /// Who may pull, push and delete which repositories; absent: the
    /// gateway-level block, `off`: none.
    pub access: Option<AccessSetting>,
    /// `ns` value (containerd's `?ns=docker.io`) → upstream name.
    #[serde(default)]
    pub ns: BTreeMap<String, String>,
    /// Also take the `ns` from the first path segment
    /// (`/v2/docker.io/library/alpine/...`), for podman and CRI-O mirrors.
    #[serde(default)]
    pub ns_in_path: bool,
    /// `deny`: a read-only mirror (writes get 405 UNSUPPORTED).
    #[serde(default)]
    pub push: PushSetting,
    /// Cache blobs and manifests of this registry's upstreams on disk.
    pub cache: Option<CacheSection>,
}

/// Per-route overrides of a virtual registry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesSection {
    pub v2: Option<RouteSection>,
    pub ping: Option<RouteSection>,
    /// Legacy `/v1/...` paths other than `/v1/_ping`; answered 404 when absent.
    pub v1: Option<RouteSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub upstream: Option<String>,
    pub auth: Option<AuthSetting>,
}

/// `auth: off`, or an auth block.
pub type AuthSetting = Switch<AuthSection>;

/// `access: off`, or an access block.
pub type AccessSetting = Switch<AccessSection>;

impl BlockName for AccessSection {
    const EXPECTED: &'static str = "`off` or an access block with `rules` (and `groups`)";
}

/// Per-repository access control. A registry's own block replaces the
/// gateway's rules; the gateway's groups stay visible to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Group name → user names of the htpasswd file.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// In order: the first rule with a pattern matching the repository
    /// decides; what it does not grant is denied.
    pub rules: Vec<RuleSection>,
}

/// One rule: repositories and who may do what there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Globs over repository names: `*` within a path component, `**`
    /// across components (quote patterns that start with `*` in YAML).
    pub repositories: Vec<RepoGlob>,
    /// GET/HEAD of manifests, blobs, tags, referrers; the catalog lists
    /// the repositories a client may pull.
    #[serde(default)]
    pub pull: Vec<Principal>,
    /// Uploads and manifest PUT; includes pull.
    #[serde(default)]
    pub push: Vec<Principal>,
    /// Manifest and blob DELETE; includes pull.
    #[serde(default)]
    pub delete: Vec<Principal>,
}

/// A section that can also be written `off` (or `false`).
#[derive(Debug)]
pub enum Switch<T> {
    Off,
    On(T),
}

/// What a block of a [`Switch`] is called in messages.
pub trait BlockName {
    const EXPECTED: &'static str;
}

impl BlockName for AuthSection {
    const EXPECTED: &'static str = "`off` or an auth block with `htpasswd`";
}

impl BlockName for MetricsSection {
    const EXPECTED: &'static str = "`off` or a metrics block with `address`";
}

impl BlockName for AccessLogSection {
    const EXPECTED: &'static str = "`off` or an access_log block with `format` and `output`";
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub realm: Option<String>,
    /// Relative paths are taken from the configuration file's folder.
    pub htpasswd: PathBuf,
    #[serde(default)]
    pub scope: AuthScopeSetting,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScopeSetting {
    /// Every request of the route needs credentials.
    #[default]
    All,
    /// Only POST, PUT, PATCH, DELETE (nginx's `limit_except GET HEAD`).
    Writes,
}

impl<'de, T: Deserialize<'de> + BlockName> Deserialize<'de> for Switch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + BlockName> Visitor<'de> for V<T> {
            type Value = Switch<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTED)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Switch<T>, E> {
                match v {
                    false => Ok(Switch::Off),
                    true => Err(E::custom(format!("invalid setting `true`: expected {}", T::EXPECTED))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Switch<T>, E> {
                match v {
                    "off" => Ok(Switch::Off),
                    _ => Err(E::custom(format!("invalid setting `{v}`: expected {}", T::EXPECTED))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Switch<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Switch::On)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    pub connect: Option<Duration>,
    pub upstream_read: Option<Duration>,
    pub upstream_write: Option<Duration>,
    pub client_read: Option<Duration>,
    pub client_write: Option<Duration>,
    pub keepalive: Option<Duration>,
    pub client_header: Option<Duration>,
    pub upstream_header: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub request_line: Option<ByteSize>,
    pub header_line: Option<ByteSize>,
    pub header_block: Option<ByteSize>,
    pub headers: Option<usize>,
}

impl ListenerSection {
    pub fn socket_addr(&self) -> SocketAddr {
        self.address.0
    }
}
