//! What one client of a mirror may not get through it: credentials meant
//! for the mirror never go to an upstream `ns` chose, and a login's cached
//! private content is not served to a registry that reaches the same
//! upstream without that login, even on a shared cache directory.

mod common;

use std::time::Duration;

use common::*;

const MIRROR_PASSWORD: &str = "isolation-secret-5";
const PUBLISHER: &str = "publisher:publisher-pw-5";

#[test]
fn ns_routed_requests_never_carry_the_clients_authorization() {
    let default = RecordingUpstream::start();
    let other = RecordingUpstream::start();
    let listen = free_addr();
    let yaml = format!(
        "listeners:\n  - address: \"{listen}\"\nupstreams:\n  default:\n    url: \"{}\"\n    health: off\n  other:\n    url: \"{}\"\n    health: off\nregistries:\n  - name: mirror\n    default: true\n    upstream: default\n    ns: {{other.test: other}}\n    ns_in_path: true\n",
        default.url(),
        other.url()
    );
    let gateway = Gateway::start_yaml(&yaml, listen);
    let secret = "Basic bWlycm9yLXVzZXI6bWlycm9yLXBhc3N3b3Jk";
    for path in [
        "/v2/team/app/tags/list?ns=other.test",
        "/v2/other.test/team/app/tags/list",
    ] {
        let rsp = Request::get(path).header("Authorization", secret).send(gateway.addr());
        assert!(rsp.status < 500, "{path}:\n{}", rsp.describe());
    }
    let got = other.requests();
    assert_eq!(got.len(), 2, "both requests reach the ns upstream: {got:?}");
    for r in &got {
        assert_eq!(
            r.header("authorization"),
            None,
            "the client's credentials reached the ns upstream: {r:?}"
        );
        assert!(!r.target.contains("ns="), "ns left in the target: {r:?}");
        assert!(r.target.starts_with("/v2/team/app/tags/list"), "{r:?}");
        assert_eq!(
            r.header("host"),
            Some(other.addr().to_string().as_str()),
            "Host of another registry: {r:?}"
        );
    }
    // Without ns the registry is a plain proxy: the header passes, as before.
    Request::get("/v2/team/app/tags/list")
        .header("Authorization", secret)
        .send(gateway.addr());
    let r = default.request_with("/v2/team/app/tags/list");
    assert_eq!(r.header("authorization"), Some(secret), "{r:?}");
}

#[test]
fn a_login_s_cached_content_is_not_served_to_a_registry_without_it() {
    require_tool(SKOPEO_BIN, "skopeo");
    let work = tempfile::tempdir().unwrap();
    let issuer = TokenServer::start(&[&format!("mirror:{MIRROR_PASSWORD}"), PUBLISHER], false);
    let registry = Registry::start_token_auth(&issuer);
    let image = OciImageBuilder::new(0x150_1a7e)
        .layer(300 * 1024)
        .write(&work.path().join("src"), "1.0");
    let out = skopeo_push_with_creds(
        &image,
        &format!("{}/team/private:1.0", registry.addr()),
        Some(PUBLISHER),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cache = tempfile::tempdir().unwrap();
    let secret = write_secret(work.path(), "mirror-password", MIRROR_PASSWORD);
    let listen = free_addr();
    let cache_block = format!(
        "    cache: {{dir: \"{}\", max_size: 1GiB, tag_ttl: 10m, fsync: false}}\n",
        cache.path().display()
    );
    let yaml = format!(
        "listeners:\n  - address: \"{listen}\"\nupstreams:\n  private:\n    url: \"{url}\"\n    health: off\n    credentials: {{username: mirror, password_file: \"{}\"}}\n  public:\n    url: \"{url}\"\n    health: off\nregistries:\n  - name: inside\n    hosts: [inside.test]\n    upstream: private\n{cache_block}  - name: outside\n    hosts: [outside.test]\n    upstream: public\n{cache_block}",
        secret.display(),
        url = registry.url(),
    );
    let gateway = Gateway::start_yaml(&yaml, listen);
    let manifest = "/v2/team/private/manifests/1.0";
    let layer = format!("/v2/team/private/blobs/{}", image.layers[0].digest);
    let get = |host: &str, path: &str| {
        Request::get(path)
            .header("Host", host)
            .header("Accept", ACCEPT_MANIFESTS)
            .send(gateway.addr())
    };
    for path in [manifest, layer.as_str()] {
        let rsp = get("inside.test", path);
        assert_eq!(rsp.status, 200, "the login reads {path}:\n{}", rsp.describe());
    }
    assert!(
        cached_blob_path(cache.path(), &image.layers[0].digest).exists(),
        "the layer was not cached"
    );
    std::thread::sleep(Duration::from_millis(200));
    for path in [manifest, layer.as_str()] {
        let rsp = get("outside.test", path);
        assert!(
            rsp.status == 401 || rsp.status == 403 || rsp.status == 404,
            "a registry without the login got {path} from the shared cache:\n{}",
            rsp.describe()
        );
    }
}
