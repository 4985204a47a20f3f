//! Requests a mirror makes to its upstream: with the gateway's own
//! Authorization (refreshed once after a 401), on a replica chosen by the
//! pool (another one after a refused connection), following redirects to
//! blob storage without credentials.

use http::HeaderValue;
use pingora::upstreams::peer::HttpPeer;

use crate::fetch::{self, Fetched, PeerTimeouts, Target};
use crate::metrics::UpstreamFailure;
use crate::upstream::Upstream;

/// Why an upstream could not answer: an outage, during which cached
/// content is served.
#[derive(Debug)]
pub struct Outage(pub String);

/// Redirects followed for one request, at most.
const MAX_REDIRECTS: usize = 3;

/// `method` of `/v2/...` (`path`, without the replica's prefix) with the
/// Authorization `scope` needs; `accept` for manifests.
pub async fn request(
    up: &Upstream,
    method: &str,
    path: &str,
    scope: &str,
    accept: Option<&str>,
) -> Result<Fetched, Outage> {
    let mut retried_auth = false;
    loop {
        let authorization = match &up.auth {
            Some(auth) => auth
                .authorization(&up.pool, scope)
                .await
                .map_err(|e| Outage(e.to_string()))?,
            None => None,
        };
        let answer = on_a_replica(up, method, path, authorization.as_ref(), accept).await?;
        if answer.status == 401
            && let Some(auth) = &up.auth
            && !retried_auth
        {
            // A revoked or expired token: one fresh attempt.
            auth.rejected(scope);
            retried_auth = true;
            answer.release().await;
            continue;
        }
        return Ok(answer);
    }
}

async fn on_a_replica(
    up: &Upstream,
    method: &str,
    path: &str,
    authorization: Option<&HeaderValue>,
    accept: Option<&str>,
) -> Result<Fetched, Outage> {
    let mut avoid = None;
    let mut last = String::new();
    for _ in 0..2 {
        let pick = up.pool.choose(b"", avoid);
        let replica = up.pool.replica(pick.index);
        let target = format!("{}{path}", replica.path_prefix);
        let mut req = fetch::request(method, &target, "").map_err(|e| Outage(e.to_string()))?;
        let _ = req.insert_header(http::header::HOST, replica.authority_header.clone());
        if let Some(a) = authorization {
            let _ = req.insert_header(http::header::AUTHORIZATION, a.clone());
        }
        if let Some(a) = accept {
            let _ = req.insert_header(http::header::ACCEPT, a);
        }
        let peer = replica.peer(true);
        match fetch::send(&peer, req).await {
            Ok(answer) => {
                up.metrics.response(answer.status);
                up.pool.answered(pick.index, answer.status);
                return follow(answer, &peer, method, replica.url.as_str()).await;
            }
            Err(e) => {
                up.pool
                    .failed(pick.index, UpstreamFailure::Connect { timed_out: false }, &e);
                last = format!("{} {method} {path}: {e}", replica.url);
                if !up.pool.has_alternative(pick.index) {
                    break;
                }
                avoid = Some(pick.index);
            }
        }
    }
    Err(Outage(format!("upstream {}: {last}", up.name)))
}

/// Follows 30x answers to where the blob is stored (a CDN, object
/// storage). No Authorization goes there: its URL carries its own.
async fn follow(mut answer: Fetched, origin: &HttpPeer, method: &str, replica_url: &str) -> Result<Fetched, Outage> {
    for _ in 0..MAX_REDIRECTS {
        if !matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
            return Ok(answer);
        }
        let Some(location) = answer.header_str("location").map(str::to_owned) else {
            return Ok(answer);
        };
        answer.release().await;
        let target = if location.starts_with('/') {
            let base = Target::parse(replica_url).ok_or_else(|| Outage(format!("bad replica URL {replica_url}")))?;
            Target {
                path_and_query: location.clone(),
                ..base
            }
        } else {
            Target::parse(&location).ok_or_else(|| Outage(format!("redirect to unsupported `{location}`")))?
        };
        let same = Target::parse(replica_url).is_some_and(|r| r.host == target.host);
        if !target.tls && !same {
            return Err(Outage(format!(
                "refusing a redirect to plain HTTP on another host: {location}"
            )));
        }
        let timeouts = PeerTimeouts {
            connect: origin
                .options
                .connection_timeout
                .unwrap_or(std::time::Duration::from_secs(5)),
            read: origin
                .options
                .read_timeout
                .unwrap_or(std::time::Duration::from_secs(60)),
        };
        let peer = target
            .peer(same.then_some(origin), &timeouts)
            .await
            .map_err(|e| Outage(e.to_string()))?;
        let req =
            fetch::request(method, &target.path_and_query, &target.authority()).map_err(|e| Outage(e.to_string()))?;
        answer = fetch::send(&peer, req)
            .await
            .map_err(|e| Outage(format!("redirect to {}: {e}", target.authority())))?;
    }
    Ok(answer)
}
