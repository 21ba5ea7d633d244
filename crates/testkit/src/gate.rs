//! A TCP proxy tests put in front of a server (PostgreSQL, Redis): cut it (every connection
//! closed, new ones refused) and open it again — "the server goes away" — freeze the connections
//! it carries (open but silent), or lose the reply to one request (the request reaches the server
//! and runs, then the connection closes before its answer gets back).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to `target` that can be cut and opened again, freeze its connections, or lose
/// one reply.
pub struct Gate {
    pub addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    freeze: watch::Sender<u64>,
    /// Bytes whose request loses its reply (once), and whether that happened.
    trip: Arc<Mutex<Option<Vec<u8>>>>,
    tripped: Arc<AtomicBool>,
}

impl Gate {
    /// Listen on 127.0.0.1 (a free port) and forward to `target` (`host:port`).
    pub async fn start(target: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let gate = Gate {
            addr,
            open: Arc::new(AtomicBool::new(true)),
            cut: watch::channel(0u64).0,
            freeze: watch::channel(0u64).0,
            trip: Arc::new(Mutex::new(None)),
            tripped: Arc::new(AtomicBool::new(false)),
        };
        let (o, c, f, target) = (
            gate.open.clone(),
            gate.cut.clone(),
            gate.freeze.clone(),
            target.to_string(),
        );
        let (trip, tripped) = (gate.trip.clone(), gate.tripped.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let mut cut_rx = c.subscribe();
                let mut freeze_rx = f.subscribe();
                let target = target.clone();
                let (trip, tripped) = (trip.clone(), tripped.clone());
                tokio::spawn(async move {
                    let mut down = down;
                    let Ok(mut up) = TcpStream::connect(&target).await else {
                        return;
                    };
                    // The sockets are owned here, not by the copy: a frozen one stays open.
                    tokio::select! {
                        _ = pump(&mut down, &mut up, trip, tripped) => {}
                        _ = cut_rx.changed() => {}
                        _ = freeze_rx.changed() => {
                            // Both sockets stay open and silent until the gate is cut or dropped.
                            let _ = cut_rx.changed().await;
                        }
                    }
                });
            }
        });
        gate
    }

    /// Stop forwarding on every connection open now, keeping them open (a peer that stopped
    /// answering: no FIN, no RST); connections made later pass as usual.
    pub fn freeze(&self) {
        self.freeze.send_modify(|g| *g += 1);
    }

    /// Close every connection through the gate and refuse new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    /// Let connections through again.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// The next request (one read from the client) that contains `needle` is forwarded to the
    /// server, given time to run, and its connection closed before any reply gets back.
    pub fn lose_reply_to(&self, needle: &[u8]) {
        self.tripped.store(false, Ordering::SeqCst);
        *self.trip.lock().unwrap_or_else(|p| p.into_inner()) = Some(needle.to_vec());
    }

    /// Whether a reply was lost since [`Gate::lose_reply_to`].
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }
}

/// Copy both ways until either side closes, or until a request carrying the armed needle has
/// been forwarded (then both sockets close with its reply unforwarded).
async fn pump(
    down: &mut TcpStream,
    up: &mut TcpStream,
    trip: Arc<Mutex<Option<Vec<u8>>>>,
    tripped: Arc<AtomicBool>,
) {
    let (mut dr, mut dw) = down.split();
    let (mut ur, mut uw) = up.split();
    let mute = Arc::new(AtomicBool::new(false));
    let muted = mute.clone();
    let replies = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match ur.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if muted.load(Ordering::SeqCst) || dw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match dr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let hit = {
                let mut armed = trip.lock().unwrap_or_else(|p| p.into_inner());
                let hit = armed
                    .as_ref()
                    .is_some_and(|needle| buf[..n].windows(needle.len()).any(|w| w == needle));
                if hit {
                    *armed = None;
                }
                hit
            };
            if hit {
                // Muted before the request leaves: its reply is never forwarded.
                mute.store(true, Ordering::SeqCst);
                let _ = uw.write_all(&buf[..n]).await;
                tripped.store(true, Ordering::SeqCst);
                // Time for the server to read and run it before both sockets close.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            if uw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the connection (the caller then drops both sockets).
    tokio::select! {
        _ = replies => {}
        _ = requests => {}
    }
}
