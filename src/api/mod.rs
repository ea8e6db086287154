//! The REST API under `/api/v1` (JSON): live streams, relays and pulled
//! sources created, listed and deleted at run time, and recordings
//! (started and stopped on a live stream, listed, deleted). The OpenAPI 3.1 document is generated
//! from the handlers (utoipa) and served at `/api/v1/openapi.json`.
//!
//! Access: with `api.token` set, every call needs `Authorization: Bearer
//! <token>`; without it, only loopback clients are answered, and only with
//! a loopback or `localhost` Host (a web page cannot reach the API through
//! DNS rebinding). API replies carry no CORS headers: browsers on other
//! origins cannot read them.

mod model;
mod settings;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::egress::{CreateError, NewRelay, RelayInfo, Relays};
use crate::hub::Hub;
use crate::sources::SourceInfo;
use crate::transport::http::ClientAddr;
pub use model::*;
pub use settings::Settings;

/// Where the API is mounted.
pub const PREFIX: &str = "/api/v1";

/// Longest `tls_ca_file` path accepted.
const MAX_PATH_LEN: usize = 4096;

/// What the handlers share.
pub struct ApiState {
    pub hub: Hub,
    pub relays: Relays,
    /// `None`: loopback clients only.
    pub token: Option<String>,
    pub max_body_bytes: usize,
    /// Transcode jobs, shown in the stream views.
    pub transcoder: Option<crate::transcode::Transcoder>,
    /// HLS and DASH viewers (the HTTP routes record them).
    pub viewers: crate::viewers::Viewers,
    /// The SRT listener's connections (empty when it is off).
    pub srt: crate::srt::SrtSessions,
    /// Pulled sources (`None`: not offered).
    pub sources: Option<crate::sources::Sources>,
    /// Recordings (`None`: not offered).
    pub recorder: Option<crate::record::Recorder>,
    /// The cluster (`None`: a single node): `/cluster`, and calls about a
    /// stream another node publishes passed to that node.
    pub edge: Option<crate::edge::Edge>,
    /// The packaged streams (`None`: no memory figures in stream views).
    pub store: Option<crate::package::service::Store>,
}

impl ApiState {
    /// A stream's view, with its transcode job.
    fn stream_view(&self, s: crate::hub::StreamInfo, now: Instant) -> StreamView {
        let relays = self.relays.of_stream(&s.key);
        let transcode = self.transcoder.as_ref().and_then(|t| t.status(&s.key));
        let http = self.viewers.count(&s.key, now);
        let recording = self.recorder.as_ref().and_then(|r| r.status_of(&s.key));
        let package_memory_bytes = self
            .store
            .as_ref()
            .and_then(|st| st.get(&s.key))
            .map(|p| p.memory_bytes());
        StreamView {
            transcode,
            recording,
            package_memory_bytes,
            ..StreamView::new(s, relays, http, now)
        }
    }
}

/// Marks a response that must not get the media routes' CORS headers (the
/// API's, and the RTMPT tunnel's).
#[derive(Clone, Copy, Debug)]
pub struct NoCors;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "castgate API",
        description = "Live streams, relays, pulled sources (RTMP, RTMPS, SRT) and recordings of a castgate gateway."
    ),
    servers((url = "/api/v1")),
    paths(get_stream, start_recording, stop_recording),
    modifiers(&Security),
    tags((name = "streams"), (name = "relays"), (name = "sources"), (name = "srt"), (name = "recordings"))
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The router, to be nested at [`PREFIX`] in a router of any state.
pub fn router<S: Clone + Send + Sync + 'static>(state: Arc<ApiState>) -> Router<S> {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_streams))
        .routes(routes!(get_cluster))
        .routes(routes!(list_relays, create_relay))
        .routes(routes!(get_relay, delete_relay))
        .routes(routes!(list_sources, create_source))
        .routes(routes!(get_source, delete_source))
        .routes(routes!(list_srt))
        .routes(routes!(list_recordings))
        .routes(routes!(get_recording, delete_recording))
        // Stream keys may hold slashes: a catch-all, documented above as
        // /streams/{app}/{key} and /streams/{app}/{key}/recording.
        .route(
            "/streams/{app}/{*key}",
            get(get_stream).post(start_recording).delete(stop_recording),
        )
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let doc = Arc::new(doc);
    let body_limit = state.max_body_bytes;
    router
        .route(
            "/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint") })
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            to_owner,
        ))
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// An error reply: `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"castgate\""),
            );
        }
        res
    }
}

