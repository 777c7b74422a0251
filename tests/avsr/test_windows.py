"""Overlapping windows over a stream: they tile it, hold little, and stitch to a single pass."""

from __future__ import annotations

import numpy as np
import pytest

from avsr.windows import (
    EDGE_PAD_DB,
    EDGE_QUIET_FRAMES,
    LOUD_PERCENTILE,
    EdgePadding,
    Window,
    edge_padding,
    edge_pads,
    frame_levels,
    iter_windows,
    pad_streams,
    pause_cuts,
)
from preprocessing.audio import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME

SIZE, CONTEXT = 10, 4  # frames kept per window, and read on each side


def stream(n_frames: int, chunk: int = 3) -> list[np.ndarray]:
    """Frames 0 .. n_frames - 1, each a (2,) feature vector, in chunks as a video decoder yields them."""
    frames = np.stack([np.arange(n_frames), np.sin(np.arange(n_frames))], axis=1).astype(np.float64)
    return [frames[start : start + chunk] for start in range(0, n_frames, chunk)]


def local_model(frames: np.ndarray, reach: int = CONTEXT) -> np.ndarray:
    """Outputs that depend on the inputs up to `reach` frames away: a 1-D convolution over time."""
    weights = np.linspace(1, 2, 2 * reach + 1)
    return np.stack([np.convolve(column, weights, mode="same") for column in frames.T], axis=1)


@pytest.mark.parametrize("n_frames", [1, 13, 14, 15, 40, 41, 97])
def test_kept_parts_tile_the_stream(n_frames: int) -> None:
    windows = [window for window, _ in iter_windows(stream(n_frames), SIZE, CONTEXT)]
    kept = np.concatenate([np.arange(w.keep_start, w.keep_end) for w in windows])
    np.testing.assert_array_equal(kept, np.arange(n_frames))
    for window in windows:
        assert window.start == max(0, window.keep_start - CONTEXT)
        assert window.end == min(n_frames, window.keep_end + CONTEXT)
    assert all(w.keep_end - w.keep_start == SIZE for w in windows[:-1])
    assert windows[-1].keep_end - windows[-1].keep_start <= SIZE + CONTEXT  # the tail joins the last
    if n_frames <= SIZE + CONTEXT:
        assert len(windows) == 1  # a short recording is one pass


@pytest.mark.parametrize("n_frames", [15, 40, 97])  # two windows or more
def test_stitched_outputs_equal_a_single_pass_when_the_context_covers_the_reach(n_frames: int) -> None:
    whole = np.concatenate(stream(n_frames))
    stitched = np.concatenate([local_model(frames)[window.kept]
                               for window, frames in iter_windows(stream(n_frames), SIZE, CONTEXT)])
    np.testing.assert_array_equal(stitched, local_model(whole))
    beyond = np.concatenate([local_model(frames, CONTEXT + 1)[window.kept]
                             for window, frames in iter_windows(stream(n_frames), SIZE, CONTEXT)])
    assert not np.array_equal(beyond, local_model(whole, CONTEXT + 1))  # a longer reach is cut


def test_windows_come_as_soon_as_their_frames_have_arrived_and_hold_little() -> None:
    read = 0

    def counted():
        nonlocal read
        for chunk in stream(200, chunk=1):
            read += 1
            yield chunk

    for window, frames in iter_windows(counted(), SIZE, CONTEXT):
        assert len(frames) == window.end - window.start <= SIZE + 2 * CONTEXT
        assert read <= window.end + CONTEXT + 1  # one frame past what a last window could take


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="size >= 1"):
        next(iter_windows(stream(5), 0, 1))


def speech_with_gaps(gaps: list[float], speech_s: float = 2.0) -> np.ndarray:
    """A 16 kHz waveform: bursts of a voiced-like tone with the given silent gaps (s) between them,
    over a faint noise floor."""
    rng = np.random.default_rng(0)
    parts = []
    for gap in [*gaps, None]:
        t = np.arange(int(speech_s * SAMPLE_RATE)) / SAMPLE_RATE
        parts.append(0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))
        if gap is not None:
            parts.append(np.zeros(int(gap * SAMPLE_RATE)))
    waveform = np.concatenate(parts)
    return (waveform + 1e-3 * rng.standard_normal(len(waveform))).astype(np.float32)


def test_pauses_are_cut_in_their_middle_and_short_stops_are_not() -> None:
    waveform = speech_with_gaps([1.0, 0.2, 1.0])  # 2 s speech, 1 s pause, 2 s, 0.2 s stop, 2 s, 1 s, 2 s
    frames_per_s = SAMPLE_RATE // SAMPLES_PER_VIDEO_FRAME
    cuts = pause_cuts(waveform)
    expected = [2.5 * frames_per_s, 7.7 * frames_per_s]  # the middles of the two long pauses
    assert len(cuts) == 2 and all(abs(cut - mid) <= 1 for cut, mid in zip(cuts, expected, strict=True))
    assert pause_cuts(np.concatenate([waveform, np.zeros(SAMPLE_RATE, np.float32)])) == cuts  # trailing
    assert pause_cuts(speech_with_gaps([])) == [] and pause_cuts(np.zeros(0, np.float32)) == []
    noisy = waveform + 0.3 * np.random.default_rng(1).standard_normal(len(waveform)).astype(np.float32)
    assert pause_cuts(noisy) == []  # noise fills the pauses: no cuts, fixed windows


