//! Blobs of a caching registry: a hit is read from disk; a miss starts
//! one download that every requester follows (the first one included),
//! reading the growing file but never its last byte before the download
//! verified against the digest. The download runs on its own task, so a
//! client that leaves does not end it: the next pull is a hit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::respond::{self, CacheStatus};
use super::upstream::{self as up_req};
use super::{Answered, Lookup as Req};
use crate::cache::{Digest, Fill, FillHead, FillState, FillWriter, FinishError, Lookup, Store};
use crate::metrics::mirror as metrics;
use crate::upstream::Upstream;
use crate::upstream_auth;

/// Error bodies of upstream answers kept for followers, at most.
const ERROR_BODY: usize = 64 << 10;

pub(super) async fn answer(session: &mut Session, r: &Req<'_>, d: Digest) -> Result<Option<Answered>> {
    answer_once(session, r, d, true).await
}

/// `may_retry`: a download this request followed failed upstream; it may
/// start its own once.
async fn answer_once(session: &mut Session, r: &Req<'_>, d: Digest, may_retry: bool) -> Result<Option<Answered>> {
    let store = &r.cache.store;
    let head_only = session.req_header().method == http::Method::HEAD;
    if store.refused(&d) {
        let msg = format!("upstream content of {d} does not match its digest; retry later");
        respond::error(session, 502, "BLOB_UNKNOWN", &msg).await?;
        return Ok(Some(Answered::status(None, 0)));
    }
    let key = &r.upstream.cache_key;
    if head_only && store.blob_size(&d).is_none() && !store.filling(&d) {
        return Ok(None); // proxied: a HEAD does not start a download
    }
    let lookup = match store.lookup(&d) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("cache {}: cannot start a download of {d}: {e}; proxying", store.label());
            metrics::cache_request(&r.registry, "blob", "bypass");
            return Ok(None);
        }
    };
    // A blob cached (or being downloaded) through another repository: the
    // upstream says whether this one may read it. Decided on what the
    // lookup found, so a download starting meanwhile changes nothing.
    if !matches!(lookup, Lookup::Lead(..)) && !store.records().linked(key, r.repository, &d) {
        let path = format!("/v2/{}/blobs/{d}", r.repository);
        let scope = upstream_auth::scope(&http::Method::GET, r.repository, None);
        match up_req::request(r.upstream, "HEAD", &path, &scope, None).await {
            Ok(a) if a.status == 200 => {
                a.release().await;
                store.records().link(key, r.repository, &d);
            }
            Ok(a) => {
                drop(lookup);
                let status = a.status;
                let body = a.body(ERROR_BODY).await.unwrap_or_default();
                respond::upstream_error(session, status, body, head_only).await?;
                return Ok(Some(Answered::status(None, status)));
            }
            Err(outage) => {
                drop(lookup);
                log::warn!("{}: {}", r.registry, outage.0);
                let msg = "upstream unavailable and this repository's link to the blob is not known";
                respond::error(session, 502, "BLOB_UNKNOWN", msg).await?;
                return Ok(Some(Answered::status(None, 0)));
            }
        }
    }
    match lookup {
        Lookup::Cached(c) => {
            metrics::cache_request(&r.registry, "blob", "hit");
            let sent = respond::blob_from_file(session, Arc::new(c.file), c.size, &d, CacheStatus::Hit).await?;
            metrics::cache_bytes(&r.registry, true, sent);
            Ok(Some(Answered::status(Some(CacheStatus::Hit), 0)))
        }
        Lookup::Follow(fill) => {
            metrics::cache_request(&r.registry, "blob", "miss");
            metrics::cache_collapsed(&r.registry);
            if may_retry && refused_upstream(&fill).await {
                // That download may have been for a repository lacking the
                // blob; this one was checked: it downloads for itself.
                return Box::pin(answer_once(session, r, d, false)).await;
            }
            tail(session, r, fill).await.map(Some)
        }
        Lookup::Lead(writer, fill) => {
            metrics::cache_request(&r.registry, "blob", "miss");
            let job = Download {
                upstream: r.upstream.clone(),
                repository: r.repository.to_owned(),
                store: store.clone(),
                backoff: r.cache.mismatch_backoff,
                registry: r.registry.clone(),
            };
            tokio::spawn(job.run(writer));
            tail(session, r, fill).await.map(Some)
        }
    }
}

/// Whether the download's upstream answered other than 200; then waits
/// until it has ended (and left the store's list of downloads).
async fn refused_upstream(fill: &Fill) -> bool {
    let mut rx = fill.subscribe();
    let refused = match rx.wait_for(|p| p.head.is_some() || p.state != FillState::Running).await {
        Ok(p) => p.head.as_ref().is_some_and(|h| h.status != 200),
        Err(_) => false,
    };
    if !refused {
        return false;
    }
    let _ = rx.wait_for(|p| p.state != FillState::Running).await;
    true
}

