"""`avsr.compare` and `Recognizer.transcribe_clip`: every head from one pass, as `transcribe` gives each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsr.compare import compare
from avsr.transcribe import Recognizer, TranscribeOptions
from preprocessing.errors import NoFaceError
from preprocessing.video import FRAME_SECONDS, VIDEO_FPS
from tests.conftest import SHORT_CLIP_FRAMES
from tests.media import astronaut_frames, tone, write_video
from tests.models.helpers import save_member

GREEDY = TranscribeOptions(beam=1)


@pytest.fixture(scope="module")
def recognizer(tiny_dmf) -> Recognizer:
    return Recognizer.load(tiny_dmf, "cpu")


@pytest.mark.parametrize("noise", [None, "white"])
def test_each_head_reads_what_transcribe_reads(recognizer, talking_videos, noise) -> None:
    options = TranscribeOptions(beam=1, noise=noise, snr=None if noise is None else 0.0)
    result = compare(recognizer, talking_videos[0], options)
    assert list(result.transcripts) == ["av", "audio", "video"] and not result.notes
    for head in ("av", "video"):  # the audio head alone reads the sound's own length
        alone = recognizer.transcribe(talking_videos[0], modality=head, beam=1, noise=noise, snr=options.snr)
        assert result.transcripts[head] == alone
    assert result.crops.shape[0] == len(result.waveform) // 640 == SHORT_CLIP_FRAMES and result.detected.all()
    assert result.wers == {} and result.seconds > 0


def test_what_was_said_scores_each_head(recognizer, talking_videos) -> None:
    result = compare(recognizer, talking_videos[0], GREEDY, reference="Bin BLUE, at F!")
    assert set(result.wers) == {"av", "audio", "video"} and all(wer >= 0 for wer in result.wers.values())


def test_a_missing_stream_is_a_note_and_the_other_is_read(recognizer, tmp_path) -> None:
    seconds = SHORT_CLIP_FRAMES / VIDEO_FPS
    mute = write_video(tmp_path / "mute.mp4", astronaut_frames(SHORT_CLIP_FRAMES))
    heard = compare(recognizer, mute, GREEDY)
    assert heard.notes == [f"{mute}: has no audio stream: the lips alone are read"]
    assert not heard.waveform.any()
    assert heard.transcripts["video"].duration == SHORT_CLIP_FRAMES * FRAME_SECONDS

    blank = np.full((SHORT_CLIP_FRAMES, 96, 96, 3), 128, np.uint8)
    faceless = compare(recognizer, write_video(tmp_path / "blank.mp4", blank, audio=tone(seconds, 0, 0.3)),
                       GREEDY)
    assert list(faceless.transcripts) == ["audio"] and "the sound alone is heard" in faceless.notes[0]
    with pytest.raises(NoFaceError, match="nothing.mp4"):  # neither a face nor sound
        compare(recognizer, write_video(tmp_path / "nothing.mp4", blank), GREEDY)


def test_an_ensemble_reads_each_head_as_transcribe_does(tiny_dmf, talking_videos, tmp_path) -> None:
    ensemble = Recognizer.load(f"{tiny_dmf}+{save_member(tiny_dmf, tmp_path / 'second.pt')}", "cpu")
    result = compare(ensemble, talking_videos[0], GREEDY)
    assert list(result.transcripts) == ["av", "audio", "video"]
    for head in ("av", "video"):
        assert result.transcripts[head] == ensemble.transcribe(talking_videos[0], modality=head, beam=1)


def test_transcribe_clip_takes_its_noise_mixed_in(recognizer) -> None:
    mouths = np.zeros((SHORT_CLIP_FRAMES, 64, 64), np.uint8)
    waveform = np.zeros(SHORT_CLIP_FRAMES * 640, np.float32)
    with pytest.raises(ValueError, match="noise mixed in"):
        recognizer.transcribe_clip(mouths, waveform, Path("clip"), TranscribeOptions(noise="white", snr=0))
    assert list(recognizer.transcribe_clip(None, waveform, Path("clip"), GREEDY)) == ["audio"]  # no face
