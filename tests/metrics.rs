//! The metrics listener and the access log, seen from outside: counters
//! after a real skopeo push and pull, health and readiness as the upstream
//! goes away and comes back, and what a log line says (and never says).

mod common;

use std::time::Duration;

use common::*;

const USER: &str = "pusher";
const PASSWORD: &str = "metrics-secret-9f2c";

/// A gateway with htpasswd auth in front of `registry`; `extra` is appended
/// to the YAML (e.g. an `access_log:` block).
fn gateway_with_auth(registry: &Registry, extra: &str) -> Gateway {
    let listen = free_addr();
    let yaml = format!(
        "listeners:\n  - name: plain\n    address: \"{listen}\"\n\
         upstreams:\n  registry:\n    url: \"{}\"\n\
         registries:\n  - name: main\n    default: true\n    upstream: registry\n\
         auth:\n  htpasswd: users\n{extra}",
        registry.url()
    );
    let users = htpasswd_line("B", &["-C", "4"], USER, PASSWORD) + "\n";
    Gateway::start_yaml_with_files(&yaml, listen, &[("users", users.as_bytes())])
}

fn requests(text: &str, operation: &str, status: &str) -> f64 {
    sample(
        text,
        "registry_gateway_requests_total",
        &[("registry", "main"), ("operation", operation), ("status", status)],
    )
}

