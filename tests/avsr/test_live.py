"""`avsr live`: utterances from sound and lips, the sound buffer, and whole runs on GRID clips."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from avsr import live
from avsr.cli import main
from avsr.live import HANGOVER_FRAMES, PRE_ROLL_FRAMES, AudioBuffer, Segmenter
from data.grid import sentence_from_clip_name
from models.checkpoint import WEIGHTS_DIR
from preprocessing.audio import SAMPLE_RATE, decode_audio
from preprocessing.video import iter_frames
from tests.media import write_video

QUIET, LOUD = -50.0, -15.0  # dBFS of a frame of room noise and of speech
CLIP = "s1/video/bbaf3s.mp4"  # "bin blue at f three soon"
HELD_OUT_CLIP = "s1/video/bbas2p.mp4"  # "bin blue at s two please": the first dev clip, never trained on


def _segment(levels: list[float], lips: list[bool | None]) -> list[tuple[int, int, int]]:
    segmenter = Segmenter()
    spans = [segmenter.push(index, level, moving)
             for index, (level, moving) in enumerate(zip(levels, lips, strict=True))]
    return [span for span in [*spans, segmenter.flush(len(levels))] if span is not None]


def test_speech_with_short_pauses_is_one_utterance() -> None:
    levels = [QUIET] * 20 + [LOUD] * 15 + [QUIET] * (HANGOVER_FRAMES - 2) + [LOUD] * 15 + [QUIET] * 30
    last = 20 + 15 + HANGOVER_FRAMES - 2 + 15  # one past the last loud frame
    assert _segment(levels, [True] * len(levels)) == [(20 - PRE_ROLL_FRAMES, last + HANGOVER_FRAMES, last)]
    assert _segment(levels, [None] * len(levels)) == _segment(levels, [True] * len(levels))  # no face
    assert _segment(levels, [False] * len(levels)) == []  # a face in view keeps its lips still


def test_digital_silence_does_not_make_hiss_speech() -> None:
    levels = [-100.0] * 20 + [-60.0] * 40 + [LOUD] * 10 + [-60.0] * 20  # silence, hiss, speech, hiss
    assert _segment(levels, [None] * len(levels)) == [(60 - PRE_ROLL_FRAMES, 70 + HANGOVER_FRAMES, 70)]


def test_sound_that_ends_with_the_source_is_flushed() -> None:
    levels = [QUIET] * 10 + [LOUD] * 10
    assert _segment(levels, [None] * len(levels)) == [(10 - PRE_ROLL_FRAMES, 20, 20)]
    assert _segment([QUIET] * 10 + [LOUD], [None] * 11) == []  # one loud frame is a click


def test_the_audio_buffer_reads_by_time_across_its_ring(monkeypatch) -> None:
    monkeypatch.setattr(live, "AUDIO_HISTORY_SECONDS", 1)
    buffer = AudioBuffer()
    assert not buffer.ready(0.0) and not buffer.read(0.0, 4).any()
    ramp = np.arange(1.5 * SAMPLE_RATE, dtype=np.float32)
    buffer.write(ramp[:SAMPLE_RATE], start=10.0)
    buffer.write(ramp[SAMPLE_RATE:], start=99.0)  # later writes follow on, whatever their time
    assert buffer.ready(11.5) and not buffer.ready(11.6)
    np.testing.assert_array_equal(buffer.read(11.0, 100), ramp[SAMPLE_RATE : SAMPLE_RATE + 100])
    np.testing.assert_array_equal(buffer.read(10.0, 4), np.zeros(4))  # more than a second ago: gone
    np.testing.assert_array_equal(buffer.read(11.5 - 2 / SAMPLE_RATE, 4), [*ramp[-2:], 0, 0])
    buffer.close()
    assert buffer.ready(20.0)


@pytest.fixture(scope="module")
def clip(grid_dir: Path) -> Path:
    return grid_dir / CLIP


def _run(clip: Path, model: Path | str, tmp_path: Path, capsys) -> tuple[int, Path, Path, str, str]:
    """`avsr live --source clip --headless`: its status, annotated video, SRT, stdout and stderr."""
    out, captions = tmp_path / "annotated.mp4", tmp_path / "captions.srt"
    status = main(["live", "--source", str(clip), "--headless", "--model", str(model), "--device", "cpu",
                   "--out", str(out), "--captions", str(captions), "--stats"])
    printed = capsys.readouterr()
    return status, out, captions, printed.out, printed.err


SRT_CUE = re.compile(r"\d+\n\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d\n.+\n")


def test_a_clip_is_captioned_in_real_time_every_frame_annotated(clip, tiny_dmf, tmp_path, capsys) -> None:
    status, out, captions, printed, err = _run(clip, tiny_dmf, tmp_path, capsys)
    assert status == 0, err
    assert len(list(iter_frames(out))) == len(list(iter_frames(clip))) == 75
    assert abs(len(decode_audio(out)) - len(decode_audio(clip))) < 0.1 * SAMPLE_RATE  # its sound too
    assert re.search(r"75 frames in 3\.\d s \(2\d\.\d fps\), \d+ dropped", err), err
    assert "1 captions" in err and "latency" in printed  # GRID's sentence is one utterance
    subtitles = captions.read_text()
    assert all(SRT_CUE.fullmatch(block + "\n" * (not block.endswith("\n")))
               for block in subtitles.split("\n\n") if block)


def test_the_bundled_model_captions_a_sentence_it_never_trained_on(grid_dir, tmp_path, capsys) -> None:
    if not (WEIGHTS_DIR / "dmf.pt").is_file():
        pytest.skip(f"the bundled model {WEIGHTS_DIR / 'dmf.pt'} is not installed yet")
    clip = grid_dir / HELD_OUT_CLIP
    status, _, captions, printed, err = _run(clip, "dmf", tmp_path, capsys)
    assert status == 0, err
    sentence = sentence_from_clip_name(clip.stem)
    assert printed.split("] ", 1)[1].split("  [latency")[0] == sentence
    assert " ".join(line for line in captions.read_text().splitlines()[2::4]) == sentence


def test_the_loop_goes_on_when_the_face_leaves(clip, tiny_dmf, tmp_path, capsys) -> None:
    frames = np.stack([frame.rgb for frame in iter_frames(clip)])
    frames[25:60] = 128  # the face leaves during the sentence, and comes back
    faceless = write_video(tmp_path / "faceless.mp4", frames, audio=decode_audio(clip))
    status, out, _, printed, err = _run(faceless, tiny_dmf, tmp_path, capsys)
    assert status == 0, err
    assert "no face in view" in err and "1 captions" in err
    assert len(list(iter_frames(out))) == 75


def test_no_camera_says_so(tiny_dmf, monkeypatch, capsys) -> None:
    class Unplugged:
        def __init__(self, index: int) -> None: ...
        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return False

    monkeypatch.setattr(live.cv2, "VideoCapture", Unplugged)
    assert main(["live", "--headless", "--model", str(tiny_dmf)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("avsr live: error: no camera: camera 0 cannot be opened") and "Traceback" not in err


def test_no_microphone_says_so(tiny_dmf, monkeypatch, capsys) -> None:
    sounddevice = pytest.importorskip("sounddevice", exc_type=OSError)  # without PortAudio: no microphone
    try:
        sounddevice.query_devices(kind="input")
        pytest.skip("this machine has a microphone")
    except (sounddevice.PortAudioError, ValueError):
        pass

    class Camera:
        def __init__(self, index: int) -> None: ...
        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return True
        def release(self) -> None: ...

    monkeypatch.setattr(live.cv2, "VideoCapture", Camera)
    assert main(["live", "--source", "1", "--headless", "--model", str(tiny_dmf)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("avsr live: error: no microphone: ") and "Traceback" not in err


def test_no_screen_says_so(clip, tiny_dmf, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["live", "--source", str(clip), "--model", str(tiny_dmf)]) == 1
    assert "no screen to show the window on: add --headless" in capsys.readouterr().err
