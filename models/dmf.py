"""The recognisers: Dense Multimodal Fusion and its baselines, on shared front ends and blocks.

For levels l = 1..L (see design/DMF.md):

    a_l = A_l(a_{l-1});  v_l = V_l(v_{l-1});  s_l = S_l(act(Wa_l a_l + Wv_l v_l + Ws_l s_{l-1}))

with no Ws_1 term, a CTC head on s_L and auxiliary CTC heads on a_L and v_L. The
baselines reuse the same parts: "audio" and "video" are one stream each, "early" fuses
the front-end features and runs one stream of L blocks, "late" fuses a_L and v_L.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

from models.blocks import build_stack, zero_padding
from models.config import Modality, ModelConfig, supported_modalities
from models.frontends import AudioFrontEnd, VisualFrontEnd
from models.tokenizer import VOCAB_SIZE
from preprocessing.audio import AUDIO_FRAMES_PER_VIDEO_FRAME

# The streams each head reads.
HEAD_INPUTS: dict[Modality, tuple[str, ...]] = {
    "av": ("audio", "video"),
    "audio": ("audio",),
    "video": ("video",),
}
# The output key of intermediate CTC (Lee & Watanabe, 2021): DMF's fused head on its middle shared
# layer, s_{L/2}, read in training only (`AVSRModel.forward(intermediate=True)`).
INTERMEDIATE = "av_mid"


class Fusion(nn.Module):
    """act(W [x_1; ...; x_n]) = act(W_1 x_1 + ... + W_n x_n): streams of these widths into one, one matmul."""

    def __init__(self, widths: Sequence[int], d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(sum(widths), d_model)

    def forward(self, inputs: list[Tensor], lengths: Tensor) -> Tensor:
        return zero_padding(F.gelu(self.proj(torch.cat(inputs, dim=-1))), lengths)


class CTCHead(nn.Module):
    """Per-frame log-probabilities over the characters and the blank."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)  # the blocks are pre-norm: their sum is not normed
        self.proj = nn.Linear(d_model, VOCAB_SIZE)

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.proj(self.norm(x)), dim=-1)


class AVSRModel(nn.Module):
    """Any kind of `ModelConfig`; build with `build_model(config)`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, kind = config.d_model, config.kind
        widths = {"av": d, "audio": config.width("audio"), "video": config.width("video")}  # heads' inputs
        self.audio_frontend = AudioFrontEnd(widths["audio"], config.audio_stem) if kind != "video" else None
        self.video_frontend = (
            VisualFrontEnd(widths["video"], config.crop_size, config.visual_channels)
            if kind != "audio"
            else None
        )
        # A_l and V_l: every kind but early keeps its streams apart up to level L.
        self.audio_blocks = build_stack(config, widths["audio"]) if kind in ("dmf", "late", "audio") else None
        self.video_blocks = build_stack(config, widths["video"]) if kind in ("dmf", "late", "video") else None
        # S_l: DMF's shared layers, or early fusion's single stream.
        self.shared_blocks = build_stack(config, d) if kind in ("dmf", "early") else None
        streams = [widths["audio"], widths["video"]]  # a_l and v_l (early: a_0, v_0; late: a_L, v_L)
        fusions = {
            "dmf": [streams] + [[*streams, d]] * (config.levels - 1),  # and, above level 1, s_{l-1}
            "early": [streams],
            "late": [streams],
        }.get(kind, [])
        self.fusions = nn.ModuleList(Fusion(inputs, d) for inputs in fusions)
        self.heads = nn.ModuleDict({name: CTCHead(widths[name]) for name in supported_modalities(kind)})

    def forward(
        self, audio: Tensor | None, video: Tensor | None, lengths: Tensor, intermediate: bool = False
    ) -> dict[str, Tensor]:
        """Log-probabilities (batch, T, VOCAB_SIZE) of every head whose streams are given.

        audio: (batch, 4T, N_MELS) normalised log-mel, or None; video: (batch, T, H, W)
        mouth crops in [0, 1], or None; lengths: valid video frames per clip. T is the video's
        frame count (or the audio's / 4, rounded up). A stream the model does not use is
        ignored; heads needing a missing stream are left out (pass zeros to blank a stream).
        `intermediate`: DMF also returns INTERMEDIATE, its fused head on shared layer L // 2.
        """
        heads = self.available_heads(audio is not None, video is not None)
        if not heads:
            needs = " and ".join(HEAD_INPUTS[supported_modalities(self.config.kind)[0]])
            raise ValueError(f"the {self.config.kind!r} model needs {needs} input")
        frames = (
            video.shape[1] if video is not None else ceil(audio.shape[1] / AUDIO_FRAMES_PER_VIDEO_FRAME)
        )
        a = v = s = middle = None
        if self.audio_frontend is not None and audio is not None:
            a = self.audio_frontend(audio, lengths, frames)
        if self.video_frontend is not None and video is not None:
            v = self.video_frontend(video, lengths)
        fused = a is not None and v is not None
        if self.config.kind == "early" and fused:
            s = self.fusions[0]([a, v], lengths)
        for level in range(self.config.levels):
            if a is not None and self.audio_blocks is not None:
                a = self.audio_blocks[level](a, lengths)
            if v is not None and self.video_blocks is not None:
                v = self.video_blocks[level](v, lengths)
            if fused and self.shared_blocks is not None:
                if self.config.kind == "dmf":
                    below = [] if s is None else [s]
                    s = self.fusions[level]([a, v, *below], lengths)
                s = self.shared_blocks[level](s, lengths)
                if intermediate and self.config.kind == "dmf" and level + 1 == self.config.levels // 2:
                    middle = s
        if self.config.kind == "late" and fused:
            s = self.fusions[0]([a, v], lengths)
        features = {"av": s, "audio": a, "video": v}
        outputs = {name: self.heads[name](features[name]) for name in heads}
        if middle is not None:
            outputs[INTERMEDIATE] = self.heads["av"](middle)
        return outputs

    def available_heads(self, has_audio: bool, has_video: bool) -> list[Modality]:
        """The heads this model computes when given these streams."""
        given = {"audio": has_audio, "video": has_video}
        return [
            name
            for name in supported_modalities(self.config.kind)
            if all(given[stream] for stream in HEAD_INPUTS[name])
        ]


def build_model(config: ModelConfig) -> AVSRModel:
    """A freshly initialised network of `config.kind`."""
    return AVSRModel(config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable weights."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
