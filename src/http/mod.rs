//! The HTTP side (axum): HLS playlists, the DASH MPD and CMAF segments from
//! the packager's in-memory store, the time endpoint DASH clients sync to,
//! health, and the RTMPT tunnel. The same router serves HTTP and HTTPS.
//!
//! Media URLs are `/{app}/{key…}/{resource}`, laid out and parsed by
//! `package::urls`. What a media URL answers (body, content type, cache
//! policy) is the packager's decision (`Store::serve`); this side routes,
//! checks signed URLs, compresses and writes the headers.

pub mod rtmpt;

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::package::serve::{CachePolicy, Payload, Refused};
use crate::package::service::Store;
use crate::package::urls::{self, Directives, Resource};
use crate::transport::http::ClientAddr;
use crate::transport::rtmpt::Tunnels;
use crate::viewers::{Fetch, HttpProtocol, Viewers};

/// Path of the UTC time endpoint the MPD's `<UTCTiming>` points at.
pub const TIME_PATH: &str = "/time";

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    /// RTMPT sessions (`None`: RTMPT is off), shared by HTTP and HTTPS.
    pub tunnels: Option<Arc<Tunnels>>,
    /// How tunnelled connections are labelled in logs: `rtmpt` on the HTTP
    /// listener, `rtmpts` on the HTTPS one.
    pub tunnel_proto: &'static str,
    /// The listener's URL scheme (`http`, `https`), for the absolute time
    /// URL in the MPD.
    pub scheme: &'static str,
    /// The REST API (`None`: off).
    pub api: Option<Arc<crate::api::ApiState>>,
    /// Signed-URL checks on media (`auth.url_secret`).
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// `/readyz`: true while the listeners are up and not shutting down.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// `/metrics` (`None`: off). Shared: the state is cloned for every
    /// request, and a low-latency player makes ~20 a second.
    pub metrics: Option<Arc<crate::metrics::Sources>>,
    /// `api.token`, which `/metrics` needs too (`None`: loopback only).
    pub access_token: Option<Arc<str>>,
    /// HLS and DASH viewers, recorded by the media route.
    pub viewers: Viewers,
    /// Told of every media request's stream (wakes an on-demand pulled
    /// source); true: the stream is starting, a request that finds
    /// nothing is answered 503 with `Retry-After` instead of 404.
    pub wake: Option<Wake>,
    /// Video on demand: keys under its application name are its files.
    pub vod: Option<Arc<crate::vod::Library>>,
    /// In cluster mode: streams another node owns are answered from it.
    pub edge: Option<crate::edge::Edge>,
}

/// See [`HttpState::wake`].
pub type Wake = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl HttpState {
    pub fn new(store: Store) -> HttpState {
        HttpState {
            store,
            tunnels: None,
            tunnel_proto: "rtmpt",
            scheme: "http",
            api: None,
            auth: None,
            ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            metrics: None,
            access_token: None,
            viewers: Viewers::default(),
            wake: None,
            vod: None,
            edge: None,
        }
    }
}

/// The router. Serve it with `into_make_service_with_connect_info::<ClientAddr>()`
/// (`transport::http::ClientAddr`): the RTMPT routes log the client.
pub fn router(state: HttpState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(TIME_PATH, get(time));
    if state.metrics.is_some() {
        router = router.route("/metrics", get(metrics_page));
    }
    if state.tunnels.is_some() {
        router = rtmpt::routes(router, media);
    }
    if let Some(api) = &state.api {
        router = router.nest(crate::api::PREFIX, crate::api::router(Arc::clone(api)));
    }
    // The web console at `/` (its assets are exact two-segment paths, never
    // media URLs).
    router = crate::console::routes(router);
    router
        .fallback(media)
        .with_state(state)
        .layer(axum::middleware::map_response(cors))
        .layer(axum::middleware::from_fn(count_request))
}

