//! The crate's one subprocess wrapper (PDFium worker, tesseract): own process group, killed
//! with its whole group on timeout, cancel or drop, stdin fed from memory, stdout collected
//! or streamed line by line, stderr captured for the error message. Long-lived PDFium workers
//! are driven by `pool` with the same start, group kill and guard.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::error::{PdfError, Result};

/// Keep at most this much of a child's stderr (the tail is what explains a failure).
// The one-shot runner lost its last caller to the warm OCR recognisers; kept (and tested) for
// the next one-shot tool.
#[cfg_attr(not(test), allow(dead_code))]
const STDERR_CAP: usize = 16 * 1024;

/// How long a program that said its last line may take to exit (`drive_until`).
// The one-shot runner lost its last caller to the warm OCR recognisers; kept (and tested) for
// the next one-shot tool.
#[cfg_attr(not(test), allow(dead_code))]
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// A program to run.
// The one-shot runner lost its last caller to the warm OCR recognisers; kept (and tested) for
// the next one-shot tool.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Short description for errors, e.g. "tesseract page 3".
    pub what: String,
}

/// How a finished program ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    /// Collected stdout (empty when it was streamed).
    #[cfg_attr(not(test), allow(dead_code))]
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// SIGKILL to every process in group `pgid` (the child and whatever it spawned) — through the
/// syscall, not a `kill` binary (slim images have none).
pub(crate) fn kill_group(pgid: u32) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Guard that kills the process group if the future running the child is dropped.
pub(crate) struct GroupGuard(Option<u32>);

impl GroupGuard {
    pub(crate) fn new(pgid: u32) -> Self {
        GroupGuard(Some(pgid))
    }

    /// The child ended normally (or lives on in the pool): do not kill it.
    pub(crate) fn defuse(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

/// Starts `program` in its own process group with piped stdin/stdout/stderr. The child is a
/// plain `std` child so it can be started ahead of time and driven later by any runtime.
pub(crate) fn start(
    program: &Path,
    args: &[OsString],
    env: &[(String, String)],
) -> Result<std::process::Child> {
    std::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                PdfError::ToolMissing {
                    program: program.display().to_string(),
                    detail: e.to_string(),
                }
            }
            _ => PdfError::io(program, e),
        })
}

/// Kills a started child's group and reaps it in the background (for unusable workers).
pub(crate) fn discard(mut child: std::process::Child) {
    kill_group(child.id());
    std::thread::spawn(move || child.wait());
}

/// Runs `spec` to completion. With `lines`, stdout is streamed line by line into the channel
/// instead of being collected.
// The one-shot runner lost its last caller to the warm OCR recognisers; kept (and tested) for
// the next one-shot tool.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) async fn run(
    spec: Spec,
    cancel: &CancellationToken,
    lines: Option<UnboundedSender<String>>,
) -> Result<Finished> {
    let child = start(&spec.program, &spec.args, &spec.env)?;
    drive(child, spec, cancel, lines).await
}

/// Feeds `spec.stdin` to an already started child and waits for it under `spec.timeout` and
/// `cancel`; the child's whole process group is killed on timeout, cancel or drop.
// The one-shot runner lost its last caller to the warm OCR recognisers; kept (and tested) for
// the next one-shot tool.
#[cfg_attr(not(test), allow(dead_code))]
async fn drive(
    child: std::process::Child,
    spec: Spec,
    cancel: &CancellationToken,
    lines: Option<UnboundedSender<String>>,
) -> Result<Finished> {
    drive_until(child, spec, cancel, lines, |_| false).await
}

