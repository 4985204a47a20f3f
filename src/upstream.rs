//! Upstream registries: where a request goes once it is routed.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509};
use std::path::Path;
use std::sync::Arc;

use crate::config::HostHeaderMode;
use crate::config::file::{UpstreamSection, UpstreamTlsSection};
use crate::config::values::UpstreamUrl;
use crate::metrics::UpstreamMetrics;
use crate::tls::certs::{ServerCertificate, load_chain};

pub use crate::config::Timeouts;

/// An upstream registry with everything the hot path needs precomputed.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub address: SocketAddr,
    /// `host:port` as written in the URL, lower-cased; what the upstream
    /// puts in absolute URLs it builds from its own name.
    pub authority: String,
    /// Path the upstream serves the registry under (`/mirror`); empty for
    /// the root. Prepended to request paths, stripped from Location.
    pub path_prefix: String,
    pub host_header: HostHeaderMode,
    /// The Host header sent in `HostHeaderMode::Upstream`.
    pub authority_header: HeaderValue,
    /// Keep Authorization on requests the gateway authenticated.
    pub forward_authorization: bool,
    pub metrics: UpstreamMetrics,
    /// Names this upstream in upload URLs (`affinity`).
    pub upload_key: String,
    peer: HttpPeer,
    /// `timeouts.upstream_header`, bounded by `upstream_read`.
    header_timeout: Duration,
}

/// Pooled upstream connections idle longer than this are closed.
const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(60);

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
    /// `config_dir` anchors relative certificate paths.
    pub fn new(name: &str, section: &UpstreamSection, t: &Timeouts, config_dir: &Path) -> Result<Self, UpstreamIssue> {
        let url = &section.url;
        let mut peer = match (url.tls, &section.tls) {
            (false, Some(_)) => return Err(issue("tls", "TLS settings need an `https://` URL")),
            (false, None) => HttpPeer::new(url.address, false, String::new()),
            (true, settings) => tls_peer(name, url, settings.as_ref().unwrap_or(&Default::default()), config_dir)?,
        };
        peer.options.connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.upstream_read);
        peer.options.write_timeout = Some(t.upstream_write);
        peer.options.idle_timeout = Some(UPSTREAM_POOL_IDLE);
        // Registries get HTTP/1.1 whatever the client speaks.
        peer.options.alpn = ALPN::H1;
        let scheme = if url.tls { "https" } else { "http" };
        let upload_key = crate::affinity::upstream_key(&format!("{scheme}://{}{}", url.authority, url.path_prefix));
        Ok(Upstream {
            upload_key,
            name: name.to_owned(),
            address: url.address,
            authority: url.authority.clone(),
            path_prefix: url.path_prefix.clone(),
            host_header: section.host_header,
            forward_authorization: section.forward_authorization,
            authority_header: HeaderValue::from_str(&url.authority)
                .expect("authority was parsed by http::uri::Authority"),
            metrics: UpstreamMetrics::new(name),
            peer,
            header_timeout: t.upstream_header.min(t.upstream_read),
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.peer.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path_prefix)
    }

    pub fn connect_timeout(&self) -> Duration {
        self.peer.options.connection_timeout.unwrap_or(Duration::from_secs(5))
    }

    /// A fresh peer for one request (Pingora takes ownership of it).
    /// `quick`: a request the registry answers at once (GET, HEAD, DELETE):
    /// an upstream silent for `upstream_header` gets a 504. Pingora has no
    /// time-to-head timeout, so this is its per-read timeout, which also
    /// bounds idle gaps inside the response body. Uploads keep the long
    /// idle timeout: committing a multi-GB blob on object storage can take
    /// minutes, even for a PUT without a body.
    pub fn peer(&self, quick: bool) -> Box<HttpPeer> {
        let mut peer = Box::new(self.peer.clone());
        if quick {
            peer.options.read_timeout = Some(self.header_timeout);
        }
        peer
    }
}

/// An `https://` peer. Pingora's rustls connector skips verification when
/// SNI is empty, so SNI is always set: the host, an IP literal included.
fn tls_peer(
    name: &str,
    url: &UpstreamUrl,
    tls: &UpstreamTlsSection,
    config_dir: &Path,
) -> Result<HttpPeer, UpstreamIssue> {
    let sni = tls.server_name.clone().unwrap_or_else(|| url.host.clone());
    let mut peer = HttpPeer::new(url.address, true, sni);
    if tls.insecure_skip_verify {
        log::warn!("upstream {name}: insecure_skip_verify is set: its certificate is NOT verified");
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
