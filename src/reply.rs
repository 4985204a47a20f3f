//! Responses the gateway writes itself, in the registry's JSON error format
//! (`{"errors":[{"code":...,"message":...}]}`), so clients show a reason
//! instead of an empty body.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::rewrite::{API_VERSION_TITLE, API_VERSION_VALUE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// No route for the path, or a malformed path.
    NotFound,
    BadRequest(&'static str),
    /// The upstream refused, was unreachable or broke the exchange.
    BadGateway,
    GatewayTimeout,
    Internal,
}

impl ErrorReply {
    pub fn status(self) -> u16 {
        match self {
            ErrorReply::NotFound => 404,
            ErrorReply::BadRequest(_) => 400,
            ErrorReply::BadGateway => 502,
            ErrorReply::GatewayTimeout => 504,
            ErrorReply::Internal => 500,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            ErrorReply::NotFound => "NOT_FOUND",
            ErrorReply::BadRequest(_) => "BAD_REQUEST",
            ErrorReply::BadGateway => "BAD_GATEWAY",
            ErrorReply::GatewayTimeout => "GATEWAY_TIMEOUT",
            ErrorReply::Internal => "UNKNOWN",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorReply::NotFound => "no registry route for this path",
            ErrorReply::BadRequest(why) => why,
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
        let body = self.body();
        let mut resp = ResponseHeader::build(self.status(), Some(3))?;
        resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
        resp.insert_header("Content-Length", body.len())?;
        if v2 {
            resp.insert_header(API_VERSION_TITLE, API_VERSION_VALUE)?;
        }
        // Also closes the connection: the request body may not have been read.
        session
            .as_downstream_mut()
            .write_error_response(resp, body)
            .await
    }
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
        assert!(
            std::str::from_utf8(&b)
                .unwrap()
                .contains(r#""quote \" back\\slash""#)
        );
    }
}
