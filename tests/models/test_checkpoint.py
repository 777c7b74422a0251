"""Checkpoints: a round trip rebuilds the same network, bundled names resolve or fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import checkpoint
from models.checkpoint import load_checkpoint, resolve_model, save_checkpoint
from models.dmf import build_model
from tests.models.helpers import random_inputs, tiny_config


def test_round_trip_rebuilds_the_same_network(tmp_path: Path) -> None:
    config = tiny_config(kind="late", block="gru")
    model = build_model(config).eval()
    path = tmp_path / "late.pt"
    save_checkpoint(path, model, config, epoch=3, wer={"av": 0.25}, notes=["clean", None])

    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"config", "state_dict", "metadata"}
    assert [p.name for p in tmp_path.iterdir()] == ["late.pt"]  # no temporary file left

    loaded, metadata = load_checkpoint(path)
    assert loaded.config == config and not loaded.training
    assert metadata == {"epoch": 3, "wer": {"av": 0.25}, "notes": ["clean", None]}
    audio, video, lengths = random_inputs([8, 3])
    with torch.no_grad():
        expected, actual = model(audio, video, lengths), loaded(audio, video, lengths)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])


def test_metadata_that_would_not_load_is_refused_at_save(tmp_path: Path) -> None:
    config = tiny_config()
    with pytest.raises(TypeError, match=r"metadata\['manifest'\] is a PosixPath"):
        save_checkpoint(tmp_path / "m.pt", build_model(config), config, manifest=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bundled_name_loads_from_the_weights_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="bundled model 'dmf' has no weights"):
        resolve_model("dmf")
    config = tiny_config(kind="audio")
    save_checkpoint(tmp_path / "audio.pt", build_model(config), config)
    assert resolve_model("audio") == tmp_path / "audio.pt"
    assert load_checkpoint("audio")[0].config == config


def test_unknown_name_lists_the_bundled_models() -> None:
    with pytest.raises(FileNotFoundError, match="bundled models: dmf, early, late, audio, video"):
        resolve_model("dfm")


def test_shipping_in_float16_halves_the_file_and_keeps_the_outputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    config = tiny_config(kind="dmf")
    model = build_model(config).eval()
    source = tmp_path / "best.pt"
    save_checkpoint(source, model, config, epochs=2)
    shipped = checkpoint.ship(source, "dmf")
    assert shipped == tmp_path / "weights" / "dmf.pt"
    assert shipped.stat().st_size < 0.6 * source.stat().st_size
    loaded, metadata = load_checkpoint("dmf")
    assert metadata == {"epochs": 2}
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    audio, video, lengths = random_inputs([8, 3])
    with torch.no_grad():
        expected, actual = model(audio, video, lengths), loaded(audio, video, lengths)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=2e-2, rtol=0)
    with pytest.raises(ValueError, match="not a bundled model name"):
        checkpoint.ship(source, "best")
