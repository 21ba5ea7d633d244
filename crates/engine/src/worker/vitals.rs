//! What a supervisor (systemd, a container health check) may watch of a running worker: its
//! lifecycle stage — starting, consuming, stopping — and a beat counter the worker's heartbeat
//! loop advances, so a watchdog can tell a live event loop from a hung one. The engine only
//! publishes; the binary decides what to tell whom (`sd_notify`, a health endpoint).

use tokio::sync::watch;

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// Connecting, declaring queues, replaying spilled writes.
    #[default]
    Starting,
    /// Consuming from its queues.
    Ready,
    /// Warm or cold shutdown under way: no more fetching.
    Stopping,
}

/// The stage and how many heartbeats the worker's loops have completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vitals {
    pub stage: Stage,
    /// Advances once per heartbeat interval while the worker's runtime is alive.
    pub beats: u64,
}

/// The worker's side: set by the worker's own loops only.
#[derive(Debug)]
pub(crate) struct Pulse(watch::Sender<Vitals>);

impl Default for Pulse {
    fn default() -> Self {
        Pulse(watch::Sender::new(Vitals::default()))
    }
}

impl Pulse {
    pub(crate) fn stage(&self, stage: Stage) {
        self.0.send_modify(|v| v.stage = stage);
    }

    pub(crate) fn beat(&self) {
        self.0.send_modify(|v| v.beats = v.beats.wrapping_add(1));
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Vitals> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_see_stage_and_beats() {
        let p = Pulse::default();
        let w = p.watch();
        assert_eq!(*w.borrow(), Vitals::default());
        p.stage(Stage::Ready);
        p.beat();
        p.beat();
        assert_eq!(
            *w.borrow(),
            Vitals {
                stage: Stage::Ready,
                beats: 2
            }
        );
    }
}
