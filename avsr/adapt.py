"""`avsr adapt`: make a trained model a new speaker's own with a few labelled clips of them.

Lipreading, and to a lesser degree listening, depends on the speaker: a model trained on one
GRID talker misreads another. Adaptation starts from a trained checkpoint and

1. re-estimates the batch-norm statistics of the visual front end on the speaker's frames
   (no labels needed: mouths, lighting and camera differ by speaker), then
2. fine-tunes the chosen parameters (`AdaptConfig.parts`) for a fixed number of steps with
   training's augmentation (noise, SpecAugment, crops and flips, modality dropout) and an
   L2 pull towards the starting weights, the guards against memorising a handful of clips.

The step count and learning rate were chosen by cross-validation on GRID speaker s4 (`python -m
avsr.bench.adapt`: 80 steps beat 40, and 120 gain a little for 1.5x the time; for the bundled
DMF trained with dropout 0.3, 2e-3 reached 35 % audiovisual WER where 1e-3 stayed at 43 %); the
other settings are first guesses, not yet swept.
The result is an ordinary checkpoint: every command that takes a model name takes its path.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn
from tqdm import tqdm

from avsr.augment import AugmentConfig
from avsr.train import (
    LOSS,
    Batcher,
    Example,
    TrainConfig,
    batch_loss,
    head_weights,
    load_examples,
    optimizer_step,
    warmup_cosine,
)
from data.manifest import Utterance
from data.noise import BABBLE, BABBLE_TALKERS, condition_rng
from models.checkpoint import ADAPTATION, load_checkpoint, save_checkpoint
from models.dmf import AVSRModel
from models.inputs import crop, pixels
from models.precision import default_bf16
from models.tokenizer import encode
from preprocessing.cache import Failure, build_cache

Part = Literal["all", "frontends", "blocks"]
PARTS: tuple[Part, ...] = get_args(Part)
MIN_CLIPS = 4  # fewest labelled clips that adapt a model (fewer are memorised, not learned from)


class AdaptError(ValueError):
    """The clips given cannot adapt a model; the message says why and names the manifest."""


@dataclass
class AdaptConfig:
    """How a model is adapted; stored in the adapted checkpoint's metadata."""

    parts: Part = "all"  # what is fine-tuned: all, the front ends, or the temporal blocks and heads
    steps: int = 80  # optimiser steps (each sees up to batch_size augmented clips)
    lr: float = 2e-3  # peak learning rate, after a warm-up of a tenth of the steps, cosine to 0
    batch_size: int = 8  # clips per step, drawn in a seeded shuffle of the speaker's clips
    anchor: float = 1e-1  # weight of the squared distance to the starting weights (L2-SP; by CV)
    aux_weight: float = 0.5  # loss weight of the audio-only and video-only heads of a fusion model
    norm_stats: bool = True  # re-estimate the visual batch-norm statistics on the speaker first
    grad_clip: float = 5.0  # largest gradient norm
    seed: int = 0
    augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(clean_prob=0.4, snr_db=(-5.0, 20.0))
    )

    def __post_init__(self) -> None:
        if self.parts not in PARTS:
            raise ValueError(f"unknown parts {self.parts!r}; expected one of {PARTS}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["augment"] |= {key: list(value) for key, value in data["augment"].items()
                            if isinstance(value, tuple)}
        return data


def labelled(utterances: Sequence[Utterance], manifest: str | Path) -> list[Utterance]:
    """`utterances` if every one has a transcript and there are at least MIN_CLIPS; else AdaptError."""
    missing = [u.video.name for u in utterances if not encode(u.transcript)]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise AdaptError(
            f"{manifest}: {len(missing)} of {len(utterances)} clips have no transcript ({shown}); "
            "adaptation learns from what was said, so every clip needs one"
        )
    if len(utterances) < MIN_CLIPS:
        raise AdaptError(
            f"{manifest}: {len(utterances)} clip(s); adaptation needs at least {MIN_CLIPS} "
            "(about 10 clips, 30 s of speech, is what it was measured with)"
        )
    return list(utterances)


def prepare_examples(
    utterances: Sequence[Utterance],
    manifest: str | Path,
    cache_dir: str | Path,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[Example], list[Failure]]:
    """Preprocess (or read from the cache) the labelled clips; the clips and those that failed.

    Clips that fail preprocessing are left out; AdaptError if fewer than MIN_CLIPS are left.
    """
    utterances = labelled(utterances, manifest)
    report = build_cache([u.video for u in utterances], cache_dir, workers, progress=progress)
    failed = {failure.video for failure in report.failures}
    usable = [u for u in utterances if u.video not in failed]
    if len(usable) < MIN_CLIPS:
        reasons = "; ".join(failure.message for failure in report.failures)
        raise AdaptError(
            f"{manifest}: only {len(usable)} of {len(utterances)} clips could be preprocessed "
            f"(at least {MIN_CLIPS} are needed): {reasons}"
        )
    return load_examples(usable, Path(cache_dir), progress=False), report.failures


def select_parameters(model: AVSRModel, parts: Part) -> list[nn.Parameter]:
    """Mark the parameters of `parts` trainable and the rest frozen; the trainable ones."""
    frontends = [m for m in (model.audio_frontend, model.video_frontend) if m is not None]
    model.requires_grad_(parts != "frontends")
    for frontend in frontends:
        frontend.requires_grad_(parts != "blocks")
    return [p for p in model.parameters() if p.requires_grad]


