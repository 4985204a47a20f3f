//! `registry-gateway certs`: a development CA and a server certificate
//! signed by it, for TLS out of the box on a developer's machine. Never
//! for production: the CA key sits next to the certificates.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The files written, relative to the output folder.
pub const CA_CERT: &str = "ca.crt";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
/// A folder holding only the CA certificate: what `skopeo --*-cert-dir`
/// and Docker's `certs.d/HOST:PORT/` expect.
pub const TRUST_DIR: &str = "trust";

const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

fn write(path: &Path, text: &str, mode: u32) -> Result<(), DevCertError> {
    use std::io::Write;
    let io = |e| DevCertError::Io(path.to_owned(), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// Writes a CA and a server certificate for `names` (DNS names and IPs)
/// into `dir`. The CA key is not kept: a new run makes a new CA.
pub fn generate(dir: &Path, names: &[String]) -> Result<(), DevCertError> {
    let now = SystemTime::now();
    std::fs::create_dir_all(dir.join(TRUST_DIR)).map_err(|e| DevCertError::Io(dir.to_owned(), e))?;

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "registry-gateway development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = (now - Duration::from_secs(3600)).into();
    ca.not_after = (now + VALIDITY).into();
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(names.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, names.first().map_or("localhost", String::as_str));
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = (now - Duration::from_secs(3600)).into();
    server.not_after = (now + VALIDITY).into();
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    write(&dir.join(CA_CERT), &ca_cert.pem(), 0o644)?;
    write(&dir.join(TRUST_DIR).join(CA_CERT), &ca_cert.pem(), 0o644)?;
    // Full chain, leaf first.
    write(
        &dir.join(SERVER_CERT),
        &format!("{}{}", server_cert.pem(), ca_cert.pem()),
        0o644,
    )?;
    write(&dir.join(SERVER_KEY), &server_key.serialize_pem(), 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::ServerCertificate;

    #[test]
    fn generated_certificates_load_and_name_their_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        generate(dir.path(), &names).unwrap();
        let cert = ServerCertificate::load(&dir.path().join(SERVER_CERT), &dir.path().join(SERVER_KEY)).unwrap();
        assert!(cert.info.names.contains(&"localhost".to_owned()));
        assert!(cert.info.names.contains(&"127.0.0.1".to_owned()));
        assert!(dir.path().join(TRUST_DIR).join(CA_CERT).exists());
    }
}
