//! A minimal HTTP/1.1 GET client with keep-alive: what playlist and segment
//! polling needs, at a few hundred bytes of state per connection, so that
//! thousands of pollers cost the load generator almost nothing.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest response body accepted (a segment of a high-bitrate stream).
const MAX_BODY: usize = 64 << 20;
const MAX_HEADER_LINE: usize = 8 << 10;
const TIMEOUT: Duration = Duration::from_secs(10);

/// `http://host:port/path` split into the address and the path.
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, path.to_string()))
}

/// Resolves `reference` (absolute path, full URL or relative) against the
/// path of the document it appeared in.
pub fn resolve(base_path: &str, reference: &str) -> String {
    if let Some(rest) = reference.strip_prefix("http://") {
        return rest.find('/').map_or("/".into(), |i| rest[i..].to_string());
    }
    if reference.starts_with('/') {
        return reference.to_string();
    }
    let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{reference}")
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection to one server, reopened when the server closes it.
pub struct HttpClient {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl HttpClient {
    pub fn new(addr: &str) -> Self {
        HttpClient {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// GETs `path`; retries once on a fresh connection when a kept-alive one
    /// turns out to be closed.
    pub async fn get(&mut self, path: &str) -> io::Result<Response> {
        let reused = self.conn.is_some();
        match timeout(TIMEOUT, self.try_get(path)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) if reused => {
                self.conn = None;
                timeout(TIMEOUT, self.try_get(path))
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }

    async fn try_get(&mut self, path: &str) -> io::Result<Response> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::with_capacity(16 << 10, stream));
        }
        let conn = self.conn.as_mut().unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: castgate-load\r\n\r\n",
            self.addr
        );
        conn.get_mut().write_all(request.as_bytes()).await?;

        let mut line = String::new();
        read_line(conn, &mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            read_line(conn, &mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((name, value)) = l.split_once(':') else {
                return Err(bad(format!("bad header line {l:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| bad("bad content-length".into()))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                read_line(conn, &mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size".into()))?;
                if body.len() + size > MAX_BODY {
                    return Err(bad("body too large".into()));
                }
                if size == 0 {
                    read_line(conn, &mut line).await?;
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                conn.read_exact(&mut body[at..]).await?;
                read_line(conn, &mut line).await?;
            }
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(bad("body too large".into()));
            }
            body.resize(n, 0);
            conn.read_exact(&mut body).await?;
        } else {
            close = true;
            (&mut *conn)
                .take(MAX_BODY as u64)
                .read_to_end(&mut body)
                .await?;
        }
        if close {
            self.conn = None;
        }
        Ok(Response { status, body })
    }
}

async fn read_line(conn: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<()> {
    line.clear();
    let n = (&mut *conn)
        .take(MAX_HEADER_LINE as u64)
        .read_line(line)
        .await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/live/a/index.m3u8").unwrap(),
            ("127.0.0.1:8080".into(), "/live/a/index.m3u8".into())
        );
        assert_eq!(split_url("http://h").unwrap(), ("h:80".into(), "/".into()));
        assert!(split_url("https://h/x").is_err());
        assert_eq!(
            resolve("/live/a/index.m3u8", "video.m3u8"),
            "/live/a/video.m3u8"
        );
        assert_eq!(
            resolve("/live/a/video.m3u8", "video/seg-3.m4s"),
            "/live/a/video/seg-3.m4s"
        );
        assert_eq!(resolve("/hls/a.m3u8", "/hls/a-1.ts"), "/hls/a-1.ts");
        assert_eq!(resolve("/x/y.m3u8", "http://h:1/z.ts"), "/z.ts");
    }
}
