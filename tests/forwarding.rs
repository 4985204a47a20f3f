//! Request headers the upstream receives, the trust model for client-supplied
//! forwarding headers, and `Location` rewriting on the way back.

mod common;

use common::*;

fn xff_hops(value: &str) -> Vec<String> {
    value.split(',').map(|s| s.trim().to_string()).collect()
}

/// Sends the spoofing headers an untrusted client might try.
fn spoofing(req: Request) -> Request {
    req.header("Forwarded", "for=198.51.100.7;proto=https;host=evil.example")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-For", "198.51.100.7")
        .header("X-Real-IP", "198.51.100.7")
}

// ---- against a real registry: it builds Location from the forwarded headers

#[test]
fn untrusted_client_cannot_spoof_the_upload_location() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    let rsp = spoofing(Request::post("/v2/spoof/repo/blobs/uploads/")).send(gateway.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = rsp.expect_header("location");
    assert!(
        location.starts_with(&format!("http://{}/v2/spoof/repo/blobs/uploads/", gateway.addr())),
        "spoofed forwarding headers leaked into the Location:\n{}",
        rsp.describe()
    );
}

#[test]
fn trusted_proxy_x_forwarded_host_and_proto_shape_the_upload_location() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry).trusted_proxies(&["127.0.0.1"]));
    let rsp = Request::post("/v2/trusted/repo/blobs/uploads/")
        .header("X-Forwarded-Host", "mirror.example:8443")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-For", "203.0.113.9")
        .send(gateway.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = rsp.expect_header("location");
    assert!(
        location.starts_with("https://mirror.example:8443/v2/trusted/repo/blobs/uploads/"),
        "a trusted proxy's X-Forwarded-Host/Proto must be honoured:\n{}",
        rsp.describe()
    );
}

#[test]
fn trusted_proxy_forwarded_header_shapes_the_upload_location() {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry).trusted_proxies(&["127.0.0.0/8"]));
    let rsp = Request::post("/v2/trusted/fwd/blobs/uploads/")
        .header("Forwarded", "for=203.0.113.9;proto=https;host=\"mirror.example:8443\"")
        .send(gateway.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = rsp.expect_header("location");
    assert!(
        location.starts_with("https://mirror.example:8443/v2/trusted/fwd/blobs/uploads/"),
        "a trusted proxy's Forwarded proto/host must be honoured:\n{}",
        rsp.describe()
    );
}

// ---- against a recording upstream: the exact headers sent

#[test]
fn upstream_sees_client_host_forwarding_headers_and_no_forwarded_header() {
    let upstream = RecordingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()));
    let n = nonce("hdr");
    let target = format!("/v2/some/repo/tags/list?n=1&probe={n}");
    let rsp = spoofing(Request::get(&target))
        .header("Authorization", "Bearer opaque-token")
        .header("User-Agent", "integration-test/1.0")
        .header("Accept", "application/json")
        .send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);

    let req = upstream.request_with(&n);
    let gw = gateway.addr().to_string();
    let head = &req.raw_head;
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, target, "target rewritten:\n{head}");
    assert_eq!(
        req.header_all("host"),
        vec![gw.as_str()],
        "Host must be the client's, with port:\n{head}"
    );
    assert_eq!(req.header_all("x-forwarded-proto"), vec!["http"], "{head}");
    assert_eq!(req.header_all("x-forwarded-host"), vec![gw.as_str()], "{head}");
    assert_eq!(
        req.header_all("x-forwarded-for")
            .iter()
            .flat_map(|v| xff_hops(v))
            .collect::<Vec<_>>(),
        vec!["127.0.0.1"],
        "an untrusted client's X-Forwarded-For must be replaced by its own address:\n{head}"
    );
    assert_eq!(req.header_all("x-real-ip"), vec!["127.0.0.1"], "{head}");
    assert!(
        req.header("forwarded").is_none(),
        "Forwarded must never be sent upstream:\n{head}"
    );
    assert!(
        !head.contains("evil.example") && !head.contains("198.51.100.7") && !head.contains("https"),
        "spoofed values reached the upstream:\n{head}"
    );
    // Ordinary end-to-end headers pass untouched.
    assert_eq!(req.header("authorization"), Some("Bearer opaque-token"), "{head}");
    assert_eq!(req.header("user-agent"), Some("integration-test/1.0"), "{head}");
    assert_eq!(req.header("accept"), Some("application/json"), "{head}");
}

