//! Writing a mirror's answers: blob and manifest heads, single byte
//! ranges, bodies read from cache files, and registry JSON errors.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::cache::Digest;
use crate::rewrite::{API_VERSION_TITLE, API_VERSION_VALUE};

/// Bytes read from a cache file per write to the client.
pub const CHUNK: u64 = 1 << 20;

/// The RFC 9211 `Cache-Status` of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
        }
    }

    fn header(self) -> &'static str {
        match self {
            CacheStatus::Hit => "registry-gateway; hit",
            CacheStatus::Miss => "registry-gateway; fwd=miss",
            CacheStatus::Stale => "registry-gateway; hit; detail=stale",
        }
    }
}

pub fn head(status: u16, cache: Option<CacheStatus>) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(8))?;
    resp.insert_header(API_VERSION_TITLE, API_VERSION_VALUE)?;
    if let Some(c) = cache {
        resp.insert_header("Cache-Status", c.header())?;
    }
    Ok(resp)
}

/// A registry JSON error (`{"errors":[{"code":...}]}`).
pub async fn error(session: &mut Session, status: u16, code: &str, message: &str) -> Result<()> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string() + "\n";
    let mut resp = head(status, None)?;
    resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
    resp.insert_header("Content-Length", body.len())?;
    // HTTP/2 would send a HEAD's body as DATA, which clients reset on.
    let body = if session.req_header().method == http::Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    crate::reply::write_and_discard(session, resp, body).await
}

/// The upstream's own answer to a request the mirror could not serve
/// (404 BLOB_UNKNOWN, 403 DENIED...), passed on.
pub async fn upstream_error(session: &mut Session, status: u16, body: Bytes, head_only: bool) -> Result<()> {
    let status = if status == 401 { 403 } else { status };
    let mut resp = head(status, None)?;
    resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
    resp.insert_header("Content-Length", body.len())?;
    let body = if head_only { Bytes::new() } else { body };
    crate::reply::write_and_discard(session, resp, body).await
}

/// A single `bytes=` range of a body of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Whole,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// Several ranges, and headers that are not byte ranges, get the whole
/// body (as registry:2 and nginx do for multi-range requests).
pub fn parse_range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(start), Some(end)) if start <= end => Some((start, end.min(size.saturating_sub(1)))),
        (Some(start), None) if b.is_empty() => Some((start, size.saturating_sub(1))),
        (None, Some(n)) if a.is_empty() && n > 0 => Some((size.saturating_sub(n), size.saturating_sub(1))),
        _ => return Range::Whole,
    };
    match parsed {
        Some((start, end)) if start < size && start <= end => Range::Part { start, end },
        _ => Range::Unsatisfiable,
    }
}

/// Serves a committed blob (or manifest file) from `file`. Returns body bytes sent.
pub async fn blob_from_file(
    session: &mut Session,
    file: Arc<File>,
    size: u64,
    digest: &Digest,
    cache: CacheStatus,
) -> Result<u64> {
    let req = session.req_header();
    let head_only = req.method == http::Method::HEAD;
    let range_header = req.headers.get(http::header::RANGE).and_then(|v| v.to_str().ok());
    let if_range = req.headers.get(http::header::IF_RANGE).and_then(|v| v.to_str().ok());
    let etag = format!("\"{digest}\"");
    let range = match if_range {
        Some(v) if v.trim() != etag => Range::Whole,
        _ => parse_range(range_header, size),
    };
    let (status, start, len) = match range {
        Range::Whole => (200, 0, size),
        Range::Part { start, end } => (206, start, end - start + 1),
        Range::Unsatisfiable => {
            let mut resp = head(416, Some(cache))?;
            resp.insert_header("Content-Range", format!("bytes */{size}"))?;
            resp.insert_header("Content-Length", 0)?;
            crate::reply::write_and_discard(session, resp, Bytes::new()).await?;
            return Ok(0);
        }
    };
    let mut resp = head(status, Some(cache))?;
    blob_headers(&mut resp, digest, len)?;
    if status == 206 {
        resp.insert_header("Content-Range", format!("bytes {start}-{}/{size}", start + len - 1))?;
    }
    session
        .write_response_header(Box::new(resp), head_only || len == 0)
        .await?;
    if head_only || len == 0 {
        return Ok(0);
    }
    copy_committed(session, &file, start, start + len).await?;
    Ok(len)
}

pub fn blob_headers(resp: &mut ResponseHeader, digest: &Digest, len: u64) -> Result<()> {
    resp.insert_header("Content-Type", "application/octet-stream")?;
    resp.insert_header("Content-Length", len)?;
    resp.insert_header("Docker-Content-Digest", digest.to_string())?;
    resp.insert_header("ETag", format!("\"{digest}\""))?;
    resp.insert_header("Accept-Ranges", "bytes")?;
    resp.insert_header("Cache-Control", "max-age=31536000")?;
    Ok(())
}

/// Sends `[from, to)` of a committed `file` from a mapping of it, asking
/// for each next chunk ahead of the write of the current one.
pub async fn copy_committed(session: &mut Session, file: &File, from: u64, to: u64) -> Result<()> {
    let all = super::mapped::map(file, to).or_err(ErrorType::FileReadError, "mapping a cache file")?;
    let (mut at, to) = (from as usize, to as usize);
    while at < to {
        let end = (at + CHUNK as usize).min(to);
        super::mapped::will_need(&all, end, (end + CHUNK as usize).min(to));
        let chunk = all.slice(at..end);
        at = end;
        session.write_response_body(Some(chunk), at >= to).await?;
    }
    Ok(())
}

/// A positioned read on a blocking thread; spawned at once, so it runs
/// while the caller writes.
pub fn read_at(file: Arc<File>, at: u64, len: u64) -> impl Future<Output = Result<Bytes>> {
    let handle = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], at + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Error::e_explain(ErrorType::FileReadError, format!("cache read: {e}")),
            }
        }
        if filled == 0 {
            return Error::e_explain(ErrorType::FileReadError, "cache file shorter than recorded");
        }
        buf.truncate(filled);
        Ok(Bytes::from(buf))
    });
    async move {
        handle
            .await
            .unwrap_or_else(|e| Error::e_explain(ErrorType::InternalError, format!("cache read: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Range::Whole);
        assert_eq!(parse_range(Some("bytes=2-4"), 10), Range::Part { start: 2, end: 4 });
        assert_eq!(parse_range(Some("bytes=2-"), 10), Range::Part { start: 2, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), Range::Part { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Range::Part { start: 5, end: 9 });
        assert_eq!(parse_range(Some("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=1-2,4-5"), 10), Range::Whole);
        assert_eq!(parse_range(Some("items=1-2"), 10), Range::Whole);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Range::Whole);
    }
}
