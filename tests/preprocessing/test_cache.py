import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.grid import MANIFEST_NAME
from data.manifest import read_manifest
from preprocessing import cache
from preprocessing.clip import preprocess_clip
from tests.conftest import SHORT_CLIP_FRAMES
from tests.media import astronaut_frames, write_video


@pytest.fixture(scope="module")
def videos(talking_videos, tmp_path_factory) -> list[Path]:
    """The three good clips, then a missing file, a corrupt file and a video without audio."""
    folder = tmp_path_factory.mktemp("bad")
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    silent = write_video(folder / "silent.mp4", astronaut_frames(SHORT_CLIP_FRAMES))
    return [*talking_videos, folder / "missing.mp4", corrupt, silent]


@pytest.fixture(scope="module")
def first_build(videos, tmp_path_factory) -> tuple[Path, cache.BuildReport]:
    """A cache built from `videos` by a pool of two workers, and its report."""
    cache_dir = tmp_path_factory.mktemp("cache")
    return cache_dir, cache.build_cache(videos, cache_dir, workers=2, progress=False)


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.npz"))


def test_failures_are_reported_and_the_build_goes_on(videos, first_build):
    cache_dir, report = first_build
    assert (report.built, report.skipped, report.failed) == (3, 0, 3)
    assert [(failure.video, failure.error) for failure in report.failures] == [
        (videos[3], "MissingFileError"),
        (videos[4], "UnreadableFileError"),
        (videos[5], "NoAudioStreamError"),
    ]
    assert all(str(failure.video) in failure.message for failure in report.failures)
    assert report.frames == 3 * SHORT_CLIP_FRAMES and report.frames_per_second > 0
    entries = _entries(cache_dir)
    assert len(entries) == 3 and report.bytes_on_disk == sum(p.stat().st_size for p in entries)
    assert all(entry.parent.name == entry.name[:2] for entry in entries)
    summary = report.summary()
    assert "NoAudioStreamError" in summary and str(videos[3]) in summary


def test_a_rerun_skips_what_is_cached(videos, first_build):
    cache_dir, _ = first_build
    report = cache.build_cache(videos, cache_dir, workers=1, progress=False)
    assert (report.built, report.skipped, report.failed) == (0, 3, 3)
    assert report.frames == 0 and len(_entries(cache_dir)) == 3


def test_load_clip_returns_what_preprocess_clip_makes(videos, first_build):
    cache_dir, _ = first_build
    loaded, fresh = cache.load_clip(cache_dir, videos[1]), preprocess_clip(videos[1])
    assert loaded.mouths.dtype == np.uint8 and loaded.detected.dtype == bool
    np.testing.assert_array_equal(loaded.mouths, fresh.mouths)
    np.testing.assert_array_equal(loaded.detected, fresh.detected)
    assert loaded.audio.dtype == np.float32 and loaded.audio.shape == fresh.audio.shape
    np.testing.assert_allclose(loaded.audio, fresh.audio, rtol=2**-11, atol=2**-24)  # float16 step
    assert np.abs(fresh.audio).max() > 0.1  # the tone is there, not just silence


def test_load_clip_of_an_unbuilt_video_says_so(videos, tmp_path):
    with pytest.raises(cache.NotCachedError, match="talk0.mp4"):
        cache.load_clip(tmp_path, videos[0])


def _savez_half_then_crash(handle, **arrays):
    handle.write(b"PK\x03\x04 half an entry")
    raise RuntimeError("killed mid-write")


def _replace_crash(source, target):
    raise OSError("disk vanished")


@pytest.mark.parametrize(
    ("target", "crash", "error"),
    [
        ("numpy.savez_compressed", _savez_half_then_crash, "RuntimeError"),
        ("os.replace", _replace_crash, "OSError"),
    ],
)
def test_a_crash_mid_write_leaves_nothing_to_trust(
    videos, tmp_path, monkeypatch, target, crash, error
):
    with monkeypatch.context() as patch:
        patch.setattr(target, crash)
        report = cache.build_cache(videos[:1], tmp_path, workers=1, progress=False)
    assert [failure.error for failure in report.failures] == [error]
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]  # no entry, no temp file
    with pytest.raises(cache.NotCachedError):
        cache.load_clip(tmp_path, videos[0])

    again = cache.build_cache(videos[:1], tmp_path, workers=1, progress=False)
    assert (again.built, again.failed) == (1, 0)
    assert cache.load_clip(tmp_path, videos[0]).n_frames == SHORT_CLIP_FRAMES


def test_shards_are_disjoint_and_cover_the_list(talking_videos, tmp_path):
    items = [Path(f"{index}.mp4") for index in range(7)]
    shards = [cache.select_shard(items, (k, 3)) for k in (1, 2, 3)]
    assert shards[0] == [items[0], items[3], items[6]]
    assert sorted(sum(shards, []), key=items.index) == items
    with pytest.raises(ValueError, match="0/3"):
        cache.select_shard(items, (0, 3))

    first = cache.build_cache(talking_videos, tmp_path, workers=1, shard=(1, 2), progress=False)
    after_first = set(_entries(tmp_path))
    second = cache.build_cache(talking_videos, tmp_path, workers=1, shard=(2, 2), progress=False)
    assert (first.built, second.built, second.skipped) == (2, 1, 0)
    assert len(after_first) == 2 and len(_entries(tmp_path)) == 3
    whole = cache.build_cache(talking_videos, tmp_path, workers=1, progress=False)
    assert (whole.built, whole.skipped) == (0, 3)


def test_the_key_follows_content_and_preprocessing(talking_videos, tmp_path, monkeypatch):
    key = cache.clip_key(talking_videos[0])
    copy = shutil.copy(talking_videos[0], tmp_path / "renamed.mp4")
    assert cache.clip_key(copy) == key  # content-addressed: the name does not matter
    with open(copy, "r+b") as handle:
        handle.seek(os.path.getsize(copy) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 1]))
    assert cache.clip_key(copy) != key
    assert cache.clip_key(talking_videos[1]) != key
    monkeypatch.setattr(cache, "PREPROCESS_VERSION", cache.PREPROCESS_VERSION + 1)
    bumped = cache.clip_key(talking_videos[0])
    monkeypatch.setattr(cache, "MOUTH_SIZE", 88)
    assert len({key, bumped, cache.clip_key(talking_videos[0])}) == 3


def test_profile_times_every_stage_of_cached_clips_too(videos, first_build):
    cache_dir, _ = first_build
    report = cache.build_cache(videos[:1], cache_dir, workers=1, profile=True, progress=False)
    assert (report.built, report.skipped, report.profiled_frames) == (0, 1, SHORT_CLIP_FRAMES)
    assert set(report.stage_seconds) == set(cache.STAGES)
    assert report.stage_seconds["face mesh"] > 0 and report.stage_seconds["decode"] > 0
    assert "ms/frame" in report.summary()


def test_grid_clips_of_both_speakers(grid_dir, tmp_path):
    utterances = read_manifest(grid_dir / MANIFEST_NAME)
    chosen = [u for u in utterances if u.fields["speaker"] == "s1"][:3]
    chosen += [u for u in utterances if u.fields["speaker"] == "s4"][:2]
    videos = [utterance.video for utterance in chosen]
    report = cache.build_cache(videos, tmp_path, workers=2, progress=False)
    assert (report.built, report.failed) == (5, 0), report.summary()
    for video in videos:
        clip = cache.load_clip(tmp_path, video)
        assert clip.mouths.shape == (75, 64, 64) and clip.audio.shape == (48_000,)
        assert clip.detected.mean() > 0.9
