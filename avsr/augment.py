"""Training augmentation: random mouth crops and flips, noisy audio, SpecAugment, speaking-rate
(tempo) perturbation, dropped visual feature channels, modality dropout, mismatched lips, words
spliced in from other clips, and clips cut to a run of their words.

Every function draws from the generator it is given. Training seeds one per clip and epoch
(`data.noise.condition_rng`), so an epoch's augmentation is the same in every run, process
and data-loader worker, and a resumed run sees exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import ceil, floor
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from data.grid import AlignedWord
from data.noise import BUILTIN_KINDS, NoiseSpec, add_noise

Stream = Literal["audio", "video"]
# What happens to one clip's streams in a fusion model: one blanked, or its lips another clip's.
Perturbation = Literal["blank audio", "blank video", "other video"]


@dataclass
class AugmentConfig:
    """How training clips are perturbed; evaluation uses none of it."""

    clean_prob: float = 0.25  # share of clips whose audio gets no noise
    noise_kinds: tuple[str, ...] = BUILTIN_KINDS  # white, pink, babble or noise files (folders):
    # one drawn per noisy clip
    snr_db: tuple[float, float] = (-10.0, 20.0)  # dB, whole-clip SNR drawn uniformly in this range
    freq_masks: int = 2  # SpecAugment masks over mel bins, per clip
    freq_mask_bins: int = 15  # widest frequency mask, in mel bins (of 80)
    time_masks: int = 2  # SpecAugment masks over time, per clip
    time_mask_frames: int = 20  # widest time mask, in log-mel frames (200 ms)
    flip_prob: float = 0.5  # share of clips whose mouth crops are mirrored left-right
    tempo: tuple[float, float] = (1.0, 1.0)  # speaking-rate factors (>1: faster): both streams of a
    # clip are resampled in time by one drawn log-uniformly in this range; (1, 1) draws none
    tempo_pieces: int = 1  # with `tempo`: equal pieces of each clip, each resampled by a factor of its
    # own, so the rate changes within a sentence as well as between sentences
    feature_dropout: float = 0.0  # models on a frozen visual trunk: share of its pooled feature
    # channels zeroed in all of a clip's frames (the rest scaled up), so the visual stream memorises
    # the few fixed feature sequences of each training clip less
    blank_audio_prob: float = 0.2  # fusion models: share of clips whose audio is blanked (zeros)
    blank_video_prob: float = 0.2  # fusion models: share of clips whose video is blanked
    other_video_prob: float = 0.0  # fusion models: share of clips that get another clip's lips and
    # clean audio, so lips that disagree (as a new speaker's may) cannot outvote clear speech
    splice_prob: float = 0.0  # clips with word alignments: share of their words whose span (sound
    # and lips) is cut from another clip of as many words, there in the same place (in GRID, the
    # same slot of its grammar), so the network hears new sentences instead of memorising its few
    crop_prob: float = 0.0  # clips with word alignments: share cut to a random run of their words
    # (sound, lips and transcript), so no word can be read from the rest of a memorised sentence
    trim_prob: float = 0.0  # clips with word alignments: share whose silence before the first word and
    # after the last is each cut to a random length, from none of it to all, so words are read where
    # they are said: trained on clips that all start and end alike, the network places them by the edges

    def __post_init__(self) -> None:
        self.noise_kinds = tuple(self.noise_kinds)
        self.snr_db = tuple(self.snr_db)
        self.tempo = tuple(self.tempo)
        if not 0 <= self.clean_prob <= 1:
            raise ValueError(f"the clean share must be between 0 and 1, got {self.clean_prob}")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"the training SNR range must be lowest, highest dB, got {self.snr_db}")
        if self.clean_prob < 1 and not self.noise_kinds:
            raise ValueError("noise_kinds is empty but clean_prob leaves clips to make noisy")
        if len(self.tempo) != 2 or not 0 < self.tempo[0] <= self.tempo[1]:
            raise ValueError(f"the tempo range must be lowest, highest factor above 0, got {self.tempo}")
        if self.tempo_pieces < 1:
            raise ValueError(f"a clip needs at least one tempo piece, got {self.tempo_pieces}")
        if not 0 <= self.feature_dropout < 1:
            raise ValueError(f"the feature dropout must be in [0, 1), got {self.feature_dropout}")
        if self.blank_audio_prob + self.blank_video_prob > 1:
            raise ValueError("blank_audio_prob + blank_video_prob must be at most 1")
        if not 0 <= self.splice_prob <= 1:
            raise ValueError(f"the share of spliced words must be between 0 and 1, got {self.splice_prob}")
        if not 0 <= self.crop_prob <= 1:
            raise ValueError(f"the share of cropped clips must be between 0 and 1, got {self.crop_prob}")
        if not 0 <= self.trim_prob <= 1:
            raise ValueError(f"the share of trimmed clips must be between 0 and 1, got {self.trim_prob}")
        left = 1 - self.blank_audio_prob - self.blank_video_prob  # clips modality dropout leaves whole
        if not 0 <= self.other_video_prob <= left:
            raise ValueError(f"the share of clips with another clip's lips must be between 0 and {left:g} "
                             f"(the rest blank a stream), got {self.other_video_prob:g}")


def draw_flip(rng: np.random.Generator, config: AugmentConfig) -> bool:
    """Whether to mirror one clip's mouth crops."""
    return bool(rng.random() < config.flip_prob)


