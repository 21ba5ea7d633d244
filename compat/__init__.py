"""hlbot's Python Celery interop harness (see README.md)."""
