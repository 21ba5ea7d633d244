"""The interop tests (a package so they can share ``support.py``)."""