/// Like [`drive`] with streamed lines, but done as soon as a line satisfies `last` (the
/// program's final word; it exits by itself right after): that line is forwarded and the
/// program is reaped in the background instead of waited for. The status is then reported as
/// success and stderr as empty. A program still alive `EXIT_GRACE` later has its group killed.
// The one-shot runner lost its last caller to the warm OCR recognisers; kept (and tested) for
// the next one-shot tool.
#[cfg_attr(not(test), allow(dead_code))]
async fn drive_until(
    mut child: std::process::Child,
    spec: Spec,
    cancel: &CancellationToken,
    lines: Option<UnboundedSender<String>>,
    last: fn(&str) -> bool,
) -> Result<Finished> {
    let pid = child.id();
    let guard = GroupGuard(Some(pid));
    let io_err = |e| PdfError::io(&spec.program, e);
    let stdin = child
        .stdin
        .take()
        .map(tokio::process::ChildStdin::from_std)
        .transpose()
        .map_err(io_err)?;
    let stdout = child
        .stdout
        .take()
        .map(tokio::process::ChildStdout::from_std)
        .transpose()
        .map_err(io_err)?;
    let stderr = child
        .stderr
        .take()
        .map(tokio::process::ChildStderr::from_std)
        .transpose()
        .map_err(io_err)?;
    // Waiting blocks a pool thread; a killed child makes it return, so nothing leaks.
    let mut wait = tokio::task::spawn_blocking(move || child.wait());
    let (said_last, heard_last) = tokio::sync::oneshot::channel::<()>();
    let input = spec.stdin.clone().unwrap_or_default();
    let feed = async move {
        if let Some(mut s) = stdin {
            // A child that exits without reading its input is not our error to report here.
            let _ = s.write_all(&input).await;
            let _ = s.shutdown().await;
        }
    };
    let read_err = async move {
        let mut buf = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut buf).await;
        }
        if buf.len() > STDERR_CAP {
            buf.drain(..buf.len() - STDERR_CAP);
        }
        String::from_utf8_lossy(&buf).trim().to_string()
    };
    let read_out = async move {
        let mut collected = Vec::new();
        if let Some(s) = stdout {
            match lines {
                Some(tx) => {
                    let mut reader = BufReader::new(s).lines();
                    let mut said_last = Some(said_last);
                    while let Ok(Some(line)) = reader.next_line().await {
                        let is_last = last(&line);
                        let _ = tx.send(line);
                        if is_last && let Some(said) = said_last.take() {
                            let _ = said.send(());
                        }
                    }
                }
                None => {
                    let mut s = s;
                    let _ = s.read_to_end(&mut collected).await;
                }
            }
        }
        collected
    };
    let all = async {
        let (_, stdout, stderr, status) = tokio::join!(feed, read_out, read_err, &mut wait);
        (stdout, stderr, status)
    };
    let ended_early = async {
        match heard_last.await {
            Ok(()) => (),
            // The sender went away without a last line: leave it to `all`.
            Err(_) => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        r = all => Ok(r),
        () = ended_early => {
            std::mem::forget(guard);
            tokio::spawn(async move {
                // Not reaped yet while this waits, so the group id cannot have been reused.
                if tokio::time::timeout(EXIT_GRACE, wait).await.is_err() {
                    kill_group(pid);
                }
            });
            return Ok(Finished {
                status: std::os::unix::process::ExitStatusExt::from_raw(0),
                stdout: Vec::new(),
                stderr: String::new(),
            });
        }
        _ = tokio::time::sleep(spec.timeout) => Err(PdfError::Timeout {
            what: spec.what.clone(),
            seconds: spec.timeout.as_secs_f64(),
        }),
        _ = cancel.cancelled() => Err(PdfError::Cancelled),
    };
    match outcome {
        Ok((stdout, stderr, status)) => {
            std::mem::forget(guard);
            let status = status
                .map_err(|e| PdfError::Child {
                    detail: format!("waiting for {}: {e}", spec.what),
                    stderr: stderr.clone(),
                })?
                .map_err(io_err)?;
            Ok(Finished {
                status,
                stdout,
                stderr,
            })
        }
        // Dropping the guard kills the whole group; the blocking wait then reaps the child.
        Err(e) => {
            drop(guard);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Spec {
        Spec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            stdin: Some(b"hello".to_vec()),
            timeout,
            what: "sh".into(),
        }
    }

    #[tokio::test]
    async fn collects_output_and_stderr() {
        let f = run(
            sh("cat; echo oops >&2; exit 3", Duration::from_secs(10)),
            &CancellationToken::new(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(f.stdout, b"hello");
        assert_eq!(f.stderr, "oops");
        assert_eq!(f.status.code(), Some(3));
    }

    #[tokio::test]
    async fn drive_until_returns_at_the_last_line() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let spec = sh("echo one; echo DONE; sleep 1", Duration::from_secs(30));
        let child = start(&spec.program, &spec.args, &spec.env).unwrap();
        let t = std::time::Instant::now();
        let f = drive_until(child, spec, &CancellationToken::new(), Some(tx), |l| {
            l == "DONE"
        })
        .await
        .unwrap();
        assert!(f.status.success());
        assert!(
            t.elapsed() < Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(rx.recv().await.as_deref(), Some("one"));
        assert_eq!(rx.recv().await.as_deref(), Some("DONE"));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-alive");
        // The grandchild would create the marker after 2 s unless the group is killed.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let err = run(
            sh(&script, Duration::from_millis(300)),
            &CancellationToken::new(),
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, PdfError::Timeout { .. }), "{err}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "grandchild survived the group kill");
    }

    #[tokio::test]
    async fn cancel_and_missing_program() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c2.cancel();
        });
        let err = run(sh("sleep 30", Duration::from_secs(60)), &cancel, None)
            .await
            .unwrap_err();
        assert!(matches!(err, PdfError::Cancelled));
        let mut spec = sh("true", Duration::from_secs(5));
        spec.program = "/nonexistent/hlbot-no-such-tool".into();
        let err = run(spec, &CancellationToken::new(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, PdfError::ToolMissing { .. }), "{err}");
    }
}
