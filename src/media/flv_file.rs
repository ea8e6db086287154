//! FLV files (the container, as opposed to the tag bodies in [`super::flv`]):
//! the header and tag framing, for replaying a recorded stream.
//!
//! Tag bodies are slices of the file's buffer, never copies. A tag cut off
//! by the end of the file (an encoder killed mid-write) ends the read, the
//! way players treat it.

use bytes::Bytes;

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
