"""`avsr benchmark`: word error rate against SNR, for every model, modality and noise condition.

The clips of a manifest (all its rows, or its dev split, or some speakers' rows: `select`) are
preprocessed into the feature cache where they are not yet, read from it once, and recognised
under every condition of the grid: clean, and each noise kind at each SNR (`data.noise`: the
whole-clip SNR rule, seeded per clip and condition, so the same seed gives the same noise and the
same WERs). Work is done once wherever its result cannot differ:

- the clean condition is one condition, not one per noise kind;
- each clip's noisy waveform and log-mel features are made once per condition and read by every
  model, and one forward pass gives every head asked of a model;
- a model's visual trunk runs once per clip: its pooled features feed every condition (the
  visual front end accepts them), and a head that reads video alone, which noise cannot change,
  is decoded once and its WER reported under every condition (not so with `pad_edges`, below).

Models read their inputs as in training's evaluation and `avsr transcribe` (centre crops,
normalised log-mel, bf16 autocast where faster: `models.precision`) and decode greedily, or by
beam search (`beam` > 1) with the model's language model as `Recognizer.decoding_options` picks
it. Babble mixes BABBLE_TALKERS of the benchmark's other clips, never the target itself, or
utterances of a `babble_manifest`.

Each clip is read whole, as it is cut, by default: GRID's clips have their own silence. With
`pad_edges` it is read as `avsr transcribe` reads a recording of it in that noise: the noise is
mixed in, then the clip's edges are padded with still lips and quiet sound up to GRID's silence
(`avsr.windows.edge_pads`), by the quiet frames the noise leaves: for clips cut close to their
words, which the models read far worse unpadded (`python -m avsr.bench.margins` measures both
ways). The padding then depends on the noise, so every head runs under every condition, and the
visual trunk once per clip and padding.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import jiwer
import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from avsr.train import Example, load_examples
from avsr.train import split as train_split
from avsr.transcribe import Recognizer
from avsr.windows import Window, edge_padding, edge_pads, pad_streams
from data.grid import DEV_SIZE
from data.manifest import Utterance, atomic_write, read_manifest
from data.noise import (
    BABBLE,
    BABBLE_TALKERS,
    WHITE,
    NoiseKind,
    NoiseSpec,
    add_noise,
    condition_rng,
    load_noise,
    noise_conditions,
)
from models.config import Modality
from models.decoding import Decoder
from models.dmf import HEAD_INPUTS
from models.ensemble import BUNDLED_NAMES
from models.inputs import crop, pixels
from models.precision import autocast
from models.tokenizer import normalize
from models.voting import decoded
from preprocessing.audio import decode_audio, features
from preprocessing.cache import NotCachedError, build_cache, default_cache_dir, load_clip
from preprocessing.video import FRAME_SECONDS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Split = Literal["all", "dev"]
SPLITS: tuple[Split, ...] = get_args(Split)
MODALITIES: tuple[Modality, ...] = get_args(Modality)
BATCH_SIZE = 16  # clips per forward pass, as in training's evaluation
NOISE_KEY = "benchmark"  # first key of every noise draw (training draws "train" and "dev" noise)
SHOWN_FAILURES = 5  # clips named when some could not be preprocessed
# The plot: one panel per noise kind, WER against SNR; a colour per model, a line style per modality.
PANEL_SIZE = (5.0, 4.0)  # inches (width, height) of each panel
LEGEND_WIDTH = 2.0  # inches to the right of the panels for the legend
LINE_STYLES: dict[Modality, tuple[str, str]] = {"av": ("-", "o"), "audio": ("--", "s"), "video": (":", "^")}


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to recognise, under which conditions, and how."""

    models: tuple[str, ...] = BUNDLED_NAMES  # bundled names or checkpoint paths; rows keep them as given
    modalities: tuple[Modality, ...] = MODALITIES  # picked among each model's heads (see `benchmarked_heads`)
    noises: tuple[NoiseKind, ...] = (BABBLE, WHITE)  # built-in kinds, or noise files or folders
    snrs: tuple[float | None, ...] = (None, 20.0, 15.0, 10.0, 5.0, 0.0, -5.0, -10.0)  # dB; None: clean
    split: Split = "all"  # every row of the manifest, or only the dev split `avsr train` holds out
    speakers: tuple[str, ...] = ()  # only these speakers' rows (the `speaker` column); (): all
    dev_size: int = DEV_SIZE  # clips of the dev split, as given to `avsr train --dev-size`
    babble_manifest: Path | None = None  # babble talkers; None: the benchmark's own clips
    beam: int = 1  # 1: greedy decoding; else beam search, with `lm`
    lm: bool | str | Path = True  # the model's own language model, none (False), or this ARPA file
    seed: int = 0  # of the noise draws
    cache_dir: Path = field(default_factory=default_cache_dir)
    device: str | None = None  # None: CUDA if available
    clip_norm: bool | None = None  # visual statistics of each clip (`Recognizer.load`); None: its default
    pad_edges: bool = False  # pad each clip's edges as `avsr transcribe` does, after its noise
    batch_size: int = BATCH_SIZE
    progress: bool = True  # progress bars on stderr


