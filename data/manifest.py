"""Manifests: TSV files listing clips and what is said in them.

A manifest has a header row. The columns `video` (a path, relative to the manifest's folder
or absolute) and `transcript` (the spoken words) are required; any other columns (`speaker`,
`clip`, ...) are kept in `Utterance.fields`, so tools can round-trip files they do not fully
understand.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

VIDEO_COLUMN = "video"
TRANSCRIPT_COLUMN = "transcript"
REQUIRED_COLUMNS = (VIDEO_COLUMN, TRANSCRIPT_COLUMN)
SEPARATOR = "\t"


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and, when known, the line."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Utterance:
    """One manifest row: a video, its transcript and the row's other columns."""

    video: Path  # absolute: a relative cell is resolved against the manifest's folder
    transcript: str
    fields: dict[str, str] = field(default_factory=dict)  # other columns, in file order


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read the utterances of the manifest at `path`, resolving videos against its folder."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ManifestError(path, error.strerror or str(error)) from error
    except UnicodeDecodeError as error:
        raise ManifestError(path, f"not UTF-8 text ({error.reason})") from error
    if not lines or not lines[0].strip():
        raise ManifestError(path, "empty file, expected a header row", line=1)
    header = lines[0].split(SEPARATOR)
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ManifestError(path, f"missing column(s) {', '.join(missing)} in header", line=1)
    if len(set(header)) != len(header):
        raise ManifestError(path, "repeated column name in header", line=1)

    utterances = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(SEPARATOR)
        if len(cells) != len(header):
            raise ManifestError(
                path, f"expected {len(header)} tab-separated cells, found {len(cells)}", number
            )
        row = dict(zip(header, cells, strict=True))
        video = row.pop(VIDEO_COLUMN)
        if not video:
            raise ManifestError(path, "empty video path", number)
        utterances.append(
            Utterance(
                video=Path(os.path.abspath(path.parent / video)),  # lexical: keeps symlinks
                transcript=row.pop(TRANSCRIPT_COLUMN),
                fields=row,
            )
        )
    return utterances


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> None:
    """Write `utterances` to `path` atomically (a reader never sees a half-written file).

    Videos inside the manifest's folder are written relative to it, others as absolute paths.
    Columns: the other fields in first-seen order, then `video` and `transcript`; a row lacking
    a field gets an empty cell.
    """
    path = Path(path)
    utterances = list(utterances)
    extra = list(dict.fromkeys(name for item in utterances for name in item.fields))
    header = [*extra, *REQUIRED_COLUMNS]
    rows = [SEPARATOR.join(header)]
    for item in utterances:
        cells = [item.fields.get(name, "") for name in extra]
        cells += [_relative_video(item.video, path.parent), item.transcript]
        bad = [cell for cell in cells if SEPARATOR in cell or "\n" in cell or "\r" in cell]
        if bad:
            raise ValueError(f"{path}: cell {bad[0]!r} holds a tab or line break")
        rows.append(SEPARATOR.join(cells))

    with atomic_write(path, "w") as handle:
        handle.write("\n".join(rows) + "\n")


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it replaces `path` at once.

    The temporary file is synced to disk before the rename, and removed if the block raises,
    so `path` holds either its old content or the complete new one, never a partial write.
    A process killed mid-write leaves only a hidden `.<name>.*.tmp` file, never read back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name per writer; not tempfile's, whose 0600 mode would hide a shared cache
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    encoding = None if "b" in mode else "utf-8"
    try:
        with open(temporary, mode.replace("w", "x"), encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _relative_video(video: Path, folder: Path) -> str:
    """`video` relative to `folder` when it lies inside it, else absolute."""
    absolute = Path(os.path.abspath(video))
    try:
        return absolute.relative_to(os.path.abspath(folder)).as_posix()
    except ValueError:
        return str(absolute)