/// `/readyz`: 200 once every listener is up, 503 before and while
/// shutting down (a load balancer stops sending new clients).
async fn readyz(State(state): State<HttpState>) -> Response {
    if state.ready.load(std::sync::atomic::Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `/metrics`, behind the API's guard: stream names and counts are not
/// for everyone.
async fn metrics_page(State(state): State<HttpState>, req: Request) -> Response {
    let Some(src) = state.metrics else {
        return not_found("metrics");
    };
    if let Err(e) = crate::api::check_access(state.access_token.as_deref(), &req) {
        return e.into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::metrics::render(&src),
    )
        .into_response()
}

/// Counts every request by route and status (and times media ones).
async fn count_request(req: Request, next: axum::middleware::Next) -> Response {
    let route = route_of(req.uri().path());
    if req
        .headers()
        .contains_key(crate::edge::upstream::NODE_HEADER)
    {
        crate::metrics::peer_request(route);
    }
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    crate::metrics::http_request(route, res.status().as_u16(), started.elapsed());
    res
}

/// A request's route, from a small fixed set (bounded label values).
pub fn route_of(path: &str) -> &'static str {
    match path {
        "/metrics" => return "metrics",
        "/healthz" | "/readyz" => return "health",
        TIME_PATH => return "time",
        _ => {}
    }
    if path.starts_with(crate::api::PREFIX) {
        return "api";
    }
    if ["/open/", "/send/", "/idle/", "/close/", "/fcs/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        return "rtmpt";
    }
    match urls::parse(path) {
        Some((_, Resource::Multivariant | Resource::MediaPlaylist(_))) => "playlist",
        Some((_, Resource::Mpd)) => "mpd",
        Some((_, Resource::Init(..))) => "init",
        Some((_, Resource::Segment(..))) => "segment",
        Some((_, Resource::Part(..))) => "part",
        None => "other",
    }
}

/// Browser players load from other origins: every media response allows
/// it (the API's do not).
async fn cors(mut res: Response) -> Response {
    if res.extensions().get::<crate::api::NoCors>().is_some() {
        return res;
    }
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Length, Date"),
    );
    res
}

/// `urn:mpeg:dash:utc:http-iso:2014`: the current time, ISO 8601 in UTC.
async fn time() -> Response {
    let mut res = crate::timefmt::rfc3339_millis(SystemTime::now()).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A media request the store refused.
fn refused(r: Refused) -> Response {
    match r {
        Refused::NotFound(missing) => not_found(missing.what()),
        Refused::BadRequest(why) => (
            StatusCode::BAD_REQUEST,
            [(header::CACHE_CONTROL, "no-store")],
            format!("{why}\n"),
        )
            .into_response(),
        Refused::Unavailable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::RETRY_AFTER, "1"),
            ],
            format!("{why}\n"),
        )
            .into_response(),
    }
}

