"""Noise for robustness: white, pink, babble or a user's recording, mixed into speech at an exact SNR.

Noise goes into the 16 kHz mono float32 waveform before features are taken, on the fly: in
training (random kinds and SNRs per clip) and in benchmarking (`--noise`, `--snr`, `--seed`).
Everything is numpy, one clip or a batch (..., samples) at a time; training hands the result to
torch with `torch.from_numpy`, which copies nothing.

SNR rule, used everywhere: the ratio of the whole clip's mean speech power to the whole clip's
mean noise power. Pauses count as speech, so over speech-active frames alone the SNR is a little
higher (by 10*log10 of the speech-active share: about 1 dB for a clip that is 75% speech). We
chose it because it needs no voice-activity detector or threshold, so it is exact, reproducible and
the same for every noise kind, and it is the common rule (`torchaudio.functional.add_noise`,
audiomentations), so our SNRs compare with published noisy-speech results.

Reproducibility: draw every random choice from `condition_rng(seed, clip, ...)`, a generator
seeded by a stable hash, so the same seed gives the same noisy audio in every run and process,
while each clip (and each condition) gets noise of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from preprocessing.audio import SAMPLE_RATE, decode_audio

WHITE, PINK, BABBLE = "white", "pink", "babble"
BUILTIN_KINDS = (WHITE, PINK, BABBLE)
KINDS_HELP = f"{', '.join(BUILTIN_KINDS)}, or an existing noise file or folder"  # for error messages
CLEAN = "clean"  # the `--snr` item that means no noise at all

BABBLE_TALKERS = 6  # other utterances summed into babble: enough to be unintelligible as words
PINK_MIN_FREQUENCY = 20.0  # Hz: pink noise is band-limited to 20 Hz .. SAMPLE_RATE / 2, the audible
# band; below it 1/f would pour ever more power into inaudible rumble as clips get longer
SILENT_POWER = 1e-10  # mean square (-100 dBFS), about 16-bit audio's quantisation noise: nothing recorded
REFERENCE_DBFS = -26.0  # dB re full scale: nominal active speech level (ITU-T P.56), which a
# silent clip is taken to have, so it still gets noise of the requested SNR's loudness
REFERENCE_POWER = 10 ** (REFERENCE_DBFS / 10)  # mean square
MAX_CACHED_NOISE_FILES = 8  # decoded noise files (or folders) kept in memory per process
NOISE_BANK_SECONDS = 60  # s of white and of pink noise made once per process; each clip takes a
# random segment (~10^6 distinct ones for a 3 s clip): ~100x cheaper than fresh noise per clip
NOISE_BANK_SEED = 0  # fixed, so every process and run has the same bank; clips' rngs pick segments

BuiltinKind = Literal["white", "pink", "babble"]
NoiseKind = BuiltinKind | Path  # a Path is a noise file, or a folder of them


@dataclass(frozen=True)
class NoiseSpec:
    """One test or training condition: which noise, at what SNR; both None means clean speech."""

    kind: NoiseKind | None
    snr_db: float | None  # dB, by the whole-clip rule (see the module docstring)

    def __post_init__(self) -> None:
        if (self.kind is None) != (self.snr_db is None):
            raise ValueError(f"noise kind and SNR must both be given, or neither for clean: {self!r}")

    def __str__(self) -> str:
        """A stable name such as `babble@-5dB` or `clean`: for reports and as a `condition_rng` key."""
        return CLEAN if self.snr_db is None else f"{self.kind}@{self.snr_db:g}dB"


def parse_noise(text: str) -> tuple[NoiseKind, ...]:
    """Parse `--noise`, e.g. `white,pink,babble,cafe.wav`: built-in names, or existing files or folders.

    A built-in name wins over a file of the same name; write `./white` for the file.
    """
    kinds: list[NoiseKind] = []
    for item in _items(text, "--noise"):
        if item in BUILTIN_KINDS:
            kinds.append(item)
        elif Path(item).exists():
            kinds.append(Path(item))
        else:
            raise ValueError(f"unknown noise {item!r}: expected {KINDS_HELP}")
    return tuple(kinds)


def parse_snr(text: str) -> tuple[float | None, ...]:
    """Parse `--snr`, e.g. `clean,20,5,-5`: SNRs in dB, with `clean` (None) for no noise."""
    snrs: list[float | None] = []
    for item in _items(text, "--snr"):
        if item.lower() == CLEAN:
            snrs.append(None)
            continue
        try:
            snr = float(item)
        except ValueError:
            raise ValueError(f"bad SNR {item!r}: expected a number of dB or {CLEAN!r}") from None
        if not math.isfinite(snr):
            raise ValueError(f"bad SNR {item!r}: must be a finite number of dB")
        snrs.append(snr)
    return tuple(snrs)


def _items(text: str, option: str) -> list[str]:
    """The comma-separated items of an option's value, refusing empty ones (`20,,5`)."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ValueError(f"{option} {text!r}: empty item; expected a comma-separated list")
    return items


