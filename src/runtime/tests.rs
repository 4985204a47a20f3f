use std::time::Duration;

use super::*;
use crate::auth::AuthScope;
use crate::config::*;

const GOOD: &str = r#"
listeners:
  - address: "127.0.0.1:5000"
upstreams:
  registry:
    url: "http://127.0.0.1:15000"
registries:
  - name: main
    default: true
    upstream: registry
"#;

fn parse(text: &str) -> Result<Snapshot, String> {
    Snapshot::parse(text, Path::new("gw.yaml")).map_err(|e| e.to_string())
}

fn error_of(text: &str) -> String {
    parse(text).expect_err("config should be rejected")
}

#[test]
fn minimal_config_compiles_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.listeners[0].address, "127.0.0.1:5000".parse().unwrap());
    assert_eq!(c.server.grace_period, DEFAULT_GRACE_PERIOD);
    let r = &c.registries[0];
    assert_eq!(r.routes.v2.upstream.pool.replica(0).authority, "127.0.0.1:15000");
    assert!(r.routes.v1.is_none());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.server.upstream_keepalive, DEFAULT_UPSTREAM_KEEPALIVE);
}

#[test]
fn upstream_keepalive_is_a_positive_count() {
    let c = parse(&format!("{GOOD}server:\n  upstream_keepalive: 32\n")).unwrap();
    assert_eq!(c.server.upstream_keepalive, 32);
    let e = error_of(&format!("{GOOD}server:\n  upstream_keepalive: 0\n"));
    assert!(e.contains("server.upstream_keepalive") && e.contains("`0`"), "{e}");
    let e = error_of(&format!("{GOOD}server:\n  upstream_keepalive: many\n"));
    assert!(e.contains("server.upstream_keepalive") && e.contains("many"), "{e}");
}

