"""Speaker adaptation by cross-validation: WER on a speaker before and after `avsr adapt`.

The speaker's clips (GRID s4: 10) are shuffled with a fixed seed and cut into `--folds` folds;
each fold's clips are the test clips of a model adapted on all the others, starting afresh from
the bundled model every time. Every head is scored, clean and under babble at 0 dB (babble of the
speaker's other clips), greedy and with beam search + the GRID LM. Variants scored the same way:

    none      the model with the visual batch-norm statistics of its training (`--no-clip-norm`)
    clip      each test clip normalised by its own statistics (no labels, no other clips): what
              `Recognizer.load` does by default (`VisualFrontEnd.clip_norm`)
    stats     only the visual batch-norm statistics re-estimated on the adaptation clips (no labels)
    adapted   `avsr adapt`'s fine-tuning, with the settings given (default: AdaptConfig's)

    .venv/bin/python -m avsr.bench.adapt --cache cache --json runs/adapt.json
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from avsr.adapt import PARTS, AdaptConfig, estimate_norm_stats, fine_tune, mean_loss
from avsr.bench import bench_parser
from avsr.benchmark import iter_emissions, load_clip_set, score, select
from avsr.transcribe import GRID_LM, Recognizer
from data.grid import grid_dir
from data.manifest import read_manifest
from data.noise import BABBLE, NoiseSpec
from models.checkpoint import load_checkpoint
from models.decoding import DEFAULT_BEAM_SIZE, Decoder, DecodingOptions
from preprocessing.cache import default_cache_dir

CONDITIONS = (NoiseSpec(None, None), NoiseSpec(BABBLE, 0.0))
FOLD_SEED = 7  # shuffles the speaker's clips before they are cut into folds


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--manifest", type=Path, default=(grid_dir() or Path(".")) / "manifest.tsv")
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--speaker", default="s4")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--parts", choices=PARTS, default=AdaptConfig.parts)
    parser.add_argument("--steps", type=int, nargs="+", default=[AdaptConfig.steps],
                        help="step counts to score (each a separate adaptation run, from the start model)")
    parser.add_argument("--lr", type=float, default=AdaptConfig.lr)
    parser.add_argument("--anchor", type=float, default=AdaptConfig.anchor)
    parser.add_argument("--aux-weight", type=float, default=AdaptConfig.aux_weight,
                        help="loss weight of a fusion model's audio-only and video-only heads")
    parser.add_argument("--no-norm-stats", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    utterances = select(read_manifest(args.manifest), speakers=(args.speaker,))
    order = np.random.default_rng(FOLD_SEED).permutation(len(utterances))
    folds = np.array_split(order, args.folds)
    config = AdaptConfig(parts=args.parts, lr=args.lr, anchor=args.anchor, aux_weight=args.aux_weight,
                         norm_stats=not args.no_norm_stats)
    wers: dict[tuple, list[float]] = defaultdict(list)
    seconds, losses = [], []
    for number, test in enumerate(folds, start=1):
        train = [utterances[i] for i in order if i not in test]
        clip_set = load_clip_set([utterances[i] for i in test], args.manifest.parent, args.cache,
                                 babble=[utterances[i] for i in test] + train, progress=False)
        adapt_set = load_clip_set(train, args.manifest.parent, args.cache, progress=False)
        model, _ = load_checkpoint(args.model)
        _score(wers, "none", model, clip_set)
        if model.video_frontend is not None:  # an audio-only model reads the same in every variant
            model.video_frontend.clip_norm = True
        _score(wers, "clip", model, clip_set)
        model, _ = load_checkpoint(args.model)
        estimate_norm_stats(model, adapt_set.examples)
        _score(wers, "stats", model, clip_set)
        done = 0
        for steps in sorted(args.steps):
            model, _ = load_checkpoint(args.model)  # afresh: the schedule depends on the step count
            started = time.perf_counter()
            history = fine_tune(model, adapt_set.examples, replace(config, steps=steps), progress=False)
            seconds.append(time.perf_counter() - started)
            losses.append({"steps": steps, "first": history[0] if history else None,
                           "last": history[-1] if history else None,
                           "clean_loss_after": mean_loss(model, adapt_set.examples)})
            _score(wers, f"adapted {steps}", model, clip_set)
            done = steps
        print(f"fold {number}/{len(folds)} done ({done} steps, {seconds[-1]:.0f} s)", flush=True)

    table = {" | ".join(map(str, key)): float(np.mean(values)) for key, values in wers.items()}
    report = {"model": args.model, "speaker": args.speaker, "clips": len(utterances), "folds": args.folds,
              "config": config.to_dict(), "steps": args.steps, "adapt_seconds": seconds,
              "losses": losses, "wer": table}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    for key, value in table.items():
        print(f"{key:55s} {100 * value:6.1f}")
    print(f"adaptation: {np.mean(seconds):.0f} s per fold ({len(utterances) - len(folds[0])} clips)")


def _score(wers: dict[tuple, list[float]], variant: str, model: torch.nn.Module, clip_set) -> None:
    """Append the WER of each head x condition x decoder of `model` on `clip_set` to `wers`."""
    recognizer = Recognizer(model, variant, lm=GRID_LM)
    heads = recognizer.modalities
    decoders = {"greedy": Decoder(DecodingOptions()),
                "beam+LM": recognizer.decoder(recognizer.decoding_options(DEFAULT_BEAM_SIZE, True))}
    for emissions in iter_emissions({variant: recognizer}, {variant: heads}, clip_set, CONDITIONS):
        if emissions.modality == "video" and emissions.condition.kind is not None:
            continue
        for name, decoder in decoders.items():
            error, _, _ = score(decoder, emissions.log_probs, clip_set.references)
            wers[variant, emissions.modality, str(emissions.condition), name].append(error)


if __name__ == "__main__":
    main()
