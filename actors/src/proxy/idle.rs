//! The idle timeout of client connections and upgraded tunnels: `IdleIo`
//! wraps a stream and records when bytes last moved; `idle_watch` resolves
//! once none moved for the timeout, so the owner can drop the connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A stream that records when bytes last moved, for the idle timeout.
pub struct IdleIo<T> {
    inner: T,
    activity: Activity,
}

/// When bytes last moved on an `IdleIo`, shared with its `idle_watch`.
#[derive(Debug, Clone)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last read or write.
    last: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
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

impl<T> IdleIo<T> {
    /// Wraps `inner`; the `Activity` feeds `idle_watch`.
    pub fn new(inner: T) -> (Self, Activity) {
        let activity = Activity {
            epoch: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        };
        (
            IdleIo {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }

    fn touch(&self) {
        let elapsed = self.activity.epoch.elapsed().as_millis() as u64;
        self.activity.last.store(elapsed, Ordering::Relaxed);
    }
}

/// Resolves once no byte moved on the stream for `idle`.
pub async fn idle_watch(activity: Activity, idle: Duration) {
    loop {
        let last = Duration::from_millis(activity.last.load(Ordering::Relaxed));
        let deadline = activity.epoch + last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}