@dataclass(frozen=True)
class Row:
    """The result of one model head under one condition, over every clip."""

    model: str  # as given in `BenchmarkConfig.models`
    modality: Modality
    noise: str | None  # the noise kind (a file's path as given); None when clean
    snr: float | None  # dB; None when clean
    wer: float
    cer: float
    utterances: int
    seconds: float  # its share of the forward passes, plus its decoding; 0 for a row that
    # reports another's result (a head that reads only video, under noise)


@dataclass
class BenchmarkResult:
    """Every row of a benchmark run, with its settings and timings."""

    manifest: Path
    config: BenchmarkConfig
    rows: list[Row]
    clip_seconds: float  # duration of the clips benchmarked
    wall_seconds: float  # the whole run: loading, noise, models and decoding
    threads: int  # torch's CPU threads

    @property
    def audio_seconds(self) -> float:
        """Seconds of speech recognised: the clips' duration once per row."""
        return self.clip_seconds * len(self.rows)

    @property
    def rtf(self) -> float:
        """Real-time factor: wall seconds per second of speech recognised."""
        return self.wall_seconds / self.audio_seconds

    @property
    def noise_kinds(self) -> list[str]:
        """The noise kinds of the rows, in the order asked for."""
        return list(dict.fromkeys(row.noise for row in self.rows if row.noise is not None))

    @property
    def columns(self) -> list[float | None]:
        """The SNRs of a table or panel: clean (None) first if it was run, then the others as asked."""
        clean = [None] if any(row.noise is None for row in self.rows) else []
        return clean + list(dict.fromkeys(row.snr for row in self.rows if row.noise is not None))

    @property
    def lines(self) -> list[tuple[str, Modality]]:
        """(model, modality) of every table row and plotted line, in the order run."""
        return list(dict.fromkeys((row.model, row.modality) for row in self.rows))

    def to_dict(self) -> dict[str, Any]:
        """The benchmark JSON (see interfaces.md): settings, timings and `results`, one per row."""
        settings = {item.name: _plain(getattr(self.config, item.name)) for item in fields(self.config)
                    if item.name != "progress"}
        return {
            "manifest": str(self.manifest),
            "settings": settings,
            "clips": self.rows[0].utterances,
            "clip_seconds": self.clip_seconds,
            "wall_seconds": self.wall_seconds,
            "threads": self.threads,
            "audio_seconds": self.audio_seconds,
            "rtf": self.rtf,
            "results": [asdict(row) for row in self.rows],
        }


