//! The access log line of a finished request.

use pingora::prelude::*;
use pingora::proxy::Session;

use super::RequestCtx;
use crate::access_log;
use crate::metrics::RequestRecord;
use crate::operation::RegistryRequest;
use crate::rewrite;

pub(super) fn log_request(
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    r: &RequestRecord,
    request: &RegistryRequest,
) {
    let req = session.req_header();
    let authority = rewrite::request_authority(req);
    let error = e.map(|e| e.to_string()).unwrap_or_default();
    access_log::record(&access_log::Entry {
        time: std::time::SystemTime::now(),
        client: session.client_addr().and_then(|a| a.as_inet()).copied(),
        method: req.method.as_str(),
        host: authority.as_ref().and_then(|h| h.to_str().ok()).unwrap_or_default(),
        path: req.uri.path(),
        status: r.status,
        registry: ctx.registry.as_ref().map_or("", |r| r.name.as_str()),
        operation: request.operation.as_str(),
        repository: request.repository,
        reference: request.reference,
        user: ctx.user.as_deref().unwrap_or_default(),
        access: ctx.verdict,
        bytes_in: r.request_bytes,
        bytes_out: r.response_bytes,
        duration: r.duration,
        upstream: ctx.upstream.as_ref().map_or("", |u| u.name.as_str()),
        replica: ctx.replica_url(),
        upstream_status: ctx.upstream_status,
        cache: ctx.cache_status().map_or("", |c| c.as_str()),
        error: &error,
    });
}
