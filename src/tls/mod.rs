//! TLS termination: certificates chosen by SNI, swapped on reload without
//! dropping connections, and handshake counts Pingora does not keep.

pub mod certs;
pub mod dev;
mod resolver;

pub use resolver::{CertificateSpec, HandshakeCounter, SniBinding, SniResolver, TlsStats};
