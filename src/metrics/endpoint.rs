//! The metrics listener: `/metrics`, `/healthz` and `/readyz`, nothing else.
//! It runs as its own Pingora service on its own address, so registry
//! listeners never serve it and registry auth never applies to it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_prometheus::PrometheusHttpApp;

use std::net::SocketAddr;
use std::sync::Mutex;

/// One upstream to probe.
pub struct ProbeTarget {
    pub name: String,
    pub address: SocketAddr,
    pub timeout: Duration,
}

/// What is configured now: the configuration generation and its upstreams.
pub type ProbeTargets = Box<dyn Fn() -> (u64, Vec<ProbeTarget>) + Send + Sync>;

/// Whether each upstream of the configuration in force answered the last
/// TCP probe.
pub struct Readiness {
    targets: ProbeTargets,
    /// Generation probed last, and each upstream's state.
    state: Mutex<(u64, Vec<(String, bool)>)>,
    interval: Duration,
}

impl Readiness {
    pub fn new(targets: ProbeTargets, interval: Duration) -> Arc<Readiness> {
        Arc::new(Readiness {
            targets,
            state: Mutex::new((0, Vec::new())),
            interval,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (u64, Vec<(String, bool)>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_ready(&self) -> bool {
        self.state().1.iter().any(|(_, up)| *up)
    }

    fn report(&self) -> String {
        // The generation in force now, even before the next probe.
        let (generation, _) = (self.targets)();
        let state = self.state();
        let parts: Vec<String> = (state.1.iter())
            .map(|(name, up)| format!("{name:?}:{:?}", if *up { "up" } else { "down" }))
            .collect();
        let ready = state.1.iter().any(|(_, up)| *up);
        format!(
            "{{\"ready\":{ready},\"generation\":{},\"upstreams\":{{{}}}}}\n",
            generation,
            parts.join(",")
        )
    }

    async fn probe_all(&self) {
        let (generation, targets) = (self.targets)();
        let mut results = Vec::with_capacity(targets.len());
        for t in &targets {
            // A TCP connect says the upstream is there without adding
            // requests to its logs.
            let limit = t.timeout.min(Duration::from_secs(2));
            let ok = matches!(
                tokio::time::timeout(limit, tokio::net::TcpStream::connect(t.address)).await,
                Ok(Ok(_))
            );
            results.push((t.name.clone(), ok));
        }
        let mut state = self.state();
        for ((name, ok), t) in results.iter().zip(&targets) {
            let was = state.1.iter().find(|(n, _)| n == name).map(|(_, up)| *up);
            if was != Some(*ok) {
                let what = if *ok { "reachable" } else { "unreachable" };
                log::info!("upstream {name} ({}) is {what}", t.address);
            }
            super::set_upstream_up(name, *ok);
        }
        *state = (generation, results);
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
