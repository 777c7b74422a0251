"""Numeric precision: bf16 autocast where it is the faster choice, for training and inference alike."""

from __future__ import annotations

import torch

from models.config import BlockKind

# bf16 autocast on the CPU, by block: measured on a 2-core AMD EPYC with avx512_bf16 (batches
# of 16 3-s clips), it trains conv models 1.6-1.9x faster (video 1.0 vs 1.8 s per step, dmf on
# precomputed visual features 0.19 vs 0.30 s) but GRU models 1.2x slower; LSTM models 1.15x
# faster (dmf at width 232, on precomputed visual features: 0.33 vs 0.38 s; GRU's 0.66 s in fp32).
CPU_BF16: dict[BlockKind, bool] = {"conv": True, "gru": False, "lstm": True, "attention": True}


def default_bf16(device: torch.device, block: BlockKind) -> bool:
    """Whether bf16 autocast is the faster choice: on GPUs that have it, on CPUs see CPU_BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return CPU_BF16[block]


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on `device` if `bf16`, else a context that changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
