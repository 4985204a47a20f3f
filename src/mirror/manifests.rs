//! Manifests of a caching registry. By digest they never change: cached
//! once verified. A tag names a digest for `tag_ttl`, then a HEAD upstream
//! revalidates it; while the upstream is down or failing, the last known
//! digest is served (up to `max_stale`), marked stale.

use std::time::SystemTime;

use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::respond::{self, CacheStatus};
use super::upstream as up_req;
use super::{Answered, Lookup as Req};
use crate::cache::{Digest, TagRecord};
use crate::metrics::mirror as metrics;
use crate::upstream_auth;

/// What the gateway accepts from upstreams, and serves.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// registry:2's own bound on a manifest.
const MAX_MANIFEST: usize = 4 << 20;

pub(super) async fn answer(session: &mut Session, r: &Req<'_>, reference: &str) -> Result<Option<Answered>> {
    match Digest::parse(reference) {
        Some(d) => by_digest(session, r, d).await.map(Some),
        // Other algorithms are proxied.
        None if reference.contains(':') => Ok(None),
        None => by_tag(session, r, reference).await.map(Some),
    }
}

async fn by_digest(session: &mut Session, r: &Req<'_>, d: Digest) -> Result<Answered> {
    let records = r.cache.store.records();
    let key = &r.upstream.cache_key;
    let path = format!("/v2/{}/manifests/{d}", r.repository);
    if let Some((media_type, body)) = records.manifest(&d) {
        if !records.linked(key, r.repository, &d) {
            match up_req::request(r.upstream, "HEAD", &path, &scope(r), Some(ACCEPT)).await {
                Ok(a) if a.status == 200 => {
                    a.release().await;
                    link_all(r, &d, &body);
                }
                Ok(a) => return pass(session, r, a).await,
                Err(o) => return unavailable(session, r, &o).await,
            }
        }
        metrics::cache_request(&r.registry, "manifest", "hit");
        return serve(session, r, &d, &media_type, body, CacheStatus::Hit).await;
    }
    metrics::cache_request(&r.registry, "manifest", "miss");
    match fetch(session, r, &path).await? {
        Fetched::Got(got_d, media_type, body) if got_d == d => {
            serve(session, r, &d, &media_type, body, CacheStatus::Miss).await
        }
        Fetched::Got(got_d, ..) => {
            let what = format!("manifest {got_d} for {}@{d}", r.repository);
            mismatched(session, r, &what).await
        }
        Fetched::Answered(a) => Ok(a),
    }
}

