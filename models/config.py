"""What to build: the model kind, its widths and depth, as plain data that fits in a checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

Kind = Literal["dmf", "early", "late", "audio", "video"]
BlockKind = Literal["conv", "gru", "lstm", "attention"]
Modality = Literal["av", "audio", "video"]
AudioStem = Literal["conv1d", "conv2d"]

KINDS: tuple[Kind, ...] = get_args(Kind)
FUSION_KINDS: tuple[Kind, ...] = ("dmf", "early", "late")  # the kinds with an audio and a visual stream
BLOCKS: tuple[BlockKind, ...] = get_args(BlockKind)
AUDIO_STEMS: tuple[AudioStem, ...] = get_args(AudioStem)

# The heads each kind has, named by the modality they read; a head is also what
# `--modality` selects. "av" needs both streams, "audio" and "video" one each.
HEADS: dict[Kind, tuple[Modality, ...]] = {
    "dmf": ("av", "audio", "video"),
    "early": ("av",),
    "late": ("av", "audio", "video"),
    "audio": ("audio",),
    "video": ("video",),
}

# Stream width of each kind at its default, chosen so all five have about DMF's parameter
# count (within 5%, conv or GRU blocks; tests/models checks 20%), and a benchmark compares
# fusion rather than size. Block parameters grow as width squared: DMF has three blocks
# and a fusion projection per level, late fusion two blocks, early fusion and the single
# streams one, so their widths are DMF's times about the square root of that ratio, then
# tuned for the front ends (the visual one is fixed, the audio one grows with the width).
DEFAULT_D_MODEL: dict[Kind, int] = {
    "dmf": 256,
    "early": 432,
    "late": 336,
    "audio": 480,
    "video": 496,
}


def supported_modalities(kind: Kind) -> tuple[Modality, ...]:
    """The modalities a model of `kind` can recognise from, e.g. ("audio",) for "audio"."""
    return HEADS[kind]


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network; `to_dict()` holds only plain types."""

    kind: Kind = "dmf"
    block: BlockKind = "gru"  # temporal block of every stream and shared level (GRU: 10% vs 32% dev WER
    # for audio-only on GRID, the same 30 epochs; conv blocks are 3x faster to train on the CPU)
    d_model: int = 0  # width of every stream, in features per video frame; 0: the kind's default
    audio_width: int = 0  # fusion models: width of the audio stream (front end and blocks); 0: d_model
    video_width: int = 0  # fusion models: width of the visual stream (front end and blocks); 0: d_model
    levels: int = 4  # L: blocks per stream (and shared layers in DMF)
    kernel_size: int = 5  # video frames (200 ms) seen by a conv block's depthwise convolution
    dropout: float = 0.1  # in every block, on the branch added to the residual stream
    crop_size: int = 56  # side in pixels of the grayscale mouth crop the model reads
    visual_channels: tuple[int, int, int] = (32, 64, 128)  # ResNet stage widths; stem = first
    audio_stem: AudioStem = "conv1d"  # audio front end's convolutions: over time, or time and frequency

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; expected one of {BLOCKS}")
        if self.audio_stem not in AUDIO_STEMS:
            raise ValueError(f"unknown audio stem {self.audio_stem!r}; expected one of {AUDIO_STEMS}")
        if self.d_model == 0:
            self.d_model = DEFAULT_D_MODEL[self.kind]
        if self.kind not in FUSION_KINDS and (self.audio_width or self.video_width):
            raise ValueError(f"a {self.kind} model has one stream, of width d_model; "
                             f"stream widths are for {', '.join(FUSION_KINDS)}")
        for name in ("d_model", "audio_width", "video_width"):
            if getattr(self, name) % 2 or getattr(self, name) < 0:
                raise ValueError(f"{name} must be even (two recurrent directions) and not negative, "
                                 f"got {getattr(self, name)}")
        self.visual_channels = tuple(self.visual_channels)

    def width(self, stream: Literal["audio", "video"]) -> int:
        """Features per frame of a stream's front end and blocks (the shared stream's: d_model)."""
        return getattr(self, f"{stream}_width") or self.d_model

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (str, int, float, list), loadable with `weights_only=True`."""
        data = asdict(self)
        data["visual_channels"] = list(self.visual_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; keys this version does not know are an error, not ignored."""
        unknown = set(data) - {field.name for field in fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)
