//! Which paths reach which upstream, and which never leave the gateway.
//!
//! "Never reached the upstream" is proven from the registry's own access log:
//! after the probes, a control request is sent and waited for in the log, and
//! the log must have grown by exactly that one line.

mod common;

use std::time::Duration;

use common::*;

const LOG_WAIT: Duration = Duration::from_secs(5);

/// Sends every target (exact bytes, as given, and again with a
/// `?probe=<nonce>` query) and asserts each answers 404 JSON `NOT_FOUND`
/// without any request reaching `registry`.
#[track_caller]
fn assert_not_found_and_never_forwarded(registry: &Registry, gateway: &Gateway, targets: &[&str]) {
    let before = registry.access_log().len();
    let mut nonces = Vec::new();
    for target in targets {
        let n = nonce("probe");
        for t in [target.to_string(), with_query(target, &format!("probe={n}"))] {
            for method in ["GET", "HEAD"] {
                let rsp = Request::new(method, &t).send(gateway.addr());
                if method == "GET" {
                    assert_json_error(&rsp, 404, "NOT_FOUND");
                } else {
                    assert_eq!(rsp.status, 404, "HEAD {t}:\n{}", rsp.describe());
                }
            }
        }
        nonces.push((target, n));
    }
    // Control: a request that must reach the registry, so its log is current.
    let control = nonce("control");
    let rsp = Request::get(&format!("/v2/?probe={control}")).send(gateway.addr());
    assert_eq!(rsp.status, 200, "control request:\n{}", rsp.describe());
    assert!(
        registry.wait_for_log(&control, LOG_WAIT),
        "the control request never showed up in the registry log:\n{}",
        tail(&registry.log(), 3000)
    );
    let log = registry.log();
    for (target, n) in &nonces {
        assert!(
            !log.contains(n.as_str()),
            "{target} was forwarded to the upstream:\n{}",
            tail(&log, 3000)
        );
    }
    let after = registry.access_log();
    let new_lines = &after[before..];
    assert_eq!(
        new_lines.len(),
        1,
        "only the control request may reach the upstream, but it saw:\n{}",
        new_lines.join("\n")
    );
    assert!(new_lines[0].contains(&control), "{}", new_lines[0]);
}

fn start() -> (Registry, Gateway) {
    let registry = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&registry));
    (registry, gateway)
}

#[test]
fn ping_paths_reach_the_main_upstream_and_answer_its_status() {
    let (registry, gateway) = start();
    for path in ["/_ping", "/v1/_ping"] {
        let through = Request::get(path).send(gateway.addr());
        let line = format!("\"GET {path} HTTP/1.1\"");
        assert!(
            registry.wait_for_log(&line, LOG_WAIT),
            "{path} never reached the upstream; gateway answered:\n{}\nregistry log:\n{}",
            through.describe(),
            tail(&registry.log(), 3000)
        );
        let direct = Request::get(path).send(registry.addr());
        assert_eq!(
            through.status,
            direct.status,
            "{path} through the gateway:\n{}",
            through.describe()
        );
        assert_eq!(
            through.body,
            direct.body,
            "{path}: the body is not the registry's own:\n{}",
            through.describe()
        );
    }
}

#[test]
fn v2_base_variants_are_proxied() {
    let (registry, gateway) = start();
    for path in ["/v2", "/v2/", "/v2/_catalog"] {
        let n = nonce("base");
        let target = format!("{path}?probe={n}");
        let through = Request::get(&target).send(gateway.addr());
        assert!(
            registry.wait_for_log(&format!("\"GET {target} HTTP/1.1\""), LOG_WAIT),
            "{target} did not reach the upstream unchanged; gateway answered:\n{}\nregistry log:\n{}",
            through.describe(),
            tail(&registry.log(), 3000)
        );
        let direct = Request::get(&target).send(registry.addr());
        assert_eq!(through.status, direct.status, "{target}:\n{}", through.describe());
    }
}

#[test]
fn v1_paths_without_a_v1_route_answer_404_json_and_never_reach_the_upstream() {
    let (registry, gateway) = start();
    assert_not_found_and_never_forwarded(
        &registry,
        &gateway,
        &["/v1/search", "/v1/repositories/library/busybox/images", "/v1/", "/v1"],
    );
}

