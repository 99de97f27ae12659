//! Closing idle connections: a connection on which nothing is read or written for an idle
//! period is closed, so that clients cannot hold file descriptors by connecting and sending
//! nothing (hyper's header read timeout only starts at a request's first byte).
//!
//! The check is coarse on purpose, to keep the clock and the timer wheel off the per-request
//! path: reads and writes only set a flag; a timer fires once per idle period and closes
//! the connection if the flag was not set since it last fired. A connection is therefore
//! closed between one and two idle periods after its last byte.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An `axum_server` acceptor that wraps every accepted connection in an [`IdleStream`].
#[derive(Debug, Clone, Copy)]
pub struct IdleAcceptor {
    idle: Duration,
}

impl IdleAcceptor {
    /// Connections silent for `idle` (at most `2 × idle`) are closed.
    pub fn new(idle: Duration) -> Self {
        Self { idle }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for IdleAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = IdleStream<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(Ok((IdleStream::new(stream, self.idle), service)))
    }
}

/// A connection that fails its next read with [`io::ErrorKind::TimedOut`] once nothing was
/// read or written for an idle period (see the [module documentation](self)).
#[derive(Debug)]
pub struct IdleStream<S> {
    inner: S,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    active: bool,
}

impl<S> IdleStream<S> {
    /// Wraps `inner`; the first idle period starts now.
    pub fn new(inner: S, idle: Duration) -> Self {
        Self { inner, idle, timer: Box::pin(tokio::time::sleep(idle)), active: false }
    }

    /// Whether the connection has been silent for a whole period: polls the timer, and when
    /// it fired after some activity, starts the next period instead.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            if !std::mem::take(&mut self.active) {
                return true;
            }
            let next = Instant::now() + self.idle;
            self.timer.as_mut().reset(next);
        }
        false
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.active = true;
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.active = true;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_and_an_active_one_does_not() {
        let idle = Duration::from_secs(75);
        let (client, server) = tokio::io::duplex(64);
        let mut s = IdleStream::new(server, idle);
        let mut c = client;
        let mut buf = [0u8; 8];
        // Traffic every 60 s keeps it open for 10 periods.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            c.write_all(b"x").await.expect("write");
            assert_eq!(s.read(&mut buf).await.expect("read"), 1);
        }
        // Then silence: closed after one to two periods.
        let start = Instant::now();
        let err = s.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = start.elapsed();
        assert!(waited > Duration::from_secs(0) && waited <= 2 * idle, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_count_as_activity() {
        let idle = Duration::from_secs(75);
        let (mut client, server) = tokio::io::duplex(1024);
        let mut s = IdleStream::new(server, idle);
        let mut buf = [0u8; 8];
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            s.write_all(b"y").await.expect("write");
            assert_eq!(client.read(&mut buf).await.expect("read"), 1);
        }
        // A read pending since the last write fails only after a silent period.
        let start = Instant::now();
        assert_eq!(s.read(&mut buf).await.expect_err("idle").kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_secs(14), "{:?}", start.elapsed());
    }
}