#[test]
fn trusted_peer_forwarding_headers_are_kept_and_x_forwarded_for_is_appended() {
    let upstream = RecordingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()).trusted_proxies(&["127.0.0.1"]));
    let n = nonce("trusted");
    let target = format!("/v2/?probe={n}");
    let rsp = Request::get(&target)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Host", "mirror.example:8443")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "for=203.0.113.9;proto=https;host=\"mirror.example:8443\"")
        .send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());

    let req = upstream.request_with(&n);
    let head = &req.raw_head;
    assert_eq!(
        req.header_all("host"),
        vec![gateway.addr().to_string().as_str()],
        "{head}"
    );
    assert_eq!(
        req.header_all("x-forwarded-for")
            .iter()
            .flat_map(|v| xff_hops(v))
            .collect::<Vec<_>>(),
        vec!["203.0.113.9", "127.0.0.1"],
        "X-Forwarded-For must be the trusted chain with the peer appended:\n{head}"
    );
    assert_eq!(
        req.header_all("x-forwarded-host"),
        vec!["mirror.example:8443"],
        "{head}"
    );
    assert_eq!(req.header_all("x-forwarded-proto"), vec!["https"], "{head}");
    assert_eq!(
        req.header_all("x-real-ip").len(),
        1,
        "X-Real-IP must be set once:\n{head}"
    );
    assert!(
        req.header("forwarded").is_none(),
        "Forwarded must never be sent upstream:\n{head}"
    );
}

#[test]
fn host_header_upstream_sends_the_upstream_host_and_port() {
    let upstream = RecordingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()).host_header("upstream"));
    let n = nonce("uphost");
    let rsp = Request::get(&format!("/v2/?probe={n}")).send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    let req = upstream.request_with(&n);
    let head = &req.raw_head;
    assert_eq!(
        req.header_all("host"),
        vec![upstream.addr().to_string().as_str()],
        "{head}"
    );
    assert_eq!(
        req.header_all("x-forwarded-host"),
        vec![gateway.addr().to_string().as_str()],
        "X-Forwarded-Host keeps the client's Host:\n{head}"
    );
    assert_eq!(req.header_all("x-forwarded-proto"), vec!["http"], "{head}");
}

#[test]
fn custom_client_host_is_forwarded_verbatim() {
    let upstream = RecordingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()));
    let n = nonce("vhost");
    let rsp = Request::get(&format!("/v2/?probe={n}"))
        .header("Host", "registry.example.test:5000")
        .send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    let req = upstream.request_with(&n);
    assert_eq!(
        req.header_all("host"),
        vec!["registry.example.test:5000"],
        "{}",
        req.raw_head
    );
    assert_eq!(
        req.header_all("x-forwarded-host"),
        vec!["registry.example.test:5000"],
        "{}",
        req.raw_head
    );
}

#[test]
fn location_pointing_at_the_upstream_is_rewritten_and_others_pass_untouched() {
    let upstream = RecordingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()));

    let rsp = Request::get("/v2/loc/upstream").send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(
        rsp.header("location"),
        Some(format!("http://{}/v2/next?x=1", gateway.addr()).as_str()),
        "a Location at the upstream must be rewritten to the client's Host:\n{}",
        rsp.describe()
    );

    let rsp = Request::get("/v2/loc/upstream")
        .header("Host", "registry.example.test:5000")
        .send(gateway.addr());
    assert_eq!(
        rsp.header("location"),
        Some("http://registry.example.test:5000/v2/next?x=1"),
        "rewritten to the Host as the client sent it:\n{}",
        rsp.describe()
    );

    let rsp = Request::get("/v2/loc/elsewhere").send(gateway.addr());
    assert_eq!(
        rsp.header("location"),
        Some("http://elsewhere.example/v2/next?x=1"),
        "a Location elsewhere (e.g. a storage redirect) must pass untouched:\n{}",
        rsp.describe()
    );

    let rsp = Request::get("/v2/loc/relative").send(gateway.addr());
    assert_eq!(rsp.header("location"), Some("/v2/next?x=1"), "{}", rsp.describe());
}

#[test]
fn api_version_header_is_added_once_when_the_upstream_omits_it() {
    let upstream = RecordingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()));
    for target in ["/v2/", "/v2/x/tags/list"] {
        let rsp = Request::get(target).send(gateway.addr());
        assert_eq!(rsp.status, 200, "{}", rsp.describe());
        assert_api_version_once(&rsp);
    }
}

#[test]
fn chunked_upstream_response_bodies_stream_through_intact() {
    let upstream = RecordingUpstream::start();
    let gateway = Gateway::start(&GatewayConfig::for_url(&upstream.url()));
    for size in [0usize, 1, 65_537, 5 << 20] {
        let rsp = Request::get(&format!("/v2/stream/chunked?size={size}")).send(gateway.addr());
        assert_eq!(rsp.status, 200, "{}", rsp.describe());
        assert_eq!(rsp.body.len(), size, "body length for size={size}");
        assert!(rsp.body == chunked_payload(size), "body bytes differ for size={size}");
    }
}
