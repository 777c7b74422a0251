"""Mouth regions: face landmarks per frame -> aligned, smoothed grayscale mouth crops.

MediaPipe's face mesh finds 468 landmarks per frame. Each frame gets a similarity transform
(rotation, uniform scale, translation) that levels the outer eye corners, scales the
inter-ocular distance to a fixed fraction of the crop and puts the centre of the outer lips
at the crop centre. The transform's parameters are smoothed over a few frames so the crop
does not jitter, then `cv2.warpAffine` cuts a MOUTH_SIZE x MOUTH_SIZE grayscale crop.

Landmarks are in pixels with (0, 0) at the centre of the top-left pixel, as in OpenCV.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocessing.errors import NoFaceError
from preprocessing.native import native_stderr_silenced

# protobuf warns on every frame MediaPipe 0.10.14 decodes, about an API its own code uses
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)

# Side in pixels of the stored grayscale crop. The model random-crops 56 px for training
# and centre-crops 56 px at test. The literature uses 88x88 crops, but a model trained on
# CPUs trains ~2x faster on 56x56 inputs, and GRID (360x288) shows a mouth only ~39 px (s1)
# or ~36 px (s4) wide corner to corner (medians over 1875 frames of 25 clips; 5-95 %:
# 32-44 px), so upsampling to 88 would add no information.
MOUTH_SIZE = 64
# Crop side in inter-ocular distances (outer eye corners, ~67 px on GRID): scale comes from
# the eyes, which keep their distance while one speaks, unlike the mouth's width. Seen
# from the lip centre, GRID mouths reach at most 0.35 of that distance sideways and 0.22 up
# or down; the 56 px centre crop spans +-0.48, +-0.41 after the +-4 px training jitter, so
# the whole mouth stays in with a margin; the chin tip (~0.49 below) is at the edge. On
# GRID the crop is a mild 0.87x downscale.
CROP_IOD = 1.1
SMOOTH_FRAMES = 5  # frames (200 ms at 25 fps) of the centred moving average over the transforms
CHUNK_FRAMES = 50  # frames (2 s) `iter_mouth_chunks` crops at a time
# Frames (1 s) on each side of a chunk that its interpolation and smoothing see: faceless runs
# up to CONTEXT - SMOOTH_FRAMES // 2 frames (0.9 s) are interpolated as in `track_mouth`. Memory
# holds CHUNK + 2 * CONTEXT grayscale frames, 200 MB for 1080p video.
CONTEXT_FRAMES = 25
MIN_FACE_FRACTION = 0.5  # share of a clip's frames that must show a face, the rest are interpolated
# Faces the mesh looks for. 1, because with 2 tracking mode reruns the face detector on
# every frame that shows fewer than 2 faces: 4.8 instead of 2.8 ms/frame on GRID here.
MAX_FACES = 1
DETECTION_CONFIDENCE = 0.5  # face detector score needed to start tracking a face
TRACKING_CONFIDENCE = 0.5  # mesh score needed to keep tracking; below it the detector runs again

RIGHT_EYE_OUTER = 33  # the subject's right eye, outer corner (left in an unmirrored image)
LEFT_EYE_OUTER = 263  # the subject's left eye, outer corner
OUTER_LIPS = (  # outer lip contour of the mesh: subject's right corner, lower lip, upper lip
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375,
    291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)
UPPER_LIP_INNER = 13  # middle of the upper lip's inner edge
LOWER_LIP_INNER = 14  # middle of the lower lip's inner edge

PREVIEW_COLUMNS = 15  # crops per row of the preview grid: 0.6 s at 25 fps
PREVIEW_MAX_CROPS = 150  # crops shown at most (6 s), evenly spaced over longer clips
LIP_COLOR = (0, 255, 0)  # RGB of the lip landmarks drawn on the preview frame
EYE_COLOR = (0, 128, 255)  # RGB of the eye corners that set rotation and scale
BOX_COLOR = (255, 255, 0)  # RGB of the crop's outline on the preview frame
MISSING_COLOR = (255, 0, 0)  # RGB border of crops whose frame showed no face

# corners of the crop (pixel edges), as cv2.transform wants points: (4, 1, 2)
_CROP_CORNERS = np.array(
    [[[-0.5, -0.5]], [[MOUTH_SIZE - 0.5, -0.5]],
     [[MOUTH_SIZE - 0.5, MOUTH_SIZE - 0.5]], [[-0.5, MOUTH_SIZE - 0.5]]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class MouthTrack:
    """The mouth crops of one clip, with the landmarks and transforms that made them."""

    crops: np.ndarray  # (T, MOUTH_SIZE, MOUTH_SIZE) uint8 grayscale, eyes level, lips centred
    landmarks: np.ndarray  # (T, 468, 2) float32 pixels (x, y); interpolated where not detected
    detected: np.ndarray  # (T,) bool: the face mesh found a face in the frame
    transforms: np.ndarray  # (T, 2, 3) float32 affine maps, frame pixels -> crop pixels


class MouthTracker:
    """MediaPipe's face mesh in tracking mode: feed one video's frames in order, get landmarks.

    Tracking mode runs the face detector only until it finds a face (and again once the face
    is lost) and follows it from the previous frame's landmarks, which is what makes it fast;
    so use one tracker per video or camera. Works frame by frame, e.g. on a live camera.
    """

    def __init__(self, max_faces: int = MAX_FACES) -> None:
        with native_stderr_silenced():
            from mediapipe.python.solutions.face_mesh import FaceMesh  # slow: 1 s, pulls pyplot

            self._mesh = FaceMesh(
                static_image_mode=False,
                max_num_faces=max_faces,
                refine_landmarks=False,  # iris landmarks cost time and say nothing of lips
                min_detection_confidence=DETECTION_CONFIDENCE,
                min_tracking_confidence=TRACKING_CONFIDENCE,
            )
            # The graph starts its models on the first frame, on threads that log as update()
            # returns, when the next frame's decoding has given the terminal back: start them here.
            # A faceless frame leaves nothing to track, so the landmarks stay the same.
            self._mesh.process(np.zeros((MOUTH_SIZE, MOUTH_SIZE, 3), np.uint8))

    def update(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks (468, 2) float32 in pixels of the next frame's face, or None if none found.

        With several faces (max_faces > 1) it returns the largest, by the area of its
        landmarks' bounding box: the speaker is usually the face nearest the camera.
        """
        with native_stderr_silenced():  # the graph logs as it starts its models, lazily
            faces = self._mesh.process(np.ascontiguousarray(rgb)).multi_face_landmarks
        if not faces:
            return None
        points = [np.array([(p.x, p.y) for p in face.landmark], np.float32) for face in faces]
        largest = max(points, key=lambda xy: np.prod(xy.max(axis=0) - xy.min(axis=0)))
        height, width = rgb.shape[:2]
        # mediapipe's unit square spans the image's pixel edges; shift to pixel centres
        return largest * np.array([width, height], np.float32) - 0.5

    def close(self) -> None:
        """Free the mesh's graph."""
        with native_stderr_silenced():
            self._mesh.close()

    def __enter__(self) -> MouthTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def track_mouth(frames: Iterable[np.ndarray], path: str | Path) -> MouthTrack:
    """Aligned mouth crops of a clip's RGB frames, in one pass over `frames`.

    Keeps each frame in grayscale (~100 KB per 360x288 frame) until the end, because the
    crops can be cut only once the whole clip's landmarks are interpolated and smoothed;
    split long recordings into utterances first. See `crop_mouths` for frames without a face.
    """
    grays, landmarks = [], []
    with MouthTracker() as tracker:
        for rgb in frames:
            grays.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
            landmarks.append(tracker.update(rgb))
    return crop_mouths(grays, landmarks, path)


