"""The training curves of several runs side by side: loss, main-head loss and dev WER by epoch.

Reads RUN/log.csv of each run folder (as `avsr train` writes it) and its model kind from
RUN/best.pt. A fusion model's training loss sums its main head's CTC loss and its auxiliary
heads' at their weight, so each curve is divided by its heads' total weight (DMF and late:
1 + 2 x 0.5) to read as a loss per head. The main head's own loss (what the fusion itself
learns; logged by runs since per-head logging) is drawn beside it. Saves a PNG and the figures as JSON.

    .venv/bin/python -m avsr.bench.curves runs/dmf runs/early runs/late runs/audio runs/video \\
        --png runs/curves.png --json runs/curves.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from avsr.train import BEST, LOG, LOSS, LOSS_, TrainConfig, head_weights
from models.checkpoint import load_checkpoint
from models.config import supported_modalities


def read_run(run: Path) -> dict:
    """A run's kind, epochs, per-head and main-head training loss (None where not logged), main-head
    dev WER and seconds per epoch."""
    _, metadata = load_checkpoint(run / BEST)
    config = TrainConfig.from_dict(metadata["train_config"])
    kind = config.model.kind
    weight = sum(head_weights(kind, config.aux_weight).values())
    head = supported_modalities(kind)[0]
    with open(run / LOG, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "run": str(run), "kind": kind, "block": config.model.block,
        "epochs": [int(row["epoch"]) for row in rows],
        "loss_per_head": [float(row[LOSS]) / weight for row in rows],
        "main_head_loss": [float(row[LOSS_ + head]) if row.get(LOSS_ + head) else None for row in rows],
        "dev_wer": [float(row[f"wer_{head}"]) for row in rows],
        "seconds": [float(row["seconds"]) for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--png", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    from matplotlib.figure import Figure  # slow: only this script plots
    from matplotlib.ticker import MaxNLocator

    runs = [read_run(run) for run in args.runs]
    figure = Figure(figsize=(17, 4.5), layout="constrained")
    loss_axes, main_axes, wer_axes = figure.subplots(1, 3)
    for run in runs:
        label = f"{run['kind']} ({run['run']})"
        loss_axes.plot(run["epochs"], run["loss_per_head"], marker=".", label=label)
        main = [math.nan if loss is None else loss for loss in run["main_head_loss"]]
        main_axes.plot(run["epochs"], main, marker=".", label=label)
        wer_axes.plot(run["epochs"], [100 * wer for wer in run["dev_wer"]], marker=".", label=label)
    loss_axes.set(xlabel="epoch", ylabel="CTC loss per clip and head", title="training loss", yscale="log")
    main_axes.set(xlabel="epoch", ylabel="CTC loss per clip", title="main head's training loss", yscale="log")
    wer_axes.set(xlabel="epoch", ylabel="WER %", title="dev WER, main head (greedy)", ylim=(0, 100))
    wer_axes.legend()
    for axes in (loss_axes, main_axes, wer_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    args.png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.png)
    args.json.write_text(json.dumps(runs, indent=2))
    for run in runs:
        first = ", ".join(f"{loss:.1f}" for loss in run["loss_per_head"][:5])
        main = ", ".join("-" if loss is None else f"{loss:.1f}" for loss in run["main_head_loss"][:5])
        print(f"{run['kind']:6s} best dev WER {100 * min(run['dev_wer']):5.1f}%  "
              f"loss per head, epochs 1-5: {first}; main head's: {main}  "
              f"({sum(run['seconds']) / 60:.1f} min)")


if __name__ == "__main__":
    main()
