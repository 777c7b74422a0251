"""The GRID audiovisual corpus: its fixed grammar, clip names, word alignments and our dev split.

Every GRID sentence is six words, one per slot: command color preposition letter digit adverb.
A clip's name spells its sentence with one character per slot (`bbaf2n` = "bin blue at f two
now"; zero is spelled `z`). The corpus itself is never part of the repository: `grid_dir()` finds it on disk.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from data.manifest import Utterance

COMMANDS = ("bin", "lay", "place", "set")
COLORS = ("blue", "green", "red", "white")
PREPOSITIONS = ("at", "by", "in", "with")
LETTERS = tuple("abcdefghijklmnopqrstuvxyz")  # a-z except w
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ADVERBS = ("again", "now", "please", "soon")
ZERO_KEY = "z"  # clip names spell the digit zero as "z" (other digits as themselves)
SLOTS = (COMMANDS, COLORS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)  # in sentence order
VOCABULARY = tuple(sorted({word for slot in SLOTS for word in slot}))  # 51 words

ALIGNMENT_UNITS_PER_SECOND = 25_000  # alignment times count 1/25000 s (1000 per video frame)
SILENCE_WORDS = frozenset({"sil", "sp"})  # alignment entries for silence and short pauses
ALIGN_FOLDER = "align"  # a clip's alignment: <speaker>/align/<clip>.align beside <speaker>/video/<clip>.*

GRID_DIR_ENV = "AVSR_GRID_DIR"  # environment variable naming the corpus folder
DEFAULT_GRID_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grid"
MANIFEST_NAME = "manifest.tsv"  # the corpus' manifest, in its folder

TRAIN_SPEAKER = "s1"  # the only speaker we train on; the dev split is drawn from it too
DEV_SIZE = 100  # clips of TRAIN_SPEAKER held out for development
DEV_SEED = 2006  # fixed seed of the dev draw (the corpus' publication year)


class AlignedWord(NamedTuple):
    """A spoken word and when it is said, in seconds from the clip's start."""

    start: float
    end: float
    word: str


def _slot_word(slot: Sequence[str], key: str) -> str | None:
    """The word of `slot` that `key` (a clip-name character) stands for, if any."""
    if slot is DIGITS:
        return DIGITS[int(key)] if key.isdigit() else ("zero" if key == ZERO_KEY else None)
    if slot is LETTERS:
        return key if key in LETTERS else None
    return next((word for word in slot if word[0] == key), None)


def sentence_from_clip_name(name: str) -> str:
    """The sentence a GRID clip name spells, e.g. "bbaf2n" -> "bin blue at f two now"."""
    if len(name) != len(SLOTS):
        raise ValueError(f"{name!r} is not a GRID clip name: expected {len(SLOTS)} characters")
    words = [_slot_word(slot, key) for slot, key in zip(SLOTS, name.lower(), strict=True)]
    if None in words:
        raise ValueError(f"{name!r} is not a GRID clip name: character {words.index(None) + 1}")
    return " ".join(words)


def read_alignment(path: str | Path) -> list[AlignedWord]:
    """The words of a GRID `.align` file with their times in seconds, silences dropped."""
    path = Path(path)
    words = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            raise ValueError(f"{path}:{number}: expected 'start end word', got {line!r}")
        start, end, word = int(parts[0]), int(parts[1]), parts[2]
        if word not in SILENCE_WORDS:
            words.append(
                AlignedWord(start / ALIGNMENT_UNITS_PER_SECOND, end / ALIGNMENT_UNITS_PER_SECOND, word)
            )
    return words


def alignment_path(video: Path) -> Path:
    """Where GRID keeps the word alignment of the clip `video` (the file may not exist)."""
    return video.parent.parent / ALIGN_FOLDER / f"{video.stem}.align"


def grid_dir() -> Path | None:
    """The GRID corpus folder: $AVSR_GRID_DIR, else ../shared/data/grid beside the repository.

    None when that folder does not exist, so callers can skip or explain instead of failing.
    """
    folder = Path(os.environ.get(GRID_DIR_ENV) or DEFAULT_GRID_DIR)
    return folder if folder.is_dir() else None


def dev_split(
    utterances: Sequence[Utterance], n_dev: int = DEV_SIZE, seed: int = DEV_SEED
) -> tuple[list[Utterance], list[Utterance]]:
    """Split into (train, dev): dev is `n_dev` TRAIN_SPEAKER clips drawn at random with `seed`.

    Train is every other TRAIN_SPEAKER clip: other speakers (s4) are in neither list, since they
    test generalisation to unseen speakers. The draw depends only on the set of clips, not on
    their order, and both lists keep the input order. Rows need a `speaker` column.
    """
    missing = [item.video for item in utterances if "speaker" not in item.fields]
    if missing:
        raise ValueError(f"no speaker column for {missing[0]}")
    own = [item for item in utterances if item.fields["speaker"] == TRAIN_SPEAKER]
    if n_dev > len(own):
        raise ValueError(f"asked for {n_dev} dev clips, only {len(own)} of {TRAIN_SPEAKER}")
    canonical = sorted(own, key=lambda item: str(item.video))  # order-free draw
    dev_videos = {item.video for item in random.Random(seed).sample(canonical, n_dev)}
    train = [item for item in own if item.video not in dev_videos]
    dev = [item for item in own if item.video in dev_videos]
    return train, dev
