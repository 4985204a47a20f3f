//! The Pingora `ProxyHttp` implementation. Each phase hands its work to the
//! module that owns it (routing, rewrite, reply) and keeps what later phases
//! need in [`RequestCtx`], so nothing is parsed twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

mod access_line;
mod attempts;
mod exchange;
mod front;
mod mirrored;

use async_trait::async_trait;
use bytes::Bytes;
use http::Version;
use pingora::ErrorSource;
use pingora::http::ResponseHeader;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::access::Verdict;
use crate::access_log;
use crate::affinity;
use crate::body::BodyCoalescer;
use crate::catalog;
use crate::guard::{self, Gate};
use crate::head_checks;
use crate::metrics::{IN_FLIGHT, RegistryMetrics, RequestRecord};
use crate::operation;
use crate::pool::Pick;
use crate::reply::ErrorReply;
use crate::rewrite::ClientView;
use crate::routing::{self, Route};
use crate::runtime::{Current, Snapshot};
use crate::upstream::Upstream;
use crate::vhost::VirtualRegistry;

pub struct RegistryProxy {
    current: Arc<Current>,
}

impl RegistryProxy {
    pub fn new(current: Arc<Current>) -> Self {
        RegistryProxy { current }
    }
}

/// What earlier phases learned about the request.
pub struct RequestCtx {
    /// The configuration this request started with, kept to its end.
    snapshot: Arc<Snapshot>,
    started: Instant,
    route: Option<Route>,
    registry: Option<Arc<VirtualRegistry>>,
    upstream: Option<Arc<Upstream>>,
    /// The replica an upload hint named.
    forced: Option<usize>,
    /// The replica of the current attempt, counted in flight while held.
    pick: Option<Pick>,
    /// The replica of a failed first attempt, which the retry avoids.
    tried: Option<usize>,
    view: Option<ClientView>,
    /// Set when the gateway itself authenticated the request.
    user: Option<Arc<str>>,
    upstream_status: u16,
    /// The request carried an upload hint, to be removed before forwarding.
    strip_hint: bool,
    /// A cross-repository mount from a repository the user may not pull:
    /// `mount` and `from` are removed before forwarding.
    strip_mount: bool,
    /// What the access rules decided, for the access log.
    verdict: Verdict,
    /// HTTP/2 request bodies: small DATA frames gathered before the upstream write.
    body: Option<BodyCoalescer>,
    /// Mirror routing, the gateway's upstream login and the cache's answer;
    /// boxed, so requests to plain registries carry one pointer.
    mirror: Option<Box<mirrored::MirrorState>>,
}

impl RequestCtx {
    /// The replica of the current attempt, for logs.
    fn replica_url(&self) -> &str {
        match (&self.upstream, &self.pick) {
            (Some(up), Some(pick)) => &up.pool.replica(pick.index).url,
            _ => "",
        }
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl ProxyHttp for RegistryProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        RequestCtx {
            snapshot: self.current.get(),
            started: Instant::now(),
            route: None,
            registry: None,
            upstream: None,
            forced: None,
            pick: None,
            tried: None,
            view: None,
            user: None,
            upstream_status: 0,
            strip_hint: false,
            strip_mount: false,
            verdict: Verdict::NotApplied,
            body: None,
            mirror: None,
        }
    }

