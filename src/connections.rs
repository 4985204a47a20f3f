//! Client connections before Pingora's HTTP layer sees them: a cap on how
//! many are open, and a deadline for each request head.
//!
//! Pingora times out each read of a head on its own, so a head trickled a
//! byte at a time is held forever, and it accepts connections until the
//! descriptors run out. [`GuardedApp`] wraps the proxy app: it refuses
//! connections past `server.max_connections` with a 503, and runs the
//! HTTP/1 keep-alive loop itself (as Pingora's does). On plain TCP it reads
//! each head before Pingora's session exists ([`head_prefetch`]), within
//! `timeouts.keepalive` of silence and `timeouts.client_header` for the
//! head; elsewhere a timer closes the connection when the head is not
//! complete by `timeouts.client_header`. HTTP/2 connections go to
//! Pingora's loop unchanged (the h2 layer bounds its own frames).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::prelude::fast_timeout::fast_sleep;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::head_prefetch::{self, Budget, Prefetch};
use crate::metrics;

tokio::task_local! {
    /// Set by the proxy once a request head has been read in full.
    static HEAD_READ: Arc<AtomicBool>;
}

/// Called by the proxy's first phase: the current request's head is in.
pub fn head_complete() {
    let _ = HEAD_READ.try_with(|done| done.store(true, Ordering::Relaxed));
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// The whole head of a connection's first request, from its start.
    pub client_header: Duration,
    /// Added for later requests: the idle wait before their first byte.
    pub keepalive: Duration,
}

pub struct GuardedApp<A> {
    app: Arc<A>,
    limits: ConnectionLimits,
    open: AtomicUsize,
}

impl<A> GuardedApp<A> {
    pub fn new(app: A, limits: ConnectionLimits) -> Self {
        GuardedApp {
            app: Arc::new(app),
            limits,
            open: AtomicUsize::new(0),
        }
    }

    fn admit(&self) -> Option<OpenSlot<'_, A>> {
        let max = self.limits.max_connections;
        if self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            metrics::connection_refused();
            return None;
        }
        metrics::connection_opened();
        Some(OpenSlot(self))
    }
}

/// One counted open connection; uncounted on drop.
struct OpenSlot<'a, A>(&'a GuardedApp<A>);

impl<A> Drop for OpenSlot<'_, A> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        metrics::connection_closed();
    }
}

/// What a client over the limit reads before the connection closes.
static REFUSAL: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"too many open connections to the gateway"}]}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n\
         Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}\n",
        body.len() + 1
    )
    .into_bytes()
});

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let Some(_slot) = self.admit() else {
            if !h2 {
                let _ = stream.write_all(&REFUSAL).await;
                let _ = stream.flush().await;
            }
            return None;
        };
        if h2 {
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        let head_read = Arc::new(AtomicBool::new(false));
        let (mut stream, mut settings) = (stream, None);
        let mut first = true;
        loop {
            // Plain TCP: wait for the head before Pingora allocates for it.
            // First request: nothing within `client_header` counts as a
            // head timeout; later ones: `keepalive` of silence just closes.
            let mut deadline = Some(self.limits.client_header);
            let pipelined = settings.as_ref().is_some_and(head_prefetch::carries_pipelined_bytes);
            if !pipelined && head_prefetch::applies(&stream) {
                let budget = if first {
                    Budget::Whole(self.limits.client_header)
                } else {
                    Budget::AfterIdle {
                        idle: self.limits.keepalive,
                        head: self.limits.client_header,
                    }
                };
                stream = match head_prefetch::read_head(stream, budget).await {
                    Prefetch::Ready { stream, complete } => {
                        // Pingora will not wait for head bytes: no timer needed.
                        if complete {
                            deadline = None;
                        }
                        stream
                    }
                    Prefetch::Closed => return None,
                    Prefetch::Idle if !first => return None,
                    Prefetch::Idle | Prefetch::Unfinished => {
                        metrics::client_header_timeout();
                        log::debug!("request head not complete in time: closing the connection");
                        return None;
                    }
                };
            } else if !first {
                deadline = Some(self.limits.keepalive + self.limits.client_header);
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                // As Pingora's own loop: the first request may take 60 s per read.
                None => session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) }),
            }
            let request = self.app.process_new_http(session, shutdown);
            let reused = match deadline {
                None => request.await,
                Some(deadline) => {
                    head_read.store(false, Ordering::Relaxed);
                    let mut request = std::pin::pin!(HEAD_READ.scope(head_read.clone(), request));
                    tokio::select! {
                        biased;
                        reused = &mut request => reused,
                        () = fast_sleep(deadline) => {
                            if !head_read.load(Ordering::Relaxed) {
                                metrics::client_header_timeout();
                                log::debug!("request head not complete within {deadline:?}: closing the connection");
                                return None;
                            }
                            request.await
                        }
                    }
                }
            };
            (stream, settings) = reused?.consume();
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

/// The default connection cap: half the descriptor limit (each client
/// connection may hold an upstream one), at most 10,000.
pub fn default_max_connections() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    (soft.saturating_sub(64) / 2).clamp(16, 10_000)
}