def crop_mouths(
    grays: Sequence[np.ndarray], landmarks: Sequence[np.ndarray | None], path: str | Path
) -> MouthTrack:
    """`track_mouth`'s crops of a clip's grayscale frames, from each frame's landmarks (None: no face).

    Frames without a face get landmarks interpolated from their neighbours (held at the clip's
    ends). `path` names the clip in errors. Raises NoFaceError when fewer than
    MIN_FACE_FRACTION of the frames show a face.
    """
    found = [(index, points) for index, points in enumerate(landmarks) if points is not None]
    if not found or len(found) < MIN_FACE_FRACTION * len(grays):
        raise NoFaceError(path, f"face found in {len(found)} of {len(grays)} frames")
    detected = np.zeros(len(grays), bool)
    detected[[index for index, _ in found]] = True
    filled = _interpolate(np.stack([points for _, points in found]), detected)
    transforms = _crop_transforms(filled)
    crops = np.stack([_warp(gray, matrix) for gray, matrix in zip(grays, transforms, strict=True)])
    return MouthTrack(crops, filled, detected, transforms.astype(np.float32))


def mouth_opening(landmarks: np.ndarray) -> float:
    """The gap between the inner lips in inter-ocular distances: ~0.01 closed, 0.05-0.15 speaking."""
    gap = np.linalg.norm(landmarks[UPPER_LIP_INNER] - landmarks[LOWER_LIP_INNER])
    return float(gap / np.linalg.norm(landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]))


