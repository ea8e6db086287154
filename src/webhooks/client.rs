//! A minimal HTTP/1.1 client for webhooks (auth decisions and events) and
//! API calls one cluster node passes to another: one connection per request, `http://` or `https://` (rustls with the
//! bundled web roots), everything inside one deadline, the answer body
//! bounded. hyper does the HTTP; this module only connects.

use std::time::Duration;

use axum::http::{header, Method, Request, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest answer body read (a webhook answer is a small JSON object).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A parsed `http(s)://host[:port]/path?query` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// `host:port` as written, for the Host header.
    pub authority: String,
    pub path_and_query: String,
    url: String,
}

impl Endpoint {
    /// Checks a URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url:?}: only http:// and https:// URLs")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{url:?}: no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        if authority.as_str().contains('@') {
            return Err(format!("{url:?}: user info in the URL is not supported"));
        }
        Ok(Endpoint {
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
            authority: authority.to_string(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.to_string()),
            url: url.to_string(),
        })
    }

    /// The URL without its query (which may hold a token), for logs.
    pub fn redacted(&self) -> String {
        match self.url.split_once('?') {
            Some((u, _)) => format!("{u}?…"),
            None => self.url.clone(),
        }
    }
}

/// What the receiver answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// POSTs `body` as JSON to `ep`, with extra headers; the whole exchange
/// must finish within `limit`. Any transport failure is an `Err` with the
/// reason.
pub async fn post_json(
    ep: &Endpoint,
    headers: &[(&'static str, String)],
    body: Bytes,
    limit: Duration,
) -> Result<Reply, String> {
    request(ep, Method::POST, headers, body, limit).await
}

/// Sends `method` with `body` (JSON when not empty) to `ep`, within
/// `limit`.
pub async fn request(
    ep: &Endpoint,
    method: Method,
    headers: &[(&'static str, String)],
    body: Bytes,
    limit: Duration,
) -> Result<Reply, String> {
    match tokio::time::timeout(limit, exchange(ep, method, headers, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

async fn exchange(
    ep: &Endpoint,
    method: Method,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<Reply, String> {
    let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("connect to {}: {e}", ep.authority))?;
    let _ = tcp.set_nodelay(true);
    if ep.https {
        let config = crate::transport::tls_client::client_config(&Default::default())?;
        let name = rustls_pki_types::ServerName::try_from(ep.host.clone())
            .map_err(|e| format!("{}: {e}", ep.host))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", ep.authority))?;
        send(tls, ep, method, headers, body).await
    } else {
        send(tcp, ep, method, headers, body).await
    }
}

async fn send<S>(
    io: S,
    ep: &Endpoint,
    method: Method,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<Reply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP with {}: {e}", ep.authority))?;
    // The connection task ends when the exchange does (or its deadline
    // drops the sender).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(ep.path_and_query.as_str())
        .header(header::HOST, ep.authority.as_str());
    if !body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    req = req.header(
        header::USER_AGENT,
        concat!("castgate/", env!("CARGO_PKG_VERSION")),
    );
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP with {}: {e}", ep.authority))?;
    let status = res.status().as_u16();
    let body = Limited::new(res.into_body(), MAX_REPLY_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer of {}: {e}", ep.authority))?
        .to_bytes();
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:8000/hook?token=abc").unwrap();
        assert!(!e.https);
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 8000));
        assert_eq!(e.path_and_query, "/hook?token=abc");
        assert_eq!(e.redacted(), "http://127.0.0.1:8000/hook?…");
        let e = Endpoint::parse("https://hooks.example").unwrap();
        assert_eq!((e.port, e.path_and_query.as_str()), (443, "/"));
        for bad in ["ftp://x/", "hooks.example/x", "", "http://u:p@h/"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
