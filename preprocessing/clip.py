"""From a media file to the two aligned model inputs: mouth crops and the waveform.

Length rule: the video defines a clip's length. A clip of T video frames (25 fps) gets
exactly T * SAMPLES_PER_VIDEO_FRAME audio samples (4T log-mel frames): audio that runs past
the last video frame is cut, audio that ends early is padded with silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preprocessing.audio import decode_audio, fit_to_video
from preprocessing.errors import ClipTooShortError, NoVideoStreamError
from preprocessing.mouth import track_mouth
from preprocessing.video import VIDEO_FPS, iter_frames

MIN_FRAMES = VIDEO_FPS // 5  # 5 video frames = 0.2 s: shorter clips hold no recognisable word


@dataclass(frozen=True)
class Clip:
    """A preprocessed clip: what every model reads, at 25 video frames per second."""

    mouths: np.ndarray  # (T, MOUTH_SIZE, MOUTH_SIZE) uint8 grayscale mouth crops
    audio: np.ndarray  # (T * SAMPLES_PER_VIDEO_FRAME,) float32 16 kHz mono waveform
    detected: np.ndarray  # (T,) bool: a face was found in this frame (others interpolated)

    @property
    def n_frames(self) -> int:
        return len(self.mouths)


def preprocess_clip(path: str | Path) -> Clip:
    """Decode `path`, track the mouth and align the audio to the video frames.

    Raises an `InputError` subclass naming the file for every kind of bad input.
    """
    path = Path(path)
    waveform = decode_audio(path)  # first, so a bad file fails before the slow face tracking
    track = track_mouth((frame.rgb for frame in iter_frames(path)), path)
    n_frames = len(track.crops)
    if n_frames == 0:
        raise NoVideoStreamError(path, "the video stream holds no frames")
    if n_frames < MIN_FRAMES:
        raise ClipTooShortError(path, f"{n_frames} frames, the minimum is {MIN_FRAMES}")
    return Clip(mouths=track.crops, audio=fit_to_video(waveform, n_frames), detected=track.detected)