def draw_tempo(rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One clip's speaking-rate factors (>1: faster), one per tempo piece, log-uniform in
    `config.tempo`; (1, 1) draws nothing and gives a single 1."""
    low, high = config.tempo
    if low == high == 1:
        return np.ones(1)
    return np.exp(rng.uniform(np.log(low), np.log(high), size=config.tempo_pieces))


def stretch(frames: torch.Tensor, length: int, factors: Sequence[float] = (1.0,)) -> torch.Tensor:
    """(length, ...) from (T, ...) `frames`, resampled linearly in time: a slower or faster clip.

    The clip's equal pieces, one per factor, are each played at their own factor (>1: faster); one
    factor resamples uniformly, as `torch.nn.functional.interpolate(mode="linear")` does. Each
    output frame reads the input at its centre's time (pixel-centre convention), between two frames.
    """
    durations = 1 / np.asarray(factors, dtype=np.float64)  # each piece's share of the output, unscaled
    output_knots = np.concatenate([[0.0], np.cumsum(durations)]) / durations.sum()
    input_knots = np.linspace(0.0, 1.0, len(durations) + 1)
    centres = (np.arange(length) + 0.5) / length  # output frames' centres, as shares of the clip
    positions = np.interp(centres, output_knots, input_knots) * len(frames) - 0.5
    positions = np.clip(positions, 0, len(frames) - 1)
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, len(frames) - 1)
    weight = torch.from_numpy(positions - below).float().reshape(-1, *[1] * (frames.dim() - 1))
    return torch.lerp(frames[below].float(), frames[above].float(), weight).to(frames.dtype)


def drop_channels(features: torch.Tensor, rng: np.random.Generator, config: AugmentConfig) -> torch.Tensor:
    """(frames, channels) features with a random `feature_dropout` share of channels zeroed in every
    frame and the rest scaled by 1 / (1 - share), which keeps their expected value; 0 draws nothing.

    One mask for the whole clip (variational dropout): masks drawn per frame average out over time.
    """
    if config.feature_dropout == 0:
        return features
    keep = rng.random(features.shape[-1]) >= config.feature_dropout
    return features * torch.from_numpy(keep / (1 - config.feature_dropout)).to(features.dtype)


def noisy(
    speech: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
    pool: Mapping[str, np.ndarray],
    key: str,
) -> np.ndarray:
    """`speech` as it is (with `clean_prob`), else mixed with a random kind of noise at a random SNR.

    `pool` holds the training clips' waveforms for babble; `key` is this clip's, never its own babble.
    """
    if rng.random() < config.clean_prob:
        return speech
    name = config.noise_kinds[rng.integers(len(config.noise_kinds))]
    kind = name if name in BUILTIN_KINDS else Path(name)  # a file or folder, kept as str in configs
    spec = NoiseSpec(kind, float(rng.uniform(*config.snr_db)))
    return add_noise(speech, spec, rng, pool=pool, exclude=key)


def spec_augment(features: torch.Tensor, rng: np.random.Generator, config: AugmentConfig) -> torch.Tensor:
    """(frames, mels) features with random bands of bins and spans of frames set to zero.

    Zero is a normalised feature's mean, so a mask reads as an uninformative stretch.
    """
    masked = features.clone()
    for axis, count, widest in (
        (1, config.freq_masks, config.freq_mask_bins),
        (0, config.time_masks, config.time_mask_frames),
    ):
        for _ in range(count):
            width = int(rng.integers(min(widest, masked.shape[axis]) + 1))
            start = int(rng.integers(masked.shape[axis] - width + 1))
            masked.narrow(axis, start, width).zero_()
    return masked


def perturbation(rng: np.random.Generator, config: AugmentConfig) -> Perturbation | None:
    """Modality dropout or mismatched lips for one clip of a fusion model: at most one, or None."""
    draw = rng.random()
    for name, prob in (
        ("blank audio", config.blank_audio_prob),
        ("blank video", config.blank_video_prob),
        ("other video", config.other_video_prob),
    ):
        if draw < prob:
            return name
        draw -= prob
    return None


def word_cuts(words: Sequence[AlignedWord], frames: int, fps: float) -> np.ndarray | None:
    """(len(words) + 1,) video frames that cut a clip of `frames` frames into one span per word: 0,
    the middle of the pause (or the boundary) between each two words, `frames`.

    None when a span would be empty (a word shorter than a frame, or times past the clip's end).
    """
    middles = [round(fps * (before.end + after.start) / 2)
               for before, after in zip(words, words[1:], strict=False)]
    cuts = np.array([0, *middles, frames])
    return cuts if np.all(np.diff(cuts) > 0) else None


def speech_span(words: Sequence[AlignedWord], frames: int, fps: float) -> tuple[int, int]:
    """Video frames [start, stop) from the first of `words`' start to the last's end, within the clip.

    Times are rounded to a thousandth of a frame first, so that a word ending on a frame's boundary
    (0.56 s at 25 fps) does not reach into the next frame by a rounding error.
    """
    start = min(frames, floor(round(fps * words[0].start, 3)))
    return start, max(start, min(frames, ceil(round(fps * words[-1].end, 3))))


def draw_sources(rng: np.random.Generator, own: int, words: int, peers: Sequence[int], config: AugmentConfig
                 ) -> list[int]:
    """The clip each of clip `own`'s `words` word spans is cut from: itself, or at `splice_prob` one of
    `peers` (clips with as many words) drawn at random; 0 draws nothing."""
    if config.splice_prob == 0 or not peers:
        return [own] * words
    return [int(peers[rng.integers(len(peers))]) if rng.random() < config.splice_prob else own
            for _ in range(words)]


def draw_margins(rng: np.random.Generator, frames: int, speech: tuple[int, int], config: AugmentConfig
                 ) -> tuple[int, int]:
    """The frames [start, stop) a clip of `frames` frames whose words are said in `speech` keeps: at
    `trim_prob`, a random part of the silence before its words and of the silence after them, each
    drawn from none to all of it, else the whole clip; 0 draws nothing."""
    if config.trim_prob == 0 or rng.random() >= config.trim_prob:
        return 0, frames
    return int(rng.integers(speech[0] + 1)), frames - int(rng.integers(frames - speech[1] + 1))


def draw_words(rng: np.random.Generator, words: int, config: AugmentConfig) -> tuple[int, int]:
    """The run of words [first, stop) a clip of `words` words is cut to: at `crop_prob` one of its
    words * (words + 1) / 2 runs, each as likely, else all of them; 0 draws nothing."""
    if config.crop_prob == 0 or rng.random() >= config.crop_prob:
        return 0, words
    runs = [(first, stop) for first in range(words) for stop in range(first + 1, words + 1)]
    return runs[rng.integers(len(runs))]
