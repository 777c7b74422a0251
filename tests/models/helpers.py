"""Small models and inputs that keep the model tests fast on a CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from models.config import ModelConfig
from models.dmf import AVSRModel, build_model
from preprocessing.audio import AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS

CROP = 16  # pixels: mouth crop side of the tiny models


def tiny_config(**overrides) -> ModelConfig:
    """A model of the real structure at a fraction of the width and depth."""
    settings = dict(d_model=32, levels=2, dropout=0.0, crop_size=CROP, visual_channels=(8, 16, 32))
    return ModelConfig(**(settings | overrides))


def random_inputs(lengths: list[int], seed: int = 0, crop_size: int = CROP) -> tuple[torch.Tensor, ...]:
    """(audio, video, lengths) for a batch padded to its longest clip, padding random too.

    The padding is noise rather than zeros, so a test can tell whether a model ignores it.
    """
    generator = torch.Generator().manual_seed(seed)
    frames = max(lengths)
    audio = torch.randn(len(lengths), frames * AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS,
                        generator=generator)
    video = torch.rand(len(lengths), frames, crop_size, crop_size, generator=generator)
    return audio, video, torch.tensor(lengths)


def on_first_trunk(models: list[AVSRModel]) -> list[AVSRModel]:
    """`models`, each given the first one's visual trunk (all of its front end but the projection),
    as models trained with `--init-visual` of one model share it: members of one ensemble."""
    frontend = models[0].video_frontend
    projection = f"trunk.{len(frontend.trunk) - 1}."
    trunk = {key: value for key, value in frontend.state_dict().items() if not key.startswith(projection)}
    for model in models[1:]:
        model.video_frontend.load_state_dict(trunk, strict=False)
    return models


def save_member(source: Path, path: Path, seed: int = 1) -> Path:
    """A model of the checkpoint `source`'s config, initialised from `seed` but on its visual
    trunk, saved at `path`: with `source`, an ensemble."""
    from models.checkpoint import load_checkpoint, save_checkpoint

    first, _ = load_checkpoint(source)
    torch.manual_seed(seed)
    member = on_first_trunk([first, build_model(first.config)])[1]
    save_checkpoint(path, member, member.config, data="synthetic")
    return path
