//! Maps each configured listener onto the Pingora service: plain TCP, or
//! TLS with our SNI resolver, HTTP/2 offered by ALPN where enabled.

use std::net::SocketAddr;

use pingora::apps::ServerApp;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::ALPN;
use pingora::protocols::http::v2::server::{H2Options, default_h2_options};
use pingora::services::listening::Service;

use std::sync::Arc;

use crate::tls::{HandshakeCounter, SniResolver};

/// A listening socket of the gateway.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub tls: Option<TlsListener>,
    /// Plain listener answering every request with a redirect to this
    /// HTTPS port.
    pub redirect_to_https: Option<u16>,
}

/// The TLS side of a listener.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Kept for the process's life: a reload gives it new certificates.
    pub certificates: Arc<SniResolver>,
    pub http2: bool,
    /// 421 for requests whose Host would get another certificate than SNI did.
    pub reject_misdirected: bool,
}

/// HTTP/2 flow-control windows. Pingora's defaults (64 KiB) cap a single
/// upload stream near 100 MB/s on loopback and far lower over a WAN (a
/// window per round trip). 4 MiB per stream keeps a 100 ms path near
/// 40 MB/s per layer; the connection window lets a client push several
/// layers at once. Measured on 1 GiB pushes: 8 MiB streams raised the
/// proxy's peak RSS from 43 to 57 MiB for no throughput gain on loopback.
const H2_STREAM_WINDOW: u32 = 4 << 20;
const H2_CONNECTION_WINDOW: u32 = 16 << 20;
const H2_MAX_FRAME: u32 = 256 << 10;
/// Per-stream send buffer. h2's default (400 KiB) is far below the windows
/// clients grant (curl: 32 MiB), so on downloads it fills and every 16 KiB
/// frame written wakes the request task again; a larger buffer lets the
/// task hand over more per wake-up.
const H2_SEND_BUFFER: usize = 4 << 20;

/// Pingora puts a 64 KiB read buffer in front of every client socket and
/// keeps it for the connection's life: most of the memory of an idle
/// keep-alive connection. Request heads are read into their own 4 KiB
/// buffer and bodies into 64 KiB ones that live only during a request, so
/// plain listeners read the socket directly. rustls reads records of up to
/// 16 KiB: TLS listeners keep a buffer of that size.
const PLAIN_READ_BUFFER: usize = 0;
const TLS_READ_BUFFER: usize = 16 << 10;

/// Pingora's bounded defaults (header list size, concurrent streams) with
/// larger windows and frames.
pub fn h2_options() -> H2Options {
    let mut options = default_h2_options();
    options
        .initial_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_send_buffer_size(H2_SEND_BUFFER);
    options
}

pub fn describe(l: &Listener) -> String {
    match (&l.tls, l.redirect_to_https) {
        (Some(t), _) => format!(
            "https://{} ({}{})",
            l.address,
            l.name,
            if t.http2 { ", h2 and http/1.1" } else { "" }
        ),
        (None, Some(port)) => format!("http://{} ({}, redirects to https port {port})", l.address, l.name),
        (None, None) => format!("http://{} ({})", l.address, l.name),
    }
}

/// Adds every listener to the service.
pub fn add_all<A: ServerApp + Send + Sync + 'static>(service: &mut Service<A>, listeners: &[Listener]) {
    for l in listeners {
        let endpoint = ListenerConfig::tcp(l.address.to_string());
        let buffer = |read| L4BufferSettings::default().read(read);
        match &l.tls {
            None => service.add_listener(endpoint.l4_buffer(buffer(PLAIN_READ_BUFFER))),
            Some(tls) => {
                let counter = Box::new(HandshakeCounter {
                    stats: tls.certificates.stats.clone(),
                    reject_misdirected: tls.reject_misdirected.then(|| tls.certificates.clone()),
                });
                let mut settings =
                    TlsSettings::with_callbacks(counter).expect("TLS settings without files cannot fail");
                settings.set_cert_resolver(tls.certificates.clone());
                if tls.http2 {
                    settings.enable_h2();
                } else {
                    settings.set_alpn(ALPN::H1);
                }
                service.add_listener(endpoint.l4_buffer(buffer(TLS_READ_BUFFER)).tls(settings));
            }
        }
        log::info!("listening on {}", describe(l));
    }
}

/// Plain listeners that answer with a redirect to HTTPS, looked up by the
/// local address a request arrived on.
#[derive(Debug, Default)]
pub struct RedirectTable {
    entries: Vec<(SocketAddr, u16)>,
}

impl RedirectTable {
    pub fn new(listeners: &[Listener]) -> Self {
        let entries = listeners
            .iter()
            .filter_map(|l| l.redirect_to_https.map(|p| (l.address, p)))
            .collect();
        RedirectTable { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The HTTPS port to redirect to, if `local` is a redirecting listener.
    pub fn https_port(&self, local: SocketAddr) -> Option<u16> {
        self.entries
            .iter()
            .find(|(addr, _)| addr.port() == local.port() && (addr.ip().is_unspecified() || addr.ip() == local.ip()))
            .map(|(_, port)| *port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_lookup_matches_port_and_wildcard_ip() {
        let l = |addr: &str, redirect| Listener {
            name: "x".into(),
            address: addr.parse().unwrap(),
            tls: None,
            redirect_to_https: redirect,
        };
        let t = RedirectTable::new(&[
            l("0.0.0.0:80", Some(443)),
            l("127.0.0.1:5000", None),
            l("127.0.0.2:81", Some(8443)),
        ]);
        assert_eq!(t.https_port("10.0.0.1:80".parse().unwrap()), Some(443));
        assert_eq!(t.https_port("127.0.0.1:5000".parse().unwrap()), None);
        assert_eq!(t.https_port("127.0.0.2:81".parse().unwrap()), Some(8443));
        assert_eq!(t.https_port("127.0.0.3:81".parse().unwrap()), None);
    }
}
