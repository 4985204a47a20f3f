//! The snapshot in force, and reloading `gateway.yaml` into a new one.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::Snapshot;
use crate::config::ConfigError;
use crate::metrics;

/// The snapshot requests start with: one atomic load per request, no lock.
pub struct Current {
    snapshot: ArcSwap<Snapshot>,
    /// One reload at a time (SIGHUP and the file watcher may race).
    reloading: Mutex<()>,
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The new snapshot is in force; `needs_restart` names settings that
    /// only a restart or upgrade applies (they keep their old values).
    Applied {
        generation: u64,
        needs_restart: Vec<String>,
    },
    /// The old snapshot keeps serving.
    Failed(ConfigError),
}

/// Source of a reload, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Reload {
    Signal,
    FileChanged,
}

impl Current {
    pub fn new(snapshot: Snapshot) -> Arc<Current> {
        metrics::config_loaded(snapshot.generation, snapshot.loaded_at);
        Arc::new(Current {
            snapshot: ArcSwap::from_pointee(snapshot),
            reloading: Mutex::new(()),
        })
    }

    /// The snapshot in force now; keep it for the whole request.
    #[inline]
    pub fn get(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Reads and builds `gateway.yaml` again and swaps it in when valid.
    /// Logs the outcome and counts it.
    pub fn reload(&self, why: Reload) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.get();
        let started = std::time::Instant::now();
        let outcome = match Snapshot::load(&old.source) {
            Err(e) => ReloadOutcome::Failed(e),
            Ok(mut new) => {
                let needs_restart = carry_over(&old, &mut new);
                new.generation = old.generation + 1;
                let generation = new.generation;
                metrics::config_loaded(generation, new.loaded_at);
                self.snapshot.store(Arc::new(new));
                ReloadOutcome::Applied {
                    generation,
                    needs_restart,
                }
            }
        };
        let file = old.source.display();
        match &outcome {
            ReloadOutcome::Applied {
                generation,
                needs_restart,
            } => {
                metrics::config_reload(true);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                log::info!("{file}: configuration reloaded ({why:?}), generation {generation} (built in {ms:.1} ms)");
                for setting in needs_restart {
                    log::warn!("{file}: {setting} changed: applied only by a restart or upgrade; the old value stays");
                }
            }
            ReloadOutcome::Failed(e) => {
                metrics::config_reload(false);
                for line in e.lines() {
                    log::error!("{line}");
                }
                log::error!(
                    "{file}: reload ({why:?}) failed; generation {} keeps serving",
                    old.generation
                );
            }
        }
        outcome
    }
}

/// Moves what only a restart can change from `old` into `new` and names
/// what differed. TLS listeners keep their resolvers (Pingora holds them),
/// which take the new certificates.
fn carry_over(old: &Snapshot, new: &mut Snapshot) -> Vec<String> {
    let mut differs = Vec::new();
    let same_sockets = old.listeners.len() == new.listeners.len()
        && old.listeners.iter().zip(&new.listeners).all(|(a, b)| {
            a.address == b.address
                && a.tls.is_some() == b.tls.is_some()
                && a.tls.as_ref().map(|t| (t.http2, t.reject_misdirected))
                    == b.tls.as_ref().map(|t| (t.http2, t.reject_misdirected))
        });
    if !same_sockets {
        differs.push("listeners (addresses, TLS on or off, http2, reject_misdirected)".to_owned());
    }
    for live in &old.listeners {
        let Some(live_tls) = &live.tls else { continue };
        let incoming = new.listeners.iter().find(|l| l.address == live.address);
        if let Some(tls) = incoming.and_then(|l| l.tls.as_ref()) {
            live_tls.certificates.adopt(&tls.certificates);
        }
    }
    new.listeners = old.listeners.clone();

    // Uploads started before this reload finish where they started.
    for registry in &mut new.registries {
        let older = old.registries.iter().find(|r| r.name == registry.name);
        if let (Some(older), Some(registry)) = (older, Arc::get_mut(registry)) {
            registry.inherit_upload_upstreams(older);
        }
    }

    let (o, n) = (&old.server, &mut new.server);
    let mut keep = |name: &str, changed: bool| {
        if changed {
            differs.push(name.to_owned());
        }
    };
    keep("server.threads", o.threads != n.threads);
    keep("server.work_stealing", o.work_stealing != n.work_stealing);
    keep(
        "server.upstream_keepalive",
        o.upstream_keepalive != n.upstream_keepalive,
    );
    keep("server.max_connections", o.max_connections != n.max_connections);
    keep("server.grace_period", o.grace_period != n.grace_period);
    keep("server.pid_file", o.pid_file != n.pid_file);
    keep("server.upgrade_sock", o.upgrade_sock != n.upgrade_sock);
    keep(
        "server.upgrade_grace_period",
        o.upgrade_grace_period != n.upgrade_grace_period,
    );
    let (ot, nt) = (&old.timeouts, &new.timeouts);
    keep("timeouts.client_header", ot.client_header != nt.client_header);
    keep("timeouts.keepalive", ot.keepalive != nt.keepalive);
    keep("metrics", old.metrics != new.metrics);
    keep("access_log", old.access_log != new.access_log);
    *n = crate::config::ServerSettings {
        trusted_proxies: n.trusted_proxies.clone(),
        watch_config: n.watch_config,
        ..o.clone()
    };
    new.timeouts.client_header = old.timeouts.client_header;
    new.timeouts.keepalive = old.timeouts.keepalive;
    new.metrics = old.metrics.clone();
    new.access_log = old.access_log.clone();
    differs
}
