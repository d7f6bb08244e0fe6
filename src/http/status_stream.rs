//! `GET /status` streamed: the document is written row by row on a thread of its own into chunks
//! of 64 KiB that the response reads as it sends them (chunked transfer encoding), with at most
//! four chunks waiting. At 100,000 mailboxes the document is about 100 MB; built whole as a JSON
//! tree it took 1.5 GB.

use std::io::{Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::StatusContext;
use super::status;

const CHUNK: usize = 64 * 1024;
const WAITING_CHUNKS: usize = 4;

/// What the writing thread says first: the document starts (its first chunk), or it cannot be
/// made (the store could not be read).
type First = Result<Vec<u8>, String>;

/// Starts writing the document; returns its reader once the first chunk is there, or why there
/// is none.
pub fn start(ctx: &StatusContext) -> Result<ChunkReader, String> {
    let (first_tx, first_rx) = sync_channel::<First>(1);
    let (tx, rx) = sync_channel::<Vec<u8>>(WAITING_CHUNKS);
    let ctx = ctx.clone();
    std::thread::Builder::new()
        .name("status-stream".into())
        .spawn(move || write_document(&ctx, first_tx, tx))
        .map_err(|e| format!("cannot start the /status writer: {e}"))?;
    let first = first_rx
        .recv()
        .map_err(|_| "the /status writer stopped".to_string())??;
    Ok(ChunkReader {
        chunks: rx,
        current: first,
        at: 0,
    })
}

fn write_document(ctx: &StatusContext, first: SyncSender<First>, rest: SyncSender<Vec<u8>>) {
    let config = ctx.config();
    let data = match status::collect(ctx, &config) {
        Ok(d) => d,
        Err(e) => {
            let _ = first.send(Err(e));
            return;
        }
    };
    let appliance = status::appliance_view(ctx, &data, super::queue_depth(ctx, &data));
    let mut out = ChunkWriter {
        first: Some(first),
        rest,
        buf: Vec::with_capacity(CHUNK),
    };
    // Stops at the first failed write: the client went away.
    let _ = (|| -> std::io::Result<()> {
        out.write_all(b"{\"appliance\":")?;
        serde_json::to_writer(&mut out, &appliance)?;
        out.write_all(b",\"profiles\":")?;
        serde_json::to_writer(&mut out, &data.profiles)?;
        out.write_all(b",\"mailboxes\":[")?;
        for (i, row) in data.rows.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut out, &row.view())?;
        }
        out.write_all(b"]}")?;
        out.flush()
    })();
}

/// Fills chunks and hands them over, blocking while the reader is `WAITING_CHUNKS` behind.
struct ChunkWriter {
    first: Option<SyncSender<First>>,
    rest: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let gone = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone");
        match self.first.take() {
            Some(first) => first.send(Ok(chunk)).map_err(|_| gone()),
            None => self.rest.send(chunk).map_err(|_| gone()),
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() || self.first.is_some() {
            self.send()?;
        }
        Ok(())
    }
}

/// The response body: the chunks as they come; the end when the writer is done.
pub struct ChunkReader {
    chunks: Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.current.len() {
            match self.chunks.recv() {
                Ok(next) => {
                    self.current = next;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
