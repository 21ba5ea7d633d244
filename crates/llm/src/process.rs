//! The one subprocess wrapper of this crate (tesseract for the offline chart reader): own
//! process group, killed with its children on timeout, cancel or drop, stdin fed from memory,
//! stderr captured into the error.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Runs `program args`, writes `stdin`, returns stdout as UTF-8 (lossy).
pub(crate) async fn run(
    program: &Path,
    args: &[&str],
    stdin: Vec<u8>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<String> {
    let name = program.display().to_string();
    let mut child = Command::new(program)
        .args(args)
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Process {
            program: name.clone(),
            message: format!("cannot start: {e}"),
            stderr: String::new(),
        })?;
    let pid = child.id();
    let mut input = child.stdin.take();
    let feed = async move {
        if let Some(mut i) = input.take() {
            // A broken pipe means the program exited early; its status says why.
            let _ = i.write_all(&stdin).await;
        }
    };
    let wait = async {
        feed.await;
        child.wait_with_output().await
    };
    let outcome = tokio::select! {
        r = wait => Some(r),
        _ = tokio::time::sleep(timeout) => None,
        _ = cancel.cancelled() => {
            kill_group(pid);
            return Err(Error::Cancelled);
        }
    };
    let Some(result) = outcome else {
        kill_group(pid);
        return Err(Error::Process {
            program: name,
            message: format!("timed out after {timeout:?}"),
            stderr: String::new(),
        });
    };
    let out = result.map_err(|e| Error::Process {
        program: name.clone(),
        message: e.to_string(),
        stderr: String::new(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Process {
            program: name,
            message: format!("exit status {}", out.status),
            stderr: stderr.chars().take(2000).collect(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// SIGKILL to the whole process group (the child leads it: `process_group(0)`) — through the
/// syscall, not a `kill` binary (slim images have none).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.filter(|p| *p > 1) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdout_stderr_timeout_cancel() {
        let c = CancellationToken::new();
        let sh = Path::new("/bin/sh");
        let out = run(
            sh,
            &["-c", "cat"],
            b"hello".to_vec(),
            Duration::from_secs(5),
            &c,
        )
        .await
        .unwrap();
        assert_eq!(out, "hello");
        let err = run(
            sh,
            &["-c", "echo boom >&2; exit 3"],
            vec![],
            Duration::from_secs(5),
            &c,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        // The grandchild dies with the group; a process outside the group survives.
        let mut bystander = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let err = run(sh, &["-c", &script], vec![], Duration::from_millis(300), &c)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        std::thread::sleep(Duration::from_millis(200));
        let grandchild = std::fs::read_to_string(&pidfile).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", grandchild.trim()));
        assert!(
            stat.map_or(true, |s| s.contains(") Z ")),
            "grandchild still running"
        );
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "the kill hit an unrelated process"
        );
        bystander.kill().unwrap();
        bystander.wait().unwrap();
        let c2 = CancellationToken::new();
        c2.cancel();
        let err = run(sh, &["-c", "sleep 30"], vec![], Duration::from_secs(5), &c2)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Cancelled));
        let err = run(
            Path::new("/nonexistent/tesseract"),
            &[],
            vec![],
            Duration::from_secs(1),
            &c,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("cannot start"));
    }
}
