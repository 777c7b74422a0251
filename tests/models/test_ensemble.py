"""Ensembles: members on one visual trunk run as each alone would, and are named and loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import checkpoint
from models.checkpoint import BUNDLED_ENSEMBLES, save_checkpoint
from models.dmf import AVSRModel, build_model
from models.ensemble import Ensemble, load_model, member_names
from tests.models.helpers import on_first_trunk, random_inputs, tiny_config


def members_on_one_trunk(count: int) -> list[AVSRModel]:
    """Differently initialised DMF models whose visual trunks (all but the projection) are the first's."""
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(build_model(tiny_config(kind="dmf")).eval())
    return on_first_trunk(models)


def test_members_run_as_each_alone_with_the_trunk_run_once(monkeypatch) -> None:
    members = members_on_one_trunk(3)
    ensemble = Ensemble(members).eval()
    audio, video, lengths = random_inputs([9, 6])
    runs = []
    pooled = type(members[0].video_frontend).pooled
    monkeypatch.setattr(type(members[0].video_frontend), "pooled",
                        lambda self, *args: runs.append(1) or pooled(self, *args))
    with torch.no_grad():
        outputs = ensemble(audio, video, lengths)
        assert len(runs) == 1
        alone = [member(audio, video, lengths) for member in members]
    assert sorted(outputs) == ["audio", "av", "video"]
    for head, log_probs in outputs.items():
        assert log_probs.shape[:3] == (2, 3, 9)
        for index, member in enumerate(alone):
            torch.testing.assert_close(log_probs[:, index], member[head])
        assert not torch.equal(log_probs[:, 0], log_probs[:, 1])  # the members differ
    assert ensemble.available_heads(True, False) == ["audio"]
    assert ensemble.video_frontend is members[0].video_frontend and ensemble.config == members[0].config


def test_members_that_cannot_run_together_are_refused() -> None:
    with pytest.raises(ValueError, match="two members or more"):
        Ensemble(members_on_one_trunk(1))
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="of one kind, got dmf, late"):
        Ensemble([*members_on_one_trunk(1), build_model(tiny_config(kind="late"))])
    torch.manual_seed(1)
    with pytest.raises(ValueError, match="share their visual trunk"):
        Ensemble([*members_on_one_trunk(1), build_model(tiny_config(kind="dmf"))])
    # Stream widths may differ: only the trunk is shared.
    Ensemble(on_first_trunk([*members_on_one_trunk(2), build_model(tiny_config(kind="dmf", audio_width=48))]))


def test_names_join_members_and_bundled_ensembles_expand(tmp_path: Path) -> None:
    assert member_names("dmf") == ["dmf"]
    assert member_names("dmf+runs/a/best.pt") == ["dmf", "runs/a/best.pt"]
    assert member_names("dmf-ensemble") == list(BUNDLED_ENSEMBLES["dmf-ensemble"])
    odd = tmp_path / "a+b.pt"
    odd.write_bytes(b"")
    assert member_names(odd) == [str(odd)]  # a file of that name is one model


def test_an_ensemble_loads_from_its_members_files(tmp_path: Path, monkeypatch) -> None:
    paths = []
    for index, member in enumerate(members_on_one_trunk(2)):
        paths.append(tmp_path / f"m{index}.pt")
        save_checkpoint(paths[-1], member, member.config, data=f"member {index}")
    ensemble, metadata = load_model(f"{paths[0]}+{paths[1]}")
    assert isinstance(ensemble, Ensemble) and not ensemble.training
    assert metadata == {"data": "member 0"}
    single, _ = load_model(paths[1])
    assert isinstance(single, AVSRModel)
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="bundled model 'dmf' has no weights"):
        load_model("dmf-ensemble")
