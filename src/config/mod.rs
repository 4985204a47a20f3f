//! `gateway.yaml`: read once, validated once, compiled into the runtime
//! tables the proxy uses ([`GatewayConfig`]).

pub(crate) mod file;
pub mod values;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use file::HostHeaderMode;
use file::{GatewayFile, RouteSection};
use values::IpNet;

use crate::routing::{RouteTable, VirtualRegistry};
use crate::upstream::{Timeouts, Upstream};

/// One problem found in the configuration, pointing at where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path such as `listeners[0].address`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// serde_yaml's message already carries the key path and line/column.
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{}", render_invalid(file, issues))]
    Invalid {
        file: PathBuf,
        issues: Vec<ConfigIssue>,
    },
}

fn render_invalid(file: &Path, issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues
        .iter()
        .map(|i| format!("{}: {i}", file.display()))
        .collect();
    lines.join("\n")
}

impl ConfigError {
    /// One line per problem, for printing as `error: ...`.
    pub fn lines(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_owned).collect()
    }
}

/// A listening socket of the gateway.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
}

/// Process-wide settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub trusted_proxies: Vec<IpNet>,
}

/// The validated, compiled configuration.
#[derive(Debug)]
pub struct GatewayConfig {
    pub source: PathBuf,
    pub server: ServerSettings,
    pub listeners: Vec<Listener>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub registries: Vec<Arc<VirtualRegistry>>,
    pub timeouts: Timeouts,
}

pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses YAML text; `path` only names the source in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: GatewayFile = serde_path_to_error::deserialize(
            serde_yaml::Deserializer::from_str(text),
        )
        .map_err(|e| ConfigError::Syntax {
            file: path.to_owned(),
            message: syntax_message(&e),
        })?;
        compile(file, path).map_err(|issues| ConfigError::Invalid {
            file: path.to_owned(),
            issues,
        })
    }

    /// The virtual registry serving requests that match no host rule.
    pub fn default_registry(&self) -> &Arc<VirtualRegistry> {
        self.registries
            .iter()
            .find(|r| r.is_default)
            .unwrap_or(&self.registries[0])
    }

    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.server
            .trusted_proxies
            .iter()
            .any(|net| net.contains(ip))
    }
}

/// `key.path: message at line L column C`. serde_yaml prefixes its message
/// with the path of the enclosing map only, so the exact path tracked by
/// serde_path_to_error replaces that prefix.
fn syntax_message(e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    let message = match inner.split_once(": ") {
        Some((prefix, rest))
            if prefix != "." && path.starts_with(prefix) && !prefix.contains(' ') =>
        {
            rest
        }
        _ => inner.as_str(),
    };
    if path.is_empty() || path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

fn issue(key: impl Into<String>, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: key.into(),
        message: message.into(),
    }
}

