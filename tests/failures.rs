//! Failure modes: a dead or stalled upstream, clients that walk away
//! mid-transfer, `Expect: 100-continue`, and process signals.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn start() -> (Registry, Gateway) {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    (registry, gateway)
}

#[track_caller]
fn assert_serves(gateway: &Gateway) {
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_eq!(
        rsp.status,
        200,
        "the gateway no longer serves:\n{}\nlog:\n{}",
        rsp.describe(),
        tail(&gateway.log(), 3000)
    );
}

#[test]
fn upstream_down_answers_502_json_and_the_gateway_keeps_serving() {
    let port = free_port();
    let mut gateway = Gateway::start(&GatewayConfig::for_url(&format!("http://127.0.0.1:{port}")));

    for target in ["/v2/", "/v2/library/x/tags/list", "/v2/library/x/blobs/uploads/"] {
        let started = Instant::now();
        let method = if target.ends_with("uploads/") { "POST" } else { "GET" };
        let rsp = Request::new(method, target).send(gateway.addr());
        assert_json_error(&rsp, 502, "BAD_GATEWAY");
        assert_api_version_once(&rsp);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a refused connection took {:?}",
            started.elapsed()
        );
        assert!(gateway.is_running(), "the gateway died:\n{}", gateway.log());
    }

    // Bring the upstream up on that port: the same gateway now proxies.
    let _registry = Registry::start_on(port);
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_eq!(rsp.status, 200, "after the upstream came back:\n{}", rsp.describe());
}

#[test]
fn stalled_upstream_answers_504_json_after_the_read_timeout() {
    let upstream = StallingUpstream::start();
    let gateway = Gateway::start(
        &GatewayConfig::for_url(&upstream.url())
            .timeout("connect", "1s")
            .timeout("upstream_read", "1s"),
    );
    let started = Instant::now();
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_json_error(&rsp, 504, "GATEWAY_TIMEOUT");
    assert_api_version_once(&rsp);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "504 took {:?}",
        started.elapsed()
    );
    assert!(
        upstream.accepted() >= 1,
        "the request never reached the stalled upstream"
    );
}

#[test]
fn client_aborting_mid_upload_leaves_nothing_committed_and_the_gateway_serving() {
    let (registry, gateway) = start();
    let data = random_bytes(21, 4 << 20);
    let digest = sha256_bytes(&data);

    // PATCH: half the body, then the client goes away.
    let upload = path_of(
        Request::post("/v2/abort/upload/blobs/uploads/")
            .send(gateway.addr())
            .expect_header("location"),
    );
    let patch = Request::patch(&upload)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone());
    let mut bytes = patch.head_bytes(gateway.addr());
    bytes.extend_from_slice(&data[..data.len() / 2]);
    send_then_abort(gateway.addr(), &bytes, Duration::from_millis(300));

    // Monolithic PUT with the digest: half the body, then gone.
    let upload = path_of(
        Request::post("/v2/abort/upload/blobs/uploads/")
            .send(gateway.addr())
            .expect_header("location"),
    );
    let put = Request::put(&with_query(&upload, &format!("digest={digest}")))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone());
    let mut bytes = put.head_bytes(gateway.addr());
    bytes.extend_from_slice(&data[..data.len() / 2]);
    send_then_abort(gateway.addr(), &bytes, Duration::from_millis(300));

    std::thread::sleep(Duration::from_millis(500));
    assert_serves(&gateway);
    assert!(
        !registry.has_blob("abort/upload", &digest),
        "an aborted upload was committed upstream"
    );

    // A complete upload right after works.
    let (_, rsp) = upload_blob(gateway.addr(), "abort/upload", &random_bytes(22, 10_000));
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
}

