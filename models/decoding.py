"""CTC decoding: greedy or beam search with a lexicon and a word language model, and word timings.

Greedy decoding takes the most likely class of every frame, merges repeats and drops blanks.
Beam search is flashlight's CTC decoder (torchaudio's `ctc_decoder`): it keeps the `beam_size`
best prefixes at every frame; with a lexicon it spells only the lexicon's words, and with a
word n-gram model (an ARPA file, see `models.lm`) it adds `lm_weight` times the log probability
the model gives each word, plus `word_score` per word. Flashlight names our blank `-` and our
space, which ends every word, `|`.

Word timings come from the CTC alignment, the class behind the transcript at every frame: the
argmax path for greedy decoding; for beam search, the path the search found, each character
starting at the frame where it was emitted and held while that is likelier than a blank
(`beam_path`). A word runs from the first frame of its first character to the last frame of
its last character. Its confidence is the mean, over those frames, of the posterior of the
class the path takes there (a character, or a blank between two); for greedy decoding that is
each frame's highest posterior. Both take time and memory in proportion to the frames, so an
hour of video decodes as easily as a clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import torch
from torch import Tensor
from torchaudio.models.decoder import CTCHypothesis, ctc_decoder

from models.lm import WORD_BOUNDARY
from models.tokenizer import BLANK, CHARACTERS, decode
from preprocessing.native import native_stderr_silenced

SPACE = BLANK + 1  # class index of the space between words (CHARACTERS[0])
FLASHLIGHT_BLANK = "-"  # flashlight's name for the CTC blank
TOKENS = (FLASHLIGHT_BLANK, WORD_BOUNDARY, *CHARACTERS[1:])  # flashlight's names of our classes
DEFAULT_BEAM_SIZE = 16  # prefixes kept per frame: enough for GRID's 51 words (see the README)
# Flashlight keeps every frame's beam until the end (2 kB a frame with a lexicon, 30 kB without),
# so beam search decodes long recordings in segments of at most 30 s at 25 frames per second,
# each cut in the middle of the longest pause in its last 10 s (a run of blanks and spaces).
SEGMENT_FRAMES = 750
CUT_SEARCH_FRAMES = 250
# Language model weights, tuned on GRID's s1 dev split (mean of clean and 0 dB babble WER of
# the bundled DMF model) by avsr/bench/decoding.py: 7.0 % clean, 8.3 % at 0 dB, as good as the
# lexicon alone (weight 0: 6.8 and 8.5 %); the LM is kept for what it adds to a weaker model.
DEFAULT_LM_WEIGHT = 0.25  # times the LM's log10 word probability, added to the CTC log-probability
DEFAULT_WORD_SCORE = 0.0  # added per word: > 0 favours more words, < 0 fewer


@dataclass(frozen=True)
class DecodingOptions:
    """How to turn a clip's log-probabilities into text."""

    beam_size: int = 1  # prefixes kept per frame; 1: greedy decoding, with no lexicon or LM
    lexicon: Path | None = None  # words beam search may spell (`models.lm` format); None: any
    lm: Path | None = None  # ARPA word n-gram model for beam search; needs `lexicon`
    lm_weight: float = DEFAULT_LM_WEIGHT
    word_score: float = DEFAULT_WORD_SCORE

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam size must be at least 1, got {self.beam_size}")
        if self.beam_size == 1 and self.lexicon is not None:
            raise ValueError("a lexicon or language model needs beam search (beam size > 1)")
        if self.lm is not None and self.lexicon is None:
            raise ValueError("a word language model needs the lexicon of its words")


@dataclass(frozen=True)
class WordSpan:
    """A decoded word and the frames it is aligned to."""

    word: str
    start: int  # first frame
    end: int  # one past the last frame
    confidence: float  # mean posterior of the aligned classes over the frames, in [0, 1]


@dataclass(frozen=True)
class Hypothesis:
    """The transcript of one clip and its words' alignment."""

    text: str
    words: list[WordSpan]


def greedy_decode(log_probs: Tensor, lengths: Tensor) -> list[str]:
    """Transcript of each clip from (batch, T, VOCAB_SIZE) log-probabilities, greedily."""
    best = log_probs.argmax(dim=-1).cpu()
    return [path_text(path[:length]) for path, length in zip(best, lengths.tolist(), strict=True)]


def path_text(path: Tensor) -> str:
    """The transcript a CTC path (a class per frame) spells: repeats merged, blanks dropped."""
    return decode(torch.unique_consecutive(path).tolist())


def word_spans(path: Tensor, log_probs: Tensor) -> list[WordSpan]:
    """The words of the CTC `path` (T,) with their frames and confidence (see the module docstring)."""
    posteriors = log_probs.gather(1, path[:, None].long())[:, 0].exp().tolist()
    classes = path.tolist()
    spans: list[WordSpan] = []
    start = last = None  # first and last frame of the current word's characters
    characters: list[int] = []
    for frame, label in enumerate([*classes, SPACE]):  # a final space ends the last word
        new_character = label != BLANK and (frame == 0 or label != classes[frame - 1])
        if label == SPACE and start is not None:
            confidence = sum(posteriors[start : last + 1]) / (last + 1 - start)
            spans.append(WordSpan(decode(characters), start, last + 1, confidence))
            start, characters = None, []
        elif label not in (BLANK, SPACE):
            if start is None:
                start = frame
            if new_character:
                characters.append(label)
            last = frame
    return spans


