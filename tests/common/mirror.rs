//! The caching mirror in tests: a `gateway.yaml` builder for mirror
//! registries, upstream secrets, and looks into a cache directory, the
//! mirror's metrics and its log. Upstreams with credentials are in
//! `auth_registry`, the hashing client in `hashing`, the TCP tap in `tap`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::auth::htpasswd_line;
use super::gateway::Gateway;
use super::prom::{sample, scrape};
use super::registry::Registry;
use super::tls::yaml_str;
use super::token_server::TokenServer;
use super::{free_addr, require_tool, wait_until};
use std::time::Duration;

/// Every manifest type a pull accepts.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Fails the test (it never skips) when the file system of `path` has less
/// than `bytes` available, per `df -Pk`.
#[track_caller]
pub fn require_free_space(path: &Path, bytes: u64) {
    require_tool("/usr/bin/df", "coreutils");
    let out = Command::new("/usr/bin/df")
        .arg("-Pk")
        .arg(path)
        .output()
        .expect("run df");
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = (text.lines().nth(1))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read `df -Pk {}`: {text}", path.display()));
    assert!(
        kib * 1024 >= bytes,
        "this test needs {} MiB free under {}, there are {} MiB: free some space",
        bytes >> 20,
        path.display(),
        kib >> 10
    );
}

// ---------------------------------------------------------------------------
// gateway.yaml for mirrors
// ---------------------------------------------------------------------------

/// Where an upstream password comes from.
#[derive(Clone, Debug)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

/// One entry of `upstreams:`.
#[derive(Clone, Debug)]
pub struct MirrorUpstream {
    name: String,
    url: String,
    ca: Option<PathBuf>,
    credentials: Option<(String, Secret)>,
}

impl MirrorUpstream {
    /// `health: off`, no TLS settings, no credentials.
    pub fn new(name: &str, url: &str) -> MirrorUpstream {
        MirrorUpstream {
            name: name.into(),
            url: url.into(),
            ca: None,
            credentials: None,
        }
    }

    /// `tls: {ca: ...}`
    pub fn ca(mut self, ca: &Path) -> MirrorUpstream {
        self.ca = Some(ca.to_owned());
        self
    }

    /// `credentials: {username, password_file}`
    pub fn password_file(mut self, user: &str, file: &Path) -> MirrorUpstream {
        self.credentials = Some((user.into(), Secret::File(file.to_owned())));
        self
    }

    /// `credentials: {username, password_env}`; see [`export_password_env`].
    pub fn password_env(mut self, user: &str, var: &str) -> MirrorUpstream {
        self.credentials = Some((user.into(), Secret::Env(var.into())));
        self
    }
}

/// The `cache:` block of the registry.
#[derive(Clone, Debug)]
pub struct CacheSpec {
    pub dir: PathBuf,
    max_size: String,
    tag_ttl: Option<String>,
    max_stale: Option<String>,
    mismatch_backoff: Option<String>,
}

impl CacheSpec {
    /// `max_size: 2GiB`, `fsync: false`, defaults for the rest.
    pub fn new(dir: &Path) -> CacheSpec {
        CacheSpec {
            dir: dir.to_owned(),
            max_size: "2GiB".into(),
            tag_ttl: None,
            max_stale: None,
            mismatch_backoff: None,
        }
    }
    pub fn max_size(mut self, size: &str) -> CacheSpec {
        self.max_size = size.into();
        self
    }
    pub fn tag_ttl(mut self, ttl: &str) -> CacheSpec {
        self.tag_ttl = Some(ttl.into());
        self
    }
    pub fn max_stale(mut self, max: &str) -> CacheSpec {
        self.max_stale = Some(max.into());
        self
    }
    pub fn mismatch_backoff(mut self, backoff: &str) -> CacheSpec {
        self.mismatch_backoff = Some(backoff.into());
        self
    }
}

/// A gateway with one plain listener and one default registry `mirror`
/// over any number of upstreams.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    default_upstream: String,
    upstreams: Vec<MirrorUpstream>,
    ns: Vec<(String, String)>,
    ns_in_path: bool,
    push_deny: bool,
    cache: Option<CacheSpec>,
    /// htpasswd lines for the gateway's own `auth:`.
    users: Option<String>,
}

