//! End to end with a real client: skopeo pushes a multi-layer image (one
//! layer over 1 GiB) through the gateway and pulls it back, and every digest
//! survives the round trip while the gateway's memory stays small.
//!
//! Run it in release: `cargo test --release --test push_pull`.

mod common;

use common::*;

const MIB: u64 = 1 << 20;

/// Size of the big layer's payload: 1 GiB plus an odd tail so that nothing
/// lines up with buffer sizes. `REGISTRY_GATEWAY_BIG_LAYER_MIB` may raise it.
fn big_layer_size() -> u64 {
    let mib = std::env::var("REGISTRY_GATEWAY_BIG_LAYER_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1024)
        .max(1024);
    mib * MIB + 4097
}

/// The gateway must stream: its peak RSS stays under this however big the
/// blobs are.
const PEAK_RSS_LIMIT_KIB: u64 = 100 * 1024;

#[test]
fn skopeo_round_trips_a_multi_gigabyte_image_through_the_gateway_with_identical_digests() {
    require_tool(SKOPEO_BIN, "skopeo");
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    let work = tempfile::Builder::new().prefix("push-pull-").tempdir().unwrap();

    let source = OciImageBuilder::new(0x5eed)
        .layer(3 * 1024 + 5)
        .layer(MIB + 77)
        .layer(big_layer_size())
        .write(&work.path().join("source"), "v1");
    assert!(source.layers[2].size >= 1 << 30, "the big layer must be at least 1 GiB");

    let reference = format!("{}/team/big-image:v1", gateway.addr());
    skopeo_push(&source, &reference);

    // What the upstream stored is byte for byte what was pushed.
    for blob in source.all_blobs() {
        let stored = registry.blob_path(&blob.digest);
        assert!(
            stored.exists(),
            "the upstream has no blob {} ({}) after the push",
            blob.digest,
            blob.media_type
        );
        let (digest, size) = sha256_file(&stored);
        assert_eq!(digest, blob.digest, "upstream copy of {} is corrupt", blob.media_type);
        assert_eq!(
            size, blob.size,
            "upstream copy of {} has the wrong size",
            blob.media_type
        );
    }
    // And the upstream serves the tag as the same manifest digest.
    let rsp = Request::head("/v2/team/big-image/manifests/v1")
        .header("Accept", MEDIA_MANIFEST)
        .send(registry.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_eq!(
        rsp.header("docker-content-digest"),
        Some(source.manifest.digest.as_str()),
        "the upstream's tag points at another manifest"
    );

    // Pull it back through the gateway into a fresh layout.
    let pulled = skopeo_pull(&reference, &work.path().join("pulled"), "v1");
    assert_eq!(
        pulled.manifest.digest, source.manifest.digest,
        "manifest digest changed"
    );
    assert_eq!(pulled.config.digest, source.config.digest, "config digest changed");
    assert_eq!(
        pulled.layers.iter().map(|l| (&l.digest, l.size)).collect::<Vec<_>>(),
        source.layers.iter().map(|l| (&l.digest, l.size)).collect::<Vec<_>>(),
        "layer digests or sizes changed"
    );
    // The pulled files really hash to those digests.
    pulled.verify_files();

    let peak = gateway.peak_rss_kib();
    eprintln!("gateway peak RSS after pushing and pulling: {peak} KiB");
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "gateway peak RSS {peak} KiB exceeds {PEAK_RSS_LIMIT_KIB} KiB: bodies are being buffered"
    );
}
