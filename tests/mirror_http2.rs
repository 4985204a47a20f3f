//! A caching registry behind a TLS listener: HTTP/2 clients get a miss
//! (the download followed as it lands) and a hit (from the cache file)
//! byte for byte, and a range of the cached blob.

mod common;

use std::path::Path;

use common::tls::*;
use common::*;

fn sha256_of(path: &Path) -> String {
    sha256_file(path).0
}

#[test]
fn cached_blobs_are_served_over_http2() {
    let certs = DevCerts::generate(&["localhost", "127.0.0.1"]);
    let registry = Registry::start();
    let data = random_bytes(0x4272, (24 << 20) + 777);
    let digest = registry.push_blob("team/app", &data);
    let cache = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut yaml = TlsGatewayConfig::new(&registry.url())
        .tls_listener(addr, &[CertEntry::of(&certs)], None)
        .to_yaml();
    yaml.push_str(&format!(
        "    cache: {{dir: \"{}\", max_size: 1GiB, fsync: false}}\n",
        cache.path().display()
    ));
    let gateway = Gateway::start_yaml(&yaml, addr);
    let work = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{}/v2/team/app/blobs/{digest}", addr.port());

    for (round, status) in [(1, "fwd=miss"), (2, "hit")] {
        let got = work.path().join(format!("got-{round}"));
        let r = curl_https(&url, &certs.ca(), &["--http2"], &got);
        assert!(r.success, "{}\n{}", r.describe(), tail(&gateway.log(), 3000));
        assert_eq!((r.code, r.http_version.as_str()), (200, "2"), "{}", r.describe());
        assert!(
            r.header("cache-status").is_some_and(|v| v.contains(status)),
            "round {round} must be {status}:\n{}",
            r.describe()
        );
        assert_eq!(sha256_of(&got), digest, "round {round} over HTTP/2 is corrupt");
    }
    let got = work.path().join("range");
    let r = curl_https(&url, &certs.ca(), &["--http2", "-r", "1000-1999"], &got);
    assert_eq!((r.code, r.http_version.as_str()), (206, "2"), "{}", r.describe());
    assert_eq!(std::fs::read(&got).unwrap(), &data[1000..2000]);
    assert_eq!(
        registry.count_ok("GET", &digest),
        1,
        "the blob was read upstream more than once"
    );
}
