//! Hostile and unusual clients, against a real registry:2: every real
//! client gets its answer, what the gateway answers itself keeps the
//! connection when it can, and nothing malformed reaches the registry.

mod common;

use common::tls::*;
use common::*;

const USER: &str = "pusher";
const PASSWORD: &str = "pusher-secret";

/// A gateway with one TLS listener and Basic auth in front of `registry`.
fn tls_auth_gateway(registry: &Registry, certs: &DevCerts) -> Gateway {
    let addr = free_addr();
    let mut yaml = TlsGatewayConfig::new(&registry.url())
        .tls_listener(addr, &[CertEntry::of(certs)], Some(false))
        .to_yaml();
    yaml.push_str("auth:\n  htpasswd: users\n");
    let users = htpasswd_line("B", &["-C", "4"], USER, PASSWORD) + "\n";
    Gateway::start_yaml_with_files(&yaml, addr, &[("users", users.as_bytes())])
}

/// A plain-HTTP gateway with Basic auth in front of `registry`.
fn plain_auth_gateway(registry: &Registry) -> Gateway {
    let config = GatewayConfig::for_upstream(registry);
    let yaml = format!("{}auth:\n  htpasswd: users\n", config.to_yaml());
    let users = htpasswd_line("B", &["-C", "4"], USER, PASSWORD) + "\n";
    Gateway::start_yaml_with_files(&yaml, config.listen_addr(), &[("users", users.as_bytes())])
}

