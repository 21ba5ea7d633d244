//! The pool of long-lived PDFium worker processes, parent side: a worker is started (and
//! PDFium loaded) ahead of time, serves one document after another over its pipes (`serve`:
//! one request line in, event lines out up to `done`), and goes back to the pool after a clean
//! document, or after a clean refusal (an `error` line with `alive`: damaged, encrypted, over a
//! cap). A worker that exited on an error, died, timed out or was cancelled is killed with its
//! process group and never reused; a clean one is recycled after
//! `PdfOptions::worker_max_documents` documents or once its resident memory passes
//! `PdfOptions::worker_max_rss` (PDFium may leak; the worker also caps its own address space).
//! Idle workers exit when this process does (their stdin closes).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::error::{PdfError, Result};
use crate::options::PdfOptions;
use crate::protocol::{WorkerInit, error_keeps_worker, is_done_line, is_error_line};
use crate::subprocess::{self, Finished, GroupGuard};

/// Upper bound on idle workers kept across all configurations.
const MAX_IDLE: usize = 16;

/// Keep at most this much of a worker's stderr (the tail is what explains a failure).
const STDERR_CAP: usize = 16 * 1024;

/// Idle workers kept per worker process a document may use: a document of one page takes its
/// worker in about a millisecond, less than a fresh worker needs to start and load PDFium.
const IDLE_PER_WORKER: usize = 2;

/// A started worker process with its pipes; its stderr is drained by a thread into a tail
/// buffer (a long-lived worker must never block on a full stderr pipe). Dropping it kills the
/// process group and reaps the process.
pub(crate) struct Worker {
    child: Child,
    /// `None` once closed (the worker then exits by itself).
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    drain: Option<std::thread::JoinHandle<()>>,
    /// Documents this worker has finished cleanly.
    served: u32,
    key: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        subprocess::kill_group(self.child.id());
        // Killed: the wait returns at once, but off the caller's thread all the same.
        let pid = self.child.id();
        let reap = std::thread::Builder::new().spawn(move || {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        });
        if reap.is_err() {
            let _ = self.child.wait();
        }
    }
}

/// How one document's exchange with a worker ended.
enum Exchange {
    /// The worker said `done`, or refused the document cleanly (`error` with `alive`), and
    /// waits for the next request.
    Clean,
    /// It reported an error it does not survive or its stdout closed; it has exited (status and
    /// stderr here).
    Ended(std::process::ExitStatus, String),
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one request line and forwards the worker's event lines to `tx` up to the end of
    /// the document. Blocking; the caller kills the process group to interrupt it.
    fn exchange(&mut self, request: &[u8], tx: &UnboundedSender<String>) -> Exchange {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(request).and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if sent.is_ok() {
            let mut line = String::new();
            loop {
                line.clear();
                match self.stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches(['\n', '\r']).to_string();
                let done = is_done_line(&l);
                // Judged before the line is handed on: a clean refusal (the worker closed the
                // document and waits) is treated as `done`.
                let error = is_error_line(&l).then(|| error_keeps_worker(&l));
                let _ = tx.send(l);
                if done {
                    return Exchange::Clean;
                }
                match error {
                    Some(true) => return Exchange::Clean,
                    Some(false) => break,
                    None => {}
                }
            }
        }
        // The worker is ending (it exits after an error) or gone: collect how.
        let status = self
            .child
            .wait()
            .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(-1));
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        let buf = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let stderr = String::from_utf8_lossy(&buf).trim().to_string();
        Exchange::Ended(status, stderr)
    }

    /// Resident memory in bytes, from `/proc/<pid>/status` (`None` when unreadable).
    fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// Ends every idle worker: closes its stdin (it exits by itself) and waits for it. For a clean
/// shutdown, and so a benchmark's CPU time includes its workers'. Blocking.
pub fn shutdown_workers() {
    let all = std::mem::take(&mut *idle());
    for mut w in all {
        w.stdin = None;
        let _ = w.child.wait();
    }
}

/// Idle workers, most recently used first; fresh ones are added at the back.
static IDLE: Mutex<Vec<Worker>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Worker>> {
    IDLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Workers are shared between documents with the same program, library and limits.
fn key(opts: &PdfOptions) -> String {
    format!(
        "{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{}",
        opts.child_program,
        opts.child_args,
        opts.pdfium_lib,
        opts.child_memory_limit,
        opts.worker_max_documents,
        opts.worker_max_rss,
    )
}

/// A newly started worker (never one from the pool).
pub(crate) fn start(opts: &PdfOptions) -> Result<Worker> {
    let args: Vec<_> = opts.child_args.iter().map(Into::into).collect();
    let mut child = subprocess::start(&opts.child_program, &args, &[])?;
    let (Some(mut stdin), Some(stdout), Some(mut err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        subprocess::discard(child);
        return Err(PdfError::Child {
            detail: "PDF worker started without pipes".into(),
            stderr: String::new(),
        });
    };
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let tail = stderr.clone();
    let drain = std::thread::Builder::new()
        .name("pdf-worker-stderr".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&buf[..n]);
                if t.len() > STDERR_CAP {
                    let cut = t.len() - STDERR_CAP;
                    t.drain(..cut);
                }
            }
        })
        .ok();
    let init = WorkerInit {
        pdfium_lib: opts.pdfium_lib.clone(),
        memory_limit: opts.child_memory_limit,
    };
    let mut line = serde_json::to_vec(&init)?;
    line.push(b'\n');
    // A few hundred bytes into an empty pipe: this does not block.
    let written = stdin.write_all(&line);
    let worker = Worker {
        child,
        stdin: Some(stdin),
        stdout: BufReader::new(stdout),
        stderr,
        drain,
        served: 0,
        key: key(opts),
    };
    match written {
        Ok(()) => Ok(worker),
        Err(e) => Err(PdfError::Child {
            detail: format!("cannot start PDF worker: {e}"),
            stderr: String::new(),
        }),
    }
}

