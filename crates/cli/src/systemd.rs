//! The systemd notify protocol (`sd_notify`, `Type=notify`): READY=1 once the worker consumes,
//! WATCHDOG=1 while its heartbeat advances, STOPPING=1 when it begins to shut down. Plain
//! datagrams to `$NOTIFY_SOCKET`; nothing is sent when systemd did not ask for it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use hlbot_engine::worker::vitals::{Stage, Vitals};
use tokio::sync::watch;

/// Where to send notifications, read from the environment systemd sets for the service.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
    /// `WATCHDOG_USEC` when the watchdog is on for this process (`WATCHDOG_PID` unset or ours).
    watchdog: Option<Duration>,
}

#[derive(Debug)]
enum Target {
    Path(std::path::PathBuf),
    /// Linux abstract socket: `@name` in `NOTIFY_SOCKET`.
    Abstract(Vec<u8>),
}

impl Notifier {
    /// `None` when `NOTIFY_SOCKET` is unset (not started by systemd with `Type=notify`).
    pub fn from_env() -> Option<Self> {
        let addr = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = addr.as_encoded_bytes();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => Target::Abstract(name.to_vec()),
            None => Target::Path(addr.clone().into()),
        };
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0)
            .filter(|_| match std::env::var("WATCHDOG_PID") {
                Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
                Err(_) => true,
            })
            .map(Duration::from_micros);
        let socket = UnixDatagram::unbound().ok()?;
        Some(Self {
            socket,
            target,
            watchdog,
        })
    }

    /// Send one notification (`KEY=value` lines). Failures are logged, never fatal.
    pub fn send(&self, state: &str) {
        let sent = match &self.target {
            Target::Path(p) => self.socket.send_to(state.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| self.socket.send_to_addr(state.as_bytes(), &a))
            }
        };
        if let Err(e) = sent {
            tracing::warn!("systemd notify failed: {e}");
        }
    }

    /// Follow the worker's vitals until it stops: READY=1 on consuming, WATCHDOG=1 every half
    /// `WATCHDOG_USEC` as long as a heartbeat was seen within three heartbeat intervals (a hung
    /// event loop stops the pings and systemd restarts the unit), STOPPING=1 on shutdown.
    pub async fn follow(self, mut vitals: watch::Receiver<Vitals>, heartbeat: Duration) {
        let period = self.watchdog.map(|w| w / 2).unwrap_or(Duration::MAX);
        let mut tick = tokio::time::interval(period.min(Duration::from_secs(86_400)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stage = Stage::Starting;
        let mut beats = 0u64;
        let mut last_beat = Instant::now();
        loop {
            tokio::select! {
                changed = vitals.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *vitals.borrow_and_update();
                    if now.beats != beats {
                        beats = now.beats;
                        last_beat = Instant::now();
                    }
                    if now.stage != stage {
                        stage = now.stage;
                        match stage {
                            Stage::Ready => self.send("READY=1\nSTATUS=consuming"),
                            Stage::Stopping => {
                                self.send("STOPPING=1\nSTATUS=warm shutdown: draining");
                                return;
                            }
                            Stage::Starting => {}
                        }
                    }
                }
                _ = tick.tick(), if self.watchdog.is_some() && stage == Stage::Ready => {
                    if last_beat.elapsed() < heartbeat * 3 {
                        self.send("WATCHDOG=1");
                    } else {
                        tracing::warn!(
                            "no worker heartbeat for {:.0?}: withholding the systemd watchdog ping",
                            last_beat.elapsed()
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            target: Target::Path(path),
            watchdog: Some(Duration::from_millis(100)),
        };
        (dir, rx, n)
    }

    fn recv(rx: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn ready_then_pings_while_beating_then_stopping() {
        let (_dir, rx, n) = listener();
        let (tx, vitals) = watch::channel(Vitals::default());
        let task = tokio::spawn(n.follow(vitals, Duration::from_millis(40)));
        tx.send_modify(|v| v.stage = Stage::Ready);
        let rx = std::sync::Arc::new(rx);
        let r = rx.clone();
        let first = tokio::task::spawn_blocking(move || recv(&r)).await.unwrap();
        assert!(first.starts_with("READY=1"), "{first}");
        // Beating: pings arrive.
        for _ in 0..3 {
            tx.send_modify(|v| v.beats += 1);
            let r = rx.clone();
            let m = tokio::task::spawn_blocking(move || recv(&r)).await.unwrap();
            assert_eq!(m, "WATCHDOG=1");
        }
        tx.send_modify(|v| v.stage = Stage::Stopping);
        task.await.unwrap();
        // Drain what is left: the last message is STOPPING.
        rx.set_nonblocking(true).unwrap();
        let mut last = String::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = rx.recv(&mut buf) {
            last = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(last.starts_with("STOPPING=1"), "{last}");
    }

    #[tokio::test]
    async fn a_hung_heartbeat_withholds_pings() {
        let (_dir, rx, n) = listener();
        let (tx, vitals) = watch::channel(Vitals::default());
        let task = tokio::spawn(n.follow(vitals, Duration::from_millis(20)));
        tx.send_modify(|v| v.stage = Stage::Ready);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // No beat for 15 heartbeat intervals: after READY (and the pings at 0 and 50 ms, sent
        // before the 60 ms grace ran out) nothing more arrives.
        rx.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert!(got[0].starts_with("READY=1"), "{got:?}");
        let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
        assert!(pings <= 2, "pings while hung: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            rx.recv(&mut buf).is_err(),
            "a ping after the heartbeat stopped"
        );
        drop(tx);
        task.await.unwrap();
    }
}