fn yaml_path(p: &Path) -> String {
    yaml_str(p.to_str().expect("UTF-8 path"))
}

impl MirrorConfig {
    pub fn new(default_upstream: &str) -> MirrorConfig {
        MirrorConfig {
            default_upstream: default_upstream.into(),
            upstreams: Vec::new(),
            ns: Vec::new(),
            ns_in_path: false,
            push_deny: false,
            cache: None,
            users: None,
        }
    }
    pub fn upstream(mut self, upstream: MirrorUpstream) -> MirrorConfig {
        self.upstreams.push(upstream);
        self
    }
    /// `ns: {<value>: <upstream>}`
    pub fn ns(mut self, value: &str, upstream: &str) -> MirrorConfig {
        self.ns.push((value.into(), upstream.into()));
        self
    }
    pub fn ns_in_path(mut self) -> MirrorConfig {
        self.ns_in_path = true;
        self
    }
    pub fn push_deny(mut self) -> MirrorConfig {
        self.push_deny = true;
        self
    }
    pub fn cache(mut self, cache: CacheSpec) -> MirrorConfig {
        self.cache = Some(cache);
        self
    }
    /// The gateway's own `auth: {htpasswd: users}` with one bcrypt user.
    pub fn htpasswd_user(mut self, user: &str, password: &str) -> MirrorConfig {
        let mut users = self.users.take().unwrap_or_default();
        users.push_str(&(htpasswd_line("B", &["-C", "4"], user, password) + "\n"));
        self.users = Some(users);
        self
    }

    pub fn to_yaml(&self, listen: SocketAddr) -> String {
        let mut y = String::from("server:\n  threads: 2\n  grace_period: 5s\n  trusted_proxies: []\n");
        y.push_str(&format!(
            "listeners:\n  - name: plain\n    address: \"{listen}\"\nupstreams:\n"
        ));
        for u in &self.upstreams {
            y.push_str(&format!(
                "  {}:\n    url: {}\n    health: off\n",
                u.name,
                yaml_str(&u.url)
            ));
            if let Some(ca) = &u.ca {
                y.push_str(&format!("    tls:\n      ca: {}\n", yaml_path(ca)));
            }
            if let Some((user, secret)) = &u.credentials {
                let source = match secret {
                    Secret::File(p) => format!("password_file: {}", yaml_path(p)),
                    Secret::Env(v) => format!("password_env: {v}"),
                };
                y.push_str(&format!(
                    "    credentials:\n      username: {}\n      {source}\n",
                    yaml_str(user)
                ));
            }
        }
        y.push_str(&format!(
            "registries:\n  - name: mirror\n    default: true\n    upstream: {}\n",
            self.default_upstream
        ));
        if !self.ns.is_empty() {
            y.push_str("    ns:\n");
            for (k, v) in &self.ns {
                y.push_str(&format!("      {}: {v}\n", yaml_str(k)));
            }
        }
        if self.ns_in_path {
            y.push_str("    ns_in_path: true\n");
        }
        if self.push_deny {
            y.push_str("    push: deny\n");
        }
        if let Some(c) = &self.cache {
            y.push_str(&format!(
                "    cache:\n      dir: {}\n      max_size: {}\n      fsync: false\n",
                yaml_path(&c.dir),
                c.max_size
            ));
            for (key, value) in [
                ("tag_ttl", &c.tag_ttl),
                ("max_stale", &c.max_stale),
                ("mismatch_backoff", &c.mismatch_backoff),
            ] {
                if let Some(v) = value {
                    y.push_str(&format!("      {key}: {v}\n"));
                }
            }
        }
        if self.users.is_some() {
            y.push_str("auth:\n  htpasswd: users\n");
        }
        y
    }

