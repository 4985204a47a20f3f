//! Checked mirror settings: upstream credentials (where the secret comes
//! from, not the secret), and per registry its `ns` map, `push` and cache.

use std::path::PathBuf;
use std::time::Duration;

/// Where an upstream password comes from; read by `runtime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    /// `file /run/secrets/hub` or `environment variable HUB_PASSWORD`.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Env(v) => format!("environment variable {v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSettings {
    pub username: String,
    pub secret: SecretSource,
}

pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_MISMATCH_BACKOFF: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Smaller caches would evict most of what one image pull brings.
pub const MIN_CACHE_SIZE: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Absolute (relative paths were joined to the config's directory).
    pub dir: PathBuf,
    pub max_size: u64,
    pub tag_ttl: Duration,
    pub max_stale: Duration,
    pub fsync: bool,
    pub mismatch_backoff: Duration,
}

/// The mirror side of one registry; the default is a plain proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorSettings {
    /// Normalized `ns` value → upstream name, Docker Hub's aliases spelled out.
    pub ns: Vec<(String, String)>,
    pub ns_in_path: bool,
    pub push_deny: bool,
    pub cache: Option<CacheSettings>,
}

/// Names clients use for Docker Hub: one configured, all three route.
pub const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// `ns` values as containerd sends them: a host, maybe with a port.
/// Lower case; `None` for anything else (a path, a URL, spaces).
pub fn normalize_ns(value: &str) -> Option<String> {
    let v = value.trim().to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'));
    ok.then_some(v)
}
