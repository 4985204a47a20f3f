//! Checking the plain settings: every problem is reported with its key,
//! and the default stands in so one run finds all of them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{AccessLogSection, GatewayFile, MetricsSection, Switch};
use super::settings::*;
use super::{ConfigIssue, issue};

mod access;
mod mirror;
mod upstreams;

impl Settings {
    /// Checks every plain setting; problems are appended to `issues` and the
    /// default stands in, so one run reports all of them.
    pub fn new(file: GatewayFile, source: &Path, text: &str, issues: &mut Vec<ConfigIssue>) -> Settings {
        let dir = source.parent().unwrap_or(Path::new(".")).to_owned();
        let mut c = Checker { dir: &dir, issues };
        let mut server = c.server(&file);
        let listeners = c.listeners(&file);
        server.upgrade_sock = match (&file.server.upgrade_sock, &server.pid_file, listeners.first()) {
            (Some(p), _, _) => dir.join(p),
            (None, Some(pid), _) => PathBuf::from(format!("{}.upgrade.sock", pid.display())),
            // Ports are not shared, so the first one names this instance.
            (None, None, Some(l)) => {
                std::env::temp_dir().join(format!("registry-gateway-{}.upgrade.sock", l.address.port()))
            }
            (None, None, None) => std::env::temp_dir().join("registry-gateway.upgrade.sock"),
        };
        let timeouts = c.timeouts(&file);
        let limits = c.limits(&file);
        let auth_limits = c.auth_limits(&file);
        let (metrics, max_registry_labels) = c.metrics(&file, &listeners);
        let access_log = c.access_log(&file);
        c.registry_list(&file);
        let (access, registry_access) = c.access(&file);
        if file.upstreams.is_empty() {
            c.issue("upstreams", "at least one upstream is required");
        }
        // `metrics.probe_interval`, when written, is the old name of the
        // default check interval.
        let probe_interval = match &file.metrics {
            Some(Switch::On(m)) => m.probe_interval.map(|d| d.0).filter(|d| !d.is_zero()),
            _ => None,
        };
        let pools = c.pools(&file, probe_interval);
        let credentials = c.credentials(&file);
        let mirrors = c.mirrors(&file);
        Settings {
            source: source.to_owned(),
            dir,
            server,
            listeners,
            timeouts,
            limits,
            auth_limits,
            metrics,
            max_registry_labels,
            access_log,
            access,
            registry_access,
            pools,
            credentials,
            mirrors,
            file,
            text: text.to_owned(),
        }
    }

    pub fn path(&self, p: &Path) -> PathBuf {
        self.dir.join(p)
    }
}

struct Checker<'a> {
    dir: &'a Path,
    issues: &'a mut Vec<ConfigIssue>,
}

