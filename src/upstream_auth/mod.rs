//! The gateway's own login at upstream registries: it learns each
//! upstream's challenge (`GET /v2/`), then sends prebuilt Basic
//! credentials, or fetches bearer tokens from the realm (with its
//! credentials, or anonymously) and caches them per scope until shortly
//! before they expire. Clients' Authorization never reaches such an
//! upstream; requests with a body get their token before they are
//! forwarded, so nothing has to be replayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;

use crate::fetch::{self, PeerTimeouts, Target};
use crate::metrics::mirror as metrics;
use crate::pool::Pool;

mod challenge;
mod token;

pub use challenge::Challenge;
use token::Token;

/// Why no Authorization could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The upstream or its realm could not be reached or answered 5xx:
    /// an outage, during which cached content may be served.
    #[error("upstream {upstream}: {what}")]
    Unreachable { upstream: String, what: String },
    /// The realm refused the gateway's credentials.
    #[error("upstream {upstream}: {what}")]
    Refused { upstream: String, what: String },
}

/// A password or token read from its file or variable. Never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// At most this many scopes keep a token; past it expired ones are swept.
const MAX_TOKENS: usize = 4096;
/// A learned challenge is asked again after this long.
const CHALLENGE_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct UpstreamAuth {
    upstream: String,
    username: Option<String>,
    basic: Option<HeaderValue>,
    challenge: Mutex<Option<(Arc<Challenge>, Instant)>>,
    tokens: Mutex<HashMap<String, Token>>,
    /// One realm request at a time per upstream.
    fetching: tokio::sync::Mutex<()>,
    timeouts: PeerTimeouts,
    warned_realm: AtomicBool,
    /// For `check`: who logs in, with a password from where.
    described: String,
}

impl UpstreamAuth {
    /// `credentials`: user, password, and where the password came from.
    pub fn new(upstream: &str, credentials: Option<(String, Secret, String)>, timeouts: PeerTimeouts) -> UpstreamAuth {
        let described = match &credentials {
            Some((user, secret, from)) => format!("logs in as {user} (password from {from}, {} bytes)", secret.len()),
            None => "anonymous tokens when the upstream asks for them".to_owned(),
        };
        let basic = credentials.as_ref().map(|(user, secret, _)| {
            let raw = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", secret.0));
            let mut v = HeaderValue::try_from(format!("Basic {raw}")).expect("base64 is a valid header value");
            v.set_sensitive(true);
            v
        });
        metrics::init_upstream(upstream);
        UpstreamAuth {
            upstream: upstream.to_owned(),
            username: credentials.map(|(u, _, _)| u),
            basic,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            timeouts,
            warned_realm: AtomicBool::new(false),
            described,
        }
    }

