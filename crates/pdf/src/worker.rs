//! The PDFium worker process, child side: `serve_stdio` reads its orders (`protocol`), caps its
//! own address space, loads PDFium and runs the document (`pdfium`). PDFium is not thread-safe
//! and can hang or crash on hostile files, so all PDFium work happens in this separate process;
//! the parent (`pipeline`) enforces the time limit and kills it when needed.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use crate::protocol::{ChildEvent, ChildRequest, WorkerInit};

/// Entry point of the worker: reads a `WorkerInit` line, loads PDFium, then serves one
/// `ChildRequest` line after another until stdin closes, writing events to stdout, one JSON
/// object per line; each document ends with `Done`, or with `Error`: `alive` when PDFium refused
/// the document cleanly (the worker goes on), otherwise the worker exits.
/// Used by the `hlbot-pdf-child` binary and by `hlbot pdf-child`.
pub fn serve_stdio() -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut emit = |ev: ChildEvent| {
        // A closed stdout means the parent is gone; nothing useful is left to do. JSON escapes
        // newlines, so the event is one line.
        if serde_json::to_writer(&mut out, &ev).is_ok() {
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
    };
    let bad = |message: String| ChildEvent::Error {
        kind: "invalid_request".into(),
        message,
        alive: false,
    };
    let mut stdin = std::io::stdin().lock();
    let mut first = String::new();
    if let Err(e) = stdin.read_line(&mut first) {
        emit(bad(format!("reading from stdin: {e}")));
        return ExitCode::from(2);
    }
    if first.trim().is_empty() {
        // The parent went away before sending anything (an unused pre-started worker).
        return ExitCode::SUCCESS;
    }
    let init: WorkerInit = match serde_json::from_str(&first) {
        Ok(i) => i,
        Err(e) => {
            emit(bad(format!("bad worker init JSON: {e}")));
            return ExitCode::from(2);
        }
    };
    if let Some(limit) = init.memory_limit {
        // Cap our own address space before PDFium is loaded: a bomb then fails an allocation
        // (and the parent sees the worker die) instead of eating the machine's memory.
        if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, limit, limit) {
            eprintln!("warning: cannot set memory limit: {e}");
        }
    }
    let pdfium = crate::pdfium::bind(&init.pdfium_lib);
    emit(ChildEvent::Ready);
    let mut documents = 0u32;
    let mut line = String::new();
    loop {
        // One request per line; a closed stdin (or an empty line) ends the worker.
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {}
            Err(e) => {
                emit(bad(format!("reading request from stdin: {e}")));
                return ExitCode::from(2);
            }
        }
        let req: ChildRequest = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                emit(bad(format!("bad request JSON: {e}")));
                return ExitCode::from(2);
            }
        };
        let p = match &pdfium {
            Ok(p) => p,
            Err(e) => {
                emit(ChildEvent::from_error(e, false));
                return ExitCode::from(1);
            }
        };
        match crate::pdfium::run(p, &req, &mut emit) {
            Ok(()) => {
                documents += 1;
                emit(ChildEvent::Done {
                    pid: std::process::id(),
                    documents,
                });
            }
            // Every error `run` returns is a clean refusal (cannot open, encrypted, over the page
            // cap, no such page, unreadable file): the document is already closed, so the worker
            // stays warm for the next one instead of costing a new process. Crashes and hangs
            // are the parent's business (it kills the process group).
            Err(e) => {
                documents += 1;
                emit(ChildEvent::from_error(&e, true));
            }
        }
    }
    // Exit without unloading PDFium (FPDF_DestroyLibrary and friends): nobody waits for it.
    std::process::exit(0)
}
