//! The caching mirror end to end, with skopeo as the client and real
//! registry:2 processes as the remote registries: one gateway host serves a
//! TLS registry with token auth and an htpasswd registry, logging in to each
//! itself, keeps what it pulled, and goes on serving it once the remotes
//! are gone.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

const MIB: u64 = 1 << 20;
const MIRROR_PASSWORD: &str = "mirror-token-secret-5";
const PUBLISHER: &str = "publisher:publisher-secret-7";
const BASIC_PASSWORD: &str = "mirror-basic-secret-9";
/// `password_env` of the htpasswd upstream (set once for the process).
const BASIC_ENV: &str = "REGISTRY_GATEWAY_TEST_BASIC_PASSWORD";
const CACHE_REQUESTS: &str = "registry_gateway_cache_requests_total";

/// Pulls `src` without credentials into `dir` and checks it is `want`, byte
/// for byte; the copy is removed again (the 256 MiB layers add up).
#[track_caller]
fn pull_matches(src: &str, dir: &Path, want: &OciImage) {
    let out = skopeo_pull_with_creds(src, dir, "1.0", None);
    assert!(
        out.status.success(),
        "skopeo pull of {src} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = OciImage::read(dir, "1.0");
    assert_eq!(got.manifest.digest, want.manifest.digest, "manifest of {src}");
    assert_eq!(got.config, want.config, "config of {src}");
    assert_eq!(got.layers, want.layers, "layers of {src}");
    got.verify_files();
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn one_gateway_mirrors_token_and_htpasswd_registries_through_one_host() {
    require_tool(SKOPEO_BIN, "skopeo");
    require_tool(PODMAN_BIN, "podman");
    let work = tempfile::Builder::new().prefix("mirror-pull-").tempdir().unwrap();
    // Two sources, two registries, the cache and one pulled copy at a time.
    require_free_space(work.path(), 2600 * MIB);
    let issuer = TokenServer::start(&[&format!("mirror:{MIRROR_PASSWORD}"), PUBLISHER], false);
    let mut secure = Registry::start_tls_token_auth(&issuer, "mirror", MIRROR_PASSWORD);
    let mut basic = Registry::start_htpasswd("mirror", BASIC_PASSWORD);

    // Same shape, different content: the cache is content-addressed, so one
    // image in both would be fetched from the first upstream only.
    let build = |seed: u64, name: &str| {
        OciImageBuilder::new(seed)
            .layer(256 * MIB)
            .layer(3 * MIB)
            .layer(100 * 1024)
            .write(&work.path().join(name), "1.0")
    };
    let image_s = build(0x5ec0_0001, "src-secure");
    let image_b = build(0xba51_0002, "src-basic");
    for (image, dest, creds) in [
        (
            &image_s,
            format!("{}/team/app:1.0", secure.addr()),
            PUBLISHER.to_string(),
        ),
        (&image_b, format!("{}/team/app:1.0", basic.addr()), basic.creds()),
    ] {
        let out = skopeo_push_with_creds(image, &dest, Some(&creds));
        assert!(
            out.status.success(),
            "direct push to {dest}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let cache = tempfile::tempdir_in(work.path()).unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let secret = write_secret(secrets.path(), "secure-password", MIRROR_PASSWORD);
    export_password_env(BASIC_ENV, BASIC_PASSWORD);
    let gateway = MirrorConfig::new("secure")
        .upstream(
            MirrorUpstream::new("secure", &secure.url())
                .ca(secure.ca().unwrap())
                .password_file("mirror", &secret),
        )
        .upstream(MirrorUpstream::new("basic", &basic.url()).password_env("mirror", BASIC_ENV))
        .ns("secure.test", "secure")
        .ns("basic.test", "basic")
        .ns_in_path()
        .cache(CacheSpec::new(cache.path()).tag_ttl("1s"))
        .start();
    let gw = gateway.addr();
    let via_secure = format!("{gw}/team/app:1.0");
    let via_basic = format!("{gw}/basic.test/team/app:1.0");
    let big_s = format!("/blobs/{}", image_s.layers[0].digest);
    let big_b = format!("/blobs/{}", image_b.layers[0].digest);

    // (1) Cold: each upstream sends its big layer once.
    let tokens_before = issuer.requests().len();
    pull_matches(&via_secure, &work.path().join("pull-1s"), &image_s);
    pull_matches(&via_basic, &work.path().join("pull-1b"), &image_b);
    assert_gets(&secure, &big_s, 1, "token upstream after the first pull", true);
    assert_gets(&basic, &big_b, 1, "htpasswd upstream after the first pull", true);
    assert_eq!(
        basic.count("GET", &big_s) + secure.count("GET", &big_b),
        0,
        "a layer went to the wrong upstream"
    );
    let logins = issuer.requests()[tokens_before..].to_vec();
    assert!(
        logins.iter().any(|r| r["user"] == "mirror" && r["status"] == 200),
        "the gateway never logged in as mirror at the token server: {logins:?}"
    );

    // (2) Warm: nothing reaches either upstream or the token server. By
    // digest, so the 1 s tag TTL does not send a revalidation upstream.
    let lines = (secure.access_log(), basic.access_log());
    let tokens = issuer.requests().len();
    let hits = metric(&gateway, CACHE_REQUESTS, &[("registry", "mirror"), ("result", "hit")]);
    let by_digest_s = format!("{gw}/team/app@{}", image_s.manifest.digest);
    let by_digest_b = format!("{gw}/basic.test/team/app@{}", image_b.manifest.digest);
    pull_matches(&by_digest_s, &work.path().join("pull-2s"), &image_s);
    pull_matches(&by_digest_b, &work.path().join("pull-2b"), &image_b);
    std::thread::sleep(Duration::from_millis(500));
    for (registry, before, name) in [(&*secure, &lines.0, "token"), (&*basic, &lines.1, "htpasswd")] {
        let now = registry.access_log();
        assert_eq!(
            now.len(),
            before.len(),
            "a cached pull reached the {name} upstream:\n{}",
            now[before.len().min(now.len())..].join("\n")
        );
    }
    assert_eq!(
        issuer.requests().len(),
        tokens,
        "a cached pull fetched a token: {:?}",
        issuer.requests()
    );
    let hits_after = metric(&gateway, CACHE_REQUESTS, &[("registry", "mirror"), ("result", "hit")]);
    assert!(
        hits_after > hits,
        "cache hits did not grow ({hits} -> {hits_after}):\n{}",
        mirror_metrics(&gateway)
    );

    // (3) Remotes gone, tag TTL long past: served stale.
    std::thread::sleep(Duration::from_millis(1500));
    secure.kill();
    basic.kill();
    drop(issuer);
    pull_matches(&via_secure, &work.path().join("pull-3s"), &image_s);
    pull_matches(&via_basic, &work.path().join("pull-3b"), &image_b);
    let rsp = Request::head("/v2/team/app/manifests/1.0")
        .header("Accept", ACCEPT_MANIFESTS)
        .send(gw);
    assert_eq!(rsp.status, 200, "stale tag with the upstream down:\n{}", rsp.describe());
    assert!(
        rsp.header("cache-status")
            .is_some_and(|v| v.contains("registry-gateway") && v.contains("detail=stale")),
        "a tag past its TTL served while the upstream is down must say so:\n{}",
        rsp.describe()
    );
    assert_eq!(
        rsp.header("docker-content-digest"),
        Some(image_s.manifest.digest.as_str()),
        "{}",
        rsp.describe()
    );
    let stale = metric(&gateway, CACHE_REQUESTS, &[("registry", "mirror"), ("result", "stale")]);
    assert!(stale > 0.0, "no stale answers counted:\n{}", mirror_metrics(&gateway));
    assert!(
        gateway.wait_for_log("cache=stale", Duration::from_secs(5)),
        "no access-log line with cache=stale:\n{}",
        tail(&gateway.log(), 4000)
    );

    // (4) podman, pulling by the upstream's own name with the documented
    // registries.conf mirror: with the upstream gone, only the mirror can answer.
    let podman_dir = work.path().join("podman");
    std::fs::create_dir_all(&podman_dir).unwrap();
    let conf = podman_mirror_conf(&podman_dir, &basic.addr().to_string(), &format!("{gw}/basic.test"));
    let reference = format!("{}/team/app:1.0", basic.addr());
    let out = podman_pull(&podman_dir, &conf, &reference);
    assert!(
        out.status.success(),
        "podman pull {reference} through the mirror:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log(), 3000)
    );
    assert_eq!(podman_digest(&podman_dir, &conf, &reference), image_b.manifest.digest);
}

#[test]
fn client_authorization_never_reaches_a_mirrored_upstream() {
    require_tool(SKOPEO_BIN, "skopeo");
    const ALICE: &str = "alice-gateway-pw-3";
    let basic = Registry::start_htpasswd("mirror", BASIC_PASSWORD);
    let alice = basic_auth("alice", ALICE);
    // Control: the upstream itself refuses alice.
    let rsp = Request::get("/v2/").header("Authorization", &alice).send(basic.addr());
    assert_eq!(rsp.status, 401, "registry:2 must refuse alice:\n{}", rsp.describe());

    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(0xa11c)
        .layer(700 * 1024)
        .layer(64 * 1024 + 5)
        .write(&work.path().join("src"), "1.0");
    let out = skopeo_push_with_creds(&image, &format!("{}/team/app:1.0", basic.addr()), Some(&basic.creds()));
    assert!(
        out.status.success(),
        "direct push:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cache = tempfile::tempdir().unwrap();
    let secret = write_secret(work.path(), "basic-password", BASIC_PASSWORD);
    let gateway = MirrorConfig::new("basic")
        .upstream(MirrorUpstream::new("basic", &basic.url()).password_file("mirror", &secret))
        .cache(CacheSpec::new(cache.path()))
        .htpasswd_user("alice", ALICE)
        .start();
    let gw = gateway.addr();

    // The gateway's own auth is on.
    let layer = &image.layers[1];
    let path = format!("/v2/team/app/blobs/{}", layer.digest);
    let rsp = Request::get(&path).send(gw);
    assert_eq!(rsp.status, 401, "no credentials at the gateway:\n{}", rsp.describe());
    let rsp = Request::get(&path)
        .header("Authorization", &basic_auth("alice", "wrong"))
        .send(gw);
    assert_eq!(rsp.status, 401, "a wrong password at the gateway:\n{}", rsp.describe());
    assert_eq!(
        basic.count("GET", &layer.digest),
        0,
        "refused requests reached the upstream"
    );

    // Alice's header on an uncached blob: the upstream sees the mirror login.
    let got = Request::get(&path).header("Authorization", &alice).send_hashing(gw);
    assert!(got.served_whole(), "blob with alice's credentials:\n{}", got.describe());
    assert_eq!(got.sha256, layer.digest, "{}", got.describe());
    assert_gets(&basic, &layer.digest, 1, "the uncached blob", true);

    // Tag lists are proxied, not cached: the gateway's login replaces alice's.
    let rsp = Request::get("/v2/team/app/tags/list")
        .header("Authorization", &alice)
        .send(gw);
    assert_eq!(
        rsp.status,
        200,
        "proxied tags/list with alice's credentials:\n{}",
        rsp.describe()
    );
    assert_eq!(rsp.json()["tags"], serde_json::json!(["1.0"]), "{}", rsp.describe());

    // A real client logging in as alice.
    let dir = work.path().join("pulled");
    let out = skopeo_pull_with_creds(
        &format!("{gw}/team/app:1.0"),
        &dir,
        "1.0",
        Some(&format!("alice:{ALICE}")),
    );
    assert!(
        out.status.success(),
        "skopeo pull as alice through the gateway:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log(), 3000)
    );
    let pulled = OciImage::read(&dir, "1.0");
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    assert_eq!(pulled.layers, image.layers);
    pulled.verify_files();
    assert_gets(
        &basic,
        &image.layers[0].digest,
        1,
        "the layer skopeo fetched first",
        true,
    );
}
