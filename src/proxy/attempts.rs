//! Attempts on replicas: which replica an attempt goes to, what a failed
//! attempt counts against, whether it is tried once more, and what the
//! client is told when it is not.

use http::Method;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};

use super::RequestCtx;
use crate::config::PolicySetting;
use crate::metrics::{Selection, UpstreamFailure};
use crate::operation;
use crate::reply::ErrorReply;

/// The replica for this attempt, and its peer; the pick is kept in `ctx`
/// (counted in flight until the request ends or a retry replaces it).
pub(super) fn choose(session: &Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(up) = ctx.upstream.clone() else {
        return Error::e_explain(ErrorType::InternalError, "no upstream chosen");
    };
    let req = session.req_header();
    let quick = matches!(
        req.method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    );
    let pool = &up.pool;
    let pick = match ctx.forced {
        // An upload's own replica holds its state. With one
        // `http.secret` across replicas, one that is down hands on.
        Some(i) if ctx.tried.is_none() && (!pool.shared_secret() || pool.is_available(i)) => {
            pool.pick(i, Selection::Upload)
        }
        _ => {
            let repository = match pool.policy() {
                PolicySetting::ConsistentHash => operation::classify(&req.method, ctx.route, req.uri.path()).repository,
                _ => "",
            };
            pool.choose(repository.as_bytes(), ctx.tried)
        }
    };
    let peer = pool.replica(pick.index).peer(quick);
    // Replaces (and so stops counting) a failed first attempt.
    ctx.pick = Some(pick);
    Ok(peer)
}

/// Counts a failed attempt against its upstream and replica; whether the
/// request may be tried once more. `reused`: on a pooled connection.
pub(super) fn attempt_failed(session: &Session, ctx: &mut RequestCtx, e: &Error, reused: bool) -> bool {
    let (Some(up), Some(pick)) = (&ctx.upstream, &ctx.pick) else {
        return false;
    };
    let failure = upstream_failure(e);
    up.metrics.failure(failure);
    up.pool.failed(pick.index, failure, e);
    let method = &session.req_header().method;
    let idempotent_read = matches!(*method, Method::GET | Method::HEAD);
    let bound = ctx.forced.is_some() && !up.pool.shared_secret();
    let first = ctx.tried.is_none() && ctx.upstream_status == 0;
    if !(idempotent_read && first && !bound) {
        return false;
    }
    // Elsewhere when possible; a pooled connection the replica had closed
    // is not its fault, so with nowhere else it may go back.
    let elsewhere = up.pool.has_alternative(pick.index);
    let stale = reused && failure == UpstreamFailure::Other;
    if elsewhere || stale {
        log::info!(
            "upstream {}: {method} on {} failed ({e}); trying {}",
            up.name,
            up.pool.replica(pick.index).url,
            if elsewhere { "another replica" } else { "again" }
        );
        ctx.tried = Some(pick.index);
        return true;
    }
    false
}

fn upstream_failure(e: &Error) -> UpstreamFailure {
    use ErrorType::*;
    match e.etype() {
        ConnectTimedout | TLSHandshakeTimedout => UpstreamFailure::Connect { timed_out: true },
        ConnectError | ConnectRefused | ConnectNoRoute | ConnectProxyFailure | TLSHandshakeFailure | InvalidCert => {
            UpstreamFailure::Connect { timed_out: false }
        }
        ReadTimedout | WriteTimedout => UpstreamFailure::Timeout,
        _ => UpstreamFailure::Other,
    }
}

/// The reply for a failed exchange; `None` when the client is gone.
pub(super) fn classify_failure(e: &Error) -> Option<ErrorReply> {
    use ErrorType::*;
    if let HTTPStatus(code) = e.etype() {
        return Some(match code {
            504 => ErrorReply::GatewayTimeout,
            400..=499 => ErrorReply::BadRequest("malformed request"),
            _ => ErrorReply::BadGateway,
        });
    }
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => ErrorReply::GatewayTimeout,
            _ => ErrorReply::BadGateway,
        }),
        ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout => None,
            _ => Some(ErrorReply::BadRequest("malformed request")),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some(ErrorReply::Internal),
    }
}