    // No response compression: registry blobs are already compressed and
    // digests must survive byte for byte.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        crate::connections::head_complete();
        let t = &ctx.snapshot.timeouts;
        let downstream = session.as_downstream_mut();
        // Pipelined HTTP/1.1 requests are answered in order rather than
        // dropped after the first (Pingora's default).
        downstream.set_pipelining_enabled(true);
        downstream.set_read_timeout(Some(t.client_read));
        downstream.set_write_timeout(Some(t.client_write));
        if downstream.get_keepalive().is_some() {
            downstream.set_keepalive(Some(t.keepalive.as_secs().max(1)));
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let downstream = session.as_downstream();
        let raw_head = downstream.as_http1().map(|h1| h1.get_headers_raw_bytes());
        if let Err(rejection) = head_checks::check(session.req_header(), raw_head.as_deref(), &ctx.snapshot.limits) {
            let v2 = session.req_header().uri.path().starts_with("/v2");
            ErrorReply::from(rejection).send(session, v2).await?;
            return Ok(true);
        }
        if !ctx.snapshot.redirects.is_empty() && front::redirect_to_https(&ctx.snapshot, session).await? {
            return Ok(true);
        }
        let req = session.req_header();
        let route = match routing::classify(req.uri.path().as_bytes()) {
            Ok(route) => route,
            Err(_) => {
                ErrorReply::NotFound.send(session, false).await?;
                return Ok(true);
            }
        };
        let v2 = route == Route::V2;
        if req.version == Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
            ErrorReply::BadRequest("HTTP/1.1 request without Host header")
                .send(session, v2)
                .await?;
            return Ok(true);
        }
        let ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let trusted = ip.is_some_and(|ip| ctx.snapshot.is_trusted_proxy(ip));
        let view = ClientView::from_request(req, ip, front::connection_scheme(session), trusted);
        if front::is_misdirected(session, &view) {
            ErrorReply::Misdirected.send(session, v2).await?;
            return Ok(true);
        }
        let Some(registry) = front::registry_for(&ctx.snapshot, &view, session).cloned() else {
            ErrorReply::NoRegistry.send(session, v2).await?;
            return Ok(true);
        };
        let Some(target) = registry.routes.target(route) else {
            ErrorReply::NotFound.send(session, v2).await?;
            return Ok(true);
        };
        ctx.route = Some(route);
        ctx.view = Some(view);
        // The mirror calls are boxed: their upstream logins hold Pingora's
        // connect future, which would otherwise be part of (and copied with)
        // every request's request_filter state, mirror or not.
        if v2
            && let Some(m) = &registry.mirror
            && Box::pin(mirrored::refuse_write(session, m)).await?
        {
            ctx.registry = Some(registry);
            return Ok(true);
        }
        // Decided on the same checked path routing used: no other
        // spelling of a path can reach the upstream unauthenticated.
        let gate = guard::admit(session, &ctx.snapshot.auth, &registry, target, route, ip).await?;
        let admission = match gate {
            Gate::Pass(a) => a,
            Gate::Answered(a) => {
                ctx.user = a.user;
                ctx.verdict = a.verdict;
                ctx.registry = Some(registry);
                return Ok(true);
            }
        };
        ctx.user = admission.user;
        ctx.verdict = admission.verdict;
        ctx.strip_mount = admission.strip_mount;
        if admission.catalog {
            let (user, upstream) = (ctx.user.as_deref(), &target.upstream);
            // Boxed: the catalog's upstream reads hold Pingora's connect
            // future (about 10 KB), which would otherwise be part of every
            // request's request_filter state (and copied with it).
            ctx.upstream_status = Box::pin(catalog::answer(session, &registry, upstream, user)).await?;
            ctx.upstream = Some(target.upstream.clone());
            ctx.registry = Some(registry);
            return Ok(true);
        }
        if v2 {
            if let Some(m) = &registry.mirror {
                ctx.upstream = Some(target.upstream.clone());
                if Box::pin(mirrored::handle(session, ctx, m, &registry.name)).await? {
                    ctx.registry = Some(registry);
                    return Ok(true);
                }
            }
            let ns_upstream = ctx.upstream.take();
            let routed = ns_upstream.as_ref().unwrap_or(&target.upstream);
            let req = session.req_header();
            // The hint never reaches the upstream.
            ctx.strip_hint = affinity::hint(req.uri.query()).is_some();
            let d = registry.v2_destination(routed, &req.method, req.uri.path(), req.uri.query());
            let login = d.upstream.auth.is_some();
            ctx.upstream = Some(d.upstream);
            ctx.forced = d.replica;
            if login && Box::pin(mirrored::login(session, ctx)).await? {
                ctx.registry = Some(registry);
                return Ok(true);
            }
        } else {
            ctx.upstream = Some(target.upstream.clone());
        }
        ctx.registry = Some(registry);
        Ok(false)
    }

    /// Runs for each attempt: the first, and a retry (on another replica).
    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        attempts::choose(session, ctx)
    }

    /// Connecting failed: nothing reached the replica. Counted, may eject
    /// it, and a GET or HEAD goes once to another replica that is up.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retry = attempts::attempt_failed(session, ctx, &e, false);
        e.set_retry(retry);
        e
    }

    /// The exchange failed after connecting (or on a pooled connection).
    /// Replaces Pingora's default, which would also replay PUT and DELETE
    /// on reused connections: only a GET or HEAD with no response byte yet
    /// is tried once more, never an upload or a DELETE.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let retry = *e.esource() == ErrorSource::Upstream && attempts::attempt_failed(session, ctx, &e, client_reused);
        e.set_retry(retry);
        e
    }

    // A retry is logged by `attempt_failed`, naming the replica.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        _e: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        matches!(context, ProxyWarnLogContext::UpstreamRetry)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        exchange::to_upstream(req, ctx);
        // Registries speak HTTP/1.1 whatever the client speaks. Runs again
        // on a retry, which replays the body: start gathering afresh.
        ctx.body = session.is_http2().then(BodyCoalescer::default);
        req.set_version(Version::HTTP_11);
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(coalescer) = &mut ctx.body {
            coalescer.push(body, end_of_stream);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = resp.status.as_u16();
        exchange::to_client(resp, ctx);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let reply = attempts::classify_failure(e);
        // Failed attempts were counted as they failed (`attempt_failed`).
        if let (Some(reply), Some(up)) = (reply, &ctx.upstream)
            && matches!(reply, ErrorReply::BadGateway | ErrorReply::GatewayTimeout)
        {
            log::warn!("upstream {} ({}) failed: {e}", up.name, ctx.replica_url());
        }
        let code = match reply {
            Some(reply) => {
                let v2 = ctx.route == Some(Route::V2);
                if let Err(we) = reply.send(session, v2).await {
                    log::debug!("could not send error response: {we}");
                }
                reply.status()
            }
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    // Client hang-ups are routine (cancelled pulls) and upstream failures are
    // logged by `fail_to_proxy` with the upstream named; the access line
    // carries the error either way. Internal errors keep Pingora's line.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        matches!(e.esource(), ErrorSource::Downstream | ErrorSource::Upstream)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let req = session.req_header();
        let downstream = session.as_downstream();
        let status = downstream.response_written().map_or(0, |r| r.status.as_u16());
        let request = operation::classify(&req.method, ctx.route, req.uri.path());
        let record = RequestRecord {
            operation: request.operation,
            status,
            request_bytes: downstream.body_bytes_read() as u64,
            response_bytes: downstream.body_bytes_sent() as u64,
            duration: ctx.started.elapsed(),
        };
        let registry_metrics = match &ctx.registry {
            Some(r) => &r.metrics,
            None => RegistryMetrics::unmatched(),
        };
        registry_metrics.record(&record);
        if access_log::enabled() {
            access_line::log_request(session, e, ctx, &record, &request);
        }
    }
}
