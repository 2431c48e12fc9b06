//! TLS for wss:// and https://, with rustls, when `ssl.certPath` and `ssl.keyPath` are set.
//!
//! The options mean what they mean in soketi, whose uWebSockets (uSockets) hands them to
//! OpenSSL: the certificate file may hold the whole chain, `ssl.passphrase` decrypts an
//! encrypted key, and `ssl.caPath` is the CA that client certificates are verified against
//! (`SSL_VERIFY_PEER` without `SSL_VERIFY_FAIL_IF_NO_PEER_CERT`: a client that presents no
//! certificate is served, one that presents a certificate must present a valid one).
//! `ssl.chainPath`, not a soketi option, appends intermediates to the chain sent to clients.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::StartError;
use crate::config::SslConfig;

const KEY: &str = "ssl.keyPath (SOKETI_SSL_KEY)";
const PASS: &str = "ssl.passphrase (SOKETI_SSL_PASS)";
const CA: &str = "ssl.caPath (SOKETI_SSL_CA)";

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
    if !ssl.chain_path.is_empty() {
        chain.extend(
            read_certs(&ssl.chain_path).map_err(|e| fail("ssl.chainPath (SOKETI_SSL_CHAIN)", e))?,
        );
    }
    let key = read_key(&ssl.key_path, &ssl.passphrase)?;
    let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("ssl", e.to_string()))?;
    let builder = if ssl.ca_path.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(client_verifier(&ssl.ca_path, provider)?)
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        fail(
            "ssl.certPath and ssl.keyPath (SOKETI_SSL_CERT, SOKETI_SSL_KEY)",
            format!("the certificate and key do not make a TLS identity: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Verifies client certificates against the CAs of `path`; a client without one is let in.
fn client_verifier(
    path: &str,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>, StartError> {
    let fail = |message: String| StartError::Tls {
        option: CA,
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path).map_err(fail)? {
        roots
            .add(cert)
            .map_err(|e| fail(format!("a certificate of {path} is not a usable CA: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| {
            fail(format!(
                "cannot verify client certificates against {path}: {e}"
            ))
        })
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

/// The private key of `path`: PKCS#8, PKCS#1 or SEC1 in the clear, or PKCS#8 encrypted with
/// `passphrase` (PBES2, as `openssl pkcs8 -topk8` and `openssl genpkey -aes-256-cbc` write it).
fn read_key(path: &str, passphrase: &str) -> Result<PrivateKeyDer<'static>, StartError> {
    let fail = |option: &'static str, message: String| StartError::Tls { option, message };
    let pem = std::fs::read_to_string(path)
        .map_err(|e| fail(KEY, format!("cannot read a private key from {path}: {e}")))?;
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(fail(
            KEY,
            format!(
                "{path} is encrypted in the legacy OpenSSL form (Proc-Type: 4,ENCRYPTED), which \
                 is not supported; convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -in \
                 {path} -out key.pem` (same passphrase) or decrypt it"
            ),
        ));
    }
    let Some(encrypted) = pem_block(&pem, "ENCRYPTED PRIVATE KEY") else {
        if !passphrase.is_empty() {
            tracing::warn!(
                path,
                "ssl.passphrase (SOKETI_SSL_PASS) is set but the key is not encrypted; ignored"
            );
        }
        return PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| fail(KEY, format!("cannot read a private key from {path}: {e}")));
    };
    if passphrase.is_empty() {
        return Err(fail(
            PASS,
            format!("the key in {path} is encrypted; set its passphrase in SOKETI_SSL_PASS"),
        ));
    }
    let (_, document) = pkcs8::der::Document::from_pem(encrypted)
        .map_err(|e| fail(KEY, format!("cannot read the encrypted key in {path}: {e}")))?;
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
        .map_err(|e| fail(KEY, format!("cannot read the encrypted key in {path}: {e}")))?;
    let decrypted = info.decrypt(passphrase).map_err(|e| {
        fail(
            PASS,
            format!("SOKETI_SSL_PASS does not decrypt the key in {path} (wrong passphrase, or an encryption scheme other than PBES2 with AES-CBC and PBKDF2 or scrypt): {e}"),
        )
    })?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        decrypted.as_bytes().to_vec(),
    )))
}

/// The first PEM block labelled `label` in `pem`, markers included.
fn pem_block<'a>(pem: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = start + pem[start..].find(&end)? + end.len();
    Some(&pem[start..stop])
}

#[cfg(test)]
mod tests;
