//! registry:2 upstreams that want credentials, as the mirror's remote
//! registries: htpasswd over plain HTTP, or the token flow over TLS; and
//! counting what reached a registry in its access log.

use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::auth::htpasswd_line;
use super::http::Request;
use super::registry::Registry;
use super::tls::{DevCerts, TlsConn};
use super::token_server::{ISSUER, SERVICE, TokenServer};

/// A registry:2 that wants credentials, with what its users log in with.
/// Dereferences to the [`Registry`] (access log, `kill`).
pub struct AuthRegistry {
    registry: Registry,
    pub user: String,
    pub password: String,
    /// The CA of a TLS registry.
    ca: Option<PathBuf>,
    _files: Option<TempDir>,
    _certs: Option<DevCerts>,
}

impl AuthRegistry {
    /// `http://127.0.0.1:PORT`, or `https://` for a TLS registry.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.registry.addr())
    }

    /// The CA that signed a TLS registry's certificate.
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// `user:password`, for skopeo's `--*-creds`.
    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }
}

impl Deref for AuthRegistry {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl DerefMut for AuthRegistry {
    fn deref_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

/// One line of registry:2's access log.
#[derive(Clone, Debug)]
pub struct AccessLine {
    pub method: String,
    pub target: String,
    pub status: u16,
}

/// `127.0.0.1 - - [date] "GET /v2/x HTTP/1.1" 200 12 "" "agent"`.
pub fn parse_access_line(line: &str) -> Option<AccessLine> {
    let rest = &line[line.find('"')? + 1..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let method = request.next()?.to_string();
    let target = request.next()?.to_string();
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(AccessLine { method, target, status })
}

impl Registry {
    /// registry:2 with `auth.htpasswd`: one bcrypt user; waits until it
    /// challenges.
    pub fn start_htpasswd(user: &str, password: &str) -> AuthRegistry {
        let files = tempfile::Builder::new().prefix("htpasswd-").tempdir().unwrap();
        let path = files.path().join("htpasswd");
        fs::write(&path, htpasswd_line("B", &["-C", "4"], user, password) + "\n").unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: mirror-test\n    path: {}\n",
            path.display()
        );
        let registry = Registry::start_fresh(
            &auth,
            |r| matches!(Request::get("/v2/").try_send(r.addr()), Ok(rsp) if rsp.status == 401),
        );
        AuthRegistry {
            registry,
            user: user.into(),
            password: password.into(),
            ca: None,
            _files: Some(files),
            _certs: None,
        }
    }

    /// registry:2 serving TLS (a dev certificate for `localhost` and
    /// `127.0.0.1`) with `auth.token` by `issuer`; `user`/`password` are an
    /// account `issuer` was started with. Waits until it challenges.
    pub fn start_tls_token_auth(issuer: &TokenServer, user: &str, password: &str) -> AuthRegistry {
        let certs = DevCerts::generate(&["localhost", "127.0.0.1"]);
        let extra = format!(
            "  tls:\n    certificate: {}\n    key: {}\n\
             auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            certs.cert().display(),
            certs.key().display(),
            issuer.realm(),
            issuer.root_cert().display()
        );
        let ca = certs.ca();
        let registry = Registry::start_fresh(&extra, |r| match TlsConn::try_open(r.addr(), "localhost", &ca) {
            Ok(mut conn) => conn.request(&Request::get("/v2/")).status == 401,
            Err(_) => false,
        });
        AuthRegistry {
            registry,
            user: user.into(),
            password: password.into(),
            ca: Some(ca),
            _files: None,
            _certs: Some(certs),
        }
    }

    /// Parsed access-log lines (health checks left out).
    pub fn requests(&self) -> Vec<AccessLine> {
        self.access_log().iter().filter_map(|l| parse_access_line(l)).collect()
    }

    /// Requests with `method` whose target contains `path_part`, any status.
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        (self.requests().iter())
            .filter(|l| l.method == method && l.target.contains(path_part))
            .count()
    }

    /// Like [`Registry::count`], only those answered 2xx (a 401 challenge
    /// before a login moves no content).
    pub fn count_ok(&self, method: &str, path_part: &str) -> usize {
        (self.requests().iter())
            .filter(|l| l.method == method && l.target.contains(path_part) && (200..300).contains(&l.status))
            .count()
    }
}
