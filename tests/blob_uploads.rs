//! The registry API through the gateway, one protocol feature per test:
//! every upload style, ranges, HEAD, deletes, listings, cross-repo mounts,
//! and the headers the client must see.

mod common;

use common::*;

struct Setup {
    registry: Registry,
    gateway: Gateway,
}

fn setup() -> Setup {
    setup_with(|c| c)
}

fn setup_with(f: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Setup {
    let registry = Registry::start();
    let gateway = Gateway::start(&f(GatewayConfig::for_upstream(&registry)));
    Setup { registry, gateway }
}

/// Asserts a Location header points at the gateway, under `/v2/`.
#[track_caller]
fn assert_location_at_gateway(rsp: &Response, gateway: &Gateway) -> String {
    let location = rsp.expect_header("location").to_string();
    let expected = format!("http://{}/v2/", gateway.addr());
    assert!(
        location.starts_with(&expected),
        "Location must start with {expected} (the gateway, not the upstream):\n{}",
        rsp.describe()
    );
    location
}

/// POST /v2/<repo>/blobs/uploads/ → 202; returns the upload's path+query.
fn start_upload(gateway: &Gateway, repo: &str) -> String {
    let rsp = Request::post(&format!("/v2/{repo}/blobs/uploads/")).send(gateway.addr());
    assert_eq!(rsp.status, 202, "starting an upload:\n{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_eq!(rsp.header("range"), Some("0-0"), "{}", rsp.describe());
    assert!(rsp.header("docker-upload-uuid").is_some(), "{}", rsp.describe());
    path_of(&assert_location_at_gateway(&rsp, gateway))
}

/// Uploads a blob through the gateway (POST, then monolithic PUT).
fn push_blob(gateway: &Gateway, repo: &str, data: &[u8]) -> String {
    let (digest, rsp) = upload_blob(gateway.addr(), repo, data);
    assert_eq!(rsp.status, 201, "monolithic upload:\n{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_location_at_gateway(&rsp, gateway);
    digest
}

/// GETs a blob through the gateway and checks its bytes.
#[track_caller]
fn assert_blob_served(gateway: &Gateway, repo: &str, digest: &str, data: &[u8]) {
    let rsp = Request::get(&format!("/v2/{repo}/blobs/{digest}")).send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_eq!(rsp.header("docker-content-digest"), Some(digest), "{}", rsp.describe());
    assert!(
        rsp.body == data,
        "blob {digest} came back with different bytes ({} bytes)",
        rsp.body.len()
    );
}

/// Pushes a config, one layer and a manifest; returns (manifest bytes,
/// manifest digest, layer digest).
fn push_image(gateway: &Gateway, repo: &str, tags: &[&str], seed: u64) -> (Vec<u8>, String, String) {
    let layer = random_bytes(seed, 4096 + seed as usize);
    let layer_digest = push_blob(gateway, repo, &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .unwrap();
    let config_digest = push_blob(gateway, repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": { "mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": MEDIA_LAYER_TAR, "digest": layer_digest, "size": layer.len() }],
    }))
    .unwrap();
    let manifest_digest = sha256_bytes(&manifest);
    for tag in tags {
        let rsp = Request::put(&format!("/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", MEDIA_MANIFEST)
            .body(manifest.clone())
            .send(gateway.addr());
        assert_eq!(rsp.status, 201, "manifest PUT:\n{}", rsp.describe());
        assert_api_version_once(&rsp);
        assert_eq!(rsp.header("docker-content-digest"), Some(manifest_digest.as_str()));
        assert_location_at_gateway(&rsp, gateway);
    }
    (manifest, manifest_digest, layer_digest)
}

fn monolithic_upload(host_header: &str) {
    let s = setup_with(|c| c.host_header(host_header));
    let data = random_bytes(1, 300_000);
    let digest = sha256_bytes(&data);

    let upload = start_upload(&s.gateway, "library/mono");
    let rsp = Request::put(&with_query(&upload, &format!("digest={digest}")))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 201, "monolithic PUT:\n{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_eq!(rsp.header("docker-content-digest"), Some(digest.as_str()));
    let location = assert_location_at_gateway(&rsp, &s.gateway);
    assert_eq!(location, format!("{}/v2/library/mono/blobs/{digest}", s.gateway.url()));

    assert_blob_served(&s.gateway, "library/mono", &digest, &data);
    assert!(
        s.registry.has_blob("library/mono", &digest),
        "the upstream does not have the blob"
    );
}

#[test]
fn monolithic_upload_post_then_put_with_digest() {
    monolithic_upload("client");
}

#[test]
fn monolithic_upload_with_host_header_upstream_still_answers_gateway_locations() {
    monolithic_upload("upstream");
}

#[test]
fn chunked_upload_with_patch_sequence() {
    let s = setup();
    let data = random_bytes(2, 700_001);
    let digest = sha256_bytes(&data);
    let (first, second) = data.split_at(262_144);

    let upload = start_upload(&s.gateway, "chunked/repo");
    let rsp = Request::patch(&upload)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", &format!("0-{}", first.len() - 1))
        .body(first.to_vec())
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 202, "first PATCH:\n{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_eq!(
        rsp.header("range"),
        Some(format!("0-{}", first.len() - 1).as_str()),
        "{}",
        rsp.describe()
    );
    let upload = path_of(&assert_location_at_gateway(&rsp, &s.gateway));

    let rsp = Request::patch(&upload)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", &format!("{}-{}", first.len(), data.len() - 1))
        .body(second.to_vec())
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 202, "second PATCH:\n{}", rsp.describe());
    assert_eq!(
        rsp.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str()),
        "{}",
        rsp.describe()
    );
    let upload = path_of(&assert_location_at_gateway(&rsp, &s.gateway));

    // The upload's status is visible through the gateway too.
    let rsp = Request::get(&upload).send(s.gateway.addr());
    assert_eq!(rsp.status, 204, "upload status:\n{}", rsp.describe());
    assert_eq!(
        rsp.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str()),
        "{}",
        rsp.describe()
    );

    let rsp = Request::put(&with_query(&upload, &format!("digest={digest}"))).send(s.gateway.addr());
    assert_eq!(rsp.status, 201, "closing PUT:\n{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_blob_served(&s.gateway, "chunked/repo", &digest, &data);
}

