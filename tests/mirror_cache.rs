//! The mirror's blob cache against a real registry:2, with a [`Tap`] in
//! between where the upstream must be slow or lie: one upstream download
//! however many clients wait for it, nothing unverified ever committed or
//! served whole, ranges from disk, a size bound, and a cache directory that
//! outlives its gateway (cleanly stopped or killed mid-fill).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

/// A gateway whose default registry `mirror` caches in `cache.dir`, its
/// one upstream `origin` at `url`.
fn mirror(url: &str, cache: CacheSpec) -> MirrorConfig {
    MirrorConfig::new("origin")
        .upstream(MirrorUpstream::new("origin", url))
        .cache(cache)
}

/// Pushes a one-layer image of `size` bytes to `registry` as `repo:1` and
/// removes the local copy; the layer's blob.
fn push_layer(registry: &Registry, repo: &str, seed: u64, size: u64) -> Blob {
    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(seed)
        .layer(size)
        .write(&work.path().join("src"), "1");
    skopeo_push(&image, &format!("{}/{repo}:1", registry.addr()));
    image.layers[0].clone()
}

#[track_caller]
fn assert_served(rsp: &Hashed, digest: &str, size: u64, what: &str) {
    assert!(rsp.served_whole(), "{what}: not served whole:\n{}", rsp.describe());
    assert_eq!(
        (rsp.len, rsp.sha256.as_str()),
        (size, digest),
        "{what}:\n{}",
        rsp.describe()
    );
}

#[test]
fn ten_concurrent_pulls_of_an_uncached_blob_make_one_upstream_get() {
    require_tool(SKOPEO_BIN, "skopeo");
    let cache = tempfile::tempdir().unwrap();
    require_free_space(cache.path(), 1200 * MIB);
    let registry = Registry::start();
    let blob = push_layer(&registry, "team/big", 0xc011_a95e, 256 * MIB);
    let tap = Tap::start(registry.addr());
    tap.set_rate(Some(64 * MIB));
    let gateway = mirror(&tap.url(), CacheSpec::new(cache.path())).start();

    let path = format!("/v2/team/big/blobs/{}", blob.digest);
    let barrier = Arc::new(Barrier::new(10));
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (barrier, path, addr) = (barrier.clone(), path.clone(), gateway.addr());
            std::thread::spawn(move || {
                barrier.wait();
                Request::get(&path).send_hashing(addr)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert_served(&c.join().unwrap(), &blob.digest, blob.size, &format!("client {i}"));
    }
    assert_gets(&registry, &blob.digest, 1, "ten clients at once", false);
    let collapsed = metric(
        &gateway,
        "registry_gateway_cache_collapsed_total",
        &[("registry", "mirror")],
    );
    assert_eq!(
        collapsed,
        9.0,
        "nine clients should have followed the one fill:\n{}",
        mirror_metrics(&gateway)
    );
    assert!(
        cached_blob_path(cache.path(), &blob.digest).is_file(),
        "the blob was not committed"
    );
}

#[test]
fn a_corrupted_blob_is_never_committed_and_never_served_whole() {
    let registry = Registry::start();
    let data = random_bytes(0xbad_b10b, 8 * MIB as usize + 333);
    let digest = registry.push_blob("team/app", &data);
    let tap = Tap::start(registry.addr());
    tap.flip_blob(Some(&digest));
    let cache = tempfile::tempdir().unwrap();
    let gateway = mirror(&tap.url(), CacheSpec::new(cache.path()).mismatch_backoff("2s")).start();
    let get = Request::get(&format!("/v2/team/app/blobs/{digest}"));
    let never_whole_and_wrong = |rsp: &Hashed| {
        assert!(
            !(rsp.complete && (200..300).contains(&rsp.status) && rsp.sha256 != digest),
            "a complete response with the wrong content:\n{}",
            rsp.describe()
        );
    };

    let first = get.send_hashing(gateway.addr());
    let first_done = Instant::now();
    never_whole_and_wrong(&first);
    assert!(tap.flipped() >= 1, "the tap corrupted nothing");
    assert!(
        !first.served_whole(),
        "the corrupted blob was served whole:\n{}",
        first.describe()
    );
    assert!(
        gateway.wait_for_log("does not match its digest", Duration::from_secs(5)),
        "no digest warning in the log:\n{}",
        tail(&gateway.log(), 3000)
    );
    let fetched = registry.count("GET", &digest);
    assert!(fetched >= 1, "the first request never reached the upstream");

    // Within the backoff: refused without asking the upstream.
    let second = get.send_hashing(gateway.addr());
    never_whole_and_wrong(&second);
    assert_eq!(second.status, 502, "within mismatch_backoff:\n{}", second.describe());
    assert!(
        second
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{}",
        second.describe()
    );
    let body: serde_json::Value = serde_json::from_slice(&second.prefix)
        .unwrap_or_else(|e| panic!("502 body is not JSON ({e}):\n{}", second.describe()));
    assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()), "{body}");
    assert!(
        first_done.elapsed() < Duration::from_secs(2),
        "the checks took longer than the backoff"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        registry.count("GET", &digest),
        fetched,
        "a request within the backoff reached the upstream"
    );

    let mismatches = metric(&gateway, "registry_gateway_cache_digest_mismatches_total", &[]);
    assert_eq!(mismatches, 1.0, "{}", mirror_metrics(&gateway));
    assert!(
        !cached_blob_path(cache.path(), &digest).exists(),
        "a corrupted blob was committed"
    );
    assert!(
        wait_until(Duration::from_secs(2), || part_files(cache.path()).is_empty()),
        "the failed fill left {:?}",
        part_files(cache.path())
    );

    // After the backoff, with the upstream honest again.
    tap.flip_blob(None);
    std::thread::sleep((first_done + Duration::from_millis(2500)).saturating_duration_since(Instant::now()));
    let third = get.send_hashing(gateway.addr());
    never_whole_and_wrong(&third);
    assert_served(&third, &digest, data.len() as u64, "after the backoff");
    let committed = cached_blob_path(cache.path(), &digest);
    assert!(
        wait_until(Duration::from_secs(5), || committed.is_file()),
        "the good blob was not committed"
    );
    assert_eq!(sha256_file(&committed).0, digest);
}

