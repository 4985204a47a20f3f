//! The Grafana dashboard proven against real data: a real Prometheus
//! scrapes a gateway under about 25 s of load (skopeo pushes and pulls over
//! TLS through a pool of two registry:2 replicas and a refusing URL,
//! missing, wrong and right credentials, HEAD loops, dead, failing and
//! stalled upstreams, file and SIGHUP reloads), then every panel's query is
//! evaluated through Prometheus' HTTP API. A query that errors fails the
//! test, and so does one that answers nothing although every gateway metric
//! it names has series. Panels whose metrics have no series at all are
//! listed when those metrics are announced in `NOT_YET_EXPORTED`, and fail
//! the test otherwise.
//!
//! `cargo test --release --test dashboard -- --nocapture` shows every
//! panel's answer.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::tls::{DevCerts, assert_skopeo_ok, https_send, log_since, replace_file, yaml_str};
use common::*;

const USER: &str = "dashboard";
const PASSWORD: &str = "dashboard-secret-5e1b";
const LOAD: Duration = Duration::from_secs(25);

/// Prefixes of metrics the dashboard reads ahead of the gateway (e.g.
/// `registry_gateway_replica_` before pools were built): their panels are
/// listed when nothing exports them. A panel on
/// any other metric without series fails the test: a misspelled name, or a
/// load that no longer reaches it.
const NOT_YET_EXPORTED: &[&str] = &[];

/// An upstream answering every request with 503.
fn start_unavailable_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(&conn);
                let mut line = String::new();
                // The request head; health probes send nothing.
                while matches!(reader.read_line(&mut line), Ok(n) if n > 2) {
                    line.clear();
                }
                let _ = (&conn).write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                      Content-Length: 12\r\nConnection: close\r\n\r\nunavailable\n",
                );
            });
        }
    });
    addr
}

/// The gateway under test: TLS and plain listeners, htpasswd auth, a pool
/// of two registry:2 replicas (own secrets, so uploads follow hints) and a
/// refusing URL as the default registry, and three virtual registries by
/// host whose one-URL upstreams refuse connections, answer 503, or never
/// answer.
fn start_gateway(
    replicas: &[Registry],
    certs: &DevCerts,
    tls: SocketAddr,
    cache_dir: &Path,
) -> (Gateway, StallingUpstream) {
    let plain = free_addr();
    let (dead, refusing) = (free_addr(), free_addr());
    let unavailable = start_unavailable_upstream();
    let stalling = StallingUpstream::start();
    let yaml = format!(
        "server:\n  threads: 2\n  trusted_proxies: []\n  \
         auth_throttle: {{ max_failures: 3, window: 2s }}\n\
         listeners:\n  - name: plain\n    address: \"{plain}\"\n  - name: tls\n    address: \"{tls}\"\n    \
         tls:\n      certificates:\n        - cert: {}\n          key: {}\n\
         upstreams:\n  registry: {{ urls: [\"{}\", \"{}\", \"http://{refusing}\"] }}\n  dead: {{ url: \"http://{dead}\" }}\n  \
         unavailable: {{ url: \"http://{unavailable}\" }}\n  stalling: {{ url: \"{}\" }}\n\
         registries:\n  - name: main\n    default: true\n    upstream: registry\n\
         \x20 - name: dead\n    hosts: [dead.test]\n    upstream: dead\n\
         \x20 - name: unavailable\n    hosts: [unavailable.test]\n    upstream: unavailable\n\
         \x20 - name: stalling\n    hosts: [stalling.test]\n    upstream: stalling\n\
         \x20 - name: mirror\n    hosts: [mirror.test]\n    upstream: registry\n    \
         cache: {{ dir: {}, max_size: 64MiB, fsync: false }}\n\
         auth:\n  htpasswd: users\n\
         timeouts:\n  connect: 1s\n  upstream_header: 1s\n",
        yaml_str(certs.cert().to_str().unwrap()),
        yaml_str(certs.key().to_str().unwrap()),
        replicas[0].url(),
        replicas[1].url(),
        stalling.url(),
        yaml_str(cache_dir.to_str().unwrap()),
    );
    let users = htpasswd_line("B", &["-C", "4"], USER, PASSWORD) + "\n";
    let gateway = Gateway::start_yaml_with_files(&yaml, plain, &[("users", users.as_bytes())]);
    let tls_up = wait_until(Duration::from_secs(10), || TcpStream::connect(tls).is_ok());
    assert!(tls_up, "TLS listener {tls} not accepting:\n{}", gateway.log());
    (gateway, stalling)
}