/// `axum::Json` with the rejections as JSON errors: 400 for bad JSON, 415
/// without a JSON content type, 413 past the body limit, 422 for the wrong
/// fields.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The credentials of an `Authorization: Bearer <token>` header: the
/// scheme is case-insensitive (RFC 9110 §11.1), spaces after it skipped.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Access control, and no CORS headers on API replies.
async fn guard(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let mut res = match check_access(state.token.as_deref(), &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    res.extensions_mut().insert(NoCors);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The API's guard, also in front of `/metrics`: with a token, the
/// request must carry it; without one, only a loopback client asking for a
/// loopback host is answered.
pub fn check_access(token: Option<&str>, req: &Request) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let Some(auth) = req.headers().get(header::AUTHORIZATION) else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing Authorization: Bearer <token>",
                ));
            };
            let given = auth.to_str().ok().and_then(bearer_token).unwrap_or("");
            if crate::auth::constant_time_eq(given.as_bytes(), token.as_bytes()) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "wrong bearer token",
                ))
            }
        }
        None => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<ClientAddr>>()
                .map(|c| c.0 .0);
            if !peer.is_some_and(|p| p.ip().is_loopback() || p.ip().to_canonical().is_loopback()) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "without api.token, only loopback clients are answered (set api.token to open this)",
                ));
            }
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()));
            if host.is_some_and(|h| !is_loopback_host(h)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "without api.token, only requests for a loopback host are answered",
                ));
            }
            Ok(())
        }
    }
}

/// The cluster: its live nodes and every stream with its owner, from Redis
/// (the same on every node).
#[utoipa::path(
    get,
    path = "/cluster",
    tag = "streams",
    responses(
        (status = 200, description = "Nodes and streams (empty lists on a single node)", body = ClusterView),
        (status = 503, description = "Redis does not answer", body = ErrorBody),
    )
)]
async fn get_cluster(State(state): State<Arc<ApiState>>) -> Result<Json<ClusterView>, ApiError> {
    let Some(cluster) = state.edge.as_ref().map(|e| e.cluster()) else {
        return Ok(Json(ClusterView {
            enabled: false,
            node: String::new(),
            nodes: Vec::new(),
            streams: Vec::new(),
        }));
    };
    let unreachable =
        |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("Redis: {e}"));
    let nodes = cluster.nodes().await.map_err(unreachable)?;
    let streams = cluster.streams().await.map_err(unreachable)?;
    let me = cluster.node();
    Ok(Json(ClusterView {
        enabled: true,
        node: me.to_string(),
        nodes: nodes
            .into_iter()
            .map(|n| ClusterNode {
                node: n.node,
                http: n.http,
                rtmp: n.rtmp,
                streams: n.streams,
                viewers: n.viewers,
            })
            .collect(),
        streams: streams
            .into_iter()
            .map(|(stream, h)| ClusterStream {
                here: h.node == me,
                stream,
                node: h.node,
                token: h.token,
            })
            .collect(),
    }))
}

/// How long a call passed to another node may take.
const FORWARD_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The stream a call is about, when it names one: `/streams/{app}/{key…}`
/// (its view, its recording) and a relay's creation (the `stream` of its
/// body).
fn stream_of_call(method: &axum::http::Method, path: &str, body: &[u8]) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/streams/") {
        let key = rest.strip_suffix("/recording").unwrap_or(rest);
        return Some(key.trim_end_matches('/').to_string());
    }
    if method == axum::http::Method::POST && path == "/relays" {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        return v.get("stream")?.as_str().map(str::to_string);
    }
    None
}

