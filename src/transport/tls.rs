//! TLS for RTMPS and HTTPS: certificate loading, reload without dropping
//! connections, the RTMPS listener, and telling TLS from plain bytes.
//!
//! One crypto provider (`ring`: no cmake/nasm build dependency, unlike
//! aws-lc-rs) is installed process-wide at start-up. The certificate lives
//! in an [`ArcSwap`] behind a [`ResolvesServerCert`]: a reload swaps the
//! pointer, every later handshake sees the new certificate, and sessions
//! already established keep theirs.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::settings::TlsFiles;

/// PEM files larger than this are refused (a chain is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// ALPN for the HTTPS listener: HTTP/2 first, then HTTP/1.1.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Installs `ring` as the process-wide crypto provider. Idempotent: a
/// second call (tests running several servers in one process) is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Fills `buf` from the crypto provider's secure random source.
pub fn secure_random(buf: &mut [u8]) -> bool {
    provider().secure_random.fill(buf).is_ok()
}

/// Why a certificate or key could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes: not a PEM certificate or key")]
    TooLarge { path: String },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: String },
    #[error("{path}: bad PEM: {reason}")]
    BadPem { path: String, reason: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("key {key} does not fit certificate {cert}: {reason}")]
    Unusable {
        cert: String,
        key: String,
        reason: String,
    },
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let name = path.display().to_string();
    let read_err = |source| TlsError::Read {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut data = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge { path: name });
    }
    Ok(data)
}

/// Reads a PEM chain and key and checks that they belong together.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_name = files.cert.display().to_string();
    let key_name = files.key.display().to_string();
    let cert_pem = read_pem(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: cert_name.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_name });
    }
    let key_pem = read_pem(&files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey { path: key_name })
        }
        Err(e) => {
            return Err(TlsError::BadPem {
                path: key_name,
                reason: e.to_string(),
            })
        }
    };
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Unusable {
        cert: cert_name,
        key: key_name,
        reason: e.to_string(),
    })
}

/// SHA-256 of the leaf certificate, hex: what `openssl x509 -fingerprint
/// -sha256` prints (without the colons). Logged at load and reload.
pub fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|c| {
            Sha256::digest(c.as_ref())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default()
}

