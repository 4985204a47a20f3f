//! Reloading gateway.yaml in place (SIGHUP, or `server.watch_config`):
//! every part of the file applies to the next request, an invalid file
//! keeps the old configuration serving, and what only a restart can change
//! is named. Real registry:2 upstreams throughout.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tls::*;
use common::*;

const LOCAL_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// The harness appends its own `metrics:` block at start; a rewritten file
/// keeps it, so only what the test changes differs.
fn write_config(gateway: &Gateway, yaml: &str) {
    let old = std::fs::read_to_string(gateway.config_path()).unwrap();
    let metrics = old.find("\nmetrics:").map_or("", |i| &old[i..]);
    std::fs::write(gateway.config_path(), format!("{yaml}{metrics}")).unwrap();
}

/// Writes `yaml`, sends SIGHUP and waits for the log to report generation
/// `expect_generation` (or a failure when `None`).
#[track_caller]
fn reload(gateway: &Gateway, yaml: &str, expect_generation: Option<u64>) {
    let before = gateway.log().matches("reload").count();
    write_config(gateway, yaml);
    gateway.signal("HUP");
    let needle = match expect_generation {
        Some(g) => format!("configuration reloaded (Signal), generation {g} ("),
        None => "reload (Signal) failed".to_owned(),
    };
    let done = wait_until(Duration::from_secs(10), || {
        let log = gateway.log();
        log.contains(&needle) && log.matches("reload").count() > before
    });
    assert!(done, "no `{needle}` in the log:\n{}", tail(&gateway.log(), 4000));
}

fn get_as(addr: SocketAddr, host: &str, path: &str, auth: Option<&str>) -> Response {
    let mut req = Request::get(path).header("Host", host);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send(addr)
}

/// Uploads a blob through the gateway as `host`: its digest.
#[track_caller]
fn upload_as(addr: SocketAddr, host: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256_bytes(data);
    let rsp = Request::post(&format!("/v2/{repo}/blobs/uploads/"))
        .header("Host", host)
        .send(addr);
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = path_of(rsp.expect_header("location"));
    let put = Request::put(&with_query(&location, &format!("digest={digest}")))
        .header("Host", host)
        .body(data.to_vec())
        .send(addr);
    assert_eq!(put.status, 201, "{}", put.describe());
    digest
}

fn base_yaml(listen: SocketAddr, main_url: &str, extra_registries: &str, extra: &str) -> String {
    format!(
        r#"server:
  threads: 2
listeners:
  - address: "{listen}"
upstreams:
  main: {{ url: "{main_url}" }}
  other: {{ url: "{main_url}" }}
registries:
{extra_registries}  - name: main
    default: true
    upstream: main
{extra}"#
    )
}

fn write_htpasswd(dir: &Path, name: &str, users: &[(&str, &str)]) {
    let lines: Vec<String> = users
        .iter()
        .map(|(u, p)| htpasswd_line("B", &["-C", "4"], u, p))
        .collect();
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
}

