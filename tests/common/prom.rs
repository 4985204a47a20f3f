//! Reading the gateway's Prometheus metrics.

use std::net::SocketAddr;

use super::http::Request;

/// `GET /metrics` on the metrics listener: the exposition text.
pub fn scrape(addr: SocketAddr) -> String {
    let rsp = Request::get("/metrics").send(addr);
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert!(
        rsp.header("content-type").is_some_and(|t| t.starts_with("text/plain")),
        "{}",
        rsp.describe()
    );
    rsp.body_text()
}

/// The value of the sample `name{...}` whose labels include all of `labels`,
/// summed over the samples that match; 0 when none does.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
