//! Connections spread evenly over a [`super::ShardedServer`]'s threads.
//!
//! Every shard polls the same listening socket (a duplicate of it, registered with the shard's
//! own runtime). The shard that accepts a connection keeps it when no other shard has fewer
//! open connections, and otherwise hands it to the one with the fewest, which serves it from
//! then on (Envoy's "exact balance" does the same). Keep-alive connections live long, so the
//! split made at accept is the split of the load: with a socket per shard and `SO_REUSEPORT`,
//! the kernel's hash of the client's address and port put 41% and 59% of one benchmark's 32
//! connections on two threads, and the busier thread set the tail latency.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A connection accepted by one shard for another.
type Handed = (std::net::TcpStream, SocketAddr);

/// The open connections of every shard, and the way to hand one a connection.
pub(super) struct Balancer {
    open: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
}

impl Balancer {
    /// A balancer over `shards` shards and each shard's inbox, in shard order.
    pub(super) fn new(shards: usize) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Handed>>) {
        let (inboxes, receivers) = (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
        let balancer = Self {
            open: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            inboxes,
        };
        (Arc::new(balancer), receivers)
    }

    /// The shard that is to serve a connection `shard` accepted, counted as open there:
    /// `shard` itself unless another has fewer open connections.
    fn assign(&self, shard: usize) -> usize {
        let load = |i: usize| self.open[i].load(Ordering::Relaxed);
        let mut to = shard;
        for i in 0..self.open.len() {
            if load(i) < load(to) {
                to = i;
            }
        }
        self.open[to].fetch_add(1, Ordering::Relaxed);
        to
    }

    fn closed(&self, shard: usize) {
        self.open[shard].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One shard's side of the shared socket.
pub(super) struct Balanced {
    shard: usize,
    listener: TcpListener,
    inbox: mpsc::UnboundedReceiver<Handed>,
    balancer: Arc<Balancer>,
}

impl Balanced {
    /// Registers `listener` (the shard's duplicate of the shared socket) with the current
    /// runtime, which must be shard `shard`'s.
    pub(super) fn new(
        shard: usize,
        listener: std::net::TcpListener,
        inbox: mpsc::UnboundedReceiver<Handed>,
        balancer: Arc<Balancer>,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            shard,
            listener: TcpListener::from_std(listener)?,
            inbox,
            balancer,
        })
    }

    fn serve_here(&self, tcp: TcpStream) -> Counted {
        Counted {
            tcp,
            _open: Slot {
                balancer: self.balancer.clone(),
                shard: self.shard,
            },
        }
    }

    /// Takes a connection from this shard's inbox (its count was raised by the sender).
    fn take(&self, (tcp, peer): Handed) -> Option<(Counted, SocketAddr)> {
        match TcpStream::from_std(tcp) {
            Ok(tcp) => Some((self.serve_here(tcp), peer)),
            Err(e) => {
                self.balancer.closed(self.shard);
                tracing::warn!(error = %e, "could not take over a connection from another serving thread");
                None
            }
        }
    }

    /// Serves `tcp`, just accepted, here or hands it to a shard with fewer connections.
    fn place(&self, mut tcp: TcpStream, peer: SocketAddr) -> Option<(Counted, SocketAddr)> {
        super::no_delay(&mut tcp);
        let to = self.balancer.assign(self.shard);
        if to == self.shard {
            return Some((self.serve_here(tcp), peer));
        }
        let handed = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                self.balancer.closed(to);
                tracing::warn!(error = %e, "could not hand a connection to another serving thread");
                return None;
            }
        };
        match self.balancer.inboxes[to].send((handed, peer)) {
            Ok(()) => None,
            // That shard has stopped serving: this one serves the connection.
            Err(mpsc::error::SendError(handed)) => {
                self.balancer.closed(to);
                self.balancer.open[self.shard].fetch_add(1, Ordering::Relaxed);
                self.take(handed)
            }
        }
    }
}

impl Listener for Balanced {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let placed = tokio::select! {
                biased;
                Some(handed) = self.inbox.recv() => self.take(handed),
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => self.place(tcp, peer),
                    Err(e) => {
                        accept_failed(e).await;
                        None
                    }
                },
            };
            if let Some(placed) = placed {
                return placed;
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// As axum's own listener does: a connection the client gave up on is skipped; anything else
/// (such as running out of file descriptors) is logged and accepting pauses for a second.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Counts a shard's open connection until dropped.
struct Slot {
    balancer: Arc<Balancer>,
    shard: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.balancer.closed(self.shard);
    }
}

/// A connection served by a shard, counted as open there while it lives.
pub(super) struct Counted {
    tcp: TcpStream,
    /// Held, not read: dropping it counts the connection closed.
    _open: Slot,
}

impl Counted {
    #[cfg(test)]
    pub(super) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    #[cfg(test)]
    pub(super) fn shard(&self) -> usize {
        self._open.shard
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_shard_with_the_fewest_open() {
        let (balancer, _inboxes) = Balancer::new(3);
        // Shard 1 accepts everything: it keeps one, then hands the next two away.
        assert_eq!(balancer.assign(1), 1);
        assert_eq!(balancer.assign(1), 0);
        assert_eq!(balancer.assign(1), 2);
        // All even: the accepting shard keeps it.
        assert_eq!(balancer.assign(2), 2);
        balancer.closed(0);
        assert_eq!(balancer.assign(2), 0);
        let open: Vec<usize> = balancer
            .open
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect();
        assert_eq!(open, [1, 1, 2]);
    }

    #[tokio::test]
    async fn a_shard_keeps_or_hands_over_what_it_accepts_and_sets_no_delay() {
        let shared = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = shared.local_addr().expect("addr");
        let (balancer, mut inboxes) = Balancer::new(2);
        let second = inboxes.pop().expect("inbox");
        let first = inboxes.pop().expect("inbox");
        let mut zero = Balanced::new(0, shared.try_clone().expect("dup"), first, balancer.clone())
            .expect("shard 0");
        let mut one = Balanced::new(1, shared, second, balancer.clone()).expect("shard 1");
        let mut clients = Vec::new();
        let mut kept = Vec::new();
        // Only shard 0 accepts: it keeps the first and third, and hands the second and fourth
        // to shard 1, which takes them from its inbox.
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
            kept.push(zero.accept().await.0);
            clients.push(TcpStream::connect(addr).await.expect("connect"));
            let handed = tokio::select! {
                (io, _) = zero.accept() => panic!("shard 0 kept a second connection: {}", io.shard()),
                (io, _) = one.accept() => io,
            };
            kept.push(handed);
        }
        assert_eq!(
            kept.iter().map(Counted::shard).collect::<Vec<_>>(),
            [0, 1, 0, 1]
        );
        assert!(kept.iter().all(|io| io.tcp().nodelay().expect("nodelay")));
        assert_eq!(balancer.open[0].load(Ordering::Relaxed), 2);
        kept.truncate(1);
        assert_eq!(balancer.open[1].load(Ordering::Relaxed), 0);
        assert_eq!(balancer.open[0].load(Ordering::Relaxed), 1);
    }
}
