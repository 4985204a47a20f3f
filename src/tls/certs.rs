//! Certificate and key files: loaded and checked completely at load time,
//! so Pingora (which panics on unusable TLS material) never sees a bad one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: no PEM certificate found (expected `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { file: PathBuf },
    #[error("{file}: certificate {index} is not valid X.509: {reason}")]
    BadCertificate {
        file: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{file}: no PEM private key found (expected PKCS#8, PKCS#1 or SEC1)")]
    NoKey { file: PathBuf },
    #[error("{file}: unusable private key: {reason}")]
    BadKey { file: PathBuf, reason: String },
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{file}: certificate expired at {when} (Unix time)")]
    Expired { file: PathBuf, when: i64 },
    #[error("{file}: certificate is not valid before {when} (Unix time)")]
    NotYetValid { file: PathBuf, when: i64 },
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        file: path.to_owned(),
        source,
    })
}

/// All certificates of a PEM file (a full chain: leaf first).
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read(path)?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::BadCertificate {
                file: path.to_owned(),
                index: 0,
                reason: e.to_string(),
            })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { file: path.to_owned() });
    }
    for (index, der) in chain.iter().enumerate() {
        X509Certificate::from_der(der).map_err(|e| CertError::BadCertificate {
            file: path.to_owned(),
            index,
            reason: e.to_string(),
        })?;
    }
    Ok(chain)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| CertError::NoKey { file: path.to_owned() })
}

/// What a loaded leaf certificate says about itself.
#[derive(Debug, Clone)]
pub struct LeafInfo {
    /// DNS names (lower case, `*.` wildcards kept) and IP addresses from
    /// the SAN extension, or the subject CN when there is none.
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
}

pub fn leaf_info(der: &CertificateDer<'_>) -> Result<LeafInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.trim_end_matches('.').to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string()),
                    16 => names.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
            names.push(cn.to_ascii_lowercase());
        }
    }
    let validity = cert.validity();
    Ok(LeafInfo {
        names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Warn this long before expiry.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// A server certificate with its key, ready for the handshake.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    pub cert_file: PathBuf,
    pub key: Arc<CertifiedKey>,
    pub info: LeafInfo,
}

impl ServerCertificate {
    /// Loads a chain and key and checks that they belong together and that
    /// the leaf is valid now (expired or not-yet-valid is an error).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, CertError> {
        let chain = load_chain(cert_file)?;
        let key = load_key(key_file)?;
        let info = leaf_info(&chain[0]).map_err(|reason| CertError::BadCertificate {
            file: cert_file.to_owned(),
            index: 0,
            reason,
        })?;
        let now = now_unix();
        if info.not_after < now {
            return Err(CertError::Expired {
                file: cert_file.to_owned(),
                when: info.not_after,
            });
        }
        if info.not_before > now {
            return Err(CertError::NotYetValid {
                file: cert_file.to_owned(),
                when: info.not_before,
            });
        }
        if info.not_after - now < EXPIRY_WARNING.as_secs() as i64 {
            log::warn!(
                "{}: certificate expires in {} day(s)",
                cert_file.display(),
                (info.not_after - now) / 86_400
            );
        }
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
                cert: cert_file.to_owned(),
                key: key_file.to_owned(),
            },
            other => CertError::BadKey {
                file: key_file.to_owned(),
                reason: other.to_string(),
            },
        })?;
        Ok(ServerCertificate {
            cert_file: cert_file.to_owned(),
            key: Arc::new(certified),
            info,
        })
    }
}
