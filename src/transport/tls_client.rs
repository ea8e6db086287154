//! Client TLS (RTMPS relays, HTTPS webhooks): rustls (ring) with the bundled web roots
//! (`webpki-roots`), plus per relay a CA file to trust, or, when asked
//! explicitly, no certificate verification at all (handshake signatures are
//! still checked).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// CA files larger than this are refused.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// How an RTMPS relay checks its destination's certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM certificates trusted in addition to the web roots.
    pub ca_file: Option<String>,
    /// `false` turns verification off (explicitly asked for per relay).
    pub no_verify: bool,
}

fn provider() -> Arc<CryptoProvider> {
    super::tls::install_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Reads the PEM certificates of a CA file (bounded); the error names the
/// file and what is wrong with it.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use std::io::Read;
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("CA file {name}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("CA file {name} is not a regular file"));
    }
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut data))
        .map_err(|e| format!("CA file {name}: {e}"))?;
    if data.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!(
            "CA file {name} is larger than {MAX_CA_FILE_BYTES} bytes"
        ));
    }
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {name}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "CA file {name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

/// The client configuration for one relay. Reads the CA file now, so a bad
/// one is reported when the relay is created, not at each connection.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if opts.no_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(file) = &opts.ca_file {
            for cert in read_ca_file(Path::new(file))? {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {file}: unusable certificate: {e}"))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The name to verify and send as SNI: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("bad TLS server name {host:?}: {e}"))
}

/// Accepts any certificate; still checks that the server holds its key.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = client_config(&TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            no_verify: false,
        })
        .unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = read_ca_file(&junk).unwrap_err();
        assert!(
            e.contains("junk.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = read_ca_file(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert!(client_config(&TlsOptions {
            ca_file: Some(good.display().to_string()),
            no_verify: false,
        })
        .is_ok());
        assert!(client_config(&TlsOptions::default()).is_ok());
        assert!(client_config(&TlsOptions {
            ca_file: None,
            no_verify: true
        })
        .is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("example.com").is_ok());
    }
}
