//! The web console: one page at `/` that lists the live streams, plays any
//! of them, starts and stops their recordings, lists the recordings (played
//! on demand with a seek bar, deleted) and manages relays and pulled
//! sources, all through the REST API (`/api/v1`) and the media routes of
//! this same server (`/vod/…` for recordings).
//!
//! The assets are ours and embedded in the binary (`include_str!`), so a
//! plain `cargo run --release` serves a console that works offline: the
//! player is a small Media Source Extensions player over castgate's own CMAF
//! segments (`assets/player.js`, live and on demand), not a third-party
//! library. A strict
//! Content-Security-Policy (`'self'` only) keeps the page from loading
//! anything from another site.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Where the page is served.
pub const INDEX_PATH: &str = "/";

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// Every file of the console. Asset paths have two segments, so they can
/// never be mistaken for a media URL (`/{app}/{key}/{resource}`).
pub const ASSETS: &[Asset] = &[
    Asset {
        path: INDEX_PATH,
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        path: "/console/player.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/player.js"),
    },
    Asset {
        path: "/console/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/style.css"),
    },
];

/// Only this origin: scripts, styles, API calls, playlists and segments
/// (`blob:` is the MediaSource object URL the player attaches).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; media-src 'self' blob:; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Adds the console's routes to `router`.
pub fn routes<S: Clone + Send + Sync + 'static>(mut router: Router<S>) -> Router<S> {
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    router
}

fn serve(asset: &'static Asset) -> Response {
    let mut res = asset.body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Small files: revalidate so an upgraded binary's console is seen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests;