#[test]
fn unknown_key_names_path_value_and_line() {
    let e = error_of(&GOOD.replace("  - address:", "  - adress:"));
    assert!(e.starts_with("gw.yaml: "), "{e}");
    assert!(e.contains("listeners[0]"), "{e}");
    assert!(e.contains("`adress`"), "{e}");
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn bad_scalars_name_key_value_and_line() {
    let e = error_of(&GOOD.replace("127.0.0.1:5000", "nope:99999"));
    assert!(
        e.contains("listeners[0].address") && e.contains("`nope:99999`") && e.contains("line 3"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("http://127.0.0.1:15000", "ftp://x"));
    assert!(e.contains("upstreams.registry.url") && e.contains("`ftp://x`"), "{e}");
    let e = error_of(&format!("{GOOD}timeouts:\n  connect: ten seconds\n"));
    assert!(e.contains("timeouts.connect") && e.contains("`ten seconds`"), "{e}");
    let e = error_of(&format!("{GOOD}server:\n  trusted_proxies: [10.0.0.0/8, 300.1.1.1]\n"));
    assert!(
        e.contains("server.trusted_proxies[1]") && e.contains("`300.1.1.1`"),
        "{e}"
    );
}

#[test]
fn dangling_references_name_key_and_value() {
    let e = error_of(&GOOD.replace("upstream: registry", "upstream: nowhere"));
    assert!(e.contains("registries[0].upstream") && e.contains("`nowhere`"), "{e}");
    let e = error_of(&format!("{GOOD}    routes:\n      v1: {{ upstream: legacy }}\n"));
    assert!(
        e.contains("registries[0].routes.v1.upstream") && e.contains("`legacy`"),
        "{e}"
    );
}

#[test]
fn structural_problems_are_reported_together() {
    let text = r#"
listeners: []
upstreams:
  registry: { url: "http://127.0.0.1:15000" }
registries: []
timeouts: { keepalive: 0 }
"#;
    let e = error_of(text);
    assert!(e.contains("gw.yaml: listeners: at least one listener"), "{e}");
    assert!(e.contains("gw.yaml: registries: at least one virtual registry"), "{e}");
    assert!(
        e.contains("gw.yaml: timeouts.keepalive: must be greater than zero"),
        "{e}"
    );
}

#[test]
fn duplicate_listeners_and_defaults_are_rejected() {
    let e = error_of(&GOOD.replace(
        "  - address: \"127.0.0.1:5000\"",
        "  - address: \"127.0.0.1:5000\"\n  - address: \"127.0.0.1:5000\"",
    ));
    assert!(
        e.contains("listeners[1].address") && e.contains("`127.0.0.1:5000`"),
        "{e}"
    );
    let e = error_of(&format!(
        "{GOOD}  - name: other\n    default: true\n    upstream: registry\n"
    ));
    assert!(e.contains("registries[1].default"), "{e}");
}

#[test]
fn yaml_syntax_errors_carry_a_line() {
    let e = error_of("listeners: [\n  - address: x\n");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn routes_override_upstreams() {
    let text = format!("{GOOD}    routes:\n      v1: {{ upstream: legacy }}\n").replace(
        "upstreams:\n",
        "upstreams:\n  legacy:\n    url: \"http://127.0.0.1:15001\"\n    host_header: upstream\n",
    );
    let c = parse(&text).unwrap();
    let v1 = c.registries[0].routes.v1.as_ref().unwrap();
    assert_eq!(v1.upstream.name, "legacy");
    assert_eq!(v1.upstream.host_header, HostHeaderMode::Upstream);
}

fn with_htpasswd(yaml: &str) -> (tempfile::TempDir, Result<Snapshot, String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}pw\n").unwrap();
    let path = dir.path().join("gw.yaml");
    let result = Snapshot::parse(yaml, &path).map_err(|e| e.to_string());
    (dir, result)
}

#[test]
fn auth_inherits_down_and_ping_stays_open() {
    let yaml = format!("{GOOD}auth:\n  realm: corp\n  htpasswd: users\n");
    let (_dir, c) = with_htpasswd(&yaml);
    let c = c.unwrap();
    let routes = &c.registries[0].routes;
    let v2 = routes.v2.auth.as_ref().expect("v2 inherits the gateway's auth");
    assert_eq!(v2.realm, "corp");
    assert_eq!(v2.scope, AuthScope::All);
    assert!(routes.ping.auth.is_none(), "ping is open by default");
    assert_eq!(c.htpasswd_files.len(), 1);
}

#[test]
fn auth_can_be_switched_off_or_narrowed_per_level() {
    let yaml = format!(
        "{GOOD}    auth: {{ htpasswd: users, scope: writes }}\n    routes:\n      ping: {{ auth: {{ htpasswd: users }} }}\n"
    );
    let (_dir, c) = with_htpasswd(&yaml);
    let c = c.unwrap();
    let routes = &c.registries[0].routes;
    assert_eq!(routes.v2.auth.as_ref().unwrap().scope, AuthScope::Writes);
    assert!(routes.ping.auth.is_some(), "ping auth can be required");
    assert_eq!(c.htpasswd_files.len(), 1, "one table per file");

    let yaml = format!("{GOOD}    auth: off\nauth:\n  htpasswd: users\n");
    let (_dir, c) = with_htpasswd(&yaml);
    assert!(c.unwrap().registries[0].routes.v2.auth.is_none());
}

#[test]
fn auth_errors_name_the_key() {
    let (_dir, e) = with_htpasswd(&format!("{GOOD}auth:\n  htpasswd: missing-file\n"));
    let e = e.unwrap_err();
    assert!(e.contains("auth.htpasswd") && e.contains("missing-file"), "{e}");
    let (_dir, e) = with_htpasswd(&format!("{GOOD}auth: on\n"));
    let e = e.unwrap_err();
    assert!(e.contains("auth") && e.contains("`on`"), "{e}");
    let (_dir, e) = with_htpasswd(&format!("{GOOD}auth:\n  htpasswd: users\n  scope: reads\n"));
    let e = e.unwrap_err();
    assert!(e.contains("auth.scope") && e.contains("reads"), "{e}");
}

#[test]
fn virtual_registries_select_by_host_and_warn_when_shadowed() {
    let text = r#"
listeners:
  - address: "127.0.0.1:5000"
upstreams:
  a: { url: "http://127.0.0.1:15000" }
  b: { url: "http://127.0.0.1:15001" }
registries:
  - name: a
    hosts: [registry.corp]
  - name: b
    host_regex: '.*\.mirror\.corp'
    ports: [5000]
  - name: shadow
    hosts: [REGISTRY.corp.]
    upstream: b
  - name: fallback
    default: true
    upstream: a
"#
    .replace(
        "    hosts: [registry.corp]\n",
        "    hosts: [registry.corp]\n    upstream: a\n",
    )
    .replace("    ports: [5000]\n", "    ports: [5000]\n    upstream: b\n");
    let c = parse(&text).unwrap();
    let pick = |host: &str, port| c.registry_for(Some(host), Some(port)).map(|(r, _)| r.name.clone());
    assert_eq!(pick("Registry.Corp:5000", 5000).as_deref(), Some("a"));
    assert_eq!(pick("x.mirror.corp", 5000).as_deref(), Some("b"));
    assert_eq!(pick("x.mirror.corp", 443).as_deref(), Some("fallback"));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("registries[2]") && c.warnings[0].contains("registries[0]"));
    let explained = crate::explain::route(&c, "x.mirror.corp", "/v2/", Some(5000), "GET", None);
    assert!(
        explained.contains("registry: b") && explained.contains("host_regex"),
        "{explained}"
    );
}

#[test]
fn registries_must_match_something_and_regexes_compile() {
    let e = error_of(&GOOD.replace("    default: true\n", ""));
    assert!(e.contains("registries[0]") && e.contains("matches nothing"), "{e}");
    let e = error_of(&GOOD.replace("    default: true\n", "    host_regex: '('\n"));
    assert!(e.contains("registries[0].host_regex") && e.contains("`(`"), "{e}");
}

#[test]
fn metrics_default_to_loopback_and_can_be_turned_off() {
    let c = parse(GOOD).unwrap();
    let m = c.metrics.as_ref().expect("metrics are on by default");
    assert_eq!(m.address, DEFAULT_METRICS_ADDRESS.parse().unwrap());
    assert!(m.address.ip().is_loopback());
    let c = parse(&format!("{GOOD}metrics: off\naccess_log: off\n")).unwrap();
    assert!(c.metrics.is_none() && c.access_log.is_none());
    let c = parse(&format!("{GOOD}metrics:\n  address: \"127.0.0.1:9999\"\n")).unwrap();
    assert_eq!(c.metrics.unwrap().address.port(), 9999);
}

#[test]
fn metrics_errors_name_the_key() {
    let e = error_of(&format!("{GOOD}metrics:\n  address: \"127.0.0.1:5000\"\n"));
    assert!(e.contains("metrics.address") && e.contains("listeners[0]"), "{e}");
    let e = error_of(&format!("{GOOD}metrics: on\n"));
    assert!(e.contains("metrics") && e.contains("`on`") && e.contains("line"), "{e}");
    let e = error_of(&format!("{GOOD}metrics:\n  adress: x\n"));
    assert!(e.contains("metrics") && e.contains("`adress`"), "{e}");
    let e = error_of(&format!("{GOOD}access_log:\n  format: xml\n"));
    assert!(e.contains("access_log.format") && e.contains("`xml`"), "{e}");
}

#[test]
fn access_log_outputs_and_formats() {
    let c = parse(GOOD).unwrap();
    let a = c.access_log.unwrap();
    assert_eq!((a.format, a.output), (AccessLogFormat::Text, AccessLogOutput::Stdout));
    let c = parse(&format!(
        "{GOOD}access_log:\n  format: json\n  output: logs/access.log\n"
    ))
    .unwrap();
    let a = c.access_log.unwrap();
    assert_eq!(a.format, AccessLogFormat::Json);
    assert_eq!(a.output, AccessLogOutput::File(PathBuf::from("logs/access.log")));
}

#[test]
fn registries_past_the_label_limit_share_one_metrics_label() {
    let mut text = format!("{GOOD}metrics:\n  max_registry_labels: 2\n");
    for i in 0..4 {
        text = text.replace(
            "registries:\n",
            &format!("registries:\n  - name: r{i}\n    hosts: [r{i}.example]\n    upstream: registry\n"),
        );
    }
    let c = parse(&text).unwrap();
    let labels: Vec<&str> = c.registries.iter().map(|r| r.metrics.label()).collect();
    assert_eq!(labels, ["r3", "r2", "other", "other", "other"]);
}

#[test]
fn head_limits_connection_cap_and_header_timeouts_parse_and_are_checked() {
    let c = parse(&format!(
        "{GOOD}limits:\n  request_line: 4KiB\n  header_line: 2048\n  header_block: 1m\n  headers: 50\n\
         server:\n  max_connections: 500\ntimeouts:\n  client_header: 10s\n  upstream_header: 2m\n"
    ))
    .unwrap();
    assert_eq!(
        c.limits,
        HeadLimits {
            request_line: 4096,
            header_line: 2048,
            header_block: 1 << 20,
            headers: 50
        }
    );
    assert_eq!(c.server.max_connections, Some(500));
    assert_eq!(c.timeouts.client_header, Duration::from_secs(10));
    assert_eq!(c.timeouts.upstream_header, Duration::from_secs(120));
    let defaults = parse(GOOD).unwrap();
    assert_eq!(defaults.limits, HeadLimits::default());
    assert_eq!(defaults.server.max_connections, None);

    let e = error_of(&format!("{GOOD}limits:\n  request_line: 8XB\n"));
    assert!(
        e.contains("limits.request_line") && e.contains("`8XB`") && e.contains("line"),
        "{e}"
    );
    let e = error_of(&format!("{GOOD}limits:\n  headers: 0\n"));
    assert!(e.contains("limits.headers") && e.contains("`0`"), "{e}");
    let e = error_of(&format!("{GOOD}server:\n  max_connections: 0\n"));
    assert!(e.contains("server.max_connections"), "{e}");
    let e = error_of(&format!("{GOOD}timeouts:\n  client_header: 0s\n"));
    assert!(e.contains("timeouts.client_header"), "{e}");
    let e = error_of(&format!("{GOOD}limits:\n  header_lines: 5\n"));
    assert!(e.contains("header_lines"), "{e}");
}
