"""From any video (or, for audio models, audio) file to a transcript with word timings.

`Recognizer.transcribe` streams a file through the model: video frames become mouth crops a
chunk at a time (`preprocessing.mouth.iter_mouth_chunks`), and the model reads overlapping
windows of them (`avsr.windows`), so memory does not grow with the video's length; only the
16 kHz waveform (3.8 MB a minute) and the log-probabilities (0.2 MB a minute) are held whole.
The windows' log-probabilities are stitched into one sequence, which `models.decoding` decodes
(beam search in segments cut at pauses), so words and their times need no stitching.
`transcribe_files` shares many files among worker processes, each with its own copy of the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avsr.windows import (
    CONTEXT_FRAMES,
    WINDOW_FRAMES,
    Window,
    edge_padding,
    edge_pads,
    iter_windows,
    pad_streams,
    pause_cuts,
)
from data.manifest import read_manifest
from data.noise import BABBLE, SILENT_POWER, NoiseSpec, add_noise, condition_rng, parse_noise, power
from models.checkpoint import ADAPTATION, WEIGHTS_DIR
from models.config import Modality, supported_modalities
from models.decoding import DEFAULT_BEAM_SIZE, Decoder, DecodingOptions
from models.dmf import AVSRModel
from models.ensemble import Ensemble, load_model
from models.inputs import crop, pixels
from models.lm import lexicon_path
from models.precision import autocast, default_bf16
from models.voting import decoded
from preprocessing.audio import SAMPLES_PER_VIDEO_FRAME, decode_audio, features, fit_to_video
from preprocessing.cache import Failure, pool_context
from preprocessing.clip import MIN_FRAMES
from preprocessing.errors import ClipTooShortError, NoAudioStreamError, NoVideoStreamError, SilentAudioError
from preprocessing.mouth import iter_mouth_chunks
from preprocessing.video import FRAME_SECONDS, iter_frames

GRID_LM = WEIGHTS_DIR / "grid.arpa"  # bundled word trigram model of GRID's training transcripts
GRID_DATA = "GRID corpus"  # in a checkpoint's metadata["data"]: trained on GRID, so GRID_LM fits
BABBLE_CACHE = 64  # babble talkers' waveforms kept decoded per process (~100 kB per second each)
# What `avsr transcribe`, `avsr.load_model()` and the demo read with: five DMF models voting,
# better than the bundled DMF alone on s1 and on the unseen s4 (see the README's Results).
DEFAULT_MODEL = "dmf-ensemble"
LIVE_MODEL = "dmf"  # what `avsr live` reads with: one model, so each window's captions keep up


@dataclass(frozen=True)
class Word:
    """A recognised word: when it is said, in seconds from the start, and how sure the model is."""

    word: str
    start: float
    end: float
    confidence: float  # mean posterior of its aligned frames, in [0, 1] (see `models.decoding`)


@dataclass(frozen=True)
class Transcript:
    """What `Recognizer.transcribe` recognised in one file."""

    path: Path
    text: str
    words: list[Word]
    duration: float  # seconds: the video's frames (or the audio's, recognising from audio alone)
    modality: Modality  # the model head that read the file
    model: str  # as given to `load_model`: a bundled model's name or a checkpoint's path
    noise: str | None = None  # noise mixed in before recognition, e.g. "babble@0dB"


@dataclass(frozen=True)
class Emitted:
    """One head's outputs over a recording, window by window, and what each stands for."""

    log_probs: Tensor  # (N, VOCAB_SIZE): one per video frame, and one per frame of edge padding;
    # an ensemble's (members, N, VOCAB_SIZE)
    frames: np.ndarray  # (N,) the recording's video frame each output stands for (padding: its edge's)
    breaks: list[int]  # outputs where a pause cut the recording: no word crosses them (`Decoder`)

    @property
    def duration(self) -> float:
        """Seconds of the recording."""
        return (int(self.frames[-1]) + 1) * FRAME_SECONDS


@dataclass(frozen=True)
class TranscribeOptions:
    """How `Recognizer.transcribe` reads and decodes a file."""

    modality: Modality | None = None  # "av", "audio" or "video"; None: the model's main head
    beam: int = DEFAULT_BEAM_SIZE  # prefixes kept by beam search; 1: greedy decoding, no LM
    lm: bool | str | Path = True  # the model's own language model, none (False), or this ARPA file
    noise: str | Path | None = None  # mixed into the audio first: white, pink, babble or a file
    snr: float | None = None  # dB of `noise`, by `data.noise`'s whole-clip rule
    seed: int = 0  # of the noise draws: the same seed and file get the same noise


