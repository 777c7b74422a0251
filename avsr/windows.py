"""Long recordings in windows, whose outputs are stitched into one sequence.

Where the sound pauses (`pause_cuts`), a window ends at the pause and the next starts there,
neither reading across it: the models were trained on single sentences, each with a little
silence around it, and recognise two sentences heard together far worse than each alone.
Elsewhere a recording is read in windows that keep the outputs of WINDOW_SECONDS each and
read OVERLAP_SECONDS more on either side, dropping the outputs there: where two windows
overlap, each keeps its half, so the kept parts tile the recording, cut at the overlaps'
midpoints, and every kept output saw at least OVERLAP_SECONDS of the recording on both sides
(or its end). A model whose outputs depend on no input further away than that gives the same
outputs as in one pass; the conv models see about 0.5 s. A recording up to WINDOW_SECONDS +
OVERLAP_SECONDS long without a pause is one window: one pass, as in training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from preprocessing.audio import SAMPLES_PER_VIDEO_FRAME
from preprocessing.video import VIDEO_FPS

WINDOW_SECONDS = 20  # s of outputs kept per window
OVERLAP_SECONDS = 2  # s read on each side of a window's kept part, whose outputs are dropped
WINDOW_FRAMES = WINDOW_SECONDS * VIDEO_FPS  # 500 video frames
CONTEXT_FRAMES = OVERLAP_SECONDS * VIDEO_FPS  # 50 video frames
PAUSE_DB = 15.0  # dB: a frame this far below the recording's loud frames is quiet
LOUD_PERCENTILE = 95  # the recording's loud level: this percentile of its frames' power (dB)
MIN_PAUSE_FRAMES = 15  # quiet frames in a row that make a pause (600 ms): shorter stops do not
MIN_SEGMENT_FRAMES = VIDEO_FPS  # a pause closer than 1 s to the last cut is not cut at
POWER_FLOOR = 1e-10  # added to a frame's mean square before the log, so digital silence is finite


@dataclass(frozen=True)
class Window:
    """Frames [start, end) of a recording go in; the outputs of [keep_start, keep_end) are kept."""

    start: int
    end: int
    keep_start: int
    keep_end: int
    after_pause: bool = False  # keep_start is a pause's cut: a word begins after it

    @property
    def kept(self) -> slice:
        """The kept outputs, as a slice of the window's own outputs."""
        return slice(self.keep_start - self.start, self.keep_end - self.start)


def pause_cuts(waveform: np.ndarray) -> list[int]:
    """Video frames in the middle of the pauses of a 16 kHz waveform, where a recording is cut.

    A pause is MIN_PAUSE_FRAMES or more frames PAUSE_DB below the recording's loud level; a
    cut less than MIN_SEGMENT_FRAMES after the previous one (or the start) or before the end,
    or in a pause that lasts to the end, is left out. Under noise that fills the pauses there
    are none, and the fixed windows apply.
    """
    frames = len(waveform) // SAMPLES_PER_VIDEO_FRAME
    if frames == 0:
        return []
    power = np.square(waveform[: frames * SAMPLES_PER_VIDEO_FRAME].reshape(frames, -1)).mean(axis=1)
    level = 10 * np.log10(power + POWER_FLOOR)
    quiet = level < np.percentile(level, LOUD_PERCENTILE) - PAUSE_DB
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    cuts, last = [], 0
    for start, end in zip(edges[::2], edges[1::2], strict=True):  # runs of quiet frames [start, end)
        middle = (start + end) // 2
        if (end - start >= MIN_PAUSE_FRAMES and middle - last >= MIN_SEGMENT_FRAMES
                and frames - middle >= MIN_SEGMENT_FRAMES and end < frames):
            cuts.append(int(middle))
            last = middle
    return cuts


def iter_windows(
    chunks: Iterable[np.ndarray],
    size: int = WINDOW_FRAMES,
    context: int = CONTEXT_FRAMES,
    cuts: Iterable[int] = (),
) -> Iterator[tuple[Window, np.ndarray]]:
    """Cut a stream of frame-aligned arrays (frames, ...) into windows, with their frames.

    A window ends at the next of `cuts` (increasing frame indices) within `size` frames, or
    else keeps `size` frames (the last one up to `size + context`); it reads `context` more
    on each side except across a cut. A window is yielded as soon as the frames it reads have
    arrived, and about `size + 2 * context` frames are held (plus a chunk), so a recording of
    any length streams through.
    """
    if size < 1 or context < 0:
        raise ValueError(f"need size >= 1 and context >= 0, got {size}, {context}")
    pending = iter(sorted(cuts))
    cut = next(pending, None)  # the next cut after `kept`
    held: np.ndarray | None = None  # frames first .. total - 1
    first = kept = total = 0  # kept: the first frame no window has kept yet
    after_cut = False  # whether `kept` is a cut: then no window reads before it

    def window(keep_end: int) -> tuple[Window, np.ndarray]:
        nonlocal held, first, kept, cut, after_cut
        at_cut = keep_end == cut
        start = kept if after_cut else max(0, kept - context)
        end = keep_end if at_cut else min(total, keep_end + context)
        result = Window(start, end, kept, keep_end, after_cut), held[start - first : end - first]
        kept, after_cut = keep_end, at_cut
        while cut is not None and cut <= kept:
            cut = next(pending, None)
        drop = max(0, (kept if after_cut else kept - context) - first)
        held, first = held[drop:], first + drop
        return result

    def ready() -> int | None:
        """The end of the next window if its frames have all arrived and it is not the last."""
        if cut is not None and cut - kept <= size:
            return cut if total >= cut else None
        return kept + size if total - kept > size + context else None

    for chunk in chunks:
        held = chunk if held is None else np.concatenate([held, chunk])
        total += len(chunk)
        while (keep_end := ready()) is not None:
            yield window(keep_end)
    if total > kept:
        yield window(total)
