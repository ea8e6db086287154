use super::*;
use crate::media::MediaKind;
use crate::package::serve::Payload;

const HEVC_OPUS: &[u8] = include_bytes!("../package/testdata/hevc_opus.flv");

fn library(dir: &Path) -> Arc<Library> {
    Library::new(Settings {
        dir: dir.to_string_lossy().into_owned(),
        ..Settings::default()
    })
}

fn text(s: Served) -> String {
    match s.payload {
        Payload::Text(t) => t,
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn names_resolve_inside_the_directory_only() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.mp4"), b"x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("live/cam")).unwrap();
    std::fs::write(media.join("live/cam/rec.flv"), b"FLV").unwrap();
    std::fs::write(media.join("movie.mp4"), b"x").unwrap();
    std::fs::write(media.join(".hidden.mp4"), b"x").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.mp4"), media.join("out.mp4")).unwrap();
    std::os::unix::fs::symlink(media.join("movie.mp4"), media.join("alias.mp4")).unwrap();
    std::os::unix::fs::symlink(outside.path(), media.join("elsewhere")).unwrap();

    let found = |n: &str| resolve(&media, n).map(|f| f.path);
    let real = media.canonicalize().unwrap();
    // By name, and a recording's vod_path without its extension.
    assert_eq!(found("movie.mp4").unwrap(), real.join("movie.mp4"));
    assert_eq!(
        found("live/cam/rec").unwrap(),
        real.join("live/cam/rec.flv")
    );
    // A link that stays inside plays.
    assert_eq!(found("alias.mp4").unwrap(), real.join("movie.mp4"));
    for refused in ["out.mp4", "out", "elsewhere/secret.mp4"] {
        assert!(
            matches!(found(refused), Err(VodError::Forbidden(_))),
            "{refused}: {:?}",
            found(refused)
        );
    }
    for refused in [
        "../outside",
        "live/../movie.mp4",
        ".hidden.mp4",
        "live//cam",
        "./movie.mp4",
    ] {
        assert!(
            matches!(found(refused), Err(VodError::Forbidden(_))),
            "{refused}"
        );
    }
    // A directory or a missing name is not found.
    for missing in ["live", "live/cam", "nope.mp4", ""] {
        assert!(
            matches!(found(missing), Err(VodError::NotFound)),
            "{missing}"
        );
    }
    // No directory at all.
    assert!(matches!(
        resolve(&dir.path().join("none"), "movie.mp4"),
        Err(VodError::NotFound)
    ));
}

#[test]
fn a_packaged_title_lists_every_segment_once_as_vod() {
    let title = Title::read(Bytes::from_static(HEVC_OPUS)).unwrap();
    let seg = package("vod/t", &title, 1.0);
    let snap = seg.snapshot();
    assert!(snap.ended);
    let video = snap.video.as_ref().expect("video segments");
    assert!(
        video.segments.len() >= 2,
        "{} segments",
        video.segments.len()
    );
    // The segments add up to the title's video: its last frame's time
    // and one frame more.
    let video_dts: Vec<i64> = title
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Frame(f) if f.kind() == MediaKind::Video => Some(f.dts),
            _ => None,
        })
        .collect();
    let n = video_dts.len();
    let end = 2 * video_dts[n - 1] - video_dts[n - 2];
    let ms = video.segments.iter().map(|g| g.duration).sum::<u64>() * 1000 / 90_000;
    assert!(
        (ms as i64 - end).abs() <= 2,
        "{ms} ms of segments, video ends at {end} ms"
    );
    let playlist = crate::package::hls::media_playlist(&snap, MediaKind::Video).unwrap();
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        "{playlist}"
    );
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    assert_eq!(
        playlist.matches("#EXTINF").count(),
        video.segments.len(),
        "{playlist}"
    );
    assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
    let mpd = crate::package::dash::mpd(&snap, &[]);
    assert!(mpd.contains("type=\"static\""), "{mpd}");
}