def _plain(value: Any) -> Any:
    """`value` in JSON types: paths as strings, tuples as lists."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


@dataclass
class ClipSet:
    """The clips a benchmark recognises, in memory, and the talkers of their babble."""

    examples: list[Example]
    names: list[str]  # each clip's video relative to the manifest's folder: keys its noise draws
    pool: Mapping[str, np.ndarray]  # babble talkers' waveforms by `Example.key` (the video's path)

    @property
    def references(self) -> list[str]:
        return [normalize(example.transcript) for example in self.examples]

    @property
    def seconds(self) -> float:
        return sum(example.frames for example in self.examples) * FRAME_SECONDS


@dataclass(frozen=True)
class Emissions:
    """The log-probabilities of one model head under one condition, for every clip of a test set."""

    model: str
    modality: Modality
    condition: NoiseSpec
    log_probs: list[Tensor]  # per clip, (frames, VOCAB_SIZE) float32 on the CPU; an ensemble's (members, ...)
    seconds: float  # the head's share of the forward passes (and of the visual trunk's)


def select(
    utterances: Sequence[Utterance],
    split: Split = "all",
    speakers: Sequence[str] = (),
    dev_size: int = DEV_SIZE,
) -> list[Utterance]:
    """The rows to benchmark: all, or the dev split `avsr train` holds out; then only `speakers`'."""
    if split == "dev":
        utterances = train_split(utterances, dev_size)[1]
    if speakers:
        unnamed = [utterance.video for utterance in utterances if "speaker" not in utterance.fields]
        if unnamed:
            raise ValueError(f"choosing speakers needs a speaker column; {unnamed[0]} has none")
        utterances = [utterance for utterance in utterances if utterance.fields["speaker"] in speakers]
    if not utterances:
        raise ValueError("no clips selected")
    return list(utterances)


def benchmarked_heads(supported: Sequence[Modality], asked: Sequence[Modality]) -> tuple[Modality, ...]:
    """The heads of a model with `supported` ones that a benchmark asking for `asked` runs: those
    asked for, or else its main one, so a single-modality model always runs on its own."""
    return tuple(head for head in supported if head in asked) or tuple(supported[:1])


def load_clip_set(
    utterances: Sequence[Utterance],
    root: Path,
    cache_dir: Path,
    babble: Sequence[Utterance] | None = None,
    progress: bool = True,
) -> ClipSet:
    """The clips of `utterances`, preprocessed into `cache_dir` first where they are not yet.

    `root` is the manifest's folder, which clip names are relative to. Babble talkers are the
    clips themselves, or `babble`'s utterances (read from the cache, else decoded).
    """
    report = build_cache([utterance.video for utterance in utterances], cache_dir, progress=progress)
    if report.failures:
        shown = "; ".join(failure.message for failure in report.failures[:SHOWN_FAILURES])
        raise ValueError(f"{report.failed} clips could not be preprocessed (fix or leave them out): {shown}")
    examples = load_examples(utterances, cache_dir, progress)
    names = [os.path.relpath(example.key, root) for example in examples]
    if babble is None:
        pool = {example.key: example.audio for example in examples}
    else:
        pool = {str(utterance.video): _waveform(cache_dir, utterance.video) for utterance in babble}
    return ClipSet(examples, names, pool)


def _waveform(cache_dir: Path, video: Path) -> np.ndarray:
    """The audio of `video`: the cache's, else decoded from the file."""
    try:
        return load_clip(cache_dir, video).audio
    except NotCachedError:
        return decode_audio(video)


def noisy_waveform(clip_set: ClipSet, index: int, condition: NoiseSpec, seed: int) -> np.ndarray:
    """Clip `index`'s waveform under `condition`, drawn from `seed`, the clip and the condition."""
    example = clip_set.examples[index]
    rng = condition_rng(seed, NOISE_KEY, condition, clip_set.names[index])
    return add_noise(example.audio, condition, rng, pool=clip_set.pool, exclude=example.key)


