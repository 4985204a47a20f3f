//! Who may do what, for one request: htpasswd authentication and the
//! registry's access rules, and the 401 / 403 / 429 answers when the
//! request stops here. `proxy::request_filter` calls [`admit`] once the
//! registry and route are known; the `authorize` helper that lived in
//! proxy.rs moves here.
//!
//! Without rules a request is handled exactly as before: credentials are
//! needed where the auth scope says, and anything authenticated may do
//! anything. With rules:
//!
//! - credentials are checked whenever the client sends some (wrong ones get
//!   401 even where anonymous clients are let in); `Basic Og==` (`:`, what
//!   skopeo and podman send when they have none) counts as none;
//! - the operation's requirement ([`access::requirement`]) is decided for
//!   the user, or for an anonymous client;
//! - a denial answers 401 with the challenge when the client sent no
//!   credentials and the route has an auth block (logging in may help),
//!   otherwise 403 `DENIED` naming the action and repository.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::access::{self, AccessPolicy, Action, Requirement, Verdict};
use crate::auth::{self, AuthOutcome, AuthPolicy, AuthScope, Authenticator};
use crate::metrics::{self, AuthResult};
use crate::operation::{self, Operation};
use crate::query;
use crate::reply::{self, ErrorReply};
use crate::routing::Route;
use crate::vhost::{RouteTarget, VirtualRegistry};

/// What [`admit`] learned, kept by the proxy for later phases and the log.
#[derive(Debug, Default)]
pub struct Admission {
    /// The user the gateway authenticated.
    pub user: Option<Arc<str>>,
    pub verdict: Verdict,
    /// Remove `mount` and `from` from the query before forwarding.
    pub strip_mount: bool,
    /// Answer `GET /v2/_catalog` here, filtered (`catalog::serve`).
    pub catalog: bool,
}

/// Whether the request goes on; either way what was learned.
#[derive(Debug)]
pub enum Gate {
    Pass(Admission),
    /// The answer (401, 403, 404, 429) has been sent.
    Answered(Admission),
}

pub async fn admit(
    session: &mut Session,
    authenticator: &Authenticator,
    registry: &VirtualRegistry,
    target: &RouteTarget,
    route: Route,
    ip: Option<IpAddr>,
) -> Result<Gate> {
    let v2 = route == Route::V2;
    let mut a = Admission::default();
    let policy = registry.access.as_deref().filter(|_| route != Route::Ping);
    let Some(policy) = policy else {
        // No rules: credentials where the scope asks, then anything goes.
        if let Some(p) = &target.auth
            && p.applies_to(&session.req_header().method)
        {
            match authenticate(session, authenticator, p, ip, v2).await? {
                Some(user) => a.user = Some(user),
                None => return Ok(Gate::Answered(a)),
            }
        }
        return Ok(Gate::Pass(a));
    };

    // registry:2 decodes `%XX` in the path after the decision was taken on
    // the encoded name (`s%65cret/x` is `secret/x` to it); no client sends
    // escapes in a registry path, so they are refused where rules apply.
    if session.req_header().uri.path().contains('%') {
        a.verdict = Verdict::Refused;
        ErrorReply::NotFound.send(session, v2).await?;
        return Ok(Gate::Answered(a));
    }

    let sends_credentials =
        (session.req_header().headers.get(AUTHORIZATION)).is_some_and(|h| !auth::is_empty_basic(h.as_bytes()));
    if let (Some(p), true) = (&target.auth, sends_credentials) {
        match authenticate(session, authenticator, p, ip, v2).await? {
            Some(user) => a.user = Some(user),
            None => return Ok(Gate::Answered(a)),
        }
    }
    // A 401 helps only where the route has an auth block and the client
    // has not logged in.
    let challenge = target.auth.as_deref().filter(|_| a.user.is_none());

    let req = session.req_header();
    let request = operation::classify(&req.method, Some(route), req.uri.path());
    match access::requirement(request.operation) {
        Requirement::Nothing => Ok(Gate::Pass(a)),
        Requirement::Login => match challenge {
            Some(p) if p.scope == AuthScope::All => unauthorized(session, a, p, v2).await,
            _ => Ok(Gate::Pass(a)),
        },
        Requirement::Catalog => match challenge {
            Some(p) if !policy.anonymous_may_anywhere(Action::Pull) => unauthorized(session, a, p, v2).await,
            _ => {
                a.verdict = Verdict::Filtered;
                a.catalog = true;
                Ok(Gate::Pass(a))
            }
        },
        Requirement::Refuse => {
            a.verdict = Verdict::Refused;
            deny(session, registry, a, None, "", challenge, v2).await
        }
        Requirement::Act(action) => {
            let decision = policy.decide(a.user.as_deref(), request.repository, action);
            a.verdict = Verdict::from_decision(decision);
            if !decision.allowed {
                // Owned only here: the answer needs the session mutably.
                let repository = request.repository.to_owned();
                return deny(session, registry, a, Some(action), &repository, challenge, v2).await;
            }
            if request.operation == Operation::UploadStart {
                return upload_start(session, registry, policy, a, decision.rule.unwrap_or(0), v2).await;
            }
            Ok(Gate::Pass(a))
        }
    }
}

