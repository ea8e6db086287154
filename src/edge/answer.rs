//! One answer of the owner, shared by every request that asked for its URL
//! while it was being fetched, and kept in the cache after. Its body grows
//! as the owner sends it (a low-latency segment comes part by part), and
//! each reader streams it from the start at its own pace.

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

use crate::locks::lock;

/// Largest body an edge takes from the owner (a segment is far smaller).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The status and the headers an edge passes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub retry_after: Option<String>,
    /// The whole body's length, when the owner said it.
    pub content_length: Option<u64>,
}

#[derive(Default)]
struct State {
    head: Option<Head>,
    chunks: Vec<Bytes>,
    len: usize,
    /// `Some` once the body is complete (`Ok`) or broke off (`Err`).
    end: Option<Result<(), String>>,
}

/// See the module docs.
pub struct Answer {
    state: Mutex<State>,
    /// Bumped on every change; readers wait on it.
    changed: watch::Sender<u64>,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        }
    }
}

/// What a reader finds at its position.
pub enum Read {
    Chunk(Bytes),
    End,
    Failed(String),
}

impl Answer {
    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn set_head(&self, head: Head) {
        lock(&self.state).head = Some(head);
        self.bump();
    }

    /// Appends to the body; `Err` once it would pass [`MAX_BODY`] (the
    /// answer then fails).
    pub fn push(&self, chunk: Bytes) -> Result<(), String> {
        {
            let mut s = lock(&self.state);
            if s.len + chunk.len() > MAX_BODY {
                let why = format!("the owner's answer is larger than {MAX_BODY} bytes");
                s.end = Some(Err(why.clone()));
                drop(s);
                self.bump();
                return Err(why);
            }
            s.len += chunk.len();
            s.chunks.push(chunk);
        }
        self.bump();
        Ok(())
    }

    /// The body is complete (`Ok`) or broke off.
    pub fn finish(&self, end: Result<(), String>) {
        {
            let mut s = lock(&self.state);
            if s.end.is_none() {
                s.end = Some(end);
            }
        }
        self.bump();
    }

    /// The head once known; `Err` if the fetch failed before it.
    pub async fn head(&self) -> Result<Head, String> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = lock(&self.state);
                if let Some(h) = &s.head {
                    return Ok(h.clone());
                }
                if let Some(Err(e)) = &s.end {
                    return Err(e.clone());
                }
                if s.end.is_some() {
                    return Err("the owner sent no answer".into());
                }
            }
            if rx.changed().await.is_err() {
                return Err("the fetch was dropped".into());
            }
        }
    }

    /// The chunk at `index`, waiting for it while the body grows.
    pub async fn read(&self, index: usize) -> Read {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = lock(&self.state);
                if let Some(c) = s.chunks.get(index) {
                    return Read::Chunk(c.clone());
                }
                match &s.end {
                    Some(Ok(())) => return Read::End,
                    Some(Err(e)) => return Read::Failed(e.clone()),
                    None => {}
                }
            }
            if rx.changed().await.is_err() {
                return Read::Failed("the fetch was dropped".into());
            }
        }
    }

    /// The complete body's chunks and length, once it ended well.
    pub fn complete(&self) -> Option<(Vec<Bytes>, usize)> {
        let s = lock(&self.state);
        matches!(s.end, Some(Ok(()))).then(|| (s.chunks.clone(), s.len))
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        lock(&self.state).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn body(a: &Answer) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match a.read(i).await {
                Read::Chunk(c) => out.extend_from_slice(&c),
                Read::End => return Ok(out),
                Read::Failed(e) => return Err(e),
            }
            i += 1;
        }
    }

    #[tokio::test]
    async fn readers_that_came_early_and_late_get_the_same_bytes() {
        let a = Arc::new(Answer::default());
        let early = tokio::spawn({
            let a = a.clone();
            async move { (a.head().await, body(&a).await) }
        });
        a.set_head(Head {
            status: 200,
            content_type: Some("video/mp4".into()),
            cache_control: None,
            retry_after: None,
            content_length: None,
        });
        a.push(Bytes::from_static(b"moof")).unwrap();
        tokio::task::yield_now().await;
        a.push(Bytes::from_static(b"mdat")).unwrap();
        a.finish(Ok(()));
        let (head, bytes) = early.await.unwrap();
        assert_eq!(head.unwrap().status, 200);
        assert_eq!(bytes.unwrap(), b"moofmdat");
        assert_eq!(body(&a).await.unwrap(), b"moofmdat", "a late reader");
        assert_eq!(a.complete().map(|(_, n)| n), Some(8));
    }

    #[tokio::test]
    async fn a_failure_reaches_every_reader() {
        let a = Answer::default();
        a.finish(Err("connection refused".into()));
        assert_eq!(a.head().await.unwrap_err(), "connection refused");
        assert!(matches!(a.read(0).await, Read::Failed(_)));
        assert!(a.complete().is_none());
    }

    #[test]
    fn the_body_is_bounded() {
        let a = Answer::default();
        a.push(Bytes::from(vec![0; MAX_BODY])).unwrap();
        assert!(a.push(Bytes::from_static(b"x")).is_err());
        assert!(a.complete().is_none());
    }
}
