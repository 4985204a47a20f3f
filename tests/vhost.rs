//! Hostname-based virtual registries: two real registry:2 upstreams behind
//! one gateway, chosen by the Host the client sends and the port it uses.

mod common;

use std::net::SocketAddr;

use common::*;

fn two_registry_gateway(a: &Registry, b: &Registry, extra: &str) -> (Gateway, SocketAddr, SocketAddr) {
    let (main, alt) = (free_addr(), free_addr());
    let yaml = format!(
        r#"
listeners:
  - address: "{main}"
  - address: "{alt}"
upstreams:
  a: {{ url: "{}" }}
  b: {{ url: "{}" }}
registries:
  - name: a
    hosts: [registry-a.test, localhost]
    upstream: a
  - name: b
    host_regex: 'registry-b\.test|b[0-9]+\.test'
    upstream: b
  - name: b-alt-port
    hosts: [only-alt.test]
    ports: [{}]
    upstream: b
{extra}"#,
        a.url(),
        b.url(),
        alt.port()
    );
    (Gateway::start_yaml(&yaml, main), main, alt)
}

fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    Request::get(path).header("Host", host).send(addr)
}

fn upload_as(addr: SocketAddr, host: &str, repo: &str, data: &[u8]) -> (String, Response) {
    let digest = sha256_bytes(data);
    let rsp = Request::post(&format!("/v2/{repo}/blobs/uploads/"))
        .header("Host", host)
        .send(addr);
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = rsp.expect_header("location").to_string();
    assert!(
        location.starts_with(&format!("http://{host}/v2/")),
        "upload URL must point back at the host and port used: {location}"
    );
    let put = Request::put(&with_query(&path_of(&location), &format!("digest={digest}")))
        .header("Host", host)
        .body(data.to_vec())
        .send(addr);
    (digest, put)
}

#[test]
fn pushes_land_only_in_the_registry_of_the_host_used() {
    let (a, b) = (Registry::start(), Registry::start());
    let (gw, main, _) = two_registry_gateway(&a, &b, "");
    let host_a = format!("registry-a.test:{}", main.port());
    let host_b = format!("REGISTRY-B.test.:{}", main.port());

    let (da, rsp) = upload_as(gw.addr(), &host_a, "team/app", b"layer for a");
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    let (db, rsp) = upload_as(gw.addr(), &host_b, "team/app", b"layer for b");
    assert_eq!(rsp.status, 201, "{}", rsp.describe());

    assert!(
        a.has_blob("team/app", &da) && !a.has_blob("team/app", &db),
        "A holds only A's blob"
    );
    assert!(
        b.has_blob("team/app", &db) && !b.has_blob("team/app", &da),
        "B holds only B's blob"
    );

    let rsp = get(gw.addr(), &host_b, &format!("/v2/team/app/blobs/{db}"));
    assert_eq!((rsp.status, rsp.body.as_slice()), (200, &b"layer for b"[..]));
    let rsp = get(gw.addr(), &host_a, &format!("/v2/team/app/blobs/{db}"));
    assert_eq!(rsp.status, 404, "B's blob is not visible through A");
}

#[test]
fn regex_ports_ipv6_literals_and_unknown_hosts() {
    let (a, b) = (Registry::start(), Registry::start());
    let (gw, main, alt) = two_registry_gateway(&a, &b, "");
    let db = b.push_blob("r", b"only in b");
    let path = format!("/v2/r/blobs/{db}");

    assert_eq!(get(main, "b17.test", &path).status, 200, "regex match");
    assert_eq!(get(main, "xb17.test", &path).status, 404, "regexes are anchored");
    assert_eq!(
        get(alt, &format!("only-alt.test:{}", alt.port()), &path).status,
        200,
        "port rule matches its port"
    );
    let rsp = get(main, "only-alt.test", &path);
    assert_eq!(rsp.status, 404, "port rule does not match another port");
    assert_eq!(rsp.json()["errors"][0]["code"], "NOT_FOUND");
    assert_eq!(get(main, "localhost", "/v2/").status, 200);

    let unknown = get(main, "nobody.test", "/v2/");
    assert_eq!(
        unknown.status,
        404,
        "no default: unknown hosts get 404\n{}",
        unknown.describe()
    );
    assert!(unknown.body_text().contains("host name"), "{}", unknown.body_text());
    drop(gw);
}