#[test]
fn client_aborting_mid_download_leaves_the_gateway_serving() {
    let (registry, gateway) = start();
    let data = random_bytes(23, 32 << 20);
    let digest = registry.push_blob("abort/download", &data);
    let target = format!("/v2/abort/download/blobs/{digest}");

    for _ in 0..3 {
        let mut conn = Conn::open(gateway.addr());
        conn.send(&Request::get(&target).to_bytes(gateway.addr()));
        let got = conn.read_some(256 * 1024).expect("first bytes of the download");
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got[..got.len().min(300)])
        );
        conn.abort();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_serves(&gateway);

    let rsp = Request::get(&target).send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(
        sha256_bytes(&rsp.body),
        digest,
        "a full download after the aborts is corrupt"
    );
}

/// Sends a request head with `Expect: 100-continue` and no body, expects
/// `HTTP/1.1 100` within 2 s, then sends the body and reads the final response.
fn expect_continue(gateway: &Gateway, req: Request, body: &[u8]) -> Response {
    let method = req.method().to_string();
    let mut conn = Conn::open(gateway.addr());
    conn.set_read_timeout(Duration::from_secs(2));
    conn.send(&req.header("Expect", "100-continue").head_bytes(gateway.addr()));
    let started = Instant::now();
    let head = conn
        .read_head()
        .unwrap_or_else(|e| panic!("no interim response within 2 s of an Expect: 100-continue {method} ({e})"));
    assert_eq!(
        head.status, 100,
        "expected 100 Continue, got {} {:?}",
        head.status, head.headers
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    conn.set_read_timeout(Duration::from_secs(30));
    conn.send(body);
    conn.read_response(&method)
}

#[test]
fn expect_100_continue_is_relayed_promptly_on_patch_and_put() {
    let (_registry, gateway) = start();
    let data = random_bytes(24, 600_000);
    let digest = sha256_bytes(&data);
    let (first, second) = data.split_at(200_000);

    let upload = path_of(
        Request::post("/v2/expect/repo/blobs/uploads/")
            .send(gateway.addr())
            .expect_header("location"),
    );
    let rsp = expect_continue(
        &gateway,
        Request::patch(&upload)
            .header("Content-Type", "application/octet-stream")
            .body(first.to_vec()),
        first,
    );
    assert_eq!(rsp.status, 202, "{}", rsp.describe());

    let upload = path_of(rsp.expect_header("location"));
    let rsp = expect_continue(
        &gateway,
        Request::put(&with_query(&upload, &format!("digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(second.to_vec()),
        second,
    );
    assert_eq!(rsp.status, 201, "{}", rsp.describe());

    let rsp = Request::get(&format!("/v2/expect/repo/blobs/{digest}")).send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert!(rsp.body == data, "blob uploaded with Expect: 100-continue is corrupt");
}

/// What a brand-new client gets once the gateway is shutting down: `None`
/// when it was refused (connection refused, closed, reset or unanswered),
/// `Some(status)` when it was served anyway.
fn new_request_outcome(gateway: &Gateway) -> Option<u16> {
    let mut conn = Conn::try_open(gateway.addr()).ok()?;
    conn.set_read_timeout(Duration::from_secs(1));
    conn.try_send(&Request::get("/v2/").to_bytes(gateway.addr())).ok()?;
    conn.try_read_response("GET").ok().map(|r| r.status)
}

#[test]
fn sigterm_drains_an_in_flight_upload_then_exits_0() {
    let registry = Registry::start();
    let mut gateway = Gateway::start(&GatewayConfig::for_upstream(&registry).grace_period("20s"));
    let data = random_bytes(25, 8 << 20);
    let digest = sha256_bytes(&data);
    let upload = path_of(
        Request::post("/v2/drain/repo/blobs/uploads/")
            .send(gateway.addr())
            .expect_header("location"),
    );
    let put = Request::put(&with_query(&upload, &format!("digest={digest}")))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone());
    let mut conn = Conn::open(gateway.addr());
    conn.send(&put.head_bytes(gateway.addr()));
    let mib = 1 << 20;
    conn.send(&data[..mib]);
    std::thread::sleep(Duration::from_millis(300));

    gateway.signal("TERM");
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        gateway.is_running(),
        "the gateway exited with an upload in flight:\n{}",
        gateway.log()
    );
    if let Some(status) = new_request_outcome(&gateway) {
        panic!("a new request after SIGTERM was served with {status}; the gateway must stop accepting");
    }

    for piece in data[mib..].chunks(mib) {
        conn.send(piece);
        std::thread::sleep(Duration::from_millis(100));
    }
    let rsp = conn.read_response("PUT");
    assert_eq!(
        rsp.status,
        201,
        "the in-flight upload did not complete:\n{}\nlog:\n{}",
        rsp.describe(),
        tail(&gateway.log(), 3000)
    );
    drop(conn);
    let finished = Instant::now();

    let status = gateway.wait_exit(Duration::from_secs(25)).unwrap_or_else(|| {
        panic!(
            "the gateway did not exit within the grace period:\n{}",
            tail(&gateway.log(), 3000)
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}\n{}",
        tail(&gateway.log(), 3000)
    );
    assert!(
        finished.elapsed() < Duration::from_secs(5),
        "the gateway waited {:?} after the last request finished (SIGTERM was {:?} ago): it must exit once nothing is in flight",
        finished.elapsed(),
        signalled.elapsed()
    );
    assert!(
        registry.has_blob("drain/repo", &digest),
        "the drained upload is not in the upstream"
    );
}

#[test]
fn sigterm_gives_up_on_a_stuck_request_after_the_grace_period() {
    let registry = Registry::start();
    let mut gateway = Gateway::start(&GatewayConfig::for_upstream(&registry).grace_period("2s"));
    let upload = path_of(
        Request::post("/v2/stuck/repo/blobs/uploads/")
            .send(gateway.addr())
            .expect_header("location"),
    );
    let mut conn = Conn::open(gateway.addr());
    conn.send(
        &Request::patch(&upload)
            .body(vec![0u8; 1 << 20])
            .head_bytes(gateway.addr()),
    );
    conn.send(&[0u8; 1000]);
    std::thread::sleep(Duration::from_millis(300));

    gateway.signal("TERM");
    let signalled = Instant::now();
    let status = gateway.wait_exit(Duration::from_secs(10));
    let waited = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIGTERM with a 2 s grace period"));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status: {status}\n{}",
        tail(&gateway.log(), 3000)
    );
    assert!(
        waited < Duration::from_secs(6),
        "took {waited:?} with a 2 s grace period"
    );
    drop(conn);
}

#[test]
fn sigterm_when_idle_exits_0_within_2_seconds() {
    let (_registry, mut gateway) = start();
    assert_serves(&gateway);
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(2)).unwrap_or_else(|| {
        panic!(
            "an idle gateway was still running 2 s after SIGTERM:\n{}",
            tail(&gateway.log(), 3000)
        )
    });
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
}

#[test]
fn sigint_exits_promptly() {
    let (_registry, mut gateway) = start();
    assert_serves(&gateway);
    gateway.signal("INT");
    assert!(
        gateway.wait_exit(Duration::from_secs(2)).is_some(),
        "still running 2 s after SIGINT:\n{}",
        tail(&gateway.log(), 3000)
    );
}

#[test]
fn sighup_is_logged_and_the_gateway_keeps_serving() {
    let (_registry, mut gateway) = start();
    gateway.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(gateway.is_running(), "SIGHUP killed the gateway:\n{}", gateway.log());
    assert_serves(&gateway);
    let logged = wait_until(Duration::from_secs(2), || {
        let log = gateway.log().to_ascii_lowercase();
        log.contains("sighup") || log.contains("hangup")
    });
    assert!(logged, "SIGHUP was not logged:\n{}", tail(&gateway.log(), 3000));
    gateway.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));
    assert!(gateway.is_running(), "a second SIGHUP killed the gateway");
    assert_serves(&gateway);
}
