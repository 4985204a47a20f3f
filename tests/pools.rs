//! Upstream pools: several registry:2 replicas on one storage directory
//! behind one virtual registry. Losing a replica costs no pull once it is
//! detected, a GET that meets a dead replica is retried elsewhere (an
//! upload never is), and the policies spread requests as documented,
//! counted in each replica's own access log.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "pool-shared-secret";

/// (start, end, succeeded) of each client operation of a loop.
type Runs = Arc<Mutex<Vec<(Instant, Instant, bool)>>>;

/// Runs `op(i)` for i = 0, 1, ... until `stop`, `pause` apart, recording each.
fn client_loop(
    stop: &Arc<AtomicBool>,
    pause: Duration,
    op: impl Fn(usize) -> bool + Send + 'static,
) -> (Runs, std::thread::JoinHandle<()>) {
    let runs: Runs = Arc::default();
    let (stop, record) = (stop.clone(), runs.clone());
    let thread = std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let start = Instant::now();
            let ok = op(i);
            record.lock().unwrap().push((start, Instant::now(), ok));
            i += 1;
            std::thread::sleep(pause);
        }
    });
    (runs, thread)
}

#[test]
fn a_pool_survives_losing_a_replica() {
    require_tool(SKOPEO_BIN, "skopeo");
    let storage = tempfile::tempdir().unwrap();
    let mut regs = replicas(storage.path(), 3, &[SECRET]);
    let urls: Vec<String> = regs.iter().map(|r| r.url()).collect();
    let gateway = start_pool_gateway(
        &urls,
        "    policy: round_robin\n    shared_secret: true\n\
         \x20   health: { interval: 1s, timeout: 1s, rise: 2, fall: 2 }\n\
         \x20   passive: { failures: 1, ejection: 5s }\n",
    );
    for url in &urls {
        wait_replica_up(&gateway, url, true, Duration::from_secs(10));
    }
    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(0x9001)
        .layer(256 * 1024)
        .layer(1024 * 1024 + 7)
        .layer(4 * 1024 * 1024 + 13)
        .write(&work.path().join("src"), "v1");
    let reference = format!("{}/pool/app:v1", gateway.addr());
    skopeo_push(&image, &reference);

    let stop = Arc::new(AtomicBool::new(false));
    let pull_dir = work.path().to_owned();
    let want = image.manifest.digest.clone();
    let (pulls, puller) = client_loop(&stop, Duration::ZERO, move |i| {
        let dir = pull_dir.join(format!("pull-{i}"));
        let out = skopeo_copy_down(&reference, &dir, "v1", &["--src-tls-verify=false"]);
        out.status.success() && OciImage::read(&dir, "v1").manifest.digest == want
    });
    let (push_dir, addr) = (work.path().to_owned(), gateway.addr());
    let (pushes, pusher) = client_loop(&stop, Duration::from_millis(500), move |i| {
        let image = OciImageBuilder::new(0x9100 + i as u64)
            .layer(512 * 1024 + i as u64)
            .layer(64 * 1024)
            .write(&push_dir.join(format!("push-{i}")), "v1");
        let dest = format!("{addr}/pool/push-{i}:v1");
        skopeo_copy_up(&image, &dest, &["--dest-tls-verify=false"])
            .status
            .success()
            && skopeo_inspect_raw(&dest).len() as u64 == image.manifest.size
    });
    let not_ready = Arc::new(AtomicUsize::new(0));
    let (nr, metrics_gateway) = (not_ready.clone(), gateway.metrics_addr());
    let (_, ready_poller) = client_loop(&stop, Duration::from_millis(200), move |_| {
        let ok = Request::get("/readyz").send(metrics_gateway).status == 200;
        nr.fetch_add(usize::from(!ok), Ordering::SeqCst);
        ok
    });

    std::thread::sleep(Duration::from_secs(6));
    let killed = Instant::now();
    regs[1].kill();
    let detected = wait_replica_up(&gateway, &urls[1], false, Duration::from_secs(10));
    let down = killed + detected;
    std::thread::sleep(Duration::from_secs(8));
    regs[1].restart();
    let listening = Instant::now();
    let served_before = regs[1].served("GET /v2/pool/app/");
    wait_replica_up(&gateway, &urls[1], true, Duration::from_secs(10));
    let up_after = listening.elapsed();
    let took_traffic = wait_until(Duration::from_secs(20), || {
        regs[1].served("GET /v2/pool/app/") > served_before
    });
    let traffic_after = listening.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for t in [puller, pusher, ready_poller] {
        t.join().unwrap();
    }

    let pulls = pulls.lock().unwrap().clone();
    let pushes = pushes.lock().unwrap().clone();
    let failed: Vec<_> = pulls.iter().filter(|(_, _, ok)| !ok).collect();
    // Only a transfer cut by the kill itself may fail.
    for (start, end, _) in &failed {
        assert!(
            *start <= killed && *end >= killed,
            "a pull that was not in flight at the kill failed ({:?} after the kill); log:\n{}",
            start.saturating_duration_since(killed),
            tail(&gateway.log(), 4000)
        );
    }
    let late_pushes: Vec<_> = pushes.iter().filter(|(start, _, _)| *start >= down).collect();
    assert!(
        late_pushes.iter().all(|(_, _, ok)| *ok),
        "a push started after the replica was marked down failed; log:\n{}",
        tail(&gateway.log(), 4000)
    );
    assert!(late_pushes.len() >= 5, "too few pushes to judge: {}", late_pushes.len());
    assert!(pulls.len() >= 10, "too few pulls to judge: {}", pulls.len());
    // fall (2) checks 1 s apart, each up to 1 s, plus scrape polling.
    assert!(
        detected <= Duration::from_secs(4),
        "marked down {detected:?} after the kill"
    );
    // rise (2) checks 1 s apart.
    assert!(
        up_after <= Duration::from_secs(4),
        "marked up {up_after:?} after it listened"
    );
    assert!(took_traffic, "the restarted replica never served a pull again");
    assert_eq!(
        not_ready.load(Ordering::SeqCst),
        0,
        "/readyz said 503 while two replicas were up"
    );
    assert!(replica_metric(&gateway, "failures_total", &urls[1], &[("kind", "connect")]) >= 1.0);
    eprintln!(
        "failover: marked down {:.1} s after the kill; failed pulls {} of {} (all in flight at the kill); \
         restarted replica up {:.1} s and serving pulls {:.1} s after it listened; pushes {} (all after detection succeeded)",
        detected.as_secs_f64(),
        failed.len(),
        pulls.len(),
        up_after.as_secs_f64(),
        traffic_after.as_secs_f64(),
        pushes.len()
    );
}

