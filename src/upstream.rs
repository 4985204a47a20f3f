//! Upstream registries: where a request goes once it is routed.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;
use pingora::upstreams::peer::HttpPeer;

use crate::config::HostHeaderMode;
use crate::config::file::UpstreamSection;

/// Idle (per read / per write) timeouts. There is deliberately no total
/// request timeout: a multi-GB push legitimately runs for many minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub upstream_read: Duration,
    pub upstream_write: Duration,
    pub client_read: Duration,
    pub client_write: Duration,
    /// How long an idle client connection is kept open between requests.
    pub keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // nginx's registry recipe uses proxy_read_timeout 900.
        Timeouts {
            connect: Duration::from_secs(5),
            upstream_read: Duration::from_secs(900),
            upstream_write: Duration::from_secs(900),
            client_read: Duration::from_secs(900),
            client_write: Duration::from_secs(900),
            keepalive: Duration::from_secs(75),
        }
    }
}

impl Timeouts {
    pub(crate) fn from_section(s: &crate::config::file::TimeoutsSection, report: &mut dyn FnMut(&str, String)) -> Self {
        let d = Timeouts::default();
        let mut pick = |key: &str, v: Option<crate::config::values::Duration>, default: Duration| {
            let v = v.map_or(default, |v| v.0);
            if v.is_zero() {
                report(key, "must be greater than zero: `0`".to_owned());
                default
            } else {
                v
            }
        };
        Timeouts {
            connect: pick("connect", s.connect, d.connect),
            upstream_read: pick("upstream_read", s.upstream_read, d.upstream_read),
            upstream_write: pick("upstream_write", s.upstream_write, d.upstream_write),
            client_read: pick("client_read", s.client_read, d.client_read),
            client_write: pick("client_write", s.client_write, d.client_write),
            keepalive: pick("keepalive", s.keepalive, d.keepalive),
        }
    }
}

/// An upstream registry with everything the hot path needs precomputed.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub address: SocketAddr,
    /// `host:port` as written in the URL, lower-cased; what the upstream
    /// puts in absolute URLs it builds from its own name.
    pub authority: String,
    pub host_header: HostHeaderMode,
    /// The Host header sent in `HostHeaderMode::Upstream`.
    pub authority_header: HeaderValue,
    /// Keep Authorization on requests the gateway authenticated.
    pub forward_authorization: bool,
    peer: HttpPeer,
}

/// Pooled upstream connections idle longer than this are closed.
const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(60);

impl Upstream {
    pub fn new(name: &str, section: &UpstreamSection, t: &Timeouts) -> Self {
        let url = &section.url;
        let mut peer = HttpPeer::new(url.address, false, String::new());
        peer.options.connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.upstream_read);
        peer.options.write_timeout = Some(t.upstream_write);
        peer.options.idle_timeout = Some(UPSTREAM_POOL_IDLE);
        Upstream {
            name: name.to_owned(),
            address: url.address,
            authority: url.authority.clone(),
            host_header: section.host_header,
            forward_authorization: section.forward_authorization,
            authority_header: HeaderValue::from_str(&url.authority)
                .expect("authority was parsed by http::uri::Authority"),
            peer,
        }
    }

    /// A fresh peer for one request (Pingora takes ownership of it).
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }
}
