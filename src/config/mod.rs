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

pub use file::AccessLogFormat;
pub use file::HostHeaderMode;
use file::{
    AccessLogSection, AuthScopeSetting, AuthSetting, GatewayFile, ListenerTlsSection, MetricsSection, RegistrySection,
    RouteSection, Switch,
};
use values::IpNet;

use crate::auth::{AuthLimits, AuthPolicy, AuthScope, HtpasswdFile};
use crate::head_checks::HeadLimits;
use crate::metrics::RegistryMetrics;
use crate::reload::Reloadable;
use crate::routing::{RouteTable, RouteTarget, VirtualRegistry};
use crate::tls::certs::ServerCertificate;
use crate::tls::{CertificateSpec, SniResolver};
use crate::upstream::{Timeouts, Upstream};
use crate::vhost::{HostRouter, HostRule, Why};

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
    Invalid { file: PathBuf, issues: Vec<ConfigIssue> },
}

fn render_invalid(file: &Path, issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(|i| format!("{}: {i}", file.display())).collect();
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
    pub tls: Option<TlsListener>,
    /// Plain listener answering every request with a redirect to this
    /// HTTPS port.
    pub redirect_to_https: Option<u16>,
}

/// The TLS side of a listener.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub certificates: Arc<SniResolver>,
    pub http2: bool,
    /// 421 for requests whose Host would get another certificate than SNI did.
    pub reject_misdirected: bool,
}

/// Process-wide settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub work_stealing: bool,
    pub upstream_keepalive: usize,
    pub grace_period: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// `None`: derived from the descriptor limit at start.
    pub max_connections: Option<usize>,
}

/// The metrics listener.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub address: SocketAddr,
    pub probe_interval: Duration,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogOutput {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AccessLogSettings {
    pub format: AccessLogFormat,
    pub output: AccessLogOutput,
}

pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9145";
pub const DEFAULT_MAX_REGISTRY_LABELS: usize = 100;
const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The validated, compiled configuration.
#[derive(Debug)]
pub struct GatewayConfig {
    pub source: PathBuf,
    pub server: ServerSettings,
    pub listeners: Vec<Listener>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub registries: Vec<Arc<VirtualRegistry>>,
    pub timeouts: Timeouts,
    pub limits: HeadLimits,
    pub auth_limits: AuthLimits,
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

pub const DEFAULT_WORK_STEALING: bool = true;
/// Pingora's own default pool size.
pub const DEFAULT_UPSTREAM_KEEPALIVE: usize = 128;
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_REALM: &str = "Registry";

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
        let file: GatewayFile =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| {
                ConfigError::Syntax {
                    file: path.to_owned(),
                    message: syntax_message(&e),
                }
            })?;
        compile(file, path).map_err(|issues| ConfigError::Invalid {
            file: path.to_owned(),
            issues,
        })
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
    pub fn tls_stats(&self) -> Vec<(String, Arc<crate::tls::TlsStats>)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.tls.as_ref()?.certificates.stats.clone())))
            .collect()
    }

    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.server.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// `key.path: message at line L column C`. serde_yaml prefixes its message
