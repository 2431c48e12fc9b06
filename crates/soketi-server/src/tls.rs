//! TLS for wss:// and https://, with rustls, when `ssl.certPath` and `ssl.keyPath` are set.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;

use crate::StartError;
use crate::config::SslConfig;

/// The acceptor for the configured certificate, or `None` when TLS is off.
pub(crate) fn acceptor(ssl: &SslConfig) -> Result<Option<TlsAcceptor>, StartError> {
    if ssl.cert_path.is_empty() && ssl.key_path.is_empty() {
        return Ok(None);
    }
    let fail = |option: &'static str, message: String| StartError::Tls { option, message };
    if ssl.cert_path.is_empty() || ssl.key_path.is_empty() {
        return Err(fail(
            "ssl.certPath and ssl.keyPath (SOKETI_SSL_CERT, SOKETI_SSL_KEY)",
            "TLS needs both a certificate and a key".into(),
        ));
    }
    let mut chain =
        read_certs(&ssl.cert_path).map_err(|e| fail("ssl.certPath (SOKETI_SSL_CERT)", e))?;
    if !ssl.ca_path.is_empty() {
        chain.extend(read_certs(&ssl.ca_path).map_err(|e| fail("ssl.caPath (SOKETI_SSL_CA)", e))?);
    }
    let key = PrivateKeyDer::from_pem_file(&ssl.key_path).map_err(|e| {
        fail(
            "ssl.keyPath (SOKETI_SSL_KEY)",
            format!("cannot read a private key from {}: {e}", ssl.key_path),
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("ssl", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            fail(
                "ssl.certPath and ssl.keyPath (SOKETI_SSL_CERT, SOKETI_SSL_KEY)",
                format!("the certificate and key do not make a TLS identity: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(certs)
}
