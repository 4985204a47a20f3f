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
