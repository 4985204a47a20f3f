//! podman as a client of mirrors: pulls by an upstream's name, sent to a
//! mirror by a `registries.conf` written by the test (the configuration
//! README documents for podman and CRI-O), into a private vfs store.

use std::path::Path;
use std::process::{Command, Output, Stdio};

pub const PODMAN_BIN: &str = "/usr/bin/podman";

/// A `registries.conf` sending pulls of `upstream` (`host:port`) to
/// `mirror` (`host:port/ns`) first; both plain HTTP.
pub fn podman_mirror_conf(dir: &Path, upstream: &str, mirror: &str) -> std::path::PathBuf {
    let path = dir.join("registries.conf");
    let text = format!(
        "unqualified-search-registries = []\n\n[[registry]]\nprefix = \"{upstream}\"\nlocation = \"{upstream}\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn podman(root: &Path, conf: &Path, args: &[&str]) -> Output {
    Command::new(PODMAN_BIN)
        .env("CONTAINERS_REGISTRIES_CONF", conf)
        .arg("--root")
        .arg(root.join("storage"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {PODMAN_BIN}: {e}"))
}

pub fn podman_pull(root: &Path, conf: &Path, reference: &str) -> Output {
    podman(root, conf, &["pull", "--quiet", reference])
}

/// The manifest digest podman recorded for `reference`.
pub fn podman_digest(root: &Path, conf: &Path, reference: &str) -> String {
    let out = podman(root, conf, &["image", "inspect", "--format", "{{.Digest}}", reference]);
    assert!(
        out.status.success(),
        "podman image inspect:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
