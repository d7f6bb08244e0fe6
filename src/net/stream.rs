//! A connection that is plain TCP or TLS over TCP, so protocol sessions take one stream type.
//! It can record what is said on it (for Test & Enable transcripts).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::transcript::Recorder;

/// TCP with buffers underneath. rustls reads the socket 4 KB at a time; while email streams in,
/// the read buffer turns that into one `recv` per 64 KB. async-imap writes a command in pieces
/// (tag, space, command, CRLF) and then flushes; the write buffer sends them as one segment.
pub type BufferedTcp = ReadBuffer<BufWriter<TcpStream>>;

const WRITE_BUFFER: usize = 8 * 1024;

pub fn buffered(tcp: TcpStream) -> BufferedTcp {
    ReadBuffer::new(BufWriter::with_capacity(WRITE_BUFFER, tcp))
}

/// The read buffer's size while the connection is quiet, and at most while data streams.
const QUIET_READ_BUFFER: usize = 4 * 1024;
const STREAMING_READ_BUFFER: usize = 64 * 1024;

/// A read buffer sized by the traffic: it doubles (up to 64 KiB) after a read that filled it, and
/// after one that brought less than a quarter of it, it shrinks to four times what came (at
/// least 4 KiB) and gives the rest back once read. A connection held idle (IDLE, a kept
/// session, a pooled SMTP connection) costs 4 KiB of buffer, not 64; a fetch gets large reads
/// after its first few. It is resized only when empty, so nothing is copied.
pub struct ReadBuffer<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The size for the next fill, decided by the last one.
    next_size: usize,
}

impl<S> ReadBuffer<S> {
    pub fn new(inner: S) -> ReadBuffer<S> {
        ReadBuffer {
            inner,
            buf: vec![0; QUIET_READ_BUFFER],
            pos: 0,
            end: 0,
            next_size: QUIET_READ_BUFFER,
        }
    }

    /// Bytes received and not yet read.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// The buffer's size now.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// The size after a fill of `size` that brought `read` bytes.
fn resized(size: usize, read: usize) -> usize {
    if read == size {
        (size * 2).min(STREAMING_READ_BUFFER)
    } else if read < size / 4 {
        (read * 4).next_power_of_two().max(QUIET_READ_BUFFER)
    } else {
        size
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBuffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.end {
            if this.buf.len() != this.next_size {
                this.buf = vec![0; this.next_size];
            }
            let mut into = ReadBuf::new(&mut this.buf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut into) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let read = into.filled().len();
            (this.pos, this.end) = (0, read);
            this.next_size = resized(this.buf.len(), read);
        }
        let n = out.remaining().min(this.end - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == this.end && this.next_size < this.buf.len() {
            // Quiet now: the memory goes back at once, not at the next read.
            this.buf = vec![0; this.next_size];
            (this.pos, this.end) = (0, 0);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBuffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

pub(super) enum Inner {
    Plain(BufferedTcp),
    Tls(Box<TlsStream<BufferedTcp>>),
}

pub struct MailStream {
    pub(super) inner: Inner,
    pub(super) recorder: Option<Recorder>,
}

impl MailStream {
    pub fn plain(tcp: BufferedTcp) -> MailStream {
        MailStream {
            inner: Inner::Plain(tcp),
            recorder: None,
        }
    }

    /// Records everything said from now on (after TLS, the plaintext).
    pub fn record(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// Bytes received in the clear and not yet read: before a TLS handshake there must be none.
    pub fn plaintext_pending(&self) -> usize {
        match &self.inner {
            Inner::Plain(s) => s.buffer().len(),
            Inner::Tls(_) => 0,
        }
    }
}

impl std::fmt::Debug for MailStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_tls() {
            "MailStream::Tls"
        } else {
            "MailStream::Plain"
        })
    }
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let (Some(r), Poll::Ready(Ok(()))) = (&this.recorder, &result) {
            r.server(&buf.filled()[before..]);
        }
        result
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if let (Some(r), Poll::Ready(Ok(n))) = (&this.recorder, &result) {
            r.client(&buf[..*n]);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn grows_while_reads_fill_it_and_shrinks_when_they_do_not() {
        assert_eq!(resized(4096, 4096), 8192);
        assert_eq!(resized(65536, 65536), 65536);
        assert_eq!(resized(65536, 100), 4096);
        assert_eq!(resized(65536, 5000), 32768);
        assert_eq!(resized(4096, 10), 4096);
        assert_eq!(resized(16384, 8000), 16384);
    }

    #[tokio::test]
    async fn a_stream_passes_whole_and_the_buffer_follows_the_traffic() {
        let (mut server, client) = tokio::io::duplex(1 << 20);
        let mut r = ReadBuffer::new(client);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        server.write_all(&data).await.expect("write");
        let mut got = vec![0u8; data.len()];
        r.read_exact(&mut got).await.expect("read");
        assert_eq!(got, data);
        assert_eq!(r.next_size, STREAMING_READ_BUFFER, "grew while streaming");
        // Quiet again: a few short lines bring it back down.
        for _ in 0..6 {
            server
                .write_all(b"* OK still here\r\n")
                .await
                .expect("write");
            let mut line = [0u8; 17];
            r.read_exact(&mut line).await.expect("read");
            assert_eq!(&line, b"* OK still here\r\n");
        }
        assert_eq!(r.next_size, QUIET_READ_BUFFER);
        assert_eq!(r.capacity(), QUIET_READ_BUFFER, "given back once read");
        assert!(r.buffer().is_empty());
    }
}