def noise_conditions(kinds: Iterable[NoiseKind], snrs: Iterable[float | None]) -> list[NoiseSpec]:
    """Every kind at every SNR, with clean (if asked for) once and first: the benchmark's grid."""
    snrs = tuple(snrs)
    clean = [NoiseSpec(None, None)] if None in snrs else []
    return clean + [NoiseSpec(kind, snr) for kind in kinds for snr in snrs if snr is not None]


def condition_rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator fixed by `seed` and `keys` (clip id, condition, epoch...), the same in every process.

    Keys are hashed by their `str` with BLAKE2 (Python's `hash` is salted per process).
    """
    text = json.dumps([seed, *map(str, keys)])
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def power(waveform: np.ndarray) -> np.ndarray:
    """Mean square over the last axis (samples); numpy's pairwise sum keeps float32 exact to ~1e-6."""
    return np.mean(np.square(waveform), axis=-1)


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float | np.ndarray) -> np.ndarray:
    """`speech` plus `noise` scaled so that the whole-clip SNR is exactly `snr_db`.

    Works on one clip (samples,) or a batch (..., samples), with one SNR or one per clip. Mix
    before padding a batch, since padding counts as silence. A silent clip (below SILENT_POWER)
    is taken to be at REFERENCE_DBFS, so it gets the noise a normal clip would rather than NaN.
    The result is not clipped to [-1, 1]: features take any float.
    """
    noise_power = power(noise)
    if np.any(noise_power < SILENT_POWER):
        raise ValueError("noise is silent: no gain gives it a set SNR")
    speech_power = power(speech)
    speech_power = np.where(speech_power < SILENT_POWER, REFERENCE_POWER, speech_power)
    gain = np.sqrt(speech_power / noise_power * 10 ** (-np.asarray(snr_db) / 10)).astype(np.float32)
    return (speech + gain[..., None] * noise).astype(np.float32, copy=False)


def add_noise(
    speech: np.ndarray,
    spec: NoiseSpec,
    rng: np.random.Generator,
    *,
    pool: Mapping[str, np.ndarray] | None = None,
    exclude: str | None = None,
) -> np.ndarray:
    """One clip under condition `spec`: unchanged when clean, else mixed with `make_noise`'s noise."""
    if spec.snr_db is None:
        return speech
    noise = make_noise(spec.kind, len(speech), rng, pool=pool, exclude=exclude)
    return mix(speech, noise, spec.snr_db)


def make_noise(
    kind: NoiseKind,
    length: int,
    rng: np.random.Generator,
    *,
    pool: Mapping[str, np.ndarray] | None = None,
    exclude: str | None = None,
) -> np.ndarray:
    """`length` samples of float32 noise of `kind`, at an arbitrary level (`mix` sets it).

    Babble needs `pool` (utterances keyed by clip id) and `exclude`, the key of the clip it is
    for. Other kinds are a random segment of a recording: a noise file (or one of a folder's),
    decoded once per process, or the white or pink noise bank.
    """
    if kind == BABBLE:
        if pool is None or exclude is None:
            raise ValueError("babble needs a pool of utterances and the key of the clip to exclude")
        return babble(pool, length, rng, exclude=exclude)
    recordings = load_noise(kind) if isinstance(kind, Path) else (_noise_bank(kind),)
    return _segment(recordings[rng.integers(len(recordings))], length, rng).copy()  # not the cache's


