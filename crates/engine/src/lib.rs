//! The queue engine: kombu-compatible Redis broker, result backend, client, worker, beat, control, events. Knows nothing about YouTube, PDFs or LLMs.
