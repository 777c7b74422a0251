"""Media files made by the tests themselves (no corpus data is committed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from preprocessing.audio import SAMPLE_RATE

# codec per container, for videos the tests write
VIDEO_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4",
                ".webm": "libvpx", ".mpg": "mpeg2video"}
AUDIO_CODECS = {".mp4": "aac", ".mkv": "aac", ".mov": "aac", ".avi": "pcm_s16le",
                ".webm": "libopus", ".mpg": "mp2"}


def write_video(
    path: Path,
    frames: np.ndarray | None,
    fps: float | Fraction = 25,
    audio: np.ndarray | None = None,
    timestamps: list[float] | None = None,
) -> Path:
    """Write RGB `frames` (T, H, W, 3) and optional 16 kHz mono `audio` to `path`.

    `timestamps` (seconds, one per frame) makes a variable-frame-rate file.
    Either stream may be left out (frames=None or audio=None).
    """
    suffix = path.suffix
    with av.open(str(path), mode="w") as container:
        video = None
        if frames is not None:
            video_rate = Fraction(fps).limit_denominator(1001) if timestamps is None else 1000
            video = container.add_stream(VIDEO_CODECS[suffix], rate=video_rate)
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
            if timestamps is not None:
                video.time_base = Fraction(1, 1000)
        sound = None
        if audio is not None:
            audio_rate = 48_000 if suffix == ".webm" else SAMPLE_RATE  # opus takes 48 kHz only
            sound = container.add_stream(AUDIO_CODECS[suffix], rate=audio_rate)
            sound.layout = "mono"
        if video is not None:
            for index, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                if timestamps is not None:
                    frame.pts = round(timestamps[index] * 1000)
                    frame.time_base = Fraction(1, 1000)
                else:
                    frame.pts = index
                    frame.time_base = 1 / Fraction(video_rate)
                container.mux(video.encode(frame))
            container.mux(video.encode(None))
        if sound is not None:
            samples = audio.astype(np.float32)
            if sound.rate != SAMPLE_RATE:
                samples = np.interp(
                    np.arange(round(len(samples) * sound.rate / SAMPLE_RATE)) * SAMPLE_RATE / sound.rate,
                    np.arange(len(samples)), samples).astype(np.float32)
            chunk = 1024
            for start in range(0, len(samples), chunk):
                piece = samples[start:start + chunk][None, :]
                frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                frame.sample_rate = sound.rate
                frame.pts = start
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def astronaut_frames(n_frames: int, size: tuple[int, int] = (288, 360), drift: bool = True) -> np.ndarray:
    """A real face (scikit-image's astronaut photo) moving and zooming slowly over `n_frames`.

    Returns (T, H, W, 3) uint8 frames of `size` (height, width).
    """
    import cv2
    from skimage import data

    image = data.astronaut()  # 512x512 RGB, face around the upper middle
    height, width = size
    frames = []
    for index in range(n_frames):
        phase = index / max(1, n_frames - 1) if drift else 0.0
        scale = 0.75 + 0.1 * phase
        shift_x, shift_y = 20 * phase - 60, 10 * phase - 20
        matrix = np.array([[scale, 0, shift_x], [0, scale, shift_y]], dtype=np.float32)
        frames.append(cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def astronaut_matrix(index: int, n_frames: int, drift: bool = True) -> np.ndarray:
    """The (2, 3) map from photo to frame pixels of `astronaut_frames(n_frames, ..., drift)[index]`.

    Lets tests say where a point of the photo (e.g. the mouth) lies in each frame.
    """
    phase = index / max(1, n_frames - 1) if drift else 0.0
    scale = 0.75 + 0.1 * phase
    return np.array([[scale, 0, 20 * phase - 60], [0, scale, 10 * phase - 20]])


def tone(seconds: float, start: float, length: float, frequency: float = 1000.0) -> np.ndarray:
    """Silence of `seconds` with a sine burst from `start` lasting `length` seconds (16 kHz)."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    burst = (t >= start) & (t < start + length)
    return (0.5 * np.sin(2 * np.pi * frequency * t) * burst).astype(np.float32)
