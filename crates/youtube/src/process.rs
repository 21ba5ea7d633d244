//! The one wrapper that runs every child program of this crate (yt-dlp, ffmpeg, ffprobe): own
//! process group, the whole group killed on timeout, cancellation or drop, stdin closed, stderr
//! tail kept for errors, secrets scrubbed from anything that may reach an error message.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Bytes of stderr kept (the tail) for error messages.
const STDERR_TAIL: usize = 16 * 1024;
/// Upper bound on captured stdout (yt-dlp JSON of a large playlist is a few MB).
const STDOUT_MAX: usize = 256 * 1024 * 1024;

/// A command line to run.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    /// Short name used in errors ("yt-dlp", "ffmpeg").
    pub tool: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub timeout: Duration,
    /// Strings replaced by `***` in captured output (proxy URLs with passwords, …).
    pub secrets: Vec<String>,
    /// Extra environment (secrets go here, never into `args`: the command line is public).
    pub env: Vec<(OsString, OsString)>,
    /// Environment variables removed (e.g. `NO_PROXY`, so no host bypasses hlbot's guard).
    pub env_remove: Vec<OsString>,
    /// Private files that live as long as the command (a copy of the cookies file).
    pub private: Vec<std::sync::Arc<tempfile::TempPath>>,
}

impl Cmd {
    pub fn new(tool: &'static str, program: impl Into<PathBuf>, timeout: Duration) -> Self {
        Cmd {
            tool,
            program: program.into(),
            args: Vec::new(),
            timeout,
            secrets: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            private: Vec::new(),
        }
    }
    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I, S>(&mut self, it: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }
}

/// What a finished child left behind.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// Tail of stderr, lossily decoded, secrets scrubbed.
    pub stderr: String,
}

impl Output {
    /// Turns a non-zero exit into [`Error::Tool`] with the stderr tail.
    pub fn check(self, tool: &str) -> Result<Output> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(Error::Tool {
                tool: tool.to_string(),
                status: self.status.to_string(),
                stderr: last_lines(&self.stderr, 12),
            })
        }
    }
}

/// The last `n` non-empty lines of `text`, for compact error messages.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills the child's process group when dropped while armed (future dropped mid-run).
struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to every process in group `pgid` (the child and whatever it spawned) — through the
/// syscall, not a `kill` binary (slim images have none).
fn kill_group(pgid: u32) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn scrub(mut text: String, secrets: &[String]) -> String {
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s.as_str(), "***");
    }
    text
}

/// Runs `cmd` to completion. Non-zero exits come back as `Ok(Output)` for the caller to classify;
/// `Err` means it could not start, timed out or was cancelled (group killed in both cases).
/// `on_line` sees every stdout line as it arrives (progress parsing).
pub(crate) async fn run(
    cmd: &Cmd,
    cancel: &CancellationToken,
    on_line: Option<&(dyn Fn(&str) + Send + Sync)>,
) -> Result<Output> {
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for k in &cmd.env_remove {
        command.env_remove(k);
    }
    command.envs(cmd.env.iter().map(|(k, v)| (k, v)));
    tracing::debug!(tool = cmd.tool, program = %cmd.program.display(), "spawn");
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => Error::ToolMissing {
            tool: cmd.tool.to_string(),
            path: cmd.program.clone(),
        },
        _ => Error::io(format!("spawning {}", cmd.tool), e),
    })?;
    let mut guard = GroupGuard { pgid: child.id() };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let outcome = {
        let work = async {
            let (out, err, status) = tokio::join!(
                read_stdout(stdout, on_line),
                read_tail(stderr),
                child.wait()
            );
            (out, err, status)
        };
        tokio::select! {
            r = work => Ok(r),
            _ = tokio::time::sleep(cmd.timeout) => {
                Err(Error::Timeout { tool: cmd.tool.to_string(), after: cmd.timeout })
            }
            _ = cancel.cancelled() => Err(Error::Cancelled),
        }
    };
    match outcome {
        Ok((out, err, status)) => {
            // Exited by itself: the group leader is reaped, so its pgid must not be signalled.
            guard.pgid = None;
            let status = status.map_err(|e| Error::io(format!("waiting for {}", cmd.tool), e))?;
            Ok(Output {
                status,
                stdout: out,
                stderr: scrub(String::from_utf8_lossy(&err).into_owned(), &cmd.secrets),
            })
        }
        Err(e) => {
            guard.kill();
            let _ = child.kill().await;
            tracing::warn!(tool = cmd.tool, error = %e, "child process group killed");
            Err(e)
        }
    }
}

async fn read_stdout(
    pipe: Option<impl AsyncRead + Unpin>,
    on_line: Option<&(dyn Fn(&str) + Send + Sync)>,
) -> Vec<u8> {
    let Some(pipe) = pipe else { return Vec::new() };
    let mut reader = BufReader::new(pipe);
    let mut all = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(cb) = on_line {
                    for part in String::from_utf8_lossy(&line).split(['\r', '\n']) {
                        if !part.trim().is_empty() {
                            cb(part);
                        }
                    }
                }
                if all.len() + line.len() <= STDOUT_MAX {
                    all.extend_from_slice(&line);
                }
            }
        }
    }
    all
}

async fn read_tail(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Cmd {
        let mut c = Cmd::new("sh", "/bin/sh", timeout);
        c.args(["-c", script]);
        c
    }

    #[tokio::test]
    async fn captures_output_and_status() {
        let out = run(
            &sh("echo hi; echo oops >&2; exit 3", Duration::from_secs(10)),
            &CancellationToken::new(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.stderr.trim(), "oops");
        let err = out.check("sh").unwrap_err();
        assert!(err.to_string().contains("oops"), "{err}");
    }

    #[tokio::test]
    async fn missing_program_is_tool_missing() {
        let c = Cmd::new("yt-dlp", "/nonexistent/yt-dlp", Duration::from_secs(5));
        let err = run(&c, &CancellationToken::new(), None).await.unwrap_err();
        assert!(matches!(err, Error::ToolMissing { .. }), "{err}");
        assert!(!err.retryable());
    }

    fn alive(marker: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
    }

    #[tokio::test]
    async fn timeout_kills_grandchildren() {
        // Unique sleep lengths double as markers to look for in /proc.
        let a = format!("300.{}1", std::process::id());
        let b = format!("300.{}2", std::process::id());
        let c = sh(
            &format!("sleep {a} & sleep {b}; wait"),
            Duration::from_millis(500),
        );
        let err = run(&c, &CancellationToken::new(), None).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.retryable());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!alive(&a), "background grandchild survived");
        assert!(!alive(&b), "child survived");
    }

    #[tokio::test]
    async fn cancel_kills_group_and_secrets_are_scrubbed() {
        let token = CancellationToken::new();
        let t2 = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            t2.cancel();
        });
        let marker = format!("300.{}3", std::process::id());
        let c = sh(&format!("sleep {marker} & wait"), Duration::from_secs(60));
        let err = run(&c, &token, None).await.unwrap_err();
        assert!(matches!(err, Error::Cancelled));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!alive(&marker));

        let mut c = sh(
            "echo 'proxy http://u:s3cret@p' >&2; exit 1",
            Duration::from_secs(5),
        );
        c.secrets.push("http://u:s3cret@p".into());
        let out = run(&c, &CancellationToken::new(), None).await.unwrap();
        assert!(!out.stderr.contains("s3cret"));
    }
}
