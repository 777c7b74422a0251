"""Test-time normalisation: the visual trunk normalises each clip by that clip's own statistics."""

from __future__ import annotations

import torch

from avsr.transcribe import Recognizer
from models.checkpoint import save_checkpoint
from models.dmf import build_model
from tests.models.helpers import random_inputs, tiny_config


def trained_looking_frontend():
    """A tiny visual front end in eval mode whose batch norms hold arbitrary running statistics."""
    torch.manual_seed(0)
    frontend = build_model(tiny_config(kind="video")).video_frontend
    for module in frontend.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return frontend.eval()


def buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.named_buffers()}


def test_a_clip_is_normalised_by_itself_alone_not_by_the_batch_or_the_training_set():
    frontend = trained_looking_frontend()
    _, video, lengths = random_inputs([9, 5, 7], seed=1)
    with torch.inference_mode():
        stored = frontend.pooled(video, lengths)
        before = buffers(frontend)
        frontend.clip_norm = True
        batched = frontend.pooled(video, lengths)
        alone = [frontend.pooled(video[i : i + 1, :n], lengths[i : i + 1])[0]
                 for i, n in enumerate([9, 5, 7])]
        for module in frontend.modules():  # other stored statistics: no effect
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(3.0)
        shifted = frontend.pooled(video, lengths)
    for clip, n in enumerate([9, 5, 7]):
        torch.testing.assert_close(batched[clip, :n], alone[clip])
        assert not torch.allclose(batched[clip, :n], stored[clip, :n], atol=1e-3)
        assert torch.all(batched[clip, n:] == 0)  # padding stays zero
    torch.testing.assert_close(shifted, batched)
    after = buffers(frontend)
    assert all(torch.equal(after[name], value + (3.0 if name.endswith("running_mean") else 0.0))
               for name, value in before.items())  # the running statistics were only read, never updated


def test_training_ignores_clip_norm():
    frontend = trained_looking_frontend()
    _, video, lengths = random_inputs([6, 6], seed=2)
    frontend.train()
    expected = frontend.pooled(video, lengths)
    frontend.clip_norm = True
    torch.testing.assert_close(frontend.pooled(video, lengths), expected)


def test_recognizers_normalise_per_clip_unless_adapted_or_told_not_to(tmp_path):
    config = tiny_config(kind="dmf")
    model = build_model(config)
    save_checkpoint(tmp_path / "plain.pt", model, config, data="synthetic")
    save_checkpoint(tmp_path / "adapted.pt", model, config, data="synthetic", adaptation={"steps": 1})
    assert Recognizer.load(tmp_path / "plain.pt", "cpu").model.video_frontend.clip_norm
    assert not Recognizer.load(tmp_path / "adapted.pt", "cpu").model.video_frontend.clip_norm
    assert not Recognizer.load(tmp_path / "plain.pt", "cpu", clip_norm=False).model.video_frontend.clip_norm
    assert Recognizer.load(tmp_path / "adapted.pt", "cpu", clip_norm=True).model.video_frontend.clip_norm
    assert Recognizer.load("audio", "cpu").model.video_frontend is None  # nothing to normalise
