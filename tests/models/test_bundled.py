"""The models that ship in the package: each loads without pickled code and rebuilds its network."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import BUNDLED_ENSEMBLES, BUNDLED_FILES, WEIGHTS_DIR, load_checkpoint
from models.config import KINDS, supported_modalities
from models.ensemble import Ensemble, load_model
from tests.models.helpers import random_inputs

MAX_BUNDLED_BYTES = 20 * 2**20  # each shipped checkpoint stays under 20 MiB


@pytest.mark.parametrize("name", BUNDLED_FILES)
def test_bundled_model_loads_weights_only_and_runs(name: str) -> None:
    path = WEIGHTS_DIR / f"{name}.pt"
    assert path.stat().st_size < MAX_BUNDLED_BYTES
    raw = torch.load(path, weights_only=True)  # raises if anything but plain data is inside
    kind = raw["config"]["kind"]
    assert kind == name if name in KINDS else name.startswith(f"{kind}-")  # ensemble members: <kind>-<n>
    assert "GRID corpus" in raw["metadata"]["data"]
    model, _ = load_checkpoint(name)
    audio, video, lengths = random_inputs([10, 7], crop_size=model.config.crop_size)
    with torch.no_grad():
        outputs = model(audio, video, lengths)
    assert sorted(outputs) == sorted(supported_modalities(kind))
    for log_probs in outputs.values():
        assert log_probs.shape[:2] == (2, 10)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 10))


@pytest.mark.parametrize("name", BUNDLED_ENSEMBLES)
def test_bundled_ensemble_members_share_one_trunk(name: str) -> None:
    ensemble, _ = load_model(name)  # Ensemble refuses members with different visual trunks
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == len(BUNDLED_ENSEMBLES[name])
