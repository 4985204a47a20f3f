//! What ships beside the binary:
//!
//! * the systemd unit, checked by systemd's own tools: it parses, its
//!   commands exist, it runs as an unprivileged user that may bind 443, and
//!   its sandboxing scores well (it is not started here: CI has no running
//!   systemd);
//! * `deploy/kubernetes/`, checked against the Kubernetes API schemas, for
//!   the references between its objects, and with its gateway.yaml passing
//!   `registry-gateway check`.

mod common;
#[path = "packaging/kubernetes.rs"]
mod kubernetes;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

const UNIT: &str = "packaging/registry-gateway.service";
const SYSUSERS: &str = "packaging/registry-gateway.sysusers";

fn systemd_analyze() -> &'static str {
    const TOOL: &str = "/usr/bin/systemd-analyze";
    require_tool(TOOL, "systemd");
    TOOL
}

/// The unit with its binary path pointed at the binary under test, in a
/// temp dir (verify checks that ExecStart's program exists).
fn unit_under_test(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(UNIT).expect("read the unit");
    let path = dir.join("registry-gateway.service");
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/registry-gateway", GATEWAY_BIN.path()),
    )
    .unwrap();
    path
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let tool = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let out = Command::new(tool)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Unknown keys and bad values are warnings with a zero exit.
    assert!(
        !stderr.lines().any(|l| l.contains("registry-gateway.service")),
        "systemd-analyze verify complained about the unit:\n{stderr}"
    );
    let out = Command::new(tool)
        // The threshold is on systemd's internal 0-100 scale: 20 is the
        // "2.0" it prints (this unit scores 1.5, "OK").
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    assert!(
        out.status.success(),
        "the unit's exposure is above 2.0:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "User=registry-gateway",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from {UNIT}");
    }
    let sysusers = std::fs::read_to_string(SYSUSERS).unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u registry-gateway ")),
        "{SYSUSERS} does not create the user"
    );
}

#[test]
fn the_units_config_check_runs_as_its_exec_start_pre() {
    // ExecStartPre runs `check` on the same file; it must be a valid
    // command line for the binary (a typo would stop every start).
    let text = std::fs::read_to_string(UNIT).unwrap();
    let pre = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPre="))
        .expect("an ExecStartPre line");
    let args: Vec<&str> = pre.split_whitespace().skip(1).collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "listeners: [ { address: \"127.0.0.1:5000\" } ]\n\
         upstreams: { registry: { url: \"http://127.0.0.1:15000\" } }\n\
         registries: [ { name: main, default: true, upstream: registry } ]\n",
    )
    .unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("/etc/registry-gateway/gateway.yaml", config.to_str().unwrap()))
        .collect();
    let out = Command::new(GATEWAY_BIN).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "`registry-gateway {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `scripts/install-deps.sh test` installs it into a venv of the checkout.
const KUBERNETES_VALIDATE: &str = ".run/venv/bin/kubernetes-validate";
/// The oldest API the manifests need (a `preStop` `sleep` action).
const KUBERNETES_VERSION: &str = "1.30.0";

/// The kubernetes-validate that install-deps.sh pins, or a failure that
/// says how to install it.
fn kubernetes_validate() -> &'static str {
    let script = std::fs::read_to_string("scripts/install-deps.sh").unwrap();
    let pin = script
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VALIDATE="))
        .expect("install-deps.sh pins KUBERNETES_VALIDATE=");
    let install = format!(
        "scripts/install-deps.sh test (it runs: python3 -m venv .run/venv && \
         .run/venv/bin/pip install kubernetes-validate=={pin})"
    );
    if !Path::new(KUBERNETES_VALIDATE).exists() {
        panic!("missing {KUBERNETES_VALIDATE}: install it with: {install}");
    }
    let out = Command::new(KUBERNETES_VALIDATE).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        version, pin,
        "{KUBERNETES_VALIDATE} is {version}, not {pin}: update it with: {install}"
    );
    KUBERNETES_VALIDATE
}

#[test]
fn kubernetes_manifests_validate() {
    let tool = kubernetes_validate();
    let manifests = kubernetes::Manifests::load();
    let out = Command::new(tool)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(kubernetes::files())
        .output()
        .expect("run kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate --strict -k {KUBERNETES_VERSION} failed:\n{report}"
    );
    let passed = report.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(
        passed,
        manifests.objects.len(),
        "not every object was validated:\n{report}"
    );

    let mut problems = Vec::new();
    manifests.check_namespaces(&mut problems);
    manifests.check_probes(&mut problems);
    manifests.check_gateway_endpoints(&mut problems);
    manifests.check_gateway_files(&mut problems);
    manifests.check_selectors(&mut problems);
    manifests.check_replicas(&mut problems);
    assert!(problems.is_empty(), "{}:\n  {}", kubernetes::DIR, problems.join("\n  "));

    // The ConfigMap's gateway.yaml, with cluster addresses on loopback and
    // the Secret's files made here, passes `registry-gateway check`.
    let gateway = manifests.gateway();
    let dir = tempfile::tempdir().unwrap();
    let certs = common::tls::DevCerts::generate(&["registry.example.com"]);
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        htpasswd_line("B", &["-C", "4"], "alice", "wonderland") + "\n",
    )
    .unwrap();
    let files = BTreeMap::from([
        ("tls.crt".to_string(), certs.cert()),
        ("tls.key".to_string(), certs.key()),
        ("htpasswd".to_string(), htpasswd),
    ]);
    let config = kubernetes::localize(&gateway.config, &files, &mut free_port);
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let out = run_check(&path);
    assert!(
        out.status.success(),
        "`registry-gateway check` rejects the ConfigMap's gateway.yaml (as localized below):\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&path).unwrap()
    );
}