#[test]
fn v1_paths_with_a_v1_route_reach_the_legacy_upstream() {
    let main = Registry::start();
    let legacy = Registry::start();
    let gateway = Gateway::start(&GatewayConfig::for_upstream(&main).legacy(&legacy));

    let n = nonce("legacy");
    let target = format!("/v1/search?q={n}");
    let through = Request::get(&target).send(gateway.addr());
    assert!(
        legacy.wait_for_log(&format!("\"GET {target} HTTP/1.1\""), LOG_WAIT),
        "{target} did not reach the legacy upstream; gateway answered:\n{}\nlegacy log:\n{}",
        through.describe(),
        tail(&legacy.log(), 3000)
    );
    assert!(!main.log().contains(&n), "{target} also reached the main upstream");
    let direct = Request::get(&target).send(legacy.addr());
    assert_eq!(through.status, direct.status, "{}", through.describe());
    assert_eq!(through.body, direct.body, "{}", through.describe());

    // /v1/_ping still belongs to the main upstream.
    let n = nonce("ping");
    let target = format!("/v1/_ping?probe={n}");
    Request::get(&target).send(gateway.addr());
    assert!(
        main.wait_for_log(&n, LOG_WAIT),
        "{target} did not reach the main upstream:\n{}",
        tail(&main.log(), 3000)
    );
    assert!(!legacy.log().contains(&n), "{target} reached the legacy upstream");

    // And /v2 is unaffected by the route.
    let n = nonce("v2");
    let rsp = Request::get(&format!("/v2/?probe={n}")).send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert!(main.wait_for_log(&n, LOG_WAIT));
    assert!(!legacy.log().contains(&n));
}

#[test]
fn unknown_paths_answer_404_json_and_never_reach_the_upstream() {
    let (registry, gateway) = start();
    assert_not_found_and_never_forwarded(
        &registry,
        &gateway,
        &[
            "/",
            "/admin",
            "/v3/",
            "/v2x",
            "/v2x/y",
            "/V2/",
            "/favicon.ico",
            "/debug/vars",
            "/metrics",
            "/_pingx",
        ],
    );
}

#[test]
fn dot_segments_and_empty_segments_answer_404_json_and_never_reach_the_upstream() {
    let (registry, gateway) = start();
    assert_not_found_and_never_forwarded(
        &registry,
        &gateway,
        &[
            "/v2/../admin",
            "/v2/..",
            "/v2/foo/../../admin",
            "//v2/",
            "/v2//foo",
            "/v2/foo//tags/list",
            "/v2/./x",
            "/v2/.",
            "/v2/library/x/blobs/uploads/./",
        ],
    );
}

#[test]
fn percent_encoded_dot_slash_backslash_and_nul_answer_404_json_and_never_reach_the_upstream() {
    let (registry, gateway) = start();
    assert_not_found_and_never_forwarded(
        &registry,
        &gateway,
        &[
            "/v2/%2e%2e/admin",
            "/v2/%2E%2E/admin",
            "/v2/%2e/x",
            "/v2/.%2e/admin",
            "/v2/foo%2fbar/tags/list",
            "/v2/foo%2Fbar/tags/list",
            "/v2/foo%5cbar/tags/list",
            "/v2/foo%5Cbar/tags/list",
            "/v2/foo%00/tags/list",
            "/v2%2f_catalog",
        ],
    );
}

#[test]
fn query_strings_are_forwarded_byte_for_byte() {
    let (registry, gateway) = start();
    let n = nonce("q");
    let target = format!(
        "/v2/some/repo/tags/list?n=10&last=a%2Fb&odd=%7e~%20+plus&empty=&flag&dup=1&dup=2&Case=%2f%2F&nonce={n}"
    );
    let rsp = Request::get(&target).send(gateway.addr());
    assert!(
        registry.wait_for_log(&format!("\"GET {target} HTTP/1.1\""), LOG_WAIT),
        "the upstream did not receive exactly {target}; gateway answered:\n{}\nregistry log:\n{}",
        rsp.describe(),
        tail(&registry.log(), 3000)
    );
}

#[test]
fn access_log_has_one_line_per_request_with_method_path_and_status() {
    let (_registry, gateway) = start();
    let n = nonce("acc");
    let get_path = format!("/v2/{n}/tags/list");
    let rsp = Request::get(&get_path).send(gateway.addr());
    assert_eq!(rsp.status, 404, "{}", rsp.describe());
    let post_path = format!("/v2/{n}/blobs/uploads/");
    let rsp = Request::post(&post_path).send(gateway.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let local_path = format!("/nowhere-{n}");
    let rsp = Request::get(&local_path).send(gateway.addr());
    assert_eq!(rsp.status, 404, "{}", rsp.describe());

    for (method, path, status) in [
        ("GET", &get_path, "404"),
        ("POST", &post_path, "202"),
        ("GET", &local_path, "404"),
    ] {
        let found = wait_until(LOG_WAIT, || {
            gateway
                .log()
                .lines()
                .any(|l| l.contains(path.as_str()) && l.contains(method) && l.contains(status))
        });
        let log = gateway.log();
        assert!(
            found,
            "no access-log line with {method} {path} {status} in the gateway log:\n{}",
            tail(&log, 3000)
        );
        let count = log
            .lines()
            .filter(|l| l.contains(path.as_str()) && l.contains(method) && l.contains(status))
            .count();
        assert_eq!(
            count,
            1,
            "expected exactly one access-log line for {method} {path}:\n{}",
            tail(&log, 3000)
        );
    }
}
