//! `GET /v2/_catalog` under access rules: the gateway answers it itself,
//! listing only the repositories the client may pull, with registry:2's
//! pagination (`n`, `last`, `Link`) intact.
//!
//! Filtering one upstream page would return short or empty pages, and a
//! `Link` after the last readable repository would lead to an empty one.
//! So the gateway reads upstream pages (in registry:2's own order, from the
//! client's `last`) until it holds `n + 1` readable names or the upstream
//! has no more; it returns `n` of them, and a `Link` only when the extra
//! one shows there is more to read. The `Link` is relative
//! (`/v2/_catalog?last=...&n=...`), so it points at the gateway the client
//! used. Reading is bounded ([`SCAN_LIMIT`]): past it the page comes back
//! with what it has and a `Link` that continues after the last name read.

use std::cmp::Ordering;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use pingora::connectors::http::v1::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::access::AccessPolicy;
use crate::pool::Replica;
use crate::query;
use crate::reply::ErrorReply;
use crate::rewrite::{API_VERSION_TITLE, API_VERSION_VALUE};
use crate::upstream::Upstream;
use crate::vhost::VirtualRegistry;

/// registry:2's page size when the client gives no `n`.
pub const DEFAULT_N: usize = 100;
/// Larger `n` are served as this many (the OCI spec allows fewer entries
/// than asked for when a `Link` follows; registry:2 refuses them instead).
pub const MAX_N: usize = 1000;
/// Upstream page size tried first; registry:2's `catalog.maxentries`
/// default. Smaller ones are tried when it answers PAGINATION_NUMBER_INVALID.
pub const FETCH_N: usize = 1000;
/// Names read from the upstream for one client page, at most.
pub const SCAN_LIMIT: usize = 50_000;
/// Upstream requests for one client page, at most.
pub const MAX_FETCHES: usize = 64;

/// The client's `n` and `last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogQuery {
    pub n: usize,
    pub last: Option<String>,
}

impl CatalogQuery {
    /// `None` for an `n` registry:2 refuses (not a number, negative):
    /// the caller answers 400 PAGINATION_NUMBER_INVALID.
    pub fn parse(q: Option<&str>) -> Option<CatalogQuery> {
        let n = match query::first(q, "n").as_deref() {
            None | Some("") => DEFAULT_N,
            Some(text) => match text.parse::<i64>() {
                Ok(v) if v >= 0 => (v as u64).min(MAX_N as u64) as usize,
                _ => return None,
            },
        };
        let last = query::first(q, "last")
            .filter(|l| !l.is_empty())
            .map(|l| l.into_owned());
        Some(CatalogQuery { n, last })
    }
}

/// registry:2's order of repository names: byte-wise, with `/` below every
/// other byte (distribution's `lessPath`), so `a/b` comes before `a-b`.
pub fn catalog_order(a: &str, b: &str) -> Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        match key(*x).cmp(&key(*y)) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

/// One client page being assembled from upstream pages.
#[derive(Debug)]
pub struct Pager {
    want: usize,
    found: Vec<String>,
    /// The last name read; the next upstream page starts after it.
    cursor: Option<String>,
    upstream_done: bool,
    scanned: usize,
    fetches: usize,
}

/// What goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPage {
    pub repositories: Vec<String>,
    /// `last` of the `Link` to the next page; `None`: no `Link`.
    pub next: Option<String>,
}

impl Pager {
    pub fn new(q: CatalogQuery) -> Pager {
        Pager {
            want: q.n,
            found: Vec::new(),
            upstream_done: q.n == 0,
            cursor: q.last,
            scanned: 0,
            fetches: 0,
        }
    }

    /// Whether another upstream page is needed (and allowed).
    pub fn wants_more(&self) -> bool {
        !self.upstream_done && self.found.len() <= self.want && self.scanned < SCAN_LIMIT && self.fetches < MAX_FETCHES
    }