async fn by_tag(session: &mut Session, r: &Req<'_>, tag: &str) -> Result<Answered> {
    let records = r.cache.store.records();
    let key = &r.upstream.cache_key;
    let known = records.tag(key, r.repository, tag);
    let age = |rec: &TagRecord| SystemTime::now().duration_since(rec.validated).unwrap_or_default();
    if let Some(rec) = known.as_ref().filter(|rec| age(rec) < r.cache.tag_ttl)
        && let Some((media_type, body)) = records.manifest(&rec.digest)
    {
        metrics::cache_request(&r.registry, "tag", "hit");
        link_all(r, &rec.digest, &body);
        return serve(session, r, &rec.digest, &media_type, body, CacheStatus::Hit).await;
    }
    let path = format!("/v2/{}/manifests/{tag}", r.repository);
    let stale_reason = match up_req::request(r.upstream, "HEAD", &path, &scope(r), Some(ACCEPT)).await {
        Ok(a) if a.status == 200 => {
            let current = a.header_str("docker-content-digest").and_then(Digest::parse);
            a.release().await;
            if let (Some(rec), Some(current)) = (&known, current)
                && rec.digest == current
                && let Some((media_type, body)) = records.manifest(&current)
            {
                records.touch_tag(key, r.repository, tag);
                metrics::cache_request(&r.registry, "tag", "hit");
                link_all(r, &current, &body);
                return serve(session, r, &current, &media_type, body, CacheStatus::Hit).await;
            }
            metrics::cache_request(&r.registry, "tag", "miss");
            return match fetch(session, r, &path).await? {
                Fetched::Got(d, media_type, body) => {
                    records.put_tag(
                        key,
                        r.repository,
                        tag,
                        TagRecord {
                            digest: d,
                            media_type: media_type.clone(),
                            validated: SystemTime::now(),
                        },
                    );
                    serve(session, r, &d, &media_type, body, CacheStatus::Miss).await
                }
                Fetched::Answered(a) => Ok(a),
            };
        }
        // 429: a rate limit is an outage too, for a tag the cache knows.
        Ok(a) if a.status < 500 && (a.status != 429 || known.is_none()) => {
            if a.status == 404 {
                records.remove_tag(key, r.repository, tag);
            }
            return pass(session, r, a).await;
        }
        Ok(a) => {
            let s = a.status;
            a.release().await;
            format!("upstream {} answered {s}", r.upstream.name)
        }
        Err(o) => o.0,
    };
    // The upstream is down or failing: the last known digest, if recent enough.
    if let Some(rec) = known.filter(|rec| age(rec) < r.cache.max_stale)
        && let Some((media_type, body)) = records.manifest(&rec.digest)
    {
        log::warn!("{}: serving {}:{tag} stale: {stale_reason}", r.registry, r.repository);
        metrics::cache_request(&r.registry, "tag", "stale");
        link_all(r, &rec.digest, &body);
        return serve(session, r, &rec.digest, &media_type, body, CacheStatus::Stale).await;
    }
    unavailable(session, r, &up_req::Outage(stale_reason)).await
}

enum Fetched {
    Got(Digest, String, Bytes),
    /// The client already has its answer (an upstream error passed on).
    Answered(Answered),
}

/// GETs a manifest, verifies it against the digest the upstream names,
/// stores it and links what it references.
async fn fetch(session: &mut Session, r: &Req<'_>, path: &str) -> Result<Fetched> {
    let a = match up_req::request(r.upstream, "GET", path, &scope(r), Some(ACCEPT)).await {
        Ok(a) if a.status == 200 => a,
        Ok(a) => return pass(session, r, a).await.map(Fetched::Answered),
        Err(o) => return unavailable(session, r, &o).await.map(Fetched::Answered),
    };
    let media_type = a
        .header_str("content-type")
        .unwrap_or("application/octet-stream")
        .to_owned();
    let claimed = a.header_str("docker-content-digest").map(str::to_owned);
    let body = match a.body(MAX_MANIFEST).await {
        Ok(b) => b,
        Err(e) => {
            return unavailable(session, r, &up_req::Outage(e.to_string()))
                .await
                .map(Fetched::Answered);
        }
    };
    let d = Digest::of(&body);
    if let Some(claimed) = claimed.filter(|c| Digest::parse(c).is_some_and(|c| c != d)) {
        let what = format!("a manifest for {path} claimed as {claimed} (got {d})");
        return mismatched(session, r, &what).await.map(Fetched::Answered);
    }
    if let Err(e) = r.cache.store.records().put_manifest(&d, &media_type, &body) {
        log::warn!("cache {}: storing manifest {d}: {e}", r.cache.store.label());
    }
    link_all(r, &d, &body);
    Ok(Fetched::Got(d, media_type, body))
}

/// Upstream manifest content that does not match its digest: logged,
/// counted, never stored; the client gets 502.
async fn mismatched(session: &mut Session, r: &Req<'_>, what: &str) -> Result<Answered> {
    log::warn!(
        "{}: upstream {} sent {what}: does not match its digest",
        r.registry,
        r.upstream.name
    );
    metrics::digest_mismatch(&r.upstream.name);
    let msg = "upstream manifest does not match its digest";
    respond::error(session, 502, "MANIFEST_UNKNOWN", msg).await?;
    Ok(Answered::status(None, 200))
}

