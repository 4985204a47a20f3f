//! One line per request, written under the `access` log target so it can be
//! filtered on its own (`RUST_LOG=info,access=off`).

use std::time::Instant;

use pingora::Error;
use pingora::proxy::Session;

use crate::routing::VirtualRegistry;
use crate::upstream::Upstream;

pub fn record(
    session: &Session,
    error: Option<&Error>,
    registry: Option<&VirtualRegistry>,
    upstream: Option<&Upstream>,
    user: Option<&str>,
    started: Instant,
) {
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = session
        .as_downstream()
        .response_written()
        .map_or(0, |r| r.status.as_u16());
    let client = session
        .client_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "-".into());
    let authority = crate::rewrite::request_authority(req);
    let host = authority.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-");
    let path = req.uri.path();
    let upstream = upstream.map(|u| u.address.to_string()).unwrap_or_else(|| "-".into());
    let registry = registry.map_or("-", |r| r.name.as_str());
    let error = error.map(|e| format!(" error=\"{e}\"")).unwrap_or_default();
    log::info!(
        target: "access",
        "{client} {} {host} {path} {status} in={} out={} {:.1}ms registry={registry} upstream={upstream} user={}{error}",
        req.method,
        session.as_downstream().body_bytes_read(),
        session.as_downstream().body_bytes_sent(),
        started.elapsed().as_secs_f64() * 1000.0,
        user.unwrap_or("-"),
    );
}
