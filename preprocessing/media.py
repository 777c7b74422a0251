"""Opening media files with PyAV, mapping its failures to errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av

from preprocessing.errors import MissingFileError, UnreadableFileError


def is_url(source: str | Path) -> bool:
    """Whether `source` names a stream (http://, rtsp://, ...) rather than a file."""
    return isinstance(source, str) and "://" in source


@contextmanager
def open_container(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open the file at `path`, or a URL, for reading; any FFmpeg failure inside the block
    becomes UnreadableFileError."""
    if not is_url(path) and not Path(path).is_file():
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
