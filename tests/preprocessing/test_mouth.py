"""Mouth tracking on a real face photo moved about, on blank frames and on GRID clips."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from preprocessing.errors import NoFaceError
from preprocessing.mouth import (
    CROP_IOD,
    MOUTH_SIZE,
    OUTER_LIPS,
    MouthTracker,
    _warp,
    preview,
    save_png,
    track_mouth,
)
from preprocessing.video import iter_frames
from tests.media import astronaut_frames, astronaut_matrix

N_FRAMES = 20  # frames of the moving astronaut clip
BLANK = slice(8, 12)  # frames blanked in the middle of it
# Ground truth measured by eye on scikit-image's astronaut photo (512x512), in its pixels:
PHOTO_MOUTH = np.array([224.0, 146.0])  # centre of the lips, between the corners
PHOTO_EYES = np.array([[193.0, 101.0], [258.0, 103.0]])  # outer eye corners, image left first
CENTRE = (MOUTH_SIZE - 1) / 2  # crop centre in pixel coordinates
TRAIN_SIZE = 56  # the model's input side; it crops this from the middle of MOUTH_SIZE

REPO = Path(__file__).resolve().parents[2]
GRID = Path(os.environ.get("AVSR_GRID_DIR", REPO.parent / "shared" / "data" / "grid"))
GRID_CLIPS = ["s1/video/bbaf3s.mp4", "s1/video/lgbs7s.mp4", "s4/video/brwm8s.mp4"]


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (..., 2) mapped by a (2, 3) affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def _photo_to_crop(track, index: int, points: np.ndarray) -> np.ndarray:
    """Photo points in the crop of frame `index` of the moving astronaut clip."""
    return _apply(track.transforms[index], _apply(astronaut_matrix(index, N_FRAMES), points))


@pytest.fixture(scope="module")
def moving():
    return track_mouth(iter(astronaut_frames(N_FRAMES)), "astronaut.mp4")


@pytest.fixture(scope="module")
def still_crop():
    """The crop of the photo itself, unmoved."""
    return track_mouth(iter([data.astronaut()] * 3), "photo.png").crops[1].astype(int)


def test_astronaut_matrix_matches_frames():
    frames = astronaut_frames(N_FRAMES)
    for index in (0, 13):
        matrix = astronaut_matrix(index, N_FRAMES).astype(np.float32)
        expected = cv2.warpAffine(data.astronaut(), matrix, (360, 288), borderMode=cv2.BORDER_REFLECT)
        assert np.array_equal(frames[index], expected)


def test_crop_centred_level_and_scaled_on_moving_face(moving, still_crop):
    assert moving.crops.shape == (N_FRAMES, MOUTH_SIZE, MOUTH_SIZE)
    assert moving.crops.dtype == np.uint8
    assert moving.landmarks.shape == (N_FRAMES, 468, 2) and moving.landmarks.dtype == np.float32
    assert moving.detected.all()
    for index in range(N_FRAMES):
        mouth = _photo_to_crop(moving, index, PHOTO_MOUTH)
        assert np.abs(mouth - CENTRE).max() < 3, (index, mouth)
        eyes = _photo_to_crop(moving, index, PHOTO_EYES)
        dx, dy = eyes[1] - eyes[0]
        assert abs(np.degrees(np.arctan2(dy, dx))) < 3
        assert np.hypot(dx, dy) == pytest.approx(MOUTH_SIZE / CROP_IOD, rel=0.08)
        # and it shows what the still photo's crop shows (grey levels)
        assert np.abs(moving.crops[index].astype(int) - still_crop).mean() < 6


@pytest.mark.parametrize("noise", [0, 12])
def test_crop_steady_while_face_moves(moving, noise):
    """The crop follows the face, without the landmarks' jitter (sensor noise makes more)."""
    track = moving
    if noise:
        frames = astronaut_frames(N_FRAMES) + np.random.default_rng(0).normal(
            0, noise, (N_FRAMES, 288, 360, 3))
        track = track_mouth(iter(np.clip(frames, 0, 255).astype(np.uint8)), "noisy.mp4")
    frame_mouth = np.array([_apply(astronaut_matrix(i, N_FRAMES), PHOTO_MOUTH)
                            for i in range(N_FRAMES)])
    crop_mouth = np.array([_photo_to_crop(track, i, PHOTO_MOUTH) for i in range(N_FRAMES)])
    true_step = np.linalg.norm(np.diff(frame_mouth, axis=0), axis=1)
    crop_step = np.linalg.norm(np.diff(crop_mouth, axis=0), axis=1)
    assert true_step.min() > 2  # pixels per frame the mouth moves in the video
    assert np.sqrt(np.mean(crop_step**2)) < 0.25  # and in the crop (0.48 unsmoothed with noise)


def test_blank_frames_are_interpolated():
    frames = astronaut_frames(N_FRAMES)
    frames[BLANK] = 0
    frames[:2] = 0
    track = track_mouth(iter(frames), "astronaut.mp4")
    expected = np.ones(N_FRAMES, bool)
    expected[BLANK] = expected[:2] = False
    assert np.array_equal(track.detected, expected)
    before, after = BLANK.start - 1, BLANK.stop
    for index in range(BLANK.start, BLANK.stop):
        weight = (index - before) / (after - before)
        line = (1 - weight) * track.landmarks[before] + weight * track.landmarks[after]
        np.testing.assert_allclose(track.landmarks[index], line, atol=1e-3)
        assert np.abs(_photo_to_crop(track, index, PHOTO_MOUTH) - CENTRE).max() < 3
    np.testing.assert_array_equal(track.landmarks[0], track.landmarks[2])  # held at the start