#[test]
fn range_requests_are_served_from_the_cache() {
    let registry = Registry::start();
    let data = random_bytes(0x4a9e, MIB as usize + 123);
    let size = data.len();
    let digest = registry.push_blob("team/app", &data);
    let cache = tempfile::tempdir().unwrap();
    let gateway = mirror(&registry.url(), CacheSpec::new(cache.path())).start();
    let path = format!("/v2/team/app/blobs/{digest}");

    let first = Request::get(&path).send_hashing(gateway.addr());
    assert_served(&first, &digest, size as u64, "the first GET");
    assert!(
        first
            .header("cache-status")
            .is_some_and(|v| v.contains("registry-gateway") && v.contains("fwd=miss")),
        "a fill from the upstream is a miss:\n{}",
        first.describe()
    );
    let committed = cached_blob_path(cache.path(), &digest);
    assert!(
        wait_until(Duration::from_secs(5), || committed.is_file()),
        "not committed"
    );
    std::thread::sleep(Duration::from_millis(300));
    let lines = registry.access_log().len();

    let rsp = Request::get(&path)
        .header("Range", "bytes=100-199")
        .send(gateway.addr());
    assert_eq!(rsp.status, 206, "{}", rsp.describe());
    assert_eq!(
        rsp.header("content-range"),
        Some(format!("bytes 100-199/{size}").as_str()),
        "{}",
        rsp.describe()
    );
    assert_eq!(rsp.body, data[100..200], "the range's bytes");
    assert!(
        rsp.header("cache-status").is_some_and(|v| v.contains("hit")),
        "a range of a cached blob is a hit:\n{}",
        rsp.describe()
    );
    let rsp = Request::get(&path)
        .header("Range", &format!("bytes={size}-"))
        .send_head_only(gateway.addr());
    assert_eq!(rsp.status, 416, "a range past the end:\n{}", rsp.describe());

    std::thread::sleep(Duration::from_millis(300));
    let log = registry.access_log();
    assert_eq!(
        log.len(),
        lines,
        "ranges reached the upstream:\n{}",
        log[lines..].join("\n")
    );
    for field in ["cache=miss", "cache=hit"] {
        assert!(
            gateway.wait_for_log(field, Duration::from_secs(5)),
            "no access-log line with {field}:\n{}",
            tail(&gateway.log(), 3000)
        );
    }
}

#[test]
fn eviction_keeps_the_cache_within_max_size() {
    let registry = Registry::start();
    let blobs: Vec<(String, Vec<u8>)> = (0..6u64)
        .map(|i| {
            let data = random_bytes(0xe71c + i, 20 * MIB as usize);
            (registry.push_blob("team/evict", &data), data)
        })
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let gateway = mirror(&registry.url(), CacheSpec::new(cache.path()).max_size("64MiB")).start();
    let get = |digest: &str| Request::get(&format!("/v2/team/evict/blobs/{digest}")).send_hashing(gateway.addr());
    let size_metric = || metric(&gateway, "registry_gateway_cache_size_bytes", &[]);

    for (i, (digest, data)) in blobs.iter().enumerate() {
        assert_served(&get(digest), digest, data.len() as u64, &format!("blob {i}"));
        let settled = wait_until(Duration::from_secs(10), || {
            let total = cached_blob_bytes(cache.path());
            total <= 64 * MIB && size_metric() == total as f64
        });
        assert!(
            settled,
            "after blob {i}: {} bytes under blobs/ (max 64 MiB), size metric {}:\n{:?}\n{}",
            cached_blob_bytes(cache.path()),
            size_metric(),
            cached_blob_files(cache.path()),
            mirror_metrics(&gateway)
        );
    }
    let evictions = metric(&gateway, "registry_gateway_cache_evictions_total", &[]);
    assert!(evictions > 0.0, "nothing evicted:\n{}", mirror_metrics(&gateway));
    assert!(metric(&gateway, "registry_gateway_cache_evicted_bytes_total", &[]) >= (20 * MIB) as f64);

    // The first blob was evicted: fetched again, and served right.
    let (first, data) = &blobs[0];
    assert_served(&get(first), first, data.len() as u64, "the evicted blob again");
    assert_gets(&registry, first, 2, "the evicted blob", false);
}

