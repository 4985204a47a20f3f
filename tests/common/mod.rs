//! Shared harness for the integration tests.
//!
//! Tests are meant to read like sentences:
//!
//! ```ignore
//! let registry = Registry::start();
//! let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
//! let rsp = Request::get("/v2/").send(gateway.addr());
//! assert_eq!(rsp.status, 200, "{}", rsp.describe());
//! ```
//!
//! Every helper allocates its own ports and temporary directories, so tests
//! can run in parallel threads.
//!
//! Requirements: `/usr/bin/docker-registry` (Debian package docker-registry)
//! and `/usr/bin/skopeo`, plus `/usr/bin/htpasswd` (apache2-utils) and
//! `/usr/bin/openssl` for the auth tests and `/usr/bin/prometheus` for the
//! dashboard test; a missing tool fails the test with
//! the apt-get command that installs it. Run everything with `cargo test --release`
//! (push_pull moves a 1 GiB layer; in a debug build it takes minutes), or one
//! file with `cargo test --release --test routing`. `harness_selfcheck` runs
//! the harness straight against registry:2: when it passes and a gateway test
//! fails, the gateway is at fault.
#![allow(dead_code, unused_imports)]

pub mod auth;
pub mod auth_registry;
pub mod check;
pub mod gateway;
pub mod grafana;
pub mod hashing;
pub mod http;
pub mod mirror;
pub mod oci;
pub mod podman;
pub mod pools;
pub mod ports;
pub mod prom;
pub mod prometheus;
pub mod python;
pub mod registry;
pub mod skopeo;
pub mod tap;
pub mod token_server;
pub mod upstreams;

pub use auth::*;
pub use auth_registry::*;
pub use check::*;
pub use gateway::*;
pub use grafana::*;
pub use hashing::*;
pub use http::*;
pub use mirror::*;
pub use oci::*;
pub use podman::*;
pub use pools::*;
pub use ports::*;
pub use prom::*;
pub use prometheus::*;
pub use python::*;
pub use registry::*;
pub use skopeo::*;
pub use tap::Tap;
pub use token_server::TokenServer;
pub use upstreams::*;

use std::path::Path;
use std::time::{Duration, Instant};

/// Fails the test loudly when a required external tool is not installed.
/// Tests never skip silently.
pub fn require_tool(path: &str, package: &str) {
    if !Path::new(path).exists() {
        panic!("missing {path}: install it with: apt-get install -y {package}");
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A short unique token, for tagging requests so that a log can be searched
/// for them.
pub fn nonce(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{label}{}x{n}x{t:08x}", std::process::id())
}

/// The last `max` bytes of a log, for panic messages.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
pub mod tls;
