//! Requests from an edge to a stream's owner over HTTP/2 (cleartext, prior
//! knowledge: castgate's HTTP listener takes both versions): up to
//! [`CONNS_PER_OWNER`] connections per owner, made as needed and again once
//! they break, used in turn, every request a stream on one. Only the owners' advertised URLs are dialled: they come
//! from the nodes' own configuration through Redis, never from a client.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::answer::{Answer, Head};
use crate::webhooks::client::Endpoint;

/// How long connecting to an owner may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the owner may take to start answering (a blocking LL-HLS
/// request waits there for the part it names).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the body may pause.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The header naming the node a request comes from: the owner counts
/// these, and never forwards such a request again.
pub const NODE_HEADER: &str = "x-castgate-node";

type Sender = SendRequest<Empty<Bytes>>;

/// Connections kept to each owner, used in turn: an HTTP/2 server takes a
/// bounded number of concurrent streams per connection (hyper's default is
/// 200), and blocking LL-HLS reloads hold theirs for up to a part.
pub const CONNS_PER_OWNER: usize = 8;

/// Connections to owners, by `host:port`.
#[derive(Default)]
pub struct Upstreams {
    conns: std::sync::Mutex<HashMap<String, Pool>>,
}

#[derive(Default)]
struct Pool {
    senders: Vec<Sender>,
    next: usize,
    /// A connection is being made (the others share the open ones).
    connecting: bool,
}

/// A new HTTP/2 connection to `ep`.
async fn connect(ep: &Endpoint) -> Result<Sender, String> {
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((ep.host.as_str(), ep.port)),
    )
    .await
    .map_err(|_| {
        format!(
            "no connection to {} within {CONNECT_TIMEOUT:?}",
            ep.authority
        )
    })?
    .map_err(|e| format!("connect to {}: {e}", ep.authority))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP/2 with {}: {e}", ep.authority))?;
    let authority = ep.authority.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(
                owner = authority,
                "edge: connection to the owner ended: {e}"
            );
        }
    });
    Ok(sender)
}

impl Upstreams {
    /// A connection to `ep`: the next open one in turn, a new one while
    /// there are fewer than [`CONNS_PER_OWNER`].
    async fn sender(&self, ep: &Endpoint) -> Result<Sender, String> {
        {
            let mut conns = crate::locks::lock(&self.conns);
            let pool = conns.entry(ep.authority.clone()).or_default();
            pool.senders.retain(|s| !s.is_closed());
            let open = pool.senders.len();
            if open >= CONNS_PER_OWNER || (open > 0 && pool.connecting) {
                pool.next = (pool.next + 1) % open;
                return Ok(pool.senders[pool.next].clone());
            }
            pool.connecting = true;
        }
        // Connected without the lock: an owner that does not answer holds
        // up only the requests for it.
        let made = connect(ep).await;
        let mut conns = crate::locks::lock(&self.conns);
        let pool = conns.entry(ep.authority.clone()).or_default();
        pool.connecting = false;
        let sender = made?;
        pool.senders.push(sender.clone());
        Ok(sender)
    }

    /// Fetches `path_and_query` from the owner at `ep` into `answer`
    /// (head, then the body as it comes, then its end). `host` is the
    /// client's, passed on (an MPD names it); `node` is this node's id.
    pub async fn fetch(
        &self,
        ep: &Endpoint,
        path_and_query: &str,
        host: Option<&str>,
        node: &str,
        answer: &Answer,
    ) {
        let end = self.exchange(ep, path_and_query, host, node, answer).await;
        answer.finish(end);
    }

    async fn exchange(
        &self,
        ep: &Endpoint,
        path_and_query: &str,
        host: Option<&str>,
        node: &str,
        answer: &Answer,
    ) -> Result<(), String> {
        let mut sender = self.sender(ep).await?;
        let uri = format!(
            "http://{}{path_and_query}",
            host.unwrap_or(ep.authority.as_str())
        );
        let req = Request::get(uri)
            .header(NODE_HEADER, node)
            .header(
                header::USER_AGENT,
                concat!("castgate/", env!("CARGO_PKG_VERSION"), " edge"),
            )
            .body(Empty::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let res = tokio::time::timeout(HEAD_TIMEOUT, async {
            sender
                .ready()
                .await
                .map_err(|e| format!("HTTP/2 with {}: {e}", ep.authority))?;
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("HTTP/2 with {}: {e}", ep.authority))
        })
        .await
        .map_err(|_| format!("{} sent no answer within {HEAD_TIMEOUT:?}", ep.authority))??;
        let text = |name: header::HeaderName| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        answer.set_head(Head {
            status: res.status().as_u16(),
            content_type: text(header::CONTENT_TYPE),
            cache_control: text(header::CACHE_CONTROL),
            retry_after: text(header::RETRY_AFTER),
            content_length: text(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        });
        let mut body = res.into_body();
        loop {
            let frame = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame())
                .await
                .map_err(|_| format!("{} paused its answer too long", ep.authority))?;
            match frame {
                None => return Ok(()),
                Some(Err(e)) => return Err(format!("reading from {}: {e}", ep.authority)),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        if !data.is_empty() {
                            answer.push(data)?;
                        }
                    }
                }
            }
        }
    }
}
