"""Audio: decode any media file to 16 kHz mono, and log-mel features aligned to video frames.

The unit constants for the whole pipeline live here and in `preprocessing.video`.
Features are computed with torch so they can run on the fly: noise is mixed into the
waveform first, then features are taken, during training and benchmarking alike.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import torch
import torchaudio

from preprocessing.errors import NoAudioStreamError
from preprocessing.media import open_container
from preprocessing.video import VIDEO_FPS

SAMPLE_RATE = 16_000  # Hz; all audio is resampled to 16 kHz mono
WINDOW_LENGTH = 400  # samples: 25 ms analysis window
HOP_LENGTH = 160  # samples: 10 ms between audio feature frames (100 frames/s)
N_FFT = 512  # FFT size: the 25 ms window zero-padded to a power of two
N_MELS = 80  # mel bins
AUDIO_FRAMES_PER_VIDEO_FRAME = SAMPLE_RATE // HOP_LENGTH // VIDEO_FPS  # 4 feature frames per video frame
SAMPLES_PER_VIDEO_FRAME = HOP_LENGTH * AUDIO_FRAMES_PER_VIDEO_FRAME  # 640 samples = 40 ms
LOG_FLOOR = 1e-6  # added to mel power before the log, so silence stays finite
NORM_MIN_STD = 0.1  # log units (~0.4 dB): a bin varying less carries no information, e.g. silence


def decode_audio(path: str | Path) -> np.ndarray:
    """Decode the first audio stream of `path` to a float32 16 kHz mono waveform in [-1, 1].

    When the file also has video, sample 0 is the moment of the first video frame: audio that
    starts later is preceded by silence, audio that starts earlier is cut, keeping lips in sync.
    """
    with open_container(path) as container:
        if not container.streams.audio:
            raise NoAudioStreamError(path)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        audio_start = None
        for frame in container.decode(stream):
            if audio_start is None and frame.time is not None:
                audio_start = float(frame.time)
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))  # flush
        origin = _video_origin(container)
    waveform = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if origin is not None and audio_start is not None:
        shift = round((audio_start - origin) * SAMPLE_RATE)
        waveform = np.pad(waveform, (shift, 0)) if shift > 0 else waveform[-shift:]
    return waveform.astype(np.float32, copy=False)


def _video_origin(container: av.container.InputContainer) -> float | None:
    """Start time (s) of the first video stream, or None for an audio-only file."""
    if not container.streams.video:
        return None
    stream = container.streams.video[0]
    if stream.start_time is None:
        return None
    return float(stream.start_time * stream.time_base)


def fit_to_video(waveform: np.ndarray, n_video_frames: int) -> np.ndarray:
    """Trim or zero-pad `waveform` to exactly `n_video_frames` video frames of audio.

    The video's frame count defines a clip's length (see `preprocessing.clip`): audio past
    the last video frame is dropped, and audio that ends early is padded with silence.
    """
    n_samples = n_video_frames * SAMPLES_PER_VIDEO_FRAME
    if len(waveform) >= n_samples:
        return waveform[:n_samples]
    return np.pad(waveform, (0, n_samples - len(waveform)))


@lru_cache(maxsize=8)
def _mel_filters(device: torch.device) -> torch.Tensor:
    """The (N_FFT // 2 + 1, N_MELS) HTK mel filterbank, cached per device."""
    return torchaudio.functional.melscale_fbanks(
        N_FFT // 2 + 1, f_min=0.0, f_max=SAMPLE_RATE / 2, n_mels=N_MELS, sample_rate=SAMPLE_RATE
    ).to(device)


@lru_cache(maxsize=8)
def _window(device: torch.device) -> torch.Tensor:
    return torch.hann_window(WINDOW_LENGTH, device=device)


def log_mel(waveform: torch.Tensor) -> torch.Tensor:
    """Log-mel features of a (..., samples) waveform, as (..., samples // HOP_LENGTH, N_MELS).

    Frame `i` is centred on sample `i * HOP_LENGTH`, so video frame `k` owns feature frames
    `4k .. 4k+3`. The result is the natural log of mel power plus LOG_FLOOR, not yet normalised.
    """
    shape = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1]).float()
    spec = torch.stft(
        flat,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WINDOW_LENGTH,
        window=_window(flat.device),
        center=True,
        return_complex=True,
    )
    power = spec.abs().pow(2).transpose(1, 2)  # (batch, frames, freq)
    mel = power @ _mel_filters(flat.device)
    n_frames = flat.shape[-1] // HOP_LENGTH
    features = torch.log(mel[:, :n_frames] + LOG_FLOOR)
    return features.reshape(*shape, n_frames, N_MELS)


def normalize(features: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-bin mean and variance normalisation over time (dim -2).

    Removes the recording's gain and channel colouring, so a model does not depend on how
    loud or through which microphone a speaker was recorded. A silent clip becomes zeros.
    """
    mean = features.mean(dim=-2, keepdim=True)
    std = features.std(dim=-2, keepdim=True, unbiased=False)
    return (features - mean) / std.clamp_min(NORM_MIN_STD)


def features(waveform: torch.Tensor) -> torch.Tensor:
    """The model's audio input: normalised log-mel of a (..., samples) waveform."""
    return normalize(log_mel(waveform))
