"""A content-addressed cache of preprocessed clips, and its parallel, resumable build.

Preprocessing (decode, face mesh, mouth crops) costs far more than training reads, so each
clip is preprocessed once and stored as `<cache>/<key[:2]>/<key>.npz`. The key hashes the
video file's bytes together with PREPROCESS_VERSION and the constants that shape the output,
so an edited video, or a change to preprocessing, gets a new entry instead of a stale one.
Entries are written atomically: a file under its final name is always complete.

An entry is a compressed `.npz` (about 280 kB per 3-s GRID clip, against 404 kB stored
plainly; loading one takes ~3 ms) holding `mouths` (T, MOUTH_SIZE, MOUTH_SIZE) uint8,
`audio` (T * SAMPLES_PER_VIDEO_FRAME,) float16 and `detected` (T,) bool, with no pickles.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.manifest import atomic_write
from preprocessing.audio import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, decode_audio, fit_to_video
from preprocessing.clip import MIN_FRAMES, Clip, preprocess_clip
from preprocessing.errors import InputError, MissingFileError
from preprocessing.mouth import MOUTH_SIZE, MouthTracker, track_mouth
from preprocessing.video import VIDEO_FPS, iter_frames

PREPROCESS_VERSION = 1  # bump whenever preprocessing changes its output: every key changes
KEY_BYTES = 20  # blake2b digest size: 160 bits, collision-free for any corpus we will see
HASH_CHUNK = 1 << 20  # bytes read at a time while hashing a video
# Audio is stored as float16, half the size of float32. Its 11-bit mantissa keeps the
# rounding error ~66 dB below the signal at any level, and unlike int16 it does not clip
# the peaks above full scale that AAC decoders return (a third of GRID's clips have some).
AUDIO_DTYPE = np.float16
CACHE_ENV = "AVSR_CACHE"  # environment variable naming the default cache folder
STAGES = ("decode", "face mesh", "crop", "audio")  # what profile_clip times, in pipeline order


class NotCachedError(LookupError):
    """A clip asked of the cache that was never built (or was built by other preprocessing)."""

    def __init__(self, video: Path, cache_dir: Path) -> None:
        self.video = video
        super().__init__(f"{video}: not in the cache {cache_dir} (run `avsr preprocess`)")


def default_cache_dir() -> Path:
    """$AVSR_CACHE, else ~/.cache/avsr."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "avsr")


