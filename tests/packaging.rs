//! What ships beside the binary:
//!
//! * the systemd unit, checked by systemd's own tools: it parses, its
//!   commands exist, it runs as an unprivileged user that may bind 443, and
//!   its sandboxing scores well (it is not started here: CI has no running
//!   systemd);
//! * `deploy/kubernetes/`, checked against the Kubernetes API schemas, for
//!   the references between its objects, and with its gateway.yaml passing
//!   `registry-gateway check`;
//! * `Containerfile`, built into an image that runs the binary under test
//!   as uid 65532, without a daemon or an image registry.

mod common;
#[path = "packaging/container.rs"]
mod container;
#[path = "packaging/kubernetes.rs"]
mod kubernetes;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use container::{BASE_IMAGE, Buildah, Running, not_built_here};

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

/// `target/`, where the base image's root filesystem is cached.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_registry-gateway"));
    bin.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/registry-gateway")
        .to_path_buf()
}

#[test]
fn container_image_builds_and_runs_offline() {
    require_tool(container::BUILDAH, "buildah");
    require_tool(container::DEBOOTSTRAP, "debootstrap");
    let started = Instant::now();
    let rootfs = match container::base_rootfs(&target_dir().join("container-base")) {
        Ok(rootfs) => rootfs,
        Err(why) => return not_built_here(&why),
    };
    let buildah = Buildah::new();
    // The machine can build and run an image at all: past this point every
    // failure is the recipe's.
    let probe = buildah
        .import_base(&rootfs)
        .and_then(|()| buildah.from(BASE_IMAGE))
        .and_then(|c| container::run(buildah.run_in(&c, &[], &["/bin/true"])));
    if let Err(why) = probe {
        return not_built_here(&why);
    }
    let base_ready = started.elapsed();

    // `.dockerignore` lets through what the `build` and `prebuilt` stages
    // copy, and keeps out build output, git and local state.
    let checkout = container::mock_checkout(&buildah.dir().join("checkout"));
    let context = buildah.context_as_sent(&checkout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(context, container::CONTEXT_SENT, "the build context past .dockerignore");

    // The context a `docker build .` of a checkout after `cargo build
    // --release` would send, less the sources the skipped stage needs.
    let context = buildah.dir().join("context");
    std::fs::create_dir_all(context.join("target/release")).unwrap();
    for file in ["Containerfile", ".dockerignore"] {
        std::fs::copy(file, context.join(file)).unwrap();
    }
    let binary = context.join("target/release/registry-gateway");
    std::fs::copy(GATEWAY_BIN.path(), &binary).unwrap();
    let binary_size = std::fs::metadata(&binary).unwrap().len();
    const IMAGE: &str = "localhost/registry-gateway:test";
    let build_args = [&format!("RUNTIME_IMAGE={BASE_IMAGE}") as &str, "BINARY_FROM=prebuilt"];
    let log = buildah
        .build(&context.join("Containerfile"), &context, IMAGE, &build_args)
        .unwrap_or_else(|e| panic!("the Containerfile does not build offline: {e}"));
    assert!(
        !log.contains(" AS build") && !log.contains("rust:"),
        "the unused build stage was processed:\n{log}"
    );
    let built = started.elapsed();
    // Without BINARY_FROM, the `build` stage makes the binary: given a
    // RUST_IMAGE that does not exist, the build fails on that image, not
    // on an image called `build` (as buildah 1.28 does when the stage is
    // named by an ARG's default).
    let runtime = format!("RUNTIME_IMAGE={BASE_IMAGE}");
    let out = buildah
        .build_command(
            &context.join("Containerfile"),
            &context,
            "localhost/registry-gateway:default",
            &["RUST_IMAGE=localhost/no-such-rust-image", &runtime],
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && said.contains("no-such-rust-image"),
        "the default build does not use the `build` stage:\n{said}"
    );

    let image = buildah.inspect_image(IMAGE);
    let config = &image["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532", "{config:#}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/registry-gateway"]),
        "{config:#}"
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["--config", "/etc/registry-gateway/gateway.yaml"]),
        "{config:#}"
    );
    let ports: Vec<&str> = config["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(ports, ["5000/tcp", "5443/tcp", "9145/tcp"], "{config:#}");
    // On the base's layers, one layer with the binary and nothing else.
    let base = container::layer_sizes(&buildah.inspect_image(BASE_IMAGE));
    let layers = container::layer_sizes(&image);
    assert_eq!(
        layers[..layers.len() - 1],
        base[..],
        "the image is not the base plus one layer"
    );
    let added = layers[layers.len() - 1];
    assert!(
        (binary_size..binary_size + 64 * 1024).contains(&added),
        "the runtime stage adds {added} bytes for a {binary_size}-byte binary"
    );

    // Run as the image says: its user, its entrypoint and command.
    let c = buildah.from(IMAGE).unwrap_or_else(|e| panic!("{e}"));
    let version = container::run(buildah.run_in(&c, &[], &["/usr/local/bin/registry-gateway", "--version"]));
    let expected = Command::new(GATEWAY_BIN).arg("--version").output().unwrap().stdout;
    assert_eq!(
        version.unwrap_or_else(|e| panic!("{e}")),
        String::from_utf8_lossy(&expected)
    );
    let uid = container::run(buildah.run_in(&c, &[], &["id", "-u"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(uid.trim(), "65532");

    let etc = buildah.dir().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let metrics = free_addr();
    std::fs::write(
        etc.join("gateway.yaml"),
        format!(
            "listeners: [ {{ address: \"{}\" }} ]\n\
             upstreams: {{ registry: {{ url: \"http://{}\" }} }}\n\
             registries: [ {{ name: main, default: true, upstream: registry }} ]\n\
             metrics: {{ address: \"{metrics}\" }}\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    // Readable by uid 65532 through the bind mount.
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let argv: Vec<&str> = [&config["Entrypoint"], &config["Cmd"]]
        .iter()
        .flat_map(|v| v.as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    let log_path = buildah.dir().join("gateway.log");
    let mut cmd = buildah.run_in(&c, &[format!("{}:/etc/registry-gateway:ro", etc.display())], &argv);
    let log = std::fs::File::create(&log_path).unwrap();
    cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    let running = Running(cmd.spawn().expect("spawn buildah run"));
    let healthy = wait_until(Duration::from_secs(30), || {
        Request::get("/healthz")
            .try_send(metrics)
            .is_ok_and(|r| r.status == 200)
    });
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        healthy,
        "the image's entrypoint and command serve no /healthz on {metrics}:\n{}",
        log()
    );
    drop(running);
    let gone = wait_until(Duration::from_secs(10), || TcpStream::connect(metrics).is_err());
    assert!(gone, "the gateway in the container outlived buildah run:\n{}", log());
    container::report(&format!(
        "container image built here: {} MB ({} MB base + {} MB binary); base ready after {:.1?}, \
         image built after {:.1?}, ran after {:.1?}",
        layers.iter().sum::<u64>() / 1_000_000,
        base.iter().sum::<u64>() / 1_000_000,
        added / 1_000_000,
        base_ready,
        built,
        started.elapsed()
    ));
}
