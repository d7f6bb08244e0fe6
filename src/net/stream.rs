//! A connection that is plain TCP or TLS over TCP, so protocol sessions take one stream type.
//! It can record what is said on it (for Test & Enable transcripts).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::transcript::Recorder;

/// TCP with buffers underneath. rustls reads the socket 4 KB at a time; the read buffer turns
/// that into one large `recv` per 64 KB. async-imap writes a command in pieces (tag, space,
/// command, CRLF) and then flushes; the write buffer sends them as one segment.
pub type BufferedTcp = BufReader<BufWriter<TcpStream>>;

const READ_BUFFER: usize = 64 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;

pub fn buffered(tcp: TcpStream) -> BufferedTcp {
    BufReader::with_capacity(READ_BUFFER, BufWriter::with_capacity(WRITE_BUFFER, tcp))
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