#[test]
fn patch_with_transfer_encoding_chunked_and_no_content_length() {
    let s = setup();
    let data = random_bytes(3, 500_000);
    let digest = sha256_bytes(&data);
    let chunks: Vec<Vec<u8>> = data.chunks(65_000).map(|c| c.to_vec()).collect();

    let upload = start_upload(&s.gateway, "te/chunked");
    let rsp = Request::patch(&upload)
        .header("Content-Type", "application/octet-stream")
        .chunked(chunks)
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 202, "chunked PATCH:\n{}", rsp.describe());
    assert_eq!(
        rsp.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str()),
        "{}",
        rsp.describe()
    );
    let upload = path_of(&assert_location_at_gateway(&rsp, &s.gateway));

    let rsp = Request::put(&with_query(&upload, &format!("digest={digest}"))).send(s.gateway.addr());
    assert_eq!(rsp.status, 201, "closing PUT:\n{}", rsp.describe());
    assert_blob_served(&s.gateway, "te/chunked", &digest, &data);
}

/// A POST carrying the whole blob and `?digest=` (monolithic upload in the
/// POST). registry:2 (distribution 2.8) does not complete the upload there: it
/// answers 202 and the client falls back to PUT. The gateway must relay
/// exactly what the upstream answers, forward the body intact so the
/// connection stays in sync, and keep the fallback working.
#[test]
fn single_post_with_digest_is_relayed_as_the_upstream_answers_it() {
    let s = setup();
    let data = random_bytes(4, 123_457);
    let digest = sha256_bytes(&data);
    let direct = Request::post(&format!("/v2/single/post/blobs/uploads/?digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send(s.registry.addr());

    // Through the gateway, on a kept-alive connection followed by a second
    // request: if the body were not forwarded whole, the second request would
    // be read from the middle of the blob.
    let mut conn = Conn::open(s.gateway.addr());
    let rsp = Request::post(&format!("/v2/single/post/blobs/uploads/?digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .keep_alive()
        .send_on(&mut conn);
    assert_eq!(
        rsp.status,
        direct.status,
        "the gateway answered differently from the upstream:\n{}",
        rsp.describe()
    );
    assert_api_version_once(&rsp);
    let location = assert_location_at_gateway(&rsp, &s.gateway);
    let next = Request::get("/v2/").keep_alive().send_on(&mut conn);
    assert_eq!(
        next.status,
        200,
        "the connection is out of sync after a POST with a body:\n{}",
        next.describe()
    );

    if rsp.status == 201 {
        assert_eq!(location, format!("{}/v2/single/post/blobs/{digest}", s.gateway.url()));
    } else {
        assert_eq!(rsp.status, 202, "{}", rsp.describe());
        let rsp = Request::put(&with_query(&path_of(&location), &format!("digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(data.clone())
            .send(s.gateway.addr());
        assert_eq!(rsp.status, 201, "fallback PUT:\n{}", rsp.describe());
    }
    assert_blob_served(&s.gateway, "single/post", &digest, &data);
}

#[test]
fn range_get_of_a_blob_answers_206_with_exact_bytes_and_unsatisfiable_range_answers_416() {
    let s = setup();
    let data = random_bytes(5, 100_000);
    let digest = push_blob(&s.gateway, "ranges/repo", &data);

    let rsp = Request::get(&format!("/v2/ranges/repo/blobs/{digest}"))
        .header("Range", "bytes=1000-1999")
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 206, "{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_eq!(
        rsp.header("content-range"),
        Some("bytes 1000-1999/100000"),
        "{}",
        rsp.describe()
    );
    assert_eq!(rsp.header("content-length"), Some("1000"), "{}", rsp.describe());
    assert!(rsp.body == data[1000..2000], "ranged bytes differ");

    let rsp = Request::get(&format!("/v2/ranges/repo/blobs/{digest}"))
        .header("Range", "bytes=99990-")
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 206, "{}", rsp.describe());
    assert!(rsp.body == data[99_990..], "suffix bytes differ");

    let rsp = Request::get(&format!("/v2/ranges/repo/blobs/{digest}"))
        .header("Range", "bytes=200000-300000")
        .send_head_only(s.gateway.addr());
    assert_eq!(rsp.status, 416, "{}", rsp.describe());
    assert_api_version_once(&rsp);
}

/// HEAD on its own connection with `Connection: close`: returns the response
/// and whatever bytes followed the header block before the server closed.
fn head_and_trailing_bytes(gateway: &Gateway, target: &str, accept: &str) -> (Response, Vec<u8>) {
    let mut conn = Conn::open(gateway.addr());
    conn.set_read_timeout(std::time::Duration::from_secs(5));
    conn.send(&Request::head(target).header("Accept", accept).to_bytes(gateway.addr()));
    let rsp = conn.read_response("HEAD");
    let rest = conn.read_to_end().unwrap_or_default();
    (rsp, rest)
}

#[test]
fn head_of_a_manifest_keeps_length_digest_and_type_with_an_empty_body() {
    let s = setup();
    let (manifest, digest, layer) = push_image(&s.gateway, "heads/repo", &["v1"], 6);

    let (rsp, rest) = head_and_trailing_bytes(&s.gateway, "/v2/heads/repo/manifests/v1", MEDIA_MANIFEST);
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_eq!(
        rsp.header("content-length"),
        Some(manifest.len().to_string().as_str()),
        "{}",
        rsp.describe()
    );
    assert_eq!(
        rsp.header("docker-content-digest"),
        Some(digest.as_str()),
        "{}",
        rsp.describe()
    );
    assert_eq!(rsp.header("content-type"), Some(MEDIA_MANIFEST), "{}", rsp.describe());
    assert!(rest.is_empty(), "HEAD response carried {} body bytes", rest.len());

    let (rsp, rest) = head_and_trailing_bytes(&s.gateway, &format!("/v2/heads/repo/blobs/{layer}"), "*/*");
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);
    assert_eq!(rsp.header("content-length"), Some("4102"), "{}", rsp.describe());
    assert_eq!(
        rsp.header("docker-content-digest"),
        Some(layer.as_str()),
        "{}",
        rsp.describe()
    );
    assert!(rest.is_empty(), "HEAD response carried {} body bytes", rest.len());

    // GET returns the very bytes that were pushed.
    let rsp = Request::get("/v2/heads/repo/manifests/v1")
        .header("Accept", MEDIA_MANIFEST)
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert!(rsp.body == manifest, "manifest bytes differ");
}

#[test]
fn deleting_a_blob_and_a_manifest_answers_202_and_then_404() {
    let s = setup();
    let (_, manifest_digest, layer) = push_image(&s.gateway, "deletes/repo", &["v1"], 7);

    let rsp = Request::delete(&format!("/v2/deletes/repo/manifests/{manifest_digest}")).send(s.gateway.addr());
    assert_eq!(rsp.status, 202, "manifest DELETE:\n{}", rsp.describe());
    assert_api_version_once(&rsp);
    let rsp = Request::get(&format!("/v2/deletes/repo/manifests/{manifest_digest}"))
        .header("Accept", MEDIA_MANIFEST)
        .send(s.gateway.addr());
    assert_eq!(rsp.status, 404, "{}", rsp.describe());
    assert_api_version_once(&rsp);

    let rsp = Request::delete(&format!("/v2/deletes/repo/blobs/{layer}")).send(s.gateway.addr());
    assert_eq!(rsp.status, 202, "blob DELETE:\n{}", rsp.describe());
    assert_api_version_once(&rsp);
    let rsp = Request::head(&format!("/v2/deletes/repo/blobs/{layer}")).send(s.gateway.addr());
    assert_eq!(rsp.status, 404, "{}", rsp.describe());
    assert!(!s.registry.has_blob("deletes/repo", &layer));
}

#[test]
fn tags_list_and_catalog() {
    let s = setup();
    push_image(&s.gateway, "lists/alpha", &["v1", "v2"], 8);
    push_image(&s.gateway, "lists/beta", &["latest"], 9);

    let rsp = Request::get("/v2/lists/alpha/tags/list").send(s.gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);
    let v = rsp.json();
    assert_eq!(v["name"], "lists/alpha", "{}", rsp.describe());
    let mut tags: Vec<&str> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);

    let rsp = Request::get("/v2/_catalog").send(s.gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);
    let v = rsp.json();
    let repos: Vec<&str> = v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        repos.contains(&"lists/alpha") && repos.contains(&"lists/beta"),
        "{}",
        rsp.describe()
    );
}

#[test]
fn cross_repo_mount_with_encoded_from_answers_201() {
    let s = setup();
    let data = random_bytes(10, 77_777);
    let digest = push_blob(&s.gateway, "library/base", &data);

    let rsp = Request::post(&format!(
        "/v2/other/app/blobs/uploads/?mount={digest}&from=library%2Fbase"
    ))
    .send(s.gateway.addr());
    assert_eq!(
        rsp.status,
        201,
        "cross-repo mount must be 201 (not 202: that is a fallback upload):\n{}",
        rsp.describe()
    );
    assert_api_version_once(&rsp);
    assert_eq!(rsp.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        assert_location_at_gateway(&rsp, &s.gateway),
        format!("{}/v2/other/app/blobs/{digest}", s.gateway.url())
    );
    assert_blob_served(&s.gateway, "other/app", &digest, &data);
}

#[test]
fn api_version_header_appears_exactly_once_on_v2_responses() {
    let s = setup();
    for target in [
        "/v2/",
        "/v2/_catalog",
        "/v2/no/such/repo/tags/list",
        "/v2/no/such/manifests/latest",
    ] {
        let rsp = Request::get(target).send(s.gateway.addr());
        assert!(rsp.status == 200 || rsp.status == 404, "{target}:\n{}", rsp.describe());
        assert_api_version_once(&rsp);
    }
    let rsp = Request::head("/v2/").send(s.gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);
}
