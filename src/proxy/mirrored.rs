//! The proxy phases' part for mirrors: `push: deny`, `ns` routing, reads
//! the cache answers, tags invalidated by writes, and the gateway's own
//! Authorization on requests to upstreams it logs in to.

use std::sync::Arc;

use http::HeaderValue;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::RequestCtx;
use crate::metrics::mirror as metrics;
use crate::mirror::{self, Lookup, Mirror, NsRoute};
use crate::operation::{self, Operation};
use crate::reply::ErrorReply;
use crate::routing::Route;
use crate::upstream::Upstream;
use crate::upstream_auth::{self, AuthError};

/// What a request learned on the mirror side.
#[derive(Debug, Default)]
pub(super) struct MirrorState {
    /// The `/<ns>` path segment the request named its upstream with.
    ns_segment: Option<String>,
    /// The upstream came from `?ns=`, removed before forwarding.
    ns_query: bool,
    /// The gateway's own Authorization for the upstream, and its scope.
    upstream_authorization: Option<HeaderValue>,
    auth_scope: String,
    /// How the cache answered, for the access log.
    cache: Option<mirror::CacheStatus>,
}

impl RequestCtx {
    fn mirror_mut(&mut self) -> &mut MirrorState {
        self.mirror.get_or_insert_with(Default::default)
    }

    pub(super) fn ns_segment(&self) -> Option<&str> {
        self.mirror.as_ref()?.ns_segment.as_deref()
    }

    pub(super) fn cache_status(&self) -> Option<mirror::CacheStatus> {
        self.mirror.as_ref()?.cache
    }
}

/// `push: deny`: writes get 405 UNSUPPORTED before any challenge.
pub(super) async fn refuse_write(session: &mut Session, m: &Mirror) -> Result<bool> {
    let method = &session.req_header().method;
    if !m.push_deny || *method == http::Method::GET || *method == http::Method::HEAD {
        return Ok(false);
    }
    mirror::respond::error(session, 405, "UNSUPPORTED", "this registry is a read-only mirror").await?;
    Ok(true)
}

/// Routes by `ns`, answers what the cache serves, and gets the upstream
/// Authorization for the rest. `Ok(true)`: answered here.
pub(super) async fn handle(session: &mut Session, ctx: &mut RequestCtx, m: &Mirror, registry: &str) -> Result<bool> {
    let req = session.req_header();
    let path = req.uri.path();
    match m.route(path, req.uri.query()) {
        NsRoute::Default => {}
        NsRoute::To { upstream, path_segment } => {
            ctx.upstream = Some(upstream.clone());
            let state = ctx.mirror_mut();
            state.ns_segment = path_segment.map(str::to_owned);
            state.ns_query = path_segment.is_none();
        }
        NsRoute::Unknown => {
            let msg = "unknown `ns`: this mirror serves only its configured upstreams";
            mirror::respond::error(session, 404, "NAME_UNKNOWN", msg).await?;
            return Ok(true);
        }
        NsRoute::Ambiguous => {
            ErrorReply::BadRequest("`ns` given more than once")
                .send(session, true)
                .await?;
            return Ok(true);
        }
    }
    let Some(upstream) = ctx.upstream.clone() else {
        return Ok(false);
    };
    let effective = match ctx.ns_segment() {
        Some(seg) => format!("/v2{}", &path[3 + seg.len()..]),
        None => path.to_owned(),
    };
    let method = req.method.clone();
    let request = operation::classify(&method, Some(Route::V2), &effective);
    if let Some(cache) = &m.cache {
        if request.operation == Operation::Base && (method == http::Method::GET || method == http::Method::HEAD) {
            // A mirror's ping never depends on its upstream (outages).
            let mut resp = mirror::respond::head(200, None)?;
            resp.insert_header("Content-Type", "application/json")?;
            resp.insert_header("Content-Length", 2)?;
            let body = if method == http::Method::HEAD { "" } else { "{}" };
            crate::reply::write_and_discard(session, resp, bytes::Bytes::from_static(body.as_bytes())).await?;
            return Ok(true);
        }
        let lookup = Lookup {
            cache,
            upstream: &upstream,
            repository: request.repository,
            registry: Arc::from(registry),
        };
        if let Some(done) = Box::pin(mirror::answer(session, &lookup, request.operation, request.reference)).await? {
            ctx.mirror_mut().cache = done.cache;
            ctx.upstream_status = done.upstream_status;
            return Ok(true);
        }
        if matches!(request.operation, Operation::ManifestPut | Operation::ManifestDelete) {
            mirror::invalidate(cache, &upstream, request.repository, request.reference);
        }
        if matches!(
            request.operation,
            Operation::BlobGet | Operation::BlobHead | Operation::ManifestGet | Operation::ManifestHead
        ) {
            let kind = if matches!(request.operation, Operation::BlobGet | Operation::BlobHead) {
                "blob"
            } else {
                "manifest"
            };
            metrics::cache_request(registry, kind, "bypass");
        }
    }
    Ok(false)
}