fn scope(r: &Req<'_>) -> String {
    upstream_auth::scope(&http::Method::GET, r.repository, None)
}

/// Links the manifest and every digest it references to the repository.
fn link_all(r: &Req<'_>, d: &Digest, body: &[u8]) {
    let records = r.cache.store.records();
    let key = &r.upstream.cache_key;
    if records.linked(key, r.repository, d) {
        return;
    }
    for child in referenced(body) {
        records.link(key, r.repository, &child);
    }
    records.link(key, r.repository, d);
}

/// Digests a registry checks a repository holds when the manifest is
/// pushed: config, layers and an index's manifests. Not `subject` or
/// `blobs` (artifacts may name what the repository lacks), nor layers with
/// `urls` (foreign layers): those stay for the upstream HEAD to confirm.
pub fn referenced(body: &[u8]) -> Vec<Digest> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut take = |d: Option<&serde_json::Value>| {
        if let Some(d) = d.and_then(|d| d.as_str()).and_then(Digest::parse) {
            out.push(d);
        }
    };
    take(v.pointer("/config/digest"));
    for list in ["layers", "manifests"] {
        for item in v.get(list).and_then(|l| l.as_array()).into_iter().flatten() {
            if item.get("urls").is_none() {
                take(item.get("digest"));
            }
        }
    }
    out
}

async fn serve(
    session: &mut Session,
    r: &Req<'_>,
    d: &Digest,
    media_type: &str,
    body: Bytes,
    status: CacheStatus,
) -> Result<Answered> {
    let head_only = session.req_header().method == http::Method::HEAD;
    let mut resp = respond::head(200, Some(status))?;
    resp.insert_header("Content-Type", media_type)?;
    resp.insert_header("Content-Length", body.len())?;
    resp.insert_header("Docker-Content-Digest", d.to_string())?;
    resp.insert_header("ETag", format!("\"{d}\""))?;
    let len = body.len() as u64;
    let body = if head_only { Bytes::new() } else { body };
    crate::reply::write_and_discard(session, resp, body).await?;
    if !head_only {
        metrics::cache_bytes(&r.registry, status != CacheStatus::Miss, len);
    }
    Ok(Answered::status(
        Some(status),
        if status == CacheStatus::Miss { 200 } else { 0 },
    ))
}

async fn pass(session: &mut Session, _r: &Req<'_>, a: crate::fetch::Fetched) -> Result<Answered> {
    let status = a.status;
    let head_only = session.req_header().method == http::Method::HEAD;
    let body = a.body(64 << 10).await.unwrap_or_default();
    respond::upstream_error(session, status, body, head_only).await?;
    Ok(Answered::status(None, status))
}

async fn unavailable(session: &mut Session, r: &Req<'_>, o: &up_req::Outage) -> Result<Answered> {
    log::warn!("{}: {}", r.registry, o.0);
    respond::error(
        session,
        502,
        "BAD_GATEWAY",
        "upstream registry unavailable and nothing cached to serve",
    )
    .await?;
    Ok(Answered::status(None, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_manifests_and_indexes() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = Digest::of(b"c");
        let m = format!(
            r#"{{"config":{{"digest":"{a}"}},"layers":[{{"digest":"{b}"}},{{"digest":"sha512:00"}},{{"digest":"{c}","urls":["https://x"]}}]}}"#
        );
        assert_eq!(referenced(m.as_bytes()), vec![a, b], "foreign layers are not linked");
        let i = format!(
            r#"{{"manifests":[{{"digest":"{a}"}}],"subject":{{"digest":"{b}"}},"blobs":[{{"digest":"{c}"}}]}}"#
        );
        assert_eq!(referenced(i.as_bytes()), vec![a], "subject and blobs are not linked");
        assert!(referenced(b"nope").is_empty());
    }
}
