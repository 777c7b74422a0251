"""Transcripts as text: plain, JSON with word timings, and SRT or WebVTT subtitles.

Subtitle cues group consecutive words: a cue ends before a word that would make it longer
than CUE_MAX_CHARACTERS or CUE_MAX_SECONDS, or that follows a pause of CUE_PAUSE_SECONDS.
A cue is shown from its first word's start to its last word's end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from avsr.transcribe import Transcript, Word
from data.manifest import atomic_write
from models.config import Modality

CUE_MAX_CHARACTERS = 42  # one subtitle line, the usual limit of subtitle style guides
CUE_MAX_SECONDS = 7.0  # longest time a cue stays on screen
CUE_PAUSE_SECONDS = 1.0  # a silence this long between two words starts a new cue
TIME_DECIMALS = 3  # JSON times and confidences rounded to milliseconds (a frame is 40 ms)
HEAD_LABELS: dict[Modality, str] = {"av": "audiovisual", "audio": "audio only", "video": "video only"}


def to_text(transcript: Transcript) -> str:
    """The transcript on one line."""
    return transcript.text + "\n"


def as_dict(transcript: Transcript) -> dict[str, Any]:
    """The transcript, its words with start, end (seconds) and confidence, and how it was made."""
    return {
        "file": str(transcript.path),
        "text": transcript.text,
        "words": [
            {"word": word.word, "start": round(word.start, TIME_DECIMALS),
             "end": round(word.end, TIME_DECIMALS), "confidence": round(word.confidence, TIME_DECIMALS)}
            for word in transcript.words
        ],
        "duration": round(transcript.duration, TIME_DECIMALS),
        "modality": transcript.modality,
        "model": transcript.model,
        "noise": transcript.noise,
    }


def to_json(transcript: Transcript) -> str:
    """`as_dict` as a JSON document."""
    return json.dumps(as_dict(transcript), indent=2) + "\n"


def cues(words: Sequence[Word]) -> list[list[Word]]:
    """Consecutive words grouped into subtitle cues (see the module docstring)."""
    groups: list[list[Word]] = []
    for word in words:
        if groups:
            cue = groups[-1]
            text = " ".join(w.word for w in [*cue, word])
            if (len(text) <= CUE_MAX_CHARACTERS and word.end - cue[0].start <= CUE_MAX_SECONDS
                    and word.start - cue[-1].end < CUE_PAUSE_SECONDS):
                cue.append(word)
                continue
        groups.append([word])
    return groups


def _timestamp(seconds: float, separator: str) -> str:
    """HH:MM:SS<separator>mmm."""
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{milliseconds:03d}"


def _cue_blocks(transcript: Transcript, separator: str, numbered: bool) -> list[str]:
    blocks = []
    for number, cue in enumerate(cues(transcript.words), start=1):
        timing = f"{_timestamp(cue[0].start, separator)} --> {_timestamp(cue[-1].end, separator)}"
        text = " ".join(word.word for word in cue)
        blocks.append(f"{number}\n{timing}\n{text}\n" if numbered else f"{timing}\n{text}\n")
    return blocks


def to_srt(transcript: Transcript) -> str:
    """SubRip subtitles: numbered cues, times as HH:MM:SS,mmm."""
    return "\n".join(_cue_blocks(transcript, ",", numbered=True))


def to_vtt(transcript: Transcript) -> str:
    """WebVTT subtitles: a header, then cues with times as HH:MM:SS.mmm."""
    return "\n".join(["WEBVTT\n", *_cue_blocks(transcript, ".", numbered=False)])


FORMATS: dict[str, Callable[[Transcript], str]] = {  # by file extension
    "txt": to_text,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
}


def output_path(source: str | Path, out_dir: str | Path, fmt: str) -> Path:
    """Where the transcript of `source` goes in `out_dir`: its stem plus the format's extension."""
    return Path(out_dir) / f"{Path(source).stem}.{fmt}"


def write(transcript: Transcript, out_dir: str | Path, fmt: str) -> Path:
    """Write `transcript` in `fmt` to `output_path` atomically; the path written."""
    path = output_path(transcript.path, out_dir, fmt)
    with atomic_write(path, "w") as handle:
        handle.write(FORMATS[fmt](transcript))
    return path
