"""Long recordings in overlapping windows, whose outputs are stitched into one sequence.

A recording is read in windows that keep the outputs of WINDOW_SECONDS each and read
OVERLAP_SECONDS more on either side, dropping the outputs there: where two windows overlap,
each keeps its half, so the kept parts tile the recording, cut at the overlaps' midpoints,
and every kept output saw at least OVERLAP_SECONDS of the recording on both sides (or its
end). A model whose outputs depend on no input further away than that gives the same outputs
as in one pass; the conv models see about 0.5 s. A recording up to WINDOW_SECONDS +
OVERLAP_SECONDS long is one window: one pass, as in training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from preprocessing.video import VIDEO_FPS

WINDOW_SECONDS = 20  # s of outputs kept per window
OVERLAP_SECONDS = 2  # s read on each side of a window's kept part, whose outputs are dropped
WINDOW_FRAMES = WINDOW_SECONDS * VIDEO_FPS  # 500 video frames
CONTEXT_FRAMES = OVERLAP_SECONDS * VIDEO_FPS  # 50 video frames


@dataclass(frozen=True)
class Window:
    """Frames [start, end) of a recording go in; the outputs of [keep_start, keep_end) are kept."""

    start: int
    end: int
    keep_start: int
    keep_end: int

    @property
    def kept(self) -> slice:
        """The kept outputs, as a slice of the window's own outputs."""
        return slice(self.keep_start - self.start, self.keep_end - self.start)


def iter_windows(
    chunks: Iterable[np.ndarray], size: int = WINDOW_FRAMES, context: int = CONTEXT_FRAMES
) -> Iterator[tuple[Window, np.ndarray]]:
    """Cut a stream of frame-aligned arrays (frames, ...) into windows, with their frames.

    Each window keeps `size` frames (the last one up to `size + context`) and reads `context`
    more on each side. A window is yielded as soon as the frames it reads have arrived, and
    about `size + 2 * context` frames are held (plus a chunk), so a recording of any length
    streams through.
    """
    if size < 1 or context < 0:
        raise ValueError(f"need size >= 1 and context >= 0, got {size}, {context}")
    held: np.ndarray | None = None  # frames first .. total - 1
    first = kept = total = 0  # kept: the first frame no window has kept yet

    def window(keep_end: int) -> tuple[Window, np.ndarray]:
        nonlocal held, first, kept
        start, end = max(0, kept - context), min(total, keep_end + context)
        result = Window(start, end, kept, keep_end), held[start - first : end - first]
        kept = keep_end
        drop = max(0, kept - context - first)
        held, first = held[drop:], first + drop
        return result

    for chunk in chunks:
        held = chunk if held is None else np.concatenate([held, chunk])
        total += len(chunk)
        while total - kept > size + context:  # more than a last window takes: this one is not
            yield window(kept + size)
    if total > kept:
        yield window(total)