impl Checker<'_> {
    fn issue(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(issue(key, message));
    }

    fn at_least<T: PartialOrd + Copy + std::fmt::Display>(&mut self, key: &str, v: Option<T>, default: T, min: T) -> T {
        match v {
            Some(n) if n < min => {
                self.issue(key, format!("must be at least {min}: `{n}`"));
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    fn server(&mut self, file: &GatewayFile) -> ServerSettings {
        let s = &file.server;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        ServerSettings {
            threads: self.at_least("server.threads", s.threads, cores, 1),
            work_stealing: s.work_stealing.unwrap_or(DEFAULT_WORK_STEALING),
            upstream_keepalive: self.at_least(
                "server.upstream_keepalive",
                s.upstream_keepalive,
                DEFAULT_UPSTREAM_KEEPALIVE,
                1,
            ),
            grace_period: s.grace_period.map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
            trusted_proxies: s.trusted_proxies.clone(),
            max_connections: match s.max_connections {
                Some(0) => {
                    self.issue("server.max_connections", "must be at least 1: `0`");
                    None
                }
                n => n,
            },
            watch_config: s.watch_config,
            pid_file: s.pid_file.as_ref().map(|p| self.dir.join(p)),
            upgrade_sock: PathBuf::new(), // after the listeners
            upgrade_grace_period: s.upgrade_grace_period.map_or(DEFAULT_UPGRADE_GRACE_PERIOD, |d| d.0),
        }
    }

    fn timeouts(&mut self, file: &GatewayFile) -> Timeouts {
        let s = &file.timeouts;
        let d = Timeouts::default();
        let mut pick = |key: &str, v: Option<super::values::Duration>, default: Duration| match v {
            Some(v) if v.0.is_zero() => {
                self.issue(format!("timeouts.{key}"), "must be greater than zero: `0`");
                default
            }
            Some(v) => v.0,
            None => default,
        };
        Timeouts {
            connect: pick("connect", s.connect, d.connect),
            upstream_read: pick("upstream_read", s.upstream_read, d.upstream_read),
            upstream_write: pick("upstream_write", s.upstream_write, d.upstream_write),
            client_read: pick("client_read", s.client_read, d.client_read),
            client_write: pick("client_write", s.client_write, d.client_write),
            keepalive: pick("keepalive", s.keepalive, d.keepalive),
            client_header: pick("client_header", s.client_header, d.client_header),
            upstream_header: pick("upstream_header", s.upstream_header, d.upstream_header),
        }
    }

    fn limits(&mut self, file: &GatewayFile) -> HeadLimits {
        let s = &file.limits;
        let d = HeadLimits::default();
        HeadLimits {
            // The shortest registry request line, `GET /v2/ HTTP/1.1`.
            request_line: self.at_least("limits.request_line", s.request_line.map(|b| b.0), d.request_line, 64),
            header_line: self.at_least("limits.header_line", s.header_line.map(|b| b.0), d.header_line, 64),
            header_block: self.at_least("limits.header_block", s.header_block.map(|b| b.0), d.header_block, 256),
            headers: self.at_least("limits.headers", s.headers, d.headers, 4),
        }
    }

    fn auth_limits(&mut self, file: &GatewayFile) -> AuthLimits {
        let d = AuthLimits::default();
        let cache = &file.server.auth_cache;
        let throttle = &file.server.auth_throttle;
        let limits = AuthLimits {
            cache_ttl: cache.ttl.map_or(d.cache_ttl, |t| t.0),
            cache_entries: cache.max_entries.unwrap_or(d.cache_entries),
            max_failures: throttle.max_failures.unwrap_or(d.max_failures),
            throttle_window: throttle.window.map_or(d.throttle_window, |t| t.0),
        };
        if limits.cache_entries == 0 {
            self.issue(
                "server.auth_cache.max_entries",
                "must be at least 1: `0` (set `ttl: 0s` to disable the cache)",
            );
        }
        if limits.max_failures > 0 && limits.throttle_window.is_zero() {
            self.issue("server.auth_throttle.window", "must be greater than zero: `0`");
        }
        limits
    }

    fn metrics(&mut self, file: &GatewayFile, listeners: &[ListenerSettings]) -> (Option<MetricsSettings>, usize) {
        let default = MetricsSection::default();
        let section = match &file.metrics {
            Some(Switch::Off) => return (None, DEFAULT_MAX_REGISTRY_LABELS),
            Some(Switch::On(s)) => s,
            None => &default,
        };
        let labels = section.max_registry_labels.unwrap_or(DEFAULT_MAX_REGISTRY_LABELS);
        let address = match &section.address {
            Some(a) => a.0,
            None => DEFAULT_METRICS_ADDRESS.parse().expect("valid default address"),
        };
        if let Some(i) = listeners.iter().position(|l| l.address == address) {
            self.issue(
                "metrics.address",
                format!("address `{address}` is also listeners[{i}]: the metrics listener needs its own"),
            );
        }
        // Read by `pools` as the default check interval.
        if section.probe_interval.is_some_and(|d| d.0.is_zero()) {
            self.issue("metrics.probe_interval", "must be greater than zero: `0`");
        }
        let settings = MetricsSettings { address };
        (Some(settings), labels)
    }

    fn access_log(&mut self, file: &GatewayFile) -> Option<AccessLogSettings> {
        let default = AccessLogSection::default();
        let section = match &file.access_log {
            Some(Switch::Off) => return None,
            Some(Switch::On(s)) => s,
            None => &default,
        };
        let output = match section.output.as_deref() {
            None | Some("stdout") => AccessLogOutput::Stdout,
            Some("stderr") => AccessLogOutput::Stderr,
            Some("") => {
                self.issue("access_log.output", "empty: use `stdout`, `stderr` or a file path");
                AccessLogOutput::Stdout
            }
            Some(path) => AccessLogOutput::File(self.dir.join(path)),
        };
        Some(AccessLogSettings {
            format: section.format,
            output,
        })
    }

    fn listeners(&mut self, file: &GatewayFile) -> Vec<ListenerSettings> {
        if file.listeners.is_empty() {
            self.issue("listeners", "at least one listener is required");
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, l) in file.listeners.iter().enumerate() {
            let address = l.socket_addr();
            if !seen.insert(address) {
                self.issue(
                    format!("listeners[{i}].address"),
                    format!("address `{address}` is used by an earlier listener"),
                );
            }
            if l.tls.is_some() && l.redirect_to_https.is_some() {
                self.issue(
                    format!("listeners[{i}].redirect_to_https"),
                    "only plain listeners redirect to HTTPS; this one has `tls`",
                );
            }
            if l.redirect_to_https == Some(0) {
                self.issue(format!("listeners[{i}].redirect_to_https"), "invalid port `0`");
            }
            let tls = l.tls.as_ref().map(|t| {
                if t.certificates.is_empty() {
                    self.issue(
                        format!("listeners[{i}].tls.certificates"),
                        "at least one certificate is required",
                    );
                }
                ListenerTlsSettings {
                    certificates: t
                        .certificates
                        .iter()
                        .map(|c| CertificateSpec {
                            cert: self.dir.join(&c.cert),
                            key: self.dir.join(&c.key),
                            names: c.names.clone(),
                        })
                        .collect(),
                    http2: t.http2,
                    reject_misdirected: t.reject_misdirected,
                }
            });
            out.push(ListenerSettings {
                name: l.name.clone().unwrap_or_else(|| format!("listener-{i}")),
                address,
                tls,
                redirect_to_https: l.redirect_to_https,
            });
        }
        out
    }

    fn registry_list(&mut self, file: &GatewayFile) {
        let registries = &file.registries;
        if registries.is_empty() {
            self.issue("registries", "at least one virtual registry is required");
        }
        for (i, r) in registries.iter().enumerate() {
            if registries[..i].iter().any(|e| e.name == r.name) {
                self.issue(
                    format!("registries[{i}].name"),
                    format!("name `{}` is used by an earlier registry", r.name),
                );
            }
            if !r.default && r.hosts.is_empty() && r.host_regex.is_none() {
                self.issue(
                    format!("registries[{i}]"),
                    format!(
                        "registry `{}` matches nothing: give it `hosts`, `host_regex` or `default: true`",
                        r.name
                    ),
                );
            }
        }
        let defaults: Vec<usize> = (0..registries.len()).filter(|&i| registries[i].default).collect();
        if defaults.len() > 1 {
            self.issue(
                format!("registries[{}].default", defaults[1]),
                format!("`true`: registries[{}] is already the default", defaults[0]),
            );
        }
    }
}
