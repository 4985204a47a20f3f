//! Which upstream a mirror request goes to (containerd's `?ns=`, Docker
//! Hub's aliases), writes through a caching registry (forwarded with the
//! gateway's login and invalidating the tag, or refused with `push: deny`),
//! and tokens the gateway fetches once per scope. Real registry:2 upstreams.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

const MIRROR_PASSWORD: &str = "mirror-routing-secret-2";

/// Pushes a small image (seeded by `seed`) to `registry` as `team/app:1.0`,
/// with `creds` when it wants them.
fn push_small(registry: &Registry, seed: u64, work: &std::path::Path, creds: Option<&str>) -> OciImage {
    let image = OciImageBuilder::new(seed)
        .layer(200 * 1024 + seed % 1000)
        .layer(4096)
        .write(&work.join(format!("src-{seed:x}")), "1.0");
    let dest = format!("{}/team/app:1.0", registry.addr());
    let out = match creds {
        Some(c) => skopeo_push_with_creds(&image, &dest, Some(c)),
        None => skopeo_copy_up(&image, &dest, &["--dest-tls-verify=false"]),
    };
    assert!(
        out.status.success(),
        "direct push to {dest}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

fn get_manifest(target: &str) -> Request {
    Request::get(target).header("Accept", ACCEPT_MANIFESTS)
}

#[test]
fn ns_routes_to_two_upstreams_and_refuses_unknown_ones() {
    require_tool(SKOPEO_BIN, "skopeo");
    let work = tempfile::tempdir().unwrap();
    let secure = Registry::start();
    let basic = Registry::start();
    let image_s = push_small(&secure, 0x5001, work.path(), None);
    let image_b = push_small(&basic, 0xb002, work.path(), None);
    let gateway = MirrorConfig::new("secure")
        .upstream(MirrorUpstream::new("secure", &secure.url()))
        .upstream(MirrorUpstream::new("basic", &basic.url()))
        .ns("secure.test", "secure")
        .ns("basic.test", "basic")
        .start();
    let gw = gateway.addr();
    let manifest = "/v2/team/app/manifests/1.0";
    let seen = || (secure.count("GET", manifest), basic.count("GET", manifest));

    for (query, want, reached) in [
        ("?ns=secure.test", &image_s, (1, 0)),
        ("?ns=basic.test", &image_b, (1, 1)),
        ("", &image_s, (2, 1)),
    ] {
        let rsp = get_manifest(&format!("{manifest}{query}")).send(gw);
        assert_eq!(rsp.status, 200, "{query:?}:\n{}", rsp.describe());
        assert_eq!(
            sha256_bytes(&rsp.body),
            want.manifest.digest,
            "{query:?} reached the wrong upstream"
        );
        assert!(
            wait_until(Duration::from_secs(5), || seen() == reached),
            "{query:?}: upstream GETs {:?}",
            seen()
        );
    }

    let rsp = get_manifest(&format!("{manifest}?ns=quay.io")).send(gw);
    assert_json_error(&rsp, 404, "NAME_UNKNOWN");
    let rsp = get_manifest(&format!("{manifest}?ns=secure.test&ns=basic.test")).send(gw);
    assert_eq!(rsp.status, 400, "two ns values:\n{}", rsp.describe());

    // An ns naming a reachable host:port is a name, never an address.
    let listener = TcpListener::bind(free_addr()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let probe = listener.local_addr().unwrap();
    for target in [
        format!("{manifest}?ns={probe}"),
        format!("/v2/team/app/blobs/{}?ns={probe}", image_s.layers[0].digest),
    ] {
        let rsp = get_manifest(&target).send(gw);
        assert_json_error(&rsp, 404, "NAME_UNKNOWN");
    }
    std::thread::sleep(Duration::from_millis(500));
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("the gateway connected to the ns value {probe} (from {from})"),
        Err(e) => panic!("accept on {probe}: {e}"),
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(seen(), (2, 1), "refused requests reached an upstream");

    // Docker Hub's three names are one.
    let hub = MirrorConfig::new("secure")
        .upstream(MirrorUpstream::new("secure", &secure.url()))
        .upstream(MirrorUpstream::new("basic", &basic.url()))
        .ns("docker.io", "basic")
        .start();
    for (i, alias) in ["index.docker.io", "registry-1.docker.io", "docker.io"]
        .iter()
        .enumerate()
    {
        let rsp = get_manifest(&format!("{manifest}?ns={alias}")).send(hub.addr());
        assert_eq!(rsp.status, 200, "ns={alias}:\n{}", rsp.describe());
        assert_eq!(
            sha256_bytes(&rsp.body),
            image_b.manifest.digest,
            "ns={alias} reached the wrong upstream"
        );
        let want = (2, 2 + i);
        assert!(
            wait_until(Duration::from_secs(5), || seen() == want),
            "ns={alias}: {:?}",
            seen()
        );
    }
}

#[test]
fn a_push_through_a_cached_registry_lands_upstream_and_invalidates_the_tag() {
    require_tool(SKOPEO_BIN, "skopeo");
    let work = tempfile::tempdir().unwrap();
    let decoy = Registry::start();
    let basic = Registry::start_htpasswd("mirror", MIRROR_PASSWORD);
    let old = push_small(&basic, 0x01d, work.path(), Some(&basic.creds()));
    let cache = tempfile::tempdir().unwrap();
    let secret = write_secret(work.path(), "basic-password", MIRROR_PASSWORD);
    let gateway = MirrorConfig::new("decoy")
        .upstream(MirrorUpstream::new("decoy", &decoy.url()))
        .upstream(MirrorUpstream::new("basic", &basic.url()).password_file("mirror", &secret))
        .ns("basic.test", "basic")
        .ns_in_path()
        .cache(CacheSpec::new(cache.path()).tag_ttl("10m"))
        .start();
    let reference = format!("{}/basic.test/team/app:1.0", gateway.addr());

    let pulled = skopeo_pull(&reference, &work.path().join("pull-old"), "1.0");
    assert_eq!(pulled.manifest.digest, old.manifest.digest);

    let new = OciImageBuilder::new(0x2e3)
        .layer(150 * 1024)
        .layer(33 * 1024)
        .write(&work.path().join("src-new"), "1.0");
    let out = skopeo_push_with_creds(&new, &reference, None);
    assert!(
        out.status.success(),
        "push through the mirror without credentials:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log(), 3000)
    );
    let rsp = Request::head("/v2/team/app/manifests/1.0")
        .header("Accept", ACCEPT_MANIFESTS)
        .header("Authorization", &basic_auth(&basic.user, &basic.password))
        .send(basic.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(
        rsp.header("docker-content-digest"),
        Some(new.manifest.digest.as_str()),
        "the upstream's tag after the push:\n{}",
        rsp.describe()
    );

    // At once, with a 10 min tag TTL: the push dropped the cached tag.
    let again = skopeo_pull(&reference, &work.path().join("pull-new"), "1.0");
    assert_eq!(
        again.manifest.digest, new.manifest.digest,
        "the mirror still serves the old tag"
    );
    assert_eq!(again.layers, new.layers);
    again.verify_files();
    assert!(
        decoy.requests().iter().all(|l| !l.target.contains("team/app")),
        "part of the push went to the default upstream:\n{}",
        decoy.access_log().join("\n")
    );
}

#[test]
fn push_deny_answers_405_unsupported() {
    require_tool(SKOPEO_BIN, "skopeo");
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let image = push_small(&registry, 0xde7, work.path(), None);
    let cache = tempfile::tempdir().unwrap();
    let gateway = MirrorConfig::new("origin")
        .upstream(MirrorUpstream::new("origin", &registry.url()))
        .push_deny()
        .cache(CacheSpec::new(cache.path()))
        .start();
    let gw = gateway.addr();
    let manifest_bytes = std::fs::read(image.blob_path(&image.manifest.digest)).unwrap();
    let layer = &image.layers[0].digest;
    let writes_before = write_lines(&registry);

    for req in [
        Request::post("/v2/team/app/blobs/uploads/"),
        Request::post(&format!("/v2/team/app/blobs/uploads/?digest={layer}")).body(b"x".to_vec()),
        Request::patch("/v2/team/app/blobs/uploads/0123-abcd").body(vec![7u8; 1024]),
        Request::put("/v2/team/app/blobs/uploads/0123-abcd?digest=sha256:00").body(vec![7u8; 16]),
        Request::put("/v2/team/app/manifests/1.0")
            .header("Content-Type", MEDIA_MANIFEST)
            .body(manifest_bytes.clone()),
        Request::delete(&format!("/v2/team/app/manifests/{}", image.manifest.digest)),
        Request::delete(&format!("/v2/team/app/blobs/{layer}")),
    ] {
        let what = String::from_utf8_lossy(&req.head_bytes(gw))
            .lines()
            .next()
            .unwrap()
            .to_string();
        let rsp = req.send(gw);
        assert_eq!(rsp.status, 405, "{what}:\n{}", rsp.describe());
        assert_json_error(&rsp, 405, "UNSUPPORTED");
    }
    let out = skopeo_push_with_creds(&image, &format!("{gw}/team/other:1.0"), None);
    assert!(!out.status.success(), "skopeo pushed through a push: deny mirror");

    // Reads still work.
    let rsp = get_manifest("/v2/team/app/manifests/1.0").send(gw);
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(sha256_bytes(&rsp.body), image.manifest.digest);
    let blob = Request::get(&format!("/v2/team/app/blobs/{layer}")).send_hashing(gw);
    assert!(blob.served_whole(), "{}", blob.describe());
    assert_eq!(&blob.sha256, layer);
    let pulled = skopeo_pull(&format!("{gw}/team/app:1.0"), &work.path().join("pulled"), "1.0");
    assert_eq!(pulled.manifest.digest, image.manifest.digest);

    std::thread::sleep(Duration::from_millis(300));
    let writes = write_lines(&registry);
    assert_eq!(
        writes.len(),
        writes_before.len(),
        "a write reached the upstream: {:?}",
        &writes[writes_before.len().min(writes.len())..]
    );
}

/// The registry's requests other than GET and HEAD.
fn write_lines(registry: &Registry) -> Vec<AccessLine> {
    (registry.requests().into_iter())
        .filter(|l| !matches!(l.method.as_str(), "GET" | "HEAD"))
        .collect()
}

#[test]
fn tokens_are_cached_per_scope() {
    require_tool(SKOPEO_BIN, "skopeo");
    let work = tempfile::tempdir().unwrap();
    let issuer = TokenServer::start(
        &[&format!("mirror:{MIRROR_PASSWORD}"), "publisher:publisher-pw-4"],
        false,
    );
    let registry = Registry::start_token_auth(&issuer);
    let app = push_small(&registry, 0x70c1, work.path(), Some("publisher:publisher-pw-4"));
    let other = OciImageBuilder::new(0x70c2)
        .layer(5000)
        .write(&work.path().join("other"), "1.0");
    let out = skopeo_push_with_creds(
        &other,
        &format!("{}/team/other:1.0", registry.addr()),
        Some("publisher:publisher-pw-4"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cache = tempfile::tempdir().unwrap();
    let secret = write_secret(work.path(), "mirror-password", MIRROR_PASSWORD);
    let gateway = MirrorConfig::new("origin")
        .upstream(MirrorUpstream::new("origin", &registry.url()).password_file("mirror", &secret))
        .cache(CacheSpec::new(cache.path()).tag_ttl("0s"))
        .start();
    // The pushes' own token requests are all in before counting starts.
    std::thread::sleep(Duration::from_millis(500));
    let before = issuer.requests().len();
    let new_tokens = || issuer.requests()[before..].to_vec();

    for (repo, image, total) in [("team/app", &app, 1usize), ("team/other", &other, 2)] {
        let path = format!("/v2/{repo}/manifests/1.0");
        let authorized = || registry.count_ok("HEAD", &path) + registry.count_ok("GET", &path);
        let authorized_before = authorized();
        for i in 0..5 {
            let rsp = get_manifest(&path).send(gateway.addr());
            assert_eq!(rsp.status, 200, "{repo} GET {i}:\n{}", rsp.describe());
            assert_eq!(sha256_bytes(&rsp.body), image.manifest.digest, "{repo} GET {i}");
        }
        std::thread::sleep(Duration::from_millis(300));
        let tokens = new_tokens();
        assert_eq!(tokens.len(), total, "token requests after 5 GETs of {repo}: {tokens:?}");
        let last = &tokens[total - 1];
        assert_eq!(last["user"], "mirror", "{last}");
        assert_eq!(last["status"], 200, "{last}");
        assert!(
            last["scopes"].to_string().contains(repo),
            "the token for {repo} names its scope: {last}"
        );
        // tag_ttl 0s: every GET revalidated upstream, with the one token.
        let upstream = authorized() - authorized_before;
        assert!(
            upstream >= 5,
            "{repo}: {upstream} authorized manifest requests upstream, want >= 5"
        );
    }
    let fetched = metric(
        &gateway,
        "registry_gateway_upstream_token_fetches_total",
        &[("result", "success")],
    );
    assert_eq!(fetched, 2.0, "{}", mirror_metrics(&gateway));
}
