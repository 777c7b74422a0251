"""Mouth crops of long videos a chunk at a time: `track_mouth`'s crops, in bounded memory."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from preprocessing import mouth
from preprocessing.errors import NoFaceError
from preprocessing.mouth import iter_mouth_chunks, track_mouth
from tests.media import astronaut_frames

N_FRAMES = 30  # frames of the moving face
CHUNK, CONTEXT = 4, 5  # small, so that 30 frames make many chunks; runs of 3 faceless frames are exact


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """The moving astronaut, with faceless runs of 3 frames (CONTEXT - 2, smoothing's reach) and
    of 2 at the start."""
    clip = astronaut_frames(N_FRAMES)
    clip[:2] = clip[9:12] = clip[21:23] = 0
    return clip


def chunks(frames: np.ndarray, **kwargs) -> list[mouth.MouthChunk]:
    return list(iter_mouth_chunks(iter(frames), "clip.mp4", **kwargs))


@pytest.mark.parametrize(("chunk", "context"), [(CHUNK, CONTEXT), (7, 6), (50, 25)])
def test_chunks_are_track_mouths_crops(frames, chunk: int, context: int) -> None:
    track = track_mouth(iter(frames), "clip.mp4")
    pieces = chunks(frames, chunk=chunk, context=context)
    assert [piece.start for piece in pieces] == list(range(0, N_FRAMES, chunk))
    assert all(len(piece.crops) == chunk for piece in pieces[:-1])
    crops = np.concatenate([piece.crops for piece in pieces])
    np.testing.assert_array_equal(np.concatenate([piece.detected for piece in pieces]), track.detected)
    assert np.abs(crops.astype(int) - track.crops).max() <= 1  # float rounding of the interpolation


def test_memory_holds_a_chunk_and_its_context(frames, monkeypatch) -> None:
    """At most CHUNK + 2 * CONTEXT grayscale frames are alive, and frames are read only as needed."""
    grays: list[weakref.ref] = []
    convert = mouth.cv2.cvtColor

    def tracked_convert(*args):
        gray = convert(*args)
        grays.append(weakref.ref(gray))
        return gray

    monkeypatch.setattr(mouth.cv2, "cvtColor", tracked_convert)
    alive = [sum(ref() is not None for ref in grays)
             for _ in iter_mouth_chunks(iter(frames), "clip.mp4", chunk=CHUNK, context=CONTEXT)]
    assert len(alive) == -(-N_FRAMES // CHUNK) and max(alive) <= CHUNK + 2 * CONTEXT
    source = iter(frames)
    next(iter_mouth_chunks(source, "clip.mp4", chunk=CHUNK, context=CONTEXT))
    assert N_FRAMES - len(list(source)) == CHUNK + CONTEXT  # the first chunk, as soon as it can be cut


def test_long_faceless_runs_hold_the_last_face_and_blank_the_start() -> None:
    """Faceless (noise) frames: 8 at the start, 14 in the middle, both longer than the context."""
    clip = astronaut_frames(44)
    noise = np.random.default_rng(0).integers(0, 256, clip.shape, dtype=np.uint8)
    clip[:8], clip[18:32] = noise[:8], noise[18:32]
    crops = np.concatenate([piece.crops for piece in chunks(clip, chunk=4, context=3)])
    assert not crops[:4].any()  # no face in the first chunk or its context: blank
    assert crops[4:8].any()  # the first face, 1 to 4 frames ahead, is held back over these
    # chunk [24, 28) and its context [21, 31) show no face: the crop stays where frame 17's face was
    last_face = track_mouth(iter(clip[8:18]), "face.mp4").landmarks[-1]
    transform = mouth._crop_transforms(last_face[None])[0]
    for index in range(24, 28):
        expected = mouth._warp(mouth.cv2.cvtColor(clip[index], mouth.cv2.COLOR_RGB2GRAY), transform)
        np.testing.assert_array_equal(crops[index], expected)


def test_too_few_faces_fail_after_the_last_chunk() -> None:
    clip = astronaut_frames(10)
    clip[4:] = 0
    generator = iter_mouth_chunks(iter(clip), "few.mp4", chunk=CHUNK, context=CONTEXT)
    assert len([next(generator) for _ in range(3)]) == 3
    with pytest.raises(NoFaceError, match=r"few\.mp4.*face found in 4 of 10 frames"):
        next(generator)