/// The certificate in use for one set of files, swappable at run time.
pub struct CertStore {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the files; an error names the file that is missing or bad.
    pub fn load(files: TlsFiles) -> Result<Arc<CertStore>, TlsError> {
        let key = load_certified_key(&files)?;
        Ok(Arc::new(CertStore {
            files,
            current: ArcSwap::from_pointee(key),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The fingerprint of the certificate in use.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.current.load())
    }

    /// Re-reads the files. On success later handshakes use the new pair and
    /// its fingerprint is returned; on error the old pair stays in use.
    pub fn reload(&self) -> Result<String, TlsError> {
        let key = load_certified_key(&self.files)?;
        let fp = fingerprint(&key);
        self.current.store(Arc::new(key));
        Ok(fp)
    }

    /// Reloads and logs the outcome (SIGHUP).
    pub fn reload_logged(&self, what: &str) {
        let cert = self.files.cert.display().to_string();
        match self.reload() {
            Ok(fp) => info!(what, cert, sha256 = fp, "TLS certificate reloaded"),
            Err(e) => warn!(
                what,
                cert,
                sha256 = self.fingerprint(),
                "TLS certificate reload failed, keeping the previous one: {e}"
            ),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A server configuration that always asks `store` for the certificate.
pub fn server_config(store: Arc<CertStore>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    // The provider supports the default protocol versions: this cannot fail.
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ServerConfig::builder());
    let mut config = builder.with_no_client_auth().with_cert_resolver(store);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What the first byte of a connection says about the protocol spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstByte {
    /// A TLS record (handshake content type 0x16).
    Tls,
    /// An RTMP handshake: C0 = 3 (plain) or 6 (RTMPE).
    Rtmp,
    /// An upper-case ASCII letter: an HTTP request line.
    Http,
    Other(u8),
}

impl FirstByte {
    pub fn of(b: u8) -> FirstByte {
        match b {
            0x16 => FirstByte::Tls,
            3 | 6 => FirstByte::Rtmp,
            b'A'..=b'Z' => FirstByte::Http,
            other => FirstByte::Other(other),
        }
    }

    /// Why a connection that should have started with TLS did not.
    pub fn not_tls_reason(self, port_kind: &str) -> String {
        match self {
            FirstByte::Tls => "TLS".into(),
            FirstByte::Rtmp => {
                format!(
                    "plain RTMP handshake on the {port_kind} port (rtmp:// instead of rtmps://?)"
                )
            }
            FirstByte::Http => {
                format!("plain HTTP request on the {port_kind} port (http:// instead of https://?)")
            }
            FirstByte::Other(b) => {
                format!("not a TLS handshake on the {port_kind} port (first byte 0x{b:02x})")
            }
        }
    }
}

/// Waits for the first byte without consuming it. An error (the reason to
/// log) when the peer closed first or sent nothing within `limit`.
pub async fn peek_first_byte(tcp: &TcpStream, limit: Duration) -> Result<u8, String> {
    let mut b = [0u8; 1];
    match timeout(limit, tcp.peek(&mut b)).await {
        Err(_) => Err(format!("sent nothing within {limit:?}")),
        Ok(Ok(0)) => Err("closed before sending anything".into()),
        Ok(Ok(_)) => Ok(b[0]),
        Ok(Err(e)) => Err(format!("read error: {e}")),
    }
}

/// Closes a connection that spoke the wrong protocol with a FIN, not a
/// reset: our side is shut down first, then the peer's bytes are drained
/// (bounded in bytes and time) so that dropping the socket does not turn
/// into a reset, and the client sees a clean end of stream.
pub async fn close_gently(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut drained = 0usize;
    let _ = timeout(Duration::from_secs(2), async {
        while drained < 256 * 1024 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Runs a TLS server handshake on `tcp`, first making sure the peer speaks
/// TLS at all. Errors are the reason to log.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
    port_kind: &str,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    let first = peek_first_byte(&tcp, limit).await?;
    let kind = FirstByte::of(first);
    if kind != FirstByte::Tls {
        close_gently(tcp).await;
        return Err(kind.not_tls_reason(port_kind));
    }
    match timeout(limit, acceptor.accept(tcp)).await {
        Err(_) => Err(format!("TLS handshake not finished within {limit:?}")),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Ok(Ok(tls)) => Ok(tls),
    }
}

/// Serves RTMPS forever: TLS, then the same RTMP connection driver as plain
/// RTMP. A client that does not speak TLS (e.g. `rtmp://` to this port) is
/// closed with a log line naming it and the reason.
/// `limit` bounds the TLS handshake.
pub async fn serve_rtmps(
    listener: TcpListener,
    store: Arc<CertStore>,
    limits: super::tcp::Limits,
    limit: Duration,
    handler: super::Handler,
) {
    let acceptor = TlsAcceptor::from(server_config(store, &[]));
    super::tcp::serve(listener, limits, move |tcp: TcpStream, peer: SocketAddr| {
        let acceptor = acceptor.clone();
        let handler = Arc::clone(&handler);
        async move {
            match accept(&acceptor, tcp, limit, "RTMPS").await {
                Ok(tls) => handler(Box::new(tls), peer, "rtmps").await,
                Err(reason) => {
                    warn!(%peer, proto = "rtmps", "connection closed: {reason}")
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn self_signed(dir: &std::path::Path, name: &str) -> TlsFiles {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        TlsFiles { cert, key }
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = self_signed(dir.path(), "a");
        let other = self_signed(dir.path(), "b");
        let missing = TlsFiles {
            cert: PathBuf::from("/nonexistent/cert.pem"),
            key: good.key.clone(),
        };
        let e = load_certified_key(&missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let e = load_certified_key(&TlsFiles {
            cert: garbage.clone(),
            key: good.key.clone(),
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("garbage.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = load_certified_key(&TlsFiles {
            cert: good.cert.clone(),
            key: garbage,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("garbage.pem") && e.contains("no PEM private key"),
            "{e}"
        );
        // A key from another pair.
        let e = load_certified_key(&TlsFiles {
            cert: good.cert.clone(),
            key: other.key.clone(),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not fit"), "{e}");
        assert!(load_certified_key(&good).is_ok());
    }

    #[test]
    fn reload_swaps_or_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let files = self_signed(dir.path(), "a");
        let store = CertStore::load(files.clone()).unwrap();
        let first = store.fingerprint();
        assert_eq!(first.len(), 64);
        // A bad new pair keeps the old one.
        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.fingerprint(), first);
        // A good new pair replaces it.
        let next = self_signed(dir.path(), "b");
        std::fs::copy(&next.cert, &files.cert).unwrap();
        std::fs::copy(&next.key, &files.key).unwrap();
        let fp = store.reload().unwrap();
        assert_ne!(fp, first);
        assert_eq!(store.fingerprint(), fp);
    }

    #[test]
    fn first_bytes() {
        assert_eq!(FirstByte::of(0x16), FirstByte::Tls);
        assert_eq!(FirstByte::of(3), FirstByte::Rtmp);
        assert_eq!(FirstByte::of(b'P'), FirstByte::Http);
        assert!(FirstByte::of(3).not_tls_reason("RTMPS").contains("rtmp://"));
        assert!(FirstByte::of(0).not_tls_reason("HTTPS").contains("0x00"));
    }
}
