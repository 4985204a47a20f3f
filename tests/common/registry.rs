//! A real upstream: `docker-registry serve` (distribution registry:2) with
//! filesystem storage in a temporary directory.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::http::Request;
use super::{free_port, require_tool, says_address_in_use, tail, wait_until};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

pub struct Registry {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
    log_path: PathBuf,
    storage: PathBuf,
}

/// The user agent of the gateway's active health checks: their lines are
/// left out of [`Registry::access_log`].
pub const HEALTH_CHECK_AGENT: &str = "registry-gateway-health/";

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/`
    /// answers 200.
    pub fn start() -> Registry {
        Registry::start_fresh(
            "",
            |registry| matches!(Request::get("/v2/").try_send(registry.addr), Ok(r) if r.status == 200),
        )
    }

    /// Starts a registry on a given loopback port.
    pub fn start_on(port: u16) -> Registry {
        let mut registry = Registry::spawn(port, "");
        let ready = registry.wait_ready(|r| matches!(Request::get("/v2/").try_send(r.addr), Ok(r) if r.status == 200));
        assert!(ready, "docker-registry: port {port} is taken by another program");
        registry
    }

    /// Spawns a registry (`http_extra` as in [`Registry::spawn`]) on a free
    /// port and waits until `ready` says it serves; a port another program
    /// took in the meantime is retried on a new one.
    pub fn start_fresh(http_extra: &str, mut ready: impl FnMut(&Registry) -> bool) -> Registry {
        for _ in 0..5 {
            let mut registry = Registry::spawn(free_port(), http_extra);
            if registry.wait_ready(&mut ready) {
                return registry;
            }
        }
        panic!("docker-registry: 5 free ports in a row were taken before it could listen");
    }

    /// Polls `ready` for up to 20 s. False when the registry exited because
    /// its port was taken; panics with the log on any other exit or time-out.
    fn wait_ready(&mut self, mut ready: impl FnMut(&Registry) -> bool) -> bool {
        let mut port_taken = false;
        let ok = wait_until(Duration::from_secs(20), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                port_taken = says_address_in_use(&self.log());
                assert!(
                    port_taken,
                    "docker-registry exited early ({status}); log:\n{}",
                    self.log()
                );
                return true;
            }
            ready(self)
        });
        assert!(
            ok,
            "docker-registry on {} not ready within 20 s; log:\n{}",
            self.addr,
            tail(&self.log(), 4000)
        );
        !port_taken
    }

    /// Spawns a registry without waiting for it; `http_extra` is appended
    /// under `http:` (indented two spaces), e.g. a `tls:` block.
    pub fn spawn(port: u16, http_extra: &str) -> Registry {
        Registry::spawn_with(port, http_extra, "", None, "integration-test-secret")
    }

    /// A replica of a registry pool: on a free port, with its storage in
    /// `storage` (shared with other replicas) and `secret` as its
    /// `http.secret` (which signs upload state).
    pub fn start_replica(storage: &std::path::Path, secret: &str) -> Registry {
        for _ in 0..5 {
            let mut registry = Registry::spawn_with(free_port(), "", "", Some(storage), secret);
            if registry.wait_ready(|r| matches!(Request::get("/v2/").try_send(r.addr), Ok(r) if r.status == 200)) {
                return registry;
            }
        }
        panic!("docker-registry: 5 free ports in a row were taken before it could listen");
    }

    /// A registry whose clients need a token from `issuer` (registry:2's
    /// `auth.token`), on a free port; waits until it challenges.
    pub fn start_token_auth(issuer: &super::token_server::TokenServer) -> Registry {
        let auth = format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            issuer.realm(),
            super::token_server::SERVICE,
            super::token_server::ISSUER,
            issuer.root_cert().display()
        );
        for _ in 0..5 {
            let mut registry = Registry::spawn_with(free_port(), "", &auth, None, "integration-test-secret");
            if registry.wait_ready(|r| matches!(Request::get("/v2/").try_send(r.addr), Ok(r) if r.status == 401)) {
                return registry;
            }
        }
        panic!("docker-registry: 5 free ports in a row were taken before it could listen");
    }

    /// `top_extra` is appended at the top level (an `auth:` block);
    /// `storage`: `None` for its own directory.
    fn spawn_with(
        port: u16,
        http_extra: &str,
        top_extra: &str,
        storage: Option<&std::path::Path>,
        secret: &str,
    ) -> Registry {
        require_tool(REGISTRY_BIN, "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir()
            .expect("temp dir");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let storage = storage.map_or_else(|| dir.path().join("storage"), |s| s.to_owned());
        fs::create_dir_all(&storage).unwrap();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: {secret}\n{http_extra}{top_extra}",
            storage = storage.display(),
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log_path = dir.path().join("registry.log");
        File::create(&log_path).unwrap();
        let child = run_registry(&config_path, &log_path);
        Registry {
            child,
            dir,
            addr,
            log_path,
            storage,
        }
    }

    /// SIGKILL: the replica dies as a crashed host would (its storage and
    /// log stay for [`Registry::restart`]).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, storage and secret; waits until it
    /// serves.
    pub fn restart(&mut self) {
        self.kill();
        self.child = run_registry(&self.dir.path().join("config.yml"), &self.log_path);
        let ready = self.wait_ready(|r| matches!(Request::get("/v2/").try_send(r.addr), Ok(r) if r.status == 200));
        assert!(
            ready,
            "docker-registry: port {} was taken while it was down",
            self.addr.port()
        );
    }

    /// Access-log lines of requests whose line contains `needle`.
    pub fn served(&self, needle: &str) -> usize {
        self.access_log().iter().filter(|l| l.contains(needle)).count()
    }

    /// The gateway's health checks this registry answered.
    pub fn health_checks(&self) -> usize {
        self.all_access_lines()
            .filter(|l| l.contains(HEALTH_CHECK_AGENT))
            .count()
    }

    /// Panics with the log if the registry process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("docker-registry exited early ({status}); log:\n{}", self.log());
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the registry printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The access-log lines (`127.0.0.1 - - [...] "GET /v2/ HTTP/1.1" 200 ...`)
    /// of requests, leaving out the gateway's health checks.
    pub fn access_log(&self) -> Vec<String> {
        (self.all_access_lines())
            .filter(|l| !l.contains(HEALTH_CHECK_AGENT))
            .collect()
    }

    fn all_access_lines(&self) -> impl Iterator<Item = String> {
        let log = self.log();
        let lines: Vec<String> = (log.lines())
            .filter(|l| l.contains(" - - [") && l.contains("HTTP/1."))
            .map(str::to_string)
            .collect();
        lines.into_iter()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Root of the filesystem storage driver.
    pub fn storage_dir(&self) -> PathBuf {
        self.storage.clone()
    }

    /// Where the registry keeps the content of a blob (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Uploads a blob straight to the registry, bypassing any gateway.
    /// Returns the digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let (digest, rsp) = upload_blob(self.addr, repo, data);
        assert_eq!(rsp.status, 201, "direct blob upload failed:\n{}", rsp.describe());
        digest
    }

    /// Whether the registry itself has the blob in `repo` (HEAD straight to
    /// the registry).
    pub fn has_blob(&self, repo: &str, digest: &str) -> bool {
        let rsp = Request::head(&format!("/v2/{repo}/blobs/{digest}")).send(self.addr);
        match rsp.status {
            200 => true,
            404 => false,
            s => panic!("unexpected HEAD status {s}:\n{}", rsp.describe()),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Uploads a blob to whatever listens on `addr` the way clients do (POST to
/// open an upload, then a monolithic PUT with `?digest=`). Returns the
/// digest and the PUT's response.
pub fn upload_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> (String, super::http::Response) {
    let digest = super::oci::sha256_bytes(data);
    let rsp = Request::post(&format!("/v2/{repo}/blobs/uploads/")).send(addr);
    assert_eq!(rsp.status, 202, "opening an upload on {addr}:\n{}", rsp.describe());
    let upload = super::http::path_of(rsp.expect_header("location"));
    let rsp = Request::put(&super::http::with_query(&upload, &format!("digest={digest}")))
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send(addr);
    (digest, rsp)
}

/// `docker-registry serve CONFIG`, appending to `log_path`.
fn run_registry(config_path: &std::path::Path, log_path: &std::path::Path) -> Child {
    let log = fs::OpenOptions::new().append(true).open(log_path).unwrap();
    Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {REGISTRY_BIN}: {e}"))
}
