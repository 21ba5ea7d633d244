//! The glue: wraps youtube/pdf/llm as engine tasks and maps domain errors to retry/fail.
