"""Greedy CTC decoding: the most likely class per frame, repeats merged, blanks dropped."""

from __future__ import annotations

import torch
from torch import Tensor

from models.tokenizer import decode


def greedy_decode(log_probs: Tensor, lengths: Tensor) -> list[str]:
    """Transcript of each clip from (batch, T, VOCAB_SIZE) log-probabilities."""
    best = log_probs.argmax(dim=-1).cpu()
    return [
        decode(torch.unique_consecutive(path[:length]).tolist())
        for path, length in zip(best, lengths.tolist(), strict=True)
    ]