def clip_key(video: str | Path) -> str:
    """The cache key of `video`: a hash of its bytes and of everything that shapes the output."""
    video = Path(video)
    if not video.is_file():
        raise MissingFileError(video)
    digest = hashlib.blake2b(_key_material(), digest_size=KEY_BYTES)
    with open(video, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _key_material() -> bytes:
    """The preprocessing settings every key includes (read at call time, so tests can vary them)."""
    settings = (
        f"version={PREPROCESS_VERSION} mouth={MOUTH_SIZE} fps={VIDEO_FPS} rate={SAMPLE_RATE} "
        f"samples_per_frame={SAMPLES_PER_VIDEO_FRAME} min_frames={MIN_FRAMES} audio=float16;"
    )
    return settings.encode()


def clip_path(cache_dir: str | Path, key: str) -> Path:
    """Where the entry with `key` lives: sharded into 256 folders by its first two hex digits."""
    return Path(cache_dir) / key[:2] / f"{key}.npz"


def load_clip(cache_dir: str | Path, video: str | Path) -> Clip:
    """The cached `Clip` of `video`, as `preprocess_clip` made it (audio to float16 precision).

    Raises NotCachedError when no entry matches the file's current content and settings.
    """
    path = clip_path(cache_dir, clip_key(video))
    try:
        with np.load(path, allow_pickle=False) as entry:
            return Clip(
                mouths=entry["mouths"],
                audio=entry["audio"].astype(np.float32),
                detected=entry["detected"],
            )
    except FileNotFoundError as error:
        raise NotCachedError(Path(video), Path(cache_dir)) from error


def store_clip(cache_dir: str | Path, video: str | Path, clip: Clip) -> Path:
    """Put `clip` in the cache as the entry of `video` (e.g. a clip made without preprocessing)."""
    path = clip_path(cache_dir, clip_key(video))
    _store(path, clip)
    return path


def _store(path: Path, clip: Clip) -> None:
    """Write `clip` to `path` atomically (see `data.manifest.atomic_write`)."""
    audio = clip.audio.astype(AUDIO_DTYPE)
    with atomic_write(path) as handle:
        np.savez_compressed(handle, mouths=clip.mouths, audio=audio, detected=clip.detected)


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the block to `seconds[stage]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def profile_clip(video: str | Path) -> dict[str, float]:
    """Seconds spent on `video` in each of STAGES, plus its frame count under "frames".

    A diagnostic that runs the steps of `preprocess_clip` one after the other to time them;
    the cache is always built by `preprocess_clip` itself. `track_mouth` does the face mesh
    and the crops in one call, so the mesh is timed on its own first (a second tracker over
    the same frames) and "crop" is the rest of `track_mouth`'s time.
    """
    seconds = dict.fromkeys(STAGES, 0.0)
    with _timed(seconds, "decode"):
        frames = [frame.rgb for frame in iter_frames(video)]
    with _timed(seconds, "face mesh"), MouthTracker() as tracker:
        for rgb in frames:
            tracker.update(rgb)
    with _timed(seconds, "crop"):
        track_mouth(frames, video)
    seconds["crop"] = max(0.0, seconds["crop"] - seconds["face mesh"])
    with _timed(seconds, "audio"):
        fit_to_video(decode_audio(video), len(frames))
    seconds["frames"] = len(frames)
    return seconds


@dataclass(frozen=True)
class Failure:
    """A clip the build could not make, and why."""

    video: Path
    error: str  # the exception's type name, e.g. "NoAudioStreamError"
    message: str  # names the file

    @classmethod
    def of(cls, video: Path, error: BaseException) -> Failure:
        """The failure `error` made of `video`; plain data, so it crosses process boundaries."""
        message = str(error) if isinstance(error, InputError) else f"{video}: {error}"
        return cls(video, type(error).__name__, message)


@dataclass
class BuildReport:
    """What a `build_cache` run did, for the user and for scripts."""

    built: int = 0  # clips preprocessed and stored by this run
    skipped: int = 0  # clips already in the cache
    failures: list[Failure] = field(default_factory=list)
    frames: int = 0  # video frames of the clips built
    wall_seconds: float = 0.0
    bytes_on_disk: int = 0  # cache entries of this run's clips, built or skipped
    stage_seconds: dict[str, float] = field(default_factory=dict)  # --profile: summed STAGES
    profiled_frames: int = 0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        """A short human-readable table of the run."""
        cached = self.built + self.skipped
        per_clip = self.bytes_on_disk / cached if cached else 0.0
        lines = [
            f"built    {self.built:6d} clips  {self.frames} frames in {self.wall_seconds:.1f} s "
            f"({self.frames_per_second:.1f} frames/s)",
            f"skipped  {self.skipped:6d} clips  already cached",
            f"failed   {self.failed:6d} clips",
            f"on disk  {self.bytes_on_disk / 1e6:10.1f} MB  ({per_clip / 1e3:.0f} kB per clip)",
        ]
        lines += [f"  {failure.error}: {failure.message}" for failure in self.failures]
        if self.profiled_frames:
            total = sum(self.stage_seconds.values()) or 1.0
            lines.append(f"stage      ms/frame  share  ({self.profiled_frames} frames profiled)")
            for stage in STAGES:
                seconds = self.stage_seconds.get(stage, 0.0)
                lines.append(
                    f"{stage:<9} {1e3 * seconds / self.profiled_frames:9.2f}  {seconds / total:5.0%}"
                )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    """One clip for a worker: build it into `target` unless None; profile it if asked."""

    video: Path
    target: Path | None
    profile: bool


@dataclass(frozen=True)
class _Outcome:
    """What a worker did with one `_Task`."""

    video: Path
    frames: int = 0  # of the clip built; 0 when it was only profiled, or failed
    stages: dict[str, float] | None = None  # profile_clip's result, when asked
    failure: Failure | None = None


def _run_task(task: _Task) -> _Outcome:
    """Build and/or profile one clip; any exception becomes a reported failure."""
    try:
        frames = 0
        if task.target is not None:
            clip = preprocess_clip(task.video)
            _store(task.target, clip)
            frames = clip.n_frames
        stages = profile_clip(task.video) if task.profile else None
        return _Outcome(task.video, frames, stages)
    except Exception as error:  # a batch reports every kind of failure and goes on
        return _Outcome(task.video, failure=Failure.of(task.video, error))


def select_shard(videos: Sequence[Path], shard: tuple[int, int]) -> list[Path]:
    """Shard K of N (1-based): every video whose index in `videos` is K-1 modulo N.

    By position rather than by hash, so shards are equal in size to within one clip;
    deterministic for a given list, and the N shards are disjoint and cover it, so N machines
    can each build one shard of the same manifest into a shared cache.
    """
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: need 1 <= K <= N")
    return list(videos[k - 1 :: n])


def pool_context(*modules: str) -> multiprocessing.context.BaseContext:
    """Start workers from a fork server that has imported `modules`, else by spawning.

    Not by a plain fork: mediapipe and PyAV run threads, which a fork copies in a broken state.
    The fork server imports the heavy modules (torch, mediapipe) once, so each pool starts in
    a fraction of a second instead of re-importing them in every worker. The first call in a
    process decides what its fork server imports.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(modules))
    return context


def _outcomes(tasks: list[_Task], workers: int) -> Iterator[_Outcome]:
    """Run `tasks` in a process pool (in this process when one worker suffices), as they end.

    A worker process that dies (a crash in native code) fails the clips still queued instead
    of hanging the build, as a `multiprocessing.Pool` would; a re-run resumes where it stopped.
    """
    workers = min(workers, len(tasks))
    if workers <= 1:
        yield from map(_run_task, tasks)
        return
    pool = ProcessPoolExecutor(workers, mp_context=pool_context(__name__))
    try:
        futures = {pool.submit(_run_task, task): task.video for task in tasks}  # in order
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # BrokenProcessPool: the worker process itself died
                yield _Outcome(futures[future], failure=Failure.of(futures[future], error))
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, drop the queue rather than finish it


def build_cache(
    videos: Sequence[str | Path],
    cache_dir: str | Path,
    workers: int | None = None,
    shard: tuple[int, int] = (1, 1),
    profile: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Preprocess `videos` into `cache_dir` with `workers` processes (default: one per CPU).

    Clips already cached are skipped, so a re-run resumes an interrupted build. A clip that
    fails is reported with its reason and the build goes on. `shard=(k, n)` builds only
    `select_shard(videos, shard)`, counting each distinct video once, in order. With `profile`,
    every selected clip is also timed stage by stage with `profile_clip` (a second pass over
    each clip: slower, so profile a shard).
    """
    start = time.perf_counter()
    report = BuildReport(stage_seconds=dict.fromkeys(STAGES, 0.0) if profile else {})
    selected = select_shard(list(dict.fromkeys(Path(video) for video in videos)), shard)
    targets: list[Path] = []
    tasks: list[_Task] = []
    for video in selected:
        try:
            target = clip_path(cache_dir, clip_key(video))
        except Exception as error:  # unreadable input is reported like a failed build
            report.failures.append(Failure.of(video, error))
            continue
        targets.append(target)
        cached = target.is_file()
        report.skipped += int(cached)
        if profile or not cached:
            tasks.append(_Task(video, None if cached else target, profile))

    with tqdm(
        total=len(selected), initial=len(selected) - len(tasks), unit="clip", disable=not progress
    ) as bar:
        for outcome in _outcomes(tasks, workers or os.cpu_count() or 1):
            if outcome.failure is not None:
                report.failures.append(outcome.failure)
            if outcome.frames:
                report.built += 1
                report.frames += outcome.frames
            if outcome.stages is not None:
                report.profiled_frames += int(outcome.stages["frames"])
                for stage in STAGES:
                    report.stage_seconds[stage] += outcome.stages[stage]
            bar.update()
            bar.set_postfix(failed=report.failed, refresh=False)

    order = {video: index for index, video in enumerate(selected)}
    report.failures.sort(key=lambda failure: order[failure.video])  # manifest order, not finish
    report.bytes_on_disk = sum(target.stat().st_size for target in targets if target.is_file())
    report.wall_seconds = time.perf_counter() - start
    return report
