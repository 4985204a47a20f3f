//! Checks of the test harness itself, straight against registry:2 with no
//! gateway in between. When one of these fails, the problem is the harness
//! or the machine, not the gateway; when they pass and a gateway test fails,
//! the gateway is at fault.

mod common;

use std::process::Command;

use common::*;

#[test]
fn oci_builder_writes_a_valid_layout_with_real_tar_layers() {
    let dir = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(7)
        .layer(0)
        .layer(511)
        .layer(513)
        .layer(100_000)
        .write(&dir.path().join("img"), "t1");
    image.verify_files();
    let reread = OciImage::read(&image.dir, "t1");
    assert_eq!(reread.manifest, image.manifest);
    assert_eq!(reread.layers, image.layers);
    for (i, layer) in image.layers.iter().enumerate() {
        let out = Command::new("tar")
            .arg("-tvf")
            .arg(image.blob_path(&layer.digest))
            .output()
            .expect("run tar");
        assert!(
            out.status.success(),
            "tar rejects layer {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains(&format!("layer{i}/data.bin")), "{listing}");
    }
    // Deterministic per seed, different across seeds.
    assert_eq!(random_bytes(1, 64), random_bytes(1, 64));
    assert_ne!(random_bytes(1, 64), random_bytes(2, 64));
}

#[test]
fn skopeo_round_trips_a_small_image_directly_against_the_registry() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(11)
        .layer(1000)
        .layer(70_000)
        .write(&dir.path().join("src"), "v1");
    let reference = format!("{}/self/check:v1", registry.addr());
    skopeo_push(&image, &reference);
    let pulled = skopeo_pull(&reference, &dir.path().join("dst"), "v1");
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    assert_eq!(pulled.layers, image.layers);
    pulled.verify_files();
    for blob in image.all_blobs() {
        assert_eq!(sha256_file(&registry.blob_path(&blob.digest)).0, blob.digest);
    }
}

#[test]
fn registry_behaviours_the_gateway_tests_rely_on() {
    let registry = Registry::start();
    let addr = registry.addr();

    // Location is built from X-Forwarded-Host/Proto.
    let rsp = Request::post("/v2/r/blobs/uploads/")
        .header("X-Forwarded-Host", "mirror.example:8443")
        .header("X-Forwarded-Proto", "https")
        .send(addr);
    assert_eq!(rsp.status, 202);
    assert!(
        rsp.expect_header("location")
            .starts_with("https://mirror.example:8443/v2/r/blobs/uploads/")
    );
    // ... and from the Forwarded header too, which is why the gateway must drop it.
    let rsp = Request::post("/v2/r/blobs/uploads/")
        .header("Forwarded", "proto=https;host=evil.example")
        .send(addr);
    assert!(
        rsp.expect_header("location").starts_with("https://evil.example/v2/"),
        "{}",
        rsp.describe()
    );

    // Ranges, mounts, chunked PATCH and tag pagination.
    let data = random_bytes(3, 5000);
    let digest = registry.push_blob("base/repo", &data);
    let rsp = Request::get(&format!("/v2/base/repo/blobs/{digest}"))
        .header("Range", "bytes=10-19")
        .send(addr);
    assert_eq!(rsp.status, 206, "{}", rsp.describe());
    assert_eq!(rsp.body, data[10..20]);
    let rsp = Request::get(&format!("/v2/base/repo/blobs/{digest}"))
        .header("Range", "bytes=9000-")
        .send_head_only(addr);
    assert_eq!(rsp.status, 416, "{}", rsp.describe());
    let rsp = Request::post(&format!(
        "/v2/other/repo/blobs/uploads/?mount={digest}&from=base%2Frepo"
    ))
    .send(addr);
    assert_eq!(rsp.status, 201, "{}", rsp.describe());

    let rsp = Request::post("/v2/te/repo/blobs/uploads/").send(addr);
    let upload = path_of(rsp.expect_header("location"));
    let rsp = Request::patch(&upload)
        .chunked(data.chunks(1000).map(|c| c.to_vec()).collect())
        .send(addr);
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    assert_eq!(rsp.header("range"), Some("0-4999"));

    // The access log records the raw request target, query included.
    let n = nonce("raw");
    Request::get(&format!("/v2/x/tags/list?a=%2F&b={n}")).send(addr);
    assert!(registry.wait_for_log(
        &format!("\"GET /v2/x/tags/list?a=%2F&b={n} HTTP/1.1\""),
        std::time::Duration::from_secs(5)
    ));
}

