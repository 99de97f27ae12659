//! [`Relay`]: a TCP relay in front of a store's server that can turn into a black hole, for
//! testing that a silently dead connection (half-open TCP, a partition that drops packets
//! without a reset) is detected. No socket error ever reports such a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A relay on a free loopback port, forwarding every connection to a target address while
/// open, and silently dropping everything (connections stay up) while closed.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Relay {
    /// Starts relaying to `target` (`host:port`).
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let open = Arc::new(AtomicBool::new(true));
        let flag = open.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, flag.clone()));
                tokio::spawn(pipe(sr, cw, flag.clone()));
            }
        });
        Relay { port, open }
    }

    /// The relay's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Opens (forward) or closes (black hole) the relay, for existing and new connections.
    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }
}

/// Copies `from` to `to` while `open`; drops what it reads while closed.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, open: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if open.load(Ordering::Acquire) && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}
