//! PDF ingestion as a plain library: text in reading order, images, OCR. Knows nothing about queues.
