"""Native libraries' console output: MediaPipe's and KenLM's C++ set-up logs, kept off the terminal."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block.

    Native code logs to it directly (MediaPipe on every tracker start, KenLM on every model
    load), burying progress bars and real errors; Python's `sys.stderr` cannot catch it.
    """
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
