"""Checkpoints: weights plus the config that rebuilds the network, loadable without pickled code.

A checkpoint file holds {"config": ModelConfig.to_dict(), "state_dict": ..., "metadata":
{...}} in plain types only, so `torch.load(..., weights_only=True)` reads it. The bundled
models are such files in `models/weights/`, named by their kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.manifest import atomic_write
from models.config import KINDS, ModelConfig
from models.dmf import AVSRModel, build_model

WEIGHTS_DIR = Path(__file__).parent / "weights"  # package data: the bundled checkpoints
BUNDLED_MODELS = KINDS  # bundled model names: one trained model per kind, at <name>.pt
# Bundled ensembles (`models.ensemble`) by name: their members, bundled models or more DMF
# models trained on the same visual trunk, at <member>.pt.
BUNDLED_ENSEMBLES = {"dmf-ensemble": ("dmf", "dmf-2", "dmf-3", "dmf-4", "dmf-5")}
BUNDLED_FILES = tuple(dict.fromkeys([*BUNDLED_MODELS, *(m for ms in BUNDLED_ENSEMBLES.values() for m in ms)]))
ADAPTATION = "adaptation"  # metadata key of a checkpoint `avsr adapt` wrote: how it was adapted
_PLAIN_SCALARS = (str, int, float, bool, type(None))


def save_checkpoint(
    path: str | Path, model: nn.Module, config: ModelConfig, half: bool = False, **metadata: Any
) -> None:
    """Write `model`'s weights, `config` and `metadata` to `path`, atomically.

    The file is written next to `path` and then renamed over it, so a crash or a reader
    never sees half a checkpoint. Metadata must be plain (str, numbers, bool, None, and
    lists, tuples and str-keyed dicts of them); anything else is refused here, not at load.
    `half` stores floating-point tensors as float16, halving the file: how the bundled
    models ship. Loading copies them back into the float32 network.
    """
    _check_plain(metadata, "metadata")
    path = Path(path)
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    checkpoint = {"config": config.to_dict(), "state_dict": state, "metadata": metadata}
    with atomic_write(path) as handle:
        torch.save(checkpoint, handle)


def load_checkpoint(
    path_or_name: str | Path, device: str | torch.device = "cpu"
) -> tuple[AVSRModel, dict[str, Any]]:
    """The network in eval mode on `device`, and the checkpoint's metadata.

    `path_or_name` is a checkpoint file or a bundled model name (see `resolve_model`);
    the rebuilt network's config is `model.config`.
    """
    checkpoint = torch.load(resolve_model(path_or_name), map_location="cpu", weights_only=True)
    model = build_model(ModelConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), checkpoint["metadata"]


def ship(source: str | Path, name: str) -> Path:
    """Copy the trained checkpoint `source` into the bundled models as `name`, in float16."""
    if name not in BUNDLED_FILES:
        raise ValueError(f"{name!r} is not a bundled model name: {', '.join(BUNDLED_FILES)}")
    model, metadata = load_checkpoint(source)
    target = WEIGHTS_DIR / f"{name}.pt"
    save_checkpoint(target, model, model.config, half=True, **metadata)
    return target


def resolve_model(name_or_path: str | Path) -> Path:
    """The checkpoint file for a bundled model name ("dmf", ...) or a path to a checkpoint."""
    bundled = ", ".join(BUNDLED_FILES)
    if str(name_or_path) in BUNDLED_FILES:
        path = WEIGHTS_DIR / f"{name_or_path}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"bundled model {str(name_or_path)!r} has no weights installed ({path} is "
                f"missing); train one or pass a checkpoint path. Bundled models: {bundled}"
            )
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(name_or_path)!r} is neither a checkpoint file nor a bundled model name; "
            f"bundled models: {bundled}"
        )
    return path


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError if `value` holds anything `torch.load(weights_only=True)` may refuse."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-str key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN_SCALARS):
        raise TypeError(
            f"{where} is a {type(value).__name__}; checkpoint metadata must be plain "
            "(str, int, float, bool, None, and lists or str-keyed dicts of them)"
        )