/// The gateway's Authorization for a proxied request to an upstream it
/// logs in to (with or without a mirror block). `Ok(true)`: answered here.
pub(super) async fn login(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let Some(upstream) = ctx.upstream.clone() else {
        return Ok(false);
    };
    let Some(auth) = &upstream.auth else { return Ok(false) };
    let req = session.req_header();
    let path = req.uri.path();
    let effective = match ctx.ns_segment() {
        Some(seg) => format!("/v2{}", &path[3 + seg.len()..]),
        None => path.to_owned(),
    };
    let request = operation::classify(&req.method, Some(Route::V2), &effective);
    let from = crate::query::first(req.uri.query(), "from");
    let scope = upstream_auth::scope(&req.method, request.repository, from.as_deref());
    let answer = auth.authorization(&upstream.pool, &scope).await;
    ctx.mirror_mut().auth_scope = scope;
    match answer {
        Ok(a) => {
            ctx.mirror_mut().upstream_authorization = a;
            Ok(false)
        }
        Err(e @ AuthError::Unreachable { .. }) => {
            log::warn!("{e}");
            ErrorReply::BadGateway.send(session, true).await?;
            Ok(true)
        }
        Err(e @ AuthError::Refused { .. }) => {
            log::warn!("{e}");
            let msg = format!("upstream {} refused the gateway's credentials", upstream.name);
            mirror::respond::error(session, 403, "DENIED", &msg).await?;
            Ok(true)
        }
    }
}

/// Whether `ns` chose the upstream: the client's credentials were meant
/// for the mirror, never for it.
pub(super) fn ns_routed(ctx: &RequestCtx) -> bool {
    ctx.mirror
        .as_ref()
        .is_some_and(|m| m.ns_segment.is_some() || m.ns_query)
}

/// The gateway's login used on a proxied request: always where `ns`
/// routed it (the client's Authorization is not for that upstream), else
/// only an upstream with credentials (a plain proxy passes the client's).
pub(super) fn login_of<'a>(ctx: &RequestCtx, upstream: &'a Upstream) -> Option<&'a upstream_auth::UpstreamAuth> {
    if ns_routed(ctx) {
        upstream.auth.as_deref()
    } else {
        upstream.logs_in()
    }
}

/// The upstream target without the `ns` path segment or parameter.
pub(super) fn upstream_target(ctx: &RequestCtx, target: &str) -> Option<String> {
    let state = ctx.mirror.as_deref()?;
    let mut out = (state.ns_segment.as_ref()).map(|seg| format!("/v2{}", &target[3 + seg.len()..]));
    if state.ns_query {
        out = Some(crate::query::without(out.as_deref().unwrap_or(target), &["ns"]));
    }
    out
}

/// Swaps the client's Authorization for the gateway's own.
pub(super) fn authorize(req: &mut RequestHeader, ctx: &RequestCtx) {
    req.remove_header(&AUTHORIZATION);
    if let Some(a) = ctx.mirror.as_ref().and_then(|m| m.upstream_authorization.as_ref()) {
        let _ = req.insert_header(AUTHORIZATION, a.clone());
    }
}

/// An upstream the gateway logs in to refused it: the client cannot fix
/// that with credentials of its own, so 403, without the upstream's challenge.
pub(super) fn refused(resp: &mut ResponseHeader, ctx: &RequestCtx, upstream: &Upstream) {
    if resp.status.as_u16() == 401
        && let Some(auth) = login_of(ctx, upstream)
    {
        auth.rejected(ctx.mirror.as_ref().map_or("", |m| m.auth_scope.as_str()));
        log::warn!("upstream {} answered 401 to the gateway's credentials", upstream.name);
        let _ = resp.set_status(403);
        resp.remove_header(&WWW_AUTHENTICATE);
    }
}

/// Puts the `ns` path segment back into an upload's Location.
pub(super) fn client_location(location: &[u8], segment: &str) -> Option<HeaderValue> {
    let text = std::str::from_utf8(location).ok()?;
    let at = text.find("/v2/")? + 3;
    HeaderValue::try_from(format!("{}{segment}{}", &text[..at], &text[at..])).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ns_segment_goes_back_into_locations() {
        let seg = "/basic.test";
        assert_eq!(
            client_location(b"/v2/team/app/blobs/uploads/u1?_state=x", seg).unwrap(),
            "/v2/basic.test/team/app/blobs/uploads/u1?_state=x"
        );
        assert_eq!(
            client_location(b"http://gw:5000/v2/team/app/blobs/uploads/u1", seg).unwrap(),
            "http://gw:5000/v2/basic.test/team/app/blobs/uploads/u1"
        );
        assert!(client_location(b"/elsewhere", seg).is_none());
    }
}