    /// Where the next upstream page starts.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Takes one upstream page; `more`: it carried a `Link` (rel="next").
    /// Names not after the cursor are skipped, so an upstream that repeats
    /// itself cannot make a page repeat or loop.
    pub fn feed(&mut self, page: Vec<String>, more: bool, mut readable: impl FnMut(&str) -> bool) {
        self.fetches += 1;
        let mut progressed = false;
        for name in page {
            if self
                .cursor
                .as_deref()
                .is_some_and(|c| catalog_order(&name, c) != Ordering::Greater)
            {
                continue;
            }
            progressed = true;
            self.scanned += 1;
            let keep = readable(&name);
            self.cursor = Some(name.clone());
            if keep {
                self.found.push(name);
                if self.found.len() > self.want {
                    return; // n + 1: there is a next page
                }
            }
        }
        if !more || !progressed {
            self.upstream_done = true;
        }
    }

    pub fn finish(mut self) -> CatalogPage {
        if self.found.len() > self.want {
            self.found.truncate(self.want);
            let next = self.found.last().cloned();
            return CatalogPage {
                repositories: self.found,
                next,
            };
        }
        // Stopped by the scan bounds: continue after what was read.
        let next = if self.upstream_done { None } else { self.cursor };
        CatalogPage {
            repositories: self.found,
            next,
        }
    }
}

/// `</v2/_catalog?last=a%2Fb&n=50>; rel="next"`: relative, so it points at
/// the gateway (and port) the client used, never at the upstream.
pub fn link(last: &str, n: usize) -> String {
    format!("</v2/_catalog?last={}&n={n}>; rel=\"next\"", query::escape(last))
}

/// Whether an upstream `Link` header announces a next page.
pub fn has_next(link: &[u8]) -> bool {
    std::str::from_utf8(link).is_ok_and(|l| l.split(',').any(|part| part.contains("rel=\"next\"")))
}

/// `{"repositories":[...]}` as registry:2 writes it.
pub fn body(repositories: &[String]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Page<'a> {
        repositories: &'a [String],
    }
    let mut out = serde_json::to_vec(&Page { repositories }).expect("strings serialize");
    out.push(b'\n');
    out
}

/// The names of an upstream page; `None` for a body that is not one.
pub fn parse_page(body: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Page {
        #[serde(default)]
        repositories: Option<Vec<String>>,
    }
    serde_json::from_slice::<Page>(body)
        .ok()
        .map(|p| p.repositories.unwrap_or_default())
}

/// A catalog request the gateway answers.
pub struct CatalogRequest<'a> {
    pub upstream: &'a Upstream,
    /// Reads every page (shared storage: any replica lists the same names).
    pub replica: &'a Replica,
    pub policy: &'a AccessPolicy,
    pub user: Option<&'a str>,
    /// The client's Authorization, when the upstream is to see it.
    pub authorization: Option<HeaderValue>,
    pub head: bool,
}

static CONNECTOR: LazyLock<Connector> = LazyLock::new(|| Connector::new(None));

enum Fetched {
    Page {
        names: Vec<String>,
        more: bool,
    },
    /// registry:2 refused the page size (its `catalog.maxentries`).
    TooMany,
    Failed {
        status: u16,
    },
}

/// `GET /v2/_catalog` of a registry under access rules, answered here;
/// returns the last upstream status (0: none) for the access log.
pub async fn answer(
    session: &mut Session,
    registry: &VirtualRegistry,
    upstream: &Upstream,
    user: Option<&str>,
) -> pingora::Result<u16> {
    let Some(policy) = registry.access.as_deref() else {
        return Error::e_explain(ErrorType::InternalError, "catalog filtering without access rules");
    };
    let req = session.req_header();
    // As for proxied requests: credentials the gateway checked stay here.
    let authorization = match user {
        Some(_) if !upstream.forward_authorization => None,
        _ => req.headers.get(http::header::AUTHORIZATION).cloned(),
    };
    let head = req.method == http::Method::HEAD;
    let pick = upstream.pool.choose(b"", None);
    let request = CatalogRequest {
        upstream,
        replica: upstream.pool.replica(pick.index),
        policy,
        user,
        authorization,
        head,
    };
    serve(session, request).await
}