/// Pushes and pulls a new small image with skopeo over the TLS listener
/// until `until`; returns how many round trips it made. (Over plain HTTP,
/// skopeo without verification first tries HTTPS and waits 10 s for a
/// handshake the plain listener never answers.)
fn skopeo_loop(tls: SocketAddr, cert_dir: &Path, work: &Path, until: Instant) -> usize {
    let creds = format!("{USER}:{PASSWORD}");
    let cert_dir = cert_dir.display();
    let up = [
        "--dest-tls-verify=true".to_string(),
        format!("--dest-cert-dir={cert_dir}"),
        format!("--dest-creds={creds}"),
    ];
    let down = [
        "--src-tls-verify=true".to_string(),
        format!("--src-cert-dir={cert_dir}"),
        format!("--src-creds={creds}"),
    ];
    let mut rounds = 0;
    while Instant::now() < until {
        let tag = format!("v{rounds}");
        let image = OciImageBuilder::new(0xda5 + rounds as u64)
            .layer(256 * 1024 + rounds as u64)
            .layer(48 * 1024)
            .write(&work.join(format!("src-{tag}")), &tag);
        let reference = format!("localhost:{}/dash/app:{tag}", tls.port());
        let options: Vec<&str> = up.iter().map(String::as_str).collect();
        assert_skopeo_ok("push", &skopeo_copy_up(&image, &reference, &options));
        let options: Vec<&str> = down.iter().map(String::as_str).collect();
        let dir = work.join(format!("dst-{tag}"));
        assert_skopeo_ok("pull", &skopeo_copy_down(&reference, &dir, &tag, &options));
        rounds += 1;
        // Leave some CPU to the gateway and Prometheus.
        std::thread::sleep(Duration::from_millis(200));
    }
    rounds
}

/// GET /v2/ with a guessed password from another client address
/// (127.0.0.2): throttling is per client address, so the rest of the load
/// (from 127.0.0.1) is not throttled with it. Returns the status.
fn guess_from_elsewhere(addr: SocketAddr, password: &str) -> u16 {
    require_tool("/usr/bin/curl", "curl");
    let creds = format!("{USER}:{password}");
    let out = std::process::Command::new("/usr/bin/curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "127.0.0.2",
        ])
        .args(["-u", &creds, &format!("http://{addr}/v2/")])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// Everything but skopeo, on one thread: a HEAD loop and, every 20th