@dataclass(frozen=True)
class MouthChunk:
    """Consecutive mouth crops of a long video, as `iter_mouth_chunks` cuts them."""

    start: int  # index of the first frame in the video
    crops: np.ndarray  # (n, MOUTH_SIZE, MOUTH_SIZE) uint8; zeros before the first face is seen
    detected: np.ndarray  # (n,) bool: the face mesh found a face in the frame


def iter_mouth_chunks(
    frames: Iterable[np.ndarray],
    path: str | Path,
    chunk: int = CHUNK_FRAMES,
    context: int = CONTEXT_FRAMES,
) -> Iterator[MouthChunk]:
    """`track_mouth`'s crops of a video of any length, `chunk` frames at a time, in bounded memory.

    Holds at most `chunk + 2 * context` grayscale frames: each chunk is cut as soon as
    `context` frames after it are tracked, with landmarks interpolated and transforms smoothed
    over the chunk and `context` frames on each side. The crops are `track_mouth`'s (up to float
    rounding) where no run of faceless frames is longer than `context - SMOOTH_FRAMES // 2`;
    longer runs are filled from the faces within `context` frames, or held from the last frame
    cut when there are none, and before the first face is ever seen the crops are blank (zeros,
    which a model reads as no video). Raises NoFaceError, after the last chunk, when fewer than
    MIN_FACE_FRACTION of all frames show a face.
    """
    if chunk < 1 or context < SMOOTH_FRAMES // 2:
        raise ValueError(f"need chunk >= 1 and context >= {SMOOTH_FRAMES // 2}, got {chunk}, {context}")
    grays: list[np.ndarray] = []  # frames first, first + 1, ... in grayscale
    found: dict[int, np.ndarray] = {}  # landmarks of those frames that show a face, by frame index
    first = start = seen = faces = 0  # start: first frame not yet cut into a chunk
    held: np.ndarray | None = None  # landmarks of the last frame cut, for long faceless runs

    def cut(end: int) -> MouthChunk:
        """Chunk [start, end), from the frames [start - context, end + context) in memory."""
        nonlocal held, first
        low, high = max(first, start - context), min(seen, end + context)
        detected = np.array([index in found for index in range(low, high)])
        if detected.any():
            indices = np.flatnonzero(detected) + low
            window = _interpolate(np.stack([found[index] for index in indices]), detected)
        elif held is not None:
            window = np.broadcast_to(held, (high - low, *held.shape))
        else:
            window = None
        if window is None:
            crops = np.zeros((end - start, MOUTH_SIZE, MOUTH_SIZE), np.uint8)
        else:
            transforms = _crop_transforms(window)[start - low : end - low]
            crops = np.stack([_warp(grays[index - first], matrix)
                              for index, matrix in zip(range(start, end), transforms, strict=True)])
            held = window[end - 1 - low]
        drop = max(0, end - context - first)  # frames no later chunk reads
        del grays[:drop]
        for index in range(first, first + drop):
            found.pop(index, None)
        first += drop
        return MouthChunk(start, crops, detected[start - low : end - low])

    with MouthTracker() as tracker:
        for rgb in frames:
            grays.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
            landmarks = tracker.update(rgb)
            if landmarks is not None:
                found[seen] = landmarks
                faces += 1
            seen += 1
            if seen >= start + chunk + context:
                yield cut(start + chunk)
                start += chunk
    while start < seen:
        end = min(seen, start + chunk)
        yield cut(end)
        start = end
    if faces == 0 or faces < MIN_FACE_FRACTION * seen:
        raise NoFaceError(path, f"face found in {faces} of {seen} frames")