fn compile(file: GatewayFile, path: &Path) -> Result<GatewayConfig, Vec<ConfigIssue>> {
    let mut issues = Vec::new();

    let threads = match file.server.threads {
        Some(0) => {
            issues.push(issue("server.threads", "must be at least 1: `0`"));
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    };
    let server = ServerSettings {
        threads,
        grace_period: file
            .server
            .grace_period
            .map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
        trusted_proxies: file.server.trusted_proxies,
    };

    if file.listeners.is_empty() {
        issues.push(issue("listeners", "at least one listener is required"));
    }
    let mut seen_addrs = HashSet::new();
    let listeners: Vec<Listener> = file
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let address = l.socket_addr();
            if !seen_addrs.insert(address) {
                issues.push(issue(
                    format!("listeners[{i}].address"),
                    format!("address `{address}` is used by an earlier listener"),
                ));
            }
            Listener {
                name: l.name.clone().unwrap_or_else(|| format!("listener-{i}")),
                address,
            }
        })
        .collect();

    let timeouts = Timeouts::from_section(&file.timeouts, &mut |key, msg| {
        issues.push(issue(format!("timeouts.{key}"), msg))
    });

    if file.upstreams.is_empty() {
        issues.push(issue("upstreams", "at least one upstream is required"));
    }
    let upstreams: BTreeMap<&str, Arc<Upstream>> = file
        .upstreams
        .iter()
        .map(|(name, u)| {
            (
                name.as_str(),
                Arc::new(Upstream::new(name, &u.url, u.host_header, &timeouts)),
            )
        })
        .collect();

    let mut lookup = |key: String, name: &str| -> Option<Arc<Upstream>> {
        let found = upstreams.get(name).cloned();
        if found.is_none() {
            let known: Vec<&str> = upstreams.keys().copied().collect();
            issues.push(issue(
                key,
                format!(
                    "unknown upstream `{name}` (defined upstreams: {})",
                    known.join(", ")
                ),
            ));
        }
        found
    };

    let mut registries = Vec::new();
    for (i, r) in file.registries.iter().enumerate() {
        let key = format!("registries[{i}]");
        let main = lookup(format!("{key}.upstream"), &r.upstream);
        let mut route = |which: &str, section: &Option<RouteSection>| {
            section
                .as_ref()
                .map(|s| lookup(format!("{key}.routes.{which}.upstream"), &s.upstream))
        };
        let v2 = route("v2", &r.routes.v2);
        let ping = route("ping", &r.routes.ping);
        let v1 = route("v1", &r.routes.v1);
        if let Some(main) = main {
            let routes = RouteTable {
                v2: v2.flatten().unwrap_or_else(|| main.clone()),
                ping: ping.flatten().unwrap_or_else(|| main.clone()),
                v1: v1.flatten(),
            };
            registries.push(Arc::new(VirtualRegistry {
                name: r.name.clone(),
                is_default: r.default,
                routes,
            }));
        }
    }
    let duplicate_names: Vec<usize> = file
        .registries
        .iter()
        .enumerate()
        .filter(|(i, r)| file.registries[..*i].iter().any(|e| e.name == r.name))
        .map(|(i, _)| i)
        .collect();
    for i in duplicate_names {
        issues.push(issue(
            format!("registries[{i}].name"),
            format!(
                "name `{}` is used by an earlier registry",
                file.registries[i].name
            ),
        ));
    }

    match file.registries.len() {
        0 => issues.push(issue("registries", "at least one virtual registry is required")),
        1 => {}
        // Host rules arrive with virtual-registry support; until then a second
        // registry could never be selected, which is surely not what was meant.
        _ => issues.push(issue(
            "registries[1]",
            "only one virtual registry is supported until host rules land; remove the extra entries",
        )),
    }
    let defaults: Vec<usize> = file
        .registries
        .iter()
        .enumerate()
        .filter(|(_, r)| r.default)
        .map(|(i, _)| i)
        .collect();
    if defaults.len() > 1 {
        issues.push(issue(
            format!("registries[{}].default", defaults[1]),
            format!("`true`: registries[{}] is already the default", defaults[0]),
        ));
    }

    if issues.is_empty() {
        Ok(GatewayConfig {
            source: path.to_owned(),
            server,
            listeners,
            upstreams: upstreams.into_values().collect(),
            registries,
            timeouts,
        })
    } else {
        Err(issues)
    }
}

#[cfg(test)]
mod tests;

/// A short human-readable description, printed by `registry-gateway check`.
pub fn summary(c: &GatewayConfig) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "listeners:");
    for l in &c.listeners {
        let _ = writeln!(out, "  {} http://{}", l.name, l.address);
    }
    let _ = writeln!(out, "upstreams:");
    for u in &c.upstreams {
        let _ = writeln!(
            out,
            "  {} http://{} ({}), Host header: {:?}",
            u.name, u.authority, u.address, u.host_header
        );
    }
    let _ = writeln!(out, "registries:");
    for r in &c.registries {
        let default = if r.is_default { " (default)" } else { "" };
        let _ = writeln!(out, "  {}{default}", r.name);
        let _ = writeln!(out, "    /v2/...            -> {}", r.routes.v2.name);
        let _ = writeln!(out, "    /_ping, /v1/_ping  -> {}", r.routes.ping.name);
        let v1 = r
            .routes
            .v1
            .as_ref()
            .map_or("404 (no legacy upstream)", |u| u.name.as_str());
        let _ = writeln!(out, "    /v1/...            -> {v1}");
        let _ = writeln!(out, "    other paths        -> 404");
    }
    let t = &c.timeouts;
    let _ = writeln!(
        out,
        "timeouts: connect {:?}, upstream read/write {:?}/{:?}, client read/write {:?}/{:?}, keepalive {:?}",
        t.connect, t.upstream_read, t.upstream_write, t.client_read, t.client_write, t.keepalive
    );
    let _ = writeln!(
        out,
        "shutdown grace period: {:?}, threads: {}",
        c.server.grace_period, c.server.threads
    );
    out
}
