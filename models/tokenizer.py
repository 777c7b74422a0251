"""The character vocabulary the CTC heads predict: blank, space, apostrophe and a-z."""

from __future__ import annotations

import string
from collections.abc import Iterable

BLANK = 0  # index of the CTC blank, which stands for "no new character at this step"
CHARACTERS = " '" + string.ascii_lowercase  # index i + 1 is CHARACTERS[i]
VOCAB_SIZE = 1 + len(CHARACTERS)  # 29 classes: the blank and the characters

_INDEX = {char: index for index, char in enumerate(CHARACTERS, start=BLANK + 1)}


def normalize(text: str) -> str:
    """Lower-case `text`, drop characters outside the vocabulary, and collapse whitespace.

    Any whitespace counts as a space, runs of spaces become one and the ends are trimmed,
    so "Bin  BLUE, at F-2!" becomes "bin blue at f".
    """
    kept = "".join(char for char in text.lower() if char in _INDEX or char.isspace())
    return " ".join(kept.split())


def encode(text: str) -> list[int]:
    """Class indices of the characters of `normalize(text)`; never contains the blank."""
    return [_INDEX[char] for char in normalize(text)]


def decode(ids: Iterable[int]) -> str:
    """Text for class indices, skipping blanks, with whitespace collapsed as `normalize` does."""
    return " ".join("".join(CHARACTERS[i - 1] for i in ids if i != BLANK).split())
