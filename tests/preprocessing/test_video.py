"""Decoding video of many containers and frame rates onto the 25 fps grid."""

from fractions import Fraction

import numpy as np
import pytest

from preprocessing.errors import MissingFileError, NoVideoStreamError, UnreadableFileError
from preprocessing.video import VIDEO_FPS, decode_video, iter_frames
from tests.media import tone, write_video

SIZE = (48, 64)  # (height, width) of the synthetic test videos


def numbered_frames(n: int) -> np.ndarray:
    """Frames that show their index: the left half's brightness is (index % 32) * 8, the
    right half's (index // 32) * 8, so resampling can be checked through a lossy codec."""
    frames = np.empty((n, *SIZE, 3), np.uint8)
    half = SIZE[1] // 2
    for index in range(n):
        frames[index, :, :half] = index % 32 * 8
        frames[index, :, half:] = index // 32 * 8
    return frames


def frame_indices(frames: np.ndarray) -> np.ndarray:
    """Recover the source index of each decoded frame from its two halves."""
    half = SIZE[1] // 2
    inner = frames[:, 8:-8]  # away from block edges, where codecs blur the two halves
    low = np.rint(inner[:, :, 4 : half - 4].reshape(len(frames), -1).mean(axis=1) / 8)
    high = np.rint(inner[:, :, half + 4 : -4].reshape(len(frames), -1).mean(axis=1) / 8)
    return (high * 32 + low).astype(int)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".mov", ".webm", ".mpg"])
def test_containers_decode_to_rgb_frames(tmp_path, suffix):
    path = write_video(tmp_path / f"clip{suffix}", numbered_frames(25), fps=25, audio=tone(1.0, 0.2, 0.2))
    frames = decode_video(path)
    assert frames.shape == (25, *SIZE, 3)
    assert frames.dtype == np.uint8
    # every frame is the source frame at the same index (within codec error)
    np.testing.assert_array_equal(frame_indices(frames), np.arange(25))


@pytest.mark.parametrize(
    ("fps", "n_source"),
    [(30, 60), (Fraction(30000, 1001), 60), (50, 100), (15, 30), (12.5, 25)],
)
def test_other_frame_rates_resample_on_timestamps(tmp_path, fps, n_source):
    path = write_video(tmp_path / "clip.mp4", numbered_frames(n_source), fps=fps)
    frames = list(iter_frames(path))
    duration = n_source / float(fps)
    assert len(frames) == round(duration * VIDEO_FPS)
    # output frame k shows the source frame on screen at the middle of its 40 ms slot
    expected = np.floor((np.arange(len(frames)) + 0.5) / VIDEO_FPS * float(fps) + 1e-9).astype(int)
    got = frame_indices(np.stack([frame.rgb for frame in frames]))
    np.testing.assert_array_equal(got, expected)
    assert [frame.index for frame in frames] == list(range(len(frames)))
    assert frames[1].time == pytest.approx(1 / VIDEO_FPS)


def test_variable_frame_rate_follows_timestamps(tmp_path):
    # 10 frames shown for uneven times: 0.0-0.1 s, 0.1-0.12 s, then 0.12-0.4 s, ...
    timestamps = [0.0, 0.1, 0.12, 0.4, 0.44, 0.48, 0.6, 0.8, 0.84, 0.96]
    path = write_video(tmp_path / "vfr.mkv", numbered_frames(10), timestamps=timestamps)
    frames = decode_video(path)
    end = timestamps[-1] + (timestamps[-1] - timestamps[-2])  # last frame lasts one interval
    assert len(frames) == round(end * VIDEO_FPS)
    midpoints = (np.arange(len(frames)) + 0.5) / VIDEO_FPS
    expected = np.searchsorted(timestamps, midpoints, side="right") - 1
    np.testing.assert_array_equal(frame_indices(frames), expected)


def test_missing_path_names_the_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(MissingFileError, match="nope.mp4"):
        decode_video(path)


def test_garbage_file_is_unreadable(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableFileError, match="garbage.mp4"):
        decode_video(path)


def test_truncated_file_is_unreadable(tmp_path):
    path = write_video(tmp_path / "cut.mp4", numbered_frames(25), audio=tone(1.0, 0.0, 0.5))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError, match="cut.mp4"):
        decode_video(path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = write_video(tmp_path / "voice.mkv", None, audio=tone(1.0, 0.2, 0.2))
    with pytest.raises(NoVideoStreamError, match="voice.mkv"):
        decode_video(path)