/// Follows a download: its head, then its bytes as they land.
async fn tail(session: &mut Session, r: &Req<'_>, fill: Arc<Fill>) -> Result<Answered> {
    let mut rx = fill.subscribe();
    let head = loop {
        let failed = {
            let p = rx.borrow_and_update();
            if let Some(h) = &p.head {
                break h.clone();
            }
            matches!(p.state, FillState::Failed(_))
        };
        if failed || rx.changed().await.is_err() {
            respond::error(session, 502, "BLOB_UNKNOWN", "upstream download failed").await?;
            return Ok(Answered::status(None, 0));
        }
    };
    if head.status != 200 {
        let head_only = session.req_header().method == http::Method::HEAD;
        respond::upstream_error(session, head.status, head.error_body, head_only).await?;
        return Ok(Answered::status(Some(CacheStatus::Miss), head.status));
    }
    let total = head.total.unwrap_or(0);
    let ranged = session.req_header().headers.contains_key(http::header::RANGE);
    if ranged || total == 0 {
        // Only verified content is served by range (or when empty).
        let state = rx
            .wait_for(|p| p.state != FillState::Running)
            .await
            .map(|p| p.state.clone());
        if state.ok() != Some(FillState::Committed) {
            respond::error(session, 502, "BLOB_UNKNOWN", "upstream download failed").await?;
            return Ok(Answered::status(None, 200));
        }
        let sent = respond::blob_from_file(session, fill.file.clone(), total, &fill.digest, CacheStatus::Miss).await?;
        metrics::cache_bytes(&r.registry, false, sent);
        return Ok(Answered::status(Some(CacheStatus::Miss), 200));
    }
    let mut resp = respond::head(200, Some(CacheStatus::Miss))?;
    respond::blob_headers(&mut resp, &fill.digest, total)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(resp), head_only).await?;
    if head_only {
        return Ok(Answered::status(Some(CacheStatus::Miss), 200));
    }
    let mut sent = 0u64;
    loop {
        let (readable, state) = {
            let p = rx.borrow_and_update();
            (p.readable(), p.state.clone())
        };
        while sent < readable {
            let chunk = respond::read_at(fill.file.clone(), sent, (readable - sent).min(respond::CHUNK)).await?;
            sent += chunk.len() as u64;
            session.write_response_body(Some(chunk), sent == total).await?;
        }
        if sent == total {
            metrics::cache_bytes(&r.registry, false, total);
            return Ok(Answered::status(Some(CacheStatus::Miss), 200));
        }
        if let FillState::Failed(why) = state {
            // Closing short: the client sees a truncated body and retries.
            return Err(Error::new_up(ErrorType::ReadError).more_context(format!("{}: {why}", fill.digest)));
        }
        if rx.changed().await.is_err() {
            return Err(Error::new_up(ErrorType::ReadError).more_context("download ended"));
        }
    }
}

/// One blob download, detached from the requests that follow it.
struct Download {
    upstream: Arc<Upstream>,
    repository: String,
    store: Arc<Store>,
    backoff: Duration,
    registry: Arc<str>,
}

impl Download {
    async fn run(self, mut w: FillWriter) {
        let d = w.digest();
        let up = &self.upstream;
        let path = format!("/v2/{}/blobs/{d}", self.repository);
        let scope = upstream_auth::scope(&http::Method::GET, &self.repository, None);
        let mut answer = match up_req::request(up, "GET", &path, &scope, None).await {
            Ok(a) => a,
            Err(outage) => {
                log::warn!("{}: blob {d}: {}", self.registry, outage.0);
                w.set_head(failed_head("upstream registry unavailable"));
                w.fail("upstream unavailable");
                return;
            }
        };
        if answer.status != 200 {
            let status = answer.status;
            let body = answer.body(ERROR_BODY).await.unwrap_or_default();
            w.set_head(FillHead {
                status,
                total: None,
                error_body: body,
            });
            w.fail("upstream refused");
            return;
        }
        let Some(total) = answer.content_length() else {
            w.set_head(failed_head("upstream sent a blob without Content-Length"));
            w.fail("no length");
            return;
        };
        w.set_head(FillHead {
            status: 200,
            total: Some(total),
            error_body: Bytes::new(),
        });
        let mut read = 0u64;
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len() as u64;
                    if let Err(e) = w.write(&chunk).await {
                        log::warn!("cache {}: writing {d}: {e}", self.store.label());
                        w.fail("cache write failed");
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("{}: blob {d} from upstream {}: {e}", self.registry, up.name);
                    w.fail("upstream broke off");
                    return;
                }
            }
        }
        answer.release().await;
        if read != total {
            log::warn!(
                "{}: blob {d}: upstream {} sent {read} of {total} bytes",
                self.registry,
                up.name
            );
            w.fail("upstream body short");
            return;
        }
        match w.finish(self.store.fsync()).await {
            Ok(_) => self.store.records().link(&up.cache_key, &self.repository, &d),
            Err(FinishError::Mismatch(computed)) => {
                log::warn!(
                    "{}: upstream {} sent content for {}@{d} that does not match its digest (got {computed}, {total} bytes): not cached, not served whole",
                    self.registry,
                    up.name,
                    self.repository
                );
                metrics::digest_mismatch(&up.name);
                self.store.mismatch(d, self.backoff);
            }
            Err(FinishError::Io(e)) => log::warn!("cache {}: storing {d}: {e}", self.store.label()),
        }
    }
}

fn failed_head(message: &str) -> FillHead {
    let body = serde_json::json!({"errors": [{"code": "BAD_GATEWAY", "message": message}]}).to_string();
    FillHead {
        status: 502,
        total: None,
        error_body: Bytes::from(body),
    }
}
