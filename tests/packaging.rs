//! The shipped systemd unit, checked by systemd's own tools: it parses, its
//! commands exist, it runs as an unprivileged user that may bind 443, and
//! its sandboxing scores well. (It is not started here: CI has no running
//! systemd.)

mod common;

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
