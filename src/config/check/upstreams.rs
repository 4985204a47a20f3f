//! Checking upstream pools: one `url` or a list of `urls` (one scheme, no
//! replica twice, no two at one address), the selection policy, and the
//! active and passive health settings. URLs were parsed and resolved while
//! the YAML was read; TLS files are loaded by `runtime`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Checker;
use crate::config::file::{GatewayFile, HealthSection, PassiveSection, Switch, UpstreamSection};
use crate::config::settings::{HealthSettings, PassiveSettings, PoolSettings};
use crate::config::values::UpstreamUrl;

impl Checker<'_> {
    /// Every upstream's pool; `default_interval`: `metrics.probe_interval`
    /// when the file sets it (the check interval before pools existed).
    pub(super) fn pools(
        &mut self,
        file: &GatewayFile,
        default_interval: Option<Duration>,
    ) -> BTreeMap<String, PoolSettings> {
        (file.upstreams.iter())
            .map(|(name, u)| (name.clone(), self.pool(name, u, default_interval)))
            .collect()
    }

    fn pool(&mut self, name: &str, u: &UpstreamSection, default_interval: Option<Duration>) -> PoolSettings {
        let key = format!("upstreams.{name}");
        let urls = self.urls(&key, u);
        let health = match &u.health {
            Some(Switch::Off) => None,
            Some(Switch::On(h)) => Some(self.health(&format!("{key}.health"), h, default_interval)),
            None => Some(self.health(&format!("{key}.health"), &HealthSection::default(), default_interval)),
        };
        let passive = match &u.passive {
            Some(Switch::Off) => None,
            Some(Switch::On(p)) => Some(self.passive(&format!("{key}.passive"), p)),
            None => Some(PassiveSettings::default()),
        };
        PoolSettings {
            urls,
            policy: u.policy,
            shared_secret: u.shared_secret,
            health,
            passive,
        }
    }

    /// The replicas, in file order. Messages point at `url` or `urls[i]`.
    fn urls(&mut self, key: &str, u: &UpstreamSection) -> Vec<UpstreamUrl> {
        let urls = match (&u.url, &u.urls) {
            (Some(url), None) => return vec![url.clone()],
            (None, Some(urls)) => urls.clone(),
            (Some(url), Some(_)) => {
                self.issue(
                    format!("{key}.urls"),
                    "`url` and `urls` together: list every replica under `urls`",
                );
                return vec![url.clone()];
            }
            (None, None) => {
                self.issue(
                    key,
                    "needs `url` (one registry) or `urls` (replicas of one registry on shared storage)",
                );
                return Vec::new();
            }
        };
        if urls.is_empty() {
            self.issue(format!("{key}.urls"), "at least one URL is required");
        }
        for (i, url) in urls.iter().enumerate().skip(1) {
            let at = format!("{key}.urls[{i}]");
            let first = &urls[0];
            if url.tls != first.tls {
                self.issue(
                    at.clone(),
                    format!(
                        "`{}` is {} but urls[0] `{}` is {}: the replicas of an upstream share one scheme and its `tls` settings",
                        url.canonical(),
                        scheme(url),
                        first.canonical(),
                        scheme(first)
                    ),
                );
            }
            if let Some(j) = urls[..i].iter().position(|e| e.canonical() == url.canonical()) {
                self.issue(at, format!("`{}` is also urls[{j}]", url.canonical()));
            } else if let Some(j) = urls[..i].iter().position(|e| e.address == url.address) {
                self.issue(
                    at,
                    format!(
                        "`{}` resolves to {} like urls[{j}] `{}`: each replica needs its own address",
                        url.canonical(),
                        url.address,
                        urls[j].canonical()
                    ),
                );
            }
        }
        urls
    }

    fn health(&mut self, key: &str, h: &HealthSection, default_interval: Option<Duration>) -> HealthSettings {
        let d = HealthSettings::default();
        let mut positive = |field: &str, v: Option<crate::config::values::Duration>, default: Duration| match v {
            Some(v) if v.0.is_zero() => {
                self.issue(format!("{key}.{field}"), "must be greater than zero: `0`");
                default
            }
            Some(v) => v.0,
            None => default,
        };
        let interval = positive("interval", h.interval, default_interval.unwrap_or(d.interval));
        // The default timeout never exceeds a shorter interval.
        let timeout = positive("timeout", h.timeout, d.timeout.min(interval));
        if timeout > interval {
            self.issue(
                format!("{key}.timeout"),
                format!("`{timeout:?}` is longer than `interval` ({interval:?}): a check would still run when the next is due"),
            );
        }
        let path = h.path.clone().unwrap_or(d.path);
        if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace) {
            self.issue(
                format!("{key}.path"),
                format!("invalid path `{path}`: expected an absolute path such as `/v2/`"),
            );
        }
        HealthSettings {
            interval,
            timeout,
            rise: self.at_least(&format!("{key}.rise"), h.rise, d.rise, 1),
            fall: self.at_least(&format!("{key}.fall"), h.fall, d.fall, 1),
            path,
        }
    }

    fn passive(&mut self, key: &str, p: &PassiveSection) -> PassiveSettings {
        let d = PassiveSettings::default();
        let ejection = match p.ejection {
            Some(e) if e.0.is_zero() => {
                self.issue(
                    format!("{key}.ejection"),
                    "must be greater than zero: `0` (`passive: off` turns ejection off)",
                );
                d.ejection
            }
            Some(e) => e.0,
            None => d.ejection,
        };
        PassiveSettings {
            failures: self.at_least(&format!("{key}.failures"), p.failures, d.failures, 1),
            ejection,
        }
    }
}

fn scheme(url: &UpstreamUrl) -> &'static str {
    if url.tls { "https" } else { "http" }
}
