//! Bearer tokens from an upstream's realm: the request, the answer's
//! JSON, and when a cached token is due for refresh.

use std::time::{Duration, Instant};

use http::HeaderValue;

/// A token and when it stops being used.
#[derive(Debug, Clone)]
pub struct Token {
    pub header: HeaderValue,
    pub expires: Instant,
    /// After this, one request fetches a new token (others keep this one).
    pub refresh: Instant,
}

impl Token {
    pub fn usable(&self, now: Instant) -> bool {
        now < self.expires
    }

    pub fn fresh(&self, now: Instant) -> bool {
        now < self.refresh
    }
}

/// The token spec's default lifetime when `expires_in` is absent.
const DEFAULT_LIFETIME: u64 = 60;
/// Tokens are dropped this long before the realm says they expire
/// (clock skew, a request in flight).
const SAFETY: Duration = Duration::from_secs(5);

/// Reads a realm's answer: `token` or `access_token`, `expires_in`.
pub fn parse_answer(body: &[u8], now: Instant) -> Option<Token> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let a: Answer = serde_json::from_slice(body).ok()?;
    let token = a.token.filter(|t| !t.is_empty()).or(a.access_token)?;
    let header = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
    let lifetime = Duration::from_secs(a.expires_in.filter(|&s| s > 0).unwrap_or(DEFAULT_LIFETIME));
    let usable = lifetime.saturating_sub(SAFETY).max(Duration::from_secs(1));
    // Refreshed with a quarter of its life (at least 10 s) left.
    let margin = (lifetime / 4).max(Duration::from_secs(10)).min(usable);
    Some(Token {
        header,
        expires: now + usable,
        refresh: now + usable - margin,
    })
}

/// `?service=S&scope=X&account=U` appended to the realm's own query.
pub fn realm_target(path_and_query: &str, service: Option<&str>, scope: &str, account: Option<&str>) -> String {
    let mut t = path_and_query.to_owned();
    let mut sep = if t.contains('?') { '&' } else { '?' };
    let mut add = |k: &str, v: &str| {
        t.push(sep);
        t.push_str(k);
        t.push('=');
        t.push_str(&crate::query::escape(v));
        sep = '&';
    };
    if let Some(s) = service {
        add("service", s);
    }
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        add("scope", s);
    }
    if let Some(a) = account {
        add("account", a);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let now = Instant::now();
        let t = parse_answer(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.header, "Bearer abc");
        assert_eq!(t.expires, now + Duration::from_secs(295));
        assert_eq!(t.refresh, now + Duration::from_secs(295 - 75));
        let t = parse_answer(br#"{"access_token":"x"}"#, now).unwrap();
        assert_eq!(t.header, "Bearer x");
        assert_eq!(t.expires, now + Duration::from_secs(55));
        assert_eq!(t.refresh, now + Duration::from_secs(40));
        let t = parse_answer(br#"{"token":"","access_token":"y","expires_in":8}"#, now).unwrap();
        assert_eq!(t.header, "Bearer y");
        assert!(t.refresh <= t.expires);
        assert!(parse_answer(b"{}", now).is_none());
        assert!(parse_answer(b"not json", now).is_none());
        assert!(parse_answer(br#"{"token":"a\nb"}"#, now).is_none());
    }

    #[test]
    fn realm_targets() {
        assert_eq!(
            realm_target("/token", Some("reg"), "repository:a/b:pull", Some("me")),
            "/token?service=reg&scope=repository%3Aa%2Fb%3Apull&account=me"
        );
        assert_eq!(realm_target("/t?x=1", None, "", None), "/t?x=1");
    }
}
