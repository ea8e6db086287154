//! FLV files (the container, as opposed to the tag bodies in [`super::flv`]):
//! the header and tag framing, read from a whole file ([`read_tags`], for
//! replaying a recorded stream) or from a byte stream ([`FlvReader`], for
//! ffmpeg's output), and written ([`header`], [`encode_tag`]).
//!
//! Tag bodies are slices of the file's buffer, never copies. A tag cut off
//! by the end of the file (an encoder killed mid-write) ends the read, the
//! way players treat it.

use bytes::{Buf, Bytes, BytesMut};

use super::flv::Tag;

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// One tag of an FLV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileTag {
    /// 8 audio, 9 video, 18 script data (the filter bit is masked off).
    pub tag_type: u8,
    /// Milliseconds, with the extended (upper) byte applied.
    pub timestamp: u32,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvFileError {
    #[error("not an FLV file (no `FLV` signature)")]
    NotFlv,
    #[error("FLV header size {0} is invalid for a file of {1} bytes")]
    BadHeaderSize(usize, usize),
}

/// Reads every complete tag of an FLV file.
pub fn read_tags(data: &Bytes) -> Result<Vec<FileTag>, FlvFileError> {
    if data.len() < 9 || &data[..3] != b"FLV" {
        return Err(FlvFileError::NotFlv);
    }
    let header = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    if header < 9 || header > data.len() {
        return Err(FlvFileError::BadHeaderSize(header, data.len()));
    }
    let u24 = |at: usize| u32::from_be_bytes([0, data[at], data[at + 1], data[at + 2]]);
    // The header, then PreviousTagSize0.
    let mut pos = header + 4;
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let size = u24(pos + 1) as usize;
        let body_start = pos + 11;
        let Some(body_end) = body_start.checked_add(size).filter(|e| *e <= data.len()) else {
            break;
        };
        tags.push(FileTag {
            tag_type: data[pos] & 0x1F,
            timestamp: u24(pos + 4) | u32::from(data[pos + 7]) << 24,
            body: data.slice(body_start..body_end),
        });
        pos = body_end + 4;
    }
    Ok(tags)
}