@lru_cache(maxsize=len(BUILTIN_KINDS))
def _noise_bank(kind: BuiltinKind) -> np.ndarray:
    """NOISE_BANK_SECONDS of white or pink noise, the same in every process; read-only, as it is shared.

    Both are circular (pink is made by an inverse FFT), so segments that wrap around have no seam.
    """
    synthesize = {WHITE: white, PINK: pink}.get(kind)
    if synthesize is None:
        raise ValueError(f"unknown noise {kind!r}: expected {KINDS_HELP}")
    bank = synthesize(NOISE_BANK_SECONDS * SAMPLE_RATE, np.random.default_rng(NOISE_BANK_SEED))
    bank.setflags(write=False)
    return bank


def white(length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise at unit RMS: equal power at every frequency."""
    return rng.standard_normal(length, dtype=np.float32)


def pink(length: int, rng: np.random.Generator) -> np.ndarray:
    """Pink noise at unit RMS: power falling as 1/f (-3 dB per octave) from PINK_MIN_FREQUENCY up.

    Drawn directly as a random spectrum (complex Gaussian, like white noise's) with amplitudes
    scaled by 1/sqrt(f), then inverted: one inverse FFT, no filter to design.
    """
    frequencies = np.fft.rfftfreq(length, d=1 / SAMPLE_RATE)
    amplitude = np.zeros(len(frequencies), np.float32)
    audible = frequencies >= PINK_MIN_FREQUENCY
    amplitude[audible] = frequencies[audible] ** -0.5
    spectrum = rng.standard_normal((2, len(frequencies)), dtype=np.float32)
    noise = np.fft.irfft((spectrum[0] + 1j * spectrum[1]) * amplitude, n=length).astype(np.float32)
    return noise / np.sqrt(power(noise))  # irfft's 1/n scaling would leave it near SILENT_POWER


def babble(
    pool: Mapping[str, np.ndarray], length: int, rng: np.random.Generator, *, exclude: str
) -> np.ndarray:
    """BABBLE_TALKERS other utterances of `pool`, each at a random offset and equal RMS, summed.

    `exclude` (required) is the key of the clip the babble is for, so its own words never appear.
    Talkers are picked in the pool's order, which must be the same from run to run (e.g. a manifest's).
    """
    keys = list(pool)
    skipped = keys.index(exclude) if exclude in pool else len(keys)
    candidates = len(keys) - (skipped < len(keys))
    if candidates < BABBLE_TALKERS:
        raise ValueError(
            f"babble needs {BABBLE_TALKERS} utterances besides {exclude!r}; the pool has {candidates}"
        )
    picks = rng.choice(candidates, BABBLE_TALKERS, replace=False)
    picks += picks >= skipped  # step over the excluded clip
    talkers = np.stack([_segment(pool[keys[index]], length, rng) for index in picks])
    rms = np.sqrt(np.maximum(power(talkers), SILENT_POWER))
    return (1 / rms) @ talkers


def _segment(waveform: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of `waveform` from a random start: cut from it, or looped when it is shorter."""
    if len(waveform) == 0:
        raise ValueError("cannot take noise from an empty waveform")
    if len(waveform) >= length:
        start = rng.integers(len(waveform) - length + 1)
        return waveform[start : start + length]  # a view: callers copy or combine it
    start = rng.integers(len(waveform))
    return np.take(waveform, np.arange(start, start + length), mode="wrap")


@lru_cache(maxsize=MAX_CACHED_NOISE_FILES)
def load_noise(path: Path) -> tuple[np.ndarray, ...]:
    """Decode a noise file, or every file of a folder (sorted, hidden ones skipped), to waveforms.

    Each is any media file `decode_audio` reads. The arrays are read-only since they are cached.
    """
    if path.is_dir():
        files = sorted(file for file in path.iterdir() if file.is_file() and not file.name.startswith("."))
    else:
        files = [path]
    if not files:
        raise ValueError(f"{path}: no noise files in this folder")
    recordings = []
    for file in files:
        waveform = decode_audio(file)
        if len(waveform) == 0 or power(waveform) < SILENT_POWER:
            raise ValueError(f"{file}: noise file is silent or empty")
        waveform.setflags(write=False)
        recordings.append(waveform)
    return tuple(recordings)
