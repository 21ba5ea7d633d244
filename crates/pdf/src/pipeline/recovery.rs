//! After a PDFium worker crashed on a document (killed by a signal: a `CHECK` trap, a segfault,
//! the memory cap): read it again in new processes, leaving out more each time — images first,
//! then page renders for OCR — and keep the read with the most pages; when no read gets a page,
//! the document is `Damaged` (a retry would crash the same way).

use std::path::Path;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::ocr_pages::OcrPages;
use super::workers::{self, Plan, Ran};
use crate::document::Progress;
use crate::error::{PdfError, Result};
use crate::options::PdfOptions;

/// One document's re-reads: what `workers::run` needs besides the plan.
pub(super) struct Attempt<'a> {
    pub opts: &'a PdfOptions,
    pub plan: &'a Plan,
    pub path: &'a Path,
    pub languages: &'a str,
    pub deadline: Instant,
    pub cancel: &'a CancellationToken,
}

impl Attempt<'_> {
    /// `ran` crashed with `status`; returns the best read and its OCR queue, or `Damaged`.
    pub(super) async fn reread(
        &self,
        mut ran: Ran,
        mut ocr: OcrPages,
        status: String,
        progress: &(impl Fn(Progress) + Send + Sync),
    ) -> Result<(Ran, OcrPages)> {
        let mut tried = Vec::new();
        let mut crashes = 1;
        while let Some((plan, what)) = self.plan.after_crash(crashes) {
            let mut ocr_again =
                OcrPages::new(self.opts, self.languages, self.deadline, self.cancel);
            let mut again = workers::run(
                self.opts,
                &plan,
                self.path,
                self.deadline,
                self.cancel,
                &mut ocr_again,
                progress,
            )
            .await?;
            if again.crashed.take().is_none() {
                again.complete = false;
                again.collected.warnings.push(format!(
                    "the PDF worker crashed ({status}); the document was read again {what}"
                ));
                return Ok((again, ocr_again));
            }
            tracing::warn!(path = %self.path.display(), "PDF worker crashed again, {what}");
            if again.collected.pages.len() > ran.collected.pages.len() {
                (ran, ocr) = (again, ocr_again);
            }
            tried.push(what);
            crashes += 1;
        }
        if ran.collected.pages.is_empty() {
            return Err(self.damaged(&status, &tried));
        }
        Ok((ran, ocr))
    }

    fn damaged(&self, status: &str, tried: &[String]) -> PdfError {
        let cap = self
            .opts
            .child_memory_limit
            .map(|b| {
                format!(
                    " or needs more than the worker memory cap ({:.1} GiB)",
                    b as f64 / f64::from(1u32 << 30)
                )
            })
            .unwrap_or_default();
        PdfError::Damaged {
            path: self.path.to_path_buf(),
            detail: format!(
                "the PDF engine crashed reading it ({status}), and again {}: the file is \
                 malformed in a way PDFium cannot survive{cap}",
                tried.join(", then ")
            ),
        }
    }
}