@pytest.mark.parametrize("kind", ["black", "noise"])
def test_no_face_names_the_file(kind):
    rng = np.random.default_rng(0)
    frames = (np.zeros((5, 288, 360, 3), np.uint8) if kind == "black"
              else rng.integers(0, 256, (5, 288, 360, 3), dtype=np.uint8))
    with pytest.raises(NoFaceError, match=r"empty\.mp4.*face found in 0 of 5 frames"):
        track_mouth(iter(frames), "empty.mp4")


def test_too_few_faces():
    frames = astronaut_frames(10)
    frames[4:] = 0
    with pytest.raises(NoFaceError, match=r"few\.mp4.*face found in 4 of 10 frames"):
        track_mouth(iter(frames), Path("few.mp4"))


def _two_faces(left_scale: float, right_scale: float) -> np.ndarray:
    """The photo at two scales side by side in one 480x288 frame."""
    halves = []
    for scale in (left_scale, right_scale):
        matrix = np.float32([[scale, 0, 20 - 130 * scale], [0, scale, 40 - 60 * scale]])
        halves.append(cv2.warpAffine(data.astronaut(), matrix, (240, 288),
                                     borderMode=cv2.BORDER_REFLECT))
    return np.hstack(halves)


@pytest.mark.parametrize(("left_scale", "right_scale"), [(0.6, 0.9), (0.9, 0.6)])
def test_largest_face_wins(left_scale, right_scale):
    frame = _two_faces(left_scale, right_scale)
    with MouthTracker(max_faces=2) as tracker:
        landmarks = tracker.update(frame)
        smaller = frame.copy()  # the smaller face alone is found too: there was a choice
        smaller[:, :240 if left_scale > right_scale else 240:] = 0
        assert tracker.update(smaller) is not None
    assert (landmarks[:, 0].mean() < 240) == (left_scale > right_scale)
    # face width in frame pixels: ~ 94 photo pixels (bounding box of the mesh) at that scale
    assert np.ptp(landmarks[:, 0]) == pytest.approx(94 * max(left_scale, right_scale), rel=0.1)


def test_hd_frame_gives_the_same_crop(still_crop):
    """A 1080x864 video (mouth shrunk ~2.4x into the crop) gives the crop of the photo."""
    frames = [cv2.warpAffine(data.astronaut(), (3 * astronaut_matrix(0, 1)).astype(np.float32),
                             (1080, 864), borderMode=cv2.BORDER_REFLECT)] * 3
    track = track_mouth(iter(frames), "hd.mp4")
    assert np.abs(track.crops[1].astype(int) - still_crop).mean() < 4


def _shrinking_matrix(scale: float) -> np.ndarray:
    """Crop transform shrinking by `scale`, turned 10 degrees, centred on frame pixel (500, 400)."""
    angle = np.radians(10)
    linear = scale * np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    return np.hstack([linear, (CENTRE - linear @ [500, 400])[:, None]])


@pytest.mark.parametrize("scale", [0.45, 0.3, 0.2])
def test_shrinking_warp_keeps_geometry(scale):
    """On a linear ramp, block averaging then bilinear sampling is exact: no shift."""
    rows, columns = np.mgrid[:864, :1080].astype(np.float32)
    ramp = 0.5 * columns + 0.25 * rows
    matrix = _shrinking_matrix(scale)
    crop = _warp(ramp, matrix)
    v, u = np.mgrid[:MOUTH_SIZE, :MOUTH_SIZE]
    x, y = np.moveaxis(_apply(cv2.invertAffineTransform(matrix), np.stack([u, v], -1)), -1, 0)
    np.testing.assert_allclose(crop, 0.5 * x + 0.25 * y, atol=0.01)


def test_shrinking_warp_does_not_alias():
    """A one-pixel checkerboard averages out instead of folding into a coarse pattern."""
    rows, columns = np.mgrid[:864, :1080]
    checker = np.where((rows + columns) % 2 == 0, 100.0, -100.0).astype(np.float32)
    assert np.abs(_warp(checker, _shrinking_matrix(0.45))).max() < 1


def test_preview_and_save_png(moving, tmp_path):
    frame = astronaut_frames(N_FRAMES)[5]
    image = preview(moving, frame, 5)
    columns = min(N_FRAMES, 15)
    rows = -(-N_FRAMES // columns)
    assert image.shape == (max(288, rows * MOUTH_SIZE), 360 + columns * MOUTH_SIZE, 3)
    np.testing.assert_array_equal(image[:MOUTH_SIZE, 360:360 + MOUTH_SIZE, 0], moving.crops[0])
    assert not np.array_equal(image[:288, :360], frame)  # landmarks and box drawn
    path = tmp_path / "preview.png"
    save_png(path, image)
    np.testing.assert_array_equal(cv2.imread(str(path))[:, :, ::-1], image)
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]


@pytest.mark.skipif(not GRID.is_dir(), reason=f"GRID corpus not at {GRID} (set AVSR_GRID_DIR)")
@pytest.mark.parametrize("clip", GRID_CLIPS)
def test_grid_clip(clip):
    path = GRID / clip
    track = track_mouth((frame.rgb for frame in iter_frames(path)), path)
    assert len(track.crops) == 75 and track.detected.all()
    lips = np.einsum("tij,tkj->tki", track.transforms[:, :, :2], track.landmarks[:, OUTER_LIPS])
    lips += track.transforms[:, None, :, 2]
    assert np.abs(lips.mean(axis=1) - CENTRE).max() < 1.5  # off only by the smoothing
    margin = (MOUTH_SIZE - TRAIN_SIZE) / 2  # the whole mouth is in the model's centre crop
    assert lips.min() > margin and lips.max() < MOUTH_SIZE - 1 - margin