#[test]
fn reload_adds_a_registry_moves_an_upstream_turns_auth_on_and_forgets_removed_users() {
    let a = Registry::start();
    let b = Registry::start();
    let listen = free_addr();
    let gateway = Gateway::start_yaml(&base_yaml(listen, &a.url(), "", ""), listen);
    let m0 = scrape(gateway.metrics_addr());
    assert_eq!(sample(&m0, "registry_gateway_config_generation", &[]), 1.0);

    // Before: every host lands on A.
    let d0 = upload_as(listen, "b.test", "reload/one", b"before any reload");
    assert!(a.has_blob("reload/one", &d0) && !b.has_blob("reload/one", &d0));

    // 1. A new virtual registry for b.test, on upstream `other` moved to B.
    let second = "  - name: second\n    hosts: [b.test]\n    upstream: other\n";
    let yaml = base_yaml(listen, &a.url(), second, "").replace(
        &format!("other: {{ url: \"{}\" }}", a.url()),
        &format!("other: {{ url: \"{}\" }}", b.url()),
    );
    reload(&gateway, &yaml, Some(2));
    let d1 = upload_as(listen, "b.test", "reload/two", b"after the first reload");
    assert!(b.has_blob("reload/two", &d1), "b.test did not reach B after the reload");
    assert!(!a.has_blob("reload/two", &d1));
    let d1a = upload_as(listen, "localhost", "reload/two", b"default registry, still A");
    assert!(a.has_blob("reload/two", &d1a) && !b.has_blob("reload/two", &d1a));

    // 2. The default registry's upstream URL changes to B.
    let yaml = yaml.replace(
        &format!("main: {{ url: \"{}\" }}", a.url()),
        &format!("main: {{ url: \"{}\" }}", b.url()),
    );
    reload(&gateway, &yaml, Some(3));
    let d2 = upload_as(listen, "localhost", "reload/three", b"default registry now on B");
    assert!(b.has_blob("reload/three", &d2) && !a.has_blob("reload/three", &d2));

    // 3. Auth on, two users.
    let dir = gateway.temp_dir();
    write_htpasswd(dir, "users.htpasswd", &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let with_auth = format!("{yaml}auth:\n  htpasswd: users.htpasswd\n");
    reload(&gateway, &with_auth, Some(4));
    let rsp = get_as(listen, "localhost", "/v2/", None);
    assert_eq!(rsp.status, 401, "{}", rsp.describe());
    assert!(
        rsp.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic realm="))
    );
    let bob = basic_auth("bob", "bob-pw");
    for _ in 0..3 {
        // Cached after the first.
        assert_eq!(get_as(listen, "localhost", "/v2/", Some(&bob)).status, 200);
    }
    let alice = basic_auth("alice", "alice-pw");
    assert_eq!(get_as(listen, "localhost", "/v2/", Some(&alice)).status, 200);

    // 4. Another htpasswd file without bob: his cached login stops at once.
    write_htpasswd(dir, "users2.htpasswd", &[("alice", "alice-pw")]);
    let without_bob = format!("{yaml}auth:\n  htpasswd: users2.htpasswd\n");
    reload(&gateway, &without_bob, Some(5));
    let rsp = get_as(listen, "localhost", "/v2/", Some(&bob));
    assert_eq!(
        rsp.status,
        401,
        "bob's cached login survived the reload: {}",
        rsp.describe()
    );
    assert_eq!(get_as(listen, "localhost", "/v2/", Some(&alice)).status, 200);

    let m = scrape(gateway.metrics_addr());
    let reloads = |result| sample(&m, "registry_gateway_config_reloads_total", &[("result", result)]);
    assert_eq!((reloads("success"), reloads("failure")), (4.0, 0.0));
    assert_eq!(sample(&m, "registry_gateway_config_generation", &[]), 5.0);
    let ready = Request::get("/readyz").send(gateway.metrics_addr());
    assert!(ready.body_text().contains("\"generation\":5"), "{}", ready.describe());
}

#[test]
fn an_invalid_file_keeps_the_old_configuration_and_names_key_and_line() {
    let a = Registry::start();
    let listen = free_addr();
    let good = base_yaml(listen, &a.url(), "", "");
    let mut gateway = Gateway::start_yaml(&good, listen);
    let cases = [
        // (file, what the log must name)
        (format!("{good}timeouts: {{ connect: [\n"), vec!["line"]),
        (
            good.replace("  threads: 2\n", "  threads: 2\n  thread_count: 4\n"),
            vec!["server", "thread_count", "line 3"],
        ),
        (
            good.replace("upstream: main\n", "upstream: missing\n"),
            vec!["registries[0].upstream", "missing"],
        ),
        (
            good.replace(
                &format!("  - address: \"{listen}\"\n"),
                &format!(
                    "  - address: \"{listen}\"\n    tls:\n      certificates:\n        - {{ cert: nope.crt, key: nope.key }}\n"
                ),
            ),
            vec!["listeners[0].tls.certificates[0]", "nope.crt"],
        ),
    ];
    for (i, (yaml, words)) in cases.iter().enumerate() {
        let failed_before = gateway.log().matches("reload (Signal) failed").count();
        write_config(&gateway, yaml);
        gateway.signal("HUP");
        assert!(
            wait_until(Duration::from_secs(10), || gateway
                .log()
                .matches("reload (Signal) failed")
                .count()
                > failed_before),
            "case {i}: no failure logged:\n{}",
            tail(&gateway.log(), 3000)
        );
        let log = gateway.log();
        let last = &log[log.rfind("SIGHUP received").unwrap()..];
        for w in words {
            assert!(last.contains(w), "case {i}: the log does not name `{w}`:\n{last}");
        }
        assert!(gateway.is_running(), "case {i}: the gateway died");
        let rsp = get_as(listen, "localhost", "/v2/", None);
        assert_eq!(
            rsp.status,
            200,
            "case {i}: the old configuration stopped serving: {}",
            rsp.describe()
        );
    }
    let m = scrape(gateway.metrics_addr());
    let reloads = |result| sample(&m, "registry_gateway_config_reloads_total", &[("result", result)]);
    assert_eq!((reloads("success"), reloads("failure")), (0.0, 4.0));
    assert_eq!(sample(&m, "registry_gateway_config_generation", &[]), 1.0);

    // Fixed again: applies as generation 2.
    reload(&gateway, &good, Some(2));
    assert_eq!(get_as(listen, "localhost", "/v2/", None).status, 200);
}

#[test]
fn what_needs_a_restart_is_named_and_everything_else_applies() {
    let a = Registry::start();
    let b = Registry::start();
    let listen = free_addr();
    let gateway = Gateway::start_yaml(&base_yaml(listen, &a.url(), "", ""), listen);
    let moved = free_addr();
    let yaml = base_yaml(moved, &b.url(), "", "").replace("  threads: 2\n", "  threads: 1\n");
    reload(&gateway, &yaml, Some(2));
    let log = gateway.log();
    for key in ["listeners (addresses", "server.threads"] {
        assert!(
            log.lines()
                .any(|l| l.contains(key) && l.contains("applied only by a restart or upgrade")),
            "`{key}` not named as needing a restart:\n{}",
            tail(&log, 3000)
        );
    }
    // The old listener still serves, with the new upstream.
    let d = upload_as(listen, "localhost", "reload/restart", b"new upstream, old listener");
    assert!(b.has_blob("reload/restart", &d) && !a.has_blob("reload/restart", &d));
    assert!(
        std::net::TcpStream::connect_timeout(&moved, Duration::from_millis(300)).is_err(),
        "a new listener address was opened without a restart"
    );
}

#[test]
fn watch_config_reloads_when_the_file_changes_without_a_signal() {
    let a = Registry::start();
    let b = Registry::start();
    let listen = free_addr();
    let watched =
        |url: &str| base_yaml(listen, url, "", "").replace("  threads: 2\n", "  threads: 2\n  watch_config: true\n");
    let gateway = Gateway::start_yaml(&watched(&a.url()), listen);
    write_config(&gateway, &watched(&b.url()));
    let applied = wait_until(Duration::from_secs(10), || {
        gateway
            .log()
            .contains("configuration reloaded (FileChanged), generation 2 (")
    });
    assert!(
        applied,
        "the changed file was not reloaded:\n{}",
        tail(&gateway.log(), 3000)
    );
    let d = upload_as(listen, "localhost", "reload/watch", b"after the file changed");
    assert!(b.has_blob("reload/watch", &d));
}

#[test]
fn a_reload_naming_another_certificate_serves_it_to_new_handshakes() {
    let registry = Registry::start();
    let cert_a = DevCerts::generate(LOCAL_NAMES);
    let cert_b = DevCerts::generate(LOCAL_NAMES);
    let addr = free_addr();
    let config = |certs: &DevCerts| {
        TlsGatewayConfig::new(&registry.url())
            .tls_listener(addr, &[CertEntry::of(certs)], None)
            .to_yaml()
    };
    let gateway = Gateway::start_yaml(&config(&cert_a), addr);
    assert_eq!(served_certificate(addr, Some("localhost")), cert_a.leaf());
    let mut conn = TlsConn::open(addr, "localhost", &cert_a.ca());
    reload(&gateway, &config(&cert_b), Some(2));
    assert_eq!(served_certificate(addr, Some("localhost")), cert_b.leaf());
    let rsp = https_send(addr, "localhost", &cert_b.ca(), &Request::get("/v2/"));
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    // A connection made before the reload keeps working.
    conn.send_request(&Request::get("/v2/").keep_alive());
    let head = conn.read_head().expect("response on the old connection");
    assert_eq!(head.status, 200, "{}", head.describe());
}

/// The config of `straddle` tests: the default registry on `url`.
fn single(listen: SocketAddr, url: &str) -> String {
    base_yaml(listen, url, "", "")
}

#[test]
fn a_chunked_upload_straddling_a_reload_completes_on_the_upstream_that_started_it() {
    let a = Registry::start();
    let b = Registry::start();
    let listen = free_addr();
    let gateway = Gateway::start_yaml(&single(listen, &a.url()), listen);
    let data = random_bytes(0x57add1e, 24 << 20);
    let digest = sha256_bytes(&data);
    let (first, second) = data.split_at(10 << 20);

    let rsp = Request::post("/v2/reload/straddle/blobs/uploads/").send(listen);
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = path_of(rsp.expect_header("location"));
    assert!(
        location.contains("_gw="),
        "the upload URL carries no upstream hint: {location}"
    );
    let patch = |location: &str, offset: usize, chunk: &[u8]| {
        let rsp = Request::patch(location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", &format!("{offset}-{}", offset + chunk.len() - 1))
            .body(chunk.to_vec())
            .send(listen);
        assert_eq!(rsp.status, 202, "{}", rsp.describe());
        path_of(rsp.expect_header("location"))
    };
    let location = patch(&location, 0, first);

    // The route moves to B between two chunks.
    reload(&gateway, &single(listen, &b.url()), Some(2));
    let location = patch(&location, first.len(), second);
    let status = Request::get(&location).send(listen);
    assert_eq!(
        status.status,
        204,
        "upload status after the reload: {}",
        status.describe()
    );
    let put = Request::put(&with_query(&location, &format!("digest={digest}"))).send(listen);
    assert_eq!(put.status, 201, "{}", put.describe());
    assert!(
        a.has_blob("reload/straddle", &digest),
        "the upload did not complete on A"
    );
    assert!(!b.has_blob("reload/straddle", &digest));
    let (digest_on_disk, size) = sha256_file(&a.blob_path(&digest));
    assert_eq!((digest_on_disk, size), (digest.clone(), data.len() as u64));
    // The hint never reached the registry.
    assert!(
        !a.access_log().iter().any(|l| l.contains("_gw=")),
        "the upload hint was forwarded to the registry"
    );

    // A push to another repository started after the reload lands in B at
    // once; this repository follows its straddling push for a while.
    let d = upload_as(listen, "localhost", "reload/fresh", b"started after the reload");
    assert!(b.has_blob("reload/fresh", &d) && !a.has_blob("reload/fresh", &d));
    let d = upload_as(listen, "localhost", "reload/straddle", b"same repository, right after");
    assert!(a.has_blob("reload/straddle", &d) && !b.has_blob("reload/straddle", &d));
}

/// Bytes registry:2 has received so far for uploads still in progress.
fn bytes_uploading(registry: &Registry) -> u64 {
    fn walk(dir: &Path, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, total);
            } else if path.file_name().is_some_and(|n| n == "data") && path.to_string_lossy().contains("/_uploads/") {
                *total += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    let mut total = 0;
    walk(&registry.storage_dir(), &mut total);
    total
}

#[test]
fn skopeo_push_running_through_a_reload_completes_on_the_old_upstream_with_identical_digests() {
    require_tool(SKOPEO_BIN, "skopeo");
    let a = Registry::start();
    let b = Registry::start();
    let listen = free_addr();
    let gateway = Gateway::start_yaml(&single(listen, &a.url()), listen);
    let work = tempfile::Builder::new().prefix("reload-push-").tempdir().unwrap();
    let image = OciImageBuilder::new(0x4e1)
        .layer((1 << 30) + 4097)
        .layer(3 << 20)
        .write(&work.path().join("source"), "v1");
    let reference = format!("{listen}/reload/skopeo:v1");
    let push = {
        let (image, reference) = (image.clone(), reference.clone());
        std::thread::spawn(move || skopeo_copy_up(&image, &reference, &["--dest-tls-verify=false"]))
    };
    // Reload while the big layer is streaming into A.
    let midway = wait_until(Duration::from_secs(120), || bytes_uploading(&a) >= 64 << 20);
    assert!(
        midway,
        "the big layer never started streaming; gateway log:\n{}",
        tail(&gateway.log(), 3000)
    );
    reload(&gateway, &single(listen, &b.url()), Some(2));
    let out = push.join().unwrap();
    assert!(
        out.status.success(),
        "skopeo push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The whole push, manifest included, completed on A, byte for byte.
    for blob in image.all_blobs() {
        let (digest, size) = sha256_file(&a.blob_path(&blob.digest));
        assert_eq!(
            (digest, size),
            (blob.digest.clone(), blob.size),
            "{} on A",
            blob.media_type
        );
        assert!(!b.has_blob("reload/skopeo", &blob.digest), "{} reached B", blob.digest);
    }
    let manifest = Request::head("/v2/reload/skopeo/manifests/v1")
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send(a.addr());
    assert_eq!(
        manifest.status,
        200,
        "the manifest is not on A: {}",
        manifest.describe()
    );

    // A push started after the reload, to another repository, lands in B.
    let again = format!("{listen}/reload/after:v1");
    let out = skopeo_copy_up(&image, &again, &["--dest-tls-verify=false"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layers_and_config = image.layers.iter().chain([&image.config]);
    for blob in layers_and_config {
        assert!(b.has_blob("reload/after", &blob.digest), "{} missing on B", blob.digest);
        assert!(!a.has_blob("reload/after", &blob.digest), "{} reached A", blob.digest);
    }
}

#[test]
fn requests_running_through_many_reloads_all_succeed() {
    let a = Registry::start();
    let b = Registry::start();
    let listen = free_addr();
    let gateway = Gateway::start_yaml(&single(listen, &a.url()), listen);
    let data = random_bytes(0x10ad, 256 << 10);
    let digest_a = a.push_blob("reload/steady", &data);
    let digest_b = b.push_blob("reload/steady", &data);
    assert_eq!(digest_a, digest_b);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, digest) = (stop.clone(), digest_a.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(listen);
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = format!("/v2/reload/steady/blobs/{digest}");
                    // Half the workers keep their connection, half open one per request.
                    let rsp = if i % 2 == 0 {
                        conn.send(&Request::get(&path).keep_alive().to_bytes(listen));
                        conn.read_response("GET")
                    } else {
                        Request::get(&path).send(listen)
                    };
                    let ok = rsp.status == 200 && sha256_bytes(&rsp.body) == digest;
                    answers.push((ok, rsp.status));
                }
                answers
            })
        })
        .collect();
    for generation in 2..=21 {
        let url = if generation % 2 == 0 { b.url() } else { a.url() };
        reload(&gateway, &single(listen, &url), Some(generation));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let answers = w.join().unwrap();
        total += answers.len();
        let bad: Vec<_> = answers.iter().filter(|(ok, _)| !ok).collect();
        assert!(
            bad.is_empty(),
            "{} of {} requests failed across reloads: {bad:?}",
            bad.len(),
            answers.len()
        );
    }
    assert!(total >= 20, "only {total} requests ran during 20 reloads");
}
