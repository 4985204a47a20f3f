//! htpasswd basic auth: which requests need credentials, and checking them
//! so that a client resending the same credentials costs almost nothing.

pub mod cache;
pub mod hash;
pub mod htpasswd;
pub mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, Method};
use tokio::sync::{OnceCell, Semaphore};

use cache::{CredentialCache, CredentialKey};
pub use htpasswd::HtpasswdFile;
use throttle::FailureThrottle;

/// Which requests of a route must carry credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScope {
    All,
    /// Anonymous GET/HEAD, credentials for everything else (nginx's
    /// `limit_except GET HEAD { auth_basic ...; }`).
    Writes,
}

/// One compiled `auth` block.
#[derive(Debug)]
pub struct AuthPolicy {
    pub realm: String,
    /// `Basic realm="..."`, built once.
    pub challenge: HeaderValue,
    pub scope: AuthScope,
    pub users: Arc<HtpasswdFile>,
    /// Distinguishes user tables in the credential cache.
    pub table_id: u64,
}

impl AuthPolicy {
    pub fn new(realm: &str, scope: AuthScope, users: Arc<HtpasswdFile>, table_id: u64) -> Self {
        let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{escaped}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"registry\""));
        AuthPolicy {
            realm: realm.to_owned(),
            challenge,
            scope,
            users,
            table_id,
        }
    }

    pub fn applies_to(&self, method: &Method) -> bool {
        match self.scope {
            AuthScope::All => true,
            AuthScope::Writes => !(method == Method::GET || method == Method::HEAD),
        }
    }
}

/// The result of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Allowed {
        user: Arc<str>,
    },
    /// No credentials: answer 401 with the challenge.
    Missing,
    /// Credentials present but malformed or wrong: 401.
    Rejected,
    /// Too many wrong credentials from this client: 429.
    Throttled {
        retry_after: Duration,
    },
}

pub use crate::config::AuthLimits;

/// Longest Authorization header considered; longer ones are rejected
/// without decoding.
const MAX_AUTHORIZATION_LEN: usize = 4096;

type Verdict = Option<Arc<str>>;

/// Process-wide credential checking shared by every auth policy.
#[derive(Debug)]
pub struct Authenticator {
    cache: CredentialCache,
    throttle: FailureThrottle,
    /// Bounds concurrent slow verifications so guesses cannot take every core.
    verify_slots: Semaphore,
    /// Verifications under way, so a client's parallel requests with the
    /// same new credentials wait for one run instead of each starting one.
    pending: Mutex<HashMap<CredentialKey, Arc<OnceCell<Verdict>>>>,
}

impl Authenticator {
    pub fn new(limits: AuthLimits) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            cache: CredentialCache::new(limits.cache_ttl, limits.cache_entries),
            throttle: FailureThrottle::new(limits.max_failures, limits.throttle_window),
            verify_slots: Semaphore::new(cores.saturating_sub(1).max(1)),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub async fn check(
        &self,
        policy: &AuthPolicy,
        authorization: Option<&HeaderValue>,
        client: Option<IpAddr>,
    ) -> AuthOutcome {
        let Some(header) = authorization.filter(|h| !is_empty_basic(h.as_bytes())) else {
            return AuthOutcome::Missing;
        };
        let generation = policy.users.generation();
        let key = self.cache.key(policy.table_id, header.as_bytes());
        if let Some(user) = self.cache.get(&key, generation) {
            crate::metrics::auth_cache(true);
            return AuthOutcome::Allowed { user };
        }
        crate::metrics::auth_cache(false);
        if let Some(retry_after) = client.and_then(|ip| self.throttle.blocked_for(ip)) {
            return AuthOutcome::Throttled { retry_after };
        }
        let verdict = match parse_basic(header.as_bytes()) {
            Some((user, password)) => self.verify_once(policy, key, user, password, generation).await,
            None => None,
        };
        match verdict {
            Some(user) => AuthOutcome::Allowed { user },
            None => {
                if let Some(ip) = client {
                    self.throttle.record_failure(ip);
                }
                AuthOutcome::Rejected
            }
        }
    }

    async fn verify_once(
        &self,
        policy: &AuthPolicy,
        key: CredentialKey,
        user: String,
        password: Vec<u8>,
        generation: u64,
    ) -> Verdict {
        let cell = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.entry(key).or_default().clone()
        };
        let verdict = cell
            .get_or_init(|| async {
                let Ok(_slot) = self.verify_slots.acquire().await else {
                    return None;
                };
                let table = policy.users.table();
                let ok = tokio::task::spawn_blocking(move || {
                    let ok = table.verify(&user, &password);
                    ok.then(|| Arc::<str>::from(user))
                })
                .await
                .unwrap_or(None);
                if let Some(user) = &ok {
                    self.cache.insert(key, user.clone(), generation);
                }
                ok
            })
            .await
            .clone();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        verdict
    }
}