def _interpolate(found: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Landmarks for every frame from those of the `detected` frames, linear in between."""
    indices = np.flatnonzero(detected)
    # each frame's fractional position among the detected frames; np.interp holds the ends
    position = np.interp(np.arange(len(detected)), indices, np.arange(len(indices)))
    before = np.floor(position).astype(int)
    after = np.minimum(before + 1, len(indices) - 1)
    weight = (position - before).astype(np.float32)[:, None, None]
    return (1 - weight) * found[before] + weight * found[after]


def _smooth(values: np.ndarray) -> np.ndarray:
    """Centred moving average of SMOOTH_FRAMES along axis 0.

    The ends are extended by point reflection (2 * end - mirrored values), so motion at
    constant speed passes unchanged, to the clip's first and last frames.
    """
    half = SMOOTH_FRAMES // 2
    last = len(values) - 1
    before = 2 * values[0] - values[np.minimum(np.arange(half, 0, -1), last)]
    after = 2 * values[-1] - values[np.maximum(last - np.arange(1, half + 1), 0)]
    padded = np.concatenate([before, values, after])
    return np.lib.stride_tricks.sliding_window_view(padded, SMOOTH_FRAMES, axis=0).mean(axis=-1)


def _crop_transforms(landmarks: np.ndarray) -> np.ndarray:
    """(T, 2, 3) float64 similarity transforms from frame to crop pixels, smoothed over time.

    The eye-corner vector sets rotation and scale, the outer lips' centre the translation;
    averaging the vector rather than its angle has no wrap-around at +-180 degrees.
    """
    eyes = _smooth(landmarks[:, LEFT_EYE_OUTER] - landmarks[:, RIGHT_EYE_OUTER].astype(np.float64))
    centres = _smooth(landmarks[:, OUTER_LIPS].mean(axis=1, dtype=np.float64))
    # rotation by minus the eyes' angle times scale MOUTH_SIZE / (CROP_IOD * |eyes|)
    gain = MOUTH_SIZE / (CROP_IOD * np.sum(eyes**2, axis=1))
    scaled_cos, scaled_sin = gain * eyes[:, 0], gain * eyes[:, 1]
    linear = np.stack([np.stack([scaled_cos, scaled_sin], axis=1),
                       np.stack([-scaled_sin, scaled_cos], axis=1)], axis=1)
    middle = (MOUTH_SIZE - 1) / 2  # crop centre in pixel coordinates
    shift = middle - np.einsum("tij,tj->ti", linear, centres)
    return np.concatenate([linear, shift[:, :, None]], axis=2)


def _warp(gray: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Cut the crop `matrix` maps to from a grayscale frame.

    Bilinear sampling skips pixels when it shrinks by 2x or more (HD video), which aliases;
    then the crop's surroundings are first averaged over n x n blocks, n = floor(1 / scale).
    """
    factor = int(1 / np.hypot(matrix[0, 0], matrix[0, 1]))
    if factor >= 2:
        corners = cv2.transform(_CROP_CORNERS, cv2.invertAffineTransform(matrix))[:, 0]
        left, top = np.maximum(np.floor(corners.min(axis=0)).astype(int) - factor, 0)
        right, bottom = np.ceil(corners.max(axis=0)).astype(int) + factor
        width = (min(right, gray.shape[1]) - left) // factor
        height = (min(bottom, gray.shape[0]) - top) // factor
        if width > 0 and height > 0:
            region = gray[top:top + height * factor, left:left + width * factor]
            gray = cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA)
            # block pixel (j, i) has its centre at frame pixel (left, top) + factor * (j, i)
            # + (factor - 1) / 2
            origin = np.array([left, top]) + (factor - 1) / 2
            matrix = np.hstack([matrix[:, :2] * factor, (matrix @ [*origin, 1])[:, None]])
    return cv2.warpAffine(
        gray, matrix, (MOUTH_SIZE, MOUTH_SIZE),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )


