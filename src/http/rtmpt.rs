//! The RTMPT routes: thin handlers that have [`Tunnels`] admit a request
//! (its session and sequence number), then bound and read its body (under
//! the shared body budget) and hand it over. Only POST is routed here; other methods on these
//! paths fall through to the media routes (a stream may be called `send`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tracing::warn;

use super::HttpState;
use crate::transport::budget::{ByteBudget, Reservation};
use crate::transport::http::ClientAddr;
use crate::transport::rtmpt::protocol::{self, Command, CONTENT_TYPE};
use crate::transport::rtmpt::{TunnelError, Tunnels};

/// Adds the RTMPT routes; `fallback` serves other methods on those paths.
///
/// Tunnel replies carry no CORS headers (no browser speaks RTMPT): librtmp
/// scans a reply's head for `Content-` followed by `length:`, and nothing
/// that is not the length should come before it.
pub fn routes<H, T>(router: Router<HttpState>, fallback: H) -> Router<HttpState>
where
    H: axum::handler::Handler<T, HttpState> + Clone,
    T: 'static,
{
    let no_cors = || axum::middleware::map_response(no_cors);
    router
        .route(
            "/open/{n}",
            post(open).route_layer(no_cors()).fallback(fallback.clone()),
        )
        .route(
            "/fcs/ident2",
            post(ident2)
                .route_layer(no_cors())
                .fallback(fallback.clone()),
        )
        .route(
            "/{cmd}/{id}/{seq}",
            post(command).route_layer(no_cors()).fallback(fallback),
        )
}

async fn no_cors(mut res: Response) -> Response {
    res.extensions_mut().insert(crate::api::NoCors);
    res
}

fn fcs_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h
}

fn error(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-cache")],
        format!("{why}\n"),
    )
        .into_response()
}

/// Why a body was not read.
enum BodyRefusal {
    TooLarge,
    /// The shared budget (`http.body_budget_bytes`) is spent.
    Budget,
    Unreadable(String),
}

impl BodyRefusal {
    fn response(&self, max: usize) -> Response {
        match self {
            BodyRefusal::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("RTMPT request body larger than {max} bytes"),
            ),
            BodyRefusal::Budget => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server busy: too many request bodies in progress",
            ),
            BodyRefusal::Unreadable(e) => error(StatusCode::BAD_REQUEST, format!("body: {e}")),
        }
    }

    fn reason(&self, max: usize) -> String {
        match self {
            BodyRefusal::TooLarge => format!("body larger than {max} bytes"),
            BodyRefusal::Budget => {
                "request bodies in progress past http.body_budget_bytes".to_string()
            }
            BodyRefusal::Unreadable(e) => format!("body unreadable: {e}"),
        }
    }
}

/// Reads a body of at most `max` bytes, under the shared body budget: a
/// declared length is reserved before the first byte is read, chunks of a
/// body without one as they come. The reservation is held until the
/// caller is done with the body.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    budget: &ByteBudget,
) -> Result<(Bytes, Reservation), BodyRefusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyRefusal::TooLarge);
    }
    let mut reservation = budget.empty();
    if let Some(n) = declared {
        // Bounded by `max` just above.
        if !reservation.grow_to(n as usize) {
            return Err(BodyRefusal::Budget);
        }
    }
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyRefusal::Unreadable(e.to_string()))?;
        if buf.len() + chunk.len() > max {
            return Err(BodyRefusal::TooLarge);
        }
        if !reservation.grow_to(buf.len() + chunk.len()) {
            return Err(BodyRefusal::Budget);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf.freeze(), reservation))
}

fn tunnels(state: &HttpState) -> Option<&Arc<Tunnels>> {
    state.tunnels.as_ref()
}

/// `POST /open/1` → `<session id>\n`.
async fn open(
    State(state): State<HttpState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    req: Request,
) -> Response {
    let Some(t) = tunnels(&state) else {
        return error(StatusCode::NOT_FOUND, "RTMPT is disabled");
    };
    let (parts, body) = req.into_parts();
    let max = t.max_body_bytes();
    let _body = match read_body(&parts.headers, body, max, t.body_budget()).await {
        Ok(b) => b,
        Err(r) => {
            warn!(%peer, proto = state.tunnel_proto, "RTMPT open refused: {}", r.reason(max));
            return r.response(max);
        }
    };
    match t.open(peer, state.tunnel_proto) {
        Ok(id) => (StatusCode::OK, fcs_headers(), format!("{id}\n")).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Flash asks `/fcs/ident2` first; a 404 tells it to go on (as FMS and Red5
/// without an ident answer).
async fn ident2() -> Response {
    (StatusCode::NOT_FOUND, fcs_headers()).into_response()
}

/// `POST /{send,idle,close}/<id>/<seq>`.
async fn command(
    State(state): State<HttpState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    Path((cmd, id, seq)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let Some(t) = tunnels(&state) else {
        return error(StatusCode::NOT_FOUND, "RTMPT is disabled");
    };
    let Some(cmd) = Command::parse(&cmd) else {
        return error(StatusCode::NOT_FOUND, "no such RTMPT command");
    };
    let proto = state.tunnel_proto;
    let Some(seq) = protocol::parse_seq(&seq) else {
        warn!(%peer, proto, "RTMPT {} refused: bad sequence number", cmd.name());
        return error(StatusCode::BAD_REQUEST, "bad RTMPT sequence number");
    };
    if !protocol::plausible_session_id(&id) {
        warn!(%peer, proto, "RTMPT {} refused: malformed session id", cmd.name());
        return error(StatusCode::NOT_FOUND, TunnelError::UnknownSession);
    }
    // The session and the sequence number first: a request for a session
    // that does not exist (or out of order) is refused before a byte of its
    // body is read, so it costs no memory.
    let refused = |e: TunnelError| {
        warn!(%peer, proto, session = &id[..8], "RTMPT {} refused: {e}", cmd.name());
        let status = match e {
            TunnelError::UnknownSession => StatusCode::NOT_FOUND,
            TunnelError::Sequence(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(status, e)
    };
    let admitted = match t.admit(cmd, &id, seq).await {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    let (parts, body) = req.into_parts();
    let max = t.max_body_bytes();
    let (body, _reservation) = match read_body(&parts.headers, body, max, t.body_budget()).await {
        Ok(b) => b,
        Err(r) => {
            warn!(%peer, proto, session = &id[..8], "RTMPT {} refused: {}", cmd.name(), r.reason(max));
            return r.response(max);
        }
    };
    match admitted.finish(body).await {
        Ok(reply) => (StatusCode::OK, fcs_headers(), reply).into_response(),
        Err(e) => refused(e),
    }
}