/// Accepts connections and never answers; counts them.
struct Stalling {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Stalling {
    fn start() -> Stalling {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        Stalling { addr, accepted }
    }
}

#[test]
fn selection_policies_spread_load_as_documented() {
    let storage = tempfile::tempdir().unwrap();
    let mut regs = replicas(storage.path(), 3, &[SECRET]);
    let urls: Vec<String> = regs.iter().map(|r| r.url()).collect();
    let quiet = "    health: off\n";

    // Round robin: in turn, exactly.
    let rr = start_pool_gateway(&urls, &format!("    policy: round_robin\n{quiet}"));
    let tag = nonce("rr");
    for _ in 0..300 {
        let rsp = Request::head(&format!("/v2/pol/rr/manifests/v1?probe={tag}")).send(rr.addr());
        assert_eq!(rsp.status, 404, "{}", rsp.describe());
    }
    let counts: Vec<usize> = regs.iter().map(|r| r.served(&tag)).collect();
    assert_eq!(counts, vec![100, 100, 100], "round robin");

    // Least requests: a replica holding a request gets no more while the
    // others are idle.
    let stalling = Stalling::start();
    let mut lr_urls = vec![format!("http://{}", stalling.addr)];
    lr_urls.extend(urls[..2].iter().cloned());
    let listen = free_addr();
    let yaml = pool_yaml(&lr_urls, &format!("    policy: least_requests\n{quiet}"), listen)
        + "timeouts:\n  upstream_header: 60s\n";
    let lr = Gateway::start_yaml(&yaml, listen);
    let addr = lr.addr();
    let mut stuck = Vec::new();
    while stalling.accepted.load(Ordering::SeqCst) == 0 {
        stuck.push(std::thread::spawn(move || Request::get("/v2/").try_send(addr)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let tag = nonce("lr");
    for _ in 0..40 {
        let rsp = Request::get(&format!("/v2/pol/lr/tags/list?probe={tag}")).send(addr);
        assert_eq!(rsp.status, 404, "{}", rsp.describe());
    }
    assert_eq!(stalling.accepted.load(Ordering::SeqCst), 1, "the busy replica got more");
    let (a, b) = (regs[0].served(&tag), regs[1].served(&tag));
    assert_eq!(a + b, 40);
    assert!(a.abs_diff(b) <= 1, "idle replicas take turns: {a} and {b}");
    drop(lr);

    // Consistent hash: a repository stays on one replica; /v2/ rotates.
    let ch = start_pool_gateway(&urls, &format!("    policy: consistent_hash\n{quiet}"));
    let tag = nonce("ch");
    let home = |repo: &str, regs: &[Registry]| -> Vec<usize> {
        let needle = format!("/v2/pol/{repo}/manifests/v1?probe={tag}");
        regs.iter().map(|r| r.served(&needle)).collect()
    };
    let mut homes = Vec::new();
    for i in 0..24 {
        for _ in 0..5 {
            let rsp = Request::get(&format!("/v2/pol/ch-{i}/manifests/v1?probe={tag}")).send(ch.addr());
            assert_eq!(rsp.status, 404, "{}", rsp.describe());
        }
        let counts = home(&format!("ch-{i}"), &regs);
        let owner = counts.iter().position(|&n| n == 5);
        assert!(owner.is_some(), "ch-{i} was spread: {counts:?}");
        homes.push(owner.unwrap());
    }
    homes.sort();
    homes.dedup();
    assert!(homes.len() >= 2, "24 repositories all hashed to one replica");
    let pings = nonce("ping");
    for _ in 0..30 {
        assert_eq!(Request::get(&format!("/v2/?p={pings}")).send(ch.addr()).status, 200);
    }
    assert!(regs.iter().all(|r| r.served(&pings) > 0), "pings do not rotate");

    // Its home gone, a repository moves to one other replica (the first
    // request is retried there) and stays.
    let owner = (0..3).find(|&r| home("ch-0", &regs)[r] == 5).unwrap();
    regs[owner].kill();
    let tag2 = nonce("moved");
    for _ in 0..5 {
        let rsp = Request::get(&format!("/v2/pol/ch-0/manifests/v1?probe={tag2}")).send(ch.addr());
        assert_eq!(rsp.status, 404, "{}", rsp.describe());
    }
    let moved: Vec<usize> = regs.iter().map(|r| r.served(&tag2)).collect();
    assert!(moved.contains(&5), "ch-0 did not settle on one replica: {moved:?}");
}

#[test]
fn a_replica_that_refuses_connections_never_shows_a_get_error() {
    let storage = tempfile::tempdir().unwrap();
    let regs = replicas(storage.path(), 1, &[SECRET]);
    let live = regs[0].url();
    let digest = regs[0].push_blob("rt/x", b"retried blob");
    let dead = format!("http://127.0.0.1:{}", free_port());
    // Nothing takes the dead replica out: every other request meets it.
    let gateway = start_pool_gateway(
        &[dead.clone(), live.clone()],
        "    policy: round_robin\n    health: off\n    passive: off\n",
    );
    for i in 0..100 {
        let rsp = Request::get("/v2/").send(gateway.addr());
        assert_eq!(rsp.status, 200, "GET #{i}: {}", rsp.describe());
        let rsp = Request::head(&format!("/v2/rt/x/blobs/{digest}")).send(gateway.addr());
        assert_eq!(rsp.status, 200, "HEAD #{i}: {}", rsp.describe());
    }
    let on_dead = replica_metric(&gateway, "selected_total", &dead, &[("reason", "policy")]);
    let retried = replica_metric(&gateway, "selected_total", &live, &[("reason", "retry")]);
    let refused = replica_metric(&gateway, "failures_total", &dead, &[("kind", "connect")]);
    assert!(on_dead >= 90.0, "the dead replica was chosen {on_dead} times of 200");
    assert_eq!(retried, on_dead, "each attempt on the dead replica was retried once");
    assert_eq!(refused, on_dead);

    // Uploads are never replayed: a POST that meets the dead replica fails.
    let tag = nonce("post");
    let mut accepted = 0;
    for _ in 0..20 {
        let rsp = Request::post(&format!("/v2/rt/x/blobs/uploads/?probe={tag}")).send(gateway.addr());
        match rsp.status {
            202 => accepted += 1,
            502 => assert_json_error(&rsp, 502, "BAD_GATEWAY"),
            _ => panic!("{}", rsp.describe()),
        }
    }
    assert!((5..=15).contains(&accepted), "{accepted} of 20 POSTs went through");
    assert_eq!(regs[0].served(&tag), accepted, "a POST reached the registry twice");

    // A pool of one dead replica answers as a single upstream did.
    let alone = start_pool_gateway(std::slice::from_ref(&dead), "    health: off\n");
    let rsp = Request::get("/v2/").send(alone.addr());
    assert_json_error(&rsp, 502, "BAD_GATEWAY");
}

#[test]
fn readiness_needs_a_replica_up_in_every_registry_and_names_each_replica() {
    let storage = tempfile::tempdir().unwrap();
    let regs = replicas(storage.path(), 1, &[SECRET]);
    let live = regs[0].url();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let other_dead = format!("http://127.0.0.1:{}", free_port());
    let listen = free_addr();
    let yaml = format!(
        "listeners:\n  - name: plain\n    address: \"{listen}\"\n\
         upstreams:\n  pool:\n    urls: [\"{live}\", \"{dead}\"]\n    health: {{ interval: 1s, timeout: 1s, rise: 1, fall: 1 }}\n\
         \x20 broken:\n    url: \"{other_dead}\"\n    health: {{ interval: 1s, timeout: 1s, rise: 1, fall: 1 }}\n\
         registries:\n  - name: ok\n    default: true\n    upstream: pool\n\
         \x20 - name: broken\n    hosts: [broken.test]\n    upstream: broken\n"
    );
    let gateway = Gateway::start_yaml(&yaml, listen);
    wait_replica_up(&gateway, &live, true, Duration::from_secs(5));
    wait_replica_up(&gateway, &dead, false, Duration::from_secs(5));
    let rsp = Request::get("/readyz").send(gateway.metrics_addr());
    assert_eq!(rsp.status, 503, "a registry with no replica up: {}", rsp.describe());
    let body = rsp.json();
    assert_eq!(body["registries"]["ok"], "up", "{body}");
    assert_eq!(body["registries"]["broken"], "down", "{body}");
    assert_eq!(body["replicas"][live.as_str()], "up", "{body}");
    assert_eq!(body["replicas"][dead.as_str()], "down", "{body}");
    let text = scrape(gateway.metrics_addr());
    assert_eq!(
        sample(&text, "registry_gateway_upstream_up", &[("upstream", "pool")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "registry_gateway_upstream_up", &[("upstream", "broken")]),
        0.0,
        "{text}"
    );

    // Without the broken registry, one live replica makes the gateway ready.
    let listen = free_addr();
    let yaml = format!(
        "listeners:\n  - name: plain\n    address: \"{listen}\"\n\
         upstreams:\n  pool:\n    urls: [\"{live}\", \"{dead}\"]\n\
         registries:\n  - name: ok\n    default: true\n    upstream: pool\n"
    );
    let gateway = Gateway::start_yaml(&yaml, listen);
    assert!(
        wait_until(Duration::from_secs(10), || readyz(&gateway) == 200),
        "not ready with one replica up"
    );
}
