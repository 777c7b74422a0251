"""Audio decoding, the audio/video length rule, and log-mel features aligned to video frames."""

import numpy as np
import pytest
import torch

from preprocessing.audio import (
    AUDIO_FRAMES_PER_VIDEO_FRAME,
    HOP_LENGTH,
    N_MELS,
    SAMPLE_RATE,
    SAMPLES_PER_VIDEO_FRAME,
    decode_audio,
    features,
    fit_to_video,
    log_mel,
)
from preprocessing.errors import NoAudioStreamError
from preprocessing.video import VIDEO_FPS, decode_video
from tests.media import tone, write_video

SIZE = (48, 64)  # (height, width) of the synthetic test videos


def grey_frames(n: int) -> np.ndarray:
    return np.full((n, *SIZE, 3), 128, np.uint8)


def test_units_fit_together():
    assert AUDIO_FRAMES_PER_VIDEO_FRAME == 4
    assert SAMPLES_PER_VIDEO_FRAME * VIDEO_FPS == SAMPLE_RATE


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".webm", ".mpg"])
def test_decodes_to_16k_mono_float(tmp_path, suffix):
    path = write_video(tmp_path / f"a{suffix}", grey_frames(50), audio=tone(2.0, 0.5, 0.5))
    waveform = decode_audio(path)
    assert waveform.dtype == np.float32
    assert waveform.ndim == 1
    # lossy codecs add at most a few tens of ms of padding
    assert abs(len(waveform) - 2 * SAMPLE_RATE) < 0.1 * SAMPLE_RATE


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_tone_burst_lands_in_the_right_feature_frames(tmp_path, suffix):
    start, length = 1.0, 0.4  # seconds: video frames 25..34, feature frames 100..139
    path = write_video(tmp_path / f"t{suffix}", grey_frames(75), audio=tone(3.0, start, length))
    frames = decode_video(path)
    waveform = fit_to_video(decode_audio(path), len(frames))
    energy = log_mel(torch.from_numpy(waveform)).exp().sum(dim=-1).numpy()
    loud = np.flatnonzero(energy > 0.5 * energy.max())
    first, last = start * SAMPLE_RATE / HOP_LENGTH, (start + length) * SAMPLE_RATE / HOP_LENGTH
    assert abs(loud[0] - first) <= 3 and abs(loud[-1] + 1 - last) <= 3  # within 30 ms
    video_frames = loud // AUDIO_FRAMES_PER_VIDEO_FRAME
    assert video_frames.min() == 25 and video_frames.max() == 34


def test_length_rule_trims_and_pads(tmp_path):
    long_audio = write_video(tmp_path / "long.mkv", grey_frames(25), audio=tone(2.0, 0.0, 2.0))
    short_audio = write_video(tmp_path / "short.mkv", grey_frames(50), audio=tone(1.0, 0.0, 1.0))
    for path, n_frames in [(long_audio, 25), (short_audio, 50)]:
        fitted = fit_to_video(decode_audio(path), len(decode_video(path)))
        assert len(fitted) == n_frames * SAMPLES_PER_VIDEO_FRAME
    padded = fit_to_video(decode_audio(short_audio), 50)
    assert np.abs(padded[int(1.1 * SAMPLE_RATE):]).max() == 0  # silence after the audio ended


def test_video_without_audio_stream(tmp_path):
    path = write_video(tmp_path / "mute.mp4", grey_frames(10))
    with pytest.raises(NoAudioStreamError, match="mute.mp4"):
        decode_audio(path)


def test_log_mel_shape_and_batching():
    waveform = torch.randn(2, 3, 75 * SAMPLES_PER_VIDEO_FRAME)
    mel = log_mel(waveform)
    assert mel.shape == (2, 3, 300, N_MELS)
    torch.testing.assert_close(mel[1, 2], log_mel(waveform[1, 2]))


def test_normalised_features_are_standardised_and_silence_is_finite():
    feats = features(torch.from_numpy(tone(3.0, 1.0, 0.5)) + 0.01 * torch.randn(48000))
    torch.testing.assert_close(feats.mean(dim=0), torch.zeros(N_MELS), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(dim=0, unbiased=False), torch.ones(N_MELS), atol=1e-2, rtol=0)
    silent = features(torch.zeros(48000))
    assert torch.isfinite(silent).all() and silent.abs().max() < 1e-3
    noise = torch.randn(48000, generator=torch.Generator().manual_seed(0))
    speech = torch.from_numpy(tone(3.0, 1.0, 0.5)) + 0.1 * noise  # every mel bin far above LOG_FLOOR
    loud, quiet = features(2 * speech), features(0.5 * speech)
    torch.testing.assert_close(loud, quiet, atol=2e-2, rtol=0)  # gain does not matter