/// Why a file under the VOD namespace is not served.
fn vod_refused(key: &str, e: crate::vod::VodError) -> Response {
    use crate::vod::VodError;
    let status = match &e {
        VodError::NotFound | VodError::Missing(_) => StatusCode::NOT_FOUND,
        VodError::Forbidden(_) => StatusCode::FORBIDDEN,
        VodError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        VodError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::FORBIDDEN {
        tracing::warn!(stream = %key, "on-demand request refused: {e}");
    }
    (
        status,
        [(header::CACHE_CONTROL, "no-cache")],
        format!("{key}: {e}\n"),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-cache")],
        format!("{what} not found\n"),
    )
        .into_response()
}

/// A media URL: the store's answer as a response.
async fn media(State(state): State<HttpState>, req: Request) -> Response {
    let method = req.method().clone();
    if method == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD, OPTIONS")],
        )
            .into_response();
    }
    let Some((key, resource)) = urls::parse(req.uri().path()) else {
        return not_found("resource");
    };
    // Signed URLs: checked before anything about the stream is revealed.
    let mut carry_query = None;
    if let Some(secret) = state
        .auth
        .as_ref()
        .and_then(|a| a.policy().url_secret.clone())
    {
        let now = crate::timefmt::unix_secs(SystemTime::now());
        match crate::auth::signed::verify(&secret, &key, req.uri().query(), now) {
            Ok(q) => carry_query = Some(q),
            Err(e) => {
                return (
                    StatusCode::FORBIDDEN,
                    [(header::CACHE_CONTROL, "no-store")],
                    format!("signed URL required: {e}\n"),
                )
                    .into_response()
            }
        }
    }
    let gzip = accepts_gzip(req.headers());
    let head = method == Method::HEAD;
    let absolute_time = (resource == Resource::Mpd)
        .then(|| request_authority(&req))
        .flatten()
        .map(|host| format!("{}://{host}{TIME_PATH}", state.scheme));
    let time: Vec<&str> = absolute_time
        .iter()
        .map(String::as_str)
        .chain([TIME_PATH])
        .collect();
    let directives = match Directives::parse(req.uri().query()) {
        Ok(d) => d,
        Err(e) => return refused(Refused::BadRequest(e.to_string())),
    };
    let vod = state.vod.as_ref().and_then(|v| Some((v, v.path_of(&key)?)));
    let from_node = req
        .headers()
        .contains_key(crate::edge::upstream::NODE_HEADER);
    if let (Some(edge), None, false) = (&state.edge, &vod, from_node) {
        if let crate::edge::Route::Owner(owner) = edge.route(&key).await {
            let path_and_query = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path(), |p| p.as_str())
                .to_string();
            let ask = Forwarded {
                path_and_query,
                host: request_authority(&req),
                route: route_of(req.uri().path()),
                head,
            };
            let res = forward(edge, &owner, ask, &key).await;
            if res.status().is_success() {
                record_viewer(&state.viewers, &req, &key, resource, FORWARDED_TARGET);
            }
            return res;
        }
    }
    let served = if let Some((library, name)) = vod {
        match library.answer(name, resource, &time).await {
            Ok(served) => served,
            Err(e) => return vod_refused(&key, e),
        }
    } else {
        let waking = state.wake.as_ref().is_some_and(|wake| wake(&key));
        match state.store.answer(&key, resource, directives, &time).await {
            Ok(served) => served,
            Err(Refused::NotFound(_)) if waking => {
                return refused(Refused::Unavailable(
                    "the stream is starting (an on-demand source): try again shortly",
                ))
            }
            Err(r) => return refused(r),
        }
    };
    // Another node fetching for its viewers is not a viewer here (they
    // are counted there).
    if !from_node {
        record_viewer(&state.viewers, &req, &key, resource, served.target_duration);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(served.content_type),
    );
    headers.insert(header::CACHE_CONTROL, cache_control(served.cache));
    let chunks = match served.payload {
        Payload::Text(text) => {
            let text = match (&carry_query, resource) {
                (Some(q), Resource::Mpd) => crate::auth::signed::sign_mpd(&text, q),
                (Some(q), _) => crate::auth::signed::sign_playlist(&text, q),
                (None, _) => text,
            };
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            if gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                vec![gzip_bytes(text.as_bytes())]
            } else {
                vec![Bytes::from(text)]
            }
        }
        Payload::Chunks(c) => c,
        // A segment being made: chunked, each part as it comes.
        Payload::Growing(g) => {
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(g.into_stream())
            };
            return (StatusCode::OK, headers, body).into_response();
        }
    };
    let body = whole_body(chunks, head, &mut headers);
    (StatusCode::OK, headers, body).into_response()
}

/// The target duration a forwarded stream's viewers are counted with (the
/// owner's is not known here; viewers are counted over a few of them).
const FORWARDED_TARGET: u32 = 2;

/// A body known whole: its chunks as they are (nothing for HEAD), its
/// length in `headers`.
fn whole_body(chunks: Vec<Bytes>, head: bool, headers: &mut HeaderMap) -> Body {
    let len: usize = chunks.iter().map(|c| c.len()).sum();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if head {
        return Body::empty();
    }
    Body::from_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<Bytes, Infallible>),
    ))
}

/// What a forwarded request asks (taken from it before any wait: a request
/// is not `Sync`).
struct Forwarded {
    path_and_query: String,
    host: Option<String>,
    route: &'static str,
    head: bool,
}

