//! Names from the network: HTTP media paths, and the stream names RTMP
//! clients publish and play.

use crate::media::MediaKind;
use crate::package::urls::{parse as parse_media_path, url, Resource};
use crate::rtmp::session::strip_query;

fn assert_servable_key(key: &str) {
    assert!(key.contains('/'), "key {key:?} has no app");
    assert!(
        key.split('/').all(|s| !s.is_empty() && s != ".."),
        "key {key:?} has an empty or .. segment"
    );
}

/// An HTTP request path. A path that parses names a servable key, and the
/// URL our manifests would write for that key and resource parses back to
/// the same key and resource.
pub fn http_path(data: &[u8]) {
    let path = String::from_utf8_lossy(data);
    let Some((key, resource)) = parse_media_path(&path) else {
        return;
    };
    assert_servable_key(&key);
    let url = url(&key, resource);
    assert_eq!(
        parse_media_path(&url),
        Some((key, resource)),
        "{url:?} does not name what {path:?} named"
    );
}

/// The app of `connect` and the name of `publish`/`play` (separated by the
/// first 0 byte). The query split loses nothing, an accepted key is safe
/// (length, characters, no empty or dot segment), and every URL of an
/// accepted key parses back to that key.
pub fn stream_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (app, full_name) = text.split_once('\0').unwrap_or(("live", &text));
    let (name, query) = strip_query(full_name);
    assert!(!name.contains('?'));
    if full_name.contains('?') {
        assert_eq!(format!("{name}?{query}"), full_name);
    } else {
        assert_eq!((name.as_str(), query.as_str()), (full_name, ""));
    }
    let Ok(key) = crate::stream_key::StreamKey::new(app, &name) else {
        return;
    };
    assert_eq!(key.as_str(), format!("{app}/{name}"));
    assert!(key.len() <= 256);
    assert!(key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./~@+=:".contains(&b)));
    assert!(key
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != ".."));
    assert_servable_key(&key);
    for kind in [MediaKind::Video, MediaKind::Audio] {
        for resource in [
            Resource::Multivariant,
            Resource::Mpd,
            Resource::MediaPlaylist(kind),
            Resource::Init(kind, u32::MAX),
            Resource::Segment(kind, u64::MAX),
        ] {
            assert_eq!(
                parse_media_path(&url(&key, resource)),
                Some((key.to_string(), resource)),
                "stream {key:?} cannot be served"
            );
        }
    }
}