/// Answers the catalog; returns the last upstream status (0: none) for
/// the access log.
pub async fn serve(session: &mut Session, c: CatalogRequest<'_>) -> pingora::Result<u16> {
    let Some(q) = CatalogQuery::parse(session.req_header().uri.query()) else {
        ErrorReply::BadRequest("invalid number of results requested")
            .send(session, true)
            .await?;
        return Ok(0);
    };
    let (want, mut pager) = (q.n, Pager::new(q));
    let mut fetch_n = FETCH_N;
    let mut status = 0;
    while pager.wants_more() {
        match fetch(c.replica, fetch_n, pager.cursor(), c.authorization.as_ref()).await {
            Ok(Fetched::Page { names, more }) => {
                status = 200;
                pager.feed(names, more, |r| c.policy.may_pull(c.user, r));
            }
            Ok(Fetched::TooMany) if fetch_n > 1 => fetch_n = (fetch_n / 10).max(1),
            Ok(Fetched::TooMany) => return upstream_failed(session, &c, 400).await,
            Ok(Fetched::Failed { status }) => return upstream_failed(session, &c, status).await,
            Err(e) => {
                log::warn!("upstream {} ({}): catalog page: {e}", c.upstream.name, c.replica.url);
                ErrorReply::BadGateway.send(session, true).await?;
                return Ok(0);
            }
        }
    }
    let page = pager.finish();
    let body = body(&page.repositories);
    let mut resp = ResponseHeader::build(200, Some(5))?;
    resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
    resp.insert_header("Content-Length", body.len())?;
    resp.insert_header(API_VERSION_TITLE, API_VERSION_VALUE)?;
    if let Some(last) = &page.next {
        resp.insert_header("Link", link(last, want))?;
    }
    let body = if c.head { Bytes::new() } else { Bytes::from(body) };
    crate::reply::write_and_discard(session, resp, body).await?;
    Ok(status)
}

async fn upstream_failed(session: &mut Session, c: &CatalogRequest<'_>, status: u16) -> pingora::Result<u16> {
    log::warn!(
        "upstream {} ({}) answered {status} to a catalog page",
        c.upstream.name,
        c.replica.url
    );
    ErrorReply::BadGateway.send(session, true).await?;
    Ok(status)
}

async fn fetch(up: &Replica, n: usize, last: Option<&str>, auth: Option<&HeaderValue>) -> pingora::Result<Fetched> {
    let mut target = format!("{}/v2/_catalog?n={n}", up.path_prefix);
    if let Some(l) = last {
        target.push_str("&last=");
        target.push_str(&query::escape(l));
    }
    let mut req = RequestHeader::build("GET", target.as_bytes(), None)?;
    req.insert_header(http::header::HOST, up.authority_header.clone())?;
    req.insert_header(http::header::ACCEPT, "application/json")?;
    if let Some(a) = auth {
        req.insert_header(http::header::AUTHORIZATION, a.clone())?;
    }
    let peer = up.peer(true);
    let (mut s, _) = CONNECTOR.get_http_session(&*peer).await?;
    s.write_request_header(Box::new(req)).await?;
    s.finish_body().await?;
    s.read_response().await?;
    let status = s.get_status().map_or(0, |s| s.as_u16());
    let more = s.get_header(http::header::LINK).is_some_and(|l| has_next(l.as_bytes()));
    let mut body = Vec::new();
    while let Some(chunk) = s.read_body_ref().await? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "catalog page over 8 MiB");
        }
        body.extend_from_slice(chunk);
    }
    CONNECTOR
        .release_http_session(s, &*peer, Some(Duration::from_secs(60)))
        .await;
    Ok(match (status, parse_page(&body)) {
        (200, Some(names)) => Fetched::Page { names, more },
        (400, _) if body.windows(25).any(|w| w == b"PAGINATION_NUMBER_INVALID") => Fetched::TooMany,
        (status, _) => Fetched::Failed { status },
    })
}

/// Bound on one upstream catalog page.
const MAX_PAGE_BYTES: usize = 8 << 20;

#[cfg(test)]
mod tests;