/// request, each failure mode and a TLS request. A third in, the htpasswd
/// file and the certificate are replaced (the file watcher re-reads them);
/// two thirds in, SIGHUP reloads the configuration.
/// `cached`: a blob path the `mirror.test` registry reads through its cache.
fn request_loop(gateway: &Gateway, tls: SocketAddr, certs: &DevCerts, until: Instant, cached: &str) -> usize {
    let auth = basic_auth(USER, PASSWORD);
    let addr = gateway.addr();
    let send = |host: &str, req: Request| req.header("Authorization", &auth).header("Host", host).send(addr);
    let started = Instant::now();
    let mut step = 0;
    let mut n = 0;
    while Instant::now() < until {
        let rsp = send(&addr.to_string(), Request::head("/v2/dash/app/manifests/v0"));
        assert!([200, 404].contains(&rsp.status), "{}", rsp.describe());
        n += 1;
        if n % 20 != 0 {
            std::thread::sleep(Duration::from_millis(30));
            continue;
        }
        for (host, status) in [("dead.test", 502), ("unavailable.test", 503), ("stalling.test", 504)] {
            let rsp = send(host, Request::get("/v2/"));
            assert_eq!(rsp.status, status, "{host}: {}", rsp.describe());
        }
        // The caching registry: a miss, then hits.
        let rsp = send("mirror.test", Request::get(cached));
        assert_eq!(rsp.status, 200, "mirror.test: {}", rsp.describe());
        // No credentials, then guessed passwords: past 3 in 2 s throttled.
        assert_eq!(Request::get("/v2/").send(addr).status, 401);
        for i in 0..4 {
            let status = guess_from_elsewhere(addr, &format!("guess-{n}-{i}"));
            assert!([401, 429].contains(&status), "a guessed password got {status}");
        }
        let rsp = https_send(
            tls,
            "localhost",
            &certs.ca(),
            &Request::get("/v2/").header("Authorization", &auth),
        );
        assert_eq!(rsp.status, 200, "{}", rsp.describe());
        // Plain HTTP on the TLS listener: a failed handshake.
        let _ = Request::get("/v2/").try_send(tls);

        // Waits for `needle` in what the gateway logs after `from`.
        let logged = |from: usize, needle: &str| {
            let found = wait_until(Duration::from_secs(10), || log_since(gateway, from).contains(needle));
            assert!(found, "no {needle:?} in the log:\n{}", tail(&gateway.log(), 4000));
        };
        if step == 0 && started.elapsed() > LOAD / 3 {
            let from = gateway.log().len();
            let users = gateway.temp_dir().join("users");
            let more = htpasswd_line("B", &["-C", "4"], "second", "second-pw");
            let text = std::fs::read_to_string(&users).unwrap() + &more + "\n";
            replace_file(&users, text.as_bytes());
            replace_file(&certs.cert(), &std::fs::read(certs.cert()).unwrap());
            logged(from, "reloaded, 2 user(s)");
            logged(from, "certificates reloaded");
            step += 1;
        } else if step == 1 && started.elapsed() > LOAD * 2 / 3 {
            let from = gateway.log().len();
            gateway.signal("HUP");
            logged(from, "configuration reloaded");
            step += 1;
        }
    }
    assert_eq!(step, 2, "the load ended before both reloads");
    n
}