#[test]
fn raw_client_reads_every_body_framing() {
    let upstream = RecordingUpstream::start();
    let rsp = Request::get("/v2/").send(upstream.addr());
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.body, br#"{"recorded":true}"#);
    let rsp = Request::head("/v2/").send(upstream.addr());
    assert!(rsp.body.is_empty());
    assert_eq!(rsp.header("content-length"), Some("17"));
    let rsp = Request::put("/v2/x")
        .chunked(vec![b"ab".to_vec(), b"cde".to_vec()])
        .send(upstream.addr());
    assert_eq!(rsp.status, 200);
    assert_eq!(upstream.requests().last().unwrap().body, b"abcde");
    assert_eq!(path_of("http://h:1/v2/a?b=c"), "/v2/a?b=c");
    assert_eq!(with_query("/a?b", "c=d"), "/a?b&c=d");
}

#[test]
fn free_ports_are_never_handed_out_twice_and_stay_out_of_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut bounds = range.split_whitespace().map(|v| v.parse::<u16>().unwrap());
    let (low, high) = (bounds.next().unwrap(), bounds.next().unwrap());
    let mut seen = std::collections::HashSet::new();
    for i in 0..5000 {
        let port = free_port();
        assert!(seen.insert(port), "port {port} handed out twice (after {i} ports)");
        assert!(
            !(low..=high).contains(&port),
            "port {port} is in the ephemeral range {low}-{high}, where outgoing connections may take it"
        );
    }
    // A port handed out is one a listener can really bind.
    let port = free_port();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind a handed-out port");
}

#[test]
fn token_registry_accepts_the_test_issuer() {
    // The upstream of mirror tests that use the distribution token flow:
    // registry:2 itself must accept the harness's JWTs, straight, no gateway.
    let issuer = TokenServer::start(&["alice:issuer-pw"], false);
    let registry = Registry::start_token_auth(&issuer);
    let challenge = Request::get("/v2/").send(registry.addr());
    assert_eq!(challenge.status, 401);
    assert!(
        challenge.expect_header("www-authenticate").contains(&issuer.realm()),
        "{}",
        challenge.describe()
    );
    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(0x7031)
        .layer(200 * 1024)
        .write(&work.path().join("src"), "v1");
    let reference = format!("{}/issuer/app:v1", registry.addr());
    let out = skopeo_push_with_creds(&image, &reference, Some("alice:issuer-pw"));
    assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));
    let dir = work.path().join("dst");
    let out = skopeo_pull_with_creds(&reference, &dir, "v1", Some("alice:issuer-pw"));
    assert!(out.status.success(), "pull: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(OciImage::read(&dir, "v1").manifest.digest, image.manifest.digest);
    // No credentials (no anonymous pull) and a wrong password get nothing.
    let out = skopeo_pull_with_creds(&reference, &work.path().join("anon"), "v1", None);
    assert!(!out.status.success(), "an anonymous pull was served");
    let out = skopeo_pull_with_creds(&reference, &work.path().join("bad"), "v1", Some("alice:wrong"));
    assert!(!out.status.success(), "a wrong password was served");
    let granted = issuer.requests();
    assert!(
        granted.iter().any(|r| r["user"] == "alice" && r["status"] == 200),
        "{granted:?}"
    );
    assert!(granted.iter().any(|r| r["status"] == 401), "{granted:?}");
}