/// In cluster mode, a call about a stream another node publishes is
/// passed to that node (its relays, recordings and view are there), with
/// the caller's `Authorization`; its answer comes back as it is. A call
/// that comes from a node is never passed on again.
async fn to_owner(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let Some(edge) = state.edge.clone() else {
        return next.run(req).await;
    };
    let named = req.uri().path().starts_with("/streams/")
        || (req.method() == axum::http::Method::POST && req.uri().path() == "/relays");
    if !named
        || req
            .headers()
            .contains_key(crate::edge::upstream::NODE_HEADER)
    {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", state.max_body_bytes),
            )
            .into_response()
        }
    };
    let owner = match stream_of_call(&parts.method, parts.uri.path(), &body) {
        Some(stream) => match edge.route(&stream).await {
            crate::edge::Route::Owner(h) => Some((stream, h)),
            crate::edge::Route::Local => None,
        },
        None => None,
    };
    let Some((stream, owner)) = owner else {
        return next
            .run(Request::from_parts(parts, axum::body::Body::from(body)))
            .await;
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let url = format!("{}{PREFIX}{path}", owner.http.trim_end_matches('/'));
    let ep = match crate::webhooks::client::Endpoint::parse(&url) {
        Ok(ep) => ep,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_GATEWAY, format!("node {}: {e}", owner.node))
                .into_response()
        }
    };
    let mut headers = vec![(
        crate::edge::upstream::NODE_HEADER,
        edge.cluster().node().to_string(),
    )];
    if let Some(auth) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        headers.push(("authorization", auth.to_string()));
    }
    tracing::info!(
        stream = short(&stream),
        owner = owner.node,
        method = %parts.method,
        "API call passed to the node that publishes the stream"
    );
    match crate::webhooks::client::request(&ep, parts.method.clone(), &headers, body, FORWARD_LIMIT)
        .await
    {
        Ok(reply) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut res = (status, reply.body).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(v) = HeaderValue::from_str(&owner.node) {
                res.headers_mut().insert("x-castgate-owner", v);
            }
            res
        }
        Err(e) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "node {} (which publishes {}) did not answer: {e}",
                owner.node,
                short(&stream)
            ),
        )
        .into_response(),
    }
}

/// Live streams.
#[utoipa::path(
    get,
    path = "/streams",
    tag = "streams",
    responses(
        (status = 200, description = "Every stream with a publisher", body = StreamList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Not a loopback client (no api.token)", body = ErrorBody),
    )
)]
async fn list_streams(State(state): State<Arc<ApiState>>) -> Json<StreamList> {
    let now = Instant::now();
    let streams = state
        .hub
        .streams()
        .into_iter()
        .filter(|s| s.publisher.is_some())
        .map(|s| state.stream_view(s, now))
        .collect();
    Json(StreamList { streams })
}

/// One live stream.
#[utoipa::path(
    get,
    path = "/streams/{app}/{key}",
    tag = "streams",
    params(
        ("app" = String, Path, description = "Application, e.g. `live`"),
        ("key" = String, Path, description = "Stream name (may contain slashes)"),
    ),
    responses(
        (status = 200, description = "The stream", body = StreamView),
        (status = 404, description = "Not live", body = ErrorBody),
    )
)]
async fn get_stream(
    State(state): State<Arc<ApiState>>,
    Path((app, key)): Path<(String, String)>,
) -> Result<Json<StreamView>, ApiError> {
    let stream = format!("{app}/{key}");
    match state.hub.stream(&stream) {
        Some(s) if s.publisher.is_some() => Ok(Json(state.stream_view(s, Instant::now()))),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("stream {} is not live", short(&stream)),
        )),
    }
}

/// The SRT listener's connections: publishers and players, with libsrt's
/// counters (RTT, loss, retransmissions, bandwidth), refreshed every second.
#[utoipa::path(
    get,
    path = "/srt",
    tag = "srt",
    responses((status = 200, description = "Every SRT connection", body = SrtList))
)]
async fn list_srt(State(state): State<Arc<ApiState>>) -> Json<SrtList> {
    Json(SrtList {
        sessions: state.srt.list(),
    })
}

