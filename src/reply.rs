//! Responses the gateway writes itself, in the registry's JSON error format
//! (`{"errors":[{"code":...,"message":...}]}`), so clients show a reason
//! instead of an empty body.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::rewrite::{API_VERSION_TITLE, API_VERSION_VALUE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// No route for the path, or a malformed path.
    NotFound,
    /// No virtual registry serves the requested host name.
    NoRegistry,
    /// The Host needs another certificate than the connection's SNI got.
    Misdirected,
    BadRequest(&'static str),
    /// Credentials missing or wrong; sent with the realm's challenge.
    Unauthorized,
    /// Too many wrong credentials from this client; sent with Retry-After.
    TooManyRequests,
    /// The upstream refused, was unreachable or broke the exchange.
    BadGateway,
    GatewayTimeout,
    Internal,
}

impl ErrorReply {
    pub fn status(self) -> u16 {
        match self {
            ErrorReply::NotFound | ErrorReply::NoRegistry => 404,
            ErrorReply::BadRequest(_) => 400,
            ErrorReply::Misdirected => 421,
            ErrorReply::Unauthorized => 401,
            ErrorReply::TooManyRequests => 429,
            ErrorReply::BadGateway => 502,
            ErrorReply::GatewayTimeout => 504,
            ErrorReply::Internal => 500,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            ErrorReply::NotFound | ErrorReply::NoRegistry => "NOT_FOUND",
            ErrorReply::BadRequest(_) => "BAD_REQUEST",
            ErrorReply::Misdirected => "MISDIRECTED_REQUEST",
            ErrorReply::Unauthorized => "UNAUTHORIZED",
            ErrorReply::TooManyRequests => "TOOMANYREQUESTS",
            ErrorReply::BadGateway => "BAD_GATEWAY",
            ErrorReply::GatewayTimeout => "GATEWAY_TIMEOUT",
            ErrorReply::Internal => "UNKNOWN",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorReply::NotFound => "no registry route for this path",
            ErrorReply::NoRegistry => "no registry is served under this host name",
            ErrorReply::BadRequest(why) => why,
            ErrorReply::Misdirected => {
                "this host name is not served on this TLS connection: connect with its own SNI name"
            }
            ErrorReply::Unauthorized => "authentication required",
            ErrorReply::TooManyRequests => "too many failed logins from this address; retry later",
            ErrorReply::BadGateway => "upstream registry unavailable",
            ErrorReply::GatewayTimeout => "upstream registry timed out",
            ErrorReply::Internal => "internal gateway error",
        }
    }

    pub fn body(self) -> Bytes {
        let mut out = String::with_capacity(64);
        out.push_str(r#"{"errors":[{"code":""#);
        out.push_str(self.code());
        out.push_str(r#"","message":""#);
        push_json_escaped(&mut out, self.message());
        out.push_str("\"}]}\n");
        Bytes::from(out)
    }

    /// Writes the reply; `v2` adds the registry API version header.
    pub async fn send(self, session: &mut Session, v2: bool) -> pingora::Result<()> {
        self.send_with(session, v2, None).await
    }

    /// Writes the reply with one extra header (a challenge, Retry-After),
    /// then reads and discards a bounded part of an unread request body,
    /// so a client still sending sees this answer rather than a reset.
    pub async fn send_with(
        self,
        session: &mut Session,
        v2: bool,
        extra: Option<(&'static str, HeaderValue)>,
    ) -> pingora::Result<()> {
        let body = self.body();
        let mut resp = ResponseHeader::build(self.status(), Some(5))?;
        if let Some((name, value)) = extra {
            resp.insert_header(name, value)?;
        }
        resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
        resp.insert_header("Content-Length", body.len())?;
        if v2 {
            resp.insert_header(API_VERSION_TITLE, API_VERSION_VALUE)?;
        }
        // Also closes the connection after this response.
        session.as_downstream_mut().write_error_response(resp, body).await?;
        drain_request_body(session).await;
        Ok(())
    }
}

/// `308 Permanent Redirect` (keeps method and body) to `location`.
pub async fn send_redirect(session: &mut Session, location: &str) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(308, Some(3))?;
    resp.insert_header("Location", location)?;
    resp.insert_header("Content-Length", 0)?;
    session
        .as_downstream_mut()
        .write_error_response(resp, Bytes::new())
        .await?;
    drain_request_body(session).await;
    Ok(())
}

/// Bounds on reading a rejected request's body before closing.
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

async fn drain_request_body(session: &mut Session) {
    let downstream = session.as_downstream_mut();
    // A client waiting for 100-continue never sends the body.
    let expects_continue = downstream
        .get_header(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue || downstream.is_body_done() {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0;
        while let Ok(Some(chunk)) = downstream.read_request_body().await {
            read += chunk.len();
            if read >= DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_registry_json() {
        assert_eq!(
            &ErrorReply::NotFound.body()[..],
            b"{\"errors\":[{\"code\":\"NOT_FOUND\",\"message\":\"no registry route for this path\"}]}\n"
        );
        let b = ErrorReply::BadRequest("quote \" back\\slash").body();
        assert!(std::str::from_utf8(&b).unwrap().contains(r#""quote \" back\\slash""#));
    }
}