#[test]
fn a_client_that_writes_64_mib_before_reading_gets_the_401_over_tls_and_retries() {
    let registry = Registry::start();
    let certs = DevCerts::generate(&["localhost"]);
    let gateway = tls_auth_gateway(&registry, &certs);
    let base = format!("https://localhost:{}", gateway.addr().port());
    let ca = certs.ca();
    let out = run_python_client(
        "whole_body_push.py",
        &[
            &base,
            "hardening/whole-body",
            USER,
            PASSWORD,
            &(64 << 20).to_string(),
            ca.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python requests client failed ({}):\n{stdout}\n{}\ngateway log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log(), 3000)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("client prints JSON");
    let seen: Vec<(String, u64)> = report["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap()))
        .collect();
    let expected = [("POST", 202), ("PUT", 401), ("PUT", 201), ("HEAD", 200)];
    let expected: Vec<(String, u64)> = expected.iter().map(|(m, s)| (m.to_string(), *s)).collect();
    assert_eq!(seen, expected, "{stdout}");
    assert_eq!(report["served_digest"], report["digest"], "{stdout}");
    // The registry holds the blob byte for byte.
    let digest = report["digest"].as_str().unwrap();
    let stored = std::fs::read(registry.blob_path(digest)).expect("blob stored by registry:2");
    assert_eq!(stored.len(), 64 << 20);
}

#[test]
fn the_gateways_own_401_and_404_keep_the_connection_for_the_next_request() {
    let registry = Registry::start();
    let gateway = plain_auth_gateway(&registry);
    let mut conn = Conn::open(gateway.addr());
    // The docker probe: 401, then the same request with credentials on the
    // same connection.
    let rsp = Request::get("/v2/").keep_alive().send_on(&mut conn);
    assert_json_error(&rsp, 401, "UNAUTHORIZED");
    assert_ne!(rsp.header("connection"), Some("close"), "{}", rsp.describe());
    let auth = basic_auth(USER, PASSWORD);
    let rsp = Request::get("/v2/")
        .header("Authorization", &auth)
        .keep_alive()
        .send_on(&mut conn);
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    // A 401 to an upload whose small body was read in full keeps it too.
    let rsp = Request::post("/v2/x/blobs/uploads/?digest=sha256:00")
        .body(vec![7u8; 10_000])
        .keep_alive()
        .send_on(&mut conn);
    assert_json_error(&rsp, 401, "UNAUTHORIZED");
    // A path the gateway refuses itself.
    let rsp = Request::get("/nothing-here").keep_alive().send_on(&mut conn);
    assert_json_error(&rsp, 404, "NOT_FOUND");
    // Each answer above came on the one connection: a close would have
    // failed the next read.
    let rsp = Request::get("/v2/").header("Authorization", &auth).send_on(&mut conn);
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
}

// ---- hostile heads: answered by the gateway, never forwarded

/// Sends raw bytes on a new connection and reads one response, or `None`
/// when the gateway closed without one.
fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<Response> {
    let mut conn = Conn::open(addr);
    conn.try_send(bytes).ok()?;
    conn.try_read_response("GET").ok()
}

/// The status of the gateway's answer to `raw`, after which the connection
/// is closed; the registry never sees `marker`, and the next normal request
/// on a new connection works.
#[track_caller]
fn assert_refused(registry: &Registry, gateway: &Gateway, raw: &[u8], marker: &str, status: u16) {
    let mut conn = Conn::open(gateway.addr());
    conn.send(raw);
    let rsp = conn.try_read_response("GET").unwrap_or_else(|e| {
        panic!(
            "no answer to {:?}: {e}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    });
    assert_eq!(rsp.status, status, "{}", rsp.describe());
    if status != 400
        || rsp
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    {
        assert!(rsp.body_text().contains("\"errors\""), "{}", rsp.describe());
    }
    assert!(
        conn.read_to_end().is_ok_and(|rest| rest.is_empty()),
        "connection left open after {status}"
    );
    let ok = Request::get("/v2/").send(gateway.addr());
    assert_eq!(ok.status, 200, "next request after a refused one:\n{}", ok.describe());
    let leaked: Vec<String> = registry
        .access_log()
        .into_iter()
        .filter(|l| l.contains(marker))
        .collect();
    assert!(leaked.is_empty(), "reached registry:2: {leaked:?}");
}

#[test]
fn oversized_heads_get_414_or_431_and_never_reach_the_registry() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    let addr = gateway.addr();
    let m = nonce("long");
    // A 17 KiB request line: registry:2 would answer 500.
    let raw = format!(
        "GET /v2/{m}/{}/manifests/x HTTP/1.1\r\nHost: {addr}\r\n\r\n",
        "a".repeat(17 << 10)
    );
    assert_refused(&registry, &gateway, raw.as_bytes(), &m, 414);
    // One 64 KiB header.
    let m = nonce("bigheader");
    let raw = format!(
        "GET /v2/{m}/manifests/x HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n",
        "b".repeat(64 << 10)
    );
    assert_refused(&registry, &gateway, raw.as_bytes(), &m, 431);
    // 400 KiB of headers, each small.
    let m = nonce("block");
    let many: String = (0..50).map(|i| format!("X-H{i}: {}\r\n", "c".repeat(8000))).collect();
    let raw = format!("GET /v2/{m}/manifests/x HTTP/1.1\r\nHost: {addr}\r\n{many}\r\n");
    assert_refused(&registry, &gateway, raw.as_bytes(), &m, 431);
    // 150 tiny headers.
    let m = nonce("count");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = format!("GET /v2/{m}/manifests/x HTTP/1.1\r\nHost: {addr}\r\n{many}\r\n");
    assert_refused(&registry, &gateway, raw.as_bytes(), &m, 431);
    // Pingora's own cap (1 MiB of head): its plain 400.
    let m = nonce("huge");
    let raw = format!(
        "GET /v2/{m}/manifests/x HTTP/1.1\r\nHost: {addr}\r\nX-Huge: {}\r\n\r\n",
        "d".repeat(1 << 20)
    );
    let rsp = send_raw(addr, raw.as_bytes());
    assert!(
        rsp.as_ref().is_none_or(|r| r.status == 400),
        "{:?}",
        rsp.map(|r| r.describe())
    );
    assert!(registry.access_log().iter().all(|l| !l.contains(&m)));
}

#[test]
fn limits_are_configurable() {
    let registry = Registry::start();
    let config = GatewayConfig::for_upstream(&registry);
    let yaml = format!("{}limits:\n  request_line: 1KiB\n  headers: 10\n", config.to_yaml());
    let gateway = Gateway::start_yaml(&yaml, config.listen_addr());
    let m = nonce("cfg");
    let raw = format!("GET /v2/{m}/{}/tags/list HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1100));
    assert_refused(&registry, &gateway, raw.as_bytes(), &m, 414);
    let many: String = (0..11).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = format!("GET /v2/{m}/tags/list HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_refused(&registry, &gateway, raw.as_bytes(), &m, 431);
    let rsp = Request::get("/v2/cfg/tags/list")
        .header("X-One", "1")
        .send(gateway.addr());
    assert_eq!(
        rsp.status,
        404,
        "within the limits the registry answers:\n{}",
        rsp.describe()
    );
}

#[test]
fn methods_no_registry_serves_get_405_and_are_not_forwarded() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    for method in ["TRACE", "PROPFIND", "MKCOL", "BREW"] {
        let m = nonce(&method.to_ascii_lowercase());
        let rsp = Request::new(method, &format!("/v2/{m}/manifests/x")).send(gateway.addr());
        assert_json_error(&rsp, 405, "UNSUPPORTED");
        assert!(
            registry.access_log().iter().all(|l| !l.contains(&m)),
            "{method} reached registry:2"
        );
    }
    // CONNECT is refused by Pingora itself.
    let rsp = send_raw(
        gateway.addr(),
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    );
    assert!(
        rsp.as_ref().is_none_or(|r| r.status == 405 || r.status == 400),
        "{:?}",
        rsp.map(|r| r.describe())
    );
    // OPTIONS is a registry method (CORS preflights): forwarded.
    let rsp = Request::new("OPTIONS", "/v2/").send(gateway.addr());
    assert_ne!(rsp.status, 405, "{}", rsp.describe());
}

#[test]
fn smuggling_shapes_are_refused_before_the_registry() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    let addr = gateway.addr();
    let cases: Vec<(&str, String)> = vec![
        (
            "cl-te",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        ),
        (
            "te-cl",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".into(),
        ),
        (
            "cl-differ",
            "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".into(),
        ),
        ("cl-list", "Content-Length: 5, 6\r\n\r\nhello!".into()),
        ("te-gzip", "Transfer-Encoding: gzip\r\n\r\nxx".into()),
        (
            "te-chunked-gzip",
            "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n".into(),
        ),
        ("obs-fold", "X-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n".into()),
        ("space-colon", "Content-Length : 0\r\n\r\n".into()),
        ("nul", "X-Nul: a\0b\r\nContent-Length: 0\r\n\r\n".into()),
        ("bare-cr", "X-Cr: a\rb\r\nContent-Length: 0\r\n\r\n".into()),
        ("host-userinfo", "Content-Length: 0\r\n\r\n".into()),
        ("host-port", "Content-Length: 0\r\n\r\n".into()),
    ];
    for (name, rest) in cases {
        let m = nonce(name);
        let host = match name {
            "host-userinfo" => "user:pw@localhost".to_string(),
            "host-port" => "localhost:99999".to_string(),
            _ => addr.to_string(),
        };
        let raw = format!("PUT /v2/{m}/blobs/uploads/u?digest=sha256:00 HTTP/1.1\r\nHost: {host}\r\n{rest}");
        let rsp = send_raw(addr, raw.as_bytes());
        assert!(
            rsp.as_ref().is_none_or(|r| r.status == 400),
            "{name}: {:?}",
            rsp.map(|r| r.describe())
        );
        let ok = Request::get("/v2/").send(addr);
        assert_eq!(ok.status, 200, "after {name}:\n{}", ok.describe());
        let leaked: Vec<String> = registry.access_log().into_iter().filter(|l| l.contains(&m)).collect();
        assert!(leaked.is_empty(), "{name} reached registry:2: {leaked:?}");
    }
}

#[test]
fn invalid_chunk_sizes_never_become_a_body_upstream() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    let addr = gateway.addr();
    let upload = path_of(
        Request::post("/v2/hardening/chunks/blobs/uploads/")
            .send(addr)
            .expect_header("location"),
    );
    for (name, body) in [
        ("not-hex", "zz\r\nhello\r\n0\r\n\r\n"),
        ("overflow", "10000000000000000\r\nhello\r\n0\r\n\r\n"),
        ("negative", "-5\r\nhello\r\n0\r\n\r\n"),
        ("no-crlf-after-data", "5\r\nhelloXX\r\n0\r\n\r\n"),
    ] {
        let raw = format!(
            "PATCH {upload} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n{body}"
        );
        let rsp = send_raw(addr, raw.as_bytes());
        // The registry may have been reached with the head; what it got must
        // not be accepted as content.
        assert!(
            rsp.as_ref().is_none_or(|r| r.status >= 400),
            "{name}: {:?}",
            rsp.map(|r| r.describe())
        );
        let ok = Request::get("/v2/").send(addr);
        assert_eq!(ok.status, 200, "after {name}:\n{}", ok.describe());
    }
    // Nothing of the malformed bodies was committed to the upload.
    let status = Request::get(&upload).send(addr);
    assert_eq!(status.status, 204, "{}", status.describe());
    assert_eq!(status.header("range"), Some("0-0"), "{}", status.describe());
}

#[test]
fn a_silent_upstream_gets_504_after_upstream_header_while_uploads_keep_waiting() {
    let upstream = StallingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()).timeout("upstream_header", "1s"));
    let started = std::time::Instant::now();
    let rsp = Request::get("/v2/x/manifests/latest").send(gateway.addr());
    assert_json_error(&rsp, 504, "GATEWAY_TIMEOUT");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "504 after {:?}",
        started.elapsed()
    );
    let text = scrape(gateway.metrics_addr());
    assert!(
        sample(&text, "registry_gateway_upstream_timeouts_total", &[]) >= 1.0,
        "{text}"
    );
    // A PUT (an upload commit may take minutes) is not cut at 1 s.
    let mut put = Conn::open(gateway.addr());
    put.send(&Request::put("/v2/x/blobs/uploads/u?digest=sha256:00").to_bytes(gateway.addr()));
    put.set_read_timeout(std::time::Duration::from_secs(3));
    let early = put.read_head();
    assert!(
        early.is_err(),
        "the PUT was answered within 3 s: {:?}",
        early.map(|h| h.status)
    );
    // Meanwhile the gateway serves other requests.
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_json_error(&rsp, 504, "GATEWAY_TIMEOUT");
}

