//! Responses the gateway writes itself, in the registry's JSON error format
//! (`{"errors":[{"code":...,"message":...}]}`), so clients show a reason
//! instead of an empty body.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::head_checks::HeadRejection;
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
    /// A method no registry serves (TRACE, PROPFIND, ...).
    MethodNotAllowed,
    UriTooLong,
    HeadersTooLarge(&'static str),
    /// Credentials missing or wrong; sent with the realm's challenge.
    Unauthorized,
    /// Too many wrong credentials from this client; sent with Retry-After.
    TooManyRequests,
    /// An access rule refused the request (see [`send_denied`]).
    Denied,
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
            ErrorReply::MethodNotAllowed => 405,
            ErrorReply::UriTooLong => 414,
            ErrorReply::HeadersTooLarge(_) => 431,
            ErrorReply::Misdirected => 421,
            ErrorReply::Unauthorized => 401,
            ErrorReply::TooManyRequests => 429,
            ErrorReply::Denied => 403,
            ErrorReply::BadGateway => 502,
            ErrorReply::GatewayTimeout => 504,
            ErrorReply::Internal => 500,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            ErrorReply::NotFound | ErrorReply::NoRegistry => "NOT_FOUND",
            ErrorReply::BadRequest(_) => "BAD_REQUEST",
            ErrorReply::MethodNotAllowed => "UNSUPPORTED",
            ErrorReply::UriTooLong => "URI_TOO_LONG",
            ErrorReply::HeadersTooLarge(_) => "HEADERS_TOO_LARGE",
            ErrorReply::Misdirected => "MISDIRECTED_REQUEST",
            ErrorReply::Unauthorized => "UNAUTHORIZED",
            ErrorReply::TooManyRequests => "TOOMANYREQUESTS",
            ErrorReply::Denied => "DENIED",
            ErrorReply::BadGateway => "BAD_GATEWAY",
            ErrorReply::GatewayTimeout => "GATEWAY_TIMEOUT",
            ErrorReply::Internal => "UNKNOWN",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorReply::NotFound => "no registry route for this path",
            ErrorReply::NoRegistry => "no registry is served under this host name",
            ErrorReply::BadRequest(why) | ErrorReply::HeadersTooLarge(why) => why,
            ErrorReply::MethodNotAllowed => "method not served by a registry",
            ErrorReply::UriTooLong => "request line is too long",
            ErrorReply::Misdirected => {
                "this host name is not served on this TLS connection: connect with its own SNI name"
            }
            ErrorReply::Unauthorized => "authentication required",
            ErrorReply::TooManyRequests => "too many failed logins from this address; retry later",
            ErrorReply::Denied => "requested access to the resource is denied",
            ErrorReply::BadGateway => "upstream registry unavailable",
            ErrorReply::GatewayTimeout => "upstream registry timed out",
            ErrorReply::Internal => "internal gateway error",
        }
    }

    /// Requests whose framing or head cannot be trusted: nothing more is
    /// read from their connection, which closes after the answer.
    fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorReply::BadRequest(_) | ErrorReply::UriTooLong | ErrorReply::HeadersTooLarge(_)
        )
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
    /// then reads and discards what the client still sends of the request
    /// body (see [`discard_request_body`]).
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
        if self.closes_connection() {
            return session.as_downstream_mut().write_error_response(resp, body).await;
        }
        write_and_discard(session, resp, body).await
    }
}

impl From<HeadRejection> for ErrorReply {
    fn from(r: HeadRejection) -> Self {
        match r {
            HeadRejection::MethodNotAllowed => ErrorReply::MethodNotAllowed,
            HeadRejection::RequestLineTooLong => ErrorReply::UriTooLong,
            HeadRejection::HeadersTooLarge(why) => ErrorReply::HeadersTooLarge(why),
            HeadRejection::Malformed(why) => ErrorReply::BadRequest(why),
        }
    }
}

/// `308 Permanent Redirect` (keeps method and body) to `location`.
pub async fn send_redirect(session: &mut Session, location: &str) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(308, Some(3))?;
    resp.insert_header("Location", location)?;
    resp.insert_header("Content-Length", 0)?;
    write_and_discard(session, resp, Bytes::new()).await
}

