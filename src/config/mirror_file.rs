//! The mirror parts of `gateway.yaml`: credentials the gateway uses toward
//! an upstream, and per registry the `ns` map, `push` and the `cache` block.

use std::path::PathBuf;

use serde::Deserialize;

use super::values::{ByteSize, Duration};

/// The gateway's own login at an upstream. The secret is never written
/// in `gateway.yaml`: it comes from a file or an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSection {
    pub username: String,
    /// File holding the password (or token); one trailing newline is dropped.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
}

/// Whether clients may write through a registry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushSetting {
    /// Pushes and deletes go to the upstream.
    #[default]
    Allow,
    /// 405 UNSUPPORTED, as for a mirror of a public registry.
    Deny,
}

/// The registry's blob and manifest cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// May be shared by several registries (content-addressed).
    pub dir: PathBuf,
    pub max_size: ByteSize,
    /// How long a tag's digest is used before a HEAD revalidates it.
    pub tag_ttl: Option<Duration>,
    /// How old a tag may be when served while its upstream is down.
    pub max_stale: Option<Duration>,
    /// fsync each blob before it is committed (default true).
    pub fsync: Option<bool>,
    /// How long a digest whose upstream content did not match is refused (default 30s).
    pub mismatch_backoff: Option<Duration>,
}