/// Every relay.
#[utoipa::path(
    get,
    path = "/relays",
    tag = "relays",
    responses((status = 200, description = "Every relay", body = RelayList))
)]
async fn list_relays(State(state): State<Arc<ApiState>>) -> Json<RelayList> {
    Json(RelayList {
        relays: state.relays.list(),
    })
}

/// Creates a relay. It may be created before its stream goes live: it
/// waits (`waiting`) and starts when the stream is published.
#[utoipa::path(
    post,
    path = "/relays",
    tag = "relays",
    request_body = CreateRelay,
    responses(
        (status = 201, description = "Created", body = RelayInfo,
         headers(("Location" = String, description = "/api/v1/relays/{id}"))),
        (status = 400, description = "Not JSON, or a target the egress policy refuses ([egress])", body = ErrorBody),
        (status = 409, description = "An identical relay exists, or the relay limit is reached", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Unknown scheme, unparsable URL, bad stream, bad TLS option", body = ErrorBody),
    )
)]
async fn create_relay(
    State(state): State<Arc<ApiState>>,
    ApiJson(req): ApiJson<CreateRelay>,
) -> Result<Response, ApiError> {
    if req
        .tls_ca_file
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > MAX_PATH_LEN)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("tls_ca_file must be a path of 1 to {MAX_PATH_LEN} bytes"),
        ));
    }
    let new = NewRelay {
        stream: req.stream,
        target: req.target,
        tls: crate::transport::tls_client::TlsOptions {
            ca_file: req.tls_ca_file,
            no_verify: req.tls_verify == Some(false),
        },
        legacy_only: req.legacy_only,
    };
    let relays = state.relays.clone();
    // Reading a CA file is blocking I/O.
    let created = tokio::task::spawn_blocking(move || relays.create(new))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match created {
        Ok(info) => {
            let location = format!("{PREFIX}/relays/{}", info.id);
            let mut res = (StatusCode::CREATED, Json(info)).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            Ok(res)
        }
        Err(e) => {
            let status = match e {
                CreateError::TooMany(_) | CreateError::Duplicate(_) => StatusCode::CONFLICT,
                CreateError::Egress(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}

/// A numeric id from a path (`what`: "relay", "source"); anything else is
/// no such thing.
fn path_id(what: &str, id: &str) -> Result<u64, ApiError> {
    id.parse::<u64>()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no {what} {}", short(id))))
}

/// One relay.
#[utoipa::path(
    get,
    path = "/relays/{id}",
    tag = "relays",
    params(("id" = u64, Path, description = "Relay id")),
    responses(
        (status = 200, description = "The relay", body = RelayInfo),
        (status = 404, description = "No such relay", body = ErrorBody),
    )
)]
async fn get_relay(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<RelayInfo>, ApiError> {
    let id = path_id("relay", &id)?;
    state
        .relays
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no relay {id}")))
}

/// Stops a relay (its destination sees the stream end) and forgets it.
#[utoipa::path(
    delete,
    path = "/relays/{id}",
    tag = "relays",
    params(("id" = u64, Path, description = "Relay id")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 404, description = "No such relay", body = ErrorBody),
    )
)]
async fn delete_relay(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id("relay", &id)?;
    if state.relays.delete(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no relay {id}"),
        ))
    }
}

fn sources(state: &ApiState) -> Result<&crate::sources::Sources, ApiError> {
    state
        .sources
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "pulled sources are not offered"))
}

/// Every pulled source.
#[utoipa::path(
    get,
    path = "/sources",
    tag = "sources",
    responses((status = 200, description = "Every pulled source", body = SourceList))
)]
async fn list_sources(State(state): State<Arc<ApiState>>) -> Result<Json<SourceList>, ApiError> {
    Ok(Json(SourceList {
        sources: sources(&state)?.list(),
    }))
}

