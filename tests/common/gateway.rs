//! The binary under test, run as a child process.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::registry::Registry;
use super::{free_addr, says_address_in_use, tail, wait_until};

/// The binary under test: the one cargo built for these tests, or the one
/// `REGISTRY_GATEWAY_BIN` names (to run the suite against another build,
/// e.g. an older commit's, and see which tests it fails).
pub const GATEWAY_BIN: GatewayBin = GatewayBin;

#[derive(Clone, Copy, Debug)]
pub struct GatewayBin;

impl GatewayBin {
    pub fn path(self) -> &'static str {
        static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PATH.get_or_init(|| {
            std::env::var("REGISTRY_GATEWAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_registry-gateway").to_string())
        })
    }
}

impl AsRef<std::ffi::OsStr> for GatewayBin {
    fn as_ref(&self) -> &std::ffi::OsStr {
        std::ffi::OsStr::new(self.path())
    }
}

impl std::fmt::Display for GatewayBin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

/// Builder for a `gateway.yaml` with one listener on a free port, one
/// upstream and one default registry.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    listen: SocketAddr,
    upstream_url: String,
    host_header: Option<String>,
    legacy_url: Option<String>,
    trusted_proxies: Vec<String>,
    grace_period: String,
    threads: Option<u32>,
    timeouts: Vec<(String, String)>,
}

impl GatewayConfig {
    /// A gateway in front of `registry`.
    pub fn for_upstream(registry: &Registry) -> GatewayConfig {
        GatewayConfig::for_url(&registry.url())
    }

    /// A gateway in front of any upstream URL.
    pub fn for_url(url: &str) -> GatewayConfig {
        GatewayConfig {
            listen: free_addr(),
            upstream_url: url.to_string(),
            host_header: None,
            legacy_url: None,
            trusted_proxies: Vec::new(),
            grace_period: "10s".to_string(),
            threads: Some(2),
            timeouts: Vec::new(),
        }
    }

    /// `client` (the default) or `upstream`.
    pub fn host_header(mut self, mode: &str) -> GatewayConfig {
        self.host_header = Some(mode.to_string());
        self
    }

    /// Routes `/v1/...` to a second registry.
    pub fn legacy(mut self, registry: &Registry) -> GatewayConfig {
        self.legacy_url = Some(registry.url());
        self
    }

