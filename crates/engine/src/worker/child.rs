//! Process isolation: tasks marked `Isolation::Process` run in child processes (the `hlbot`
//! binary's hidden `worker-child` command), one task at a time per child, over JSON lines on
//! stdin/stdout. The worker can always stop them: hard limit, terminate and the memory cap kill
//! the child's whole process group; `max_tasks_per_child` recycles children.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hlbot_proto::ExceptionInfo;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::task::{ProgressSink, TaskContext, TaskError};
use crate::worker::limits::{Ended, sleep_opt};

/// Parent → child.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ToChild {
    Run {
        id: String,
        task: String,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        retries: u32,
        hostname: String,
    },
    Cancel,
}

/// Child → parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum FromChild {
    Progress { state: String, meta: Value },
    Ok { value: Value },
    Err { error: WireError },
}

/// `TaskError` on the pipe.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireError {
    Retry {
        exc: ExceptionInfo,
        after: Option<f64>,
    },
    Reject {
        exc: ExceptionInfo,
        requeue: bool,
    },
    Fail {
        exc: ExceptionInfo,
        traceback: Option<String>,
    },
}

impl From<TaskError> for WireError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Retry { exc, after } => WireError::Retry {
                exc,
                after: after.map(|d| d.as_secs_f64()),
            },
            TaskError::Reject { exc, requeue } => WireError::Reject { exc, requeue },
            TaskError::Fail { exc, traceback } => WireError::Fail { exc, traceback },
        }
    }
}

impl From<WireError> for TaskError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Retry { exc, after } => TaskError::Retry {
                exc,
                after: after.map(Duration::from_secs_f64),
            },
            WireError::Reject { exc, requeue } => TaskError::Reject { exc, requeue },
            WireError::Fail { exc, traceback } => TaskError::Fail { exc, traceback },
        }
    }
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pid: u32,
    done: u32,
}

impl Proc {
    fn kill(&mut self) {
        // The child leads its own process group: everything it started dies with it.
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        let _ = self.child.start_kill();
    }
}

/// Settings of the child pool.
#[derive(Debug, Clone)]
pub struct ChildOptions {
    /// Program and arguments that start a child serving [`serve`].
    pub command: Vec<String>,
    pub max_tasks_per_child: Option<u32>,
    pub max_memory_kib: Option<u64>,
    /// Environment set for each child (e.g. a database URL given as a flag): passed in the
    /// environment, never on the command line.
    pub env: ChildEnv,
}

/// Variables for child processes; `Debug` shows only their names (values may be secrets).
#[derive(Clone, Default)]
pub struct ChildEnv(pub Vec<(String, String)>);

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// Idle children, reused between tasks.
pub struct ChildPool {
    opts: ChildOptions,
    idle: Mutex<Vec<Proc>>,
}

impl std::fmt::Debug for ChildPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildPool")
            .field("opts", &self.opts)
            .finish()
    }
}