// ---- connections: a whole-head deadline and a cap on open connections

#[test]
fn a_head_trickled_byte_by_byte_is_cut_at_client_header() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry).timeout("client_header", "2s"));
    let addr = gateway.addr();
    let head = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(100)
    );
    let mut conn = Conn::open(addr);
    let started = std::time::Instant::now();
    let mut closed_after = None;
    // One byte every 100 ms: each read is quick, the head never finishes
    // within 2 s (it needs about 13 s).
    for b in head.as_bytes() {
        if conn.try_send(&[*b]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        if started.elapsed() > std::time::Duration::from_secs(8) {
            break;
        }
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        // Writes may still be buffered: the read side says it is closed.
        conn.set_read_timeout(std::time::Duration::from_secs(2));
        assert!(
            conn.read_to_end().is_ok_and(|r| r.is_empty()),
            "connection still open after the deadline"
        );
        started.elapsed()
    });
    assert!(
        closed_after < std::time::Duration::from_secs(10),
        "closed after {closed_after:?}"
    );
    let text = scrape(gateway.metrics_addr());
    assert_eq!(
        sample(&text, "registry_gateway_client_header_timeouts_total", &[]),
        1.0,
        "{text}"
    );
    // A prompt client on the same gateway is served, twice on one connection.
    let mut conn = Conn::open(addr);
    for _ in 0..2 {
        let rsp = Request::get("/v2/").keep_alive().send_on(&mut conn);
        assert_eq!(rsp.status, 200, "{}", rsp.describe());
    }
}

