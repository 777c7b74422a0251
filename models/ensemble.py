"""Ensembles: several models of one kind run on the same clip, their transcripts voted on.

Models trained apart make different mistakes, so the words most of them agree on are right more
often than any one's (`models.voting`). The members share their visual trunk (the stem and
ResNet up to each member's own projection), as the models trained with `--init-visual` of one
model do, since that freezes it: it runs once per clip for all of them, and only their recurrent
blocks and heads run once per member. An ensemble is named by its members joined with
ENSEMBLE_SEPARATOR ("dmf+runs/a/best.pt"), or by a bundled ensemble's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.checkpoint import BUNDLED_ENSEMBLES, BUNDLED_MODELS, WEIGHTS_DIR, load_checkpoint
from models.config import Modality, ModelConfig
from models.dmf import AVSRModel
from models.frontends import VisualFrontEnd

ENSEMBLE_SEPARATOR = "+"  # joins the members' names or paths in an ensemble's name
BUNDLED_NAMES = (*BUNDLED_MODELS, *BUNDLED_ENSEMBLES)  # what `--model` takes by name


class Ensemble(nn.Module):
    """Models of one kind and one visual trunk, run together: each head's log-probabilities come
    out as (batch, members, T, VOCAB_SIZE) instead of (batch, T, VOCAB_SIZE)."""

    def __init__(self, members: Sequence[AVSRModel]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs two members or more, got {len(members)}")
        kinds = {member.config.kind for member in members}
        if len(kinds) > 1:
            raise ValueError(f"an ensemble's members are of one kind, got {', '.join(sorted(kinds))}")
        frontends = [member.video_frontend for member in members]
        if frontends[0] is not None and not all(_same_trunk(frontends[0], other) for other in frontends[1:]):
            raise ValueError("an ensemble's members share their visual trunk (train them with --init-visual "
                             "of one model); these differ")
        self.members = nn.ModuleList(members)

    @property
    def config(self) -> ModelConfig:
        """The first member's: the kind, crop size and block of them all."""
        return self.members[0].config

    @property
    def video_frontend(self) -> VisualFrontEnd | None:
        """The shared trunk's front end (the first member's), which makes the pooled features."""
        return self.members[0].video_frontend

    def forward(self, audio: Tensor | None, video: Tensor | None, lengths: Tensor) -> dict[str, Tensor]:
        """Every member's `AVSRModel.forward`, stacked on a members axis after the batch's; the
        trunk runs once, for crops (batch, T, H, W), or not at all for pooled features."""
        if video is not None and video.dim() == 4:
            video = self.video_frontend.pooled(video, lengths)
        outputs = [member(audio, video, lengths) for member in self.members]
        return {head: torch.stack([output[head] for output in outputs], dim=1) for head in outputs[0]}

    def available_heads(self, has_audio: bool, has_video: bool) -> list[Modality]:
        """The heads every member computes when given these streams."""
        return self.members[0].available_heads(has_audio, has_video)


def member_names(name_or_path: str | Path) -> list[str]:
    """The checkpoints (names or paths) a model name stands for: a bundled ensemble's members,
    the parts of a name joined with ENSEMBLE_SEPARATOR, or the one model (a file whose name holds
    the separator is one model)."""
    name = str(name_or_path)
    if name in BUNDLED_ENSEMBLES:
        return list(BUNDLED_ENSEMBLES[name])
    if ENSEMBLE_SEPARATOR in name and not Path(name).is_file():
        return name.split(ENSEMBLE_SEPARATOR)
    return [name]


def installed(name: str) -> bool:
    """Whether the bundled model or ensemble `name` has all its weights in the package."""
    return all((WEIGHTS_DIR / f"{member}.pt").is_file() for member in member_names(name))


def load_model(
    name_or_path: str | Path, device: str | torch.device = "cpu"
) -> tuple[AVSRModel | Ensemble, dict[str, Any]]:
    """One checkpoint's network, or an ensemble's (`member_names`), in eval mode on `device`, and
    the (first member's) checkpoint metadata."""
    loaded = [load_checkpoint(name, device) for name in member_names(name_or_path)]
    if len(loaded) == 1:
        return loaded[0]
    return Ensemble([model for model, _ in loaded]).to(device).eval(), loaded[0][1]


def _same_trunk(first: VisualFrontEnd, other: VisualFrontEnd) -> bool:
    """Whether two visual front ends read the same crops with the same stem and trunk, up to
    their projections."""
    projection = f"trunk.{len(first.trunk) - 1}."
    mine, theirs = first.state_dict(), other.state_dict()
    return first.crop_size == other.crop_size and mine.keys() == theirs.keys() and all(
        torch.equal(mine[key], theirs[key]) for key in mine if not key.startswith(projection))
