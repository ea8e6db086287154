//! The API router in process: access rules, validation, OpenAPI. The e2e
//! tests drive it over HTTP with real streams.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::egress::RelaySettings;
use crate::hub::HubConfig;

fn app(token: Option<&str>) -> Router {
    app_with(
        token,
        Hub::new(HubConfig::default()),
        crate::record::Recorder::default(),
    )
}

fn app_with(token: Option<&str>, hub: Hub, recorder: crate::record::Recorder) -> Router {
    let relays = Relays::new(
        hub.clone(),
        RelaySettings {
            max_relays: 3,
            ..RelaySettings::default()
        },
        vec![],
        crate::webhooks::Webhooks::default(),
    );
    Router::new().nest(
        PREFIX,
        router(Arc::new(ApiState {
            hub,
            relays,
            token: token.map(String::from),
            max_body_bytes: 2048,
            transcoder: None,
            viewers: crate::viewers::Viewers::default(),
            srt: Default::default(),
            sources: None,
            recorder: Some(recorder),
            edge: None,
            store: None,
        })),
    )
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: serde_json::Value,
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    from: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    let peer: SocketAddr = from.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(ClientAddr(peer)));
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {bytes:?}"))
    };
    Reply {
        status,
        headers,
        json,
    }
}

const LOCAL: &str = "127.0.0.1:5000";
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn loopback_only_without_a_token() {
    let app = app(None);
    let r = call(&app, Method::GET, "/api/v1/relays", LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["relays"], serde_json::json!([]));
    assert_eq!(
        call(&app, Method::GET, "/api/v1/streams", "[::1]:5000", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let r = call(
        &app,
        Method::GET,
        "/api/v1/relays",
        "10.1.2.3:5000",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json["error"].as_str().unwrap().contains("loopback"));
    // DNS rebinding: a loopback client asking for another host.
    let r = call(
        &app,
        Method::GET,
        "/api/v1/relays",
        LOCAL,
        &[("host", "evil.example:8080")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for host in ["localhost:8080", "127.0.0.1", "[::1]:80"] {
        let r = call(
            &app,
            Method::GET,
            "/api/v1/relays",
            LOCAL,
            &[("host", host)],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn bearer_token_when_set() {
    let app = app(Some("s3cret"));
    let r = call(&app, Method::GET, "/api/v1/relays", LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The recordings' routes too.
    for (m, p) in [
        (Method::GET, "/api/v1/recordings"),
        (Method::GET, "/api/v1/recordings/YQ"),
        (Method::DELETE, "/api/v1/recordings/YQ"),
        (Method::POST, "/api/v1/streams/live/a/recording"),
        (Method::DELETE, "/api/v1/streams/live/a/recording"),
    ] {
        let r = call(&app, m, p, "10.1.2.3:5000", &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{p}");
    }
    assert!(r.headers.get(header::WWW_AUTHENTICATE).is_some());
    let r = call(
        &app,
        Method::GET,
        "/api/v1/relays",
        LOCAL,
        &[("authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["error"], "wrong bearer token");
    let r = call(
        &app,
        Method::GET,
        "/api/v1/relays",
        "10.1.2.3:5000",
        &[("authorization", "Bearer s3cret")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "any client with the token");
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    // The scheme is case-insensitive; the token is not; prefixes, longer
    // tokens and other schemes are refused.
    for (value, ok) in [
        ("bearer s3cret", true),
        ("BEARER  s3cret", true),
        ("Bearer S3cret", false),
        ("Bearer s3cre", false),
        ("Bearer s3cret0", false),
        ("Basic s3cret", false),
        ("s3cret", false),
        ("Bearer", false),
    ] {
        let r = call(
            &app,
            Method::GET,
            "/api/v1/relays",
            LOCAL,
            &[("authorization", value)],
            "",
        )
        .await;
        let want = if ok {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(r.status, want, "Authorization: {value}");
    }
}

#[test]
fn token_comparison_does_not_depend_on_length() {
    assert!(crate::auth::constant_time_eq(b"abc", b"abc"));
    assert!(!crate::auth::constant_time_eq(b"abc", b"abd"));
    assert!(!crate::auth::constant_time_eq(b"abc", b"abcd"));
    assert!(!crate::auth::constant_time_eq(b"", b"a"));
    assert!(crate::auth::constant_time_eq(b"", b""));
}

#[tokio::test]
async fn relays_crud_and_validation() {
    let app = app(None);
    let post = |body: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let app = app.clone();
        async move { call(&app, Method::POST, "/api/v1/relays", LOCAL, headers, body).await }
    };
    let r = post(
        r#"{"stream":"live/a","target":"rtmp://h/app/KEY"}"#,
        &[JSON],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    let id = r.json["id"].as_u64().unwrap();
    assert_eq!(r.json["state"], "waiting");
    assert_eq!(r.json["target"], "rtmp://h/app/***");
    assert_eq!(
        r.headers.get(header::LOCATION).unwrap(),
        &format!("/api/v1/relays/{id}")
    );
    let r = call(
        &app,
        Method::GET,
        &format!("/api/v1/relays/{id}"),
        LOCAL,
        &[],
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.json["id"].as_u64()),
        (StatusCode::OK, Some(id))
    );
    for (body, headers, status, want) in [
        ("{", &[JSON][..], StatusCode::BAD_REQUEST, "JSON"),
        (
            r#"{"stream":"live/a"}"#,
            &[JSON][..],
            StatusCode::UNPROCESSABLE_ENTITY,
            "target",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp://h/a/k","bogus":1}"#,
            &[JSON][..],
            StatusCode::UNPROCESSABLE_ENTITY,
            "bogus",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp://h/a/k"}"#,
            &[][..],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            r#"{"stream":"live/a","target":"http://h/a/k"}"#,
            &[JSON][..],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown scheme",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp:/h"}"#,
            &[JSON][..],
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a URL",
        ),
        (
            r#"{"stream":"nokey","target":"rtmp://h/a/k"}"#,
            &[JSON][..],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown stream pattern",
        ),
        (
            r#"{"stream":"live/a","target":"rtmp://h/app/KEY"}"#,
            &[JSON][..],
            StatusCode::CONFLICT,
            "already",
        ),
        (
            r#"{"stream":"live/a","target":"rtmps://h/a/k","tls_ca_file":""}"#,
            &[JSON][..],
            StatusCode::UNPROCESSABLE_ENTITY,
            "tls_ca_file",
        ),
    ] {
        let r = post(body, headers).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.json);
        let e = r.json["error"].as_str().unwrap_or_default();
        assert!(e.contains(want), "{body}: {e}");
    }
    let big = format!(
        r#"{{"stream":"live/a","target":"rtmp://h/a/{}"}}"#,
        "k".repeat(4000)
    );
    let r = call(&app, Method::POST, "/api/v1/relays", LOCAL, &[JSON], &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The limit on relays.
    for k in ["k1", "k2"] {
        let body = format!(r#"{{"stream":"live/a","target":"rtmp://h/a/{k}"}}"#);
        let r = call(&app, Method::POST, "/api/v1/relays", LOCAL, &[JSON], &body).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = post(r#"{"stream":"live/a","target":"rtmp://h/a/k3"}"#, &[JSON]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json["error"].as_str().unwrap().contains("max_relays"));
    let r = call(&app, Method::GET, "/api/v1/relays", LOCAL, &[], "").await;
    assert_eq!(r.json["relays"].as_array().unwrap().len(), 3);
    // Delete, and unknown ids.
    let path = format!("/api/v1/relays/{id}");
    let r = call(&app, Method::DELETE, &path, LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for (m, p) in [
        (Method::DELETE, path.as_str()),
        (Method::GET, path.as_str()),
        (Method::GET, "/api/v1/relays/abc"),
        (Method::GET, "/api/v1/relays/99999999999999999999999"),
        (Method::GET, "/api/v1/nothing"),
        (Method::GET, "/api/v1/streams/live/a"),
    ] {
        let r = call(&app, m, p, LOCAL, &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert!(r.json["error"].is_string());
    }
    let r = call(&app, Method::PUT, "/api/v1/relays", LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn openapi_document() {
    let app = app(None);
    let r = call(&app, Method::GET, "/api/v1/openapi.json", LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["openapi"], "3.1.0");
    let paths = r.json["paths"].as_object().unwrap();
    for (p, methods) in [
        ("/streams", &["get"][..]),
        ("/streams/{app}/{key}", &["get"]),
        ("/relays", &["get", "post"]),
        ("/relays/{id}", &["get", "delete"]),
        ("/streams/{app}/{key}/recording", &["post", "delete"]),
        ("/recordings", &["get"]),
        ("/recordings/{id}", &["get", "delete"]),
    ] {
        for m in methods {
            assert!(paths[p][m].is_object(), "{m} {p} missing");
        }
    }
    let schemas = r.json["components"]["schemas"].as_object().unwrap();
    for s in [
        "RelayInfo",
        "CreateRelay",
        "StreamView",
        "PlayerCounts",
        "RelayState",
        "TranscodeState",
        "ErrorBody",
        "RecordingFile",
        "RecordingStatus",
        "RecordingList",
        "StartOptions",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert_eq!(r.json["servers"][0]["url"], "/api/v1");
    assert!(r.json["components"]["securitySchemes"]["bearer"].is_object());
}

/// Recordings through the API: start on a live stream (body optional),
/// 409 for a second, the stream's `recording`, stop, 404s; list, get and
/// delete a finished one, 409 while it is written. The e2e tests do it
/// with ffmpeg over RTMP.
#[tokio::test]
async fn recordings_start_stop_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = crate::record::Recorder::new(
        &crate::record::Settings {
            dir: dir.path().to_string_lossy().into_owned(),
            queue_bytes: 1 << 20,
            retention_days: 0,
            retention_bytes: 0,
        },
        Vec::new(),
        Default::default(),
    );
    let hub = Hub::new(HubConfig::default());
    let app = app_with(None, hub.clone(), recorder);
    let url = "/api/v1/streams/live/a/b/recording";
    // Not live: 404, whatever the body; a bad body is refused first.
    let r = call(&app, Method::POST, url, LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("not live"));
    for (body, headers, status, want) in [
        ("{", &[JSON][..], StatusCode::BAD_REQUEST, "JSON"),
        (
            r#"{"bogus":1}"#,
            &[JSON][..],
            StatusCode::UNPROCESSABLE_ENTITY,
            "bogus",
        ),
        (
            r#"{"format":"flv"}"#,
            &[][..],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
    ] {
        let r = call(&app, Method::POST, url, LOCAL, headers, body).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.json);
        assert!(
            r.json["error"].as_str().unwrap().contains(want),
            "{:?}",
            r.json
        );
    }
    let r = call(&app, Method::DELETE, url, LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&app, Method::POST, "/api/v1/streams/live/a", LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    let key = crate::stream_key::StreamKey::parse("live/a/b").unwrap();
    let publisher = hub.publish(&key, "test").unwrap();
    for (body, want) in [
        (r#"{"format":"mp4"}"#, "format"),
        (r#"{"path":"../x"}"#, "path"),
        (r#"{"split_secs":-1}"#, "split_secs"),
    ] {
        let r = call(&app, Method::POST, url, LOCAL, &[JSON], body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            r.json["error"].as_str().unwrap().contains(want),
            "{:?}",
            r.json
        );
    }
    let r = call(
        &app,
        Method::POST,
        url,
        LOCAL,
        &[JSON],
        r#"{"format":"flv","path":"api/{key}"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    assert_eq!(r.json["started_by"], "api");
    assert_eq!(r.json["format"], "flv");
    let r = call(&app, Method::POST, url, LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.json);
    // The file opens at the first frame.
    for e in crate::media::flv::samples::events() {
        publisher.send(e);
    }
    let view = loop {
        let r = call(
            &app,
            Method::GET,
            "/api/v1/streams/live/a/b",
            LOCAL,
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        if r.json["recording"]["path"].is_string() {
            break r.json["recording"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(view["path"], "api/a/b.flv", "{view}");
    assert_eq!(view["started_by"], "api");
    let id = view["id"].as_str().unwrap().to_string();
    let one = format!("/api/v1/recordings/{id}");
    let r = call(&app, Method::DELETE, &one, LOCAL, &[], "").await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "being written: {:?}",
        r.json
    );
    let r = call(&app, Method::DELETE, url, LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["stopped"][0]["path"], "api/a/b.flv");
    let r = call(&app, Method::DELETE, url, LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "stopped already");
    let r = call(
        &app,
        Method::GET,
        "/api/v1/streams/live/a/b",
        LOCAL,
        &[],
        "",
    )
    .await;
    assert_eq!(r.json["recording"], serde_json::Value::Null);
    let listed = loop {
        let r = call(&app, Method::GET, "/api/v1/recordings", LOCAL, &[], "").await;
        assert_eq!(r.status, StatusCode::OK);
        if r.json["recordings"][0]["state"] == "complete" {
            break r.json;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(listed["truncated"], false);
    let rec = &listed["recordings"][0];
    assert_eq!(rec["id"], id.as_str());
    assert_eq!(rec["stream"], "live/a/b");
    assert_eq!(rec["files"], serde_json::json!(["api/a/b.flv"]));
    assert_eq!(rec["vod_path"], "api/a/b");
    assert_eq!(rec["urls"]["hls"], "/vod/api/a/b/index.m3u8");
    assert_eq!(rec["urls"]["dash"], "/vod/api/a/b/manifest.mpd");
    assert_eq!(rec["urls"]["rtmp"], "vod/api/a/b");
    let size = std::fs::metadata(dir.path().join("api/a/b.flv"))
        .unwrap()
        .len();
    assert_eq!(rec["size"].as_u64(), Some(size));
    let r = call(&app, Method::GET, &one, LOCAL, &[], "").await;
    assert_eq!((r.status, &r.json), (StatusCode::OK, rec));
    let r = call(&app, Method::DELETE, &one, LOCAL, &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        !dir.path().join("api").exists(),
        "files and emptied directories gone"
    );
    for m in [Method::GET, Method::DELETE] {
        let r = call(&app, m, &one, LOCAL, &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = call(
        &app,
        Method::GET,
        "/api/v1/recordings/Li4vZXRjL3Bhc3N3ZA",
        LOCAL,
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "../etc/passwd");
    drop(publisher);
}

#[test]
fn calls_about_a_stream_name_it() {
    use axum::http::Method;
    assert_eq!(
        stream_of_call(&Method::GET, "/streams/live/a/b", b""),
        Some("live/a/b".into())
    );
    assert_eq!(
        stream_of_call(&Method::POST, "/streams/live/cam/recording", b""),
        Some("live/cam".into())
    );
    assert_eq!(
        stream_of_call(
            &Method::POST,
            "/relays",
            br#"{"stream":"live/x","target":"rtmp://h/a/k"}"#
        ),
        Some("live/x".into())
    );
    for (m, path, body) in [
        (Method::POST, "/relays", &b"not json"[..]),
        (Method::GET, "/relays", b""),
        (Method::DELETE, "/relays/3", b""),
        (Method::GET, "/recordings", b""),
    ] {
        assert_eq!(stream_of_call(&m, path, body), None, "{m} {path}");
    }
}
