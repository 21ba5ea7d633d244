//! Pre-started PDFium workers ("spares"): starting a process and loading libpdfium costs a few
//! milliseconds, so after each document is handed its workers, fresh ones are started to wait
//! for the next document. Every document still gets its own new process (crash isolation and
//! kill-on-timeout are unchanged); a spare that is never used exits when this process does
//! (its stdin closes).

use std::sync::Mutex;

use crate::child::WorkerInit;
use crate::error::{PdfError, Result};
use crate::options::PdfOptions;
use crate::process;

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
    let mut child = process::start(&opts.child_program, &args, &[])?;
    let init = WorkerInit {
        pdfium_lib: opts.pdfium_lib.clone(),
        memory_limit: opts.child_memory_limit,
    };
    let mut line = serde_json::to_vec(&init)?;
    line.push(b'\n');
    // A few hundred bytes into an empty pipe: this does not block.
    let written = child.stdin.as_mut().map(|s| s.write_all(&line));
    if let Some(Err(e)) = written {
        process::discard(child);
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
            spares
                .iter()
                .position(|s| s.key == k)
                .map(|i| spares.swap_remove(i))
        };
        match spare {
            None => return start(opts),
            Some(mut s) => match s.child.try_wait() {
                Ok(None) => return Ok(s.child),
                // It died while waiting (killed, or the program went away): try the next one.
                _ => process::discard(s.child),
            },
        }
    }
}

/// Tops up the spares for `opts` to `opts.worker_processes` (when `prestart_workers` is on).
pub(crate) fn refill(opts: &PdfOptions) {
    if !opts.prestart_workers {
        return;
    }
    let k = key(opts);
    let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
    // Spares of other configurations go first when the pool is full.
    while spares.len() >= MAX_SPARES {
        match spares.iter().position(|s| s.key != k) {
            Some(i) => process::discard(spares.swap_remove(i).child),
            None => return,
        }
    }
    let have = spares.iter().filter(|s| s.key == k).count();
    for _ in have..opts.worker_processes.max(1) {
        match start(opts) {
            Ok(child) => spares.push(Spare {
                key: k.clone(),
                child,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "cannot pre-start a PDF worker");
                return;
            }
        }
    }
}
