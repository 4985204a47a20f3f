//! A real Prometheus server (Debian package `prometheus`) scraping one
//! target, queried through its HTTP API.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::http::Request;
use super::{free_addr, require_tool, says_address_in_use, tail, wait_until};

pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
    log_path: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with its own TSDB in a temporary directory,
    /// scraping `target`'s `/metrics` every second, and waits until
    /// `/-/ready` answers 200. A listen port taken in the meantime is
    /// retried on a new one.
    pub fn start(target: SocketAddr) -> Prometheus {
        require_tool(PROMETHEUS_BIN, "prometheus");
        for _ in 0..5 {
            if let Some(prometheus) = Prometheus::spawn(target) {
                return prometheus;
            }
        }
        panic!("prometheus: 5 free ports in a row were taken before it could listen");
    }

    fn spawn(target: SocketAddr) -> Option<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .expect("temp dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: registry-gateway\n    static_configs:\n      \
             - targets: [\"{target}\"]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).unwrap();
        let addr = free_addr();
        let log_path = dir.path().join("prometheus.log");
        let log = File::create(&log_path).unwrap();
        let child = Command::new(PROMETHEUS_BIN)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {PROMETHEUS_BIN}: {e}"));
        let mut prometheus = Prometheus {
            child,
            dir,
            addr,
            log_path,
        };
        let mut port_taken = false;
        let ready = wait_until(Duration::from_secs(30), || {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                port_taken = says_address_in_use(&prometheus.log());
                assert!(
                    port_taken,
                    "prometheus exited early ({status}); log:\n{}",
                    prometheus.log()
                );
                return true;
            }
            matches!(Request::get("/-/ready").try_send(addr), Ok(r) if r.status == 200)
        });
        assert!(
            ready,
            "prometheus on {addr} not ready within 30 s; log:\n{}",
            tail(&prometheus.log(), 4000)
        );
        (!port_taken).then_some(prometheus)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything Prometheus printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET /api/v1/<path>?<params>`: the JSON answer, whatever its status
    /// (`"success"` or `"error"` with `errorType` and `error`).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect();
        let rsp = Request::get(&format!("/api/v1/{path}?{}", query.join("&"))).send(self.addr);
        serde_json::from_slice(&rsp.body)
            .unwrap_or_else(|e| panic!("/api/v1/{path} answered no JSON ({e}):\n{}", rsp.describe()))
    }

    /// An instant query evaluated at Unix time `at`.
    pub fn query(&self, expr: &str, at: f64) -> serde_json::Value {
        self.api("query", &[("query", expr), ("time", &format!("{at:.3}"))])
    }

    /// How many series named `name` Prometheus holds between `start` and
    /// `end` (Unix times).
    pub fn series_count(&self, name: &str, start: f64, end: f64) -> usize {
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        let v = self.api("series", &[("match[]", name), ("start", &start), ("end", &end)]);
        assert_eq!(v["status"], "success", "/api/v1/series?match[]={name}: {v}");
        v["data"].as_array().map_or(0, Vec::len)
    }

    /// The values of label `label` on series matching `selector`.
    pub fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let v = self.api(&format!("label/{label}/values"), &[("match[]", selector)]);
        assert_eq!(v["status"], "success", "/api/v1/label/{label}/values: {v}");
        let values = v["data"].as_array().cloned().unwrap_or_default();
        values.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()
    }

    /// The scalar value of an instant query answering one sample (NaN when
    /// it answers none).
    pub fn value(&self, expr: &str, at: f64) -> f64 {
        let v = self.query(expr, at);
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Up to four `{labels} value` of an instant query's vector result.
pub fn describe_result(result: &serde_json::Value) -> String {
    let Some(series) = result.as_array() else {
        return result.to_string();
    };
    let shown: Vec<String> = series
        .iter()
        .take(4)
        .map(|s| {
            let labels = s["metric"].as_object().into_iter().flatten();
            let labels: Vec<String> = labels.map(|(k, v)| format!("{k}={v}")).collect();
            format!("{{{}}} {}", labels.join(","), s["value"][1].as_str().unwrap_or("?"))
        })
        .collect();
    let more = series.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    format!("{}{more}", shown.join("  "))
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