#[test]
fn a_push_and_pull_show_up_as_registry_operations_with_their_bytes() {
    require_tool(SKOPEO_BIN, "skopeo");
    let registry = Registry::start();
    let gateway = gateway_with_auth(&registry, "");
    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(0x6e7)
        .layer(300 * 1024 + 3)
        .layer(2 * 1024 * 1024 + 11)
        .write(&work.path().join("src"), "v1");
    let creds = format!("{USER}:{PASSWORD}");
    let reference = format!("{}/metrics-team/app:v1", gateway.addr());
    let out = skopeo_push_with_creds(&image, &reference, Some(&creds));
    assert!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skopeo_pull_with_creds(&reference, &work.path().join("dst"), "v1", Some(&creds));
    assert!(
        out.status.success(),
        "pull failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = scrape(gateway.metrics_addr());
    let blobs = image
        .all_blobs()
        .into_iter()
        .filter(|b| b.digest != image.manifest.digest);
    let (blob_count, blob_bytes) = blobs.fold((0.0, 0.0), |(n, s), b| (n + 1.0, s + b.size as f64));

    // Every layer and the config went up as start + data + completion.
    assert!(requests(&text, "upload_start", "2xx") >= blob_count, "{text}");
    assert!(requests(&text, "upload_complete", "2xx") >= blob_count, "{text}");
    assert!(requests(&text, "manifest_put", "2xx") >= 1.0, "{text}");
    assert!(requests(&text, "manifest_get", "2xx") >= 1.0, "{text}");
    assert!(requests(&text, "blob_get", "2xx") >= blob_count, "{text}");
    // Nothing is counted under an operation it is not.
    assert_eq!(requests(&text, "manifest_delete", "2xx"), 0.0);

    // Body bytes: at least the blobs, at most the blobs plus manifest-sized slack.
    let slack = 64.0 * 1024.0;
    let sent: f64 = sample(
        &text,
        "registry_gateway_request_body_bytes_total",
        &[("registry", "main")],
    );
    assert!(
        sent >= blob_bytes && sent <= blob_bytes + slack,
        "request body bytes {sent} for {blob_bytes} bytes of blobs:\n{text}"
    );
    let pulled = sample(
        &text,
        "registry_gateway_response_body_bytes_total",
        &[("registry", "main"), ("operation", "blob_get")],
    );
    assert!(
        pulled >= blob_bytes && pulled <= blob_bytes + slack,
        "blob_get response bytes {pulled} for {blob_bytes} bytes of blobs:\n{text}"
    );

    // Durations are histograms with samples per operation.
    let count = sample(
        &text,
        "registry_gateway_request_duration_seconds_count",
        &[("operation", "manifest_put")],
    );
    assert!(count >= 1.0, "{text}");
    assert!(
        text.contains("registry_gateway_request_duration_seconds_bucket{operation=\"blob_get\",le=\"0.001\"}"),
        "{text}"
    );

    // Auth was checked, and mostly answered from the cache.
    assert!(
        sample(&text, "registry_gateway_auth_total", &[("outcome", "success")]) >= 4.0,
        "{text}"
    );
    assert!(
        sample(&text, "registry_gateway_auth_cache_total", &[("result", "hit")]) >= 1.0,
        "{text}"
    );
    assert!(text.contains("registry_gateway_build_info{version=\""), "{text}");
    assert!(text.contains("registry_gateway_requests_in_flight"), "{text}");
    assert_eq!(
        sample(&text, "registry_gateway_upstream_up", &[("upstream", "registry")]),
        1.0,
        "{text}"
    );

    // Repository names, digests and users are never label values.
    for secret in ["metrics-team", USER, &image.layers[0].digest[7..], "repository="] {
        assert!(!text.contains(secret), "/metrics contains {secret:?}:\n{text}");
    }
}

#[test]
fn the_metrics_listener_serves_three_paths_and_the_registry_listener_none_of_them() {
    let registry = Registry::start();
    let gateway = gateway_with_auth(&registry, "");
    let m = gateway.metrics_addr();
    // Not behind registry auth.
    assert_eq!(Request::get("/metrics").send(m).status, 200);
    let health = Request::get("/healthz").send(m);
    assert_eq!(health.status, 200, "{}", health.describe());
    for path in ["/", "/v2/", "/metrics/x", "/favicon.ico"] {
        let rsp = Request::get(path).send(m);
        assert_eq!(rsp.status, 404, "{path} on the metrics listener: {}", rsp.describe());
    }
    // The registry listener does not serve metrics, and its 404 is counted.
    let rsp = Request::get("/metrics").send(gateway.addr());
    assert_eq!(rsp.status, 404, "{}", rsp.describe());
    assert!(rsp.body_text().contains("\"errors\""), "{}", rsp.describe());
    // Counted in the request's last phase, which may run just after the
    // client has read the answer.
    let counted = || {
        sample(
            &scrape(m),
            "registry_gateway_requests_total",
            &[("registry", "none"), ("operation", "other"), ("status", "4xx")],
        ) >= 1.0
    };
    assert!(wait_until(Duration::from_secs(5), counted), "{}", scrape(m));
}

#[test]
fn readiness_follows_the_upstream_while_health_stays_up() {
    let registry = Registry::start();
    let port = registry.addr().port();
    let gateway = gateway_with_auth(&registry, "");
    let m = gateway.metrics_addr();
    let status = |path: &str| Request::get(path).send(m).status;
    assert!(
        wait_until(Duration::from_secs(10), || status("/readyz") == 200),
        "not ready with the upstream up: {}",
        Request::get("/readyz").send(m).describe()
    );

    drop(registry);
    assert!(
        wait_until(Duration::from_secs(10), || status("/readyz") == 503),
        "still ready with the upstream gone: {}",
        Request::get("/readyz").send(m).describe()
    );
    let body = Request::get("/readyz").send(m).body_text();
    assert!(body.contains("\"registry\":\"down\""), "{body}");
    assert_eq!(status("/healthz"), 200, "the process is alive: healthz stays 200");
    let text = scrape(m);
    assert_eq!(
        sample(&text, "registry_gateway_upstream_up", &[("upstream", "registry")]),
        0.0
    );

    // A request now fails to connect, and is counted against the upstream.
    let rsp = Request::get("/v2/")
        .header("Authorization", &basic_auth(USER, PASSWORD))
        .send(gateway.addr());
    assert_eq!(rsp.status, 502, "{}", rsp.describe());
    let text = scrape(m);
    assert!(
        sample(
            &text,
            "registry_gateway_upstream_connect_failures_total",
            &[("upstream", "registry")]
        ) >= 1.0,
        "{text}"
    );
    // Counted in the request's last phase, which may run just after the
    // client has read the answer.
    assert!(
        wait_until(Duration::from_secs(5), || requests(&scrape(m), "base", "5xx") >= 1.0),
        "{}",
        scrape(m)
    );

    let _back = Registry::start_on(port);
    assert!(
        wait_until(Duration::from_secs(10), || status("/readyz") == 200),
        "not ready again after the upstream came back: {}",
        Request::get("/readyz").send(m).describe()
    );
}

/// The access log lines that mention `needle`.
fn access_lines(gateway: &Gateway, needle: &str) -> Vec<String> {
    gateway
        .log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_push_is_logged_with_user_operation_and_repository_and_never_the_password() {
    require_tool(SKOPEO_BIN, "skopeo");
    let registry = Registry::start();
    let gateway = gateway_with_auth(&registry, "access_log:\n  format: json\n");
    let work = tempfile::tempdir().unwrap();
    let image = OciImageBuilder::new(0xa11)
        .layer(4096)
        .write(&work.path().join("src"), "v1");
    let reference = format!("{}/logged/app:v1", gateway.addr());
    let out = skopeo_push_with_creds(&image, &reference, Some(&format!("{USER}:{PASSWORD}")));
    assert!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut entries = Vec::new();
    let found = wait_until(Duration::from_secs(5), || {
        entries = access_lines(&gateway, "\"operation\":\"manifest_put\"");
        !entries.is_empty()
    });
    assert!(found, "no manifest_put line in the access log:\n{}", gateway.log());
    let entry: serde_json::Value = serde_json::from_str(&entries[0]).expect("access log lines are JSON");
    assert_eq!(entry["user"], USER, "{entry}");
    assert_eq!(entry["repository"], "logged/app", "{entry}");
    assert_eq!(entry["reference"], "v1", "{entry}");
    assert_eq!(entry["registry"], "main", "{entry}");
    assert_eq!(entry["upstream"], "registry", "{entry}");
    assert_eq!(entry["status"], 201, "{entry}");
    assert_eq!(entry["upstream_status"], 201, "{entry}");
    assert!(entry["bytes_in"].as_u64().unwrap() > 0, "{entry}");
    assert!(entry["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{entry}");

    let chunk = access_lines(&gateway, "\"operation\":\"upload_complete\"");
    assert!(!chunk.is_empty(), "no upload_complete line:\n{}", gateway.log());

    let log = gateway.log();
    let encoded = &basic_auth(USER, PASSWORD)[6..];
    assert!(!log.contains(PASSWORD), "the log contains the password:\n{log}");
    assert!(
        !log.contains(encoded),
        "the log contains the encoded credentials:\n{log}"
    );
}

#[test]
fn text_access_log_lines_are_logfmt_and_can_go_to_a_file() {
    let registry = Registry::start();
    let gateway = gateway_with_auth(&registry, "access_log:\n  format: text\n  output: access.log\n");
    let auth = basic_auth(USER, PASSWORD);
    let rsp = Request::head("/v2/some/repo/manifests/missing")
        .header("Authorization", &auth)
        .send(gateway.addr());
    assert_eq!(rsp.status, 404, "{}", rsp.describe());
    let path = gateway.temp_dir().join("access.log");
    let mut line = String::new();
    let found = wait_until(Duration::from_secs(5), || {
        line = std::fs::read_to_string(&path).unwrap_or_default();
        line.contains("op=manifest_head")
    });
    assert!(found, "no manifest_head line in {}: {line:?}", path.display());
    for part in [
        "method=HEAD",
        "status=404",
        "registry=main",
        "repo=some/repo",
        "ref=missing",
        &format!("user={USER}"),
        "upstream=registry",
        "upstream_status=404",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(
        !gateway.log().contains("op=manifest_head"),
        "file output must not also go to stdout"
    );
}

#[test]
fn htpasswd_reloads_and_their_failures_are_counted() {
    let registry = Registry::start();
    let gateway = gateway_with_auth(&registry, "");
    let reloads = |result: &str| {
        sample(
            &scrape(gateway.metrics_addr()),
            "registry_gateway_reloads_total",
            &[("kind", "htpasswd"), ("result", result)],
        )
    };
    let users = gateway.temp_dir().join("users");
    let line = htpasswd_line("B", &["-C", "4"], "newcomer", "newcomer-pw") + "\n";
    let tmp = users.with_extension("new");
    std::fs::write(&tmp, line).unwrap();
    std::fs::rename(&tmp, &users).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || reloads("success") >= 1.0),
        "no successful reload counted:\n{}",
        scrape(gateway.metrics_addr())
    );
    let rsp = Request::get("/v2/")
        .header("Authorization", &basic_auth("newcomer", "newcomer-pw"))
        .send(gateway.addr());
    assert_eq!(rsp.status, 200, "the reloaded file is in use: {}", rsp.describe());

    std::fs::remove_file(&users).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || reloads("failure") >= 1.0),
        "an unreadable file must count as a failed reload:\n{}",
        scrape(gateway.metrics_addr())
    );
}