impl ChildPool {
    pub fn new(opts: ChildOptions) -> Self {
        Self {
            opts,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self) -> std::io::Result<Proc> {
        let (prog, rest) = self
            .opts
            .command
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty child command"))?;
        let mut child = Command::new(prog)
            .args(rest)
            .envs(self.opts.env.0.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        Ok(Proc {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            pid,
            done: 0,
        })
    }

    /// Run one task in a child. `on_pid` learns the child's pid (for inspect `worker_pid`).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        ctx: &TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        soft: Option<Duration>,
        hard: Option<Duration>,
        kill: CancellationToken,
        progress: Option<Arc<dyn ProgressSink>>,
        on_pid: impl FnOnce(u32),
    ) -> Ended {
        let reused = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut p = match reused.map_or_else(|| self.spawn(), Ok) {
            Ok(p) => p,
            Err(e) => return Ended::WorkerLost(format!("cannot start child process: {e}")),
        };
        on_pid(p.pid);
        let req = ToChild::Run {
            id: ctx.id.clone(),
            task: ctx.name.clone(),
            args,
            kwargs,
            retries: ctx.retries,
            hostname: ctx.hostname.clone(),
        };
        if let Err(e) = write_line(&mut p.stdin, &req).await {
            p.kill();
            return Ended::WorkerLost(format!("child process did not take the task: {e}"));
        }
        let soft_at = sleep_opt(soft);
        let hard_at = sleep_opt(hard);
        tokio::pin!(soft_at, hard_at);
        let mut soft_fired = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let ended = loop {
            tokio::select! {
                line = p.stdout.next_line() => match line {
                    Ok(Some(l)) => match serde_json::from_str::<FromChild>(&l) {
                        Ok(FromChild::Progress { state, meta }) => {
                            if let Some(s) = &progress {
                                s.progress(&ctx.id, &state, meta);
                            }
                        }
                        Ok(FromChild::Ok { value }) => break Ended::Done(Ok(value)),
                        Ok(FromChild::Err { error }) => break Ended::Done(Err(error.into())),
                        Err(_) => tracing::debug!(line = %l, "child wrote a non-protocol line"),
                    },
                    _ => {
                        let status = p.child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                        break Ended::WorkerLost(format!("child process exited ({status})"));
                    }
                },
                _ = &mut soft_at, if !soft_fired => {
                    soft_fired = true;
                    let _ = write_line(&mut p.stdin, &ToChild::Cancel).await;
                }
                _ = &mut hard_at => {
                    p.kill();
                    break Ended::HardLimit(hard.map_or(0.0, |d| d.as_secs_f64()));
                }
                _ = kill.cancelled() => {
                    p.kill();
                    break Ended::Terminated;
                }
                _ = tick.tick() => {
                    if let (Some(cap), Some(rss)) = (self.opts.max_memory_kib, rss_kib(p.pid)) {
                        if rss > cap {
                            p.kill();
                            break Ended::MemoryLimit(rss);
                        }
                    }
                }
            }
        };
        if matches!(ended, Ended::Done(_)) {
            p.done += 1;
            let over_mem = matches!((self.opts.max_memory_kib, rss_kib(p.pid)), (Some(cap), Some(rss)) if rss > cap);
            let recycle = self.opts.max_tasks_per_child.is_some_and(|m| p.done >= m) || over_mem;
            if recycle {
                p.kill();
                let _ = p.child.wait().await;
            } else if let Ok(mut idle) = self.idle.lock() {
                idle.push(p);
            }
        } else {
            let _ = p.child.wait().await;
        }
        ended
    }

    /// Kill every idle child (shutdown).
    pub fn shutdown(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            for p in idle.iter_mut() {
                p.kill();
            }
            idle.clear();
        }
    }
}

/// Resident set size of a process in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn write_line<T: Serialize>(w: &mut ChildStdin, v: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

struct StdoutProgress;

impl ProgressSink for StdoutProgress {
    fn progress(&self, _task_id: &str, state: &str, meta: Value) {
        print_line(&FromChild::Progress {
            state: state.into(),
            meta,
        });
    }
}

fn print_line(v: &FromChild) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The child side: read tasks from stdin, run them with `registry`, answer on stdout, until stdin
/// closes. Runs one task at a time.
pub async fn serve(registry: Registry) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(ToChild::Run {
            id,
            task,
            args,
            kwargs,
            retries,
            hostname,
        }) = serde_json::from_str(&line)
        else {
            continue;
        };
        let Some(t) = registry.get(&task) else {
            print_line(&FromChild::Err {
                error: WireError::Fail {
                    exc: ExceptionInfo::not_registered(&task),
                    traceback: None,
                },
            });
            continue;
        };
        let cancel = CancellationToken::new();
        let ctx = TaskContext::new(&id, &task, retries, &hostname, cancel.clone())
            .with_progress(Arc::new(StdoutProgress));
        let run = t.run(ctx, args, kwargs);
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                l = lines.next_line() => match l {
                    Ok(Some(l)) if matches!(serde_json::from_str(&l), Ok(ToChild::Cancel)) => cancel.cancel(),
                    Ok(Some(_)) => {}
                    _ => return,
                },
            }
        };
        match result {
            Ok(value) => print_line(&FromChild::Ok { value }),
            Err(e) => print_line(&FromChild::Err { error: e.into() }),
        }
    }
}
