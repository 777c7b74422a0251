"""WER when the silence around a clip's words is cut: does a model read words where they are said?

Every GRID clip is 3 s with its sentence in the middle, so a network trained on them can learn to
place the first and last words by the clip's edges rather than by the speech. A recording that
starts or ends close to the speech (a trimmed video, an utterance `avsr live` cuts at a pause)
then reads worse. Each s1 dev clip is cut to keep `margin` video frames of silence before its
first word and after its last (from its GRID alignment), clean, and every head of the model is
scored greedily on it, beside the whole clips, as `avsr transcribe` reads them: with their edges
padded with still lips and quiet sound (`avsr.windows.edge_pads`), and without.

    .venv/bin/python -m avsr.bench.margins --cache cache --json runs/margins.json
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jiwer
import numpy as np

from avsr.augment import speech_span
from avsr.bench import bench_parser
from avsr.benchmark import ClipSet, load_clip_set, select
from avsr.train import Example
from avsr.transcribe import Recognizer, TranscribeOptions
from data.grid import alignment_path, grid_dir, read_alignment
from data.manifest import read_manifest
from preprocessing.audio import SAMPLES_PER_VIDEO_FRAME
from preprocessing.cache import default_cache_dir
from preprocessing.video import VIDEO_FPS

MARGINS = (0, 2, 5, 10)  # video frames of silence kept on each side: 0, 80, 200 and 400 ms


def keep_margin(example: Example, speech: tuple[int, int], margin: int) -> tuple[np.ndarray, np.ndarray]:
    """The mouth crops and samples of `example` from `margin` frames before its words (`speech`,
    frames [start, stop)) to `margin` after them, within the clip."""
    first, last = max(0, speech[0] - margin), min(example.frames, speech[1] + margin)
    samples = SAMPLES_PER_VIDEO_FRAME
    return example.mouths[first:last], example.audio[first * samples : last * samples]


def margin_wers(recognizer: Recognizer, clip_set: ClipSet, speech: Sequence[tuple[int, int]],
                margins: Sequence[int | None]) -> list[dict]:
    """For each of `margins` (None: the whole clip), with the edges padded and without, every
    head's greedy WER on the clips cut by `keep_margin`, clean; `speech` gives each clip's words'
    frames."""
    rows = []
    for margin in margins:
        for padded in (True, False):
            hypotheses: dict[str, list[str]] = {}
            for example, span in zip(clip_set.examples, speech, strict=True):
                for head, text in _read(recognizer, example, span, margin, padded).items():
                    hypotheses.setdefault(head, []).append(text)
            wers = {head: jiwer.wer(clip_set.references, texts) for head, texts in hypotheses.items()}
            rows.append({"margin_frames": margin, "padded": padded, "wer": wers})
    return rows


def _read(
    recognizer: Recognizer, example: Example, speech: tuple[int, int], margin: int | None, padded: bool
) -> dict[str, str]:
    """Every head's greedy transcript of `example`, whole (`margin` None) or cut by `keep_margin`,
    its edges padded or not."""
    streams = (example.mouths, example.audio) if margin is None else keep_margin(example, speech, margin)
    recognizer.pad_edges = padded
    try:
        transcripts = recognizer.transcribe_clip(*streams, Path(example.key), TranscribeOptions(beam=1))
    finally:
        recognizer.pad_edges = True
    return {head: transcript.text for head, transcript in transcripts.items()}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--manifest", type=Path, default=(grid_dir() or Path(".")) / "manifest.tsv")
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--margins", type=int, nargs="+", default=list(MARGINS), metavar="FRAMES")
    args = parser.parse_args()

    recognizer = Recognizer.load(args.model, "cpu")
    root = args.manifest.parent
    clip_set = load_clip_set(select(read_manifest(args.manifest), "dev"), root, args.cache, progress=False)
    speech = [speech_span(read_alignment(alignment_path(root / name)), example.frames, VIDEO_FPS)
              for name, example in zip(clip_set.names, clip_set.examples, strict=True)]
    rows = margin_wers(recognizer, clip_set, speech, [None, *args.margins])
    for row in rows:
        label = "whole clip" if row["margin_frames"] is None else f"{row['margin_frames']} frames"
        label += ", padded" if row["padded"] else ", as cut"
        print(f"{label:>19}: " + ", ".join(f"{head} {100 * wer:.1f} %" for head, wer in row["wer"].items()))
    args.json.write_text(json.dumps({"model": args.model, "clips": len(speech), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