def preview(track: MouthTrack, frame_rgb: np.ndarray, index: int) -> np.ndarray:
    """An RGB picture to check a clip's crops by eye.

    Left: frame `index` of the clip (`frame_rgb`) with its outer lip landmarks, the eye
    corners and the crop's outline. Right: a grid of the crops in time order, rows of
    PREVIEW_COLUMNS (`crop_grid`).
    """
    frame = np.ascontiguousarray(frame_rgb).copy()
    box = cv2.transform(_CROP_CORNERS, cv2.invertAffineTransform(track.transforms[index]))
    cv2.polylines(frame, [np.round(box).astype(np.int32)], True, BOX_COLOR, 1, cv2.LINE_AA)
    points = np.round(track.landmarks[index]).astype(int)
    for landmark in OUTER_LIPS:
        cv2.circle(frame, tuple(points[landmark]), 1, LIP_COLOR, -1)
    for landmark in (RIGHT_EYE_OUTER, LEFT_EYE_OUTER):
        cv2.circle(frame, tuple(points[landmark]), 2, EYE_COLOR, -1)
    grid = crop_grid(track.crops, track.detected)
    canvas = np.zeros((max(len(frame), len(grid)), frame.shape[1] + grid.shape[1], 3), np.uint8)
    canvas[:len(frame), :frame.shape[1]] = frame
    canvas[:len(grid), frame.shape[1]:] = grid
    return canvas


def crop_grid(crops: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """An RGB grid of a clip's crops in time order, rows of PREVIEW_COLUMNS, at most PREVIEW_MAX_CROPS
    evenly spaced; those of frames without a face outlined in red."""
    count = len(crops)
    shown = np.linspace(0, count - 1, min(count, PREVIEW_MAX_CROPS)).round().astype(int)
    columns = min(len(shown), PREVIEW_COLUMNS)
    rows = -(-len(shown) // columns)
    grid = np.zeros((rows * MOUTH_SIZE, columns * MOUTH_SIZE, 3), np.uint8)
    for slot, crop_index in enumerate(shown):
        tile = cv2.cvtColor(crops[crop_index], cv2.COLOR_GRAY2RGB)
        if not detected[crop_index]:
            cv2.rectangle(tile, (0, 0), (MOUTH_SIZE - 1, MOUTH_SIZE - 1), MISSING_COLOR, 1)
        row, column = divmod(slot, columns)
        grid[row * MOUTH_SIZE:(row + 1) * MOUTH_SIZE,
             column * MOUTH_SIZE:(column + 1) * MOUTH_SIZE] = tile
    return grid


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image as PNG; through a temporary name, so `path` is never half-written."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        if not cv2.imwrite(str(temporary), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the PNG")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