/// 403 `DENIED` naming what was refused:
/// `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied: push on team-b/app",
///   "detail":{"action":"push","repository":"team-b/app"}}]}`.
/// Docker, containerd, podman and skopeo print `denied: <message>`.
pub async fn send_denied(
    session: &mut Session,
    v2: bool,
    action: &str,
    repository: &str,
    what: &str,
) -> pingora::Result<()> {
    let body = denied_body(action, repository, what);
    let mut resp = ResponseHeader::build(403, Some(4))?;
    resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
    resp.insert_header("Content-Length", body.len())?;
    if v2 {
        resp.insert_header(API_VERSION_TITLE, API_VERSION_VALUE)?;
    }
    write_and_discard(session, resp, body).await
}

fn denied_body(action: &str, repository: &str, what: &str) -> Bytes {
    let mut out = String::with_capacity(160);
    out.push_str(r#"{"errors":[{"code":"DENIED","message":""#);
    push_json_escaped(&mut out, ErrorReply::Denied.message());
    out.push_str(": ");
    push_json_escaped(&mut out, what);
    out.push_str(r#"","detail":{"action":""#);
    push_json_escaped(&mut out, action);
    out.push_str(r#"","repository":""#);
    push_json_escaped(&mut out, repository);
    out.push_str("\"}}]}\n");
    Bytes::from(out)
}

/// Writes a complete answer of the gateway's own. The connection stays open
/// for the next request when the request body was read to its end (as
/// nginx does), so a client that probes `GET /v2/`, gets the 401 and retries
/// needs no new TCP and TLS handshake.
pub(crate) async fn write_and_discard(session: &mut Session, resp: ResponseHeader, body: Bytes) -> pingora::Result<()> {
    let downstream = session.as_downstream_mut();
    if downstream.response_written().is_some() {
        return Ok(());
    }
    // Pingora marks a connection `close` when the answer goes out before the
    // body was read; this one reads it afterwards and closes only if that
    // fails. A client waiting for `100 Continue` will not send it at all.
    if !expects_continue(downstream) {
        downstream.set_close_on_response_before_downstream_finish(false);
    }
    downstream.write_response_header(Box::new(resp)).await?;
    downstream.write_response_body(body, true).await?;
    if !discard_request_body(session).await {
        session.as_downstream_mut().set_keepalive(None);
    }
    Ok(())
}

/// nginx's `lingering_time` and `lingering_timeout`: how long in all, and
/// how long between two reads, a client may go on sending a body nobody
/// will use.
const DISCARD_TOTAL: Duration = Duration::from_secs(30);
const DISCARD_IDLE: Duration = Duration::from_secs(5);

/// Reads and drops the rest of a request body the gateway answered without
/// using. Clients that write their whole body before reading the answer
/// (Python `requests`, oras-py) would otherwise get a TCP reset when the
/// connection closes with their data unread, and that reset destroys the
/// answer in flight: they never see the 401 and never retry with
/// credentials. True when the body was read to its end.
pub async fn discard_request_body(session: &mut Session) -> bool {
    let downstream = session.as_downstream_mut();
    if downstream.is_body_done() {
        return true;
    }
    // A client waiting for 100-continue may never send the body; the
    // connection cannot be reused without reading it.
    if expects_continue(downstream) {
        return false;
    }
    let drained = tokio::time::timeout(DISCARD_TOTAL, async {
        loop {
            match tokio::time::timeout(DISCARD_IDLE, downstream.read_request_body()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return true,
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    })
    .await;
    drained == Ok(true) && downstream.is_body_done()
}

fn expects_continue(downstream: &pingora::protocols::http::ServerSession) -> bool {
    downstream
        .get_header(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
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

    #[test]
    fn denied_bodies_name_action_and_repository() {
        let b = denied_body("push", "team-b/app", "push on team-b/app");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["errors"][0]["code"], "DENIED");
        assert_eq!(v["errors"][0]["detail"]["action"], "push");
        assert_eq!(v["errors"][0]["detail"]["repository"], "team-b/app");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .ends_with("denied: push on team-b/app")
        );
    }
}