#[test]
fn connections_past_max_connections_get_503_and_a_freed_slot_is_reused() {
    let registry = Registry::start();
    let config = GatewayConfig::for_upstream(&registry);
    let yaml = config
        .to_yaml()
        .replacen("server:\n", "server:\n  max_connections: 3\n", 1);
    let gateway = Gateway::start_yaml(&yaml, config.listen_addr());
    let addr = gateway.addr();
    // Three clients hold connections open (one request each, kept alive).
    let mut held: Vec<Conn> = (0..3)
        .map(|_| {
            let mut c = Conn::open(addr);
            let rsp = Request::get("/v2/").keep_alive().send_on(&mut c);
            assert_eq!(rsp.status, 200, "{}", rsp.describe());
            c
        })
        .collect();
    let rsp = Request::get("/v2/").send(addr);
    assert_json_error(&rsp, 503, "UNAVAILABLE");
    assert_eq!(rsp.header("retry-after"), Some("1"), "{}", rsp.describe());
    let text = scrape(gateway.metrics_addr());
    assert!(
        sample(&text, "registry_gateway_client_connections_refused_total", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "registry_gateway_client_connections", &[]), 3.0, "{text}");
    // One leaves: the next client gets in.
    held.pop().unwrap().abort();
    let served = wait_until(std::time::Duration::from_secs(5), || {
        Request::get("/v2/").try_send(addr).is_ok_and(|r| r.status == 200)
    });
    assert!(served, "no slot after a client left");
    // The held connections still work.
    let rsp = Request::get("/v2/").keep_alive().send_on(&mut held[0]);
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let registry = Registry::start();
    let digest = registry.push_blob("hardening/pipe", b"pipelined blob");
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    let addr = gateway.addr();
    let reqs = [
        Request::get("/v2/").keep_alive(),
        Request::head(&format!("/v2/hardening/pipe/blobs/{digest}")).keep_alive(),
        Request::get(&format!("/v2/hardening/pipe/blobs/{digest}")).keep_alive(),
        Request::get("/v2/hardening/none/manifests/x"),
    ];
    let mut bytes = Vec::new();
    for r in &reqs {
        bytes.extend(r.to_bytes(addr));
    }
    let mut conn = Conn::open(addr);
    conn.send(&bytes);
    let statuses: Vec<u16> = reqs
        .iter()
        .map(|r| {
            let rsp = conn.read_response(r.method());
            if r.method() == "GET" && rsp.status == 200 && rsp.body_text().contains("pipelined") {
                assert_eq!(rsp.body, b"pipelined blob");
            }
            rsp.status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 404]);
}

#[test]
fn a_tls_hello_on_a_plain_listener_is_refused_at_once_not_at_the_head_timeout() {
    // skopeo, podman and docker try https first on an insecure registry.
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry).timeout("client_header", "60s"));
    let mut conn = Conn::open(gateway.addr());
    // A TLS 1.2 ClientHello's record header and the start of its body.
    conn.send(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]);
    conn.set_read_timeout(std::time::Duration::from_secs(10));
    let answer = conn.read_to_end();
    assert!(
        answer.is_ok(),
        "the connection was still open 10 s later (client_header is 60 s): {answer:?}"
    );
    let text = scrape(gateway.metrics_addr());
    assert_eq!(sample(&text, "registry_gateway_client_header_timeouts_total", &[]), 0.0);
}
