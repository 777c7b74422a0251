"""Opening media files with PyAV, mapping its failures to errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av

from preprocessing.errors import MissingFileError, UnreadableFileError


@contextmanager
def open_container(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open `path` for reading; any FFmpeg failure inside the block becomes UnreadableFileError."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path)
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise UnreadableFileError(path, str(error)) from error
    try:
        yield container
    except av.error.FFmpegError as error:
        raise UnreadableFileError(path, str(error)) from error
    finally:
        container.close()