/// A worker for `opts`: an idle live one if there is one (the most recently used first), else
/// a freshly started one.
pub(crate) fn take(opts: &PdfOptions) -> Result<Worker> {
    let k = key(opts);
    loop {
        let found = {
            let mut idle = idle();
            idle.iter().position(|w| w.key == k).map(|i| idle.remove(i))
        };
        match found {
            None => return start(opts),
            Some(mut w) => match w.child.try_wait() {
                Ok(None) => return Ok(w),
                // It died while idle (killed, or the program went away): try the next one.
                _ => drop(w),
            },
        }
    }
}

/// Runs one document's request on `worker` under `timeout` and `cancel`, forwarding its event
/// lines to `tx`. A clean worker goes back to the pool (unless due for recycling); on timeout
/// or cancel its whole process group is killed, as when this future is dropped.
pub(crate) async fn serve(
    opts: &PdfOptions,
    mut worker: Worker,
    request: Vec<u8>,
    timeout: Duration,
    cancel: &CancellationToken,
    tx: UnboundedSender<String>,
    what: String,
) -> Result<Finished> {
    let mut guard = GroupGuard::new(worker.pid());
    let (max_docs, max_rss) = (opts.worker_max_documents, opts.worker_max_rss);
    let want = IDLE_PER_WORKER * opts.worker_processes.max(1);
    let job = tokio::task::spawn_blocking(move || {
        let outcome = worker.exchange(&request, &tx);
        if let Exchange::Clean = outcome {
            worker.served += 1;
            let worn =
                worker.served >= max_docs.max(1) || worker.rss().is_some_and(|rss| rss > max_rss);
            if !worn {
                put_back(worker, want);
            }
        }
        outcome
    });
    let outcome = tokio::select! {
        r = job => r.map_err(|e| PdfError::Child {
            detail: format!("PDF worker task failed: {e}"),
            stderr: String::new(),
        })?,
        // Returning drops the guard, which kills the group; the blocking exchange then sees
        // its stdout close and the worker is reaped where it ends.
        _ = tokio::time::sleep(timeout) => return Err(PdfError::Timeout {
            what,
            seconds: timeout.as_secs_f64(),
        }),
        _ = cancel.cancelled() => return Err(PdfError::Cancelled),
    };
    guard.defuse();
    Ok(match outcome {
        Exchange::Clean => Finished {
            status: std::os::unix::process::ExitStatusExt::from_raw(0),
            stdout: Vec::new(),
            stderr: String::new(),
        },
        Exchange::Ended(status, stderr) => Finished {
            status,
            stdout: Vec::new(),
            stderr,
        },
    })
}

/// Returns a clean worker to the front of the pool (it is warm), unless its configuration
/// already has `want` idle workers or the pool is full.
fn put_back(worker: Worker, want: usize) {
    let mut idle = idle();
    let mine = idle.iter().filter(|w| w.key == worker.key).count();
    if mine >= want {
        return;
    }
    while idle.len() >= MAX_IDLE {
        match idle.iter().rposition(|w| w.key != worker.key) {
            Some(i) => drop(idle.remove(i)),
            None => return,
        }
    }
    idle.insert(0, worker);
}

/// Starts the idle PDFium workers for `opts` now (when `opts.prestart_workers` is on) and
/// waits until each has loaded PDFium, a few milliseconds, so that the first document does not
/// wait for its worker to start either. Call it once at start-up; `process_document` keeps the
/// pool topped up afterwards. Blocking.
pub fn prestart_workers(opts: &PdfOptions) {
    refill(opts);
    let k = key(opts);
    let mine: Vec<Worker> = {
        let mut idle = idle();
        let (mine, rest) = std::mem::take(&mut *idle)
            .into_iter()
            .partition(|w| w.key == k);
        *idle = rest;
        mine
    };
    let mut ready = Vec::with_capacity(mine.len());
    for mut w in mine {
        // Reads the `ready` line, so a document's events start with its own lines.
        let mut line = String::new();
        if matches!(w.stdout.read_line(&mut line), Ok(n) if n > 0) {
            ready.push(w);
        }
    }
    // Ahead of any started meanwhile: these are ready.
    idle().splice(0..0, ready);
}

/// How many idle workers `opts` lacks (0 when `prestart_workers` is off).
pub(crate) fn missing(opts: &PdfOptions) -> usize {
    if !opts.prestart_workers {
        return 0;
    }
    let k = key(opts);
    let want = IDLE_PER_WORKER * opts.worker_processes.max(1);
    want.saturating_sub(idle().iter().filter(|w| w.key == k).count())
}

/// Tops up the idle workers for `opts` to `IDLE_PER_WORKER × opts.worker_processes` (when
/// `prestart_workers` is on). Workers are started outside the lock, so a document taking its
/// workers meanwhile does not wait for these.
pub(crate) fn refill(opts: &PdfOptions) {
    let k = key(opts);
    let want = IDLE_PER_WORKER * opts.worker_processes.max(1);
    for _ in 0..missing(opts) {
        let worker = match start(opts) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "cannot pre-start a PDF worker");
                return;
            }
        };
        let mut idle = idle();
        // Another refill may have topped up meanwhile; workers of other configurations go
        // first when the pool is full.
        if idle.iter().filter(|w| w.key == k).count() >= want {
            return;
        }
        while idle.len() >= MAX_IDLE {
            match idle.iter().rposition(|w| w.key != k) {
                Some(i) => drop(idle.remove(i)),
                None => return,
            }
        }
        idle.push(worker);
    }
}