#[test]
fn default_registry_catches_the_rest_and_check_warns_about_shadowing() {
    let (a, b) = (Registry::start(), Registry::start());
    let extra = "  - name: shadowed\n    hosts: [Registry-A.test.]\n    upstream: b\n  - name: rest\n    default: true\n    upstream: b\n";
    let (gw, main, _) = two_registry_gateway(&a, &b, extra);
    let db = b.push_blob("r", b"fallback");
    assert_eq!(get(main, "anything.example", &format!("/v2/r/blobs/{db}")).status, 200);
    assert_eq!(
        get(main, "[::1]:1234", &format!("/v2/r/blobs/{db}")).status,
        200,
        "IPv6 literal falls to default"
    );

    let out = run_check(gw.config_path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("warning: registries[3]") && stdout.contains("registries[0]"),
        "check must warn that registries[3] is shadowed:\n{stdout}"
    );
    assert!(gw.log().contains("is never chosen"), "the start log warns too");
}

#[test]
fn route_subcommand_explains_the_choice() {
    let (a, b) = (Registry::start(), Registry::start());
    let (gw, main, _) = two_registry_gateway(&a, &b, "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry-gateway"))
        .args(["route", "--config"])
        .arg(gw.config_path())
        .args([
            "B3.test:443",
            "/v2/x/manifests/latest",
            "--port",
            &main.port().to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("registry: b") && text.contains("host_regex"), "{text}");
    assert!(text.contains("route: v2") && text.contains(&b.url()[7..]), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry-gateway"))
        .args(["route", "--config"])
        .arg(gw.config_path())
        .args(["nobody.test", "/v2/"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no virtual registry matches"));
}

#[test]
fn each_registry_checks_its_own_users() {
    let (a, b) = (Registry::start(), Registry::start());
    let main = free_addr();
    let yaml = format!(
        r#"
listeners:
  - address: "{main}"
upstreams:
  a: {{ url: "{}" }}
  b: {{ url: "{}" }}
registries:
  - name: a
    hosts: [registry-a.test]
    upstream: a
    auth: {{ htpasswd: users-a, realm: "Registry A" }}
  - name: b
    hosts: [registry-b.test]
    upstream: b
    auth: {{ htpasswd: users-b, realm: "Registry B" }}
"#,
        a.url(),
        b.url()
    );
    let users_a = htpasswd_line("B", &["-C", "4"], "alice", "alice-pw") + "\n";
    let users_b = htpasswd_line("B", &["-C", "4"], "bob", "bob-pw") + "\n";
    let gw = Gateway::start_yaml_with_files(
        &yaml,
        main,
        &[("users-a", users_a.as_bytes()), ("users-b", users_b.as_bytes())],
    );
    let as_user = |host: &str, user: &str, pw: &str| {
        Request::get("/v2/")
            .header("Host", host)
            .header("Authorization", &basic_auth(user, pw))
            .send(gw.addr())
    };
    assert_eq!(as_user("registry-a.test", "alice", "alice-pw").status, 200);
    assert_eq!(as_user("registry-b.test", "bob", "bob-pw").status, 200);
    let rsp = as_user("registry-b.test", "alice", "alice-pw");
    assert_eq!(rsp.status, 401, "alice is not a user of B: {}", rsp.describe());
    assert_eq!(
        rsp.header("www-authenticate"),
        Some("Basic realm=\"Registry B\""),
        "B challenges with its own realm"
    );
    let rsp = as_user("registry-a.test", "bob", "bob-pw");
    assert_eq!(rsp.status, 401, "bob is not a user of A: {}", rsp.describe());
    assert_eq!(rsp.header("www-authenticate"), Some("Basic realm=\"Registry A\""));
}

#[test]
fn an_upstream_under_a_path_prefix_serves_pushes_and_pulls_with_the_prefix_hidden() {
    require_tool(SKOPEO_BIN, "skopeo");
    let port = free_port();
    let mut registry = Registry::spawn(port, "  prefix: /mirror/\n");
    let upstream = format!("http://127.0.0.1:{port}/mirror");
    let ready = wait_until(std::time::Duration::from_secs(20), || {
        registry.assert_running();
        matches!(Request::get("/mirror/v2/").try_send(registry.addr()), Ok(r) if r.status == 200)
    });
    assert!(ready, "registry:2 with http.prefix not ready:\n{}", registry.log());
    let main = free_addr();
    let yaml = format!(
        "listeners:\n  - address: \"{main}\"\nupstreams:\n  mirror: {{ url: \"{upstream}/\" }}\n\
         registries:\n  - name: mirror\n    default: true\n    upstream: mirror\n"
    );
    let gw = Gateway::start_yaml(&yaml, main);

    let rsp = Request::post("/v2/prefixed/app/blobs/uploads/").send(gw.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = rsp.expect_header("location");
    assert!(
        location.starts_with(&format!("http://{main}/v2/prefixed/app/blobs/uploads/")),
        "the upload URL must not show the upstream's prefix: {location}"
    );

    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(0x9ef1)
        .layer(70_000)
        .write(&work.path().join("src"), "v1");
    let reference = format!("{main}/prefixed/app:v1");
    skopeo_push(&image, &reference);
    for blob in image.all_blobs() {
        assert!(
            registry.blob_path(&blob.digest).exists(),
            "the prefixed upstream lacks {}",
            blob.digest
        );
    }
    let pulled = skopeo_pull(&reference, &work.path().join("dst"), "v1");
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    // registry:2 saw every request under its prefix.
    let log = registry.access_log();
    assert!(
        log.iter().any(|l| l.contains("/mirror/v2/prefixed/app/manifests/v1")),
        "{}",
        log.join("\n")
    );
}

#[test]
fn per_host_certificates_by_sni_and_421_when_the_host_needs_another_certificate() {
    use common::tls::{CertEntry, DevCerts, TlsConn, yaml_str};
    let (a, b) = (Registry::start(), Registry::start());
    let cert_a = DevCerts::generate(&["registry-a.test"]);
    let cert_b = DevCerts::generate(&["registry-b.test"]);
    let (strict, lax) = (free_addr(), free_addr());
    let certs = |e: &[CertEntry]| {
        e.iter()
            .map(|c| {
                format!(
                    "        - {{ cert: {}, key: {} }}\n",
                    yaml_str(&c.cert.display().to_string()),
                    yaml_str(&c.key.display().to_string())
                )
            })
            .collect::<String>()
    };
    let entries = [CertEntry::of(&cert_a), CertEntry::of(&cert_b)];
    let yaml = format!(
        "listeners:\n  - address: \"{strict}\"\n    tls:\n      reject_misdirected: true\n      certificates:\n{0}\
         \x20 - address: \"{lax}\"\n    tls:\n      certificates:\n{0}\
         upstreams:\n  a: {{ url: \"{1}\" }}\n  b: {{ url: \"{2}\" }}\n\
         registries:\n  - name: a\n    hosts: [registry-a.test]\n    upstream: a\n\
         \x20 - name: b\n    hosts: [registry-b.test]\n    upstream: b\n",
        certs(&entries),
        a.url(),
        b.url()
    );
    let _gw = Gateway::start_yaml(&yaml, strict);
    let db = b.push_blob("r", b"b over tls");

    // Each name gets its own certificate and its own registry.
    let mut conn = TlsConn::open(strict, "registry-b.test", &cert_b.ca());
    assert_eq!(
        conn.peer_leaf_der(),
        cert_b.leaf_der(),
        "SNI registry-b.test gets B's certificate"
    );
    conn.send_request(&Request::get(&format!("/v2/r/blobs/{db}")));
    assert_eq!(conn.read_head().unwrap().status, 200, "B's blob through B's name");
    let conn = TlsConn::open(strict, "registry-a.test", &cert_a.ca());
    assert_eq!(
        conn.peer_leaf_der(),
        cert_a.leaf_der(),
        "SNI registry-a.test gets A's certificate"
    );

    // A connection made for A asking for B: 421 on the strict listener...
    let mut conn = TlsConn::open(strict, "registry-a.test", &cert_a.ca());
    conn.send_request(&Request::get(&format!("/v2/r/blobs/{db}")).header("Host", "registry-b.test"));
    let rsp = conn.read_head().unwrap();
    assert_eq!(rsp.status, 421, "{}", rsp.describe());
    // ...while the other listener serves it by Host, as nginx would.
    let mut conn = TlsConn::open(lax, "registry-a.test", &cert_a.ca());
    conn.send_request(&Request::get(&format!("/v2/r/blobs/{db}")).header("Host", "registry-b.test"));
    assert_eq!(conn.read_head().unwrap().status, 200);
    // Same certificate, other spelling (case, port, trailing dot): not misdirected.
    let mut conn = TlsConn::open(strict, "registry-a.test", &cert_a.ca());
    conn.send_request(&Request::get("/v2/").header("Host", &format!("REGISTRY-A.test.:{}", strict.port())));
    assert_eq!(conn.read_head().unwrap().status, 200);
}
