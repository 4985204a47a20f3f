//! The headers of one exchange: the request as it leaves for the upstream
//! (Host, forwarding headers, the path without hints or `ns`, whose
//! Authorization) and the response as it goes back (Location rewritten,
//! tagged with the upload's replica).

use http::header::AUTHORIZATION;
use pingora::http::{RequestHeader, ResponseHeader};

use super::{RequestCtx, mirrored};
use crate::affinity;
use crate::config::HostHeaderMode;
use crate::query;
use crate::rewrite;
use crate::routing::Route;

pub(super) fn to_upstream(req: &mut RequestHeader, ctx: &RequestCtx) {
    if let (Some(up), Some(pick), Some(view)) = (&ctx.upstream, &ctx.pick, &ctx.view) {
        let replica = up.pool.replica(pick.index);
        let ns_routed = mirrored::ns_routed(ctx);
        // `ns` names another registry (ghcr.io, ...): it gets its own name.
        let host_mode = if ns_routed {
            HostHeaderMode::Upstream
        } else {
            up.host_mode()
        };
        rewrite::prepare_upstream_request(req, view, host_mode, &replica.authority_header);
        let original = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut rewritten = mirrored::upstream_target(ctx, original);
        if ctx.strip_hint {
            rewritten = Some(affinity::strip(rewritten.as_deref().unwrap_or(original)));
        }
        if ctx.strip_mount {
            let t = rewritten.as_deref().unwrap_or(original);
            rewritten = Some(query::without(t, &["mount", "from"]));
        }
        let target = rewritten.as_deref().unwrap_or(original);
        if let Some(uri) = rewrite::prefixed_target(target, &replica.path_prefix) {
            req.set_uri(uri);
        } else if let Some(Ok(uri)) = rewritten.map(http::Uri::try_from) {
            req.set_uri(uri);
        }
        if mirrored::login_of(ctx, up).is_some() {
            mirrored::authorize(req, ctx);
        } else if (ctx.user.is_some() || ns_routed) && !up.forward_authorization {
            // Credentials the gateway checked are its own business, and so are
            // those of a request `ns` sent to another registry; requests it
            // did not authenticate keep theirs for the upstream to check.
            req.remove_header(&AUTHORIZATION);
        }
    }
}

pub(super) fn to_client(resp: &mut ResponseHeader, ctx: &RequestCtx) {
    if let (Some(up), Some(pick), Some(view)) = (&ctx.upstream, &ctx.pick, &ctx.view) {
        let replica = up.pool.replica(pick.index);
        up.metrics.response(ctx.upstream_status);
        up.pool.answered(pick.index, ctx.upstream_status);
        let v2 = ctx.route == Some(Route::V2);
        mirrored::refused(resp, ctx, up);
        rewrite::prepare_client_response(resp, &replica.authority, &replica.path_prefix, view, v2);
        if let Some(seg) = ctx.ns_segment()
            && let Some(l) =
                (resp.headers.get(http::header::LOCATION)).and_then(|l| mirrored::client_location(l.as_bytes(), seg))
        {
            let _ = resp.insert_header(http::header::LOCATION, l);
        }
        // The upload URL names the replica that answered its POST.
        if v2
            && let Some(tagged) = (resp.headers.get(http::header::LOCATION))
                .and_then(|l| affinity::tag_location(l.as_bytes(), &replica.upload_key))
        {
            let _ = resp.insert_header(http::header::LOCATION, tagged);
        }
    }
}
