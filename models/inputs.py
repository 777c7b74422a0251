"""The visual model input: stored uint8 mouth crops to the float window the network reads."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PIXEL_MAX = 255  # uint8 mouth crops are scaled by this into the model's [0, 1]


def crop(mouths: np.ndarray, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(T, S, S) crops -> (T, size, size): the same random window for every frame, or the centre.

    A view of `mouths`, not a copy.
    """
    margin = mouths.shape[-1] - size
    if margin < 0:
        raise ValueError(f"mouth crops of {mouths.shape[-1]} px are smaller than the {size} px asked")
    top, left = rng.integers(margin + 1, size=2) if rng is not None else (margin // 2, margin // 2)
    return mouths[:, top : top + size, left : left + size]


def pixels(crops: np.ndarray) -> Tensor:
    """uint8 crops (..., H, W), possibly a strided view, as float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).float() / PIXEL_MAX
