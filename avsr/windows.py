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

A window's side that reads nothing beyond it (the recording's start or end, or a pause's cut)
is padded with still lips and quiet sound (`edge_padding`, `pad_streams`): the models learnt
from GRID clips with their sentence in the middle, and place its first and last letters by
the silence around it. The outputs the padding gives are kept, since letters come out there.
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
# Quiet frames (before, after) a window's edge is padded up to: GRID's s1 clips' median silence
# before the first word (0.56 s) and after the last (0.96 s), from their word alignments. Cut to
# their words, s1 dev clips read at 49 % WER (bundled DMF, greedy) against 3.5 % whole.
EDGE_QUIET_FRAMES = (14, 24)
EDGE_PAD_DB = 30.0  # the padding's sound: the recording's quiet frames' median level, at most this
# far under its loud level (a clip cut on its words has no real silence to copy)
PAD_SEED = 0  # the padding's white noise is drawn from this, so a recording always reads the same


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


def frame_levels(waveform: np.ndarray) -> np.ndarray:
    """Each whole video frame's power in dB (of full scale) in a 16 kHz waveform."""
    frames = len(waveform) // SAMPLES_PER_VIDEO_FRAME
    power = np.square(waveform[: frames * SAMPLES_PER_VIDEO_FRAME].reshape(frames, SAMPLES_PER_VIDEO_FRAME))
    return 10 * np.log10(power.mean(axis=1) + POWER_FLOOR)


def quiet_frames(levels: np.ndarray) -> np.ndarray:
    """Which frames (of `frame_levels`) are PAUSE_DB or more below the recording's loud level."""
    if len(levels) == 0:
        return np.zeros(0, bool)
    return levels < np.percentile(levels, LOUD_PERCENTILE) - PAUSE_DB


def pause_cuts(waveform: np.ndarray) -> list[int]:
    """Video frames in the middle of the pauses of a 16 kHz waveform, where a recording is cut.

    A pause is MIN_PAUSE_FRAMES or more frames PAUSE_DB below the recording's loud level; a
    cut less than MIN_SEGMENT_FRAMES after the previous one (or the start) or before the end,
    or in a pause that lasts to the end, is left out. Under noise that fills the pauses there
    are none, and the fixed windows apply.
    """
    quiet = quiet_frames(frame_levels(waveform))
    frames = len(quiet)
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


@dataclass(frozen=True)
class EdgePadding:
    """How a recording's windows are padded: from its audio's quiet frames, or (no audio) in full."""

    quiet: np.ndarray | None  # (frames,) bool, `quiet_frames`; None: none known, pad in full
    rms: float  # the padding sound's root mean square


def edge_padding(waveform: np.ndarray | None) -> EdgePadding:
    """The padding of a recording whose 16 kHz audio is `waveform` (None: not heard)."""
    if waveform is None or len(waveform) < SAMPLES_PER_VIDEO_FRAME:
        return EdgePadding(None, 0.0)
    levels = frame_levels(waveform)
    quiet = quiet_frames(levels)
    ceiling = np.percentile(levels, LOUD_PERCENTILE) - EDGE_PAD_DB
    level = min(float(np.median(levels[quiet])), ceiling) if quiet.any() else ceiling
    return EdgePadding(quiet, 10 ** (level / 20))


def edge_pads(window: Window, padding: EdgePadding) -> tuple[int, int]:
    """Frames of padding (before, after) `window`: on a side where it reads nothing beyond its
    kept part, up to EDGE_QUIET_FRAMES with the quiet frames it has there."""
    before, after = EDGE_QUIET_FRAMES
    if padding.quiet is not None:
        inside = padding.quiet[window.start : window.end]
        before -= _leading(inside)
        after -= _leading(inside[::-1])
    return (0 if window.start < window.keep_start else max(0, before),
            0 if window.end > window.keep_end else max(0, after))


def _leading(flags: np.ndarray) -> int:
    """How many of `flags` are true before the first false one."""
    return int(np.argmin(flags)) if not flags.all() else len(flags)


def pad_streams(
    mouths: np.ndarray | None, waveform: np.ndarray | None, before: int, after: int, rms: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The streams with `before` and `after` frames added: the first and last mouth crop held,
    white noise of `rms`."""
    if mouths is not None:
        mouths = np.concatenate([np.repeat(mouths[:1], before, 0), mouths, np.repeat(mouths[-1:], after, 0)])
    if waveform is not None:
        waveform = np.concatenate([_noise(before, rms), waveform, _noise(after, rms)]).astype(np.float32)
    return mouths, waveform


def _noise(frames: int, rms: float) -> np.ndarray:
    """`frames` video frames of white noise of `rms`, the same for every side a window is padded on."""
    return np.random.default_rng(PAD_SEED).normal(0.0, rms, frames * SAMPLES_PER_VIDEO_FRAME)
