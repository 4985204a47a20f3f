//! TLS termination and `https://` upstreams, end to end: skopeo with
//! certificate verification on, SNI certificate selection, HTTP/2 by ALPN,
//! upload Locations over TLS, the redirecting listener, verified https
//! upstreams, certificate reload without dropping connections, and
//! certificate problems reported as config errors.
//!
//! Every certificate is generated at test time into a temporary folder, by
//! `registry-gateway certs` or by `openssl`. Needs `/usr/bin/openssl`,
//! `/usr/bin/curl` (with HTTP/2), `/usr/bin/skopeo` and
//! `/usr/bin/docker-registry`. Run with `cargo test --release --test tls`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// Names of the gateway's own certificate in most tests.
const LOCAL_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// A gateway with one TLS listener (default HTTP/2 setting) in front of
/// `upstream_url`.
fn tls_gateway(upstream_url: &str, certs: &DevCerts) -> (Gateway, std::net::SocketAddr) {
    let addr = free_addr();
    let gateway = TlsGatewayConfig::new(upstream_url)
        .tls_listener(addr, &[CertEntry::of(certs)], None)
        .start();
    (gateway, addr)
}

fn sha256_of_file(path: &Path) -> String {
    sha256_file(path).0
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// 1. skopeo over TLS with verification on
// ---------------------------------------------------------------------------

#[test]
fn skopeo_pushes_and_pulls_over_verified_tls_with_identical_digests() {
    let certs = DevCerts::generate(LOCAL_NAMES);
    let registry = Registry::start();
    let (gateway, addr) = tls_gateway(&registry.url(), &certs);
    let work = tempfile::Builder::new().prefix("tls-skopeo-").tempdir().unwrap();

    let source = OciImageBuilder::new(0x7150)
        .layer(4 * 1024 + 3)
        .layer(24 * MIB as u64 + 511)
        .write(&work.path().join("source"), "v1");

    // Without the CA the client refuses the gateway's certificate, and
    // nothing reaches the registry.
    let unverified = format!("localhost:{}/team/unverified:v1", addr.port());
    let out = skopeo_push_verified(&source, &unverified, None);
    let err = stderr_of(&out);
    assert!(
        !out.status.success(),
        "skopeo pushed over TLS to a certificate it cannot verify:\n{err}"
    );
    assert!(
        err.contains("certificate") || err.contains("x509"),
        "the push failed, but not on certificate verification:\n{err}"
    );
    let rsp = Request::head("/v2/team/unverified/manifests/v1")
        .header("Accept", MEDIA_MANIFEST)
        .send(registry.addr());
    assert_eq!(
        rsp.status,
        404,
        "an unverified push reached the registry:\n{}",
        rsp.describe()
    );

    // With the CA (the `trust/` folder: only ca.crt), push and pull work.
    let reference = format!("localhost:{}/team/secure:v1", addr.port());
    let out = skopeo_push_verified(&source, &reference, Some(&certs.trust_dir()));
    assert_skopeo_ok(&format!("verified TLS push to {reference}"), &out);

    for blob in source.all_blobs() {
        let stored = registry.blob_path(&blob.digest);
        assert!(
            stored.exists(),
            "the registry has no {} ({})",
            blob.digest,
            blob.media_type
        );
        assert_eq!(
            sha256_file(&stored),
            (blob.digest.clone(), blob.size),
            "stored {} differs",
            blob.media_type
        );
    }
    let rsp = Request::head("/v2/team/secure/manifests/v1")
        .header("Accept", MEDIA_MANIFEST)
        .send(registry.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(
        rsp.header("docker-content-digest"),
        Some(source.manifest.digest.as_str())
    );

    // A pull without the CA fails too.
    let out = skopeo_pull_verified(&reference, &work.path().join("unverified-pull"), "v1", None);
    assert!(
        !out.status.success(),
        "skopeo pulled over TLS from a certificate it cannot verify:\n{}",
        stderr_of(&out)
    );

    let pulled_dir = work.path().join("pulled");
    let out = skopeo_pull_verified(&reference, &pulled_dir, "v1", Some(&certs.trust_dir()));
    assert_skopeo_ok(&format!("verified TLS pull of {reference}"), &out);
    let pulled = OciImage::read(&pulled_dir, "v1");
    assert_eq!(
        pulled.manifest.digest, source.manifest.digest,
        "manifest digest changed"
    );
    assert_eq!(pulled.config.digest, source.config.digest, "config digest changed");
    assert_eq!(pulled.layers, source.layers, "layers changed");
    pulled.verify_files();
    assert!(
        gateway.log().contains("https://"),
        "the start log does not mention the https listener"
    );
}

// ---------------------------------------------------------------------------
// 2. SNI
// ---------------------------------------------------------------------------

#[test]
fn sni_selects_the_certificate_by_name_wildcard_and_case_with_the_first_as_default() {
    let a = DevCerts::generate(&["a.test"]);
    let b = DevCerts::generate(&["b.test"]);
    let w = DevCerts::generate(&["*.wild.test"]);
    let (a_leaf, b_leaf, w_leaf) = (a.leaf(), b.leaf(), w.leaf());
    assert_ne!(a_leaf.serial, b_leaf.serial);
    let upstream = RecordingUpstream::start();
    let addr = free_addr();
    let _gateway = TlsGatewayConfig::new(&upstream.url())
        .tls_listener(
            addr,
            &[
                CertEntry::of(&a),
                CertEntry::of(&b).names(&["extra.example"]),
                CertEntry::of(&w),
            ],
            None,
        )
        .start();

    let cases: &[(Option<&str>, &CertSummary, &str)] = &[
        (Some("a.test"), &a_leaf, "exact name of the first certificate"),
        (Some("b.test"), &b_leaf, "exact name of the second certificate"),
        (Some("B.TEST"), &b_leaf, "upper-case SNI of the second certificate"),
        (Some("A.TEST"), &a_leaf, "upper-case SNI of the first certificate"),
        (Some("extra.example"), &b_leaf, "extra `names` entry"),
        (Some("x.wild.test"), &w_leaf, "one label under the wildcard"),
        (Some("X.Wild.Test"), &w_leaf, "mixed-case name under the wildcard"),
        (Some("unknown.test"), &a_leaf, "unknown name: the default (first)"),
        (
            Some("wild.test"),
            &a_leaf,
            "the wildcard's parent itself is not covered",
        ),
        (Some("y.x.wild.test"), &a_leaf, "a wildcard covers one label only"),
        (None, &a_leaf, "no SNI: the default (first)"),
    ];
    let mut failures = Vec::new();
    for (sni, expected, why) in cases {
        let got = served_certificate(addr, *sni);
        if &got != *expected {
            failures.push(format!("SNI {sni:?} ({why}): expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong certificates served:\n{}",
        failures.join("\n")
    );

    // Subject and SAN as openssl shows them.
    let got = served_certificate(addr, Some("a.test"));
    assert!(got.subject.contains("a.test"), "{got:?}");
    assert!(got.san.contains("DNS:a.test"), "{got:?}");
    let got = served_certificate(addr, Some("x.wild.test"));
    assert!(got.san.contains("DNS:*.wild.test"), "{got:?}");

    // A verifying client completes the handshake with each name.
    for (name, certs) in [("a.test", &a), ("b.test", &b), ("x.wild.test", &w)] {
        let rsp = https_send(addr, name, &certs.ca(), &Request::get("/v2/"));
        assert_eq!(rsp.status, 200, "GET /v2/ as {name}:\n{}", rsp.describe());
    }
}

#[test]
fn the_first_listed_certificate_is_the_default_whatever_its_name() {
    let a = DevCerts::generate(&["a.test"]);
    let b = DevCerts::generate(&["b.test"]);
    let upstream = RecordingUpstream::start();
    let addr = free_addr();
    let _gateway = TlsGatewayConfig::new(&upstream.url())
        .tls_listener(addr, &[CertEntry::of(&b), CertEntry::of(&a)], None)
        .start();
    assert_eq!(
        served_certificate(addr, None),
        b.leaf(),
        "no SNI must get the first certificate (b.test)"
    );
    assert_eq!(
        served_certificate(addr, Some("nope.test")),
        b.leaf(),
        "unknown SNI must get the first certificate"
    );
    assert_eq!(served_certificate(addr, Some("a.test")), a.leaf());
}

#[test]
fn a_chain_with_an_intermediate_is_served_whole_so_clients_trusting_only_the_root_verify() {
    let root = OpensslCa::new();
    let intermediate = root.intermediate("integration test intermediate CA");
    let leaf = intermediate.issue_current("server", "localhost");
    let upstream = RecordingUpstream::start();
    let addr = free_addr();
    let _gateway = TlsGatewayConfig::new(&upstream.url())
        .tls_listener(addr, &[CertEntry::new(&leaf)], None)
        .start();

    let rsp = https_send(addr, "localhost", &root.ca(), &Request::get("/v2/"));
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    let work = tempfile::tempdir().unwrap();
    let rsp = curl_https(
        &format!("https://localhost:{}/v2/", addr.port()),
        &root.ca(),
        &[],
        &work.path().join("body"),
    );
    assert!(rsp.success, "curl trusting only the root:\n{}", rsp.describe());
    assert_eq!(rsp.code, 200, "{}", rsp.describe());
}

// ---------------------------------------------------------------------------
// 3. HTTP/2
// ---------------------------------------------------------------------------

#[test]
fn http2_monolithic_upload_and_download_of_a_64_mib_blob_and_http1_on_the_same_listener() {
    let certs = DevCerts::generate(LOCAL_NAMES);
    let registry = Registry::start();
    let (_gateway, addr) = tls_gateway(&registry.url(), &certs);
    let work = tempfile::tempdir().unwrap();
    let base = format!("https://localhost:{}", addr.port());
    let ca = certs.ca();

    let data = random_bytes(0x4202, 64 * MIB + 12345);
    let digest = sha256_bytes(&data);
    let blob_file = work.path().join("blob.bin");
    std::fs::write(&blob_file, &data).unwrap();
    drop(data);
    let sink = work.path().join("sink");

    // POST over h2.
    let post = curl_https(
        &format!("{base}/v2/h2/blob/blobs/uploads/"),
        &ca,
        &["--http2", "-X", "POST", "--data-binary", ""],
        &sink,
    );
    assert!(post.success, "{}", post.describe());
    assert_eq!(post.http_version, "2", "POST did not use HTTP/2:\n{}", post.describe());
    assert_eq!(post.code, 202, "{}", post.describe());
    let location = post
        .header("location")
        .unwrap_or_else(|| panic!("no Location:\n{}", post.describe()))
        .to_string();
    let upload_url = if location.starts_with("https://") {
        location.clone()
    } else {
        format!("{base}{location}")
    };

    // Monolithic PUT over h2.
    let put = curl_https(
        &with_query(&upload_url, &format!("digest={digest}")),
        &ca,
        &[
            "--http2",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--upload-file",
            blob_file.to_str().unwrap(),
        ],
        &sink,
    );
    assert!(put.success, "{}", put.describe());
    assert_eq!(put.http_version, "2", "PUT did not use HTTP/2:\n{}", put.describe());
    assert_eq!(put.code, 201, "{}", put.describe());
    assert_eq!(
        put.header("docker-content-digest"),
        Some(digest.as_str()),
        "{}",
        put.describe()
    );
    let stored = registry.blob_path(&digest);
    assert_eq!(sha256_of_file(&stored), digest, "the registry stored other bytes");

    // GET over h2.
    let got = work.path().join("got-h2");
    let get = curl_https(&format!("{base}/v2/h2/blob/blobs/{digest}"), &ca, &["--http2"], &got);
    assert!(get.success, "{}", get.describe());
    assert_eq!(get.http_version, "2", "GET did not use HTTP/2:\n{}", get.describe());
    assert_eq!(get.code, 200, "{}", get.describe());
    assert_eq!(sha256_of_file(&got), digest, "the h2 download is corrupt");

    // HTTP/1.1 on the same listener.
    let got = work.path().join("got-h1");
    let get = curl_https(&format!("{base}/v2/h2/blob/blobs/{digest}"), &ca, &["--http1.1"], &got);
    assert!(get.success, "{}", get.describe());
    assert_eq!(get.http_version, "1.1", "{}", get.describe());
    assert_eq!(get.code, 200, "{}", get.describe());
    assert_eq!(sha256_of_file(&got), digest, "the HTTP/1.1 download is corrupt");

    // And a client without ALPN at all.
    let rsp = https_send(
        addr,
        "localhost",
        &ca,
        &Request::head(&format!("/v2/h2/blob/blobs/{digest}")),
    );
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(rsp.version, "HTTP/1.1");
}

#[test]
fn http2_false_makes_curl_negotiate_http1() {
    let certs = DevCerts::generate(LOCAL_NAMES);
    let upstream = RecordingUpstream::start();
    let addr = free_addr();
    let _gateway = TlsGatewayConfig::new(&upstream.url())
        .tls_listener(addr, &[CertEntry::of(&certs)], Some(false))
        .start();
    let work = tempfile::tempdir().unwrap();
    let rsp = curl_https(
        &format!("https://localhost:{}/v2/", addr.port()),
        &certs.ca(),
        &["--http2"],
        &work.path().join("body"),
    );
    assert!(rsp.success, "{}", rsp.describe());
    assert_eq!(rsp.code, 200, "{}", rsp.describe());
    assert_eq!(
        rsp.http_version,
        "1.1",
        "http2: false must not offer h2:\n{}",
        rsp.describe()
    );
}

// ---------------------------------------------------------------------------
// 4. X-Forwarded-Proto and upload Locations over TLS
// ---------------------------------------------------------------------------

#[test]
fn upload_locations_over_tls_are_https_with_the_client_port() {
    let certs = DevCerts::generate(LOCAL_NAMES);
    let registry = Registry::start();
    let (_gateway, addr) = tls_gateway(&registry.url(), &certs);
    let prefix = format!("https://localhost:{}/v2/", addr.port());

    // HTTP/1.1 (Host: localhost:PORT).
    let rsp = https_send(
        addr,
        "localhost",
        &certs.ca(),
        &Request::post("/v2/team/loc/blobs/uploads/"),
    );
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = rsp.expect_header("location");
    assert!(
        location.starts_with(&prefix),
        "POST /v2/team/loc/blobs/uploads/ over TLS: Location must start with {prefix}:\n{}",
        rsp.describe()
    );

    // The upload goes on at that Location.
    let data = random_bytes(0x10c, 300_000);
    let digest = sha256_bytes(&data);
    let rsp = https_send(
        addr,
        "localhost",
        &certs.ca(),
        &Request::put(&with_query(&path_of(location), &format!("digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(data),
    );
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    let location = rsp.expect_header("location");
    assert!(location.starts_with(&prefix), "blob Location after PUT: {location}");

    // HTTP/2 (:authority instead of Host).
    let work = tempfile::tempdir().unwrap();
    let post = curl_https(
        &format!("https://localhost:{}/v2/team/loc/blobs/uploads/", addr.port()),
        &certs.ca(),
        &["--http2", "-X", "POST", "--data-binary", ""],
        &work.path().join("body"),
    );
    assert_eq!(post.http_version, "2", "{}", post.describe());
    assert_eq!(post.code, 202, "{}", post.describe());
    let location = post.header("location").unwrap_or("");
    assert!(
        location.starts_with(&prefix),
        "POST over HTTP/2: Location must start with {prefix}:\n{}",
        post.describe()
    );
}

#[test]
fn upstream_sees_x_forwarded_proto_https_for_tls_clients() {
    let certs = DevCerts::generate(LOCAL_NAMES);
    let upstream = RecordingUpstream::start();
    let (_gateway, addr) = tls_gateway(&upstream.url(), &certs);
    let tag = nonce("xfp");
    let rsp = https_send(
        addr,
        "localhost",
        &certs.ca(),
        &Request::get(&format!("/v2/{tag}/tags/list")),
    );
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    let seen = upstream.request_with(&tag);
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{}", seen.raw_head);
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(format!("localhost:{}", addr.port()).as_str()),
        "{}",
        seen.raw_head
    );
}

// ---------------------------------------------------------------------------
// 5. Redirecting listener
// ---------------------------------------------------------------------------

#[test]
fn redirect_listener_answers_308_to_https_without_reaching_the_upstream() {
    let certs = DevCerts::generate(LOCAL_NAMES);
    let upstream = RecordingUpstream::start();
    let https = free_addr();
    let plain = free_addr();
    let _gateway = TlsGatewayConfig::new(&upstream.url())
        .tls_listener(https, &[CertEntry::of(&certs)], None)
        .redirect_listener(plain, https.port())
        .start();

    let rsp = Request::get("/v2/?x=1").send(plain);
    assert_eq!(rsp.status, 308, "{}", rsp.describe());
    assert_eq!(
        rsp.header("location"),
        Some(format!("https://127.0.0.1:{}/v2/?x=1", https.port()).as_str()),
        "{}",
        rsp.describe()
    );

    let rsp = Request::post("/v2/team/app/blobs/uploads/?mount=a&from=b")
        .header("Host", &format!("registry.example:{}", plain.port()))
        .send(plain);
    assert_eq!(rsp.status, 308, "{}", rsp.describe());
    assert_eq!(
        rsp.header("location"),
        Some(
            format!(
                "https://registry.example:{}/v2/team/app/blobs/uploads/?mount=a&from=b",
                https.port()
            )
            .as_str()
        ),
        "{}",
        rsp.describe()
    );

    let rsp = Request::get("/v2/team/app/manifests/v1")
        .header("Host", "registry.example")
        .send(plain);
    assert_eq!(rsp.status, 308, "{}", rsp.describe());
    assert_eq!(
        rsp.header("location"),
        Some(format!("https://registry.example:{}/v2/team/app/manifests/v1", https.port()).as_str()),
        "{}",
        rsp.describe()
    );

    assert!(
        upstream.requests().is_empty(),
        "redirected requests reached the upstream: {:?}",
        upstream.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );

    // The https listener itself proxies.
    let rsp = https_send(https, "localhost", &certs.ca(), &Request::get("/v2/?x=1"));
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(upstream.requests().len(), 1);
}

// ---------------------------------------------------------------------------
// 6. https upstreams
// ---------------------------------------------------------------------------

const UPSTREAM_NAME: &str = "secure-origin";

fn https_upstream_gateway(registry: &TlsRegistry, tls: &[(&str, String)]) -> Gateway {
    let mut config = TlsGatewayConfig::new(&registry.url())
        .upstream_name(UPSTREAM_NAME)
        .plain_listener(free_addr());
    for (k, v) in tls {
        config = config.upstream_tls(k, v);
    }
    config.start()
}

#[test]
fn https_upstream_verified_with_its_ca_serves_pushes_and_pulls() {
    let upstream_certs = DevCerts::generate(&["127.0.0.1"]);
    let registry = TlsRegistry::start(&upstream_certs);
    let gateway = https_upstream_gateway(&registry, &[("ca", yaml_str(upstream_certs.ca().to_str().unwrap()))]);

    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_eq!(
        rsp.status,
        200,
        "GET /v2/ through the https upstream:\n{}",
        rsp.describe()
    );
    assert_api_version_once(&rsp);

    let data = random_bytes(0x5ec, 2 * MIB + 7);
    let (digest, rsp) = upload_blob(gateway.addr(), "team/over-tls", &data);
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    assert_eq!(sha256_of_file(&registry.blob_path(&digest)), digest);
    let rsp = Request::get(&format!("/v2/team/over-tls/blobs/{digest}")).send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(
        sha256_bytes(&rsp.body),
        digest,
        "download through the https upstream is corrupt"
    );

    let work = tempfile::tempdir().unwrap();
    let source = OciImageBuilder::new(0x0451)
        .layer(3 * MIB as u64)
        .write(&work.path().join("src"), "v1");
    let reference = format!("{}/team/image:v1", gateway.addr());
    skopeo_push(&source, &reference);
    let pulled = skopeo_pull(&reference, &work.path().join("pulled"), "v1");
    assert_eq!(pulled.manifest.digest, source.manifest.digest);
    assert_eq!(pulled.layers, source.layers);
    pulled.verify_files();
}

#[test]
fn https_upstream_with_the_wrong_ca_is_a_502_and_the_log_names_the_upstream() {
    let gateway_ca = DevCerts::generate(LOCAL_NAMES); // the "first" CA
    let upstream_certs = DevCerts::generate(&["127.0.0.1"]);
    let registry = TlsRegistry::start(&upstream_certs);

    // The IP-address URL: SNI/verify name 127.0.0.1 must be verified, so the
    // wrong CA fails the handshake.
    let gateway = https_upstream_gateway(&registry, &[("ca", yaml_str(gateway_ca.ca().to_str().unwrap()))]);
    let offset = gateway.log().len();
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_json_error(&rsp, 502, "BAD_GATEWAY");
    let ok = gateway.wait_for_log(UPSTREAM_NAME, Duration::from_secs(5));
    let log = log_since(&gateway, offset);
    assert!(
        ok && log.contains(UPSTREAM_NAME),
        "no log line names upstream {UPSTREAM_NAME} after the failed request; log since:\n{log}"
    );

    // No `ca`: the system roots do not know the development CA either.
    let gateway = https_upstream_gateway(&registry, &[]);
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_json_error(&rsp, 502, "BAD_GATEWAY");
}

#[test]
fn https_upstream_hostname_is_verified_and_server_name_overrides_it() {
    let upstream_certs = DevCerts::generate(&["registry.internal"]);
    let registry = TlsRegistry::start(&upstream_certs);
    let ca = yaml_str(upstream_certs.ca().to_str().unwrap());

    // Right CA, but the certificate is not for 127.0.0.1.
    let gateway = https_upstream_gateway(&registry, &[("ca", ca.clone())]);
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_json_error(&rsp, 502, "BAD_GATEWAY");

    // server_name names the certificate's host.
    let gateway = https_upstream_gateway(
        &registry,
        &[("ca", ca.clone()), ("server_name", yaml_str("registry.internal"))],
    );
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_eq!(rsp.status, 200, "server_name registry.internal:\n{}", rsp.describe());

    // A server_name the certificate does not have fails.
    let gateway = https_upstream_gateway(&registry, &[("ca", ca), ("server_name", yaml_str("other.internal"))]);
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_json_error(&rsp, 502, "BAD_GATEWAY");
}

#[test]
fn insecure_skip_verify_accepts_an_unverifiable_upstream_and_warns_at_start() {
    let gateway_ca = DevCerts::generate(LOCAL_NAMES);
    let upstream_certs = DevCerts::generate(&["127.0.0.1"]);
    let registry = TlsRegistry::start(&upstream_certs);
    let gateway = https_upstream_gateway(
        &registry,
        &[
            ("ca", yaml_str(gateway_ca.ca().to_str().unwrap())),
            ("insecure_skip_verify", "true".to_string()),
        ],
    );
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_eq!(
        rsp.status,
        200,
        "{}\nlog:\n{}",
        rsp.describe(),
        tail(&gateway.log(), 3000)
    );
    let data = random_bytes(0x1d5, 100_000);
    let (_, rsp) = upload_blob(gateway.addr(), "team/insecure", &data);
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    let log = gateway.log();
    assert!(
        log.lines()
            .any(|l| l.contains("insecure_skip_verify") && l.contains(UPSTREAM_NAME)),
        "the start log does not warn about insecure_skip_verify on {UPSTREAM_NAME}:\n{}",
        tail(&log, 3000)
    );
}

#[test]
fn https_upstream_requiring_a_client_certificate_gets_the_configured_one() {
    let upstream_certs = DevCerts::generate(&["127.0.0.1"]);
    let client_ca = OpensslCa::new();
    let client = client_ca.issue_current("client", "gateway-client");
    let registry = TlsRegistry::start_with_client_ca(&upstream_certs, Some(&client_ca.ca()));
    let ca = yaml_str(upstream_certs.ca().to_str().unwrap());

    let gateway = https_upstream_gateway(
        &registry,
        &[
            ("ca", ca.clone()),
            ("client_cert", yaml_str(client.cert.to_str().unwrap())),
            ("client_key", yaml_str(client.key.to_str().unwrap())),
        ],
    );
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_eq!(
        rsp.status,
        200,
        "{}\nlog:\n{}",
        rsp.describe(),
        tail(&gateway.log(), 3000)
    );
    let data = random_bytes(0x3715, MIB + 1);
    let (digest, rsp) = upload_blob(gateway.addr(), "team/mtls", &data);
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    assert_eq!(sha256_of_file(&registry.blob_path(&digest)), digest);

    // Without the client certificate the registry refuses the handshake.
    let gateway = https_upstream_gateway(&registry, &[("ca", ca)]);
    let rsp = Request::get("/v2/").send(gateway.addr());
    assert_json_error(&rsp, 502, "BAD_GATEWAY");
}

// ---------------------------------------------------------------------------
// 7. Certificate reload
// ---------------------------------------------------------------------------

const KEPT: &str = "keeping the current certificates";

#[test]
fn certificates_reload_without_dropping_downloads_and_broken_replacements_are_refused() {
    let cert_a = DevCerts::generate(LOCAL_NAMES);
    let cert_b = DevCerts::generate(LOCAL_NAMES);
    assert_ne!(cert_a.leaf().serial, cert_b.leaf().serial);
    let live = tempfile::Builder::new().prefix("live-certs-").tempdir().unwrap();
    let live_pair = CertPair {
        cert: live.path().join("server.crt"),
        key: live.path().join("server.key"),
    };
    std::fs::copy(cert_a.cert(), &live_pair.cert).unwrap();
    std::fs::copy(cert_a.key(), &live_pair.key).unwrap();

    let registry = Registry::start();
    let addr = free_addr();
    let mut gateway = TlsGatewayConfig::new(&registry.url())
        .tls_listener(addr, &[CertEntry::new(&live_pair)], None)
        .start();

    let size = 200 * MIB + 4097;
    let data = random_bytes(0x4e10ad, size);
    let digest = registry.push_blob("team/reload", &data);
    drop(data);

    // A download starts with certificate A and is read a little.
    let mut conn = TlsConn::open(addr, "localhost", &cert_a.ca());
    assert_eq!(conn.peer_leaf_der(), cert_a.leaf_der());
    conn.send_request(&Request::get(&format!("/v2/team/reload/blobs/{digest}")));
    let head = conn.read_head().expect("response head");
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));
    let mut hasher = Sha256::new();
    let mut got = 0usize;
    let first = conn.read_some(4 * MIB).expect("first part of the body");
    hasher.update(&first);
    got += first.len();
    assert_eq!(served_certificate(addr, Some("localhost")), cert_a.leaf());

    // Replace the files with B (key first, then the chain).
    replace_file(&live_pair.key, &std::fs::read(cert_b.key()).unwrap());
    replace_file(&live_pair.cert, &std::fs::read(cert_b.cert()).unwrap());
    let swapped_at = Instant::now();
    let swapped = wait_until(Duration::from_secs(10), || {
        served_certificate(addr, Some("localhost")) == cert_b.leaf()
    });
    assert!(
        swapped,
        "new handshakes still get certificate A 10 s after the files were replaced; log:\n{}",
        tail(&gateway.log(), 3000)
    );
    assert!(
        swapped_at.elapsed() < Duration::from_secs(6),
        "the replacement took {:?} to be served (poll interval 2 s)",
        swapped_at.elapsed()
    );
    assert!(
        gateway.log().contains("certificates reloaded"),
        "{}",
        tail(&gateway.log(), 3000)
    );
    // New connections verify with B's CA, and no longer with A's.
    let rsp = https_send(addr, "localhost", &cert_b.ca(), &Request::get("/v2/"));
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert!(
        TlsConn::try_open(addr, "localhost", &cert_a.ca()).is_err(),
        "a new handshake still verifies with A's CA"
    );

    // The download started under A completes intact.
    loop {
        let piece = conn
            .read_some(4 * MIB)
            .unwrap_or_else(|e| panic!("download broke after {got} bytes: {e}"));
        if piece.is_empty() {
            break;
        }
        hasher.update(&piece);
        got += piece.len();
        if got >= size {
            break;
        }
    }
    assert_eq!(got, size, "the in-flight download was cut short");
    assert_eq!(
        format!("sha256:{}", hex(&hasher.finalize())),
        digest,
        "the in-flight download is corrupt"
    );

    // A broken replacement (garbage PEM) is refused: B stays.
    let kept_before = gateway.log().matches(KEPT).count();
    replace_file(
        &live_pair.cert,
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let refused = wait_until(Duration::from_secs(10), || {
        gateway.log().matches(KEPT).count() > kept_before
    });
    assert!(
        refused,
        "no log line says the broken certificate was refused ({KEPT:?}); log:\n{}",
        tail(&gateway.log(), 3000)
    );
    assert_eq!(
        served_certificate(addr, Some("localhost")),
        cert_b.leaf(),
        "a broken file replaced B"
    );
    let rsp = https_send(addr, "localhost", &cert_b.ca(), &Request::get("/v2/"));
    assert_eq!(rsp.status, 200, "{}", rsp.describe());

    // A valid chain with a key that does not match it is refused as well.
    let kept_before = gateway.log().matches(KEPT).count();
    replace_file(&live_pair.cert, &std::fs::read(cert_b.cert()).unwrap());
    replace_file(&live_pair.key, &std::fs::read(cert_a.key()).unwrap());
    let refused = wait_until(Duration::from_secs(10), || {
        let log = gateway.log();
        log.matches(KEPT).count() > kept_before && log.contains("does not match")
    });
    assert!(
        refused,
        "a mismatched key was not reported; log:\n{}",
        tail(&gateway.log(), 3000)
    );
    assert_eq!(served_certificate(addr, Some("localhost")), cert_b.leaf());

    // SIGHUP re-reads at once, even unchanged files: refused again, still B,
    // still serving.
    let kept_before = gateway.log().matches(KEPT).count();
    gateway.signal("HUP");
    let refused = wait_until(Duration::from_secs(5), || {
        gateway.log().matches(KEPT).count() > kept_before
    });
    assert!(
        refused,
        "SIGHUP did not re-read the certificates; log:\n{}",
        tail(&gateway.log(), 3000)
    );
    assert!(gateway.is_running(), "the gateway died on SIGHUP");
    assert_eq!(served_certificate(addr, Some("localhost")), cert_b.leaf());
    let rsp = https_send(addr, "localhost", &cert_b.ca(), &Request::get("/v2/"));
    assert_eq!(rsp.status, 200, "{}", rsp.describe());

    // Fixing the key makes the next poll load it (still B).
    replace_file(&live_pair.key, &std::fs::read(cert_b.key()).unwrap());
    let reloads = gateway.log().matches("certificates reloaded").count();
    assert!(
        wait_until(Duration::from_secs(10), || gateway
            .log()
            .matches("certificates reloaded")
            .count()
            > reloads),
        "the repaired files were not reloaded; log:\n{}",
        tail(&gateway.log(), 3000)
    );
    assert_eq!(served_certificate(addr, Some("localhost")), cert_b.leaf());
}

// ---------------------------------------------------------------------------
// 8. Certificate problems are config errors
// ---------------------------------------------------------------------------

/// Runs `check` and a start on a config whose TLS listener uses `pairs`;
/// both must fail, naming `key` and `file` (and `reason` words, any of).
#[track_caller]
fn assert_cert_error(pairs: &[CertPair], key: &str, file: &Path, reasons: &[&str]) {
    let upstream = "http://127.0.0.1:9";
    let entries: Vec<CertEntry> = pairs.iter().map(CertEntry::new).collect();
    let config = TlsGatewayConfig::new(upstream).tls_listener(free_addr(), &entries, None);
    let dir = tempfile::Builder::new().prefix("tls-config-").tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config.to_yaml()).unwrap();
    let file = file.display().to_string();
    for (what, out) in [
        ("registry-gateway check", run_check(&path)),
        (
            "registry-gateway (start)",
            run_expecting_exit(&path, Duration::from_secs(20)),
        ),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!out.status.success(), "{what} accepted it:\n{stdout}{stderr}");
        let line = stderr.lines().find(|l| l.contains(key) && l.contains(&file));
        assert!(
            line.is_some(),
            "{what}: no error line names both {key} and {file}:\n{stderr}"
        );
        let line = line.unwrap().to_ascii_lowercase();
        assert!(
            reasons.iter().any(|r| line.contains(r)),
            "{what}: the error does not say why (one of {reasons:?}):\n{stderr}"
        );
    }
}

#[test]
fn certificate_problems_are_config_errors_naming_the_key_and_the_file() {
    let good = DevCerts::generate(LOCAL_NAMES);
    let other = DevCerts::generate(LOCAL_NAMES);
    let dir = tempfile::Builder::new().prefix("bad-certs-").tempdir().unwrap();
    let d = dir.path();
    const K0: &str = "listeners[0].tls.certificates[0]";

    // Missing files.
    let missing = d.join("missing.crt");
    assert_cert_error(
        &[CertPair {
            cert: missing.clone(),
            key: good.key(),
        }],
        K0,
        &missing,
        &["read", "no such file", "not found"],
    );
    let missing_key = d.join("missing.key");
    assert_cert_error(
        &[CertPair {
            cert: good.cert(),
            key: missing_key.clone(),
        }],
        K0,
        &missing_key,
        &["read", "no such file", "not found"],
    );

    // Unreadable: a folder where a file should be.
    let folder = d.join("a-folder.crt");
    std::fs::create_dir(&folder).unwrap();
    assert_cert_error(
        &[CertPair {
            cert: folder.clone(),
            key: good.key(),
        }],
        K0,
        &folder,
        &["read", "directory"],
    );

    // No certificate in the PEM: empty, and a key where the chain should be.
    let empty = d.join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    assert_cert_error(
        &[CertPair {
            cert: empty.clone(),
            key: good.key(),
        }],
        K0,
        &empty,
        &["certificate"],
    );
    let key_as_cert = d.join("key-as-cert.crt");
    std::fs::copy(good.key(), &key_as_cert).unwrap();
    assert_cert_error(
        &[CertPair {
            cert: key_as_cert.clone(),
            key: good.key(),
        }],
        K0,
        &key_as_cert,
        &["certificate"],
    );

    // No private key: a certificate where the key should be.
    let cert_as_key = d.join("cert-as-key.key");
    std::fs::copy(good.cert(), &cert_as_key).unwrap();
    assert_cert_error(
        &[CertPair {
            cert: good.cert(),
            key: cert_as_key.clone(),
        }],
        K0,
        &cert_as_key,
        &["key"],
    );

    // A key that belongs to another certificate.
    assert_cert_error(
        &[CertPair {
            cert: good.cert(),
            key: other.key(),
        }],
        K0,
        &other.key(),
        &["match"],
    );

    // Expired and not yet valid.
    let ca = OpensslCa::new();
    let expired = ca.issue("expired", "localhost", "20200101000000Z", "20210101000000Z");
    assert_cert_error(std::slice::from_ref(&expired), K0, &expired.cert, &["expired"]);
    let future = ca.issue("future", "localhost", "20900101000000Z", "20910101000000Z");
    assert_cert_error(
        std::slice::from_ref(&future),
        K0,
        &future.cert,
        &["not valid before", "not yet valid"],
    );

    // The same certificate dated to include now loads (the CA setup is sound).
    let current = ca.issue_current("current", "localhost");
    let config =
        TlsGatewayConfig::new("http://127.0.0.1:9").tls_listener(free_addr(), &[CertEntry::new(&current)], None);
    let cfg_path = d.join("ok.yaml");
    std::fs::write(&cfg_path, config.to_yaml()).unwrap();
    let out = run_check(&cfg_path);
    assert!(
        out.status.success(),
        "check rejected a valid openssl-issued certificate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The index names the bad entry among several.
    assert_cert_error(
        &[good.pair(), expired.clone()],
        "listeners[0].tls.certificates[1]",
        &expired.cert,
        &["expired"],
    );
}

#[test]
fn handshakes_are_counted_per_listener_including_failures() {
    let certs = DevCerts::generate(&["localhost"]);
    let upstream = RecordingUpstream::start();
    let addr = free_addr();
    let gateway = TlsGatewayConfig::new(&upstream.url())
        .tls_listener(addr, &[CertEntry::of(&certs)], None)
        .start();
    let handshakes = |stage: &str| -> u64 {
        let text = Request::get("/metrics").send(gateway.metrics_addr()).body_text();
        let prefix = "registry_gateway_tls_handshakes_total{";
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(&format!("stage=\"{stage}\"")))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum()
    };
    let before = (handshakes("started"), handshakes("completed"), handshakes("failed"));
    for _ in 0..3 {
        let mut conn = TlsConn::open(addr, "localhost", &certs.ca());
        conn.send_request(&Request::get("/v2/"));
        let rsp = conn.read_head().expect("a response over TLS");
        assert_eq!(rsp.status, 200, "{}", rsp.describe());
    }
    // A client that does not trust the certificate aborts its handshake;
    // plain HTTP to the TLS port never starts one.
    let other = DevCerts::generate(&["localhost"]);
    assert!(TlsConn::try_open(addr, "localhost", &other.ca()).is_err());
    let mut plain = Conn::open(addr);
    let _ = plain.try_send(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    let _ = plain.read_to_end();

    let ok = wait_until(Duration::from_secs(5), || {
        handshakes("started") >= before.0 + 4
            && handshakes("completed") >= before.1 + 3
            && handshakes("failed") >= before.2 + 2
    });
    assert!(
        ok,
        "handshakes started/completed/failed went from {before:?} to ({}, {}, {}); want +4/+3/+2",
        handshakes("started"),
        handshakes("completed"),
        handshakes("failed")
    );
    assert_eq!(
        handshakes("completed"),
        before.1 + 3,
        "only the trusted handshakes complete"
    );
}