@torch.inference_mode()
def estimate_norm_stats(model: AVSRModel, examples: Sequence[Example]) -> None:
    """Set the visual front end's batch-norm statistics to those of `examples`' centred crops.

    Clips of one length are one batch; the statistics of several batches are averaged.
    """
    frontend = model.video_frontend
    if frontend is None:
        return
    norms = [m for m in frontend.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    device = next(model.parameters()).device
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch
    frontend.train()
    by_length = defaultdict(list)  # a batch of equal lengths has no padding frames to count
    for example in examples:
        by_length[example.frames].append(pixels(crop(example.mouths, frontend.crop_size)))
    for frames, crops in by_length.items():
        frontend(torch.stack(crops).to(device), torch.full((len(crops),), frames, device=device))
    for norm in norms:
        norm.momentum = 0.1  # torch's default, as the trained model had
    frontend.eval()


def _augmentation(augment: AugmentConfig, clips: int) -> AugmentConfig:
    """`augment` without babble if there are too few clips to make it of (each one's babble is the others)."""
    if clips > BABBLE_TALKERS or BABBLE not in augment.noise_kinds:
        return augment
    kinds = tuple(kind for kind in augment.noise_kinds if kind != BABBLE)
    if not kinds:  # babble was the only noise: the clips stay clean
        return replace(augment, clean_prob=1.0)
    return replace(augment, noise_kinds=kinds)


def _train_mode(model: AVSRModel) -> None:
    """Dropout on, batch norm frozen: a batch of one speaker's few clips must not move its statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def fine_tune(
    model: AVSRModel, examples: Sequence[Example], config: AdaptConfig, progress: bool = True
) -> list[float]:
    """Adapt `model` in place to `examples` as `config` says; the training loss of every step."""
    if len(examples) < 1:
        raise ValueError("no clips to adapt to")
    device = next(model.parameters()).device
    bf16 = default_bf16(device, model.config.block)
    if config.norm_stats:
        estimate_norm_stats(model, examples)
    trainable = select_parameters(model, config.parts)
    start = [p.detach().clone() for p in trainable]

    def penalty() -> Tensor:  # the L2 pull towards the starting weights
        return config.anchor * sum(((p - p0) ** 2).sum() for p, p0 in zip(trainable, start, strict=True))

    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(max(1, config.steps // 10), config.steps)
    )
    train_config = TrainConfig(model=model.config, augment=_augmentation(config.augment, len(examples)),
                               seed=config.seed, bf16=bf16, grad_clip=config.grad_clip)
    pool = {example.key: example.audio for example in examples}  # babble of the speaker's own clips
    batcher = Batcher(examples, train_config, pool)
    weights = head_weights(model.config.kind, config.aux_weight)
    size = min(config.batch_size, len(examples))
    losses = []
    _train_mode(model)
    order: list[int] = []
    bar = tqdm(range(config.steps), desc="adapting", unit="step", disable=not progress)
    for step in bar:
        if len(order) < size:
            order += condition_rng(config.seed, "adapt-order", step).permutation(len(examples)).tolist()
        indices, order = order[:size], order[size:]
        loss = optimizer_step(model, batcher(indices, epoch=step).to(device), optimizer, trainable,
                              weights, train_config, penalty)[LOSS]
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    model.requires_grad_(True)
    return losses


@torch.inference_mode()
def mean_loss(model: AVSRModel, examples: Sequence[Example], aux_weight: float = 0.5) -> float:
    """The model's CTC loss on `examples` as they are (no augmentation): adaptation should lower it."""
    model.eval()
    batcher = Batcher(examples, TrainConfig(model=model.config), {})
    batch = batcher(range(len(examples)))
    outputs = model(batch.audio, batch.video, batch.lengths)
    return float(batch_loss(outputs, batch, head_weights(model.config.kind, aux_weight)))


def adapt(
    model_name: str | Path,
    utterances: Sequence[Utterance],
    manifest: str | Path,
    out: str | Path,
    cache_dir: str | Path,
    config: AdaptConfig | None = None,
    *,
    device: str = "cpu",
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Adapt model `model_name` to the manifest's clips and save it to `out`; a summary of the run.

    The starting checkpoint is only read, never written.
    """
    config = config or AdaptConfig()
    started = time.perf_counter()
    examples, failures = prepare_examples(utterances, manifest, cache_dir, workers, progress)
    prepared = time.perf_counter()
    torch.manual_seed(config.seed)
    model, metadata = load_checkpoint(model_name, device)
    before = mean_loss(model, examples, config.aux_weight)
    losses = fine_tune(model, examples, config, progress)
    after = mean_loss(model, examples, config.aux_weight)
    summary = {
        "model": str(model_name),
        "clips": len(examples),
        "failed": [failure.message for failure in failures],
        "seconds": round(time.perf_counter() - prepared, 1),
        "preprocess_seconds": round(prepared - started, 1),
        "loss_before": before,
        "loss_after": after,
        "config": config.to_dict(),
    }
    adapted = metadata | {"adapted_from": str(model_name), ADAPTATION: summary}
    save_checkpoint(out, model, model.config, half=True, **adapted)
    return summary | {"losses": losses}
