"""Errors for bad input: each names the file and the problem, so a batch can report and go on."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Base class: a file could not be turned into model inputs."""

    problem = "cannot be processed"

    def __init__(self, path: str | Path, detail: str | None = None) -> None:
        self.path = Path(path)
        self.detail = detail
        message = f"{path}: {self.problem}"  # as given: a URL is no Path
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class MissingFileError(InputError):
    problem = "no such file"


class UnreadableFileError(InputError):
    problem = "not a readable media file (corrupt, truncated or not audio/video)"


class NoVideoStreamError(InputError):
    problem = "has no video stream"


class NoAudioStreamError(InputError):
    problem = "has no audio stream"


class NoFaceError(InputError):
    problem = "no face found in enough frames to read the lips"


class ClipTooShortError(InputError):
    problem = "clip is too short"


class ClipTooLongError(InputError):
    problem = "clip is too long"


class SilentAudioError(InputError):
    problem = "the audio is digitally silent: nothing to recognise from sound"
