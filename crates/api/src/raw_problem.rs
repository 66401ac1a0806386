//! Problem documents for the answers hyper writes itself.
//!
//! When hyper cannot parse a request head (a control byte in a header field, a head
//! larger than its read buffer, a target too long) it answers 400, 431 or 414 with an
//! empty body before any of guard's code runs, and offers no hook to change that. The
//! connection's byte stream is wrapped instead: such an answer is recognised by its
//! exact shape (a status line and only `connection`, `content-length: 0` and `date`;
//! every answer from guard's router carries `x-request-id` and a body) and replaced by
//! the same status with a problem document. Nothing else written is touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use guard_proto::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes of a refused request's remainder read and dropped before closing, so the
/// close is not a reset that could destroy the answer on its way.
const DRAIN_LIMIT: usize = 256 * 1024;

/// A connection's byte stream whose hyper-made error answers become problems.
pub(crate) struct ProblemIo<I> {
    inner: I,
    /// The replacement answer and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
    /// Bytes of input dropped after a replaced answer; `None` until one was replaced.
    drained: Option<usize>,
}

impl<I> ProblemIo<I> {
    pub(crate) fn new(inner: I) -> ProblemIo<I> {
        ProblemIo { inner, pending: None, drained: None }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> ProblemIo<I> {
    /// Writes what is left of the replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.pending {
            let Some(rest) = answer.get(*written..).filter(|r| !r.is_empty()) else {
                self.pending = None;
                break;
            };
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads and drops input that has already arrived, after a replaced answer.
    fn drain_input(&mut self, cx: &mut Context<'_>) {
        let mut scratch = [0u8; 8192];
        while let Some(drained) = self.drained.filter(|d| *d < DRAIN_LIMIT) {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    self.drained = Some(drained + buf.filled().len());
                }
                _ => break,
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ProblemIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ProblemIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.is_none()
            && let Some(answer) = replacement(buf)
        {
            self.pending = Some((answer, 0));
            self.drained = Some(0);
        }
        if self.pending.is_some() {
            ready!(self.poll_pending(cx))?;
            // hyper's answer counts as written: the replacement went in its place.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's own answers have no body: one slice holding the whole head.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(first), None) = (filled.next(), filled.next())
            && (self.pending.is_some() || replacement(first).is_some())
        {
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.drain_input(cx);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        self.drain_input(cx);
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The problem answer to put in place of `written`, when `written` is one of hyper's
/// automatic error answers.
fn replacement(written: &[u8]) -> Option<Vec<u8>> {
    let rest = written.strip_prefix(b"HTTP/1.1 4")?;
    let head = std::str::from_utf8(rest.strip_suffix(b"\r\n\r\n")?).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let (code, detail) = match status_line.get(..2)? {
        "00" => (
            ErrorCode::MalformedRequest,
            "the request head is not valid HTTP: a header field holds a byte HTTP does not allow (a control \
             character, for example), or the request line is malformed",
        ),
        "31" => (ErrorCode::HeadersTooLarge, "the request line and header fields are larger than this server accepts"),
        "14" => (ErrorCode::UriTooLong, "the request target is longer than this server accepts"),
        _ => return None,
    };
    let mut date = None;
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(": ")?;
        match name.to_ascii_lowercase().as_str() {
            "connection" => {}
            "content-length" if value == "0" => empty = true,
            "date" => date = Some(value),
            _ => return None,
        }
    }
    if !empty {
        return None;
    }
    Some(answer(code, detail, date))
}

/// A complete HTTP/1.1 answer carrying the problem for `code`; the connection closes.
fn answer(code: ErrorCode, detail: &str, date: Option<&str>) -> Vec<u8> {
    let body = serde_json::to_vec(&Problem::new(code).with_detail(detail)).unwrap_or_default();
    let reason = axum::http::StatusCode::from_u16(code.status()).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\ncontent-length: {}\r\n\
         x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n",
        code.status(),
        body.len()
    );
    if let Some(date) = date {
        out.push_str(&format!("date: {date}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(answer: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_own_error_answers_become_problems_with_their_status() {
        let date = "date: Sun, 06 Dec 2026 06:11:59 GMT";
        for (status, code) in [
            ("400 Bad Request", "malformed_request"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
            ("414 URI Too Long", "uri_too_long"),
        ] {
            let hyper = format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n\r\n");
            let answer = replacement(hyper.as_bytes()).unwrap_or_else(|| panic!("{status}"));
            let (head, problem) = parsed(&answer);
            assert!(head.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{head}");
            assert!(head.contains("content-type: application/problem+json"), "{head}");
            assert!(head.contains(date), "{head}");
            let body_len = answer.len() - head.len() - 4;
            assert!(head.contains(&format!("content-length: {body_len}\r\n")), "{head}");
            assert_eq!(problem["code"], code);
            assert_eq!(problem["status"].as_u64().unwrap(), u64::from(ErrorCode::parse(code).unwrap().status()));
        }
    }

    #[test]
    fn anything_else_written_is_left_alone() {
        for other in [
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: abc\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 4",
            "",
        ] {
            assert!(replacement(other.as_bytes()).is_none(), "{other:?}");
        }
    }
}
