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
