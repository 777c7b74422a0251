"""Default sizes: the fusion kinds have about the same budget, so benchmarks compare fusion."""

from __future__ import annotations

import pytest

from models.config import BLOCKS, KINDS, ModelConfig
from models.dmf import build_model, count_parameters

BUDGET_TOLERANCE = 1.2  # largest / smallest parameter count among the compared kinds


@pytest.mark.parametrize("block", BLOCKS)
def test_default_kinds_have_similar_parameter_counts(block: str) -> None:
    counts = {}
    for kind in KINDS:
        config = ModelConfig(kind=kind, block=block)
        counts[kind] = count_parameters(build_model(config))
        print(f"{kind:>5} {block:>4} d_model={config.d_model:>3}: {counts[kind]:>9,} parameters")
    fusion = [counts[kind] for kind in ("dmf", "early", "late")]
    assert max(fusion) / min(fusion) <= BUDGET_TOLERANCE
    assert max(counts.values()) / min(counts.values()) <= BUDGET_TOLERANCE
