// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! The L4 read and write buffers of a [`Stream`](super::stream::Stream), held only while the
//! connection is busy.
//!
//! The same layering and semantics as tokio's `BufReader<BufWriter<S>>`, with one difference:
//! the buffers are allocated when a read or a write needs them and released whenever a read
//! finds nothing buffered and the peer has sent nothing more (the read returns `Pending`) while
//! the write buffer is empty. A keep-alive connection waiting for its next request, or an idle
//! pooled connection, then holds no buffer at all: with the default 64 KiB read buffer that is
//! most of the memory of an idle connection. A busy connection keeps its buffers between reads
//! that find data ready; one that waits pays one allocation of each buffer per wait.
//!
//! A read with no buffer allocated first asks the peer through a buffer on the stack
//! ([`PROBE_BYTES`]), so a read that finds nothing (the first poll of every keep-alive wait)
//! allocates nothing; the read buffer is allocated only when bytes arrived that the caller's
//! buffer cannot take.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most a read with no buffer allocated asks of the peer at once (through the stack).
pub(crate) const PROBE_BYTES: usize = 4096;

/// A read buffer over a write buffer over `S`, both released while the stream waits for the
/// peer (see the module documentation). A capacity of 0 turns that direction's buffer off.
pub(crate) struct BufferedStream<S> {
    inner: S,
    read_capacity: usize,
    /// Bytes read from `inner` and not yet handed out are `read_buf[read_pos..]`.
    read_buf: Vec<u8>,
    read_pos: usize,
    write_capacity: usize,
    /// Bytes written to the buffer and not yet to `inner` are `write_buf[write_pos..]`.
    write_buf: Vec<u8>,
    write_pos: usize,
}

impl<S: std::fmt::Debug> std::fmt::Debug for BufferedStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedStream")
            .field("inner", &self.inner)
            .field(
                "read",
                &format_args!("{}/{}", self.read_buffered().len(), self.read_capacity),
            )
            .field(
                "write",
                &format_args!(
                    "{}/{}",
                    self.write_buf.len() - self.write_pos,
                    self.write_capacity
                ),
            )
            .finish()
    }
}

