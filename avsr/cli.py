"""The `avsr` command: one subcommand per task, each a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import TypeVar, get_args

import numpy as np
from tqdm import tqdm

from avsr.benchmark import (
    SPLITS,
    BenchmarkConfig,
    markdown,
    run_benchmark,
    summary,
    write_csv,
    write_json,
    write_plot,
)
from avsr.output import FORMATS, as_dict, output_path, write
from avsr.train import add_train_arguments, main_from_args, split
from avsr.transcribe import (
    DEFAULT_MODEL,
    LIVE_MODEL,
    TranscribeOptions,
    babble_pool,
    noise_spec,
    transcribe_files,
)
from data.grid import DEV_SIZE, MANIFEST_NAME, grid_dir
from data.manifest import ManifestError, atomic_write, read_manifest
from data.noise import BABBLE, KINDS_HELP, parse_noise, parse_snr
from models.checkpoint import BUNDLED_MODELS
from models.config import Modality
from models.decoding import DEFAULT_BEAM_SIZE
from models.ensemble import BUNDLED_NAMES
from models.lm import DEFAULT_ORDER, build_lm, lexicon_path
from preprocessing.cache import Failure, NotCachedError, build_cache, default_cache_dir
from preprocessing.errors import InputError
from preprocessing.mouth import preview, save_png, track_mouth
from preprocessing.video import iter_frames

INTERRUPTED = 130  # exit status after Ctrl-C: 128 + SIGINT, as shells report it
CLIP_NORM_HELP = ("normalise the visual features by each clip's own statistics, which helps speakers "
                  "the model was not trained on (default: yes, except for models `avsr adapt` made)")
T = TypeVar("T")


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


def _listed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type of `parse`, a parser of comma-separated lists that raises ValueError."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:  # argparse would print only "invalid value"
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _names(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of names, refusing empty ones."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ValueError(f"{text!r}: empty item in a comma-separated list")
    return names


def _modalities(text: str) -> tuple[Modality, ...]:
    """Parse --modality for the benchmark, e.g. `av,audio`."""
    modalities = _names(text)
    unknown = [name for name in modalities if name not in get_args(Modality)]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}: expected {', '.join(get_args(Modality))}")
    return modalities


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
    _add_transcribe_parser(commands)
    _add_benchmark_parser(commands)
    _add_lm_parser(commands)
    _add_live_parser(commands)
    _add_adapt_parser(commands)
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


def _add_recognizer_options(parser: argparse.ArgumentParser, model: str) -> None:
    """--model (default `model`), --device, --clip-norm, --beam and --no-lm/--lm: how `transcribe`
    and `live` recognise."""
    parser.add_argument("--model", default=model, metavar="NAME|CKPT",
                        help=f"a bundled model ({', '.join(BUNDLED_NAMES)}) or a checkpoint file, or "
                        "several joined with '+', an ensemble whose words are voted on (default: "
                        "%(default)s)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--clip-norm", action=argparse.BooleanOptionalAction, help=CLIP_NORM_HELP)
    parser.add_argument("--beam", type=_positive, default=DEFAULT_BEAM_SIZE, metavar="N",
                        help="beam search width; 1: greedy decoding, without a language model "
                        "(default: %(default)s)")
    lm = parser.add_mutually_exclusive_group()
    lm.add_argument("--no-lm", dest="lm", action="store_false",
                    help="no language model or lexicon, so any word can be spelled: for speech other "
                    "than GRID's commands, which are all the bundled language model knows")
    lm.add_argument("--lm", type=Path, metavar="ARPA",
                    help="this word n-gram model (with its lexicon beside it, as `avsr lm build` "
                    "writes them) instead of the model's own")
    parser.set_defaults(lm=True)


def _add_transcribe_parser(commands: argparse._SubParsersAction) -> None:
    transcribe = commands.add_parser(
        "transcribe",
        help="transcripts of video files, with word timings",
        description="Recognise what is said in each VIDEO (any file FFmpeg reads; an audio file with "
        "--modality audio) and print its transcript, or write one file per input to --out DIR. Long "
        "videos are read in windows, in bounded memory. A file that fails is reported and the others "
        "go on; the exit status is 1 if any failed.",
    )
    transcribe.add_argument("videos", nargs="+", type=Path, metavar="VIDEO")
    _add_recognizer_options(transcribe, DEFAULT_MODEL)
    transcribe.add_argument("--modality", choices=get_args(Modality),
                            help="recognise from audio and video, or one of them (default: the model's "
                            "main one, av for dmf)")
    transcribe.add_argument("--format", choices=list(FORMATS), default="txt",
                            help="plain text, JSON with word timings, or SRT or WebVTT subtitles "
                            "(default: txt)")
    transcribe.add_argument("--out", type=Path, metavar="DIR",
                            help="write DIR/<VIDEO's stem>.<format> for each input instead of printing")
    transcribe.add_argument("--json", type=Path, metavar="FILE",
                            help="also write every transcript, and every failure, to one JSON file")
    transcribe.add_argument("--noise", metavar="TYPE", help=f"mix noise into the audio first: {KINDS_HELP}")
    transcribe.add_argument("--snr", type=float, metavar="DB", help="its signal-to-noise ratio in dB")
    transcribe.add_argument("--babble-pool", type=Path, metavar="MANIFEST",
                            help="the talkers of --noise babble: a manifest's utterances")
    transcribe.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    transcribe.add_argument("--workers", type=_positive, metavar="N",
                            help="processes sharing many files (default: one per CPU)")
    transcribe.set_defaults(run=_transcribe, parser=transcribe)


def _transcribe(args: argparse.Namespace) -> int:
    try:
        noise_spec(args.noise, args.snr)
    except ValueError as error:
        args.parser.error(str(error))
    if args.noise == BABBLE and args.babble_pool is None:
        args.parser.error("--noise babble needs --babble-pool MANIFEST, the utterances to mix")
    if args.out is not None:
        writers: dict[Path, Path] = {}
        for video in args.videos:
            target = output_path(video, args.out, args.format)
            if writers.setdefault(target, video) != video:
                args.parser.error(f"{writers[target]} and {video} would both be written to {target}")
    options = TranscribeOptions(args.modality, args.beam, args.lm, args.noise, args.snr, args.seed)
    results = transcribe_files(args.videos, options, args.model, args.device,
                               args.workers or os.cpu_count() or 1, args.babble_pool, args.clip_norm)
    several = len(args.videos) > 1
    transcripts, failures = [], []
    try:
        with tqdm(total=len(args.videos), unit="file", disable=not several) as bar:
            for result in results:
                bar.update()
                if isinstance(result, Failure):
                    failures.append(result)
                    bar.write(f"avsr: error: {result.message}", file=sys.stderr)
                    continue
                transcripts.append(result)
                if args.out is not None:
                    write(result, args.out, args.format)
                else:
                    text = FORMATS[args.format](result)
                    bar.write(f"==> {result.path} <==\n{text}" if several else text, end="")
    except ValueError as error:  # options that do not fit the model, found before any file is read
        args.parser.error(str(error))
    if args.json is not None:
        with atomic_write(args.json, "w") as handle:
            json.dump({
                "transcripts": [as_dict(transcript) for transcript in transcripts],
                "failures": [{"file": str(failure.video), "error": failure.error, "message": failure.message}
                             for failure in failures],
            }, handle, indent=2)
    if failures and several:
        print(f"avsr: {len(failures)} of {len(args.videos)} files failed", file=sys.stderr)
    return 1 if failures else 0


def _add_benchmark_parser(commands: argparse._SubParsersAction) -> None:
    defaults = BenchmarkConfig()
    bench = commands.add_parser(
        "benchmark",
        help="WER table over models, modalities, noise types and SNRs",
        description="Recognise MANIFEST's clips with every model and modality, clean and under each "
        "noise at each SNR, and print a table of WERs (%) per noise type. Clips missing from the cache "
        "are preprocessed first; noise is seeded, so a run with the same seed gives the same numbers. "
        "Benchmark held-out clips: for GRID, --split dev (the s1 clips `avsr train` holds out) or "
        "--speaker s4 (a speaker never trained on).",
    )
    bench.add_argument("manifest", type=Path, metavar="MANIFEST",
                       help="TSV with video and transcript columns")
    bench.add_argument("--cache", type=Path, default=defaults.cache_dir, metavar="DIR",
                       help="feature cache (default: $AVSR_CACHE or ~/.cache/avsr)")
    bench.add_argument("--models", type=_listed(_names), default=defaults.models, metavar="NAMES",
                       help="bundled models or checkpoint files, or ensembles of them joined with '+' "
                       f"(bundled: {', '.join(BUNDLED_NAMES)}; default: {','.join(defaults.models)})")
    bench.add_argument("--modality", type=_listed(_modalities), default=defaults.modalities,
                       metavar="LIST", help="heads to run, among those each model has; a model with none "
                       "of them runs its main one (default: av,audio,video)")
    bench.add_argument("--noise", type=_listed(parse_noise), default=defaults.noises, metavar="LIST",
                       help=f"noise types: {KINDS_HELP} (default: babble,white)")
    bench.add_argument("--snr", type=_listed(parse_snr), default=defaults.snrs, metavar="LIST",
                       help="SNRs in dB, and clean for no noise (default: clean,20,15,10,5,0,-5,-10); "
                       "a list that starts with a negative number needs '=': --snr=-5,-10")
    bench.add_argument("--split", choices=SPLITS, default=defaults.split,
                       help="all: every row (default); dev: the dev split `avsr train` holds out")
    bench.add_argument("--speaker", type=_listed(_names), default=(), metavar="LIST",
                       help="only these speakers' rows (the manifest's speaker column), e.g. s4")
    bench.add_argument("--dev-size", type=_positive, default=defaults.dev_size, metavar="N",
                       help="clips of the dev split, as given to `avsr train` (default: %(default)s)")
    bench.add_argument("--babble-manifest", type=Path, metavar="MANIFEST",
                       help="babble talkers: this manifest's utterances (default: the benchmark's other "
                       "clips)")
    bench.add_argument("--beam", type=_positive, default=defaults.beam, metavar="N",
                       help="beam search width, with the model's language model; 1: greedy (default)")
    lm = bench.add_mutually_exclusive_group()
    lm.add_argument("--no-lm", dest="lm", action="store_false", help="beam search without a language model")
    lm.add_argument("--lm", type=Path, metavar="ARPA",
                    help="this word n-gram model (its lexicon beside it) instead of the model's own")
    bench.set_defaults(lm=True)
    bench.add_argument("--seed", type=int, default=defaults.seed, help="seed of the noise (default: 0)")
    bench.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    bench.add_argument("--clip-norm", action=argparse.BooleanOptionalAction, help=CLIP_NORM_HELP)
    bench.add_argument("--batch-size", type=_positive, default=defaults.batch_size, metavar="B",
                       help="clips per forward pass (default: %(default)s)")
    bench.add_argument("--pad-edges", action="store_true",
                       help="read each clip as `avsr transcribe` reads a recording of it in the noise: its "
                       "edges padded with still lips and quiet sound up to GRID's silence around a sentence "
                       "(for clips cut close to their words; default: each clip as it is cut)")
    bench.add_argument("--json", type=Path, metavar="FILE", help="write every result and the timings as JSON")
    bench.add_argument("--csv", type=Path, metavar="FILE", help="write the results as CSV, a row per line")
    bench.add_argument("--plot", type=Path, metavar="OUT.png",
                       help="plot WER against SNR: a panel per noise type, a line per model and modality")
    bench.set_defaults(run=_benchmark, parser=bench)


def _benchmark(args: argparse.Namespace) -> int:
    config = BenchmarkConfig(
        models=args.models, modalities=args.modality, noises=args.noise, snrs=args.snr, split=args.split,
        speakers=args.speaker, dev_size=args.dev_size, babble_manifest=args.babble_manifest,
        beam=args.beam, lm=args.lm, seed=args.seed, cache_dir=args.cache, device=args.device,
        clip_norm=args.clip_norm, batch_size=args.batch_size, pad_edges=args.pad_edges,
    )
    try:
        result = run_benchmark(args.manifest, config)
    except ValueError as error:  # a selection, noise or option that cannot work
        print(f"avsr: error: {error}", file=sys.stderr)
        return 1
    print(markdown(result))
    print(summary(result))
    if args.json is not None:
        write_json(result, args.json)
    if args.csv is not None:
        write_csv(result, args.csv)
    if args.plot is not None:
        write_plot(result, args.plot)
    return 0


def _add_lm_parser(commands: argparse._SubParsersAction) -> None:
    lm = commands.add_parser("lm", help="word language models for beam search",
                             description="Word n-gram language models for `avsr transcribe`.")
    actions = lm.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="estimate one from a manifest's transcripts",
        description="Estimate an interpolated Kneser-Ney word n-gram model of MANIFEST's transcripts "
        "and write it to OUT.arpa, with the lexicon of its words (their spelling) to OUT.lexicon.txt.",
    )
    build.add_argument("manifest", type=Path, metavar="MANIFEST", help="TSV with a transcript column")
    build.add_argument("out", type=Path, metavar="OUT.arpa")
    build.add_argument("--order", type=_positive, default=DEFAULT_ORDER, metavar="N",
                       help="longest n-gram (default: %(default)s)")
    build.add_argument("--exclude-dev", action="store_true",
                       help="only the training split, as `avsr train` draws it: for GRID, speaker s1 "
                       "without its dev clips (and no s4 clips)")
    build.set_defaults(run=_build_lm, parser=build)


def _build_lm(args: argparse.Namespace) -> int:
    utterances = read_manifest(args.manifest)
    try:
        if args.exclude_dev:
            utterances = split(utterances, DEV_SIZE)[0]
        words = build_lm([utterance.transcript for utterance in utterances], args.out, args.order)
    except ValueError as error:  # no sentences, or too few clips for the dev split
        print(f"avsr: error: {args.manifest}: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: {args.order}-gram model of {len(utterances)} transcripts, {len(words)} words; "
          f"lexicon {lexicon_path(args.out)}")
    return 0


def _add_live_parser(commands: argparse._SubParsersAction) -> None:
    live = commands.add_parser(
        "live",
        help="real-time captions from a camera (or --source FILE)",
        description="Caption speech as it comes: from a camera and the microphone, or a video file or "
        "stream (with its sound) paced in real time. Utterances are cut by voice activity helped by lip "
        "motion, and each is recognised once it ends. A window shows the video, the audiovisual and the "
        "audio-only captions side by side and the mouth the model reads; keys mix white, pink or babble "
        "noise into the sound at a chosen SNR (n, w, p, b; + and - change the SNR; q quits).",
    )
    live.add_argument("--source", default="0", metavar="FILE|URL|INDEX",
                      help="a camera index, a video file or a stream URL (default: camera 0)")
    _add_recognizer_options(live, LIVE_MODEL)
    live.add_argument("--noise", choices=("white", "pink", "babble"),
                      help="noise mixed into the sound at first (keys change it)")
    live.add_argument("--snr", type=float, default=0.0, metavar="DB",
                      help="its signal-to-noise ratio in dB (default: %(default)s)")
    live.add_argument("--babble-pool", type=Path, metavar="MANIFEST",
                      help="babble's talkers: a manifest's utterances (default: GRID's, if found)")
    live.add_argument("--headless", action="store_true", help="no window: for machines without a screen")
    live.add_argument("--out", type=Path, metavar="VIDEO",
                      help="write the annotated video, every frame, with its sound (MP4 or MKV)")
    live.add_argument("--captions", type=Path, metavar="SRT", help="write the captions as SRT subtitles")
    live.add_argument("--stats", action="store_true",
                      help="also print each caption's latency (the frame rate, drops and latencies are "
                      "summed up at the end)")
    live.set_defaults(run=_live, parser=live)


def _live(args: argparse.Namespace) -> int:
    from avsr.live import LiveError, LiveOptions, run_live  # its capture and drawing: only this command

    pool = args.babble_pool
    if pool is None and grid_dir() is not None:
        pool = grid_dir() / MANIFEST_NAME
    options = LiveOptions(
        source=args.source, model=args.model, device=args.device, clip_norm=args.clip_norm,
        decoding=TranscribeOptions(beam=args.beam, lm=args.lm), noise=args.noise, snr=args.snr,
        babble=None if pool is None else babble_pool(pool), headless=args.headless, out=args.out,
        captions=args.captions, stats=args.stats,
    )
    try:
        report = run_live(options)
    except (LiveError, InputError) as error:
        print(f"avsr live: error: {error}", file=sys.stderr)
        return 1
    print(f"avsr live: {report.summary()}", file=sys.stderr)
    return 0


def _add_adapt_parser(commands: argparse._SubParsersAction) -> None:
    from avsr.adapt import PARTS, AdaptConfig

    defaults = AdaptConfig()
    adapt = commands.add_parser(
        "adapt",
        help="fine-tune a model to a new speaker from a few clips of them",
        description="Make a model a speaker's own: fine-tune it on MANIFEST's clips of that speaker "
        "(about 10 clips, 30 s of speech, each with its transcript) and write the adapted checkpoint to "
        "--out, for every command's --model. The starting model is only read. Clips are preprocessed "
        "into the cache first; clips that fail are reported and left out.",
    )
    adapt.add_argument("manifest", type=Path, metavar="MANIFEST",
                       help="TSV with video and transcript columns, one speaker's clips")
    adapt.add_argument("--out", type=Path, required=True, metavar="CKPT", help="the adapted checkpoint")
    adapt.add_argument("--model", default="dmf", metavar="NAME|CKPT",
                       help=f"model to start from: bundled ({', '.join(BUNDLED_MODELS)}) or a checkpoint "
                       "file (default: dmf)")
    adapt.add_argument("--cache", type=Path, default=default_cache_dir(), metavar="DIR",
                       help="feature cache (default: $AVSR_CACHE or ~/.cache/avsr)")
    adapt.add_argument("--parts", choices=PARTS, default=defaults.parts,
                       help="what is fine-tuned: everything, the audio and visual front ends, or the "
                       "temporal blocks and heads (default: %(default)s)")
    adapt.add_argument("--steps", type=_positive, default=defaults.steps, metavar="N",
                       help="optimiser steps (default: %(default)s)")
    adapt.add_argument("--lr", type=float, default=defaults.lr,
                       help="peak learning rate (default: %(default)s)")
    adapt.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    adapt.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="(default: %(default)s)")
    adapt.add_argument("--workers", type=_positive, metavar="N",
                       help="preprocessing processes (default: one per CPU)")
    adapt.set_defaults(run=_adapt, parser=adapt)


def _adapt(args: argparse.Namespace) -> int:
    from avsr.adapt import AdaptConfig, AdaptError, adapt

    config = AdaptConfig(parts=args.parts, steps=args.steps, lr=args.lr, seed=args.seed)
    try:
        result = adapt(args.model, read_manifest(args.manifest), args.manifest, args.out, args.cache, config,
                       device=args.device, workers=args.workers)
    except AdaptError as error:
        print(f"avsr adapt: error: {error}", file=sys.stderr)
        return 1
    for message in result["failed"]:
        print(f"avsr adapt: left out: {message}", file=sys.stderr)
    print(f"{args.out}: {args.model} adapted on {result['clips']} clips in {result['seconds']:.0f} s; "
          f"CTC loss on them {result['loss_before']:.2f} -> {result['loss_after']:.2f}")
    return 0


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