/// An allowed upload start: a cross-repository mount needs pull on `from`
/// too, or it copies a blob out of a repository the user may not read.
/// Without it, `mount` and `from` are removed, so registry:2 starts a plain
/// upload (202, as when the blob is not there) and the client uploads the
/// blob itself: the fallback the distribution spec prescribes, which every
/// client handles, and no hint whether the blob exists in `from`.
async fn upload_start(
    session: &mut Session,
    registry: &VirtualRegistry,
    policy: &AccessPolicy,
    mut a: Admission,
    rule: u32,
    v2: bool,
) -> Result<Gate> {
    let req = session.req_header();
    // registry:2 reads `mount` and `from` with r.FormValue, which also
    // reads a form body, where the gateway cannot strip them.
    if form_body(req.headers.get(CONTENT_TYPE)) && req.method == Method::POST {
        a.verdict = Verdict::Refused;
        registry.metrics.access_denied(Some(Action::Push));
        reply::send_denied(
            session,
            v2,
            "push",
            "",
            "upload parameters in a form body are not accepted; put them in the query",
        )
        .await?;
        return Ok(Gate::Answered(a));
    }
    let q = req.uri.query();
    if query::first(q, "mount").is_some() {
        let user = a.user.as_deref();
        let readable = query::first(q, "from").is_some_and(|from| policy.may_pull(user, &from));
        if !readable {
            a.strip_mount = true;
            a.verdict = Verdict::MountStripped(rule);
            registry.metrics.mount_stripped();
        }
    }
    Ok(Gate::Pass(a))
}

/// `application/x-www-form-urlencoded` or `multipart/form-data`, as Go's
/// `mime.ParseMediaType` reads the first Content-Type.
fn form_body(content_type: Option<&HeaderValue>) -> bool {
    let Some(Ok(ct)) = content_type.map(|v| v.to_str()) else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/x-www-form-urlencoded") || media.eq_ignore_ascii_case("multipart/form-data")
}

async fn deny(
    session: &mut Session,
    registry: &VirtualRegistry,
    a: Admission,
    action: Option<Action>,
    repository: &str,
    challenge: Option<&AuthPolicy>,
    v2: bool,
) -> Result<Gate> {
    let message = match action {
        Some(action) if !repository.is_empty() => format!("{} on {repository}", action.as_str()),
        _ => "this request is not one the access rules can allow".to_owned(),
    };
    deny_with(session, registry, a, action, repository, &message, challenge, v2).await
}

/// Counts the denial, then 401 with the challenge where logging in may
/// help, else 403 `DENIED` with `message`.
#[allow(clippy::too_many_arguments)]
async fn deny_with(
    session: &mut Session,
    registry: &VirtualRegistry,
    a: Admission,
    action: Option<Action>,
    repository: &str,
    message: &str,
    challenge: Option<&AuthPolicy>,
    v2: bool,
) -> Result<Gate> {
    registry.metrics.access_denied(action);
    if let Some(p) = challenge {
        return unauthorized(session, a, p, v2).await;
    }
    let action = action.map_or("other", Action::as_str);
    reply::send_denied(session, v2, action, repository, message).await?;
    Ok(Gate::Answered(a))
}

async fn unauthorized(session: &mut Session, a: Admission, p: &AuthPolicy, v2: bool) -> Result<Gate> {
    metrics::auth_outcome(AuthResult::Missing);
    let challenge = ("WWW-Authenticate", p.challenge.clone());
    ErrorReply::Unauthorized.send_with(session, v2, Some(challenge)).await?;
    Ok(Gate::Answered(a))
}

/// Checks the credentials; `None` when the answer (401 or 429) was sent.
/// (Was `RegistryProxy::authorize`.)
async fn authenticate(
    session: &mut Session,
    authenticator: &Authenticator,
    policy: &AuthPolicy,
    ip: Option<IpAddr>,
    v2: bool,
) -> Result<Option<Arc<str>>> {
    let authorization = session.req_header().headers.get(AUTHORIZATION).cloned();
    match authenticator.check(policy, authorization.as_ref(), ip).await {
        AuthOutcome::Allowed { user } => {
            metrics::auth_outcome(AuthResult::Success);
            Ok(Some(user))
        }
        outcome @ (AuthOutcome::Missing | AuthOutcome::Rejected) => {
            metrics::auth_outcome(match outcome {
                AuthOutcome::Missing => AuthResult::Missing,
                _ => AuthResult::Failure,
            });
            let challenge = ("WWW-Authenticate", policy.challenge.clone());
            ErrorReply::Unauthorized.send_with(session, v2, Some(challenge)).await?;
            Ok(None)
        }
        AuthOutcome::Throttled { retry_after } => {
            metrics::auth_outcome(AuthResult::Throttled);
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let retry = ("Retry-After", HeaderValue::from(secs));
            ErrorReply::TooManyRequests.send_with(session, v2, Some(retry)).await?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_recognised_as_go_does() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(form_body(v("application/x-www-form-urlencoded").as_ref()));
        assert!(form_body(
            v("Application/X-WWW-Form-Urlencoded; charset=utf-8").as_ref()
        ));
        assert!(form_body(v("multipart/form-data; boundary=x").as_ref()));
        assert!(!form_body(v("application/octet-stream").as_ref()));
        assert!(!form_body(None));
    }
}
