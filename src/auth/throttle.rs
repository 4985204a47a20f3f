//! Wrong-password throttling per client address, so a flood of guesses
//! cannot keep the CPUs busy with bcrypt runs at valid users' expense.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Entries kept per shard before stale ones are swept.
const SWEEP_AT: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Debug)]
pub struct FailureThrottle {
    /// 0 disables throttling.
    max_failures: u32,
    window: Duration,
    shards: [Mutex<HashMap<IpAddr, Window>>; SHARDS],
}

fn shard_of(ip: &IpAddr) -> usize {
    let last = match ip {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(v6) => v6.octets()[15],
    };
    last as usize % SHARDS
}

impl FailureThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        FailureThrottle {
            max_failures,
            window,
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// How long the client must wait, if it is over the limit.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let shard = self.shards[shard_of(&ip)].lock().unwrap_or_else(|e| e.into_inner());
        let w = shard.get(&ip)?;
        let elapsed = w.started.elapsed();
        (w.failures >= self.max_failures && elapsed < self.window).then(|| self.window - elapsed)
    }

    pub fn record_failure(&self, ip: IpAddr) {
        if self.max_failures == 0 {
            return;
        }
        let now = Instant::now();
        let mut shard = self.shards[shard_of(&ip)].lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= SWEEP_AT {
            shard.retain(|_, w| now.duration_since(w.started) < self.window);
        }
        let w = shard.entry(ip).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(w.started) >= self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engages_after_limit_and_releases_after_window() {
        let t = FailureThrottle::new(3, Duration::from_millis(50));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            t.record_failure(ip);
        }
        assert!(t.blocked_for(ip).is_none());
        t.record_failure(ip);
        assert!(t.blocked_for(ip).is_some());
        assert!(t.blocked_for(other).is_none(), "other clients are unaffected");
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.blocked_for(ip).is_none());
    }

    #[test]
    fn zero_disables() {
        let t = FailureThrottle::new(0, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..100 {
            t.record_failure(ip);
        }
        assert!(t.blocked_for(ip).is_none());
    }
}
