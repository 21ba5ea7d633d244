//! The PDFium worker process (`hlbot pdf-child` is the same entry point in the main binary).

fn main() -> std::process::ExitCode {
    hlbot_pdf::worker::serve_stdio()
}