def heard(
    clip_set: ClipSet, condition: NoiseSpec, seed: int, pad_edges: bool
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Every clip's waveform under `condition`, and the frames (before, after) of padding its edges
    get with `pad_edges` (`avsr transcribe`'s rule, by the quiet the noise leaves; else none): the
    waveforms padded with quiet sound."""
    waveforms, pads = [], []
    for index, example in enumerate(clip_set.examples):
        waveform = noisy_waveform(clip_set, index, condition, seed)
        before = after = 0
        if pad_edges:
            padding = edge_padding(waveform)
            before, after = edge_pads(Window(0, example.frames, 0, example.frames), padding)
            waveform = pad_streams(None, waveform, before, after, padding.rms)[1]
        waveforms.append(waveform)
        pads.append((before, after))
    return waveforms, pads


def audio_batch(waveforms: Sequence[np.ndarray]) -> Tensor:
    """(B, 4T, N_MELS) normalised log-mel of `waveforms`, zero-padded."""
    return pad_sequence([features(torch.from_numpy(waveform)) for waveform in waveforms], batch_first=True)


@torch.inference_mode()
def visual_batch(
    recognizer: Recognizer, clip_set: ClipSet, indices: Sequence[int], pads: Sequence[tuple[int, int]]
) -> Tensor:
    """(B, T, C) pooled visual trunk features of clips `indices` (centre crops), their first and last
    crops held for `pads` frames (before, after) each, for the model's input."""
    frontend = recognizer.model.video_frontend
    mouths = [pad_streams(clip_set.examples[index].mouths, None, *pad, 0.0)[0]
              for index, pad in zip(indices, pads, strict=True)]
    crops = [pixels(crop(clip, frontend.crop_size)) for clip in mouths]
    lengths = torch.tensor([len(clip) for clip in crops], device=recognizer.device)
    video = pad_sequence(crops, batch_first=True).to(recognizer.device)
    with autocast(recognizer.device, recognizer.bf16):
        return frontend.pooled(video, lengths)


def _reads(head: Modality, stream: str) -> bool:
    return stream in HEAD_INPUTS[head]


def iter_emissions(
    recognizers: Mapping[str, Recognizer],
    heads: Mapping[str, Sequence[Modality]],
    clip_set: ClipSet,
    conditions: Sequence[NoiseSpec],
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    pad_edges: bool = False,
) -> Iterator[Emissions]:
    """The emissions of each model's `heads` under each condition, condition by condition.

    A head that does not hear is computed under the first condition only, since noise cannot
    change it, unless `pad_edges` (`heard`) lets the noise change its input's padding. A model's
    visual trunk runs once per batch of clips and padding, and its time goes to the condition
    that ran it.
    """
    clips = len(clip_set.examples)
    batches = [range(start, min(start + batch_size, clips)) for start in range(0, clips, batch_size)]
    trunk: dict[tuple[str, int, tuple[tuple[int, int], ...]], Tensor] = {}
    for index, condition in enumerate(conditions):
        wanted = {name: [head for head in names if index == 0 or pad_edges or _reads(head, "audio")]
                  for name, names in heads.items()}
        hears = any(_reads(head, "audio") for names in wanted.values() for head in names)
        if hears or (pad_edges and any(wanted.values())):
            waveforms, pads = heard(clip_set, condition, seed, pad_edges)
        else:
            waveforms, pads = [], [(0, 0)] * clips
        audio = [audio_batch([waveforms[clip] for clip in batch]) for batch in batches] if hears else None
        lengths = [torch.tensor([clip_set.examples[clip].frames + sum(pads[clip]) for clip in batch])
                   for batch in batches]
        for name, recognizer in recognizers.items():
            if not wanted[name]:
                continue
            start = time.perf_counter()
            visual = None
            if any(_reads(head, "video") for head in wanted[name]):
                visual = []
                for number, batch in enumerate(batches):
                    key = name, number, tuple(pads[clip] for clip in batch)
                    if key not in trunk:
                        trunk[key] = visual_batch(recognizer, clip_set, batch, key[2])
                    visual.append(trunk[key])
            outputs = _forward(recognizer, wanted[name], audio, visual, lengths)
            seconds = time.perf_counter() - start
            for head, log_probs in outputs.items():
                yield Emissions(name, head, condition, log_probs, seconds / len(outputs))


@torch.inference_mode()
def _forward(
    recognizer: Recognizer,
    heads: Sequence[Modality],
    audio: list[Tensor] | None,
    visual: list[Tensor] | None,
    lengths: list[Tensor],
) -> dict[Modality, list[Tensor]]:
    """Each of `heads`' per-clip log-probabilities, from batches of features; streams no head reads
    are left out, so they cost nothing."""
    device = recognizer.device
    hears = any(_reads(head, "audio") for head in heads)
    sees = any(_reads(head, "video") for head in heads)
    result: dict[Modality, list[Tensor]] = {head: [] for head in heads}
    for index, length in enumerate(lengths):
        with autocast(device, recognizer.bf16):
            outputs = recognizer.model(
                audio[index].to(device) if hears else None,
                visual[index] if sees else None,
                length.to(device),
            )
        for head in heads:
            log_probs = outputs[head].float().cpu()
            frames = length.tolist()
            result[head] += [clip[..., :count, :] for clip, count in zip(log_probs, frames, strict=True)]
    return result


def score(
    decoder: Decoder, log_probs: Sequence[Tensor], references: Sequence[str]
) -> tuple[float, float, float]:
    """(WER, CER, seconds of decoding) of `decoder`'s transcripts of `log_probs` against `references`."""
    start = time.perf_counter()
    hypotheses = [decoded(decoder, clip).text for clip in log_probs]
    seconds = time.perf_counter() - start
    return jiwer.wer(list(references), hypotheses), jiwer.cer(list(references), hypotheses), seconds


def run_benchmark(manifest: str | Path, config: BenchmarkConfig | None = None) -> BenchmarkResult:
    """Recognise the clips of `manifest` with every model, head and condition `config` asks for.

    Models, decoders and clips are all loaded before the first forward pass, so a bad option
    fails at once. Raises ValueError for a selection or noise that cannot work.
    """
    started = time.perf_counter()
    manifest, config = Path(manifest), config or BenchmarkConfig()
    config = replace(config, device=config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    conditions = noise_conditions(config.noises, config.snrs)
    if not conditions:
        raise ValueError("no conditions: give some SNRs, or clean")
    for kind in config.noises:
        if isinstance(kind, Path):
            load_noise(kind)  # decoded once per process: a file that cannot serve fails here
    recognizers = {name: Recognizer.load(name, config.device, config.clip_norm)
                   for name in dict.fromkeys(config.models)}
    decoders = {name: recognizer.decoder(recognizer.decoding_options(config.beam, config.lm))
                for name, recognizer in recognizers.items()}
    heads = {name: benchmarked_heads(recognizer.modalities, config.modalities)
             for name, recognizer in recognizers.items()}
    utterances = read_manifest(manifest)
    chosen = select(utterances, config.split, config.speakers, config.dev_size)
    babble = None if config.babble_manifest is None else read_manifest(config.babble_manifest)
    clip_set = load_clip_set(chosen, manifest.parent, config.cache_dir, babble, config.progress)
    if any(condition.kind == BABBLE for condition in conditions):
        talkers = len(clip_set.pool) - any(example.key in clip_set.pool for example in clip_set.examples)
        if talkers < BABBLE_TALKERS:
            raise ValueError(f"babble needs {BABBLE_TALKERS} talkers besides each clip; there are {talkers}")

    references = clip_set.references
    computed: dict[tuple[str, Modality, NoiseSpec], Row] = {}
    rows_per_head = len(conditions)
    total = sum(len(names) for names in heads.values()) * rows_per_head
    grid = iter_emissions(recognizers, heads, clip_set, conditions, config.seed, config.batch_size,
                          config.pad_edges)
    with tqdm(total=total, desc="benchmark", unit="row", disable=not config.progress) as bar:
        for emissions in grid:
            wer, cer, seconds = score(decoders[emissions.model], emissions.log_probs, references)
            row = Row(emissions.model, emissions.modality, *_columns(emissions.condition), wer, cer,
                      len(references), emissions.seconds + seconds)
            computed[emissions.model, emissions.modality, emissions.condition] = row
            bar.update(1 if config.pad_edges or _reads(emissions.modality, "audio") else rows_per_head)
            bar.set_postfix_str(f"{emissions.model} {emissions.modality} {emissions.condition}",
                                refresh=False)
    rows = [
        computed.get((name, head, condition))
        or replace(computed[name, head, conditions[0]], noise=_columns(condition)[0],
                   snr=_columns(condition)[1], seconds=0.0)
        for name in recognizers for head in heads[name] for condition in conditions
    ]
    wall_seconds = time.perf_counter() - started
    return BenchmarkResult(manifest, config, rows, clip_set.seconds, wall_seconds, torch.get_num_threads())


def _columns(condition: NoiseSpec) -> tuple[str | None, float | None]:
    """A condition's `noise` and `snr` as a row shows them."""
    return (None if condition.kind is None else str(condition.kind)), condition.snr_db


def markdown(result: BenchmarkResult) -> str:
    """One table per noise kind: a row per model and modality, a column per SNR (clean first).

    WERs in %, the lowest of each column in bold.
    """
    columns = result.columns
    header = ["model", "modality", *("clean" if snr is None else f"{snr:g} dB" for snr in columns)]
    wers = {(row.model, row.modality, row.noise, row.snr): row.wer for row in result.rows}
    tables = []
    for kind in result.noise_kinds or [None]:
        table = [[wers[model, modality, None if snr is None else kind, snr] for snr in columns]
                 for model, modality in result.lines]
        best = [min(column) for column in zip(*table, strict=True)]
        rule = ["---"] * 2 + ["--:"] * len(columns)  # numbers aligned right
        lines = [f"### {kind or 'clean'}: WER (%)", "", _cells(header), _cells(rule)]
        for (model, modality), values in zip(result.lines, table, strict=True):
            cells = [f"**{100 * value:.1f}**" if value == low else f"{100 * value:.1f}"
                     for value, low in zip(values, best, strict=True)]
            lines.append(_cells([model, modality, *cells]))
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def _cells(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def summary(result: BenchmarkResult) -> str:
    """One line of timings."""
    return (f"{len(result.rows)} rows of {result.rows[0].utterances} clips ({result.clip_seconds:.0f} s) "
            f"in {result.wall_seconds:.1f} s: real-time factor {result.rtf:.4f}")


def write_json(result: BenchmarkResult, path: Path) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(result.to_dict(), handle, indent=2)


def write_csv(result: BenchmarkResult, path: Path) -> None:
    """One line per row, the JSON's `results` columns; clean rows have empty `noise` and `snr`."""
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, [item.name for item in fields(Row)], lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(row) for row in result.rows)


def plot(result: BenchmarkResult) -> Figure:
    """WER against SNR: a panel per noise kind, a line per model and modality, clean at the right.

    The SNRs are evenly spaced, lowest on the left, so every panel reads from noisy to clean;
    each model has a colour and each modality a line style, the same in every panel.
    """
    from matplotlib.figure import Figure  # imported here: slow, and only plots need it

    kinds = result.noise_kinds or [None]
    snrs = sorted(snr for snr in result.columns if snr is not None)
    positions = [*snrs, None] if None in result.columns else snrs  # x = index; clean last
    labels = ["clean" if snr is None else f"{snr:g}" for snr in positions]
    width, height = PANEL_SIZE
    figure = Figure(figsize=(width * len(kinds) + LEGEND_WIDTH, height), layout="constrained")
    panels = figure.subplots(1, len(kinds), sharey=True, squeeze=False)[0]
    models = list(dict.fromkeys(model for model, _ in result.lines))
    wers = {(row.model, row.modality, row.noise, row.snr): 100 * row.wer for row in result.rows}
    for axes, kind in zip(panels, kinds, strict=True):
        for model, modality in result.lines:
            style, marker = LINE_STYLES[modality]
            values = [wers[model, modality, None if snr is None else kind, snr] for snr in positions]
            axes.plot(range(len(positions)), values, style, marker=marker, color=f"C{models.index(model)}",
                      label=f"{model} {modality}")
        axes.set_xticks(range(len(positions)), labels)
        axes.set(title=f"{kind or 'clean'}", xlabel="SNR (dB)")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("WER (%)")
    figure.legend(*panels[0].get_legend_handles_labels(), loc="outside right upper")
    return figure


def write_plot(result: BenchmarkResult, path: Path) -> Figure:
    """Save `plot(result)` as a PNG at `path`; the figure, for a caller to inspect."""
    figure = plot(result)
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png")
    return figure
