//! What the connection and the Host decide before routing: redirects to
//! HTTPS, misdirected requests, the scheme, the virtual registry.

use std::sync::Arc;

use pingora::prelude::*;
use pingora::proxy::Session;

use crate::reply::ErrorReply;
use crate::rewrite::{self, ClientView, Scheme};
use crate::runtime::Snapshot;
use crate::tls::SniBinding;
use crate::vhost::{VirtualRegistry, normalize_host};

/// Answers requests on redirecting listeners; `Ok(true)` when it did.
pub(super) async fn redirect_to_https(snapshot: &Snapshot, session: &mut Session) -> Result<bool> {
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    let Some(port) = local.and_then(|a| snapshot.redirects.https_port(a)) else {
        return Ok(false);
    };
    let req = session.req_header();
    let Some(authority) = rewrite::request_authority(req) else {
        ErrorReply::BadRequest("request without Host header")
            .send(session, false)
            .await?;
        return Ok(true);
    };
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = rewrite::https_redirect_location(authority.to_str().unwrap_or_default(), port, path);
    crate::reply::send_redirect(session, &location).await?;
    Ok(true)
}

/// The virtual registry for the request's host and local port.
pub(super) fn registry_for<'s>(
    snapshot: &'s Snapshot,
    view: &ClientView,
    session: &Session,
) -> Option<&'s Arc<VirtualRegistry>> {
    let authority = view.authority.as_ref().and_then(|a| a.to_str().ok());
    let port = session.server_addr().and_then(|a| a.as_inet()).map(|a| a.port());
    snapshot.registry_for(authority, port).map(|(r, _)| r)
}

/// On listeners with `reject_misdirected`: the Host would be served another
/// certificate than the one this connection's SNI name got.
pub(super) fn is_misdirected(session: &Session, view: &ClientView) -> bool {
    let digest = session.as_downstream().digest().and_then(|d| d.ssl_digest.as_ref());
    let Some(binding) = digest.and_then(|d| d.extension.get::<SniBinding>()) else {
        return false;
    };
    match view.authority.as_ref().and_then(|a| a.to_str().ok()) {
        Some(authority) => !binding.allows(&normalize_host(authority)),
        None => false,
    }
}

pub(super) fn connection_scheme(session: &Session) -> Scheme {
    match session.as_downstream().digest().and_then(|d| d.ssl_digest.as_ref()) {
        Some(_) => Scheme::Https,
        None => Scheme::Http,
    }
}
