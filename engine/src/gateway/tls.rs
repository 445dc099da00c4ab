//! TLS for the gateway's listeners (`engine.tls_cert`, `engine.tls_key`): rustls with the
//! `ring` provider, ALPN `h2` and `http/1.1`, so gRPC clients get HTTP/2 and browsers either.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// The acceptor for `config`'s certificate chain and key; the error names the file at fault.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{} (engine.tls_cert): {e}", config.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} (engine.tls_cert): no certificate in the file",
            config.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| format!("{} (engine.tls_key): {e}", config.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} (engine.tls_cert, engine.tls_key): {e}",
                config.cert.display(),
                config.key.display()
            )
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
