//! The metrics listener: `/metrics`, `/healthz` and `/readyz`, nothing else.
//! It runs as its own Pingora service on its own address, so registry
//! listeners never serve it and registry auth never applies to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_prometheus::PrometheusHttpApp;

use crate::upstream::Upstream;

/// Whether each upstream answered the last TCP probe.
pub struct Readiness {
    upstreams: Vec<(Arc<Upstream>, AtomicBool)>,
    interval: Duration,
}

impl Readiness {
    pub fn new(upstreams: &[Arc<Upstream>], interval: Duration) -> Arc<Readiness> {
        Arc::new(Readiness {
            upstreams: upstreams.iter().map(|u| (u.clone(), AtomicBool::new(false))).collect(),
            interval,
        })
    }

    pub fn is_ready(&self) -> bool {
        self.upstreams.iter().any(|(_, up)| up.load(Ordering::Relaxed))
    }

    fn report(&self) -> String {
        let parts: Vec<String> = self
            .upstreams
            .iter()
            .map(|(u, up)| {
                let state = if up.load(Ordering::Relaxed) { "up" } else { "down" };
                format!("{:?}:{:?}", u.name, state)
            })
            .collect();
        format!(
            "{{\"ready\":{},\"upstreams\":{{{}}}}}\n",
            self.is_ready(),
            parts.join(",")
        )
    }

    async fn probe_all(&self) {
        for (u, up) in &self.upstreams {
            // A TCP connect says the upstream is there without adding
            // requests to its logs.
            let limit = u.connect_timeout().min(Duration::from_secs(2));
            let ok = matches!(
                tokio::time::timeout(limit, tokio::net::TcpStream::connect(u.address)).await,
                Ok(Ok(_))
            );
            let was = up.swap(ok, Ordering::Relaxed);
            if was != ok {
                let state = if ok { "reachable" } else { "unreachable" };
                log::info!("upstream {} ({}) is {state}", u.name, u.address);
            }
            u.metrics.set_up(ok);
        }
    }
}

/// Probes upstreams in the background; `/readyz` only reads the result.
pub struct ReadinessProbe(pub Arc<Readiness>);

#[async_trait]
impl BackgroundService for ReadinessProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.0.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.0.probe_all().await,
            }
        }
    }
}

pub struct MetricsApp {
    pub readiness: Arc<Readiness>,
}

fn text(status: StatusCode, body: impl Into<Vec<u8>>, content_type: &str) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != Method::GET && req.method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n", "text/plain");
        }
        match req.uri.path() {
            "/metrics" => PrometheusHttpApp.response(session).await,
            "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
            "/readyz" => {
                let status = match self.readiness.is_ready() {
                    true => StatusCode::OK,
                    false => StatusCode::SERVICE_UNAVAILABLE,
                };
                text(status, self.readiness.report(), "application/json")
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: this listener serves /metrics, /healthz and /readyz\n",
                "text/plain",
            ),
        }
    }
}
