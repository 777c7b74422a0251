"""`avsr adapt` on a tiny synthetic speaker: fine-tuning, the CLI, its refusals, batch-norm statistics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from avsr import adapt, cli
from avsr.adapt import AdaptConfig, estimate_norm_stats, fine_tune, mean_loss, select_parameters
from avsr.train import Example, load_examples
from avsr.transcribe import Recognizer
from data.manifest import Utterance, read_manifest
from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import ModelConfig
from models.dmf import AVSRModel, build_model
from models.frontends import standardize
from models.inputs import crop, pixels
from models.tokenizer import encode
from preprocessing import cache
from preprocessing.audio import SAMPLES_PER_VIDEO_FRAME
from preprocessing.clip import Clip
from preprocessing.mouth import MOUTH_SIZE

FRAMES = 10  # per clip: 0.4 s, room for CTC to spell the short words below
WORDS = ("bin", "lay", "set", "red")
N_CLIPS = 8  # more than babble's 6 other talkers, which adaptation draws from the speaker's own clips
STEPS = 10
LR = 3e-3
TINY = ModelConfig(kind="dmf", d_model=16, levels=1, visual_channels=(4, 8, 8))


def tiny_config(**overrides) -> AdaptConfig:
    return AdaptConfig(**dict(steps=STEPS, lr=LR) | overrides)


def write_manifest(path: Path, rows: list[tuple[Path, str]]) -> Path:
    lines = ["video\ttranscript"] + [f"{video}\t{transcript}" for video, transcript in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def garbage(folder: Path, name: str) -> Path:
    """A file no decoder reads, and not in any cache: preprocessing fails on it at once."""
    video = folder / name
    video.write_bytes(b"not a video, only " + name.encode())
    return video


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_output(out: Path) -> bool:
    """Neither `out` nor a temporary file of it (atomic_write's hidden `.<name>.*.tmp`)."""
    return not out.parent.exists() or not [p for p in out.parent.iterdir() if out.name in p.name]


@pytest.fixture(scope="module")
def speaker(tmp_path_factory) -> tuple[Path, Path, list[Utterance]]:
    """A manifest of one synthetic speaker's clips, the cache holding them, and its utterances."""
    folder = tmp_path_factory.mktemp("speaker")
    cache_dir = folder / "cache"
    rng = np.random.default_rng(0)
    rows = []
    for index in range(N_CLIPS):
        video = folder / f"clip{index}.mp4"
        video.write_bytes(f"adaptation clip {index}".encode())  # the cache knows a clip by its bytes
        clip = Clip(
            mouths=rng.integers(0, 256, (FRAMES, MOUTH_SIZE, MOUTH_SIZE), dtype=np.uint8),
            audio=(0.1 * rng.standard_normal(FRAMES * SAMPLES_PER_VIDEO_FRAME)).astype(np.float32),
            detected=np.ones(FRAMES, dtype=bool),
        )
        cache.store_clip(cache_dir, video, clip)
        rows.append((Path(video.name), WORDS[index % len(WORDS)]))
    manifest = write_manifest(folder / "manifest.tsv", rows)
    return manifest, cache_dir, read_manifest(manifest)


@pytest.fixture(scope="module")
def examples(speaker) -> list[Example]:
    _, cache_dir, utterances = speaker
    return load_examples(utterances, cache_dir, progress=False)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A small untrained DMF checkpoint, stored in float32."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, build_model(TINY).eval(), TINY, data="synthetic test clips")
    return path


def test_fine_tuning_lowers_the_loss_on_the_clips(tiny_ckpt, examples):
    model, _ = load_checkpoint(tiny_ckpt)
    before = mean_loss(model, examples)
    losses = fine_tune(model, examples, tiny_config(), progress=False)
    assert not any(module.training for module in model.modules())  # ready to use, as a loaded model is
    assert all(p.requires_grad for p in model.parameters())
    assert len(losses) == STEPS and all(np.isfinite(losses))
    assert mean_loss(model, examples) < before


def test_the_cli_writes_an_adapted_checkpoint_and_leaves_the_start_alone(
    speaker, tiny_ckpt, tmp_path, capsys
):
    manifest, cache_dir, _ = speaker
    start = digest(tiny_ckpt)
    out = tmp_path / "adapted.pt"
    argv = ["adapt", str(manifest), "--model", str(tiny_ckpt), "--out", str(out), "--cache", str(cache_dir),
            "--steps", str(STEPS), "--lr", str(LR)]
    assert cli.main(argv) == 0
    assert str(out) in capsys.readouterr().out
    assert digest(tiny_ckpt) == start  # the starting checkpoint is only read

    raw = torch.load(out, weights_only=True)  # plain data only, as every checkpoint
    original, original_metadata = load_checkpoint(tiny_ckpt)
    assert raw["config"] == original.config.to_dict()
    adapted, metadata = load_checkpoint(out)
    assert metadata["data"] == original_metadata["data"]
    assert metadata["adapted_from"] == str(tiny_ckpt)
    summary = metadata["adaptation"]
    assert summary["clips"] == N_CLIPS and summary["failed"] == []
    assert summary["config"]["steps"] == STEPS and summary["config"]["lr"] == LR
    assert summary["loss_after"] < summary["loss_before"]

    old, new = original.state_dict(), adapted.state_dict()
    assert old.keys() == new.keys()
    assert all(old[key].shape == new[key].shape for key in old)
    moved = max((new[key] - old[key]).abs().max().item() for key in old if old[key].is_floating_point())
    assert moved > 1e-3  # well above float16's rounding of the stored weights

    recognizer = Recognizer.load(out, "cpu")  # where a model is accepted, so is the adapted one
    assert recognizer.model.config == original.config


def test_clips_without_a_transcript_are_refused(speaker, tiny_ckpt, tmp_path, capsys):
    manifest, cache_dir, utterances = speaker
    rows = [(u.video, u.transcript) for u in utterances]
    rows[2] = (rows[2][0], "")
    bad = write_manifest(tmp_path / "untranscribed.tsv", rows)
    out = tmp_path / "adapted.pt"
    argv = ["adapt", str(bad), "--model", str(tiny_ckpt), "--out", str(out), "--cache", str(cache_dir)]
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert str(bad) in error and "no transcript" in error and "clip2.mp4" in error
    assert no_output(out)


def test_too_few_clips_are_refused(speaker, tiny_ckpt, tmp_path, capsys):
    manifest, cache_dir, utterances = speaker
    rows = [(u.video, u.transcript) for u in utterances[: adapt.MIN_CLIPS - 1]]
    few = write_manifest(tmp_path / "few.tsv", rows)
    out = tmp_path / "adapted.pt"
    argv = ["adapt", str(few), "--model", str(tiny_ckpt), "--out", str(out), "--cache", str(cache_dir)]
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert str(few) in error and f"{len(rows)} clip(s)" in error and f"at least {adapt.MIN_CLIPS}" in error
    assert no_output(out)


def test_too_few_clips_left_after_preprocessing_failures_are_refused(speaker, tiny_ckpt, tmp_path, capsys):
    manifest, cache_dir, utterances = speaker
    rows = [(u.video, u.transcript) for u in utterances[: adapt.MIN_CLIPS - 1]]
    rows += [(garbage(tmp_path, f"junk{index}.mp4"), "bin") for index in range(2)]
    mixed = write_manifest(tmp_path / "mixed.tsv", rows)
    out = tmp_path / "adapted.pt"
    argv = ["adapt", str(mixed), "--model", str(tiny_ckpt), "--out", str(out), "--cache", str(cache_dir),
            "--workers", "1"]
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert str(mixed) in error
    assert f"only {adapt.MIN_CLIPS - 1} of {len(rows)} clips could be preprocessed" in error
    assert "junk0.mp4" in error and "junk1.mp4" in error
    assert no_output(out)


def test_a_clip_that_fails_is_left_out_and_the_rest_adapt(speaker, tiny_ckpt, tmp_path, capsys):
    manifest, cache_dir, utterances = speaker
    rows = [(u.video, u.transcript) for u in utterances] + [(garbage(tmp_path, "broken.mp4"), "red")]
    mixed = write_manifest(tmp_path / "mixed.tsv", rows)
    out = tmp_path / "adapted.pt"
    argv = ["adapt", str(mixed), "--model", str(tiny_ckpt), "--out", str(out), "--cache", str(cache_dir),
            "--workers", "1", "--steps", "2", "--lr", str(LR)]
    assert cli.main(argv) == 0
    error = capsys.readouterr().err
    assert "left out" in error and "broken.mp4" in error
    _, metadata = load_checkpoint(out)
    assert metadata["adaptation"]["clips"] == N_CLIPS
    assert [("broken.mp4" in message) for message in metadata["adaptation"]["failed"]] == [True]


def test_the_fewest_clips_accepted_adapt(tiny_ckpt, examples):
    model, _ = load_checkpoint(tiny_ckpt)
    losses = fine_tune(model, examples[: adapt.MIN_CLIPS], tiny_config(), progress=False)
    assert len(losses) == STEPS


def batch_norms(model: AVSRModel) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.video_frontend.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def smooth_examples(count: int) -> list[Example]:
    """Clips of soft lighting gradients, brighter to one side: nothing like the fixture's noise."""
    ramp = np.linspace(0.0, 1.0, MOUTH_SIZE)
    examples = []
    for index in range(count):
        image = np.outer(ramp ** (1 + index), 1 - 0.5 * ramp)
        frames = [image * (120 + 10 * t + 10 * index) for t in range(FRAMES)]
        mouths = np.clip(np.stack(frames), 0, 255).astype(np.uint8)
        target = np.array(encode("bin"), dtype=np.int64)
        audio = np.zeros(FRAMES * SAMPLES_PER_VIDEO_FRAME, dtype=np.float32)
        examples.append(Example(f"smooth{index}", "bin", target, mouths, audio))
    return examples


@torch.inference_mode()
def stem_statistics(model: AVSRModel, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance per channel of the stem's output on `examples` (all as long)."""
    frontend = model.video_frontend
    video = torch.stack([pixels(crop(example.mouths, frontend.crop_size)) for example in examples])
    lengths = torch.full((len(examples),), video.shape[1])
    x = frontend.stem(standardize(video, lengths).unsqueeze(1)).transpose(1, 2).flatten(0, 1)
    return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))


