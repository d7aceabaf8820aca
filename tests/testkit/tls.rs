//! TLS for the tests: a private CA issuing server and client certificates
//! (rcgen), written as PEM files, and an HTTPS receiver that can require a
//! client certificate of that CA (rustls through tokio-rustls, hyper).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA of the test's own; certificates it issues go to PEM files in `dir`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let ca = TestCa {
            issuer,
            dir: dir.to_owned(),
            name: name.to_owned(),
        };
        std::fs::write(ca.ca_file(), ca.issuer.pem()).expect("the CA file is written");
        ca
    }

    /// The CA's certificate file, `<dir>/<name>-ca.pem`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by this
    /// CA, as `<dir>/<file>.pem` and `<dir>/<file>.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("certificate params");
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let issued = Issued {
            cert_file: self.dir.join(format!("{file}.pem")),
            key_file: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert_file, cert.pem()).expect("written");
        std::fs::write(&issued.key_file, key.serialize_pem()).expect("written");
        issued
    }
}

/// An HTTPS receiver on 127.0.0.1:0 that records the paths it is sent.
pub struct TlsReceiver {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
    /// Handshakes that failed (no client certificate, an unknown CA...).
    refused: Arc<Mutex<usize>>,
}

impl TlsReceiver {
    /// Serves with `server`'s certificate; with `client_ca`, only clients
    /// presenting a certificate of that CA get through the handshake.
    pub async fn start(server: &Issued, client_ca: Option<&Path>) -> TlsReceiver {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&server.cert_file)
            .expect("the server certificate")
            .collect::<Result<_, _>>()
            .expect("PEM");
        let key = PrivateKeyDer::from_pem_file(&server.key_file).expect("the server key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).expect("the client CA") {
                    roots.add(cert.expect("PEM")).expect("a CA certificate");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("a client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .expect("the server key fits");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound");
        let paths = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let app = Router::new().fallback(record).with_state(paths.clone());
        let refused_count = refused.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app, refused) =
                    (acceptor.clone(), app.clone(), refused_count.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        *refused.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        TlsReceiver {
            addr,
            paths,
            refused,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn refused(&self) -> usize {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn record(
    State(paths): State<Arc<Mutex<Vec<String>>>>,
    uri: Uri,
    _body: Bytes,
) -> &'static str {
    paths
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(uri.path().to_owned());
    "{\"status\":\"ok\"}"
}