/// The file header (and PreviousTagSize0) announcing the tracks there are.
pub fn header(audio: bool, video: bool) -> Bytes {
    let flags = u8::from(audio) << 2 | u8::from(video);
    Bytes::from(vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One tag as it goes in a file: tag header, body, PreviousTagSize.
pub fn encode_tag(tag: &Tag) -> Bytes {
    let size = tag.body_len();
    let ts = tag.timestamp;
    let mut out = Vec::with_capacity(11 + size + 4);
    out.push(tag.kind.type_id());
    out.extend_from_slice(&(size as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    for p in tag.parts() {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(&((size + 11) as u32).to_be_bytes());
    out.into()
}

/// Largest tag [`FlvReader`] accepts (as `rtmp.max_message_size`'s
/// default: a 4K keyframe fits).
pub const MAX_TAG: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("not an FLV stream (no `FLV` signature)")]
    NotFlv,
    #[error("FLV header size {0} is invalid")]
    BadHeader(usize),
    #[error("FLV tag of {0} bytes is larger than the limit")]
    TooLarge(usize),
}

/// FLV bytes -> tags, incrementally and bounded: a tag larger than
/// [`MAX_TAG`] is an error, not an allocation, whatever bytes arrive.
#[derive(Default)]
pub struct FlvReader {
    buf: BytesMut,
    header_done: bool,
}

impl FlvReader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<FileTag>, ReadError> {
        if !self.header_done {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(ReadError::NotFlv);
            }
            let size =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(9..=1024).contains(&size) {
                return Err(ReadError::BadHeader(size));
            }
            // The header, then PreviousTagSize0.
            if self.buf.len() < size + 4 {
                return Ok(None);
            }
            self.buf.advance(size + 4);
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let b = &self.buf;
        let size = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
        if size > MAX_TAG {
            return Err(ReadError::TooLarge(size));
        }
        if b.len() < 11 + size + 4 {
            return Ok(None);
        }
        let tag_type = b[0] & 0x1F;
        let timestamp = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
        let mut tag = self.buf.split_to(11 + size + 4).freeze();
        tag.advance(11);
        tag.truncate(size);
        Ok(Some(FileTag {
            tag_type,
            timestamp,
            body: tag,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tags: &[(u8, u32, &[u8])]) -> Vec<u8> {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for (t, ts, body) in tags {
            f.push(*t);
            f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            f.extend_from_slice(&ts.to_be_bytes()[1..]);
            f.push((ts >> 24) as u8);
            f.extend_from_slice(&[0, 0, 0]);
            f.extend_from_slice(body);
            f.extend_from_slice(&((body.len() + 11) as u32).to_be_bytes());
        }
        f
    }

    #[test]
    fn reads_tags_zero_copy_with_extended_timestamps() {
        let data = Bytes::from(file(&[
            (9, 0x0100_0020, b"video"),
            (8, 5, b"au"),
            (18, 0, b"meta"),
        ]));
        let tags = read_tags(&data).unwrap();
        assert_eq!(tags.len(), 3);
        assert_eq!(
            (tags[0].tag_type, tags[0].timestamp),
            (TAG_VIDEO, 0x0100_0020)
        );
        assert_eq!(&tags[1].body[..], b"au");
        assert_eq!(tags[2].tag_type, TAG_SCRIPT);
        // The body points into the file's buffer.
        let start = data.as_ptr() as usize;
        let body = tags[0].body.as_ptr() as usize;
        assert!(body > start && body < start + data.len());
    }

    #[test]
    fn truncated_last_tag_ends_the_read() {
        let mut f = file(&[(9, 0, b"whole"), (8, 40, b"cut off here")]);
        f.truncate(f.len() - 10);
        let tags = read_tags(&Bytes::from(f)).unwrap();
        assert_eq!(tags.len(), 1);
        // A tag claiming 16 MiB in a tiny file is not read past the end.
        let mut f = file(&[]);
        f.extend_from_slice(&[9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert!(read_tags(&Bytes::from(f)).unwrap().is_empty());
    }

    #[test]
    fn written_tags_read_back_in_any_chunking() {
        use crate::media::flv::{TagKind, TagWriter};
        use crate::media::{Codec, Frame, MediaKind, StreamEvent};
        let mut w = TagWriter::new();
        let mut stream = header(true, true).to_vec();
        let mut written = Vec::new();
        for (codec, dts) in [
            (Codec::H264, 0),
            (Codec::Aac, 5),
            (Codec::H264, 0x1_0000_0020),
        ] {
            let f = Frame {
                codec,
                dts,
                cts: 0,
                keyframe: true,
                data: Bytes::from_static(b"frame"),
            };
            let tag = w.write(&StreamEvent::Frame(f)).next().unwrap();
            stream.extend_from_slice(&encode_tag(&tag));
            written.push(FileTag {
                tag_type: tag.kind.type_id(),
                timestamp: tag.timestamp,
                body: Bytes::from(tag.parts().concat()),
            });
        }
        assert_eq!(written[2].timestamp, 0x20);
        assert_eq!(
            written[1].tag_type,
            TagKind::Media(MediaKind::Audio).type_id()
        );
        assert_eq!(read_tags(&Bytes::from(stream.clone())).unwrap(), written);
        for chunk in [1, 7, 1000] {
            let mut r = FlvReader::new();
            let mut tags = Vec::new();
            for c in stream.chunks(chunk) {
                r.push(c);
                while let Some(t) = r.next_tag().unwrap() {
                    tags.push(t);
                }
            }
            assert_eq!(tags, written, "in chunks of {chunk}");
        }
    }

    #[test]
    fn hostile_streams_are_bounded_errors() {
        let mut r = FlvReader::new();
        r.push(b"NOPE00000000");
        assert_eq!(r.next_tag(), Err(ReadError::NotFlv));
        let mut r = FlvReader::new();
        r.push(&header(true, true));
        r.push(&[9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.next_tag(), Err(ReadError::TooLarge(0xFF_FFFF)));
        let mut r = FlvReader::new();
        r.push(&[b'F', b'L', b'V', 1, 5, 0xFF, 0, 0, 9]);
        assert!(matches!(r.next_tag(), Err(ReadError::BadHeader(_))));
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(
            read_tags(&Bytes::from_static(b"GIF89a")),
            Err(FlvFileError::NotFlv)
        );
        let bad = Bytes::from_static(b"FLV\x01\x05\xFF\xFF\xFF\xFF\x00\x00\x00\x00");
        assert!(matches!(
            read_tags(&bad),
            Err(FlvFileError::BadHeaderSize(..))
        ));
        assert!(matches!(
            read_tags(&Bytes::from_static(b"FLV\x01\x05\x00\x00\x00\x01")),
            Err(FlvFileError::BadHeaderSize(1, 9))
        ));
    }
}
