"""Speed of one training step of each model in the bundled recipe: where `avsr train`'s time goes.

    .venv/bin/python -m avsr.bench.train_speed --json runs/bench_train_speed.json [--device cuda]

Times whole optimiser steps (forward, CTC losses of every head, backward, gradient clipping,
AdamW) on random inputs shaped like a batch of GRID clips, as `avsr train` runs them: the
front end (`trunk`) on mouth crops, the fusion models on the frozen trunk's pooled features
(`--init-visual`) and log-mel, the audio model on log-mel. Each case runs WARMUP steps, then the median of
`--steps`, with bf16 autocast off and on. `--profile` adds the operators that took the most
time in one step of each case (torch.profiler), to find what to speed up on a new device.
No data files are read, so it runs anywhere `torch` does, e.g. on a lent GPU as it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from avsr.train import LOSS, Batch, TrainConfig, build_optimizer, frozen_visual, head_weights, optimizer_step
from models.config import ModelConfig, supported_modalities
from models.dmf import AVSRModel, build_model
from models.tokenizer import VOCAB_SIZE
from preprocessing.audio import AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS

CLIP_FRAMES = 75  # video frames of a 3-s GRID clip
TARGET_CHARS = 30  # characters of a GRID sentence, about ("bin blue at f two now")
WARMUP = 3  # steps before timing: allocator, cuDNN plans and autocast caches settle
# (name, kind, block, width, pooled): the bundled recipe's models, as `avsr train` steps them, and
# DMF with the other blocks at the widths their recipes use (0: the kind's default width).
CASES = (
    ("trunk", "video", "conv", 0, False),
    ("dmf", "dmf", "gru", 0, True),
    ("dmf-lstm", "dmf", "lstm", 232, True),
    ("dmf-attention", "dmf", "attention", 192, True),
    ("late", "late", "gru", 0, True),
    ("early", "early", "gru", 0, True),
    ("audio", "audio", "gru", 0, False),
)
PROFILE_ROWS = 12  # operators listed per profiled case


def random_batch(model: AVSRModel, batch_size: int, device: torch.device, pooled: bool) -> Batch:
    """Inputs and CTC targets of `batch_size` full-length clips, with every head's loss counted."""
    config = model.config
    audio = torch.randn(batch_size, CLIP_FRAMES * AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS)
    if pooled:
        video = torch.randn(batch_size, CLIP_FRAMES, config.visual_channels[-1])
    else:
        video = torch.rand(batch_size, CLIP_FRAMES, config.crop_size, config.crop_size)
    batch = Batch(
        audio if config.kind != "video" else None,
        video if config.kind != "audio" else None,
        torch.full((batch_size,), CLIP_FRAMES),
        torch.randint(1, VOCAB_SIZE, (batch_size, TARGET_CHARS)),
        torch.full((batch_size,), TARGET_CHARS),
        {head: torch.ones(batch_size) for head in supported_modalities(config.kind)},
    )
    return batch.to(device)


def step_seconds(
    model_config: ModelConfig, pooled: bool, bf16: bool, args: argparse.Namespace
) -> tuple[list[float], str | None]:
    """Seconds of each timed step of one case, and its profile table if asked for."""
    device = torch.device(args.device)
    kind = model_config.kind
    model = build_model(model_config).to(device).train()
    if pooled:
        for part in frozen_visual(model.video_frontend):
            part.requires_grad_(False)
    config = TrainConfig(model=model.config, batch_size=args.batch_size, bf16=bf16)
    optimizer = build_optimizer(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = head_weights(kind, config.aux_weight)
    batch = random_batch(model, args.batch_size, device, pooled)

    def step() -> None:  # waits for the device by reading the loss, as training's progress bar does
        optimizer_step(model, batch, optimizer, trainable, weights, config)[LOSS].item()

    for _ in range(WARMUP):
        step()
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    table = None
    if args.profile:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=PROFILE_ROWS)
    return seconds, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, required=True, help="where to save the figures")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                        help="clips per step (default: %(default)s, as `avsr train`)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case (default: %(default)s)")
    parser.add_argument("--cases", default=",".join(name for name, *_ in CASES),
                        help="which of them, comma-separated (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="also list the costliest operators")
    args = parser.parse_args(argv)
    wanted = args.cases.split(",")
    names = [name for name, *_ in CASES]
    if unknown := set(wanted) - set(names):
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; expected some of {', '.join(names)}")
    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else f"cpu ({torch.get_num_threads()} threads)")
    rows = []
    print(f"{device_name}, torch {torch.__version__}, batch {args.batch_size}")
    print("| case | kind | block | width | input | bf16 | ms per step | steps per s |")
    print("| --- | --- | --- | --: | --- | --- | --: | --: |")
    for name, kind, block, width, pooled in CASES:
        if name not in wanted:
            continue
        model_config = ModelConfig(kind=kind, block=block, d_model=width)
        for bf16 in (False, True):
            seconds, table = step_seconds(model_config, pooled, bf16, args)
            median = statistics.median(seconds)
            rows.append({"case": name, "kind": kind, "block": block, "d_model": model_config.d_model,
                         "pooled": pooled, "bf16": bf16, "median_s": median, "seconds": seconds,
                         "profile": table})
            source = "pooled" if pooled else ("crops" if kind != "audio" else "mel")
            print(f"| {name} | {kind} | {block} | {model_config.d_model} | {source} | {bf16} | "
                  f"{1000 * median:.1f} | {1 / median:.1f} |", flush=True)
            if table is not None:
                print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__,
                                     "batch_size": args.batch_size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
