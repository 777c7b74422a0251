"""The models that ship in the package: each loads without pickled code and rebuilds its network."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import BUNDLED_MODELS, WEIGHTS_DIR, load_checkpoint
from models.config import supported_modalities
from tests.models.helpers import random_inputs

MAX_BUNDLED_BYTES = 20 * 2**20  # each shipped checkpoint stays under 20 MiB


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_bundled_model_loads_weights_only_and_runs(name: str) -> None:
    path = WEIGHTS_DIR / f"{name}.pt"
    assert path.stat().st_size < MAX_BUNDLED_BYTES
    raw = torch.load(path, weights_only=True)  # raises if anything but plain data is inside
    assert raw["config"]["kind"] == name
    assert "GRID corpus" in raw["metadata"]["data"]
    model, _ = load_checkpoint(name)
    audio, video, lengths = random_inputs([10, 7], crop_size=model.config.crop_size)
    with torch.no_grad():
        outputs = model(audio, video, lengths)
    assert sorted(outputs) == sorted(supported_modalities(name))
    for log_probs in outputs.values():
        assert log_probs.shape[:2] == (2, 10)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 10))
