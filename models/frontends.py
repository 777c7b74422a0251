"""Front ends: raw inputs of each modality to one feature vector per video frame (25 per second).

Both map their input and the clips' lengths in video frames to (batch, frames, d_model),
zero at padded frames, so the temporal blocks above them see one step per 40 ms.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

from models.blocks import padding_mask, zero_padding
from models.config import AudioStem
from preprocessing.audio import AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS

AUDIO_STRIDE = 2  # log-mel frames per output step of each audio convolution
AUDIO_CONVS = 2  # convolutions: stride 2 twice takes 100 log-mel frames/s to 25 steps/s
assert AUDIO_STRIDE**AUDIO_CONVS == AUDIO_FRAMES_PER_VIDEO_FRAME
AUDIO_KERNEL = 3  # log-mel frames (30 ms) seen by the first convolution (and mel bins, in 2-D)
AUDIO_MAPS = 32  # feature maps of each 2-D audio convolution (`audio_stem="conv2d"`)

STEM_KERNEL = (5, 7, 7)  # (frames, pixels, pixels): 200 ms of lip motion per output
STEM_STRIDE = (1, 2, 2)  # keep every frame, halve the image side
STEM_PADDING = tuple(k // 2 for k in STEM_KERNEL)  # same number of frames out as in
STD_EPS = 1e-5  # guards the standard deviation of a blank (constant) clip


class AudioFrontEnd(nn.Module):
    """Log-mel (batch, 4T, N_MELS) -> (batch, T, d_model) through two stride-2 convolutions.

    `stem="conv1d"` convolves over time with the mel bins as channels; `"conv2d"` over time
    and frequency with AUDIO_MAPS maps, halving both each time, then projects each step's
    maps to d_model, so its filters see local time-frequency patterns (a fricative's noise band,
    a formant's move). Off by default: it trains unreliably over seeds (README, Results).
    """

    def __init__(self, d_model: int, stem: AudioStem = "conv1d") -> None:
        super().__init__()
        conv, c_in, c_out = (nn.Conv1d, N_MELS, d_model) if stem == "conv1d" else (nn.Conv2d, 1, AUDIO_MAPS)
        widths = [c_in] + [c_out] * AUDIO_CONVS
        self.convs = nn.ModuleList(
            conv(c_in, c_out, AUDIO_KERNEL, AUDIO_STRIDE, padding=AUDIO_KERNEL // 2)
            for c_in, c_out in pairwise(widths)
        )
        bins = N_MELS // AUDIO_STRIDE**AUDIO_CONVS  # mel bins left after the 2-D convolutions
        self.project = nn.Linear(AUDIO_MAPS * bins, d_model) if stem == "conv2d" else None

    def forward(self, mel: Tensor, lengths: Tensor, frames: int) -> Tensor:
        """`mel` is zero-padded or trimmed to `frames` video frames first, so T == frames.

        Log-mel frames past a clip's length are zeroed, so they cannot reach its last steps.
        """
        n_mel = frames * AUDIO_FRAMES_PER_VIDEO_FRAME
        mel = F.pad(mel[:, :n_mel], (0, 0, 0, max(0, n_mel - mel.shape[1])))
        mel = zero_padding(mel, lengths * AUDIO_FRAMES_PER_VIDEO_FRAME)
        # (batch, channels, time[, mel]): mel bins are the channels in 1-D, a second axis in 2-D
        x = mel.transpose(1, 2) if self.project is None else mel.unsqueeze(1)
        for conv in self.convs:
            x = F.gelu(conv(x))
        x = x.transpose(1, 2)  # (batch, T, channels[, bins])
        if self.project is not None:
            x = self.project(x.flatten(2))
        return zero_padding(x, lengths)


class BasicBlock(nn.Module):
    """The ResNet-18 residual block: two 3x3 convolutions, a projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class VisualFrontEnd(nn.Module):
    """Grayscale mouth crops (batch, T, H, W) in [0, 1] -> (batch, T, d_model).

    A spatio-temporal Conv3d stem sees 5 frames of lip motion; the rest is a per-frame
    ResNet (one BasicBlock per stage, stride 2 at stages 2 and 3), global average pool and
    a linear projection. Everything after the stem convolution is per frame, so it runs on
    valid frames only: padding costs no compute and never enters batch-norm statistics
    (BatchNorm2d and MaxPool2d on frames equal the BatchNorm3d and MaxPool3d((1, 3, 3))
    of the usual lip-reading stem).
    """

    def __init__(self, d_model: int, crop_size: int, channels: tuple[int, int, int]) -> None:
        super().__init__()
        self.crop_size = crop_size
        self.clip_norm = False  # in eval mode, normalise each clip by its own statistics (`pooled`)
        stem = channels[0]
        self.stem = nn.Conv3d(1, stem, STEM_KERNEL, STEM_STRIDE, STEM_PADDING, bias=False)
        self.trunk = nn.Sequential(
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            BasicBlock(stem, channels[0], stride=1),
            BasicBlock(channels[0], channels[1], stride=2),
            BasicBlock(channels[1], channels[2], stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels[2], d_model),
        )

    def forward(self, video: Tensor, lengths: Tensor) -> Tensor:
        """Crops (batch, T, H, W), or their `pooled` features (batch, T, channels[-1]).

        Precomputed features let a frozen stem and trunk be run once per clip, not per step;
        either way the result is the same (batch, T, d_model), zero at padded frames.
        """
        pooled = self.pooled(video, lengths) if video.dim() == 4 else video
        return zero_padding(self.trunk[-1](pooled), lengths)

    def pooled(self, video: Tensor, lengths: Tensor) -> Tensor:
        """The trunk's pooled features (batch, T, channels[-1]) of crops (batch, T, H, W).

        Taken before the final projection and zero at padded frames; `forward` accepts them.
        With `clip_norm` set, in eval mode, every batch norm of the trunk normalises each clip
        by the statistics of that clip's own frames instead of the training set's (test-time
        normalisation: a new speaker's lips, skin and light shift the activations less).
        """
        batch, frames, height, width = video.shape
        if (height, width) != (self.crop_size, self.crop_size):
            raise ValueError(
                f"mouth crops are {height}x{width}, the model reads "
                f"{self.crop_size}x{self.crop_size}"
            )
        valid = padding_mask(lengths, frames)
        x = self.stem(standardize(video, lengths).unsqueeze(1))  # (batch, C, T, H', W')
        by_frame = x.transpose(1, 2)  # (batch, T, C, H', W')
        if self.clip_norm and not self.training:
            with own_statistics(self.trunk):
                features = torch.cat([self.trunk[:-1](clip[:length])
                                      for clip, length in zip(by_frame, lengths.tolist(), strict=True)])
        else:
            features = self.trunk[:-1](by_frame[valid])  # (valid frames, channels[-1])
        out = features.new_zeros(batch, frames, features.shape[-1])
        out[valid] = features
        return out


@contextmanager
def own_statistics(module: nn.Module) -> Iterator[None]:
    """Within: `module`'s batch norms normalise by each input's statistics and keep their own."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [(m.training, m.track_running_stats) for m in norms]
    for norm in norms:
        norm.training, norm.track_running_stats = True, False
    try:
        yield
    finally:
        for norm, (training, tracking) in zip(norms, modes, strict=True):
            norm.training, norm.track_running_stats = training, tracking


def standardize(video: Tensor, lengths: Tensor) -> Tensor:
    """Each clip to zero mean and unit variance over its valid frames; padded frames to zero.

    Per clip rather than with dataset statistics, so lighting and skin tone of unseen
    speakers matter less; padding neither enters the statistics nor leaves a trace.
    """
    video = zero_padding(video, lengths)
    pixels = (lengths * video.shape[2] * video.shape[3]).clamp(min=1).to(video.dtype)
    mean = video.sum(dim=(1, 2, 3)) / pixels
    centred = zero_padding(video - mean[:, None, None, None], lengths)
    std = torch.sqrt(centred.square().sum(dim=(1, 2, 3)) / pixels + STD_EPS)
    return centred / std[:, None, None, None]