    pub fn describe(&self) -> &str {
        &self.described
    }

    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The Authorization for a request needing `scope` (`repository:a/b:pull`,
    /// empty for `/v2/`); `None`: the upstream asks for none.
    pub async fn authorization(&self, pool: &Pool, scope: &str) -> Result<Option<HeaderValue>, AuthError> {
        let challenge = self.challenge(pool).await?;
        match &*challenge {
            Challenge::Open => Ok(None),
            Challenge::Basic => Ok(self.basic.clone()),
            Challenge::Bearer { realm, service, .. } => {
                if scope.is_empty() && self.basic.is_none() {
                    return Ok(None);
                }
                self.token(pool, realm, service.as_deref(), scope).await.map(Some)
            }
        }
    }

    /// The upstream answered 401 to a request made with `scope`'s token:
    /// forget the token. (The challenge stays: registries answer 401 for
    /// repositories that do not exist too; it is asked again hourly.)
    pub fn rejected(&self, scope: &str) {
        metrics::auth_rejected(&self.upstream);
        self.tokens.lock().expect("token lock").remove(scope);
    }

    async fn challenge(&self, pool: &Pool) -> Result<Arc<Challenge>, AuthError> {
        if let Some((c, at)) = &*self.challenge.lock().expect("challenge lock")
            && at.elapsed() < CHALLENGE_TTL
        {
            return Ok(c.clone());
        }
        let learned = Arc::new(self.ping(pool).await?);
        *self.challenge.lock().expect("challenge lock") = Some((learned.clone(), Instant::now()));
        Ok(learned)
    }

    /// `GET /v2/` on a replica: 200 is open, 401 carries the challenge.
    async fn ping(&self, pool: &Pool) -> Result<Challenge, AuthError> {
        let replica = pool.replica(pool.choose(b"", None).index);
        let unreachable = |what: String| AuthError::Unreachable {
            upstream: self.upstream.clone(),
            what,
        };
        let req = fetch::request("GET", &format!("{}/v2/", replica.path_prefix), "")
            .and_then(|mut r| {
                r.insert_header(http::header::HOST, replica.authority_header.clone())?;
                Ok(r)
            })
            .map_err(|e| unreachable(e.to_string()))?;
        let answer = fetch::send(&replica.peer(true), req)
            .await
            .map_err(|e| unreachable(format!("{} GET /v2/: {e}", replica.url)))?;
        let status = answer.status;
        let header = answer.header_str("www-authenticate").map(str::to_owned);
        let _ = answer.body(64 << 10).await;
        match (status, header) {
            (200..=299, _) => Ok(Challenge::Open),
            (401, Some(h)) => challenge::parse(&h).ok_or_else(|| AuthError::Refused {
                upstream: self.upstream.clone(),
                what: format!("unsupported challenge `{h}`"),
            }),
            (status, _) => Err(unreachable(format!("{} answered {status} to GET /v2/", replica.url))),
        }
    }

    async fn token(
        &self,
        pool: &Pool,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<HeaderValue, AuthError> {
        let now = Instant::now();
        if let Some(t) = self.tokens.lock().expect("token lock").get(scope)
            && t.fresh(now)
        {
            return Ok(t.header.clone());
        }
        // One fetch at a time; whoever waited finds the token it brought.
        let _turn = self.fetching.lock().await;
        let now = Instant::now();
        if let Some(t) = self.tokens.lock().expect("token lock").get(scope)
            && t.fresh(now)
        {
            return Ok(t.header.clone());
        }
        let fetched = self.fetch_token(pool, realm, service, scope).await;
        metrics::token_fetch(&self.upstream, fetched.is_ok());
        let token = match fetched {
            Ok(t) => t,
            Err(e) => {
                // A token that is still valid serves through a realm outage.
                if let Some(t) = self.tokens.lock().expect("token lock").get(scope)
                    && t.usable(Instant::now())
                {
                    log::warn!("{e}; using the current token until it expires");
                    return Ok(t.header.clone());
                }
                return Err(e);
            }
        };
        let header = token.header.clone();
        let mut tokens = self.tokens.lock().expect("token lock");
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, t| t.usable(now));
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(scope.to_owned(), token);
        Ok(header)
    }

    async fn fetch_token(
        &self,
        pool: &Pool,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, AuthError> {
        let fail = |what: String| AuthError::Unreachable {
            upstream: self.upstream.clone(),
            what,
        };
        let Some(target) = Target::parse(realm) else {
            return Err(AuthError::Refused {
                upstream: self.upstream.clone(),
                what: format!("token realm `{realm}` is not an http(s) URL"),
            });
        };
        // The replica on the realm's host, if any: its CA applies there too.
        let same_host = (pool.replicas().iter())
            .find(|r| Target::parse(&r.url).is_some_and(|t| t.host == target.host))
            .map(|r| r.peer(true));
        // Credentials go only to a realm on TLS or on the upstream's own host.
        let may_login = target.tls || same_host.is_some();
        if self.basic.is_some() && !may_login && !self.warned_realm.swap(true, Ordering::Relaxed) {
            log::warn!(
                "upstream {}: refusing to send credentials to token realm {realm} (plain HTTP on another host); asking anonymously",
                self.upstream
            );
        }
        let login = self.basic.as_ref().filter(|_| may_login);
        let path = token::realm_target(
            &target.path_and_query,
            service,
            scope,
            login.and(self.username.as_deref()),
        );
        let peer = target
            .peer(same_host.as_deref(), &self.timeouts)
            .await
            .map_err(|e| fail(format!("token realm {realm}: {e}")))?;
        let mut req = fetch::request("GET", &path, &target.authority()).map_err(|e| fail(e.to_string()))?;
        if let Some(b) = login {
            let _ = req.insert_header(http::header::AUTHORIZATION, b.clone());
        }
        let answer = fetch::send(&peer, req)
            .await
            .map_err(|e| fail(format!("token realm {realm}: {e}")))?;
        let status = answer.status;
        let body = answer
            .body(64 << 10)
            .await
            .map_err(|e| fail(format!("token realm {realm}: {e}")))?;
        match status {
            200 => token::parse_answer(&body, Instant::now())
                .ok_or_else(|| fail(format!("token realm {realm}: unreadable answer"))),
            401 | 403 => Err(AuthError::Refused {
                upstream: self.upstream.clone(),
                what: format!("token realm {realm} refused the gateway's credentials ({status})"),
            }),
            _ => Err(fail(format!("token realm {realm} answered {status}"))),
        }
    }
}

/// The token scope of a request (`repository:a/b:pull`); empty where none applies.
pub fn scope(method: &http::Method, repository: &str, mount_from: Option<&str>) -> String {
    if repository.is_empty() {
        return String::new();
    }
    let actions = match *method {
        http::Method::GET | http::Method::HEAD => "pull",
        http::Method::DELETE => "delete",
        _ => "pull,push",
    };
    let mut s = format!("repository:{repository}:{actions}");
    if let Some(from) = mount_from.filter(|f| !f.is_empty()) {
        s.push_str(" repository:");
        s.push_str(from);
        s.push_str(":pull");
    }
    s
}
