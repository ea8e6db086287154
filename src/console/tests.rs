//! The console through the whole HTTP router: every asset served with its
//! type and policy, nothing referenced from another site, and the media
//! routes untouched. The browser test (e2e/console.rs) runs the page.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::http::{router, HttpState};
use crate::package::service::Store;

async fn call(method: Method, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let app = router(HttpState::new(Store::default()));
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_and_policy() {
    for asset in ASSETS {
        let (status, h, body) = call(Method::GET, asset.path).await;
        assert_eq!(status, StatusCode::OK, "{}", asset.path);
        assert_eq!(body, asset.body, "{}", asset.path);
        assert_eq!(h["content-type"], asset.content_type, "{}", asset.path);
        assert_eq!(h["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-cache");
        let (status, h, body) = call(Method::HEAD, asset.path).await;
        assert_eq!(status, StatusCode::OK, "HEAD {}", asset.path);
        assert!(body.is_empty());
        assert_eq!(h["content-type"], asset.content_type);
    }
    let (_, _, page) = call(Method::GET, "/").await;
    assert!(page.starts_with("<!doctype html>"), "{page}");
}

/// The policy allows this origin only; the assets must not even try
/// anything else, and every file the page names must exist.
#[test]
fn nothing_comes_from_another_site() {
    assert!(!CONTENT_SECURITY_POLICY.contains("http"));
    assert!(!CONTENT_SECURITY_POLICY.contains('*'));
    for asset in ASSETS {
        for scheme in [
            "http://", "https://", "ws://", "wss://", "\"//", "'//", "`//",
        ] {
            assert!(
                !asset.body.contains(scheme),
                "{} mentions {scheme}",
                asset.path
            );
        }
    }
    let index = ASSETS[0].body;
    let mut refs = 0;
    for attr in ["src=\"", "href=\""] {
        for part in index.split(attr).skip(1) {
            let url = part.split('"').next().unwrap_or("");
            if url.is_empty() {
                continue; // filled in by app.js
            }
            // Inline data (the empty favicon) loads nothing.
            assert!(
                url.starts_with('/') && !url.starts_with("//") || url.starts_with("data:"),
                "{url} is not on this origin"
            );
            if url.starts_with("/console/") {
                assert!(
                    ASSETS.iter().any(|a| a.path == url),
                    "index.html names {url}, which is not served"
                );
                refs += 1;
            }
        }
    }
    assert_eq!(refs, 3, "style.css, player.js and app.js");
}

#[tokio::test]
async fn media_routes_are_unchanged() {
    for path in [
        "/live/cam/index.m3u8",
        "/console/cam/index.m3u8",
        "/console/app.js/video/seg-1.m4s",
    ] {
        let (status, h, body) = call(Method::GET, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, "stream not found\n", "{path}");
        assert!(h.get("content-security-policy").is_none(), "{path}");
    }
    let (status, _, body) = call(Method::GET, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _, _) = call(Method::GET, "/console/missing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(Method::POST, "/").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
