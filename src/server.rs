//! Builds the Pingora server from our own configuration and runs it, with
//! signal handling an operator coming from nginx expects:
//!
//! | signal  | registry-gateway                                   | nginx                 |
//! |---------|----------------------------------------------------|-----------------------|
//! | SIGTERM | stop accepting, drain in-flight up to grace period | fast shutdown         |
//! | SIGQUIT | same as SIGTERM                                    | graceful shutdown     |
//! | SIGINT  | exit at once                                       | fast shutdown         |
//! | SIGHUP  | reload gateway.yaml, htpasswd files, certificates  | reload configuration  |
//! | SIGUSR1 | reopen the access log file                         | reopen log files      |
//! | SIGUSR2 | start the binary anew, hand it the listening       | start new binary      |
//! |         | sockets, drain up to the upgrade grace period      |                       |

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tokio::signal::unix::{SignalKind, signal};

use crate::access_log;
use crate::connections::{self, ConnectionLimits, GuardedApp};
use crate::listeners;
use crate::metrics::IN_FLIGHT;
use crate::metrics::{
    self,
    endpoint::{MetricsApp, Readiness},
};
use crate::pool::HealthService;
use crate::proxy::RegistryProxy;
use crate::reload::{self, FileStamp};
use crate::runtime::{Current, Reload, ReloadOutcome, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{file}: listeners[{index}].address: cannot listen on `{address}`: {source}")]
    Bind {
        file: String,
        index: usize,
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: metrics.address: cannot listen on `{address}`: {source}")]
    MetricsBind {
        file: String,
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: access_log.output: {source}")]
    AccessLog {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the gateway until a shutdown signal; returns when it has stopped.
/// `upgrade`: take the listening sockets over from the running process
/// (started by its SIGUSR2) instead of binding them.
pub fn run(config: Snapshot, upgrade: bool) -> Result<(), StartError> {
    // Pingora panics when a listener cannot bind; find out first and say why.
    let to_bind = if upgrade { &[][..] } else { &config.listeners[..] };
    for (index, l) in to_bind.iter().enumerate() {
        TcpListener::bind(l.address).map_err(|source| StartError::Bind {
            file: config.source.display().to_string(),
            index,
            address: l.address,
            source,
        })?;
    }
    if let Some(m) = config.metrics.as_ref().filter(|_| !upgrade) {
        TcpListener::bind(m.address).map_err(|source| StartError::MetricsBind {
            file: config.source.display().to_string(),
            address: m.address,
            source,
        })?;
    }
    access_log::init(config.access_log.as_ref()).map_err(|source| StartError::AccessLog {
        file: config.source.display().to_string(),
        source,
    })?;
    metrics::init(config.tls_stats());
    let current = Current::new(config);
    let sampled = current.clone();
    metrics::init_pools(Box::new(move || sampled.get().replica_samples()));
    watch_files(current.clone());
    let on_hup = current.clone();
    install_sighup_handler(move || {
        log::info!("SIGHUP received: reloading {}", on_hup.get().source.display());
        // Lines of requests served so far are written before the new
        // configuration's first.
        access_log::flush();
        if let ReloadOutcome::Failed(_) = on_hup.reload(Reload::Signal) {
            // The htpasswd files and certificates of the configuration in
            // force are still re-read, as before configuration reloads.
            reload::reload_all(&on_hup.get().reloadable(), true);
        }
    })?;

    let config = current.get();
    let grace = config.server.grace_period;
    let upgrade_grace = config.server.upgrade_grace_period;
    let conf = ServerConf {
        upgrade_sock: config.server.upgrade_sock.display().to_string(),
        upgrade_sock_connect_accept_max_retries: Some(30),
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        upstream_keepalive_pool_size: config.server.upstream_keepalive,
        // Pingora sleeps the whole grace period; our drain watcher exits
        // early once nothing is in flight.
        // The longer of the two; the drain watcher ends the shorter one.
        grace_period_seconds: Some(grace.max(upgrade_grace).as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        // Pingora's timer wheel keeps a cancelled timer until its deadline,
        // one entry per 10 ms of deadlines and thread: with 900 s idle
        // timeouts RSS grew for 15 minutes under load (soak: +13 MiB).
        // Longer timeouts go to Tokio's timer, which frees them on cancel.
        fast_timeout_to_tokio_threshold_seconds: Some(FAST_TIMER_LIMIT.as_secs()),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    if upgrade {
        log::info!("took over the listening sockets from the old process");
    }
    let pid_file = config.server.pid_file.clone();
    if let Some(path) = &pid_file {
        crate::signals::write_pid_file(path);
    }

    let mut app = pingora::proxy::http_proxy(&server.configuration, RegistryProxy::new(current.clone()));
    app.h2_options = Some(listeners::h2_options());
    let limits = ConnectionLimits {
        max_connections: config
            .server
            .max_connections
            .unwrap_or_else(connections::default_max_connections),
        client_header: config.timeouts.client_header,
        keepalive: config.timeouts.keepalive,
    };
    log::info!(
        "client connections: at most {} open, request heads within {:?}",
        limits.max_connections,
        limits.client_header
    );
    let mut proxy = Service::new("registry-gateway".to_owned(), GuardedApp::new(app, limits));
    listeners::add_all(&mut proxy, &config.listeners);
    log::info!("virtual registries: {}", describe_registries(&config));
    for w in &config.warnings {
        log::warn!("{w}");
    }
    server.add_service(proxy);
    // Checks run whether or not metrics are served: selection needs them.
    let checked = current.clone();
    server.add_service(background_service(
        "upstream health",
        HealthService::new(Box::new(move || checked.get().health_groups())),
    ));
    if let Some(m) = &config.metrics {
        let reported = current.clone();
        let readiness = Readiness::new(Box::new(move || reported.get().ready_report()));
        let mut endpoint = Service::new("metrics".to_owned(), MetricsApp { readiness });
        endpoint.add_tcp(&m.address.to_string());
        server.add_service(endpoint);
        log::info!("metrics: http://{}/metrics (/healthz, /readyz)", m.address);
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(SignalWatch {
            grace,
            upgrade_grace,
            pid_file: pid_file.clone(),
        }),
    });
    if let Some(path) = &pid_file {
        crate::signals::remove_pid_file(path);
    }
    log::info!("stopped");
    Ok(())
}

fn describe_registries(config: &Snapshot) -> String {
    let all: Vec<String> = config
        .registries
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let up = &r.routes.v2.upstream;
            format!(
                "{} [{}] -> {} ({})",
                r.name,
                config.router.rule(i).describe(),
                up.name,
                up.describe()
            )
        })
        .collect();
    all.join("; ")
}

/// Timeouts above this use Tokio's timer (see `run`); at most this long
/// of 10 ms buckets stays in Pingora's wheel per thread.
const FAST_TIMER_LIMIT: Duration = Duration::from_secs(30);

/// How often watched files are checked for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

/// Re-reads changed htpasswd files and certificates of the configuration in
/// force, and `gateway.yaml` itself when `server.watch_config` is on.
fn watch_files(current: Arc<Current>) {
    let source = current.get().source.clone();
    let last = std::sync::Mutex::new(FileStamp::of(&source).ok());
    reload::watch(FILE_POLL, move || {
        let snapshot = current.get();
        if snapshot.server.watch_config {
            let now = FileStamp::of(&source).ok();
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if now.is_some() && now != *last {
                *last = now;
                access_log::flush();
                current.reload(Reload::FileChanged);
                return;
            }
        }
        reload::reload_all(&snapshot.reloadable(), false);
    });
}

/// Pingora leaves SIGHUP at its default action, which kills the process.
fn install_sighup_handler(on_hup: impl Fn() + Send + 'static) -> Result<(), StartError> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]).map_err(StartError::Signal)?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                on_hup();
            }
        })
        .map_err(StartError::Signal)?;
    Ok(())
}