/// Creates a pulled source: castgate fetches `url` (RTMP, RTMPS, or SRT
/// as a caller) and publishes it as `stream`, at once or, with
/// `on_demand`, while someone watches.
#[utoipa::path(
    post,
    path = "/sources",
    tag = "sources",
    request_body = CreateSource,
    responses(
        (status = 201, description = "Created", body = SourceInfo,
         headers(("Location" = String, description = "/api/v1/sources/{id}"))),
        (status = 400, description = "Not JSON, or a URL the egress policy refuses ([egress])", body = ErrorBody),
        (status = 409, description = "A source of this stream exists, or the source limit is reached", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Unknown scheme, unparsable URL, bad stream", body = ErrorBody),
    )
)]
async fn create_source(
    State(state): State<Arc<ApiState>>,
    ApiJson(req): ApiJson<CreateSource>,
) -> Result<Response, ApiError> {
    use crate::sources::CreateError;
    let new = crate::sources::NewSource {
        stream: req.stream,
        url: req.url,
        on_demand: req.on_demand,
    };
    match sources(&state)?.create(new) {
        Ok(info) => {
            let location = format!("{PREFIX}/sources/{}", info.id);
            let mut res = (StatusCode::CREATED, Json(info)).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            Ok(res)
        }
        Err(e) => {
            let status = match e {
                CreateError::TooMany(_) | CreateError::Duplicate(_) => StatusCode::CONFLICT,
                CreateError::Egress(_) => StatusCode::BAD_REQUEST,
                CreateError::Bad(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}

/// One pulled source.
#[utoipa::path(
    get,
    path = "/sources/{id}",
    tag = "sources",
    params(("id" = u64, Path, description = "Source id")),
    responses(
        (status = 200, description = "The source", body = SourceInfo),
        (status = 404, description = "No such source", body = ErrorBody),
    )
)]
async fn get_source(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<SourceInfo>, ApiError> {
    let id = path_id("source", &id)?;
    sources(&state)?
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no source {id}")))
}

/// Stops a pulled source (its stream ends) and forgets it.
#[utoipa::path(
    delete,
    path = "/sources/{id}",
    tag = "sources",
    params(("id" = u64, Path, description = "Source id")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 404, description = "No such source", body = ErrorBody),
    )
)]
async fn delete_source(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id("source", &id)?;
    if sources(&state)?.delete(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no source {id}"),
        ))
    }
}

fn recorder(state: &ApiState) -> Result<&crate::record::Recorder, ApiError> {
    state
        .recorder
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "recordings are not offered"))
}

/// The stream a `/streams/{app}/{key}/recording` path names.
fn recording_stream(app: &str, key: &str) -> Result<String, ApiError> {
    match key.strip_suffix("/recording") {
        Some(name) if !name.is_empty() => Ok(format!("{app}/{name}")),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET here; a recording is started and stopped at /streams/{app}/{key}/recording",
        )),
    }
}

/// Starts recording a live stream, until `DELETE` on the same URL or the
/// publish's end. The body is optional: `format` (`flv`), `path` (a path
/// template, as `[[record]] path`), `split_secs`, `split_bytes`; by
/// default FLV to `{app}/{key}/{date}-{time}.flv` under `recorder.dir`.
#[utoipa::path(
    post,
    path = "/streams/{app}/{key}/recording",
    tag = "recordings",
    params(
        ("app" = String, Path, description = "Application, e.g. `live`"),
        ("key" = String, Path, description = "Stream name (may contain slashes)"),
    ),
    request_body(content = Option<crate::record::StartOptions>, description = "Optional"),
    responses(
        (status = 201, description = "Started", body = crate::record::RecordingStatus),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 404, description = "The stream is not live", body = ErrorBody),
        (status = 409, description = "A recording started by the API runs for this stream", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "A body that is not application/json", body = ErrorBody),
        (status = 422, description = "Unknown format or field, bad path template or split", body = ErrorBody),
    )
)]
async fn start_recording(
    State(state): State<Arc<ApiState>>,
    Path((app, key)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    use crate::record::StartError;
    let stream = recording_stream(&app, &key)?;
    let recorder = recorder(&state)?;
    let options: crate::record::StartOptions = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || v.to_ascii_lowercase().ends_with("+json")
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            let status = if e.is_data() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError::new(status, format!("bad JSON body: {e}"))
        })?
    };
    let not_live = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("stream {} is not live", short(&stream)),
        )
    };
    let key = crate::stream_key::StreamKey::parse(&stream).map_err(|_| not_live())?;
    match recorder.start(&state.hub, &key, &options) {
        Ok(started) => Ok((StatusCode::CREATED, Json(started)).into_response()),
        Err(StartError::NotLive(_)) => Err(not_live()),
        Err(e @ StartError::Running(_)) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(StartError::Bad(e)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
    }
}