    pub fn trusted_proxies(mut self, proxies: &[&str]) -> GatewayConfig {
        self.trusted_proxies = proxies.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn grace_period(mut self, period: &str) -> GatewayConfig {
        self.grace_period = period.to_string();
        self
    }

    /// Sets `timeouts.<key>`.
    pub fn timeout(mut self, key: &str, value: &str) -> GatewayConfig {
        self.timeouts.push((key.to_string(), value.to_string()));
        self
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("server:\n");
        if let Some(t) = self.threads {
            y.push_str(&format!("  threads: {t}\n"));
        }
        y.push_str(&format!("  grace_period: {}\n", self.grace_period));
        if self.trusted_proxies.is_empty() {
            y.push_str("  trusted_proxies: []\n");
        } else {
            y.push_str("  trusted_proxies:\n");
            for p in &self.trusted_proxies {
                y.push_str(&format!("    - \"{p}\"\n"));
            }
        }
        y.push_str(&format!(
            "listeners:\n  - name: plain\n    address: \"{}\"\n",
            self.listen
        ));
        y.push_str(&format!(
            "upstreams:\n  registry:\n    url: \"{}\"\n",
            self.upstream_url
        ));
        if let Some(h) = &self.host_header {
            y.push_str(&format!("    host_header: {h}\n"));
        }
        if let Some(l) = &self.legacy_url {
            y.push_str(&format!("  legacy:\n    url: \"{l}\"\n"));
        }
        y.push_str("registries:\n  - name: main\n    default: true\n    upstream: registry\n");
        if self.legacy_url.is_some() {
            y.push_str("    routes:\n      v1: { upstream: legacy }\n");
        }
        if !self.timeouts.is_empty() {
            y.push_str("timeouts:\n");
            for (k, v) in &self.timeouts {
                y.push_str(&format!("  {k}: {v}\n"));
            }
        }
        y
    }
}

/// A running gateway. Killed on drop.
pub struct Gateway {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
    /// The metrics listener the harness added; `None` when the test's own
    /// config has a `metrics:` section.
    metrics_addr: Option<SocketAddr>,
    log_path: PathBuf,
    config_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Gateway {
    /// Writes the config, starts the binary and waits until the listener
    /// accepts TCP connections. The listener's port is the harness's choice,
    /// so a port taken before the gateway could bind it is retried on a new
    /// one (see `ports`).
    pub fn start(config: &GatewayConfig) -> Gateway {
        let mut config = config.clone();
        for _ in 0..5 {
            match Gateway::launch(&config.to_yaml(), config.listen_addr(), &[]) {
                Ok(gateway) => return gateway,
                Err(taken) if taken == config.listen => config.listen = free_addr(),
                Err(taken) => panic!("registry-gateway: {taken} is taken and is not the harness's to move"),
            }
        }
        panic!("registry-gateway: 5 free ports in a row were taken before it could listen");
    }

    /// Starts the gateway with a hand-written config whose (first) listener
    /// is `listen`.
    pub fn start_yaml(yaml: &str, listen: SocketAddr) -> Gateway {
        Gateway::start_yaml_with_files(yaml, listen, &[])
    }

    /// Like [`Gateway::start_yaml`], first writing `files` (name relative to
    /// the config's folder, content) beside the config, e.g. an htpasswd file
    /// the config names by a relative path.
    pub fn start_yaml_with_files(yaml: &str, listen: SocketAddr, files: &[(&str, &[u8])]) -> Gateway {
        Gateway::launch(yaml, listen, files).unwrap_or_else(|taken| {
            panic!("registry-gateway: {taken}, chosen by the test, was taken by another program")
        })
    }

    /// Starts one gateway. `Err(address)` when it exited because a listen
    /// address the config names was taken; a metrics address the harness
    /// added itself is retried here.
    fn launch(yaml: &str, listen: SocketAddr, files: &[(&str, &[u8])]) -> Result<Gateway, SocketAddr> {
        // Every gateway gets its own metrics port (the default, 9145, would
        // clash between tests running in parallel).
        let own_metrics = !yaml.lines().any(|l| l.starts_with("metrics:"));
        for _ in 0..5 {
            let metrics_addr = own_metrics.then(free_addr);
            let mut full = yaml.to_string();
            if let Some(addr) = metrics_addr {
                full.push_str(&format!("\nmetrics:\n  address: \"{addr}\"\n  probe_interval: 1s\n"));
            }
            match Gateway::spawn_and_wait(&full, listen, metrics_addr, files) {
                Ok(gateway) => return Ok(gateway),
                Err(taken) if Some(taken) == metrics_addr => continue,
                Err(taken) => return Err(taken),
            }
        }
        panic!("registry-gateway: 5 free metrics ports in a row were taken before it could listen");
    }

    fn spawn_and_wait(
        yaml: &str,
        listen: SocketAddr,
        metrics_addr: Option<SocketAddr>,
        files: &[(&str, &[u8])],
    ) -> Result<Gateway, SocketAddr> {
        let dir = tempfile::Builder::new().prefix("gateway-").tempdir().expect("temp dir");
        for (name, content) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let config_path = dir.path().join("gateway.yaml");
        fs::write(&config_path, yaml).unwrap();
        let log_path = dir.path().join("gateway.log");
        let log = File::create(&log_path).unwrap();
        let child = Command::new(GATEWAY_BIN)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {GATEWAY_BIN}: {e}"));
        let mut gateway = Gateway {
            child,
            dir,
            addr: listen,
            metrics_addr,
            log_path,
            config_path,
            exit: None,
        };
        let mut taken = None;
        let ready = wait_until(Duration::from_secs(30), || {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                let log = gateway.log();
                taken = says_address_in_use(&log).then(|| bind_failure_address(&log)).flatten();
                assert!(
                    taken.is_some(),
                    "registry-gateway exited during start-up ({status}); config:\n{yaml}\nlog:\n{log}"
                );
                gateway.exit = Some(status);
                return true;
            }
            TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok()
        });
        assert!(
            ready,
            "registry-gateway not listening on {listen} within 30 s; config:\n{yaml}\nlog:\n{}",
            tail(&gateway.log(), 4000)
        );
        match taken {
            Some(addr) => Err(addr),
            None => Ok(gateway),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The metrics listener the harness configured.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .expect("this gateway's config has its own `metrics:` section")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the gateway printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Current resident set size (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, ...) with `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return self.exit;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

/// Runs `registry-gateway check --config FILE`.
pub fn run_check(config: &Path) -> Output {
    Command::new(GATEWAY_BIN)
        .arg("check")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {GATEWAY_BIN} check: {e}"))
}

/// Runs `registry-gateway --config FILE` expecting it to exit by itself
/// within `timeout` (e.g. because the config is invalid). A process still
/// running then is killed, and the test fails.
pub fn run_expecting_exit(config: &Path, timeout: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(GATEWAY_BIN)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {GATEWAY_BIN}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "registry-gateway --config {} still running after {timeout:?}; stderr:\n{}",
                config.display(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    }
}

/// The address in the gateway's start-up error for a listener or metrics
/// address it could not bind (`... cannot listen on `127.0.0.1:5000`: ...`).
fn bind_failure_address(log: &str) -> Option<SocketAddr> {
    let rest = &log[log.find("cannot listen on `")? + "cannot listen on `".len()..];
    rest[..rest.find('`')?].parse().ok()
}