/// After handing its sockets over, Pingora keeps accepting this long.
const HANDOVER: Duration = Duration::from_millis(5_500);

struct SignalWatch {
    grace: Duration,
    upgrade_grace: Duration,
    pid_file: Option<std::path::PathBuf>,
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
        let mut usr2 = signal(SignalKind::user_defined2()).expect("SIGUSR2 handler");
        loop {
            tokio::select! {
                _ = int.recv() => {
                    log::info!("SIGINT received: exiting now");
                    // Pingora still waits for its runtimes; nothing is worth waiting for.
                    flush_and_exit(0);
                }
                _ = term.recv() => log::info!("SIGTERM received: draining"),
                _ = quit.recv() => log::info!("SIGQUIT received: draining"),
                _ = usr1.recv() => {
                    log::info!("SIGUSR1 received: reopening the access log");
                    access_log::reopen();
                    continue;
                }
                _ = usr2.recv() => {
                    match crate::signals::start_successor() {
                        Ok(pid) => {
                            log::info!(
                                "SIGUSR2 received: started process {pid} to take over; handing it the listening \
                                 sockets, then draining for up to {:?}",
                                self.upgrade_grace
                            );
                            spawn_drain_watch(self.upgrade_grace + HANDOVER, HANDOVER, None);
                            return ShutdownSignal::GracefulUpgrade;
                        }
                        Err(e) => {
                            log::error!("SIGUSR2 received, but the new process did not start: {e}; still serving");
                            continue;
                        }
                    }
                }
            }
            break;
        }
        spawn_drain_watch(self.grace, Duration::from_millis(100), self.pid_file.clone());
        ShutdownSignal::GracefulTerminate
    }
}

/// Exits as soon as no request is in flight, or lets Pingora's grace period
/// run out (after which remaining requests are cut, and an upload cut off
/// mid-body is never completed upstream).
/// After an upgrade's handover the pid file names the new process: only a
/// plain stop removes it (`pid_file`).
fn spawn_drain_watch(grace: Duration, settle: Duration, pid_file: Option<std::path::PathBuf>) {
    let deadline = Instant::now() + grace;
    std::thread::spawn(move || {
        // Let listeners close and in-flight counts settle first; after an
        // upgrade's handover both processes accept for Pingora's 5 s.
        std::thread::sleep(settle);
        while Instant::now() < deadline {
            let n = IN_FLIGHT.load(Ordering::Acquire);
            if n == 0 {
                log::info!("drained: no requests in flight, exiting");
                if let Some(path) = &pid_file {
                    crate::signals::remove_pid_file(path);
                }
                flush_and_exit(0);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        log::warn!(
            "grace period of {:?} over with {} request(s) in flight; cutting them off",
            grace,
            IN_FLIGHT.load(Ordering::Acquire)
        );
        if let Some(path) = &pid_file {
            crate::signals::remove_pid_file(path);
        }
        flush_and_exit(0);
    });
}

fn flush_and_exit(code: i32) -> ! {
    access_log::flush();
    log::logger().flush();
    std::process::exit(code)
}
