use std::collections::HashMap;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use super::*;
use crate::config::{HealthSettings, PassiveSettings, PolicySetting, PoolSettings};

/// A pool of replicas on `127.0.0.1:<port>` for each port (nothing needs
/// to listen: selection never connects). Ports keep tests' replica states
/// apart (states are process-wide, by identity).
fn pool(ports: &[u16], policy: PolicySetting, passive: Option<PassiveSettings>) -> Pool {
    let urls: Vec<UpstreamUrl> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}").parse().unwrap())
        .collect();
    let specs = urls
        .iter()
        .map(|u| ReplicaSpec {
            url: u.clone(),
            peer: HttpPeer::new(u.address, false, String::new()),
            identity: format!("{} (pool test)", u.canonical()),
        })
        .collect();
    let settings = PoolSettings {
        urls,
        policy,
        shared_secret: false,
        health: None,
        passive,
    };
    Pool::new("test", specs, &settings, Duration::from_secs(60))
}

fn counts(pool: &Pool, n: usize, key: &[u8]) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        *seen.entry(pool.choose(key, None).index).or_default() += 1;
    }
    seen
}

const EJECT: Option<PassiveSettings> = Some(PassiveSettings {
    failures: 1,
    ejection: Duration::from_secs(60),
});

#[test]
fn round_robin_takes_turns() {
    let p = pool(&[46001, 46002, 46003], PolicySetting::RoundRobin, None);
    let seen = counts(&p, 300, b"");
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 100), "{seen:?}");
}

#[test]
fn least_requests_goes_where_fewest_are_in_flight() {
    let p = pool(&[46011, 46012, 46013], PolicySetting::LeastRequests, None);
    // Two long requests on replica 0, one on replica 1: replica 2 is next.
    let held = [
        p.pick(0, Selection::Policy),
        p.pick(0, Selection::Policy),
        p.pick(1, Selection::Policy),
    ];
    assert_eq!(p.choose(b"", None).index, 2);
    drop(held);
    // Idle: they take turns.
    assert_eq!(counts(&p, 30, b"").len(), 3);
}

#[test]
fn consistent_hash_keeps_a_repository_on_one_replica_until_it_is_skipped() {
    let p = pool(&[46021, 46022, 46023], PolicySetting::ConsistentHash, EJECT);
    let home = p.choose(b"team/app", None).index;
    assert!((0..50).all(|_| p.choose(b"team/app", None).index == home));
    // Repositories spread over the replicas.
    let spread: std::collections::HashSet<usize> = (0..60)
        .map(|i| p.choose(format!("repo{i}").as_bytes(), None).index)
        .collect();
    assert_eq!(spread.len(), 3, "{spread:?}");
    // Its replica ejected: another one, the same every time.
    p.failed(home, UpstreamFailure::Connect { timed_out: false }, &"refused");
    let other = p.choose(b"team/app", None).index;
    assert_ne!(other, home);
    assert!((0..20).all(|_| p.choose(b"team/app", None).index == other));
    // Back after it answered.
    p.answered(home, 200);
    assert_eq!(p.choose(b"team/app", None).index, home);
    // Requests without a repository rotate.
    assert_eq!(counts(&p, 30, b"").len(), 3);
}

#[test]
fn an_ejected_replica_is_skipped_and_a_retry_avoids_the_one_that_failed() {
    let p = pool(&[46031, 46032], PolicySetting::RoundRobin, EJECT);
    p.failed(0, UpstreamFailure::Connect { timed_out: false }, &"refused");
    assert!(!p.is_available(0));
    assert!((0..10).all(|_| p.choose(b"", None).index == 1));
    assert!(!p.has_alternative(1), "replica 0 is ejected");
    assert!(p.has_alternative(0));
    let retry = p.choose(b"", Some(0));
    assert_eq!((retry.index, retry.why), (1, Selection::Retry));
}

#[test]
fn with_nothing_available_a_request_is_still_tried_somewhere() {
    let p = pool(&[46041, 46042], PolicySetting::LeastRequests, EJECT);
    p.failed(0, UpstreamFailure::Connect { timed_out: false }, &"refused");
    p.failed(1, UpstreamFailure::Timeout, &"timed out");
    let pick = p.choose(b"", None);
    assert_eq!(pick.why, Selection::Fallback);
    // A retry of the only replica goes back to it.
    let single = pool(&[46043], PolicySetting::RoundRobin, EJECT);
    single.failed(0, UpstreamFailure::Connect { timed_out: false }, &"refused");
    assert_eq!(single.choose(b"", Some(0)).index, 0);
}

#[test]
fn other_failures_do_not_eject() {
    let p = pool(&[46051, 46052], PolicySetting::RoundRobin, EJECT);
    p.failed(0, UpstreamFailure::Other, &"connection reset");
    assert!(p.is_available(0));
}

#[test]
fn a_rebuilt_pool_keeps_in_flight_counts_and_ejections() {
    let before = pool(&[46061, 46062], PolicySetting::LeastRequests, EJECT);
    let _held = before.pick(0, Selection::Policy);
    before.failed(1, UpstreamFailure::Connect { timed_out: false }, &"refused");
    // The same replicas in a new configuration (a reload).
    let after = pool(&[46062, 46061, 46063], PolicySetting::LeastRequests, EJECT);
    assert_eq!(after.replica(1).in_flight(), 1, "46061 kept its request in flight");
    assert!(!after.is_available(0), "46062 is still ejected");
    assert_eq!(
        after.choose(b"", None).index,
        2,
        "the new replica is the least loaded one available"
    );
}

#[test]
fn upload_keys_name_replicas_by_url() {
    let p = pool(&[46071, 46072], PolicySetting::RoundRobin, None);
    let key = crate::affinity::upstream_key("http://127.0.0.1:46072");
    assert_eq!(p.by_upload_key(&key), Some(1));
    assert_eq!(p.by_upload_key("000000000000"), None);
    assert_eq!(
        p.key(),
        format!("{},{key}", crate::affinity::upstream_key("http://127.0.0.1:46071"))
    );
}

#[test]
fn with_checks_on_a_replica_is_up_only_after_one_passed() {
    let url: UpstreamUrl = "http://127.0.0.1:46081".parse().unwrap();
    let settings = PoolSettings {
        urls: vec![url.clone()],
        policy: PolicySetting::RoundRobin,
        shared_secret: false,
        health: Some(HealthSettings {
            interval: Duration::from_secs(3600),
            ..HealthSettings::default()
        }),
        passive: None,
    };
    let spec = ReplicaSpec {
        peer: HttpPeer::new(url.address, false, String::new()),
        identity: format!("{} (pool test)", url.canonical()),
        url,
    };
    let p = Pool::new("test", vec![spec], &settings, Duration::from_secs(60));
    assert!(p.is_available(0), "never checked: requests may go");
    assert!(!p.any_up(), "never checked: not ready");
    p.replicas[0].state.check_passed();
    assert!(p.any_up());
}
