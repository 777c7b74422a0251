"""Greedy against beam search with the word LM: WER on GRID's s1 dev split and the s4 clips.

Emissions (the model's log-probabilities) are computed once per clip and condition by
`avsr.benchmark` (its clips from the feature cache, model inputs and seeded noise: babble of each
set's other clips), clean and under babble at 0 dB. Then every decoder is run on them: greedy,
beam search without LM, and beam search with the LM over a grid of `lm_weight` x `word_score`,
tuned on the dev split only (mean of its clean and noisy WERs); the s4 clips are decoded with the
tuned weights. Writes a JSON report.

    .venv/bin/python -m avsr.bench.decoding --cache cache --json runs/decoding.json
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from avsr.bench import bench_parser
from avsr.benchmark import iter_emissions, load_clip_set, score, select
from avsr.transcribe import GRID_LM, Recognizer
from data.grid import grid_dir
from data.manifest import read_manifest
from data.noise import BABBLE, NoiseSpec
from models.decoding import Decoder, DecodingOptions
from models.lm import lexicon_path
from preprocessing.cache import default_cache_dir

CLEAN = NoiseSpec(None, None)
NOISY = NoiseSpec(BABBLE, 0.0)  # as training's dev WER
LM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
WORD_SCORES = (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0)  # > 0 offsets the LM's cost of each word


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--modality", help="default: the model's main head")
    parser.add_argument("--manifest", type=Path, default=(grid_dir() or Path(".")) / "manifest.tsv")
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--lm", type=Path, default=GRID_LM)
    parser.add_argument("--beam", type=int, nargs="+", default=[16])
    args = parser.parse_args()

    recognizer = Recognizer.load(args.model, "cpu")
    head = args.modality or recognizer.modalities[0]
    utterances = read_manifest(args.manifest)
    conditions = [CLEAN, NOISY] if head != "video" else [CLEAN]
    sets = {"s1 dev": select(utterances, "dev"), "s4": select(utterances, speakers=("s4",))}
    clips, references = {}, {}
    for name, part in sets.items():
        clip_set = load_clip_set(part, args.manifest.parent, args.cache, progress=False)
        references[name] = clip_set.references
        emitted = iter_emissions({args.model: recognizer}, {args.model: (head,)}, clip_set, conditions)
        for emissions in emitted:
            clips[name, str(emissions.condition)] = emissions.log_probs

    rows = []

    def run(name: str, options: DecodingOptions, label: str, **weights: float) -> float:
        decoder = Decoder(options)
        errors = {}
        for noise in conditions:
            error, _, seconds = score(decoder, clips[name, str(noise)], references[name])
            errors[str(noise)] = error
            ms = 1e3 * seconds / len(references[name])
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
