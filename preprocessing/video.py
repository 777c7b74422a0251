"""Video: decode any FFmpeg-readable file to RGB frames on a fixed 25 fps grid.

Other frame rates and variable frame rate are resampled on presentation timestamps:
output frame `k` shows the source frame on screen at the middle of its 40 ms slot,
`start + (k + 0.5) / VIDEO_FPS`. Frames come out as a stream, so long files need not fit
in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from preprocessing.errors import NoVideoStreamError
from preprocessing.media import open_container

VIDEO_FPS = 25  # frames per second of every video stream the models see
FRAME_SECONDS = 1.0 / VIDEO_FPS  # 40 ms per video frame


@dataclass(frozen=True)
class VideoFrame:
    """One output frame: `index` on the 25 fps grid, `time` in seconds from the stream start."""

    index: int
    time: float
    rgb: np.ndarray  # (height, width, 3) uint8


def _source_frames(path: str | Path) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield (timestamp, nominal frame duration, rgb) for each decoded source frame."""
    with open_container(path) as container:
        if not container.streams.video:
            raise NoVideoStreamError(path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from timed_frames(container.decode(stream), stream)


def timed_frames(
    frames: Iterable[av.VideoFrame], stream: av.video.stream.VideoStream
) -> Iterator[tuple[float, float, np.ndarray]]:
    """(timestamp, nominal frame duration, rgb) of `stream`'s decoded `frames`, for `resample`."""
    rate = stream.average_rate or stream.guessed_rate or VIDEO_FPS
    nominal = 1.0 / float(rate)
    for index, frame in enumerate(frames):
        time = float(frame.time) if frame.time is not None else index * nominal
        yield time, nominal, frame.to_ndarray(format="rgb24")


def iter_frames(path: str | Path) -> Iterator[VideoFrame]:
    """Frames of `path` resampled to VIDEO_FPS on their timestamps (see module docstring)."""
    return resample(_source_frames(path))


def resample(source: Iterable[tuple[float, float, np.ndarray]]) -> Iterator[VideoFrame]:
    """Frames given as (timestamp, nominal duration, rgb), from a file or a camera, on the
    VIDEO_FPS grid (see module docstring); each is yielded as soon as a later one has arrived.

    The stream's duration runs from its first timestamp to the last frame's timestamp
    plus one source frame interval; it yields round(duration * VIDEO_FPS) frames (at least 1).
    """
    start: float | None = None
    previous: tuple[float, np.ndarray] | None = None
    interval = 0.0
    emitted = 0
    for time, nominal, rgb in source:
        if start is None:
            start, interval = time, nominal  # a single frame lasts one nominal interval
        if previous is not None:
            if time <= previous[0]:  # out-of-order or duplicate timestamp: keep the newer picture
                previous = (previous[0], rgb)
                continue
            interval = time - previous[0]
            while start + (emitted + 0.5) * FRAME_SECONDS < time:
                yield VideoFrame(emitted, emitted * FRAME_SECONDS, previous[1])
                emitted += 1
        previous = (time, rgb)
    if previous is None or start is None:
        return
    end = previous[0] + interval
    total = max(1, round((end - start) * VIDEO_FPS))
    while emitted < total:
        yield VideoFrame(emitted, emitted * FRAME_SECONDS, previous[1])
        emitted += 1


def decode_video(path: str | Path) -> np.ndarray:
    """All frames of `path` at VIDEO_FPS as a (frames, height, width, 3) uint8 array."""
    frames = [frame.rgb for frame in iter_frames(path)]
    if not frames:
        raise NoVideoStreamError(path, "the video stream holds no frames")
    return np.stack(frames)

