//! Loopback ports for the servers the tests start.
//!
//! Binding port 0 and closing the socket again hands out a port the kernel
//! may give the very next caller too (two gateways' listeners, or an
//! outgoing connection's source port). Instead, every port comes from a pool
//! outside the kernel's ephemeral range, so no outgoing connection and no
//! port-0 bind can be given it, and each pool slot is handed out at most once
//! per test process. A slot that is busy (another program, a concurrent test
//! process) is skipped after a probe bind; the server starts that can still
//! lose a race (registry:2, gateways) retry on address-in-use.

use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this the scripts' own fixed ports live (5000, 5443, 9145, 15000).
const POOL_FLOOR: u16 = 16_000;

/// A loopback port that is free now and that this process has not handed
/// out before.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let pool = pool();
    let size = pool.len();
    // Concurrent test processes start at different places in the pool.
    let offset = (std::process::id() as usize).wrapping_mul(7919) % size;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < size, "test port pool {pool:?} exhausted after {size} ports");
        let port = pool.start + ((offset + n) % size) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// True when a server's log says its listen address was taken.
pub fn says_address_in_use(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}

/// The ports outside the kernel's ephemeral range (Linux default 32768-60999).
fn pool() -> Range<u16> {
    static POOL: OnceLock<Range<u16>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32768, 60999));
        let below = POOL_FLOOR..low.max(POOL_FLOOR);
        let above = high.saturating_add(1).max(POOL_FLOOR)..u16::MAX;
        if below.len() >= above.len() { below } else { above }
    })
    .clone()
}
