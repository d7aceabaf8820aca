//! An integration's `tls` table: every file it names read and checked now.

use toml::Spanned;

use super::Cx;
use crate::raw::RawTls;
use crate::tls::{Tls, TlsVersion};

impl Cx<'_> {
    /// `tls = {...}`: every file read and checked now.
    pub(super) fn tls(&mut self, raw: &Spanned<RawTls>, section: &str) -> Option<Tls> {
        let t = raw.get_ref();
        let before = self.problems.len();
        let mut tls = Tls {
            ca_pem: None,
            identity_pem: None,
            server_name: None,
            min_version: None,
            files: Vec::new(),
        };
        if t.ca_file.is_none()
            && t.cert_file.is_none()
            && t.key_file.is_none()
            && t.server_name.is_none()
            && t.min_version.is_none()
        {
            self.problem(
                raw.span(),
                section,
                Some("tls"),
                "sets nothing; give ca_file, cert_file and key_file, server_name or min_version",
            );
            return None;
        }
        if let Some(ca) = &t.ca_file {
            let path = self.path(ca, section, "tls.ca_file")?;
            match crate::tls::certificates(&path) {
                Ok((pem, _)) => tls.ca_pem = Some(pem),
                Err(message) => self.problem(ca.span(), section, Some("tls.ca_file"), &message),
            }
            tls.files.push(path);
        }
        match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                let cert_path = self.path(cert, section, "tls.cert_file");
                let key_path = self.path(key, section, "tls.key_file");
                if let (Some(cert_path), Some(key_path)) = (cert_path, key_path) {
                    match crate::tls::certificates(&cert_path) {
                        Err(message) => {
                            self.problem(cert.span(), section, Some("tls.cert_file"), &message)
                        }
                        Ok((pem, chain)) => match crate::tls::identity(&pem, chain, &key_path) {
                            Ok(identity) => tls.identity_pem = Some(identity),
                            Err(message) => {
                                self.problem(key.span(), section, Some("tls.key_file"), &message)
                            }
                        },
                    }
                    tls.files.extend([cert_path, key_path]);
                }
            }
            (Some(only), None) | (None, Some(only)) => self.problem(
                only.span(),
                section,
                Some(if t.cert_file.is_some() {
                    "tls.cert_file"
                } else {
                    "tls.key_file"
                }),
                "cert_file and key_file go together (the client certificate and its key)",
            ),
            (None, None) => {}
        }
        if let Some(name) = &t.server_name {
            match rustls_pki_types::ServerName::try_from(name.get_ref().trim()) {
                Ok(rustls_pki_types::ServerName::DnsName(_)) => {
                    tls.server_name = Some(name.get_ref().trim().to_owned())
                }
                _ => self.problem(
                    name.span(),
                    section,
                    Some("tls.server_name"),
                    &format!("`{}` is not a DNS name", name.get_ref()),
                ),
            }
        }
        if let Some(v) = &t.min_version {
            match v.get_ref().trim() {
                "1.2" => tls.min_version = Some(TlsVersion::V1_2),
                "1.3" => tls.min_version = Some(TlsVersion::V1_3),
                other => self.problem(
                    v.span(),
                    section,
                    Some("tls.min_version"),
                    &format!(
                        "`{other}` is not a TLS version alertpost offers; write \"1.2\" or \"1.3\""
                    ),
                ),
            }
        }
        (self.problems.len() == before).then_some(tls)
    }
}
