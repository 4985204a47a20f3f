//! `registry-gateway check --config FILE`: every validation error names the
//! file, the key path and the offending value; valid configs pass.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A valid config. Line numbers matter to some tests: keep it stable.
const VALID: &str = "\
server:
  grace_period: 10s
  trusted_proxies: []
listeners:
  - name: plain
    address: \"127.0.0.1:5000\"
upstreams:
  registry:
    url: \"http://127.0.0.1:15000\"
registries:
  - name: main
    default: true
    upstream: registry
";

/// Replaces exactly one occurrence of `from` in the valid config.
fn valid_with(from: &str, to: &str) -> String {
    assert_eq!(VALID.matches(from).count(), 1, "{from:?} must occur once in VALID");
    VALID.replacen(from, to, 1)
}

#[test]
fn valid_config_passes_check_and_prints_the_listener() {
    let file = write_config(VALID);
    let out = run_check(&file.path);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check rejected a valid config:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("127.0.0.1:5000") || stderr.contains("127.0.0.1:5000"),
        "the summary does not mention the listener:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn the_repository_default_gateway_yaml_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("gateway.yaml");
    assert!(path.exists(), "the crate root has no gateway.yaml");
    // The default config serves TLS with the development certificates that
    // the run command makes when they are missing; do the same here.
    let certs = Command::new(env!("CARGO_BIN_EXE_registry-gateway"))
        .args(["certs", "--out"])
        .arg(root.join("certs/dev"))
        .output()
        .unwrap();
    assert!(
        certs.status.success(),
        "certs failed: {}",
        String::from_utf8_lossy(&certs.stderr)
    );
    let yaml = std::fs::read_to_string(&path).unwrap();
    let out = run_check(&path);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check rejected gateway.yaml:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let addresses: Vec<String> = yaml
        .lines()
        .map(|l| l.trim().trim_start_matches("- ").trim())
        .filter_map(|l| l.strip_prefix("address:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .collect();
    assert!(
        !addresses.is_empty(),
        "gateway.yaml has no listener address line:\n{yaml}"
    );
    for a in &addresses {
        assert!(
            stdout.contains(a.as_str()) || stderr.contains(a.as_str()),
            "the summary does not mention listener {a}:\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}

#[test]
fn all_duration_forms_are_accepted() {
    let yaml = format!(
        "{VALID}timeouts:\n  connect: 500ms\n  upstream_read: 15m\n  upstream_write: 1h\n  client_read: 30\n  client_write: 10s\n  keepalive: 75s\n"
    );
    let file = write_config(&yaml);
    let out = run_check(&file.path);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check rejected valid durations:\n{yaml}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn unknown_key_in_a_listener() {
    let yaml = valid_with(
        "    address: \"127.0.0.1:5000\"\n",
        "    address: \"127.0.0.1:5000\"\n    adress: \"127.0.0.1:5001\"\n",
    );
    // `adress` sits on line 7, column 5.
    assert_check_fails(&yaml, &["listeners[0]", "`adress`", "at line 7 column 5"]);
}

#[test]
fn unknown_key_at_the_top_level() {
    let yaml = format!("{VALID}listners: []\n");
    assert_check_fails(&yaml, &["`listners`", "at line 14"]);
}

#[test]
fn unknown_key_in_an_upstream() {
    let yaml = valid_with(
        "    url: \"http://127.0.0.1:15000\"\n",
        "    url: \"http://127.0.0.1:15000\"\n    hostheader: client\n",
    );
    assert_check_fails(&yaml, &["upstreams.registry", "`hostheader`", "at line"]);
}

#[test]
fn unknown_key_in_timeouts() {
    let yaml = format!("{VALID}timeouts:\n  conect: 5s\n");
    assert_check_fails(&yaml, &["timeouts", "`conect`", "at line"]);
}

#[test]
fn unknown_key_in_server() {
    let yaml = valid_with("  grace_period: 10s\n", "  grace_period: 10s\n  treads: 2\n");
    assert_check_fails(&yaml, &["server", "`treads`", "at line"]);
}

#[test]
fn bad_listen_address() {
    let yaml = valid_with("\"127.0.0.1:5000\"", "\"nope:99999\"");
    assert_check_fails(&yaml, &["listeners[0].address", "`nope:99999`"]);
}

#[test]
fn upstream_url_with_an_unsupported_scheme() {
    let yaml = valid_with("\"http://127.0.0.1:15000\"", "\"ftp://x\"");
    assert_check_fails(&yaml, &["upstreams.registry.url", "`ftp://x`", "line 9"]);
}

#[test]
fn upstream_url_without_a_host() {
    let yaml = valid_with("\"http://127.0.0.1:15000\"", "\"http://\"");
    assert_check_fails(&yaml, &["upstreams.registry.url", "`http://`"]);
}

#[test]
fn upstream_url_that_is_not_a_url() {
    let yaml = valid_with("\"http://127.0.0.1:15000\"", "\"registry:5000\"");
    assert_check_fails(&yaml, &["upstreams.registry.url", "`registry:5000`"]);
}

#[test]
fn upstream_url_with_a_path() {
    let yaml = valid_with("\"http://127.0.0.1:15000\"", "\"http://127.0.0.1:15000/v2/\"");
    assert_check_fails(&yaml, &["upstreams.registry.url", "`http://127.0.0.1:15000/v2/`"]);
}

#[test]
fn upstream_url_with_a_query() {
    let yaml = valid_with("\"http://127.0.0.1:15000\"", "\"http://127.0.0.1:15000?token=x\"");
    assert_check_fails(&yaml, &["upstreams.registry.url", "`http://127.0.0.1:15000?token=x`"]);
}

#[test]
fn registry_naming_an_undefined_upstream() {
    let yaml = valid_with("    upstream: registry\n", "    upstream: nosuch\n");
    // Checked after parsing, still pointed at its line.
    assert_check_fails(&yaml, &["registries[0].upstream", "`nosuch`", "(line 13)"]);
}

#[test]
fn v1_route_naming_an_undefined_upstream() {
    let yaml = format!("{VALID}    routes:\n      v1: {{ upstream: ghost }}\n");
    assert_check_fails(&yaml, &["registries[0].routes.v1.upstream", "`ghost`"]);
}

#[test]
fn bad_duration() {
    let yaml = format!("{VALID}timeouts:\n  connect: ten seconds\n");
    assert_check_fails(&yaml, &["timeouts.connect", "`ten seconds`"]);
}

#[test]
fn bad_grace_period() {
    let yaml = valid_with("  grace_period: 10s\n", "  grace_period: 5 parsecs\n");
    assert_check_fails(&yaml, &["server.grace_period", "`5 parsecs`"]);
}

#[test]
fn bad_cidr_in_trusted_proxies() {
    let yaml = valid_with(
        "  trusted_proxies: []\n",
        "  trusted_proxies: [\"127.0.0.1\", \"10.0.0.0/33\"]\n",
    );
    assert_check_fails(&yaml, &["server.trusted_proxies[1]", "`10.0.0.0/33`"]);
}

#[test]
fn trusted_proxy_that_is_not_an_ip() {
    let yaml = valid_with("  trusted_proxies: []\n", "  trusted_proxies: [\"proxy.internal\"]\n");
    assert_check_fails(&yaml, &["server.trusted_proxies[0]", "`proxy.internal`"]);
}

#[test]
fn no_listeners() {
    let yaml = valid_with(
        "listeners:\n  - name: plain\n    address: \"127.0.0.1:5000\"\n",
        "listeners: []\n",
    );
    assert_check_fails(&yaml, &["listeners"]);
}

#[test]
fn no_registries() {
    let yaml = valid_with(
        "registries:\n  - name: main\n    default: true\n    upstream: registry\n",
        "registries: []\n",
    );
    assert_check_fails(&yaml, &["registries"]);
}

#[test]
fn two_default_registries() {
    let yaml = format!("{VALID}  - name: second\n    default: true\n    upstream: registry\n");
    assert_check_fails(&yaml, &["registries", "default"]);
}

#[test]
fn duplicate_listener_address() {
    let yaml = valid_with(
        "    address: \"127.0.0.1:5000\"\n",
        "    address: \"127.0.0.1:5000\"\n  - name: again\n    address: \"127.0.0.1:5000\"\n",
    );
    assert_check_fails(&yaml, &["listeners[1].address", "`127.0.0.1:5000`"]);
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("does-not-exist.yaml");
    let out = run_check(&path);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "check succeeded on a missing file:\n{stdout}");
    assert!(
        stderr.contains("error:") && stderr.contains(&path.display().to_string()),
        "stderr must name the missing file {}:\n{stderr}",
        path.display()
    );
}

#[test]
fn invalid_yaml_syntax_reports_the_line() {
    // Line 6 has a second `key:` after a scalar value.
    let yaml = valid_with(
        "    address: \"127.0.0.1:5000\"\n",
        "    address: \"127.0.0.1:5000\" extra: value\n",
    );
    assert_check_fails(&yaml, &["line 6"]);
}

#[test]
fn empty_file_is_an_error() {
    assert_check_fails("", &[]);
}

#[test]
fn running_with_an_invalid_config_fails_fast_with_the_same_error() {
    let yaml = valid_with("\"127.0.0.1:5000\"", "\"nope:99999\"");
    let file = write_config(&yaml);
    let out = run_expecting_exit(&file.path, Duration::from_secs(10));
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "the server started with an invalid config");
    let prefix = format!("error: {}: ", file.path.display());
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&prefix) && l.contains("listeners[0].address") && l.contains("`nope:99999`")),
        "stderr must carry the same error line:\n{stderr}"
    );
}

#[test]
fn access_rule_errors_name_key_value_and_line() {
    // VALID has 13 lines; the block starts on line 14.
    let with = |block: &str| format!("{VALID}{block}");
    assert_check_fails(
        &with("access:\n  rules:\n    - repositories: [\"Team/*\"]\n      pull: [authenticated]\n"),
        &["access.rules[0].repositories[0]", "Team/*", "lower case", "line 16"],
    );
    assert_check_fails(
        &with("access:\n  rules:\n    - repositories: [\"a**\"]\n"),
        &["access.rules[0].repositories[0]", "a**", "whole path component"],
    );
    assert_check_fails(
        &with(
            "access:\n  groups: { admins: [ada] }\n  rules:\n    - repositories: [\"**\"]\n      push: [group:admin]\n",
        ),
        &[
            "access.rules[0].push[0]",
            "unknown group `admin`",
            "defined groups: admins",
            "line 18",
        ],
    );
    assert_check_fails(
        &with("access:\n  rules:\n    - repositories: [\"**\"]\n      pull: [\"role:x\"]\n"),
        &["access.rules[0].pull[0]", "role:x"],
    );
    assert_check_fails(&with("access:\n  rules: []\n"), &["access.rules", "at least one rule"]);
    assert_check_fails(
        &with("access:\n  rules:\n    - repositories: [\"**\"]\n      puhs: [ada]\n"),
        &["access.rules[0]", "puhs"],
    );
}

#[test]
fn pool_errors_name_key_value_and_line() {
    // Line 9 of VALID is `    url: ...`; a `urls` list replaces it.
    let pool = |block: &str| valid_with("    url: \"http://127.0.0.1:15000\"\n", block);
    assert_check_fails(
        &pool("    urls:\n      - \"http://127.0.0.1:15000\"\n      - \"https://127.0.0.1:15001\"\n"),
        &[
            "upstreams.registry.urls[1]",
            "https://127.0.0.1:15001",
            "one scheme",
            "line 11",
        ],
    );
    assert_check_fails(
        &pool("    urls: [\"http://127.0.0.1:15000\", \"http://localhost:15001\", \"HTTP://127.0.0.1:15000/\"]\n"),
        &["upstreams.registry.urls[2]", "is also urls[0]"],
    );
    assert_check_fails(
        &pool("    url: \"http://127.0.0.1:15000\"\n    urls: [\"http://127.0.0.1:15001\"]\n"),
        &["upstreams.registry.urls", "`url` and `urls` together", "line 10"],
    );
    assert_check_fails(
        &pool("    policy: round_robin\n"),
        &["upstreams.registry", "needs `url`"],
    );
    assert_check_fails(
        &pool("    urls: [\"http://127.0.0.1:15000\", \"http://127.0.0.1:nope\"]\n"),
        &["upstreams.registry.urls[1]", "127.0.0.1:nope"],
    );
    assert_check_fails(
        &pool("    url: \"http://127.0.0.1:15000\"\n    policy: fastest\n"),
        &["upstreams.registry.policy", "fastest", "least_requests"],
    );
    let watched = |block: &str| pool(&format!("    url: \"http://127.0.0.1:15000\"\n{block}"));
    assert_check_fails(
        &watched("    health: { interval: 1s, timeout: 5s }\n"),
        &["upstreams.registry.health.timeout", "longer than `interval`", "line 10"],
    );
    assert_check_fails(
        &watched("    health: { rise: 0 }\n"),
        &["upstreams.registry.health.rise", "at least 1"],
    );
    assert_check_fails(
        &watched("    health: { path: v2 }\n"),
        &["upstreams.registry.health.path", "`v2`"],
    );
    assert_check_fails(
        &watched("    health: on\n"),
        &["upstreams.registry.health", "`off` or a health block"],
    );
    assert_check_fails(
        &watched("    passive: { ejection: 0s }\n"),
        &["upstreams.registry.passive.ejection", "greater than zero"],
    );
}

#[test]
fn check_and_route_describe_a_pool() {
    let yaml = valid_with(
        "    url: \"http://127.0.0.1:15000\"\n",
        "    urls: [\"http://127.0.0.1:15000\", \"http://localhost:15001\"]\n    policy: least_requests\n\
         \x20   health: off\n",
    );
    let file = write_config(&yaml);
    let out = run_check(&file.path);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("registry (2 replicas, least_requests)"), "{stdout}");
    assert!(stdout.contains("http://localhost:15001 (127.0.0.1:15001)"), "{stdout}");
    assert!(
        stdout.contains("health: off; passive: skip 10s after 1 failed connection(s)"),
        "{stdout}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_registry-gateway"))
        .arg("--config")
        .arg(&file.path)
        .args(["route", "127.0.0.1:5000", "/v2/team/app/manifests/v1"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("upstream: registry (http://127.0.0.1:15000, http://localhost:15001 (least_requests))"),
        "{stdout}\n{stderr}"
    );
}