def test_norm_statistics_become_those_of_the_clips(tiny_ckpt, examples):
    clips = examples[:4]  # of one length: one batch, so the estimate is that batch's statistics
    model, _ = load_checkpoint(tiny_ckpt)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    for norm in batch_norms(model):
        norm.running_mean.fill_(5.0)
        norm.running_var.fill_(7.0)

    estimate_norm_stats(model, clips)
    mean, var = stem_statistics(model, clips)
    first = model.video_frontend.trunk[0]
    torch.testing.assert_close(first.running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first.running_var, var, rtol=1e-4, atol=1e-5)
    noisy = [norm.running_mean.clone() for norm in batch_norms(model)]
    assert all(not torch.any(stats == 5.0) for stats in noisy)
    assert all(norm.momentum == 0.1 for norm in batch_norms(model))
    assert not any(module.training for module in model.modules())
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())

    smooth = smooth_examples(4)
    estimate_norm_stats(model, smooth)
    mean, _ = stem_statistics(model, smooth)
    torch.testing.assert_close(first.running_mean, mean, rtol=1e-4, atol=1e-5)
    for before, norm in zip(noisy, batch_norms(model), strict=True):
        assert not torch.allclose(before, norm.running_mean, atol=1e-3)
    assert not any(module.training for module in model.modules())


def frontend_parameters(model: AVSRModel) -> set[int]:
    return {id(p) for frontend in (model.audio_frontend, model.video_frontend) for p in frontend.parameters()}


@pytest.mark.parametrize("parts", ["frontends", "blocks", "all"])
def test_select_parameters_freezes_the_rest(parts):
    model = build_model(TINY)
    frontends = frontend_parameters(model)
    chosen = {id(p) for p in select_parameters(model, parts)}
    every = {id(p) for p in model.parameters()}
    expected = {"frontends": frontends, "blocks": every - frontends, "all": every}[parts]
    assert frontends and every - frontends  # both groups exist in a DMF model
    assert chosen == expected
    assert all(p.requires_grad == (id(p) in expected) for p in model.parameters())
    if parts == "frontends":
        assert not any(p.requires_grad for p in model.shared_blocks.parameters())
        assert not any(p.requires_grad for p in model.heads.parameters())
