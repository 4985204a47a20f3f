//! Picks the server certificate by SNI; the table behind it is swapped
//! atomically on reload, so in-flight connections keep theirs and new
//! handshakes see the new one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::{CertError, ServerCertificate};
use crate::metrics::{self, ReloadKind};
use crate::reload::{FileStamp, Reloadable};

pub use crate::config::CertificateSpec;
pub use crate::metrics::TlsStats;

#[derive(Debug)]
struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For clients without SNI or with an unknown name (the first certificate).
    default: Arc<CertifiedKey>,
}

impl CertTable {
    fn build(loaded: &[(ServerCertificate, &CertificateSpec)]) -> CertTable {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (cert, spec) in loaded {
            let names = spec
                .names
                .iter()
                .map(|n| normalize(n))
                .chain(cert.info.names.iter().cloned());
            for name in names {
                // The first certificate to claim a name keeps it.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_insert_with(|| cert.key.clone()),
                    None => exact.entry(name).or_insert_with(|| cert.key.clone()),
                };
            }
        }
        CertTable {
            exact,
            wildcard,
            default: loaded[0].0.key.clone(),
        }
    }

    fn lookup(&self, sni: &str) -> Arc<CertifiedKey> {
        if let Some(k) = self.exact.get(sni) {
            return k.clone();
        }
        if let Some((_, parent)) = sni.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k.clone();
            }
        }
        self.default.clone()
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The certificates of one TLS listener.
#[derive(Debug)]
pub struct SniResolver {
    /// Replaced together with `table` when a configuration reload names
    /// other files.
    specs: ArcSwap<Vec<CertificateSpec>>,
    table: ArcSwap<CertTable>,
    pub stats: Arc<TlsStats>,
    /// The files as last read, to notice changes.
    stamps: Mutex<Vec<Option<FileStamp>>>,
}

impl SniResolver {
    pub fn load(specs: Vec<CertificateSpec>) -> Result<Self, CertError> {
        let stamps = Mutex::new(Self::stamps(&specs));
        let table = Self::load_table(&specs)?;
        Ok(SniResolver {
            specs: ArcSwap::from_pointee(specs),
            table: ArcSwap::from_pointee(table),
            stats: Arc::default(),
            stamps,
        })
    }

    fn stamps(specs: &[CertificateSpec]) -> Vec<Option<FileStamp>> {
        FileStamp::of_all(specs.iter().flat_map(|s| [s.cert.as_path(), s.key.as_path()]))
    }

    fn load_table(specs: &[CertificateSpec]) -> Result<CertTable, CertError> {
        assert!(!specs.is_empty(), "config validation requires a certificate");
        let loaded: Vec<(ServerCertificate, &CertificateSpec)> = specs
            .iter()
            .map(|s| ServerCertificate::load(&s.cert, &s.key).map(|c| (c, s)))
            .collect::<Result<_, _>>()?;
        Ok(CertTable::build(&loaded))
    }

    pub fn specs(&self) -> Arc<Vec<CertificateSpec>> {
        self.specs.load_full()
    }

    /// Takes the files and certificates `other` loaded (a reloaded
    /// configuration's), so handshakes from now on use them.
    pub fn adopt(&self, other: &SniResolver) {
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        *stamps = other.stamps.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.specs.store(other.specs.load_full());
        self.table.store(other.table.load_full());
    }

    /// Re-reads every certificate; on any error the current ones stay.
    pub fn reload(&self) -> Result<(), CertError> {
        let table = Self::load_table(&self.specs.load())?;
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Whether a client that sent `sni` got the certificate that `host`
    /// would get; when not, the request is misdirected (RFC 9110, 421).
    /// `host` is normalised already (lower case, no port, no trailing dot).
    pub fn same_certificate(&self, sni: &str, host: &str) -> bool {
        let table = self.table.load();
        Arc::ptr_eq(&table.lookup(&normalize(sni)), &table.lookup(host))
    }

    /// Certificate names as the resolver sees them, for `check` output.
    pub fn names(&self) -> Vec<String> {
        let t = self.table.load();
        let mut names: Vec<String> = t
            .exact
            .keys()
            .cloned()
            .chain(t.wildcard.keys().map(|p| format!("*.{p}")))
            .collect();
        names.sort();
        names
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        let table = self.table.load();
        Some(match hello.server_name() {
            // Normalise only when needed: most clients send it lower-case.
            Some(name) if name.ends_with('.') || name.bytes().any(|b| b.is_ascii_uppercase()) => {
                table.lookup(&normalize(name))
            }
            Some(name) => table.lookup(name),
            None => table.default.clone(),
        })
    }
}

impl Reloadable for SniResolver {
    fn reload(&self, force: bool) {
        let specs = self.specs.load_full();
        let now = Self::stamps(&specs);
        let mut last = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if !force && *last == now {
            return;
        }
        // Remember this state even on failure: retry when the files change
        // again rather than logging the same error every poll.
        *last = now;
        let files: Vec<String> = specs.iter().map(|s| s.cert.display().to_string()).collect();
        match SniResolver::reload(self) {
            Ok(()) => {
                metrics::reload(ReloadKind::Certificate, true);
                log::info!("certificates reloaded: {}", files.join(", "))
            }
            Err(e) => {
                metrics::reload(ReloadKind::Certificate, false);
                log::error!("{e}; keeping the current certificates")
            }
        }
    }
}

/// The SNI name a connection was set up with, kept on connections of
/// listeners that reject misdirected requests.
#[derive(Debug)]
pub struct SniBinding {
    pub sni: String,
    pub certificates: Arc<SniResolver>,
}

impl SniBinding {
    /// Whether a request for `host` (normalised) belongs on this connection.
    pub fn allows(&self, host: &str) -> bool {
        self.certificates.same_certificate(&self.sni, host)
    }
}

/// Counts completed handshakes (Pingora logs only failures) and, where the
/// listener asks for it, remembers the SNI name for the 421 check.
pub struct HandshakeCounter {
    pub stats: Arc<TlsStats>,
    /// `Some` when requests whose Host needs another certificate get 421.
    pub reject_misdirected: Option<Arc<SniResolver>>,
}

#[async_trait]
impl TlsAccept for HandshakeCounter {
    async fn handshake_complete_callback(&self, tls: &TlsRef) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        let certificates = self.reject_misdirected.clone()?;
        let sni = tls.server_name()?.to_owned();
        Some(Arc::new(SniBinding { sni, certificates }))
    }
}
