"""The `avsr` command: one subcommand per task, each a thin layer over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version
from itertools import islice
from pathlib import Path

import numpy as np

from avsr.train import add_train_arguments, main_from_args
from data.manifest import ManifestError, read_manifest
from preprocessing.cache import NotCachedError, build_cache, default_cache_dir
from preprocessing.errors import InputError
from preprocessing.mouth import preview, save_png, track_mouth
from preprocessing.video import iter_frames

INTERRUPTED = 130  # exit status after Ctrl-C: 128 + SIGINT, as shells report it


def _shard(text: str) -> tuple[int, int]:
    """Parse "K/N" (1 <= K <= N) for --shard."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 1/4, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"need 1 <= K <= N, got {text!r}")
    return k, n


def _positive(text: str) -> int:
    """Parse a count of at least 1 for --workers."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The `avsr` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="avsr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('avsr')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prep = commands.add_parser(
        "preprocess",
        help="build the feature cache for a manifest",
        description="Preprocess every clip of MANIFEST into the cache (mouth crops and audio). "
        "Clips already cached are skipped, so a re-run resumes; failures are listed at the end.",
    )
    prep.add_argument("manifest", nargs="?", type=Path, metavar="MANIFEST",
                      help="TSV with video and transcript columns")
    prep.add_argument("--cache", type=Path, default=default_cache_dir(), metavar="DIR",
                      help="cache folder (default: $AVSR_CACHE or ~/.cache/avsr)")
    prep.add_argument("--workers", type=_positive, metavar="N",
                      help="processes (default: one per CPU)")
    prep.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N",
                      help="build only clips K, K+N, K+2N, ... of the manifest (1-based)")
    prep.add_argument("--profile", action="store_true",
                      help="also time each stage of every selected clip (a second pass: slower)")
    prep.add_argument("--preview", nargs=2, type=Path, metavar=("VIDEO", "OUT.png"),
                      help="instead: save VIDEO's mouth crops and landmarks as a PNG to check")
    prep.set_defaults(run=_preprocess, parser=prep)  # its own parser, for its usage errors
    _add_train_parser(commands)
    return parser


def _preprocess(args: argparse.Namespace) -> int:
    if args.preview:
        if args.manifest is not None:
            args.parser.error("give either MANIFEST or --preview VIDEO OUT.png, not both")
        _save_preview(*args.preview)
        return 0
    if args.manifest is None:
        args.parser.error("MANIFEST is required (or --preview VIDEO OUT.png)")
    videos = [utterance.video for utterance in read_manifest(args.manifest)]
    report = build_cache(videos, args.cache, args.workers, args.shard, args.profile)
    print(report.summary())
    return 1 if report.failed else 0


def _save_preview(video: Path, out: Path) -> None:
    """Write the crop strip of `video`, with the landmarks on its median detected frame."""
    track = track_mouth((frame.rgb for frame in iter_frames(video)), video)
    detected = np.flatnonzero(track.detected)
    index = int(detected[len(detected) // 2])
    frame = next(islice(iter_frames(video), index, None)).rgb
    save_png(out, preview(track, frame, index))
    print(f"{out}: frame {index} and {len(track.crops)} mouth crops")


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a model on a manifest's cached clips",
        description="Train a model of --kind on MANIFEST's clips (from the cache of `avsr preprocess`), "
        "with noise and modality dropout; checkpoints, logs and curves go to RUN_DIR every epoch. "
        "For several processes: torchrun --nproc_per_node N --no-python avsr train ...",
    )
    add_train_arguments(train)
    train.set_defaults(run=_train, parser=train)


def _train(args: argparse.Namespace) -> int:
    try:
        return main_from_args(args)
    except NotCachedError as error:
        print(f"avsr: error: {error}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (InputError, ManifestError, OSError) as error:
        print(f"avsr: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("avsr: interrupted", file=sys.stderr)
        return INTERRUPTED
