"""WER when the silence around a clip's words is cut: does a model read words where they are said?

Every GRID clip is 3 s with its sentence in the middle, so a network trained on them can learn to
place the first and last words by the clip's edges rather than by the speech. A recording that
starts or ends close to the speech (a trimmed video, an utterance `avsr live` cuts at a pause)
then reads worse. Each s1 dev clip is cut to keep `margin` video frames of silence before its
first word and after its last (from its GRID alignment), clean, and every head of the model is
scored greedily on it, beside the whole clips.

    .venv/bin/python -m avsr.bench.margins --cache cache --json runs/margins.json
"""

from __future__ import annotations

import json
from pathlib import Path

import jiwer

from avsr.augment import speech_span
from avsr.bench import bench_parser
from avsr.benchmark import load_clip_set, select
from avsr.transcribe import Recognizer
from data.grid import alignment_path, grid_dir, read_alignment
from data.manifest import read_manifest
from models.decoding import Decoder, DecodingOptions
from preprocessing.audio import SAMPLES_PER_VIDEO_FRAME
from preprocessing.cache import default_cache_dir
from preprocessing.video import VIDEO_FPS

MARGINS = (0, 2, 5, 10)  # video frames of silence kept on each side: 0, 80, 200 and 400 ms


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--manifest", type=Path, default=(grid_dir() or Path(".")) / "manifest.tsv")
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--margins", type=int, nargs="+", default=list(MARGINS), metavar="FRAMES")
    args = parser.parse_args()

    recognizer = Recognizer.load(args.model, "cpu")
    decoder = Decoder(DecodingOptions())
    clip_set = load_clip_set(select(read_manifest(args.manifest), "dev"), args.manifest.parent, args.cache,
                             progress=False)
    root = args.manifest.parent
    speech = [speech_span(read_alignment(alignment_path(root / name)), example.frames, VIDEO_FPS)
              for name, example in zip(clip_set.names, clip_set.examples, strict=True)]
    rows = []
    for margin in [None, *args.margins]:
        hypotheses: dict[str, list[str]] = {}
        for example, (start, stop) in zip(clip_set.examples, speech, strict=True):
            first, last = (0, example.frames) if margin is None else (max(0, start - margin), stop + margin)
            heads = recognizer.head_emissions(
                example.mouths[first:last],
                example.audio[first * SAMPLES_PER_VIDEO_FRAME : last * SAMPLES_PER_VIDEO_FRAME],
            )
            for head, log_probs in heads.items():
                hypotheses.setdefault(head, []).append(decoder(log_probs).text)
        wers = {head: jiwer.wer(clip_set.references, texts) for head, texts in hypotheses.items()}
        label = "whole clip" if margin is None else f"{margin} frames"
        figures = ", ".join(f"{head} {100 * wer:.1f} %" for head, wer in wers.items())
        print(f"{label:>11}: {figures}", flush=True)
        rows.append({"margin_frames": margin, "wer": wers})
    args.json.write_text(json.dumps({"model": args.model, "clips": len(speech), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
