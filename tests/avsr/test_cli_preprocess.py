import re

import cv2
import pytest

from avsr.cli import main
from data.manifest import Utterance, write_manifest
from preprocessing.mouth import MOUTH_SIZE
from tests.conftest import SHORT_CLIP_FRAMES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSR_CACHE", str(tmp_path / "default-cache"))


def test_preprocess_builds_then_skips(talking_videos, tmp_path, capsys):
    manifest = tmp_path / "good.tsv"
    write_manifest(manifest, [Utterance(video, "bin blue at f two now") for video in talking_videos[:2]])
    assert main(["preprocess", str(manifest), "--workers", "1"]) == 0
    first = capsys.readouterr().out
    assert re.search(r"built +2 clips", first) and re.search(r"failed +0 clips", first)
    assert len(list((tmp_path / "default-cache").rglob("*.npz"))) == 2

    cache = tmp_path / "elsewhere"
    assert main(["preprocess", str(manifest), "--cache", str(cache), "--shard", "2/2"]) == 0
    assert len(list(cache.rglob("*.npz"))) == 1
    assert main(["preprocess", str(manifest), "--cache", str(cache)]) == 0
    assert re.search(r"skipped +1 clips", capsys.readouterr().out)


def test_preprocess_fails_when_a_clip_fails(talking_videos, tmp_path, capsys):
    manifest = tmp_path / "m.tsv"
    missing = tmp_path / "gone.mp4"
    write_manifest(manifest, [Utterance(talking_videos[0], "a"), Utterance(missing, "b")])
    assert main(["preprocess", str(manifest), "--cache", str(tmp_path / "c"), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"failed +1 clips", out) and f"MissingFileError: {missing}: no such file" in out


def test_preview_writes_a_png(talking_videos, tmp_path, capsys):
    out = tmp_path / "preview.png"
    assert main(["preprocess", "--preview", str(talking_videos[0]), str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE and out.stat().st_size > 20_000
    height, width = cv2.imread(str(out)).shape[:2]
    assert (height, width) == (288, 360 + SHORT_CLIP_FRAMES * MOUTH_SIZE)  # frame | crop strip
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["preview", "manifest"])
def test_a_missing_file_is_one_line_on_stderr(tmp_path, capsys, mode):
    missing = tmp_path / ("absent.mp4" if mode == "preview" else "absent.tsv")
    args = ["--preview", str(missing), str(tmp_path / "o.png")] if mode == "preview" else [str(missing)]
    assert main(["preprocess", *args]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and str(missing) in captured.err
    assert "Traceback" not in captured.err and not (tmp_path / "o.png").exists()


def test_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as neither:
        main(["preprocess"])
    with pytest.raises(SystemExit) as bad_shard:
        main(["preprocess", "m.tsv", "--shard", "3/2"])
    assert neither.value.code == bad_shard.value.code == 2
    assert "1 <= K <= N" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"avsr \d+\.\d+\S*\n", capsys.readouterr().out)
