//! Celery wire contract (protocol v2 messages, result metas, events, pidbox): pure serde data, no I/O.
