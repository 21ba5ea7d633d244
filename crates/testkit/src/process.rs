//! Child processes of a test (workers, servers): killed when the test ends however it ends,
//! signalled through the syscall, waited for with a bound.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A child process, killed and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    /// Send `sig` (SIGTERM, SIGKILL, …).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig);
    }

    /// Wait up to `within` for it to exit (then kill it): its status, or `None` if it had to be
    /// killed.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}