@pytest.mark.parametrize("chunk", [1, 3, 50])
def test_windows_end_at_cuts_and_never_read_across_them(chunk: int) -> None:
    cuts = [7, 12, 40]  # 12 - 7 < SIZE; 12 -> 40 is longer than a window: a fixed cut in between
    windows = [window for window, _ in iter_windows(stream(60, chunk), SIZE, CONTEXT, cuts)]
    kept = np.concatenate([np.arange(w.keep_start, w.keep_end) for w in windows])
    np.testing.assert_array_equal(kept, np.arange(60))
    ends = [w.keep_end for w in windows]
    assert {7, 12, 40} <= set(ends) and all(w.keep_end - w.keep_start <= SIZE + CONTEXT for w in windows)
    for window in windows:
        at_cut_start, at_cut_end = window.keep_start in cuts, window.keep_end in cuts
        assert window.after_pause == at_cut_start
        assert window.start == (window.keep_start if at_cut_start else max(0, window.keep_start - CONTEXT))
        assert window.end == (window.keep_end if at_cut_end else min(60, window.keep_end + CONTEXT))


def test_edges_without_context_are_padded_up_to_the_quiet_the_models_learnt() -> None:
    """0.2 s of quiet, 2 s of speech, 1 s of quiet: the start needs padding, the end does not."""
    speech = speech_with_gaps([1.0])[: 3 * SAMPLE_RATE]  # 2 s speech, then the 1 s pause
    waveform = np.concatenate([1e-3 * np.random.default_rng(2).standard_normal(SAMPLE_RATE // 5), speech])
    frames = len(waveform) // SAMPLES_PER_VIDEO_FRAME  # 5 quiet, 50 loud, 25 quiet
    padding = edge_padding(waveform)
    assert padding.quiet[:5].all() and not padding.quiet[5:55].any() and padding.quiet[55:].all()
    before, after = EDGE_QUIET_FRAMES
    assert edge_pads(Window(0, frames, 0, frames), padding) == (before - 5, max(0, after - 25))
    assert edge_pads(Window(0, 40, 0, 30), padding) == (before - 5, 0)  # reads beyond its end
    assert edge_pads(Window(20, frames, 30, frames), padding) == (0, max(0, after - 25))
    assert edge_pads(Window(10, 40, 10, 40), padding) == (before, after)  # a cut inside the speech
    assert edge_pads(Window(0, frames, 0, frames), EdgePadding(None, 0.0)) == (before, after)  # no sound
    assert edge_padding(None).quiet is None and edge_padding(np.zeros(10, np.float32)).quiet is None
    # The padding sounds as the quiet frames do, or quieter: never louder than EDGE_PAD_DB under the speech.
    levels = frame_levels(waveform)
    assert 20 * np.log10(padding.rms) == pytest.approx(np.median(levels[padding.quiet]), abs=0.5)
    loud = np.percentile(frame_levels(speech[: 2 * SAMPLE_RATE]), LOUD_PERCENTILE)
    assert 20 * np.log10(edge_padding(speech[: 2 * SAMPLE_RATE]).rms) <= loud - EDGE_PAD_DB + 1e-6


def test_padding_holds_the_edge_crops_and_adds_quiet_noise() -> None:
    mouths = np.arange(4, dtype=np.uint8)[:, None, None] * np.ones((1, 3, 3), np.uint8)
    waveform = np.ones(4 * SAMPLES_PER_VIDEO_FRAME, np.float32)
    padded_mouths, padded_audio = pad_streams(mouths, waveform, 2, 3, 0.01)
    assert padded_mouths[:, 0, 0].tolist() == [0, 0, 0, 1, 2, 3, 3, 3, 3]
    assert len(padded_audio) == 9 * SAMPLES_PER_VIDEO_FRAME and padded_audio.dtype == np.float32
    samples = 2 * SAMPLES_PER_VIDEO_FRAME
    np.testing.assert_array_equal(padded_audio[samples : samples + len(waveform)], waveform)
    assert np.std(padded_audio[:samples]) == pytest.approx(0.01, rel=0.1)
    assert pad_streams(None, waveform, 1, 1, 0.01)[0] is None
    assert pad_streams(mouths, None, 1, 1, 0.01)[1] is None
    np.testing.assert_array_equal(pad_streams(mouths, waveform, 0, 0, 0.01)[1], waveform)
