//! The shape of `gateway.yaml` as written by the operator.
//!
//! These structs mirror the file one to one. Scalars that have a syntax of
//! their own (addresses, URLs, durations, CIDRs) are parsed while the YAML is
//! read, so a bad value is reported with the parser's line and column.
//! Cross-references (an upstream named by a registry) are resolved later, in
//! [`super::compile`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::values::{Duration, IpNet, ListenAddress, UpstreamUrl};

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads of the proxy service; defaults to the number of cores.
    pub threads: Option<usize>,
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub grace_period: Option<Duration>,
    /// Peers whose `Forwarded` / `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub name: Option<String>,
    pub address: ListenAddress,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub url: UpstreamUrl,
    #[serde(default)]
    pub host_header: HostHeaderMode,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    pub name: String,
    #[serde(default)]
    pub default: bool,
    pub upstream: String,
    #[serde(default)]
    pub routes: RoutesSection,
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
    pub upstream: String,
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
}

impl ListenerSection {
    pub fn socket_addr(&self) -> SocketAddr {
        self.address.0
    }
}