#[tokio::test]
async fn the_library_serves_manifests_and_segments_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clip.flv"), HEVC_OPUS).unwrap();
    std::fs::write(dir.path().join("notes.mp4"), b"these are not video frames").unwrap();
    let lib = library(dir.path());
    let m = text(
        lib.answer("clip", Resource::Multivariant, &[])
            .await
            .unwrap(),
    );
    assert!(m.contains("video.m3u8"), "{m}");
    let p = text(
        lib.answer("clip.flv", Resource::MediaPlaylist(MediaKind::Video), &[])
            .await
            .unwrap(),
    );
    assert!(p.contains("#EXT-X-ENDLIST"), "{p}");
    let seg = lib
        .answer("clip", Resource::Segment(MediaKind::Video, 1), &[])
        .await
        .unwrap();
    let Payload::Chunks(chunks) = seg.payload else {
        panic!("segment bytes")
    };
    assert!(chunks.iter().map(Bytes::len).sum::<usize>() > 1000);
    // Past the end, and files that are not media.
    assert!(matches!(
        lib.answer("clip", Resource::Segment(MediaKind::Video, 10_000), &[])
            .await,
        Err(VodError::Missing("segment"))
    ));
    assert!(matches!(
        lib.answer("notes.mp4", Resource::Multivariant, &[]).await,
        Err(VodError::Unsupported(_))
    ));
    assert!(matches!(
        lib.answer("none.mp4", Resource::Multivariant, &[]).await,
        Err(VodError::NotFound)
    ));
    // Kept: both names of the file share nothing, but each is one entry.
    let held = lib.cached_bytes();
    assert!(held >= 2 * HEVC_OPUS.len() as u64, "{held}");
    lib.answer("clip", Resource::Mpd, &[]).await.unwrap();
    assert_eq!(lib.cached_bytes(), held);
}

#[tokio::test]
async fn the_cache_keeps_to_its_bound_and_rereads_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    for n in 0..4 {
        std::fs::write(dir.path().join(format!("c{n}.flv")), HEVC_OPUS).unwrap();
    }
    let lib = Library::new(Settings {
        dir: dir.path().to_string_lossy().into_owned(),
        cache_bytes: 5 * HEVC_OPUS.len() as u64,
        ..Settings::default()
    });
    for n in 0..4 {
        lib.answer(&format!("c{n}"), Resource::Multivariant, &[])
            .await
            .unwrap();
        assert!(lib.cached_bytes() <= 5 * HEVC_OPUS.len() as u64);
    }
    // The evicted titles are no longer served from the store, but play
    // again when asked.
    assert!(lib.store.keys().len() < 4, "{:?}", lib.store.keys());
    lib.answer("c0", Resource::Multivariant, &[]).await.unwrap();

    // A file replaced by another is read again.
    let before = lib.title("c3").await.unwrap();
    std::fs::write(dir.path().join("c3.flv"), &HEVC_OPUS[..HEVC_OPUS.len() / 2]).unwrap();
    let after = lib.title("c3").await.unwrap();
    assert!(!Arc::ptr_eq(&before, &after));
    assert!(after.bytes < before.bytes);
}

/// The hostile files of the bad-input corpus (`tests/corpus/vod/`, see its
/// README) through the library, as an HTTP request meets them: each is
/// refused as its `MANIFEST.tsv` line says (415 with the reason, or 404),
/// for the manifests and a segment alike, and never packaged.
#[tokio::test]
async fn the_corpus_of_hostile_files_does_not_play() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let lib = library(&corpus.join("vod"));
    let mut n = 0;
    let mut wrong = Vec::new();
    for line in manifest.lines().filter(|l| l.starts_with("vod/")) {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, expect, log) = (&f[0]["vod/".len()..], f[1], f[2]);
        for resource in [
            Resource::Multivariant,
            Resource::Mpd,
            Resource::MediaPlaylist(MediaKind::Video),
            Resource::Segment(MediaKind::Audio, 1),
        ] {
            let got = lib.answer(name, resource, &[]).await;
            match (expect, &got) {
                ("415", Err(VodError::Unsupported(why))) if why.contains(log) => {}
                ("404", Err(VodError::NotFound | VodError::Missing(_))) => {}
                _ => wrong.push(format!(
                    "{name} {resource:?}: expected {expect} ({log}), got {got:?}"
                )),
            }
        }
        n += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(n >= 20, "{n} hostile files");
}
