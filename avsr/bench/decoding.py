"""Greedy against beam search with the word LM: WER on GRID's s1 dev split and the s4 clips.

Emissions (the model's log-probabilities) are computed once per clip and condition, from the
feature cache, with training's evaluation inputs (`avsr.train.Batcher`: centre crops, babble
from the training clips, the same seeded noise as training's dev WER). Then every decoder is
run on them: greedy, beam search without LM, and beam search with the LM over a grid of
`lm_weight` x `word_score`, tuned on the dev split only (mean of its clean and noisy WERs);
the s4 clips are decoded with the tuned weights. Writes a JSON report.

    .venv/bin/python -m avsr.bench.decoding --cache cache --json runs/decoding.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import jiwer
import torch

from avsr.train import Batcher, TrainConfig, load_examples, split
from avsr.transcribe import GRID_LM, Recognizer
from data.grid import DEV_SIZE, grid_dir
from data.manifest import read_manifest
from data.noise import NoiseSpec
from models.decoding import Decoder, DecodingOptions
from models.lm import lexicon_path
from models.tokenizer import normalize
from preprocessing.cache import default_cache_dir, load_clip

NOISY = NoiseSpec("babble", 0.0)  # as training's dev WER
LM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
WORD_SCORES = (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0)  # > 0 offsets the LM's cost of each word
BATCH = 16  # clips per forward pass


@torch.inference_mode()
def emissions(
    recognizer: Recognizer, batcher: Batcher, head: str, noise: NoiseSpec | None
) -> list[torch.Tensor]:
    """Each clip's (T, VOCAB_SIZE) log-probabilities of `head`, clean or under `noise`."""
    result = []
    for start in range(0, len(batcher.examples), BATCH):
        indices = range(start, min(start + BATCH, len(batcher.examples)))
        batch = batcher(indices, noise=noise).to(recognizer.device)
        log_probs = recognizer.model(batch.audio, batch.video, batch.lengths)[head].float().cpu()
        result += [clip[:length] for clip, length in zip(log_probs, batch.lengths.tolist(), strict=True)]
    return result


def wer(decoder: Decoder, clips: list[torch.Tensor], references: list[str]) -> tuple[float, float]:
    """(WER, milliseconds of decoding per clip)."""
    start = time.perf_counter()
    hypotheses = [decoder(log_probs).text for log_probs in clips]
    return jiwer.wer(references, hypotheses), 1e3 * (time.perf_counter() - start) / len(clips)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="dmf")
    parser.add_argument("--modality", help="default: the model's main head")
    parser.add_argument("--manifest", type=Path, default=(grid_dir() or Path(".")) / "manifest.tsv")
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--lm", type=Path, default=GRID_LM)
    parser.add_argument("--beam", type=int, nargs="+", default=[16])
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    recognizer = Recognizer.load(args.model, "cpu")
    head = args.modality or recognizer.modalities[0]
    utterances = read_manifest(args.manifest)
    train, dev = split(utterances, DEV_SIZE)
    s4 = [u for u in utterances if u.fields.get("speaker") == "s4"]
    pool = {str(u.video): load_clip(args.cache, u.video).audio for u in train}  # babble talkers
    config = TrainConfig(model=recognizer.model.config)
    hears = head != "video"
    conditions = [None, NOISY] if hears else [None]
    sets = {"s1 dev": dev, "s4": s4}
    clips, references = {}, {}
    for name, part in sets.items():
        batcher = Batcher(load_examples(part, args.cache, progress=False), config, pool)
        references[name] = [normalize(u.transcript) for u in part]
        for noise in conditions:
            clips[name, str(noise)] = emissions(recognizer, batcher, head, noise)

    rows = []

    def run(name: str, options: DecodingOptions, label: str, **weights: float) -> float:
        decoder = Decoder(options)
        errors = {}
        for noise in conditions:
            error, ms = wer(decoder, clips[name, str(noise)], references[name])
            errors[str(noise)] = error
            rows.append({"set": name, "noise": str(noise), "decoder": label, "beam": options.beam_size,
                         **weights, "wer": error, "decode_ms_per_clip": ms})
        return sum(errors.values()) / len(errors)

    lexicon = lexicon_path(args.lm)
    for name in sets:
        run(name, DecodingOptions(), "greedy")
    for beam in args.beam:
        for name in sets:
            run(name, DecodingOptions(beam_size=beam), "beam, no LM")
        grid = {}
        for lm_weight, word_score in itertools.product(LM_WEIGHTS, WORD_SCORES):
            options = DecodingOptions(beam, lexicon, args.lm, lm_weight, word_score)
            grid[lm_weight, word_score] = run("s1 dev", options, "beam + LM (sweep)",
                                              lm_weight=lm_weight, word_score=word_score)
        lm_weight, word_score = min(grid, key=grid.get)
        for name in sets:
            run(name, DecodingOptions(beam, lexicon, args.lm, lm_weight, word_score),
                "beam + LM (tuned on dev)", lm_weight=lm_weight, word_score=word_score)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": args.model, "head": head, "rows": rows}, indent=2))
    for row in rows:
        if row["decoder"] != "beam + LM (sweep)":
            print("  ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                            for key, value in row.items()))


if __name__ == "__main__":
    main()