/// with the path of the enclosing map only, so the exact path tracked by
/// serde_path_to_error replaces that prefix.
fn syntax_message(e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    let message = match inner.split_once(": ") {
        Some((prefix, rest)) if prefix != "." && path.starts_with(prefix) && !prefix.contains(' ') => rest,
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
    let mut c = Compiler {
        config_dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
        ..Compiler::default()
    };

    let server = c.server(&file);
    let listeners = c.listeners(&file);
    let timeouts = Timeouts::from_section(&file.timeouts, &mut |key, msg| {
        c.issues.push(issue(format!("timeouts.{key}"), msg))
    });
    if file.upstreams.is_empty() {
        c.issue("upstreams", "at least one upstream is required");
    }
    for (name, u) in &file.upstreams {
        match Upstream::new(name, u, &timeouts, &c.config_dir) {
            Ok(up) => {
                c.upstreams.insert(name.clone(), Arc::new(up));
            }
            Err(e) => c.issue(format!("upstreams.{name}.{}", e.key), e.message),
        }
    }

    let metrics = c.metrics(&file, &listeners);
    let access_log = c.access_log(&file);
    let gateway_auth = match &file.auth {
        Some(setting) => c.auth_setting("auth", setting),
        None => None,
    };
    let registries = file
        .registries
        .iter()
        .enumerate()
        .filter_map(|(i, r)| c.registry(i, r, &gateway_auth))
        .collect();
    c.registry_list_rules(&file);
    let router = c.host_router(&file);

    let auth_limits = c.auth_limits(&file);
    let limits = c.limits(&file);
    let Compiler {
        issues,
        upstreams,
        htpasswd_files,
        warnings,
        ..
    } = c;
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok(GatewayConfig {
        source: path.to_owned(),
        server,
        listeners,
        upstreams: upstreams.into_values().collect(),
        registries,
        timeouts,
        limits,
        auth_limits,
        htpasswd_files: htpasswd_files.into_values().collect(),
        router: router.expect("no issues means the router compiled"),
        warnings,
        metrics,
        access_log,
    })
}

/// Compilation state: what has been built so far and every problem found,
/// so one run reports all of them.
#[derive(Default)]
struct Compiler {
    config_dir: PathBuf,
    issues: Vec<ConfigIssue>,
    upstreams: BTreeMap<String, Arc<Upstream>>,
    /// One table per file, however many blocks name it.
    htpasswd_files: BTreeMap<PathBuf, Arc<HtpasswdFile>>,
    warnings: Vec<String>,
    max_registry_labels: usize,
    /// Shared by the registries past `max_registry_labels`.
    other_registries: Option<Arc<RegistryMetrics>>,
}

impl Compiler {
    fn metrics(&mut self, file: &GatewayFile, listeners: &[Listener]) -> Option<MetricsSettings> {
        let default = MetricsSection::default();
        let section = match &file.metrics {
            Some(Switch::Off) => {
                self.max_registry_labels = DEFAULT_MAX_REGISTRY_LABELS;
                return None;
            }
            Some(Switch::On(s)) => s,
            None => &default,
        };
        self.max_registry_labels = section.max_registry_labels.unwrap_or(DEFAULT_MAX_REGISTRY_LABELS);
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
        let probe_interval = section.probe_interval.map_or(DEFAULT_PROBE_INTERVAL, |d| d.0);
        if probe_interval.is_zero() {
            self.issue("metrics.probe_interval", "must be greater than zero: `0`");
        }
        Some(MetricsSettings {
            address,
            probe_interval,
        })
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
            Some(path) => AccessLogOutput::File(self.path(Path::new(path))),
        };
        Some(AccessLogSettings {
            format: section.format,
            output,
        })
    }

    /// Metric handles of the `i`th registry: its own label, or `other` past the limit.
    fn registry_metrics(&mut self, i: usize, name: &str) -> Arc<RegistryMetrics> {
        if i < self.max_registry_labels {
            return RegistryMetrics::new(name);
        }
        self.other_registries
            .get_or_insert_with(|| RegistryMetrics::new(crate::metrics::OTHER_REGISTRIES))
            .clone()
    }

    fn issue(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(issue(key, message));
    }

    fn server(&mut self, file: &GatewayFile) -> ServerSettings {
        let threads = match file.server.threads {
            Some(0) => {
                self.issue("server.threads", "must be at least 1: `0`");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        };
        let upstream_keepalive = match file.server.upstream_keepalive {
            Some(0) => {
                self.issue("server.upstream_keepalive", "must be at least 1: `0`");
                1
            }
            Some(n) => n,
            None => DEFAULT_UPSTREAM_KEEPALIVE,
        };
        ServerSettings {
            threads,
            work_stealing: file.server.work_stealing.unwrap_or(DEFAULT_WORK_STEALING),
            upstream_keepalive,
            grace_period: file.server.grace_period.map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
            trusted_proxies: file.server.trusted_proxies.clone(),
            max_connections: match file.server.max_connections {
                Some(0) => {
                    self.issue("server.max_connections", "must be at least 1: `0`");
                    None
                }
                n => n,
            },
        }
    }

    fn limits(&mut self, file: &GatewayFile) -> HeadLimits {
        let s = &file.limits;
        let d = HeadLimits::default();
        let mut pick = |key: &str, v: Option<usize>, default: usize, min: usize| match v {
            Some(n) if n < min => {
                self.issue(format!("limits.{key}"), format!("must be at least {min}: `{n}`"));
                default
            }
            Some(n) => n,
            None => default,
        };
        HeadLimits {
            // The shortest registry request line, `GET /v2/ HTTP/1.1`.
            request_line: pick("request_line", s.request_line.map(|b| b.0), d.request_line, 64),
            header_line: pick("header_line", s.header_line.map(|b| b.0), d.header_line, 64),
            header_block: pick("header_block", s.header_block.map(|b| b.0), d.header_block, 256),
            headers: pick("headers", s.headers, d.headers, 4),
        }
    }

    fn listeners(&mut self, file: &GatewayFile) -> Vec<Listener> {
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
            let tls = l.tls.as_ref().and_then(|t| self.tls_listener(i, t));
            if l.tls.is_some() && l.redirect_to_https.is_some() {
                self.issue(
                    format!("listeners[{i}].redirect_to_https"),
                    "only plain listeners redirect to HTTPS; this one has `tls`",
                );
            }
            if l.redirect_to_https == Some(0) {
                self.issue(format!("listeners[{i}].redirect_to_https"), "invalid port `0`");
            }
            out.push(Listener {
                name: l.name.clone().unwrap_or_else(|| format!("listener-{i}")),
                address,
                tls,
                redirect_to_https: l.redirect_to_https,
            });
        }
        out
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.config_dir.join(p)
    }

    fn tls_listener(&mut self, i: usize, t: &ListenerTlsSection) -> Option<TlsListener> {
        if t.certificates.is_empty() {
            self.issue(
                format!("listeners[{i}].tls.certificates"),
                "at least one certificate is required",
            );
            return None;
        }
        let specs: Vec<CertificateSpec> = t
            .certificates
            .iter()
            .map(|c| CertificateSpec {
                cert: self.path(&c.cert),
                key: self.path(&c.key),
                names: c.names.clone(),
            })
            .collect();
        // Each pair checked on its own first, so the error names its key.
        let mut ok = true;
        for (j, spec) in specs.iter().enumerate() {
            if let Err(e) = ServerCertificate::load(&spec.cert, &spec.key) {
                self.issue(format!("listeners[{i}].tls.certificates[{j}]"), e.to_string());
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        match SniResolver::load(specs) {
            Ok(r) => Some(TlsListener {
                certificates: Arc::new(r),
                http2: t.http2,
                reject_misdirected: t.reject_misdirected,
            }),
            Err(e) => {
                self.issue(format!("listeners[{i}].tls"), e.to_string());
                None
            }
        }
    }

    fn upstream(&mut self, key: String, name: &str) -> Option<Arc<Upstream>> {
        let found = self.upstreams.get(name).cloned();
        if found.is_none() {
            let known: Vec<&str> = self.upstreams.keys().map(String::as_str).collect();
            let message = format!("unknown upstream `{name}` (defined upstreams: {})", known.join(", "));
            self.issue(key, message);
        }
        found
    }

    /// `None` for `auth: off` or a block that failed to load.
    fn auth_setting(&mut self, key: &str, setting: &AuthSetting) -> Option<Arc<AuthPolicy>> {
        let AuthSetting::On(section) = setting else {
            return None;
        };
        let path = self.config_dir.join(&section.htpasswd);
        let users = match self.htpasswd_files.get(&path) {
            Some(f) => f.clone(),
            None => match HtpasswdFile::load(&path) {
                Ok(f) => {
                    let f = Arc::new(f);
                    self.htpasswd_files.insert(path.clone(), f.clone());
                    f
                }
                Err(e) => {
                    self.issue(
                        format!("{key}.htpasswd"),
                        format!("cannot read htpasswd file `{}`: {}", path.display(), e.source),
                    );
                    return None;
                }
            },
        };
        let table_id = self.htpasswd_files.keys().position(|p| *p == path).unwrap_or(0) as u64;
        let scope = match section.scope {
            AuthScopeSetting::All => AuthScope::All,
            AuthScopeSetting::Writes => AuthScope::Writes,
        };
        let realm = section.realm.as_deref().unwrap_or(DEFAULT_REALM);
        Some(Arc::new(AuthPolicy::new(realm, scope, users, table_id)))
    }

    /// The auth of a level below `inherited`: absent inherits, `off` clears.
    fn auth_override(
        &mut self,
        key: &str,
        setting: &Option<AuthSetting>,
        inherited: &Option<Arc<AuthPolicy>>,
    ) -> Option<Arc<AuthPolicy>> {
        match setting {
            None => inherited.clone(),
            Some(s) => self.auth_setting(key, s),
        }
    }

    fn registry(
        &mut self,
        i: usize,
        r: &RegistrySection,
        gateway_auth: &Option<Arc<AuthPolicy>>,
    ) -> Option<Arc<VirtualRegistry>> {
        let key = format!("registries[{i}]");
        let main = self.upstream(format!("{key}.upstream"), &r.upstream);
        let auth = self.auth_override(&format!("{key}.auth"), &r.auth, gateway_auth);
        let v2 = self.route(&key, "v2", &r.routes.v2, &main, &auth);
        // Ping paths stay open unless a route block asks for auth (nginx recipe).
        let ping = self.route(&key, "ping", &r.routes.ping, &main, &None);
        let v1 = match &r.routes.v1 {
            Some(section) if section.upstream.is_some() => self.route(&key, "v1", &r.routes.v1, &None, &auth),
            Some(_) => {
                self.issue(
                    format!("{key}.routes.v1.upstream"),
                    "required: legacy paths need their own upstream",
                );
                None
            }
            None => None,
        };
        let routes = RouteTable {
            v2: v2?,
            ping: ping?,
            v1,
        };
        Some(Arc::new(VirtualRegistry {
            name: r.name.clone(),
            is_default: r.default,
            routes,
            metrics: self.registry_metrics(i, &r.name),
        }))
    }

    fn route(
        &mut self,
        key: &str,
        which: &str,
        section: &Option<RouteSection>,
        default_upstream: &Option<Arc<Upstream>>,
        inherited_auth: &Option<Arc<AuthPolicy>>,
    ) -> Option<RouteTarget> {
        let Some(section) = section else {
            return Some(RouteTarget {
                upstream: default_upstream.clone()?,
                auth: inherited_auth.clone(),
            });
        };
        let upstream = match &section.upstream {
            Some(name) => self.upstream(format!("{key}.routes.{which}.upstream"), name),
            None => default_upstream.clone(),
        };
        let auth = self.auth_override(&format!("{key}.routes.{which}.auth"), &section.auth, inherited_auth);
        Some(RouteTarget {
            upstream: upstream?,
            auth,
        })
    }

    fn registry_list_rules(&mut self, file: &GatewayFile) {
        for (i, r) in file.registries.iter().enumerate() {
            if file.registries[..i].iter().any(|e| e.name == r.name) {
                self.issue(
                    format!("registries[{i}].name"),
                    format!("name `{}` is used by an earlier registry", r.name),
                );
            }
        }
        if file.registries.is_empty() {
            self.issue("registries", "at least one virtual registry is required");
        }
        for (i, r) in file.registries.iter().enumerate() {
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
        let defaults: Vec<usize> = file
            .registries
            .iter()
            .enumerate()
            .filter(|(_, r)| r.default)
            .map(|(i, _)| i)
            .collect();
        if defaults.len() > 1 {
            self.issue(
                format!("registries[{}].default", defaults[1]),
                format!("`true`: registries[{}] is already the default", defaults[0]),
            );
        }
    }

    fn host_router(&mut self, file: &GatewayFile) -> Option<HostRouter> {
        let rules = file
            .registries
            .iter()
            .map(|r| HostRule {
                hosts: r.hosts.clone(),
                host_regex: r.host_regex.clone(),
                ports: r.ports.clone(),
                default: r.default,
            })
            .collect();
        let router = match HostRouter::new(rules) {
            Ok(router) => router,
            Err((i, e)) => {
                self.issue(format!("registries[{i}].host_regex"), e.to_string());
                return None;
            }
        };
        for (shadowed, by) in router.shadowed() {
            self.warnings.push(format!(
                "registries[{shadowed}] (`{}`) is never chosen: registries[{by}] (`{}`) comes first and matches all its hosts",
                file.registries[shadowed].name, file.registries[by].name
            ));
        }
        Some(router)
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
}

fn describe_target(t: &RouteTarget) -> String {
    match &t.auth {
        None => format!("{} (no auth)", t.upstream.name),
        Some(a) => {
            let scope = match a.scope {
                AuthScope::All => "all requests",
                AuthScope::Writes => "writes only",
            };
            format!(
                "{} (auth: {} users from {}, realm \"{}\", {scope})",
                t.upstream.name,
                a.users.table().len(),
                a.users.path().display(),
                a.realm
            )
        }
    }
}

/// A short human-readable description, printed by `registry-gateway check`.
pub fn summary(c: &GatewayConfig) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "listeners:");
    for l in &c.listeners {
        let _ = writeln!(out, "  {}", crate::listeners::describe(l));
        if let Some(tls) = &l.tls {
            for spec in &tls.certificates.specs {
                let _ = writeln!(
                    out,
                    "    certificate {} (key {})",
                    spec.cert.display(),
                    spec.key.display()
                );
            }
            let _ = writeln!(out, "    SNI names: {}", tls.certificates.names().join(", "));
        }
    }
    let _ = writeln!(out, "upstreams:");
    for u in &c.upstreams {
        let _ = writeln!(
            out,
            "  {} {} ({}), Host header: {:?}",
            u.name,
            u.url(),
            u.address,
            u.host_header
        );
    }
    let _ = writeln!(out, "registries:");
    for (i, r) in c.registries.iter().enumerate() {
        let _ = writeln!(out, "  {} ({})", r.name, c.router.rule(i).describe());
        let _ = writeln!(out, "    /v2/...            -> {}", describe_target(&r.routes.v2));
        let _ = writeln!(out, "    /_ping, /v1/_ping  -> {}", describe_target(&r.routes.ping));
        let v1 = r
            .routes
            .v1
            .as_ref()
            .map_or("404 (no legacy upstream)".to_owned(), describe_target);
        let _ = writeln!(out, "    /v1/...            -> {v1}");
        let _ = writeln!(out, "    other paths        -> 404");
    }
    let t = &c.timeouts;
    let _ = writeln!(
        out,
        "timeouts: connect {:?}, upstream header {:?}, upstream read/write {:?}/{:?}, client header {:?}, \
         client read/write {:?}/{:?}, keepalive {:?}",
        t.connect,
        t.upstream_header,
        t.upstream_read,
        t.upstream_write,
        t.client_header,
        t.client_read,
        t.client_write,
        t.keepalive
    );
    let l = &c.limits;
    let _ = writeln!(
        out,
        "request heads: line {} B, header line {} B, head {} B, {} headers; client connections: {}",
        l.request_line,
        l.header_line,
        l.header_block,
        l.headers,
        c.server
            .max_connections
            .map_or("half the descriptor limit, at most 10000".to_owned(), |n| n.to_string())
    );
    let _ = writeln!(
        out,
        "shutdown grace period: {:?}, threads: {}, work stealing: {}, idle upstream connections kept: {}",
        c.server.grace_period, c.server.threads, c.server.work_stealing, c.server.upstream_keepalive
    );
    match &c.metrics {
        Some(m) => {
            let _ = writeln!(
                out,
                "metrics: http://{}/metrics, /healthz, /readyz (upstreams probed every {:?})",
                m.address, m.probe_interval
            );
        }
        None => {
            let _ = writeln!(out, "metrics: off");
        }
    }
    let access = match &c.access_log {
        Some(a) => format!("{:?} to {:?}", a.format, a.output).to_lowercase(),
        None => "off".to_owned(),
    };
    let _ = writeln!(out, "access log: {access}");
    for w in &c.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests;