/// Stops the stream's recordings (the API's and the rules'): each
/// completes with what was written (`recording.completed`). A rule's
/// starts again with the next publish.
#[utoipa::path(
    delete,
    path = "/streams/{app}/{key}/recording",
    tag = "recordings",
    params(
        ("app" = String, Path, description = "Application, e.g. `live`"),
        ("key" = String, Path, description = "Stream name (may contain slashes)"),
    ),
    responses(
        (status = 200, description = "Stopped", body = RecordingsStopped),
        (status = 404, description = "No recording runs for this stream", body = ErrorBody),
    )
)]
async fn stop_recording(
    State(state): State<Arc<ApiState>>,
    Path((app, key)): Path<(String, String)>,
) -> Result<Json<RecordingsStopped>, ApiError> {
    let stream = recording_stream(&app, &key)?;
    let stopped = recorder(&state)?.stop(&stream);
    if stopped.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no recording of {} runs", short(&stream)),
        ));
    }
    Ok(Json(RecordingsStopped { stopped }))
}

/// Runs a recorder call that reads the disk off the async threads.
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(crate::record::Recorder) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let r = recorder(state)?.clone();
    tokio::task::spawn_blocking(move || f(r))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Every recording file under `recorder.dir`: finished, failed and being
/// written, oldest first, with where each plays on demand. A bounded scan
/// (`truncated` when the directory holds more than it reads); symbolic
/// links are not followed.
#[utoipa::path(
    get,
    path = "/recordings",
    tag = "recordings",
    responses((status = 200, description = "Every recording", body = RecordingList))
)]
async fn list_recordings(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<RecordingList>, ApiError> {
    let scan = blocking(&state, |r| r.list()).await?;
    Ok(Json(RecordingList {
        recordings: scan.files,
        truncated: scan.truncated,
    }))
}

/// One recording.
#[utoipa::path(
    get,
    path = "/recordings/{id}",
    tag = "recordings",
    params(("id" = String, Path, description = "Recording id (from the list)")),
    responses(
        (status = 200, description = "The recording", body = crate::record::RecordingFile),
        (status = 404, description = "No such recording", body = ErrorBody),
    )
)]
async fn get_recording(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<crate::record::RecordingFile>, ApiError> {
    let found = {
        let id = id.clone();
        blocking(&state, move |r| r.get(&id)).await?
    };
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no recording {}", short(&id)),
        )
    })
}

/// Deletes a finished recording's files (`recording.deleted`).
#[utoipa::path(
    delete,
    path = "/recordings/{id}",
    tag = "recordings",
    params(("id" = String, Path, description = "Recording id (from the list)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 409, description = "Being written: stop it first", body = ErrorBody),
    )
)]
async fn delete_recording(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    use crate::record::DeleteError;
    match blocking(&state, move |r| r.delete(&id)).await? {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(e @ DeleteError::NotFound(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e @ DeleteError::Writing(_)) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e @ DeleteError::Io(..)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// Client input echoed in a message, cut short.
fn short(s: &str) -> String {
    crate::text::short(s, 80)
}

/// For the OpenAPI document and replies.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests;
