//! TLS for the engine–gateway connection (rustls, ring provider): the gateway presents a
//! certificate; engines check it against a CA file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use super::io::{split_any, BoxRead, WriteHalf};
use super::ClusterError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The gateway's TLS acceptor from a PEM certificate chain and a PEM private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ClusterError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ClusterError::Tls(format!("reading certificates from {}: {e}", cert.display()))
        })?;
    if certs.is_empty() {
        return Err(ClusterError::Tls(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        ClusterError::Tls(format!(
            "reading the private key from {}: {e}",
            key.display()
        ))
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ClusterError::Tls(format!("{}: {e}", cert.display())))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// An engine's TLS connector trusting the CA certificates in the PEM file `ca`.
pub fn connector(ca: &Path) -> Result<tokio_rustls::TlsConnector, ClusterError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ClusterError::Tls(format!(
                "reading CA certificates from {}: {e}",
                ca.display()
            ))
        })?;
    for c in certs {
        roots
            .add(c)
            .map_err(|e| ClusterError::Tls(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(ClusterError::Tls(format!(
            "no CA certificate in {}",
            ca.display()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Completes the server side of a handshake.
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
) -> Result<(BoxRead, WriteHalf), ClusterError> {
    let s = acceptor
        .accept(tcp)
        .await
        .map_err(|e| ClusterError::io("TLS handshake", e))?;
    Ok(split_any(s))
}

/// Completes the client side of a handshake with `name` (the gateway's host name or address).
pub async fn connect(
    connector: &tokio_rustls::TlsConnector,
    name: &str,
    tcp: TcpStream,
) -> Result<(BoxRead, WriteHalf), ClusterError> {
    let server = ServerName::try_from(name.to_string())
        .map_err(|e| ClusterError::Tls(format!("{name:?} is not a server name: {e}")))?;
    let s = connector
        .connect(server, tcp)
        .await
        .map_err(|e| ClusterError::io(format!("TLS handshake with {name}"), e))?;
    Ok(split_any(s))
}