/// `Basic base64(user:password)` → (user, password). `None` for any other
/// scheme, bad base64, non-UTF-8 user, missing colon or an oversized value.
pub fn parse_basic(value: &[u8]) -> Option<(String, Vec<u8>)> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_owned(), decoded[colon + 1..].to_vec()))
}

/// `Basic Og==` (`:`: no user, no password), what containers/image clients
/// (skopeo, podman, buildah, CRI-O) send after a Basic challenge when they
/// have no credentials. It is no credentials, not wrong ones: not a
/// failure, never throttled.
pub fn is_empty_basic(value: &[u8]) -> bool {
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    // `:` has one padded base64 form; compared as bytes, nothing decoded
    // on the way of every request.
    scheme.eq_ignore_ascii_case(b"basic") && rest.trim_ascii() == b"Og=="
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_an_empty_user_and_password_is_empty_basic() {
        for v in ["Basic Og==", "basic  Og== ", "BASIC Og=="] {
            assert!(super::is_empty_basic(v.as_bytes()), "{v}");
        }
        for v in ["Basic Og", "Basic YTo=", "Bearer Og==", "Basic", "Og=="] {
            assert!(!super::is_empty_basic(v.as_bytes()), "{v}");
        }
    }

    use super::*;

    #[test]
    fn basic_credentials_parse_strictly() {
        let enc = |s: &str| format!("Basic {}", STANDARD.encode(s));
        assert_eq!(
            parse_basic(enc("u:p:w").as_bytes()),
            Some(("u".into(), b"p:w".to_vec()))
        );
        assert_eq!(
            parse_basic(format!("basic  {}", STANDARD.encode("u:")).as_bytes()),
            Some(("u".into(), vec![]))
        );
        assert_eq!(parse_basic(enc("nocolon").as_bytes()), None);
        assert_eq!(parse_basic(enc(":p").as_bytes()), None);
        assert_eq!(parse_basic(b"Basic !!!notbase64"), None);
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic"), None);
        assert_eq!(parse_basic(b""), None);
        let bad_utf8 = format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'p']));
        assert_eq!(parse_basic(bad_utf8.as_bytes()), None);
        let huge = enc(&format!("u:{}", "p".repeat(5000)));
        assert_eq!(parse_basic(huge.as_bytes()), None);
    }

    fn policy(dir: &std::path::Path, scope: AuthScope) -> AuthPolicy {
        let path = dir.join("htpasswd");
        std::fs::write(&path, "alice:{PLAIN}secret\n").unwrap();
        AuthPolicy::new("Reg \"1\"", scope, Arc::new(HtpasswdFile::load(&path).unwrap()), 1)
    }

    #[tokio::test]
    async fn checks_cache_and_throttle() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path(), AuthScope::All);
        assert_eq!(p.challenge, "Basic realm=\"Reg \\\"1\\\"\"");
        let auth = Authenticator::new(AuthLimits {
            max_failures: 2,
            ..AuthLimits::default()
        });
        let ip: Option<IpAddr> = Some("10.0.0.9".parse().unwrap());
        let good = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("alice:secret"))).unwrap();
        let bad = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("alice:nope"))).unwrap();
        assert_eq!(auth.check(&p, None, ip).await, AuthOutcome::Missing);
        assert_eq!(
            auth.check(&p, Some(&good), ip).await,
            AuthOutcome::Allowed { user: "alice".into() }
        );
        assert_eq!(auth.cache.len(), 1);
        assert_eq!(auth.check(&p, Some(&bad), ip).await, AuthOutcome::Rejected);
        assert_eq!(auth.check(&p, Some(&bad), ip).await, AuthOutcome::Rejected);
        assert!(matches!(
            auth.check(&p, Some(&bad), ip).await,
            AuthOutcome::Throttled { .. }
        ));
        // A cached login still works from a throttled address.
        assert_eq!(
            auth.check(&p, Some(&good), ip).await,
            AuthOutcome::Allowed { user: "alice".into() }
        );
        assert_eq!(
            auth.check(&p, None, ip).await,
            AuthOutcome::Missing,
            "no credentials is not throttled"
        );
    }

    #[test]
    fn writes_scope_lets_reads_through() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path(), AuthScope::Writes);
        assert!(!p.applies_to(&Method::GET));
        assert!(!p.applies_to(&Method::HEAD));
        assert!(p.applies_to(&Method::PUT));
        assert!(p.applies_to(&Method::PATCH));
        assert!(p.applies_to(&Method::POST));
        assert!(p.applies_to(&Method::DELETE));
    }
}