#[test]
fn every_dashboard_query_answers_from_a_real_prometheus() {
    require_tool(SKOPEO_BIN, "skopeo");
    require_tool(PROMETHEUS_BIN, "prometheus");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/registry-gateway.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the dashboard is JSON");
    let targets = panel_targets(&dashboard);
    assert!(!targets.is_empty(), "no panel queries in {}", path.display());

    let storage = tempfile::tempdir().unwrap();
    let replicas = replicas(storage.path(), 2, &["dashboard-secret-a", "dashboard-secret-b"]);
    let certs = DevCerts::generate(&["localhost"]);
    let tls = free_addr();
    let cache = tempfile::tempdir().unwrap();
    let (mut gateway, _stalling) = start_gateway(&replicas, &certs, tls, cache.path());
    let blob = replicas[0].push_blob("dash/cache", &random_bytes(0xda5c, 300 * 1024));
    let cached = format!("/v2/dash/cache/blobs/{blob}");
    let prometheus = Prometheus::start(gateway.metrics_addr());
    let window_start = unix_now();

    // The load.
    let started = Instant::now();
    let until = started + LOAD;
    let work = tempfile::tempdir().unwrap();
    let (work_dir, cert_dir) = (work.path().to_path_buf(), certs.trust_dir());
    let skopeo = std::thread::spawn(move || skopeo_loop(tls, &cert_dir, &work_dir, until));
    let requests = request_loop(&gateway, tls, &certs, until, &cached);
    let rounds = skopeo.join().expect("skopeo loop");
    println!(
        "load: {rounds} skopeo push+pull rounds, {requests} HEAD requests, {:?}",
        started.elapsed()
    );
    assert!(gateway.is_running(), "the gateway died:\n{}", gateway.log());

    // Two more scrapes, so that the last requests are in the TSDB.
    std::thread::sleep(Duration::from_millis(2500));
    let at = unix_now();
    let scrapes = prometheus.value(r#"count_over_time(up{job="registry-gateway"}[5m])"#, at);
    assert!(scrapes >= 15.0, "only {scrapes} scrapes:\n{}", prometheus.log());
    assert_eq!(
        prometheus.value(r#"up{job="registry-gateway"}"#, at),
        1.0,
        "the target is down"
    );

    let mut failures = Vec::new();
    let mut unexercised = Vec::new();
    let has_series = |name: &str| prometheus.series_count(name, window_start, at) > 0;
    for t in &targets {
        let what = format!("{} [{}]", t.panel, t.ref_id);
        let expr = match substitute_variables(&t.expr) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{what}: {e}"));
                continue;
            }
        };
        let v = prometheus.query(&expr, at);
        if v["status"] != "success" {
            failures.push(format!("{what}: {expr}\n    {}: {}", v["errorType"], v["error"]));
            continue;
        }
        if let Some(w) = v.get("warnings") {
            println!("warning  {what}: {w}");
        }
        let result = &v["data"]["result"];
        let answers = match v["data"]["resultType"].as_str() {
            Some("vector" | "matrix") => result.as_array().map_or(0, Vec::len),
            _ => 1,
        };
        if answers > 0 {
            println!("ok       {what}: {}", describe_result(result));
            continue;
        }
        let missing: Vec<String> = metric_names(&expr).into_iter().filter(|n| !has_series(n)).collect();
        let pending = |n: &String| NOT_YET_EXPORTED.iter().any(|p| n.starts_with(p));
        if missing.is_empty() {
            failures.push(format!("{what}: empty although its metrics have series: {expr}"));
        } else if !missing.iter().all(pending) {
            failures.push(format!("{what}: no series for {} (misspelled?)", missing.join(", ")));
        } else {
            unexercised.push(format!("{what}: no series for {}", missing.join(", ")));
        }
    }

    // The dashboard's variables, e.g. label_values(METRIC, LABEL).
    let re = regex::Regex::new(r"^label_values\(\s*([^,]+?)\s*,\s*(\w+)\s*\)$").unwrap();
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or("?");
        let Some(query) = var["query"]["query"].as_str().or(var["query"].as_str()) else {
            continue;
        };
        let Some(c) = re.captures(query) else {
            failures.push(format!("variable ${name}: the test cannot evaluate {query:?}"));
            continue;
        };
        let values = prometheus.label_values(&c[2], &c[1]);
        println!("variable ${name}: {query} = {values:?}");
        if values.is_empty() {
            failures.push(format!("variable ${name}: {query} has no values"));
        }
    }

    // Exported but read by no panel: printed for whoever extends the
    // dashboard (histograms count as read through any of their series).
    let family = |n: &str| {
        ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(n)
            .to_string()
    };
    let read: HashSet<String> = targets
        .iter()
        .flat_map(|t| metric_names(&t.expr))
        .map(|n| family(&n))
        .collect();
    let exported = prometheus.label_values("__name__", r#"{__name__=~"registry_gateway_.+"}"#);
    let unread: Vec<&String> = exported.iter().filter(|n| !read.contains(&family(n))).collect();
    println!("exported, on no panel: {unread:?}");

    if !unexercised.is_empty() {
        println!("panels whose metrics have no series:\n  {}", unexercised.join("\n  "));
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n  {}\n\npanels whose metrics have no series:\n  {}",
        failures.len(),
        targets.len(),
        failures.join("\n  "),
        unexercised.join("\n  ")
    );
}

#[test]
fn grafana_variables_are_replaced_whole_and_unknown_ones_refused() {
    let cases = [
        (
            r#"rate(m{registry=~"$registry"}[$__rate_interval])"#,
            r#"rate(m{registry=~".*"}[15s])"#,
        ),
        ("x[${__range}] / $__range_s + [[__interval]]", "x[5m] / 300 + 1s"),
        (
            r#"m{registry=~"${registry:regex}", op=~"get$"}[1m:1m]"#,
            r#"m{registry=~".*", op=~"get$"}[1m:1m]"#,
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(substitute_variables(expr).as_deref(), Ok(want), "{expr}");
    }
    assert!(substitute_variables("rate(m[$window])").is_err());
}
