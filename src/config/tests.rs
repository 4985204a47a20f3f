use super::*;

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

fn parse(text: &str) -> Result<GatewayConfig, String> {
    GatewayConfig::parse(text, Path::new("gw.yaml")).map_err(|e| e.to_string())
}

fn error_of(text: &str) -> String {
    parse(text).expect_err("config should be rejected")
}

#[test]
fn minimal_config_compiles_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.listeners[0].address, "127.0.0.1:5000".parse().unwrap());
    assert_eq!(c.server.grace_period, DEFAULT_GRACE_PERIOD);
    let r = c.default_registry();
    assert_eq!(r.routes.v2.authority, "127.0.0.1:15000");
    assert!(r.routes.v1.is_none());
    assert_eq!(c.timeouts, Timeouts::default());
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
    assert!(
        e.contains("upstreams.registry.url") && e.contains("`ftp://x`"),
        "{e}"
    );
    let e = error_of(&format!("{GOOD}timeouts:\n  connect: ten seconds\n"));
    assert!(
        e.contains("timeouts.connect") && e.contains("`ten seconds`"),
        "{e}"
    );
    let e = error_of(&format!(
        "{GOOD}server:\n  trusted_proxies: [10.0.0.0/8, 300.1.1.1]\n"
    ));
    assert!(
        e.contains("server.trusted_proxies[1]") && e.contains("`300.1.1.1`"),
        "{e}"
    );
}

#[test]
fn dangling_references_name_key_and_value() {
    let e = error_of(&GOOD.replace("upstream: registry", "upstream: nowhere"));
    assert!(
        e.contains("registries[0].upstream") && e.contains("`nowhere`"),
        "{e}"
    );
    let e = error_of(&format!(
        "{GOOD}    routes:\n      v1: {{ upstream: legacy }}\n"
    ));
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
    assert!(
        e.contains("gw.yaml: listeners: at least one listener"),
        "{e}"
    );
    assert!(
        e.contains("gw.yaml: registries: at least one virtual registry"),
        "{e}"
    );
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
    let v1 = c.default_registry().routes.v1.as_ref().unwrap();
    assert_eq!(v1.name, "legacy");
    assert_eq!(v1.host_header, HostHeaderMode::Upstream);
}