impl<S> BufferedStream<S> {
    /// Buffers of `read` and `write` bytes (0: none) in front of `inner`; nothing is allocated
    /// until a read or a write needs it.
    pub(crate) fn with_capacity(read: usize, write: usize, inner: S) -> Self {
        BufferedStream {
            inner,
            read_capacity: read,
            read_buf: Vec::new(),
            read_pos: 0,
            write_capacity: write,
            write_buf: Vec::new(),
            write_pos: 0,
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Return the inner stream. Anything left in either buffer is lost.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Bytes currently allocated for the two buffers (what the connection holds besides `S`).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.read_buf.capacity() + self.write_buf.capacity()
    }

    fn read_buffered(&self) -> &[u8] {
        &self.read_buf[self.read_pos..]
    }

    /// The peer has nothing more for us now and nothing is buffered in either direction: give
    /// the buffers back until the next read or write needs them.
    fn release_while_waiting(&mut self) {
        self.read_buf = Vec::new();
        self.read_pos = 0;
        if self.write_pos >= self.write_buf.len() {
            self.write_buf = Vec::new();
            self.write_pos = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BufferedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_buffered().is_empty() {
            if buf.remaining() >= this.read_capacity {
                // Nothing buffered and the caller's buffer is at least as large as ours: read
                // straight into it (as tokio's `BufReader` does).
                let res = Pin::new(&mut this.inner).poll_read(cx, buf);
                if res.is_pending() {
                    this.release_while_waiting();
                }
                return res;
            }
            if this.read_buf.capacity() == 0 {
                return this.poll_read_unbuffered(cx, buf);
            }
            this.read_buf.clear();
            this.read_pos = 0;
            let spare = this.read_buf.spare_capacity_mut();
            let mut fill = ReadBuf::uninit(&mut spare[..this.read_capacity]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut fill) {
                Poll::Pending => {
                    this.release_while_waiting();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = fill.filled().len();
                    // SAFETY: `ReadBuf` guarantees that its first `filled().len()` bytes, which
                    // are the vector's first `n` spare bytes, have been initialised.
                    unsafe { this.read_buf.set_len(n) };
                }
            }
        }
        let available = this.read_buffered();
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        this.read_pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> BufferedStream<S> {
    /// A read while the read buffer is released: the peer is asked through a stack buffer, so
    /// that nothing is allocated if it has sent nothing. What the caller's buffer cannot take
    /// goes into a newly allocated read buffer, as does everything when the peer filled the
    /// probe (it may have more: later reads then use the whole buffer). A short read that fits
    /// is handed over as it is: the peer had no more, so the next read would likely wait and
    /// release a buffer allocated now.
    fn poll_read_unbuffered(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut probe = [MaybeUninit::<u8>::uninit(); PROBE_BYTES];
        let probe_len = self.read_capacity.min(PROBE_BYTES);
        let mut fill = ReadBuf::uninit(&mut probe[..probe_len]);
        match Pin::new(&mut self.inner).poll_read(cx, &mut fill) {
            Poll::Pending => {
                self.release_while_waiting();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let got = fill.filled();
                if got.len() <= buf.remaining() && got.len() < probe_len {
                    buf.put_slice(got);
                    return Poll::Ready(Ok(()));
                }
                let mut read_buf = Vec::with_capacity(self.read_capacity);
                read_buf.extend_from_slice(got);
                let n = got.len().min(buf.remaining());
                buf.put_slice(&read_buf[..n]);
                self.read_buf = read_buf;
                self.read_pos = n;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> BufferedStream<S> {
    /// Writes out the write buffer; empties it once all is written.
    fn flush_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.write_pos < self.write_buf.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.write_buf[self.write_pos..]))
            {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write the buffered data",
                    )))
                }
                Ok(n) => self.write_pos += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.write_buf.clear();
        self.write_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Copies `len` bytes into the write buffer (allocated first if released).
    fn buffer_write(&mut self, bufs: &[IoSlice<'_>]) {
        if self.write_buf.capacity() == 0 {
            self.write_buf = Vec::with_capacity(self.write_capacity);
        }
        for b in bufs {
            self.write_buf.extend_from_slice(b);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BufferedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_buf.len() + buf.len() > this.write_capacity {
            ready!(this.flush_buf(cx))?;
        }
        if buf.len() >= this.write_capacity {
            Pin::new(&mut this.inner).poll_write(cx, buf)
        } else {
            this.buffer_write(&[IoSlice::new(buf)]);
            Poll::Ready(Ok(buf.len()))
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs
            .iter()
            .fold(0usize, |acc, b| acc.saturating_add(b.len()));
        if this.write_buf.len() + total > this.write_capacity {
            ready!(this.flush_buf(cx))?;
        }
        if total >= this.write_capacity {
            Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
        } else {
            this.buffer_write(bufs);
            Poll::Ready(Ok(total))
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.flush_buf(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.flush_buf(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn pair(read: usize, write: usize) -> (BufferedStream<DuplexStream>, DuplexStream) {
        let (ours, peer) = duplex(1 << 16);
        (BufferedStream::with_capacity(read, write, ours), peer)
    }

    #[tokio::test]
    async fn nothing_is_allocated_before_the_first_read_or_write() {
        let (stream, _peer) = pair(4096, 1460);
        assert_eq!(stream.allocated(), 0);
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_read_of_the_peer() {
        let (mut stream, mut peer) = pair(4096, 0);
        peer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"G");
        assert_eq!(stream.read_buffered(), b"ET / HTTP/1.1\r\n\r\n");
        let mut rest = [0u8; 17];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"ET / HTTP/1.1\r\n\r\n");
        assert!(stream.read_buffered().is_empty());
    }

    #[tokio::test]
    async fn a_read_that_waits_releases_both_buffers() {
        let (mut stream, mut peer) = pair(4096, 1460);
        peer.write_all(b"request").await.unwrap();
        // Read in two parts, so that the rest of the first is buffered.
        let mut got = [0u8; 3];
        stream.read_exact(&mut got).await.unwrap();
        let mut rest = [0u8; 4];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!((&got, &rest), (b"req", b"uest"));
        stream.write_all(b"response").await.unwrap();
        stream.flush().await.unwrap();
        assert!(stream.allocated() >= 4096 + 1460, "{}", stream.allocated());
        // Nothing more from the peer: the read waits, and the buffers go.
        let mut next = [0u8; 1];
        assert!(stream.read(&mut next).now_or_never().is_none());
        assert_eq!(stream.allocated(), 0);
        // The next request is read as before.
        peer.write_all(b"again").await.unwrap();
        let mut again = [0u8; 5];
        stream.read_exact(&mut again).await.unwrap();
        assert_eq!(&again, b"again");
        let mut response = [0u8; 8];
        peer.read_exact(&mut response).await.unwrap();
        assert_eq!(&response, b"response");
    }

    #[tokio::test]
    async fn unwritten_bytes_keep_the_write_buffer_while_waiting() {
        let (mut stream, mut peer) = pair(4096, 1460);
        stream.write_all(b"not yet flushed").await.unwrap();
        let mut next = [0u8; 1];
        assert!(stream.read(&mut next).now_or_never().is_none());
        assert_eq!(stream.allocated(), 1460);
        stream.flush().await.unwrap();
        let mut got = [0u8; 15];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"not yet flushed");
    }

    #[tokio::test]
    async fn small_writes_are_coalesced_and_large_ones_pass_through() {
        let (mut stream, mut peer) = pair(0, 16);
        stream.write_all(b"head ").await.unwrap();
        stream.write_all(b"body").await.unwrap();
        assert_eq!(stream.write_buf, b"head body");
        stream
            .write_all(b"a write larger than the buffer")
            .await
            .unwrap();
        assert!(stream.write_buf.is_empty());
        let n = stream
            .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")])
            .await
            .unwrap();
        assert_eq!(n, 4);
        stream.flush().await.unwrap();
        let mut got = vec![0u8; 9 + 30 + 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..], b"head bodya write larger than the bufferabcd");
    }

    #[tokio::test]
    async fn large_reads_bypass_the_buffer() {
        let (mut stream, mut peer) = pair(8, 0);
        peer.write_all(b"0123456789abcdef").await.unwrap();
        let mut big = [0u8; 16];
        stream.read_exact(&mut big).await.unwrap();
        assert_eq!(&big, b"0123456789abcdef");
        assert_eq!(stream.allocated(), 0);
    }

    #[tokio::test]
    async fn a_read_that_finds_nothing_allocates_nothing() {
        use crate::protocols::http::v1::client::tests_response_room::allocations;
        let (mut stream, mut peer) = pair(4096, 0);
        let mut one = [0u8; 1];
        let before = allocations();
        assert!(stream.read(&mut one).now_or_never().is_none());
        assert_eq!(allocations() - before, 0, "a buffer allocated for a read that waits");
        assert_eq!(stream.allocated(), 0);
        // What arrives next is read as before: one byte to the caller, the rest buffered.
        peer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        stream.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"G");
        assert_eq!(stream.read_buffered(), b"ET / HTTP/1.1\r\n\r\n");
        assert_eq!(stream.read_buf.capacity(), 4096);
    }

    #[tokio::test]
    async fn a_short_read_that_fits_is_handed_over_without_a_buffer() {
        use crate::protocols::http::v1::client::tests_response_room::allocations;
        let (mut stream, mut peer) = pair(4096, 0);
        peer.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        let mut head = [0u8; 64];
        let before = allocations();
        let n = stream.read(&mut head).await.unwrap();
        assert_eq!(allocations() - before, 0);
        assert_eq!(&head[..n], b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(stream.allocated(), 0);
    }

    #[tokio::test]
    async fn a_full_probe_keeps_reading_through_the_whole_buffer() {
        // More than the probe takes: the rest comes through the read buffer, in order.
        let (mut stream, mut peer) = pair(3 * PROBE_BYTES, 0);
        let data: Vec<u8> = (0..2 * PROBE_BYTES + 100).map(|i| (i % 251) as u8).collect();
        peer.write_all(&data).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        while got.len() < data.len() {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
            assert!(stream.allocated() <= 3 * PROBE_BYTES);
        }
        assert_eq!(got, data);
        // The first read asked for the probe's worth, then the buffer was filled from the peer.
        assert_eq!(stream.read_buf.capacity(), 3 * PROBE_BYTES);
    }

    #[tokio::test]
    async fn unbuffered_reads_go_straight_through() {
        let (mut stream, mut peer) = pair(0, 0);
        peer.write_all(b"xy").await.unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).await.unwrap();
        stream.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"y");
        assert_eq!(stream.allocated(), 0);
    }
}
