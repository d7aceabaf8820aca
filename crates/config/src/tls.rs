//! `tls = { ca_file, cert_file, key_file, server_name, min_version }`: the
//! files are read and checked when the config is loaded (and on each
//! reload, so renewed files are picked up on SIGHUP): certificates parse,
//! the key parses and matches the first certificate.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::secret::Secret;

/// An integration's TLS settings, its files read.
#[derive(Clone, PartialEq)]
pub struct Tls {
    /// PEM of the CAs trusted instead of the system's (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate chain, then its key (`cert_file`,
    /// `key_file`): the identity of mutual TLS. A secret.
    pub identity_pem: Option<Secret>,
    /// The name the server's certificate is checked against, for a URL
    /// whose host is an IP address (`server_name`).
    pub server_name: Option<String>,
    pub min_version: Option<TlsVersion>,
    /// The files it was read from, for displays.
    pub files: Vec<PathBuf>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("server_name", &self.server_name)
            .field("min_version", &self.min_version)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "TLS 1.2",
            TlsVersion::V1_3 => "TLS 1.3",
        })
    }
}

/// Reads a PEM file of certificates: at least one, each parsing.
pub(crate) fn certificates(path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    for cert in &certs {
        webpki_parse(cert)
            .map_err(|e| format!("{}: a certificate does not parse ({e})", path.display()))?;
    }
    Ok((pem, certs))
}

fn webpki_parse(cert: &CertificateDer<'_>) -> Result<(), String> {
    // A certificate rustls can use: its end-entity parse, done by the
    // same code that checks the key against it.
    rustls::server::ParsedCertificate::try_from(cert)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads the client key and checks it against the first certificate of
/// `chain`; the identity PEM (certificates, then the key).
pub(crate) fn identity(
    cert_pem: &[u8],
    chain: Vec<CertificateDer<'static>>,
    key_path: &Path,
) -> Result<Secret, String> {
    let key_pem =
        std::fs::read(key_path).map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key ({e})", key_path.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{}: the key does not match the certificate of cert_file",
            key_path.display()
        ),
        other => format!("{}: the key cannot be used ({other})", key_path.display()),
    })?;
    let mut pem = String::from_utf8_lossy(cert_pem).into_owned();
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(&String::from_utf8_lossy(&key_pem));
    Ok(Secret::new(pem))
}
