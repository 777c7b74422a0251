"""One clip recognised by every head of a model, side by side, under noise: what the web demo shows.

`compare` reads a clip once, its mouth crops and waveform as `avsr transcribe` reads them,
mixes in the noise chosen as `avsr transcribe --noise` would (the same seed gives the same noise),
runs the model once for all its heads (`Recognizer.transcribe_clip`: audiovisual, audio only and
video only for DMF) and, given what was said, scores each head's transcript by its word error rate.
A clip without a usable face or sound is still recognised from the stream it has, with a note.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import jiwer
import numpy as np

from avsr.transcribe import Recognizer, TranscribeOptions, Transcript
from data.noise import SILENT_POWER, add_noise, condition_rng, power
from models.config import Modality
from models.tokenizer import normalize
from preprocessing.audio import decode_audio, fit_to_video
from preprocessing.errors import ClipTooLongError, NoAudioStreamError, NoFaceError, NoVideoStreamError
from preprocessing.mouth import MouthChunk, iter_mouth_chunks
from preprocessing.video import VIDEO_FPS, iter_frames

# Longest clip compared, as a web page waits for it: tracking the face takes 3-10 ms a frame;
# `avsr transcribe` reads videos of any length.
MAX_SECONDS = 60
MAX_FRAMES = MAX_SECONDS * VIDEO_FPS


@dataclass(frozen=True)
class Comparison:
    """What each head of a model recognised in one clip, and what it read."""

    transcripts: dict[Modality, Transcript]  # by head, the model's main head first
    wers: dict[Modality, float]  # by head, against the reference; empty without one
    crops: np.ndarray  # (T, MOUTH_SIZE, MOUTH_SIZE) uint8: the mouth crops (unread without enough faces)
    detected: np.ndarray  # (T,) bool: a face was found in the frame
    waveform: np.ndarray  # (T * SAMPLES_PER_VIDEO_FRAME,) float32: what the model heard, noise included
    notes: list[str]  # why a stream was left out or is silent, for the reader
    seconds: float  # wall time from reading the file to the last transcript


def compare(
    recognizer: Recognizer,
    path: str | Path,
    options: TranscribeOptions,
    reference: str = "",
    babble: Mapping[str, np.ndarray] | None = None,
) -> Comparison:
    """Every head's transcript of the clip at `path` (see the module docstring).

    `options` gives the noise and decoding (its modality is ignored: every head runs); babble
    noise takes its talkers from `babble`. Raises an `InputError` when the clip cannot be read,
    is longer than MAX_SECONDS, or has neither a face nor sound to recognise.
    """
    start = time.perf_counter()
    path = Path(path)
    _, spec, _ = recognizer.prepare(options)  # options that cannot work fail before the slow part
    notes = []
    try:
        waveform = decode_audio(path)
    except NoAudioStreamError as error:
        waveform = None
        notes.append(f"{error}: the lips alone are read")
    chunks: list[MouthChunk] = []
    faceless: NoFaceError | None = None
    try:  # chunk by chunk, as `avsr transcribe` reads the lips, in bounded memory
        chunks.extend(iter_mouth_chunks(islice((frame.rgb for frame in iter_frames(path)), MAX_FRAMES + 1),
                                        path))
    except NoFaceError as error:  # raised after the last chunk
        faceless = error
    if not chunks:
        raise NoVideoStreamError(path, "the video stream holds no frames")
    crops = np.concatenate([chunk.crops for chunk in chunks])
    detected = np.concatenate([chunk.detected for chunk in chunks])
    if len(crops) > MAX_FRAMES:
        raise ClipTooLongError(path, f"the demo reads up to {MAX_SECONDS} s; `avsr transcribe` any length")
    if faceless is not None:
        if waveform is None:
            raise faceless
        notes.append(f"{faceless}: the sound alone is heard")
    if waveform is not None:
        if power(waveform) < SILENT_POWER:
            notes.append(f"{path}: the audio is silent")
        if spec is not None:  # as `Recognizer.log_probs` mixes it, so `avsr transcribe` hears the same
            rng = condition_rng(options.seed, "transcribe", spec, path.name)
            waveform = add_noise(waveform, spec, rng, pool=babble, exclude=os.path.abspath(path))
    waveform = fit_to_video(np.zeros(0, np.float32) if waveform is None else waveform, len(crops))
    heard = recognizer.transcribe_clip(None if faceless else crops, waveform, path,
                                       replace(options, modality=None, noise=None, snr=None))
    noise = None if spec is None else str(spec)
    transcripts = {modality: replace(transcript, noise=noise) for modality, transcript in heard.items()}
    truth = normalize(reference)
    wers = {modality: jiwer.wer(truth, transcript.text) for modality, transcript in transcripts.items()
            if truth}
    return Comparison(transcripts, wers, crops, detected, waveform, notes, time.perf_counter() - start)
