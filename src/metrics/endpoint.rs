//! The metrics listener: `/metrics`, `/healthz` and `/readyz`, nothing else.
//! It runs as its own Pingora service on its own address, so registry
//! listeners never serve it and registry auth never applies to it.
//!
//! Readiness is read from the pools of the configuration in force when
//! `/readyz` is asked; their health service (`pool::HealthService`) does
//! the checking, so a request here never waits on an upstream.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::PrometheusHttpApp;

/// The state `/readyz` reports: per virtual registry, per upstream and per
/// replica, whether it is up.
#[derive(Debug, Default)]
pub struct ReadyReport {
    pub generation: u64,
    /// A registry is up while its `/v2` upstream has a replica up.
    pub registries: Vec<(String, bool)>,
    pub upstreams: Vec<(String, bool)>,
    /// By replica URL (a URL in several upstreams is listed once).
    pub replicas: Vec<(String, bool)>,
}

impl ReadyReport {
    /// Every virtual registry can serve.
    pub fn ready(&self) -> bool {
        !self.registries.is_empty() && self.registries.iter().all(|(_, up)| *up)
    }

    /// `{"ready":true,"generation":3,"registries":{"main":"up"},
    /// "upstreams":{"registry":"up"},"replicas":{"http://10.0.0.5:5000":"up"}}`
    pub fn to_json(&self) -> String {
        let map = |items: &[(String, bool)]| {
            let parts: Vec<String> = items
                .iter()
                .map(|(name, up)| format!("{name:?}:{:?}", if *up { "up" } else { "down" }))
                .collect();
            format!("{{{}}}", parts.join(","))
        };
        format!(
            "{{\"ready\":{},\"generation\":{},\"registries\":{},\"upstreams\":{},\"replicas\":{}}}\n",
            self.ready(),
            self.generation,
            map(&self.registries),
            map(&self.upstreams),
            map(&self.replicas)
        )
    }
}

/// Builds the report from the configuration in force.
pub type ReadySource = Box<dyn Fn() -> ReadyReport + Send + Sync>;

pub struct Readiness {
    source: ReadySource,
}

impl Readiness {
    pub fn new(source: ReadySource) -> Arc<Readiness> {
        Arc::new(Readiness { source })
    }

    pub fn report(&self) -> ReadyReport {
        (self.source)()
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
                let report = self.readiness.report();
                let status = match report.ready() {
                    true => StatusCode::OK,
                    false => StatusCode::SERVICE_UNAVAILABLE,
                };
                text(status, report.to_json(), "application/json")
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: this listener serves /metrics, /healthz and /readyz\n",
                "text/plain",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_registry_has_an_upstream_up() {
        let mut r = ReadyReport {
            generation: 2,
            registries: vec![("main".into(), true), ("mirror".into(), false)],
            upstreams: vec![("registry".into(), true), ("mirror".into(), false)],
            replicas: vec![("http://127.0.0.1:5001".into(), true)],
        };
        assert!(!r.ready());
        assert!(r.to_json().contains("\"mirror\":\"down\""), "{}", r.to_json());
        r.registries[1].1 = true;
        assert!(r.ready());
        assert!(r.to_json().starts_with("{\"ready\":true,\"generation\":2,"));
        assert!(!ReadyReport::default().ready(), "no registries: nothing to serve");
    }
}