/// A media request for a stream `owner` publishes: its answer, through the
/// edge's cache (see `edge`).
async fn forward(
    edge: &crate::edge::Edge,
    owner: &crate::cluster::Holder,
    ask: Forwarded,
    key: &str,
) -> Response {
    let Forwarded {
        path_and_query,
        host,
        route,
        head,
    } = ask;
    let (answer, outcome) = match edge.get(owner, &path_and_query, host.as_deref()) {
        Ok(a) => a,
        Err(why) => {
            crate::metrics::edge_request(route, "refused");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CACHE_CONTROL, "no-store"),
                    (header::RETRY_AFTER, "1"),
                ],
                format!("{why}: try again shortly\n"),
            )
                .into_response();
        }
    };
    let head_of = match answer.head().await {
        Ok(h) => h,
        Err(why) => {
            crate::metrics::edge_request(route, "failed");
            edge.forget_owner(key);
            tracing::warn!(
                stream = key,
                owner = owner.node,
                "the owner did not answer: {why}"
            );
            return (
                StatusCode::BAD_GATEWAY,
                [
                    (header::CACHE_CONTROL, "no-store"),
                    (header::RETRY_AFTER, "1"),
                ],
                format!(
                    "the node that publishes {key} ({}) did not answer\n",
                    owner.node
                ),
            )
                .into_response();
        }
    };
    crate::metrics::edge_request(route, outcome.label());
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::CONTENT_TYPE, &head_of.content_type),
        (header::CACHE_CONTROL, &head_of.cache_control),
        (header::RETRY_AFTER, &head_of.retry_after),
    ] {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, v);
        }
    }
    let status = StatusCode::from_u16(head_of.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some((chunks, _)) = answer.complete() {
        let body = whole_body(chunks, head, &mut headers);
        return (status, headers, body).into_response();
    }
    if let Some(len) = head_of.content_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if head {
        return (status, headers, Body::empty()).into_response();
    }
    // Still coming: streamed as it grows, each reader at its own pace.
    let body = futures_util::stream::unfold(Some((answer, 0usize)), |next| async move {
        use crate::edge::answer::Read;
        let (answer, i) = next?;
        match answer.read(i).await {
            Read::Chunk(c) => Some((Ok(c), Some((answer, i + 1)))),
            Read::End => None,
            Read::Failed(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    (status, headers, Body::from_stream(body)).into_response()
}

/// Counts the client among `key`'s HLS or DASH viewers (it was served
/// `resource`). A hash of its address and User-Agent and a short lock: see
/// `viewers` for the cost.
fn record_viewer(viewers: &Viewers, req: &Request, key: &str, resource: Resource, target: u32) {
    let Some(ConnectInfo(ClientAddr(peer))) = req.extensions().get::<ConnectInfo<ClientAddr>>()
    else {
        return;
    };
    let fetch = match resource {
        Resource::Multivariant | Resource::MediaPlaylist(_) => Fetch::Manifest(HttpProtocol::Hls),
        Resource::Mpd => Fetch::Manifest(HttpProtocol::Dash),
        Resource::Init(..) | Resource::Segment(..) | Resource::Part(..) => Fetch::Media,
    };
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .map(HeaderValue::as_bytes);
    let client = viewers.client(peer.ip(), ua);
    viewers.record(
        key,
        client,
        fetch,
        std::time::Duration::from_secs(target.into()),
        std::time::Instant::now(),
    );
}

/// The host (and port) the client asked for: HTTP/1.1's `Host`, or
/// HTTP/2's `:authority`. `None` when absent or not a plain host name or
/// address (it is echoed into the MPD). Forwarded headers are not trusted:
/// a shared cache would hand a forged one to every client.
fn request_authority(req: &Request) -> Option<String> {
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok()?,
        None => req.uri().authority()?.as_str(),
    };
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    plain.then(|| host.to_string())
}
/// `Cache-Control` for what the store answered.
fn cache_control(policy: CachePolicy) -> HeaderValue {
    match policy {
        CachePolicy::Immutable => HeaderValue::from_static("public, max-age=31536000, immutable"),
        // Stored, but revalidated before every reuse.
        CachePolicy::Live { max_age } if max_age.is_zero() => HeaderValue::from_static("no-cache"),
        // Digits and ASCII: always a valid value; never cache otherwise.
        CachePolicy::Live { max_age } => {
            HeaderValue::try_from(format!("max-age={}, must-revalidate", max_age.as_secs()))
                .unwrap_or(HeaderValue::from_static("no-cache"))
        }
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|e| e.trim().split(';').next() == Some("gzip"))
        })
}

fn gzip_bytes(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    Bytes::from(enc.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MPD's absolute time URL comes from `Host` (HTTP/1.1) or the
    /// `:authority` (HTTP/2, in the URI); anything else is not echoed.
    #[test]
    fn request_authority_is_a_plain_host() {
        let req = |uri: &str, host: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(h) = host {
                b = b.header(header::HOST, h);
            }
            b.body(Body::empty()).unwrap()
        };
        let host = |uri, h| request_authority(&req(uri, h));
        assert_eq!(
            host("/live/k/manifest.mpd", Some("127.0.0.1:8080")).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            host("/x", Some("[::1]:8443")).as_deref(),
            Some("[::1]:8443")
        );
        assert_eq!(
            host("/x", Some("cdn.example-1.net")).as_deref(),
            Some("cdn.example-1.net")
        );
        assert_eq!(
            host("https://h2.example:8443/x", None).as_deref(),
            Some("h2.example:8443")
        );
        assert_eq!(host("/x", None), None);
        assert_eq!(host("/x", Some("")), None);
        assert_eq!(host("/x", Some("a\"><b")), None);
        assert_eq!(host("/x", Some("user@host")), None);
        assert_eq!(host("/x", Some(&"a".repeat(256))), None);
    }

    async fn call(
        app: &Router,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    /// The store's answer as a response: types, cache policies, CORS,
    /// compression and HEAD, exactly.
    #[tokio::test]
    async fn media_responses_carry_what_the_store_answered() {
        let live = crate::package::serve::test_support::Live::new();
        let _p = live.publish("live/h", 0..9000);
        let first = {
            let stream = live.store.get("live/h").unwrap();
            let snap = stream.lock().unwrap().snapshot();
            snap.video.unwrap().segments[0].number
        };
        let app = router(HttpState::new(live.store.clone()));

        let (status, h, plain) = call(&app, Method::GET, "/live/h/video.m3u8", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h["content-type"], "application/vnd.apple.mpegurl");
        // Low latency (the default): a playlist is stale within a part.
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["content-length"], plain.len().to_string().as_str());
        assert!(h.get("content-encoding").is_none());
        assert!(plain.starts_with(b"#EXTM3U\n"));

        let gzip = [(header::ACCEPT_ENCODING, "gzip")];
        let (_, h, packed) = call(&app, Method::GET, "/live/h/video.m3u8", &gzip).await;
        assert_eq!(h["content-encoding"], "gzip");
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&packed[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, plain);

        let segment = format!("/live/h/video/seg-{first}.m4s");
        let (status, h, body) = call(&app, Method::GET, &segment, &gzip).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h["content-type"], "video/mp4");
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
        assert!(h.get("vary").is_none() && h.get("content-encoding").is_none());
        assert_eq!(h["content-length"], body.len().to_string().as_str());
        let (status, h, empty) = call(&app, Method::HEAD, &segment, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(empty.is_empty());
        assert_eq!(h["content-length"], body.len().to_string().as_str());

        let host = [(header::HOST, "cdn.example:8080")];
        let (_, h, mpd) = call(&app, Method::GET, "/live/h/manifest.mpd", &host).await;
        assert_eq!(h["content-type"], "application/dash+xml");
        assert_eq!(h["cache-control"], "no-cache");
        let mpd = String::from_utf8(mpd.to_vec()).unwrap();
        let timing = "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=";
        assert!(
            mpd.contains(&format!(
                "{timing}\"http://cdn.example:8080/time\"/>\n  {timing}\"/time\"/>"
            )),
            "{mpd}"
        );

        let (status, h, body) = call(&app, Method::GET, "/live/none/index.m3u8", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(&body[..], b"stream not found\n");
        let (status, _, body) = call(&app, Method::GET, "/live/h/audio.m3u8", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(&body[..], b"track not found\n");
    }

    #[test]
    fn gzip_accepted() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }
}