class Recognizer:
    """A model ready to transcribe files; `avsr.load_model()` makes one."""

    def __init__(self, model: AVSRModel | Ensemble, name: str, lm: Path | None = None) -> None:
        """`lm`: the ARPA file (with its lexicon beside it) beam search uses unless told otherwise."""
        self.model = model.eval()
        self.name = name
        self.lm = lm
        self.device = next(model.parameters()).device
        self.bf16 = default_bf16(self.device, model.config.block)  # as in training's evaluation
        self.window_frames = WINDOW_FRAMES  # outputs kept per window (see `avsr.windows`)
        self.context_frames = CONTEXT_FRAMES  # frames read on each side of them
        self.cut_at_pauses = True  # windows end where the sound pauses (`avsr.windows.pause_cuts`)
        self.pad_edges = True  # windows' edges padded with still lips and quiet (`avsr.windows.edge_pads`)
        self._decoders: dict[DecodingOptions, Decoder] = {}

    @classmethod
    def load(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        device: str | None = None,
        clip_norm: bool | None = None,
    ) -> Recognizer:
        """A bundled model by name, or a checkpoint file, or an ensemble of them
        (`models.ensemble.member_names`), on `device` (default: CUDA if available).

        A model trained on GRID decodes with the bundled GRID language model when it is installed.
        `clip_norm`: normalise the visual trunk's activations by each clip's own statistics
        (`VisualFrontEnd.pooled`); None: yes, except for a model `avsr adapt` made, whose
        statistics are its speaker's already.
        """
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, metadata = load_model(name_or_path, device)
        if model.video_frontend is not None:
            model.video_frontend.clip_norm = ADAPTATION not in metadata if clip_norm is None else clip_norm
        grid = GRID_DATA in str(metadata.get("data", ""))
        lm = GRID_LM if grid and GRID_LM.is_file() and lexicon_path(GRID_LM).is_file() else None
        return cls(model, str(name_or_path), lm)

    @property
    def modalities(self) -> tuple[Modality, ...]:
        """What the model recognises from, its main head first (the default)."""
        return supported_modalities(self.model.config.kind)

    def decoding_options(self, beam: int, lm: bool | str | Path) -> DecodingOptions:
        """Greedy for `beam` 1; else beam search with the ARPA file `lm`, or the model's own (True)
        if it has one, or none (False). A language model comes with its lexicon (`models.lm`)."""
        arpa = self.lm if lm is True else None if lm is False else Path(lm)
        if beam == 1 or arpa is None:
            return DecodingOptions(beam_size=beam)
        for needed in (arpa, lexicon_path(arpa)):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed}: no such file (`avsr lm build` writes LM and lexicon)")
        return DecodingOptions(beam_size=beam, lexicon=lexicon_path(arpa), lm=arpa)

    def decoder(self, options: DecodingOptions) -> Decoder:
        """The decoder for `options`, made once and kept (loading a language model takes time)."""
        if options not in self._decoders:
            self._decoders[options] = Decoder(options)
        return self._decoders[options]

    def transcribe(
        self, path: str | Path, babble: Mapping[str, np.ndarray] | None = None, **options: Any
    ) -> Transcript:
        """Recognise what is said in the file at `path`; `options` are `TranscribeOptions`' fields.

        Noise "babble" takes its talkers from `babble` (see `babble_pool`). Raises an
        `InputError` naming the file when it cannot be read or recognised, and ValueError or
        FileNotFoundError for options that cannot work.
        """
        return self.transcribe_with(Path(path), TranscribeOptions(**options), babble)

    def transcribe_with(
        self, path: Path, options: TranscribeOptions, babble: Mapping[str, np.ndarray] | None = None
    ) -> Transcript:
        """`transcribe` with its options as a `TranscribeOptions`."""
        modality, spec, decoder = self.prepare(options)
        emitted = self.log_probs(path, modality, spec, options.seed, babble)
        return self._transcript(path, modality, emitted, decoder, spec)

    def transcribe_clip(
        self, mouths: np.ndarray | None, waveform: np.ndarray, path: Path, options: TranscribeOptions
    ) -> dict[Modality, Transcript]:
        """The transcript of every head that reads the streams given, from a clip held in memory.

        mouths: (T, MOUTH_SIZE, MOUTH_SIZE) uint8 crops, or None (only the audio head then);
        waveform: (T * SAMPLES_PER_VIDEO_FRAME,) float32 (for an audio-only model, any length),
        with any noise already mixed in, so `options` must give none. The model runs once per
        window for all heads, so the front ends' work is shared. `path` names the clip. No head
        reads the streams given (an audiovisual or video model without crops): an empty dict.
        """
        _, spec, decoder = self.prepare(options)
        if spec is not None:
            raise ValueError("transcribe_clip takes the waveform with its noise mixed in: give no noise")
        sees = mouths is not None and self.model.video_frontend is not None
        if not self.model.available_heads(True, sees):
            return {}
        chunks = self._chunks(iter([mouths]) if sees else None, waveform)
        heads: dict[Modality, list[Tensor]] = {}
        positions, pauses = [], []
        for window, kept, frames, audio, where in self._windows(chunks, waveform, hears=True, sees=sees):
            positions.append(where)
            pauses.append(window.after_pause)
            for modality, emitted in self.head_emissions(frames, audio).items():
                heads.setdefault(modality, []).append(emitted[..., kept, :])
        return {modality: self._transcript(path, modality, _stitched(path, parts, positions, pauses), decoder)
                for modality, parts in heads.items()}

    def _transcript(
        self, path: Path, modality: Modality, emitted: Emitted, decoder: Decoder,
        spec: NoiseSpec | None = None,
    ) -> Transcript:
        """The decoded words of one head's outputs, timed from the recording's start."""
        hypothesis = decoded(decoder, emitted.log_probs, emitted.breaks)
        # A word ends where the output after its last character stands: padding's outputs share
        # their edge frame, so the words that come out there stay in order.
        times = np.append(emitted.frames, emitted.frames[-1] + 1) * FRAME_SECONDS
        words = [Word(span.word, float(times[span.start]), float(times[span.end]), span.confidence)
                 for span in hypothesis.words]
        return Transcript(path, hypothesis.text, words, emitted.duration, modality, self.name,
                          None if spec is None else str(spec))

    def prepare(self, options: TranscribeOptions) -> tuple[Modality, NoiseSpec | None, Decoder]:
        """The head, noise condition and decoder `options` select; raises ValueError or
        FileNotFoundError for options that cannot work with this model."""
        modality = options.modality or self.modalities[0]
        if modality not in self.modalities:
            raise ValueError(f"the {self.name} model recognises from {', '.join(self.modalities)}, "
                             f"not {modality!r}")
        spec = noise_spec(options.noise, options.snr)
        return modality, spec, self.decoder(self.decoding_options(options.beam, options.lm))

    def log_probs(
        self,
        path: Path,
        modality: Modality,
        spec: NoiseSpec | None = None,
        seed: int = 0,
        babble: Mapping[str, np.ndarray] | None = None,
    ) -> Emitted:
        """The outputs of `modality`'s head over the whole file, window by window."""
        hears, sees = modality != "video", modality != "audio"
        try:  # read for the lips alone too: it tells where the silence is (`avsr.windows.edge_padding`)
            waveform = decode_audio(path)
        except NoAudioStreamError:
            if hears:
                raise
            waveform = None
        if waveform is not None:
            if modality == "audio" and (len(waveform) == 0 or power(waveform) < SILENT_POWER):
                raise SilentAudioError(path, "recognise from the video instead")
            if spec is not None:
                rng = condition_rng(seed, "transcribe", spec, path.name)
                waveform = add_noise(waveform, spec, rng, pool=babble, exclude=os.path.abspath(path))
        mouths = None
        if sees:
            mouths = (chunk.crops for chunk in iter_mouth_chunks((f.rgb for f in iter_frames(path)), path))
        outputs, positions, pauses = [], [], []
        for window, kept, frames, audio, where in self._windows(self._chunks(mouths, waveform), waveform,
                                                                 hears, sees):
            positions.append(where)
            pauses.append(window.after_pause)
            outputs.append(self.emissions(modality, frames, audio)[..., kept, :])
        return _stitched(path, outputs, positions, pauses)

    @staticmethod
    def _chunks(mouths: Iterator[np.ndarray] | None, waveform: np.ndarray | None) -> Iterator[np.ndarray]:
        """The frame-aligned arrays the windows are cut from: the mouth crops, or without them
        the waveform a video frame's samples at a time."""
        if mouths is not None or waveform is None:
            return mouths
        frames = -(-len(waveform) // SAMPLES_PER_VIDEO_FRAME)  # a partial frame counts
        return iter([fit_to_video(waveform, frames).reshape(frames, SAMPLES_PER_VIDEO_FRAME)])

    def _windows(
        self, chunks: Iterator[np.ndarray], waveform: np.ndarray | None, hears: bool, sees: bool
    ) -> Iterator[tuple[Window, slice, np.ndarray | None, np.ndarray | None, np.ndarray]]:
        """Each window; the slice of its outputs kept; the model's inputs, padded at its edges
        (`avsr.windows.edge_pads`): its mouth crops if `sees`, its audio if `hears`; and the
        recording's frame each kept output stands for. `waveform` (None: the file has no sound)
        also sets the padding where only the lips are read."""
        cuts = pause_cuts(waveform) if hears and self.cut_at_pauses else []
        padding = edge_padding(waveform)
        for window, frames in iter_windows(chunks, self.window_frames, self.context_frames, cuts):
            audio = None
            if hears:
                audio = waveform[window.start * SAMPLES_PER_VIDEO_FRAME :]
                audio = fit_to_video(audio, window.end - window.start)
            before, after = edge_pads(window, padding) if self.pad_edges else (0, 0)
            frames, audio = pad_streams(frames if sees else None, audio, before, after, padding.rms)
            # Padding is only added where the window keeps its outputs up to its edge: kept too.
            kept = slice(window.kept.start, window.kept.stop + before + after)
            where = np.concatenate([np.full(before, window.keep_start),
                                    np.arange(window.keep_start, window.keep_end),
                                    np.full(after, window.keep_end - 1)])
            yield window, kept, frames, audio, where

    def emissions(self, modality: Modality, mouths: np.ndarray | None, waveform: np.ndarray | None) -> Tensor:
        """(T, VOCAB_SIZE) log-probabilities of `modality`'s head for one clip (see `head_emissions`);
        an ensemble's (members, T, VOCAB_SIZE)."""
        return self.head_emissions(mouths, waveform)[modality]

    @torch.inference_mode()
    def head_emissions(
        self, mouths: np.ndarray | None, waveform: np.ndarray | None
    ) -> dict[Modality, Tensor]:
        """(T, VOCAB_SIZE) log-probabilities (an ensemble's: (members, T, VOCAB_SIZE)), on the CPU,
        of every head that reads the streams given.

        mouths: (T, MOUTH_SIZE, MOUTH_SIZE) uint8 crops, or None; waveform: (T *
        SAMPLES_PER_VIDEO_FRAME,) float32, or None. The model's inputs are made, and it runs
        (in bf16 where that is faster), as in training's evaluation: the centre crop in [0, 1],
        normalised log-mel.
        """
        frames = len(mouths) if mouths is not None else len(waveform) // SAMPLES_PER_VIDEO_FRAME
        video = audio = None
        if mouths is not None:
            video = pixels(crop(mouths, self.model.config.crop_size))[None].to(self.device)
        if waveform is not None:
            audio = features(torch.from_numpy(waveform))[None].to(self.device)
        lengths = torch.tensor([frames], device=self.device)
        with autocast(self.device, self.bf16):
            heads = self.model(audio, video, lengths)
        return {modality: log_probs[0].float().cpu() for modality, log_probs in heads.items()}


def _stitched(path: Path, outputs: list[Tensor], positions: list[np.ndarray], pauses: list[bool]) -> Emitted:
    """One recording's outputs from its windows' kept parts and the frames they stand for
    (`Recognizer._windows`), with a break where a window starts after a pause; raises for too few
    frames."""
    if not outputs:
        raise NoVideoStreamError(path, "the video stream holds no frames")
    starts = np.cumsum([0, *map(len, positions)])[:-1]
    breaks = [int(start) for start, pause in zip(starts, pauses, strict=True) if pause]
    emitted = Emitted(torch.cat(outputs, dim=-2), np.concatenate(positions), breaks)
    frames = int(emitted.frames[-1]) + 1
    if frames < MIN_FRAMES:
        raise ClipTooShortError(path, f"{frames} frames, the minimum is {MIN_FRAMES}")
    return emitted


def noise_spec(noise: str | Path | None, snr: float | None) -> NoiseSpec | None:
    """The condition for `noise` (white, pink, babble or a file or folder) at `snr` dB; None: clean."""
    if noise is None and snr is None:
        return None
    if noise is None or snr is None:
        raise ValueError("noise needs an SNR, and an SNR a noise: give both")
    kinds = parse_noise(str(noise))
    if len(kinds) != 1:
        raise ValueError(f"one noise at a time, got {noise!r}")
    return NoiseSpec(kinds[0], float(snr))


class _DecodedPool(Mapping[str, np.ndarray]):
    """Waveforms of a list of files by absolute path, each decoded when first asked for."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = dict.fromkeys(os.path.abspath(path) for path in paths)  # ordered, no repeats
        self._decode = lru_cache(maxsize=BABBLE_CACHE)(decode_audio)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._paths:
            raise KeyError(key)
        return self._decode(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def babble_pool(manifest: str | Path) -> Mapping[str, np.ndarray]:
    """The talkers for babble noise: the manifest's utterances, decoded as babble picks them."""
    return _DecodedPool([utterance.video for utterance in read_manifest(manifest)])


def transcribe_files(
    paths: Sequence[str | Path],
    options: TranscribeOptions | None = None,
    model: str | Path = DEFAULT_MODEL,
    device: str | None = None,
    workers: int = 1,
    babble_manifest: str | Path | None = None,
    clip_norm: bool | None = None,
) -> Iterator[Transcript | Failure]:
    """Transcripts of `paths`, in order; a file that fails gives its `Failure`, and the rest go on.

    With `workers` > 1, as many processes share the files, each with a copy of the model and
    1 / `workers` of the CPU threads. The model and options are checked here first, so a
    mistake in them fails at once rather than once per file. `clip_norm`: see `Recognizer.load`.
    """
    options = options or TranscribeOptions()
    recognizer = Recognizer.load(model, device, clip_norm)
    _, spec, _ = recognizer.prepare(options)
    if spec is not None and spec.kind == BABBLE and babble_manifest is None:
        raise ValueError("babble noise needs a manifest of utterances to mix (babble_manifest)")
    babble = None if babble_manifest is None else babble_pool(babble_manifest)
    workers = min(workers, len(paths))
    if workers <= 1:
        for path in paths:
            yield _transcribe_one(recognizer, Path(path), options, babble)
        return
    threads = max(1, torch.get_num_threads() // workers)
    pool = ProcessPoolExecutor(workers, mp_context=pool_context(__name__), initializer=_start_worker,
                               initargs=(model, str(recognizer.device), babble_manifest, clip_norm, threads))
    try:
        futures = [pool.submit(_transcribe_in_worker, Path(path), options) for path in paths]
        for path, future in zip(paths, futures, strict=True):
            try:
                yield future.result()
            except Exception as error:  # BrokenProcessPool: the worker process itself died
                yield Failure.of(Path(path), error)
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, drop the queue rather than finish it


def _transcribe_one(
    recognizer: Recognizer, path: Path, options: TranscribeOptions, babble: Mapping[str, np.ndarray] | None
) -> Transcript | Failure:
    try:
        return recognizer.transcribe_with(path, options, babble)
    except Exception as error:  # a batch reports every kind of failure and goes on
        return Failure.of(path, error)


_worker: tuple[Recognizer, Mapping[str, np.ndarray] | None] | None = None  # each worker's model


def _start_worker(
    model: str | Path, device: str, babble_manifest: str | Path | None, clip_norm: bool | None, threads: int
) -> None:
    global _worker
    torch.set_num_threads(threads)
    babble = None if babble_manifest is None else babble_pool(babble_manifest)
    _worker = Recognizer.load(model, device, clip_norm), babble


def _transcribe_in_worker(path: Path, options: TranscribeOptions) -> Transcript | Failure:
    recognizer, babble = _worker
    return _transcribe_one(recognizer, path, options, babble)