#[test]
fn a_restarted_gateway_serves_its_cache_with_its_upstream_gone() {
    require_tool(SKOPEO_BIN, "skopeo");
    let mut registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(0x2e57)
        .layer(300 * 1024)
        .layer(MIB + 77)
        .write(&work.path().join("src"), "1");
    skopeo_push(&image, &format!("{}/team/app:1", registry.addr()));
    let cache = tempfile::tempdir().unwrap();
    let config = mirror(&registry.url(), CacheSpec::new(cache.path()).tag_ttl("10m"));

    let mut first = config.start();
    let pulled = skopeo_pull(
        &format!("{}/team/app:1", first.addr()),
        &work.path().join("pull-1"),
        "1",
    );
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    first.signal("TERM");
    assert!(
        first.wait_exit(Duration::from_secs(15)).is_some(),
        "the gateway did not exit on SIGTERM:\n{}",
        tail(&first.log(), 3000)
    );
    registry.kill();

    let second = config.start();
    let rsp = Request::get("/v2/").send(second.addr());
    assert_eq!(
        rsp.status,
        200,
        "GET /v2/ of a cached registry, upstream gone:\n{}",
        rsp.describe()
    );
    let out = skopeo_pull_with_creds(
        &format!("{}/team/app:1", second.addr()),
        &work.path().join("pull-2"),
        "1",
        None,
    );
    assert!(
        out.status.success(),
        "pull from the restarted gateway with the upstream gone:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&second.log(), 3000)
    );
    let again = OciImage::read(&work.path().join("pull-2"), "1");
    assert_eq!(again.manifest.digest, image.manifest.digest);
    assert_eq!(again.layers, image.layers);
    again.verify_files();

    assert!(
        second.wait_for_log("indexed ", Duration::from_secs(10)),
        "{}",
        second.log()
    );
    let files = cached_blob_files(cache.path());
    assert!(files.len() >= 3, "config and two layers under blobs/: {files:?}");
    assert_eq!(
        indexed_blobs(&second.log()),
        Some(files.len() as u64),
        "the start-up index line must count the committed blobs:\n{}",
        tail(&second.log(), 3000)
    );
}

#[test]
fn a_crash_mid_fill_leaves_nothing_servable() {
    require_tool(SKOPEO_BIN, "skopeo");
    let cache = tempfile::tempdir().unwrap();
    require_free_space(cache.path(), 1200 * MIB);
    let registry = Registry::start();
    let blob = push_layer(&registry, "team/big", 0xc4a5_4001, 256 * MIB);
    let tap = Tap::start(registry.addr());
    tap.set_rate(Some(32 * MIB));
    let config = mirror(&tap.url(), CacheSpec::new(cache.path()));
    let path = format!("/v2/team/big/blobs/{}", blob.digest);

    let mut first = config.start();
    let (p, addr) = (path.clone(), first.addr());
    let client = std::thread::spawn(move || Request::get(&p).send_hashing(addr));
    std::thread::sleep(Duration::from_secs(2));
    first.signal("KILL");
    assert!(
        first.wait_exit(Duration::from_secs(5)).is_some(),
        "SIGKILL did not end the gateway"
    );
    let cut = client.join().unwrap();
    assert!(
        !cut.served_whole(),
        "a 256 MiB blob at 32 MiB/s was whole in 2 s:\n{}",
        cut.describe()
    );

    let parts = part_files(cache.path());
    assert_eq!(parts.len(), 1, "one fill in progress at the crash: {parts:?}");
    assert!(
        !cached_blob_path(cache.path(), &blob.digest).exists(),
        "a blob committed mid-fill"
    );
    assert!(
        cached_blob_files(cache.path()).is_empty(),
        "{:?}",
        cached_blob_files(cache.path())
    );

    tap.set_rate(None);
    let second = config.start();
    let rsp = Request::get(&path).send_hashing(second.addr());
    assert_served(&rsp, &blob.digest, blob.size, "after the restart");
    assert!(
        wait_until(Duration::from_secs(5), || !parts[0].exists()
            && part_files(cache.path()).is_empty()),
        "the dead process's fill was not removed: {:?}",
        part_files(cache.path())
    );
    assert!(
        cached_blob_path(cache.path(), &blob.digest).is_file(),
        "the new fill was not committed"
    );
}
