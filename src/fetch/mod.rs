//! Requests the gateway makes itself, outside the proxy path: token
//! fetches, upstream pings and cache fills. One HTTP/1.1 exchange per call
//! over Pingora's connector (so a replica's TLS settings and timeouts apply),
//! with idle connections returned to its pool.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::ALPN;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;

static CONNECTOR: LazyLock<Connector> = LazyLock::new(|| Connector::new(None));

/// How long a connection the gateway used itself may idle in the pool.
const IDLE: Duration = Duration::from_secs(60);

/// An upstream's answer whose body is still to be read.
pub struct Fetched {
    session: HttpSession,
    peer: HttpPeer,
    pub status: u16,
}

impl Fetched {
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.session.get_header(name).and_then(|v| v.to_str().ok())
    }

    /// The body length the upstream announced.
    pub fn content_length(&self) -> Option<u64> {
        self.header_str("content-length").and_then(|v| v.trim().parse().ok())
    }

    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        self.session.read_body_bytes().await
    }

    /// The whole body, refused past `max` bytes; the connection is pooled.
    pub async fn body(mut self, max: usize) -> Result<Bytes> {
        let mut out = BytesMut::new();
        while let Some(chunk) = self.session.read_body_bytes().await? {
            if out.len() + chunk.len() > max {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, format!("upstream body over {max} bytes"));
            }
            out.extend_from_slice(&chunk);
        }
        self.release().await;
        Ok(out.freeze())
    }

    /// Returns the connection to the pool (a body not read to its end closes it).
    pub async fn release(self) {
        let Fetched { session, peer, .. } = self;
        CONNECTOR.release_http_session(session, &peer, Some(IDLE)).await;
    }
}

/// Sends `req` (no body) to `peer` and reads the response head.
pub async fn send(peer: &HttpPeer, req: RequestHeader) -> Result<Fetched> {
    let (mut session, _) = CONNECTOR.get_http_session(peer).await?;
    session.write_request_header(Box::new(req)).await?;
    session.finish_body().await?;
    session.read_response().await?;
    let status = session.get_status().map_or(0, |s| s.as_u16());
    Ok(Fetched {
        session,
        peer: peer.clone(),
        status,
    })
}

/// A parsed `http(s)://host[:port]/path?query` the gateway was pointed at
/// (a token realm, a redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
}

impl Target {
    pub fn parse(url: &str) -> Option<Target> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return None;
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => default_port,
                None => return None,
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().ok()?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return None;
        }
        let path_and_query = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Some(Target {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// `host[:port]` for a Host header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// A peer for this target: its host resolved now, SNI set to it, the
    /// platform's roots unless `like` (the replica on the same host)
    /// brings a CA of its own.
    pub async fn peer(&self, like: Option<&HttpPeer>, timeouts: &PeerTimeouts) -> Result<HttpPeer> {
        let addr: SocketAddr = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port),
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .or_err_with(ErrorType::ConnectNoRoute, || format!("resolving {}", self.host))?
                .next()
                .or_err_with(ErrorType::ConnectNoRoute, || format!("{} has no address", self.host))?,
        };
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        if let Some(like) = like {
            peer.options.ca = like.options.ca.clone();
            peer.options.verify_cert = like.options.verify_cert;
            peer.options.verify_hostname = like.options.verify_hostname;
        }
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.read);
        peer.options.idle_timeout = Some(IDLE);
        peer.options.alpn = ALPN::H1;
        Ok(peer)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PeerTimeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// A GET or HEAD request head for `path`, with Host and User-Agent.
pub fn request(method: &str, path: &str, authority: &str) -> Result<RequestHeader> {
    let mut req = RequestHeader::build(method, path.as_bytes(), None)?;
    req.insert_header(http::header::HOST, authority)?;
    req.insert_header(http::header::USER_AGENT, USER_AGENT)?;
    Ok(req)
}

pub const USER_AGENT: &str = concat!("registry-gateway/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("https://auth.docker.io/token?service=x").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "auth.docker.io", 443));
        assert_eq!(t.path_and_query, "/token?service=x");
        assert_eq!(t.authority(), "auth.docker.io");
        let t = Target::parse("http://127.0.0.1:5001/token").unwrap();
        assert_eq!((t.tls, t.port, t.authority().as_str()), (false, 5001, "127.0.0.1:5001"));
        let t = Target::parse("http://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.authority().as_str()), ("::1", "[::1]:9"));
        assert_eq!(Target::parse("ftp://x/").map(|_| ()), None);
        assert_eq!(Target::parse("http://:80/").map(|_| ()), None);
        assert_eq!(Target::parse("http://h:x/").map(|_| ()), None);
    }
}