class Decoder:
    """Decodes one clip's (T, VOCAB_SIZE) log-probabilities as `options` say; reusable across clips.

    Beam search's lexicon trie and language model are loaded once, when the decoder is made;
    recordings longer than SEGMENT_FRAMES are searched in `segments`, in bounded memory.
    """

    def __init__(self, options: DecodingOptions | None = None) -> None:
        self.options = options or DecodingOptions()
        self._beam = None
        if self.options.beam_size > 1:
            with native_stderr_silenced():  # KenLM logs its loading of ARPA files
                self._beam = ctc_decoder(
                    lexicon=None if self.options.lexicon is None else str(self.options.lexicon),
                    tokens=list(TOKENS),
                    lm=None if self.options.lm is None else str(self.options.lm),
                    beam_size=self.options.beam_size,
                    lm_weight=self.options.lm_weight,
                    word_score=self.options.word_score,
                    blank_token=FLASHLIGHT_BLANK,
                    sil_token=WORD_BOUNDARY,
                )

    def __call__(self, log_probs: Tensor, breaks: Sequence[int] = ()) -> Hypothesis:
        """The transcript of (T, VOCAB_SIZE) log-probabilities; `breaks` are frames no word crosses
        (where a recording was cut at a pause), each part decoded as a clip of its own."""
        if log_probs.dim() != 2:
            raise ValueError(f"log-probabilities are (T, VOCAB_SIZE), got {tuple(log_probs.shape)} "
                             "(an ensemble's are voted on: `models.voting.decoded`)")
        log_probs = log_probs.detach().float().cpu()
        words = []
        for first, last in pairwise([0, *breaks, len(log_probs)]):
            if last == first:
                continue
            pieces = [(0, last - first)] if self._beam is None else segments(log_probs[first:last])
            for start, end in pieces:
                part = log_probs[first + start : first + end]
                if self._beam is None:
                    best = part.argmax(dim=-1)
                else:
                    best = beam_path(part, self._beam(part[None].contiguous())[0][0])
                words += [replace(span, start=span.start + first + start, end=span.end + first + start)
                          for span in word_spans(best, part)]
        return Hypothesis(" ".join(span.word for span in words), words)


def segments(log_probs: Tensor) -> list[tuple[int, int]]:
    """[start, end) frames of the parts beam search decodes one at a time (see SEGMENT_FRAMES).

    No word crosses a cut, which is in a pause; the language model reads each part as a
    sentence of its own, and a long pause is most likely between sentences.
    """
    best = log_probs.argmax(dim=-1)
    pause = ((best == BLANK) | (best == SPACE)).tolist()
    spans, start = [], 0
    while len(pause) - start > SEGMENT_FRAMES:
        low = start + SEGMENT_FRAMES - CUT_SEARCH_FRAMES
        cut, longest, run = start + SEGMENT_FRAMES, 0, 0
        for frame in range(low, start + SEGMENT_FRAMES):
            run = run + 1 if pause[frame] else 0
            if run >= longest:  # the latest of equal pauses: segments as long as allowed
                longest, cut = run, frame + 1 - run // 2
        spans.append((start, cut))
        start = cut
    return [*spans, (start, len(pause))]


def beam_path(log_probs: Tensor, best: CTCHypothesis) -> Tensor:
    """The CTC path (T,) of a beam search result: every character from the frame it was emitted
    at, held as long as that is likelier than blanks up to the next one (a repeated character
    keeps a blank before its repeat)."""
    frames = len(log_probs)
    # flashlight counts steps from a start state before frame 0 and adds word boundaries there and
    # after the last frame; a lexicon's spellings end in one, which the model never emits after
    # the last word: none of those are emissions
    emitted = [(token, step - 1) for token, step in zip(best.tokens.tolist(), best.timesteps.tolist(),
                                                         strict=True) if 0 <= step - 1 < frames]
    while emitted and emitted[-1][0] == SPACE:
        emitted.pop()
    path = torch.full((frames,), BLANK, dtype=torch.long)
    for (token, start), (following, end) in pairwise([*emitted, (BLANK, frames)]):
        gap = log_probs[start + 1 : end]  # the frames up to the next emission
        held = torch.cat([gap.new_zeros(1), gap[:, token].cumsum(0)])  # hold for 0 .. len(gap) frames
        blanks = torch.cat([gap[:, BLANK].flip(0).cumsum(0).flip(0), gap.new_zeros(1)])
        score = held + blanks
        if following == token:
            score[-1] = -torch.inf
        path[start : start + 1 + int(score.argmax())] = token
    return path