    /// Starts a gateway on a fresh port (so one config can be started
    /// again, e.g. on the same cache directory after a restart).
    pub fn start(&self) -> Gateway {
        let listen = free_addr();
        let users = self.users.clone().unwrap_or_default();
        let files: Vec<(&str, &[u8])> = match &self.users {
            Some(_) => vec![("users", users.as_bytes())],
            None => Vec::new(),
        };
        Gateway::start_yaml_with_files(&self.to_yaml(listen), listen, &files)
    }
}

/// Writes `password` to `dir/name` (mode 0600) for `password_file`.
pub fn write_secret(dir: &Path, name: &str, password: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, format!("{password}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Puts `var=value` into this test process's environment, which the
/// gateways it starts inherit (for `password_env`); the harness cannot pass
/// a child its own environment. Each name must be set once to one value
/// for the whole process, so tests running in parallel agree on it.
pub fn export_password_env(var: &'static str, value: &'static str) {
    static SET: std::sync::Mutex<Vec<(&str, &str)>> = std::sync::Mutex::new(Vec::new());
    let mut set = SET.lock().unwrap();
    if let Some((_, v)) = set.iter().find(|(k, _)| *k == var) {
        assert_eq!(*v, value, "{var} exported twice with different values");
        return;
    }
    // SAFETY: the harness's threads read the environment only through
    // std (`Command::spawn`, `env::var`), which holds the same lock as
    // `set_var`; no test thread calls libc's getenv directly.
    unsafe { std::env::set_var(var, value) };
    set.push((var, value));
}

// ---------------------------------------------------------------------------
// Cache directory, metrics, logs
// ---------------------------------------------------------------------------

/// `<dir>/blobs/sha256/<2 hex>/<64 hex>`
pub fn cached_blob_path(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    dir.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            walk(&e.path(), out);
        } else {
            out.push((e.path(), meta.len()));
        }
    }
}

/// Every file under `<dir>/blobs/`, with its size.
pub fn cached_blob_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    walk(&dir.join("blobs"), &mut out);
    out
}

/// Total size of the files under `<dir>/blobs/`.
pub fn cached_blob_bytes(dir: &Path) -> u64 {
    cached_blob_files(dir).iter().map(|(_, n)| n).sum()
}

/// `<dir>/tmp/*.part`: fills in progress (or left by a dead process).
pub fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(&dir.join("tmp"), &mut out);
    (out.into_iter().map(|(p, _)| p))
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect()
}

/// One sample from the gateway's metrics (summed over the series whose
/// labels include `labels`; 0 when none).
pub fn metric(gateway: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(&scrape(gateway.metrics_addr()), name, labels)
}

/// The mirror's metrics text, for assertion messages.
pub fn mirror_metrics(gateway: &Gateway) -> String {
    let text = scrape(gateway.metrics_addr());
    let lines: Vec<&str> = (text.lines())
        .filter(|l| l.starts_with("registry_gateway_cache") || l.starts_with("registry_gateway_upstream_"))
        .collect();
    lines.join("\n")
}

/// N of the last `cache <dir>: indexed N blobs (...)` line.
pub fn indexed_blobs(log: &str) -> Option<u64> {
    let at = log.rfind("indexed ")? + "indexed ".len();
    let rest = &log[at..];
    let n = rest.split(' ').next()?;
    rest[n.len()..].starts_with(" blobs").then(|| n.parse().ok()).flatten()
}

/// Token requests the issuer logged for `user`.
pub fn token_requests_by(issuer: &TokenServer, user: &str) -> usize {
    issuer.requests().iter().filter(|r| r["user"] == user).count()
}

/// Waits for `n` GETs of `path_part` on `registry` (only 2xx ones with
/// `ok_only`, so auth challenges do not count) and a moment longer, then
/// asserts there are exactly `n`.
#[track_caller]
pub fn assert_gets(registry: &Registry, path_part: &str, n: usize, what: &str, ok_only: bool) {
    let count = || {
        if ok_only {
            registry.count_ok("GET", path_part)
        } else {
            registry.count("GET", path_part)
        }
    };
    wait_until(Duration::from_secs(5), || count() >= n);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(),
        n,
        "{what}: upstream GETs of {path_part} (2xx only: {ok_only}); access log:\n{}",
        registry.access_log().join("\n")
    );
}
