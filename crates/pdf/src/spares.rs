//! Pre-started PDFium workers ("spares"): starting a process and loading libpdfium costs a few
//! milliseconds, so after each document is handed its workers, fresh ones are started to wait
//! for the next document. Every document still gets its own new process (crash isolation and
//! kill-on-timeout are unchanged); a spare that is never used exits when this process does
//! (its stdin closes).

use std::sync::Mutex;

use crate::error::{PdfError, Result};
use crate::options::PdfOptions;
use crate::protocol::WorkerInit;
use crate::subprocess;

/// Upper bound on idle workers kept across all configurations.
const MAX_SPARES: usize = 16;

struct Spare {
    key: String,
    child: std::process::Child,
}

static SPARES: Mutex<Vec<Spare>> = Mutex::new(Vec::new());

fn key(opts: &PdfOptions) -> String {
    format!(
        "{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}",
        opts.child_program, opts.child_args, opts.pdfium_lib, opts.child_memory_limit
    )
}

fn start(opts: &PdfOptions) -> Result<std::process::Child> {
    use std::io::Write;
    let args: Vec<_> = opts.child_args.iter().map(Into::into).collect();
    let mut child = subprocess::start(&opts.child_program, &args, &[])?;
    let init = WorkerInit {
        pdfium_lib: opts.pdfium_lib.clone(),
        memory_limit: opts.child_memory_limit,
    };
    let mut line = serde_json::to_vec(&init)?;
    line.push(b'\n');
    // A few hundred bytes into an empty pipe: this does not block.
    let written = child.stdin.as_mut().map(|s| s.write_all(&line));
    if let Some(Err(e)) = written {
        subprocess::discard(child);
        return Err(PdfError::Child {
            detail: format!("cannot start PDF worker: {e}"),
            stderr: String::new(),
        });
    }
    Ok(child)
}

/// A worker for `opts`: a waiting spare if there is a live one, else a freshly started one.
pub(crate) fn take(opts: &PdfOptions) -> Result<std::process::Child> {
    let k = key(opts);
    loop {
        let spare = {
            let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
            // The oldest first: it has had the longest to load PDFium.
            spares
                .iter()
                .position(|s| s.key == k)
                .map(|i| spares.remove(i))
        };
        match spare {
            None => return start(opts),
            Some(mut s) => match s.child.try_wait() {
                Ok(None) => return Ok(s.child),
                // It died while waiting (killed, or the program went away): try the next one.
                _ => subprocess::discard(s.child),
            },
        }
    }
}

/// Starts the spare PDFium workers for `opts` now (when `opts.prestart_workers` is on) and
/// waits until each has loaded PDFium, a few milliseconds, so that the first document does not
/// wait for its worker to start either. Call it once at start-up; `process_document` keeps the
/// spares topped up afterwards. Blocking.
pub fn prestart_workers(opts: &PdfOptions) {
    refill(opts);
    let k = key(opts);
    let mine: Vec<Spare> = {
        let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, rest) = std::mem::take(&mut *spares)
            .into_iter()
            .partition(|s| s.key == k);
        *spares = rest;
        mine
    };
    let mut ready = Vec::with_capacity(mine.len());
    for mut s in mine {
        if wait_ready(&mut s.child) {
            ready.push(s);
        } else {
            subprocess::discard(s.child);
        }
    }
    let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
    // Ahead of any started meanwhile: these are ready.
    spares.splice(0..0, ready);
}

/// Reads the worker's first stdout line (its `ready` event) byte by byte, so nothing after it
/// is consumed; false when the worker died first.
fn wait_ready(child: &mut std::process::Child) -> bool {
    use std::io::Read;
    let Some(out) = child.stdout.as_mut() else {
        return false;
    };
    let mut byte = [0u8; 1];
    loop {
        match out.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return true,
            Ok(1) => {}
            _ => return false,
        }
    }
}

/// Spares kept per worker process a document may use: a document of one page takes its
/// worker in about a millisecond, less than a fresh worker needs to start and load PDFium, so
/// the spare handed out next was started a document earlier, not just now.
const SPARES_PER_WORKER: usize = 2;

/// Tops up the spares for `opts` to `SPARES_PER_WORKER × opts.worker_processes` (when
/// `prestart_workers` is on). Workers are started outside the lock, so a document taking its
/// workers meanwhile does not wait for these.
pub(crate) fn refill(opts: &PdfOptions) {
    if !opts.prestart_workers {
        return;
    }
    let k = key(opts);
    let want = SPARES_PER_WORKER * opts.worker_processes.max(1);
    let missing = {
        let spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
        want.saturating_sub(spares.iter().filter(|s| s.key == k).count())
    };
    for _ in 0..missing {
        let child = match start(opts) {
            Ok(child) => child,
            Err(e) => {
                tracing::debug!(error = %e, "cannot pre-start a PDF worker");
                return;
            }
        };
        let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
        // Another refill may have topped up meanwhile; spares of other configurations go
        // first when the pool is full.
        if spares.iter().filter(|s| s.key == k).count() >= want {
            drop(spares);
            subprocess::discard(child);
            return;
        }
        while spares.len() >= MAX_SPARES {
            match spares.iter().position(|s| s.key != k) {
                Some(i) => subprocess::discard(spares.swap_remove(i).child),
                None => {
                    drop(spares);
                    subprocess::discard(child);
                    return;
                }
            }
        }
        spares.push(Spare {
            key: k.clone(),
            child,
        });
    }
}
