//! Integration tests for hlbot-pdf: one binary, a module per topic. `generated` runs anywhere
//! (with libpdfium and tesseract installed); `corpus` checks ../shared/corpus/pdf against its
//! MANIFEST and skips with a printed reason when the corpus is absent.

mod caps;
mod common;
mod corpus;
mod fixtures;
mod fonts;
mod generated;
mod mutants;
mod ocr;
mod pool;
mod text;
