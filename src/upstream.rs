//! Upstream registries: where a request goes once it is routed. An
//! upstream is a pool of replicas ([`crate::pool`]) with the settings they
//! share: Host header mode, Authorization forwarding, TLS.

use std::path::Path;
use std::sync::Arc;

use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509};

use crate::config::file::{UpstreamSection, UpstreamTlsSection};
use crate::config::values::UpstreamUrl;
use crate::config::{HostHeaderMode, PoolSettings};
use crate::metrics::UpstreamMetrics;
use crate::pool::{Pool, ReplicaSpec};
use crate::tls::certs::{ServerCertificate, load_chain};

pub use crate::config::Timeouts;

/// An upstream registry: its replicas and what they share.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub host_header: HostHeaderMode,
    /// Keep Authorization on requests the gateway authenticated.
    pub forward_authorization: bool,
    /// Counted over all replicas (`registry_gateway_upstream_*`).
    pub metrics: UpstreamMetrics,
    pub pool: Pool,
    /// The gateway's own login there (credentials, or a cached registry's
    /// anonymous tokens); `None`: clients' Authorization passes as before.
    pub auth: Option<Arc<crate::upstream_auth::UpstreamAuth>>,
    /// What cached tags and links of this upstream are filed under: its
    /// replicas and who logs in there, so two logins to one registry
    /// sharing a cache directory never see each other's private content.
    pub cache_key: String,
}

/// Pooled upstream connections idle longer than this are closed.
const UPSTREAM_POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// A problem building an upstream, relative to its config key.
#[derive(Debug)]
pub struct UpstreamIssue {
    pub key: &'static str,
    pub message: String,
}

fn issue(key: &'static str, message: impl Into<String>) -> UpstreamIssue {
    UpstreamIssue {
        key,
        message: message.into(),
    }
}

impl Upstream {
    /// `settings.urls` is not empty. `config_dir` anchors relative
    /// certificate paths.
    pub fn new(
        name: &str,
        section: &UpstreamSection,
        settings: &PoolSettings,
        t: &Timeouts,
        config_dir: &Path,
    ) -> Result<Self, UpstreamIssue> {
        // Part of each replica's identity: the same URL with other TLS
        // settings is another replica (fresh health, fresh counts).
        let tls_identity = format!("{:?}", section.tls);
        let mut specs = Vec::with_capacity(settings.urls.len());
        for url in &settings.urls {
            let mut peer = match (url.tls, &section.tls) {
                (false, Some(_)) => return Err(issue("tls", "TLS settings need `https://` URLs")),
                (false, None) => HttpPeer::new(url.address, false, String::new()),
                (true, tls) => tls_peer(name, url, tls.as_ref().unwrap_or(&Default::default()), config_dir)?,
            };
            peer.options.connection_timeout = Some(t.connect);
            peer.options.read_timeout = Some(t.upstream_read);
            peer.options.write_timeout = Some(t.upstream_write);
            peer.options.idle_timeout = Some(UPSTREAM_POOL_IDLE);
            // Registries get HTTP/1.1 whatever the client speaks.
            peer.options.alpn = ALPN::H1;
            specs.push(ReplicaSpec {
                identity: format!("{} {tls_identity}", url.canonical()),
                url: url.clone(),
                peer,
            });
        }
        let header_timeout = t.upstream_header.min(t.upstream_read);
        Ok(Upstream {
            name: name.to_owned(),
            host_header: section.host_header,
            forward_authorization: section.forward_authorization,
            metrics: UpstreamMetrics::new(name),
            pool: Pool::new(name, specs, settings, header_timeout),
            auth: None,
            cache_key: String::new(),
        })
    }

    /// Sets the gateway's login (and with it the cache key).
    pub fn set_auth(&mut self, auth: Option<crate::upstream_auth::UpstreamAuth>) {
        let user = auth.as_ref().and_then(|a| a.username()).unwrap_or("-");
        self.cache_key = format!("{} as {user}", self.pool.key());
        self.auth = auth.map(Arc::new);
    }

    /// The gateway logs in here with credentials of its own: clients'
    /// Authorization never reaches it. (An anonymous login serves the
    /// cache's own requests and `ns`-routed ones; other proxied requests
    /// pass the client's, as with any upstream.)
    pub fn logs_in(&self) -> Option<&crate::upstream_auth::UpstreamAuth> {
        self.auth.as_deref().filter(|a| a.username().is_some())
    }

    /// The Host mode in force: an upstream the gateway logs in to is a
    /// registry of its own (ghcr.io, ...) and gets its own name.
    pub fn host_mode(&self) -> HostHeaderMode {
        if self.logs_in().is_some() {
            HostHeaderMode::Upstream
        } else {
            self.host_header
        }
    }

    /// Its replicas' URLs (and policy, for several), for `check`, `route`
    /// and the start log.
    pub fn describe(&self) -> String {
        self.pool.describe()
    }
}

/// An `https://` peer. Pingora's rustls connector skips verification when
/// SNI is empty, so SNI is always set: the host, an IP literal included.
/// Called once per replica, so the CA and client certificate files are
/// read once per replica (pools are small; all see the same files).
fn tls_peer(
    name: &str,
    url: &UpstreamUrl,
    tls: &UpstreamTlsSection,
    config_dir: &Path,
) -> Result<HttpPeer, UpstreamIssue> {
    let sni = tls.server_name.clone().unwrap_or_else(|| url.host.clone());
    let mut peer = HttpPeer::new(url.address, true, sni);
    if tls.insecure_skip_verify {
        log::warn!(
            "upstream {name}: insecure_skip_verify is set: the certificate of {} is NOT verified",
            url.canonical()
        );
        peer.options.verify_cert = false;
        peer.options.verify_hostname = false;
    }
    if let Some(ca) = &tls.ca {
        let chain = load_chain(&config_dir.join(ca)).map_err(|e| issue("tls.ca", e.to_string()))?;
        let cas: Vec<WrappedX509> = chain
            .into_iter()
            .map(|der| WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509))
            .collect();
        peer.options.ca = Some(Arc::from(cas.into_boxed_slice()));
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (config_dir.join(cert), config_dir.join(key));
            // Checks parse, validity and that the key matches, before Pingora
            // (which panics on bad material) sees them.
            ServerCertificate::load(&cert, &key).map_err(|e| issue("tls.client_cert", e.to_string()))?;
            let chain = load_chain(&cert).map_err(|e| issue("tls.client_cert", e.to_string()))?;
            let key_der = crate::tls::certs::load_key(&key).map_err(|e| issue("tls.client_key", e.to_string()))?;
            let key_bytes = key_der.secret_der().to_vec();
            if rustls_pki_types::PrivateKeyDer::try_from(key_bytes.clone()).is_err() {
                return Err(issue(
                    "tls.client_key",
                    format!("{}: unsupported private key encoding", key.display()),
                ));
            }
            let certs = chain.into_iter().map(|c| c.to_vec()).collect();
            peer.client_cert_key = Some(Arc::new(CertKey::new(certs, key_bytes)));
        }
        (None, None) => {}
        (Some(_), None) => return Err(issue("tls.client_key", "required with `client_cert`")),
        (None, Some(_)) => return Err(issue("tls.client_cert", "required with `client_key`")),
    }
    Ok(peer)
}
