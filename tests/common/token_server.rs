//! A real token issuer (`tests/clients/token_server.py`: ES256 JWTs, as
//! registry:2's `auth.token` verifies them), run for one test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::python::PYTHON_BIN;
use super::require_tool;

/// The registry's `auth.token.service` and `issuer` the tokens name.
pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";

pub struct TokenServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    root_cert: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    /// `users`: `name:password` pairs it accepts; `anonymous_pull`: clients
    /// without credentials get pull access.
    pub fn start(users: &[&str], anonymous_pull: bool) -> TokenServer {
        require_tool(PYTHON_BIN, "python3");
        require_tool("/usr/lib/python3/dist-packages/jwt/__init__.py", "python3-jwt");
        require_tool(
            "/usr/lib/python3/dist-packages/cryptography/__init__.py",
            "python3-cryptography",
        );
        let dir = tempfile::tempdir().unwrap();
        let root_cert = dir.path().join("issuer.pem");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/token_server.py");
        let mut cmd = Command::new(PYTHON_BIN);
        cmd.arg(&script).arg("--cert-out").arg(&root_cert);
        for u in users {
            cmd.args(["--user", u]);
        }
        if anonymous_pull {
            cmd.arg("--anonymous-pull");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", script.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("token server did not start: {first:?}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        TokenServer {
            child,
            port,
            _dir: dir,
            root_cert,
            log,
        }
    }

    /// `http://127.0.0.1:PORT/token`
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The issuer's certificate: the registry's `rootcertbundle`.
    pub fn root_cert(&self) -> &Path {
        &self.root_cert
    }

    /// One JSON line per token request: user, scopes, granted, status.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let lines = self.log.lock().unwrap().clone();
        lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
