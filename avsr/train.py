"""`avsr train`: fit a model of any kind to a manifest's cached clips, robust to noise.

Every epoch visits each training clip once in a seeded random order, augmented (`avsr.augment`:
crop and flip, noise, SpecAugment, tempo, and for fusion models modality dropout), and minimises the
CTC loss of the model's main head plus `aux_weight` times that of each auxiliary head; then
the dev split is decoded greedily and scored (WER). RUN_DIR receives, every epoch:

    last.pt     all it takes to resume: model, optimiser, schedule, RNG states, history
    best.pt     the model of the lowest dev WER so far (clean and in babble averaged, if it hears;
                with `--ema`, the weights' moving average is what is scored and kept)
    log.csv, tb/, curves.png    training loss and dev WERs by epoch

One process, or one per device under `torchrun --nproc_per_node N` (DDP: each process trains
on a disjoint shard of every epoch; the first one evaluates and writes). With `--init-visual`,
the visual stem and trunk come from a trained model and stay frozen; their pooled features are
computed once per clip (centre crop and its mirror image), so a step costs only the audio
front end and the temporal blocks. With `--init`, a run starts from a trained model of the
same architecture and trains all of it (e.g. the trunk, end to end, after a frozen-trunk run),
or all but the trunk with `--init-visual`; `--init-audio` and `--init-video` start one stream
(front end, blocks, head) from a trained model's, e.g. DMF's from single-stream models.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jiwer
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils.rnn import pad_sequence
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from avsr.augment import (
    AugmentConfig,
    Perturbation,
    Stream,
    draw_flip,
    draw_margins,
    draw_sources,
    draw_tempo,
    draw_words,
    drop_channels,
    noisy,
    perturbation,
    spec_augment,
    speech_span,
    stretch,
    word_cuts,
)
from data.grid import DEV_SIZE, TRAIN_SPEAKER, alignment_path, dev_split, read_alignment
from data.manifest import Utterance, atomic_write, read_manifest
from data.noise import BABBLE, KINDS_HELP, NoiseSpec, add_noise, condition_rng, parse_noise, parse_snr
from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import AUDIO_STEMS, BLOCKS, KINDS, Kind, Modality, ModelConfig, supported_modalities
from models.decoding import greedy_decode
from models.dmf import INTERMEDIATE, AVSRModel, build_model, count_parameters
from models.frontends import VisualFrontEnd
from models.inputs import crop, pixels
from models.precision import autocast, default_bf16
from models.tokenizer import BLANK, encode, normalize
from preprocessing.audio import AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS, SAMPLES_PER_VIDEO_FRAME, features
from preprocessing.cache import default_cache_dir, load_clip
from preprocessing.video import VIDEO_FPS

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

LAST = "last.pt"  # RUN_DIR file to resume from
BEST = "best.pt"  # RUN_DIR file with the best model, for `models.checkpoint.load_checkpoint`
LOG = "log.csv"
CURVES = "curves.png"
LOSS = "train_loss"  # log column: the weighted loss training minimises, mean over the epoch's batches
LOSS_ = "train_loss_"  # + a head's name ("av", "audio", "video"): that head's own loss, unweighted
TENSORBOARD = "tb"
DEV_NOISE = NoiseSpec(BABBLE, 0.0)  # the noisy dev condition: babble at 0 dB SNR
GRID_CREDIT = (
    "trained on the GRID corpus (CC BY 4.0): M. Cooke, J. Barker, S. Cunningham, X. Shao, "
    "JASA 120(5), 2006"
)


@dataclass
class TrainConfig:
    """Every setting that shapes a training run; `to_dict()` holds only plain types."""

    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 30
    batch_size: int = 16  # clips per optimiser step, over all processes
    lr: float = 1e-3  # peak learning rate, after the warm-up
    warmup_epochs: float = 2.0  # linear warm-up from 0, then cosine decay to 0 at the last step
    weight_decay: float = 1e-2  # AdamW's, on weight matrices (not biases or norms)
    grad_clip: float = 5.0  # largest gradient norm, over all parameters
    aux_weight: float = 0.5  # loss weight of each auxiliary head ("audio", "video" of dmf and late)
    inter_weight: float = 0.0  # DMF: loss weight of intermediate CTC, its fused head on the middle
    # shared layer (0: off)
    ema: float = 0.0  # per-step decay of the moving average of the weights that is evaluated and kept as
    # best.pt (0: off, the trained weights themselves); e.g. 0.995 averages over about 200 steps
    seed: int = 0
    dev_size: int = DEV_SIZE  # clips held out for the dev WER (see `split`)
    bf16: bool | None = None  # bf16 autocast; None: the faster on the device (`default_bf16`)
    init: str | None = None  # checkpoint of this model config whose weights start the run (all train
    # unless `init_visual` copies the trunk again and freezes it)
    init_visual: str | None = None  # checkpoint whose visual stem and trunk are copied and frozen
    init_audio: str | None = None  # checkpoint whose audio stream (front end, blocks, head) starts this one
    init_video: str | None = None  # checkpoint whose video stream starts this one (before `init_visual`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        model = ModelConfig.from_dict(data["model"])
        # Runs stored before `init`, `init_audio`, `init_video`, `ema` and `inter_weight` existed had none.
        data = {"init": None, "init_audio": None, "init_video": None, "ema": 0.0, "inter_weight": 0.0} | data
        return cls(**data | {"model": model, "augment": AugmentConfig(**data["augment"])})


@dataclass
class Example:
    """One clip in memory: the cache's arrays, its transcript and the classes CTC learns."""

    key: str  # the video's path: names the clip for its noise draws and in the babble pool
    transcript: str
    target: np.ndarray  # (characters,) int64 class indices
    mouths: np.ndarray  # (T, MOUTH_SIZE, MOUTH_SIZE) uint8
    audio: np.ndarray  # (T * SAMPLES_PER_VIDEO_FRAME,) float32
    pooled: np.ndarray | None = None  # (2, T, channels[-1]) frozen trunk features: centre, mirror
    cuts: np.ndarray | None = None  # (words + 1,) video frames between its words (`word_cuts`), from
    # its word alignment; None: no alignment, never spliced, cropped or trimmed
    speech: tuple[int, int] | None = None  # video frames [start, stop) from its first word's start to
    # its last word's end (`speech_span`); None exactly when `cuts` is

    @property
    def frames(self) -> int:
        return len(self.mouths)


@dataclass
class Batch:
    """Padded model inputs and CTC targets of a list of clips."""

    audio: Tensor | None  # (B, 4T, N_MELS) normalised log-mel; None for a video model
    video: Tensor | None  # (B, T, crop, crop) in [0, 1] or pooled features (B, T, C); None: audio
    lengths: Tensor  # (B,) video frames
    targets: Tensor  # (B, S) class indices, zero-padded
    target_lengths: Tensor  # (B,)
    weights: dict[str, Tensor]  # per head (B,): 1 where a clip's loss counts, 0 (stream blanked)

    def to(self, device: torch.device) -> Batch:
        return Batch(
            *(None if t is None else t.to(device) for t in (self.audio, self.video)),
            self.lengths.to(device),
            self.targets.to(device),
            self.target_lengths.to(device),
            {head: weight.to(device) for head, weight in self.weights.items()},
        )


@dataclass(frozen=True)
class Processes:
    """This process among the training processes: the only one, or one of torchrun's."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every process, in rank order."""
        if self.world == 1:
            return [obj]
        gathered = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered

    def sum(self, values: Tensor) -> Tensor:
        """`values` summed over every process, in place."""
        if self.world > 1:
            dist.all_reduce(values)
        return values


def start_processes(device: str) -> tuple[Processes, torch.device]:
    """Join torchrun's process group when started by it (WORLD_SIZE > 1), and this process's device.

    Gloo on CPUs, NCCL on CUDA, where each process takes the GPU of its LOCAL_RANK.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes(), torch.device(device)
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    target = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device(device)
    return Processes(dist.get_rank(), world), target


def split(utterances: Sequence[Utterance], dev_size: int) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev): `dev_size` clips drawn at random (seeded) for dev, the others for training.

    A GRID-like manifest (one with a `speaker` column) is split by `data.grid.dev_split`: only
    speaker s1's clips, the others (s4) left out of both. Any other manifest's rows are one pool.
    """
    if all("speaker" in utterance.fields for utterance in utterances):
        return dev_split(utterances, dev_size)
    one_speaker = [replace(u, fields=u.fields | {"speaker": TRAIN_SPEAKER}) for u in utterances]
    dev_videos = {utterance.video for utterance in dev_split(one_speaker, dev_size)[1]}
    return (
        [utterance for utterance in utterances if utterance.video not in dev_videos],
        [utterance for utterance in utterances if utterance.video in dev_videos],
    )


def load_examples(utterances: Sequence[Utterance], cache_dir: Path, progress: bool) -> list[Example]:
    """The cached clips of `utterances`, in memory (NotCachedError names the first one missing), with
    the word cuts of those that have a GRID alignment of their transcript's words."""
    examples = []
    for utterance in tqdm(utterances, desc="loading clips", unit="clip", disable=not progress):
        clip = load_clip(cache_dir, utterance.video)
        cuts, speech = clip_words(utterance, len(clip.mouths))
        examples.append(Example(str(utterance.video), utterance.transcript, target_of(utterance.transcript),
                                clip.mouths, clip.audio, cuts=cuts, speech=speech))
    return examples


def target_of(transcript: str) -> np.ndarray:
    """The CTC classes of `transcript`, int64."""
    return np.array(encode(transcript), dtype=np.int64)


def clip_words(utterance: Utterance, frames: int) -> tuple[np.ndarray, tuple[int, int]] | tuple[None, None]:
    """`word_cuts` and `speech_span` of the clip from its alignment file; Nones without one, for one
    whose words are not the transcript's, or where a word is shorter than a frame."""
    path = alignment_path(utterance.video)
    if not path.is_file():
        return None, None
    words = read_alignment(path)
    if [word.word for word in words] != normalize(utterance.transcript).split():
        return None, None
    cuts = word_cuts(words, frames, VIDEO_FPS)
    return (None, None) if cuts is None else (cuts, speech_span(words, frames, VIDEO_FPS))


# The heads whose loss a perturbed clip leaves out: those that read a blanked stream, and the
# video head for lips of another clip (they say something else).
LOSES: dict[Perturbation | None, tuple[str, ...]] = {
    None: (),
    "blank audio": ("audio",),
    "blank video": ("video",),
    "other video": ("video",),
}


STREAM_FRAMES = {"audio": AUDIO_FRAMES_PER_VIDEO_FRAME, "video": 1}  # a stream's frames per video frame


def fit_length(frames: Tensor, length: int) -> Tensor:
    """(length, ...) from (T, ...) `frames`: cut, or padded by repeating the last frame."""
    if len(frames) >= length:
        return frames[:length]
    return torch.cat([frames, frames[-1:].expand(length - len(frames), *frames.shape[1:])])


class Batcher:
    """Makes batches of a list of examples: augmented for training, or as they are for evaluation."""

    def __init__(
        self,
        examples: Sequence[Example],
        config: TrainConfig,
        pool: Mapping[str, np.ndarray],
        frontend: VisualFrontEnd | None = None,
    ) -> None:
        """`pool`: training waveforms for babble; `frontend`: the frozen visual front end whose pooled
        features the examples hold (`precompute_pooled`), which the batches then carry instead of
        crops; it computes those of spliced clips and of a blank frame."""
        self.examples = examples
        self.config = config
        self.pool = pool
        self.frontend = frontend
        self.blank_pooled = None
        if frontend is not None:
            blank = np.zeros((1, frontend.crop_size, frontend.crop_size), dtype=np.uint8)
            self.blank_pooled = pooled_features(frontend, blank, (False,))[0, 0]
        self.heads = supported_modalities(config.model.kind)
        self.hears = config.model.kind != "video"
        self.sees = config.model.kind != "audio"
        self.peers = defaultdict(list)  # words -> the examples with word cuts and that many words
        for index, example in enumerate(examples):
            if example.cuts is not None:
                self.peers[len(example.cuts) - 1].append(index)

    def __call__(
        self, indices: Sequence[int], epoch: int | None = None, noise: NoiseSpec | None = None
    ) -> Batch:
        """Clips `indices`, augmented as in `epoch`; or, without one, centred and clean or under `noise`."""
        audio, video, lengths, perturbed, targets = [], [], [], [], []
        for index in indices:
            example = self.examples[index]
            rng = None if epoch is None else condition_rng(self.config.seed, "train", epoch, example.key)
            if rng is not None:
                example = self.trim(self.crop(self.splice(index, rng), rng), rng)
            fused = rng is not None and "av" in self.heads
            change = perturbation(rng, self.config.augment) if fused else None
            clip = {}  # this clip's streams, (frames, ...) each
            if self.hears:
                clip["audio"] = self._audio(example, rng, noise, change)
            if self.sees:
                if change == "other video":  # any clip but this one
                    other = (index + 1 + int(rng.integers(len(self.examples) - 1))) % len(self.examples)
                    clip["video"] = fit_length(self._video(self.examples[other], rng, False), example.frames)
                else:
                    clip["video"] = self._video(example, rng, change == "blank video")
            factors = np.ones(1) if rng is None else draw_tempo(rng, self.config.augment)
            frames = max(1, round(example.frames * float(np.mean(1 / factors))))
            if np.any(factors != 1):
                clip = {name: stretch(stream, frames * STREAM_FRAMES[name], factors)
                        for name, stream in clip.items()}
            if self.hears:
                audio.append(clip["audio"])
            if self.sees:
                video.append(clip["video"])
            lengths.append(frames)
            perturbed.append(change)
            targets.append(torch.from_numpy(example.target))
        return Batch(
            pad_sequence(audio, batch_first=True) if audio else None,
            pad_sequence(video, batch_first=True) if video else None,
            torch.tensor(lengths),
            pad_sequence(targets, batch_first=True, padding_value=BLANK),
            torch.tensor([len(target) for target in targets]),
            {head: torch.tensor([float(head not in LOSES[change]) for change in perturbed])
             for head in self.heads},
        )

    def splice(self, index: int, rng: np.random.Generator) -> Example:
        """Example `index` with each word's span (frames, samples, features, words) taken from the
        clip `draw_sources` draws for it: itself, or another of as many words. A clip without word
        cuts stays as it is."""
        example = self.examples[index]
        if example.cuts is None:
            return example
        words = len(example.cuts) - 1
        sources = draw_sources(rng, index, words, self.peers[words], self.config.augment)
        if sources == [index] * words:
            return example
        pieces = [(self.examples[source], slice(*self.examples[source].cuts[slot : slot + 2]))
                  for slot, source in enumerate(sources)]
        transcript = " ".join(normalize(clip.transcript).split()[slot]
                              for slot, (clip, _) in enumerate(pieces))
        samples = SAMPLES_PER_VIDEO_FRAME
        cuts = np.cumsum([0, *(span.stop - span.start for _, span in pieces)])
        (first, _), (last, last_span) = pieces[0], pieces[-1]  # a word keeps its place in its span
        return Example(
            example.key,  # its babble stays other clips' speech
            transcript,
            target_of(transcript),
            np.concatenate([clip.mouths[span] for clip, span in pieces]),
            np.concatenate([clip.audio[span.start * samples : span.stop * samples] for clip, span in pieces]),
            None,  # the frozen trunk's features see 5 frames across each cut: `_video` computes them anew
            cuts,
            (first.speech[0], int(cuts[-2] + last.speech[1] - last_span.start)),
        )

    def crop(self, example: Example, rng: np.random.Generator) -> Example:
        """`example` cut to the run of its words `draw_words` draws (frames, samples, features, words)
        at its word cuts; a clip without word cuts stays as it is."""
        if example.cuts is None:
            return example
        words = len(example.cuts) - 1
        first, stop = draw_words(rng, words, self.config.augment)
        if (first, stop) == (0, words):
            return example
        span = slice(*example.cuts[[first, stop]])
        transcript = " ".join(normalize(example.transcript).split()[first:stop])
        samples = SAMPLES_PER_VIDEO_FRAME
        return Example(
            example.key,
            transcript,
            target_of(transcript),
            example.mouths[span],
            example.audio[span.start * samples : span.stop * samples],
            None if example.pooled is None else example.pooled[:, span],
            example.cuts[first : stop + 1] - example.cuts[first],
            (example.speech[0] - span.start if first == 0 else 0,  # a cut in a pause: no silence to trim
             example.speech[1] - span.start if stop == words else span.stop - span.start),
        )

    def trim(self, example: Example, rng: np.random.Generator) -> Example:
        """`example` with the silence before and after its words cut as `draw_margins` draws (frames,
        samples, features); a clip without word cuts stays as it is."""
        if example.speech is None:
            return example
        start, stop = draw_margins(rng, example.frames, example.speech, self.config.augment)
        if (start, stop) == (0, example.frames):
            return example
        samples = SAMPLES_PER_VIDEO_FRAME
        return replace(
            example,
            mouths=example.mouths[start:stop],
            audio=example.audio[start * samples : stop * samples],
            pooled=None if example.pooled is None else example.pooled[:, start:stop],
            cuts=np.array([0, *(example.cuts[1:-1] - start), stop - start]),
            speech=(example.speech[0] - start, example.speech[1] - start),
        )

    def _audio(
        self, example: Example, rng: np.random.Generator | None, noise: NoiseSpec | None,
        change: Perturbation | None,
    ) -> Tensor:
        if change == "blank audio":
            return torch.zeros(example.frames * AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS)
        waveform = example.audio
        if rng is not None:
            if change != "other video":  # mismatched lips come with clean speech
                waveform = noisy(waveform, rng, self.config.augment, self.pool, example.key)
        elif noise is not None:
            noise_rng = condition_rng(self.config.seed, "dev", noise, example.key)
            waveform = add_noise(waveform, noise, noise_rng, pool=self.pool, exclude=example.key)
        mel = features(torch.from_numpy(waveform))
        return mel if rng is None else spec_augment(mel, rng, self.config.augment)

    def _video(self, example: Example, rng: np.random.Generator | None, blank: bool) -> Tensor:
        flip = rng is not None and draw_flip(rng, self.config.augment)
        if self.frontend is not None:
            if blank:
                return torch.from_numpy(self.blank_pooled).expand(example.frames, -1)
            if example.pooled is None:  # a spliced clip
                pooled = torch.from_numpy(pooled_features(self.frontend, example.mouths, (flip,))[0])
            else:
                pooled = torch.from_numpy(example.pooled[int(flip)])
            return pooled if rng is None else drop_channels(pooled, rng, self.config.augment)
        size = self.config.model.crop_size
        if blank:
            return torch.zeros(example.frames, size, size)
        crops = crop(example.mouths, size, rng)
        return pixels(crops[:, :, ::-1] if flip else crops)


def epoch_batches(n_clips: int, epoch: int, config: TrainConfig, procs: Processes) -> list[list[int]]:
    """This process's batches of `epoch`: its shard of a seeded shuffle, cut in batch_size / world.

    Every process gets as many clips, so up to world - 1 clips (a different few each epoch) sit out.
    """
    order = condition_rng(config.seed, "order", epoch).permutation(n_clips)
    shard = order[procs.rank :: procs.world][: n_clips // procs.world].tolist()
    size = config.batch_size // procs.world
    return [shard[start : start + size] for start in range(0, len(shard), size)]


def head_weights(kind: Kind, aux_weight: float, inter_weight: float = 0.0) -> dict[str, float]:
    """Loss weight of each head: 1 for the main one (the first), `aux_weight` for the others, and
    for DMF `inter_weight` for INTERMEDIATE where that is not 0."""
    heads = supported_modalities(kind)
    weights = {head: 1.0 if head == heads[0] else aux_weight for head in heads}
    return weights | ({INTERMEDIATE: inter_weight} if kind == "dmf" and inter_weight else {})


def head_losses(outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
    """Each head's CTC loss, per clip summed over characters and averaged over the batch's clips.

    As `models.loss.ctc_loss`, but a clip's loss on a head that read a blanked stream counts as 0.
    """
    losses = {}
    for head, log_probs in outputs.items():
        per_clip = F.ctc_loss(
            log_probs.float().transpose(0, 1),
            batch.targets,
            batch.lengths,
            batch.target_lengths,
            blank=BLANK,
            reduction="none",
            zero_infinity=True,
        )
        counts = batch.weights["av" if head == INTERMEDIATE else head]
        losses[head] = (per_clip * counts).sum() / len(batch.lengths)
    return losses


def batch_loss(outputs: Mapping[str, Tensor], batch: Batch, weights: Mapping[str, float]) -> Tensor:
    """The loss training minimises: the heads' losses (`head_losses`) weighted by `weights`."""
    return weighted(head_losses(outputs, batch), weights)


def weighted(losses: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """The sum of the heads' `losses`, each times its weight."""
    return sum(weights[head] * loss for head, loss in losses.items())


def optimizer_step(
    net: nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    trainable: Sequence[Tensor],
    weights: Mapping[str, float],
    config: TrainConfig,
    penalty: Callable[[], Tensor] | None = None,
) -> dict[str, Tensor]:
    """One step on `batch` (already on the model's device): forward, loss, backward, clipping, update.

    `penalty()`, if given, is added to the loss that is minimised (e.g. adaptation's pull towards
    the starting weights). Returns the batch's losses, detached (reading one waits for the device):
    `LOSS`, the weighted CTC loss alone, and each head's as `LOSS_` + head.
    """
    with autocast(batch.targets.device, config.bf16):
        outputs = net(batch.audio, batch.video, batch.lengths, intermediate=INTERMEDIATE in weights)
    heads = head_losses(outputs, batch)
    loss = weighted(heads, weights)
    optimizer.zero_grad(set_to_none=True)
    (loss if penalty is None else loss + penalty()).backward()
    nn.utils.clip_grad_norm_(trainable, config.grad_clip)
    optimizer.step()
    return {LOSS: loss.detach()} | {LOSS_ + head: value.detach() for head, value in heads.items()}


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of each step: linear up to 1 over `warmup_steps`, then a cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norms (1-D tensors)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.dim() > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.dim() <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


# What `--init-audio` and `--init-video` copy: a stream's front end, blocks and head (by weight
# name), and the settings that shape them besides its width, which must be the same on both sides.
STREAM_WEIGHTS: dict[Stream, tuple[str, ...]] = {
    "audio": ("audio_frontend.", "audio_blocks.", "heads.audio."),
    "video": ("video_frontend.", "video_blocks.", "heads.video."),
}
STREAM_SHAPE: dict[Stream, tuple[str, ...]] = {
    "audio": ("levels", "block"),
    "video": ("levels", "block", "crop_size", "visual_channels"),
}


def frozen_visual(frontend: VisualFrontEnd) -> list[nn.Module]:
    """The parts `--init-visual` copies and freezes: everything but the final projection."""
    return [frontend.stem, frontend.trunk[:-1]]


def initial_weights(path: str | Path, config: ModelConfig) -> dict[str, Tensor]:
    """The weights of the checkpoint `path`, whose model must be built as `config` describes.

    Dropout may differ: it shapes no weight, so a run may continue a model with more or less of it.
    """
    source, _ = load_checkpoint(path)
    if replace(source.config, dropout=config.dropout).to_dict() != config.to_dict():
        raise ValueError(f"--init {path}: its model differs from the one to train "
                         f"({source.config.to_dict()} != {config.to_dict()})")
    return source.state_dict()  # float32: `load_checkpoint` builds the model in full precision


def copy_visual(model: AVSRModel, path: str | Path) -> None:
    """Load the visual stem and trunk of the model in checkpoint `path` into `model`'s."""
    source, _ = load_checkpoint(path)
    if source.video_frontend is None or model.video_frontend is None:
        raise ValueError(f"--init-visual needs visual models on both sides; {path} or this one has none")
    for target, part in zip(frozen_visual(model.video_frontend), frozen_visual(source.video_frontend),
                            strict=True):
        target.load_state_dict(part.state_dict())


def copy_stream(model: AVSRModel, path: str | Path, stream: Stream) -> None:
    """Load the `stream` front end, blocks and head of the model in checkpoint `path` into `model`'s.

    They train on from there: e.g. a DMF's streams start as trained audio-only and video-only
    models of its width, as auto_avsr starts its audiovisual model from its audio and video ones.
    """
    source, _ = load_checkpoint(path)
    if getattr(source, f"{stream}_blocks") is None or getattr(model, f"{stream}_blocks") is None:
        raise ValueError(f"--init-{stream} needs a {stream} stream on both sides ({stream}, late or dmf "
                         f"models); {path} is a {source.config.kind} model, this one {model.config.kind}")
    shapes = [(name, getattr(source.config, name), getattr(model.config, name))
              for name in STREAM_SHAPE[stream]]
    shapes.append(("width", source.config.width(stream), model.config.width(stream)))
    differences = [f"{name} {theirs} != {ours}" for name, theirs, ours in shapes if theirs != ours]
    if differences:
        raise ValueError(f"--init-{stream} {path}: its {stream} stream differs from this model's "
                         f"({', '.join(differences)})")
    weights = {name: value for name, value in source.state_dict().items()
               if name.startswith(STREAM_WEIGHTS[stream])}
    model.load_state_dict(weights, strict=False)


@torch.inference_mode()
def pooled_features(frontend: VisualFrontEnd, mouths: np.ndarray, mirrored: Sequence[bool]) -> np.ndarray:
    """(len(mirrored), T, channels[-1]) trunk features of a clip's centre crops, each mirrored or not.

    The front end runs in eval mode (batch norm with its trained statistics), on its own device.
    """
    device = next(frontend.parameters()).device
    centre = crop(mouths, frontend.crop_size)
    crops = pixels(np.stack([centre[:, :, ::-1] if mirror else centre for mirror in mirrored])).to(device)
    lengths = torch.full((len(crops),), len(centre), device=device)
    training = frontend.training
    frontend.eval()
    try:
        return frontend.pooled(crops, lengths).float().cpu().numpy()
    finally:
        frontend.train(training)


def precompute_pooled(frontend: VisualFrontEnd, examples: Sequence[Example], procs: Processes) -> None:
    """Set each example's `pooled` features (centre crop, mirror): a frozen trunk runs once per clip.

    Each process computes a share and they swap them.
    """
    mine = {}
    for index in tqdm(range(procs.rank, len(examples), procs.world), desc="visual features",
                      unit="clip", disable=not procs.main):
        mine[index] = pooled_features(frontend, examples[index].mouths, (False, True))
    for share in procs.gather(mine):
        for index, pooled in share.items():
            examples[index].pooled = pooled


@torch.inference_mode()
def evaluate(
    model: AVSRModel, batcher: Batcher, config: TrainConfig, device: torch.device
) -> dict[str, float]:
    """Dev WER of every head, greedy decoding: clean, and at DEV_NOISE for heads that hear."""
    model.eval()
    conditions = [None, DEV_NOISE] if batcher.hears else [None]
    references = [normalize(example.transcript) for example in batcher.examples]
    wers = {}
    for noise in conditions:
        hypotheses = defaultdict(list)
        for start in range(0, len(batcher.examples), config.batch_size):
            indices = range(start, min(start + config.batch_size, len(batcher.examples)))
            batch = batcher(indices, noise=noise).to(device)
            with autocast(device, config.bf16):
                outputs = model(batch.audio, batch.video, batch.lengths)
            for head, log_probs in outputs.items():
                hypotheses[head] += greedy_decode(log_probs.float(), batch.lengths)
        for head, texts in hypotheses.items():
            if noise is None:
                wers[f"wer_{head}"] = jiwer.wer(references, texts)
            elif head != "video":
                wers[f"wer_{head}_{noise}"] = jiwer.wer(references, texts)
    return wers


def selection_wer(wers: Mapping[str, float], main: Modality) -> float:
    """What picks best.pt: the main head's dev WER, clean and at DEV_NOISE averaged where it hears.

    A model that reads clean speech well but fails in babble is not the better one for a
    recogniser meant to keep working in noise.
    """
    names = [name for name in (f"wer_{main}", f"wer_{main}_{DEV_NOISE}") if name in wers]  # see `evaluate`
    return sum(wers[name] for name in names) / len(names)


def rng_states() -> dict[str, Any]:
    """The global generators' states in types `torch.load(weights_only=True)` reads."""
    numpy_state = np.random.get_state(legacy=False)
    key = numpy_state["state"]["key"].tolist()
    states = {
        "python": random.getstate(),
        "numpy": numpy_state | {"state": numpy_state["state"] | {"key": key}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what `rng_states` saved."""
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    key = np.array(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state | {"state": numpy_state["state"] | {"key": key}})
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write a training state atomically: a crash leaves the previous file whole."""
    with atomic_write(path) as handle:
        torch.save(state, handle)


def write_log(run_dir: Path, history: Sequence[Mapping[str, float]]) -> None:
    """RUN_DIR/log.csv (one row per epoch) and the curves of RUN_DIR/curves.png, rewritten whole."""
    columns = list(dict.fromkeys(name for row in history for name in row))
    with atomic_write(run_dir / LOG, "w") as handle:
        writer = csv.DictWriter(handle, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
    from matplotlib.figure import Figure  # imported here: slow, and only training plots
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 4), layout="constrained")
    loss_axes, wer_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for name in (column for column in columns if column.startswith(LOSS)):
        label = "weighted sum" if name == LOSS else name.removeprefix(LOSS_)
        loss_axes.plot(epochs, [row.get(name, math.nan) for row in history], marker="o", label=label)
    loss_axes.legend()
    loss_axes.set(xlabel="epoch", ylabel="CTC loss per clip", title="training loss")
    for name in (column for column in columns if column.startswith("wer_")):
        wer_axes.plot(epochs, [row[name] for row in history], marker="o", label=name.removeprefix("wer_"))
    wer_axes.set(xlabel="epoch", ylabel="WER", title="dev WER (greedy)")
    wer_axes.legend()
    for axes in (loss_axes, wer_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    with atomic_write(run_dir / CURVES) as handle:
        figure.savefig(handle, format="png")


def train(
    config: TrainConfig,
    manifest: Path,
    cache_dir: Path,
    run_dir: Path,
    *,
    device: str = "cpu",
    workers: int = 0,
    resume: bool = False,
) -> AVSRModel:
    """Train as `config` says (with `resume`, as RUN_DIR/last.pt says); the model after the last epoch.

    Call it in every process of a torchrun launch; `workers` are data-loader processes each.
    """
    procs, target = start_processes(device)
    try:
        trainer = Trainer(config, manifest, cache_dir, Path(run_dir), target, procs, resume)
        trainer.fit(workers)
        return trainer.model
    finally:
        if procs.world > 1:
            dist.destroy_process_group()


class Trainer:
    """One training run in one process: its data, model, optimiser and progress."""

    def __init__(
        self,
        config: TrainConfig,
        manifest: Path,
        cache_dir: Path,
        run_dir: Path,
        device: torch.device,
        procs: Processes,
        resume: bool,
    ) -> None:
        self.started = time.perf_counter()
        self.run_dir, self.device, self.procs = run_dir, device, procs
        if config.bf16 is None:
            config = replace(config, bf16=default_bf16(device, config.model.block))
        state = _resume_state(run_dir, resume)
        if state is not None:
            stored = TrainConfig.from_dict(state["config"])
            if procs.main and stored.to_dict() != config.to_dict():
                print("--resume: the run's stored settings apply; the options given differ and are ignored")
            config = stored
        if config.batch_size % procs.world:
            raise ValueError(f"batch size {config.batch_size} is not a multiple of {procs.world} processes")
        self.config = config
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)

        utterances = read_manifest(manifest)
        grid = all("speaker" in utterance.fields for utterance in utterances)
        self.data_credit = GRID_CREDIT if grid else f"trained on {manifest}"
        train_set, dev_set = (load_examples(part, cache_dir, procs.main)
                              for part in split(utterances, config.dev_size))
        self.model = build_model(config.model)
        if config.init and state is None:
            self.model.load_state_dict(initial_weights(config.init, config.model))
        for stream, path in (("audio", config.init_audio), ("video", config.init_video)):
            if path and state is None:
                copy_stream(self.model, path, stream)
        if config.init_visual and state is None:
            copy_visual(self.model, config.init_visual)
        if state is not None:
            self.model.load_state_dict(state["model"])
        self.model.to(device)
        frozen = None
        if config.init_visual:
            frozen = self.model.video_frontend
            for part in frozen_visual(frozen):
                part.requires_grad_(False)
            precompute_pooled(frozen, [*train_set, *dev_set], procs)
        pool = {example.key: example.audio for example in train_set}
        self.train_batcher = Batcher(train_set, config, pool, frozen)
        self.dev_batcher = Batcher(dev_set, config, pool, frozen)

        self.net = self.model
        if procs.world > 1:
            # Every trainable parameter gets a gradient at each step (a blanked stream is zeros, not
            # absent, and the frozen visual parts train nothing), so no search for unused ones.
            device_ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=device_ids)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        # The weights that are evaluated and saved as best.pt: the trained ones, or their moving average.
        self.average = None
        if config.ema:
            self.average = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema),
                                         use_buffers=True)
            if state is not None:
                self.average.load_state_dict(state["ema"])
        self.optimizer = build_optimizer(self.model, config)
        steps_per_epoch = len(epoch_batches(len(train_set), 0, config, procs))
        warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(warmup, config.epochs * steps_per_epoch)
        )
        self.head_weights = head_weights(config.model.kind, config.aux_weight, config.inter_weight)
        self.main = supported_modalities(config.model.kind)[0]  # the head whose WER picks best.pt
        self.epoch, self.step, self.history, self.earlier_seconds = 0, 0, [], 0.0
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["scheduler"])
            set_rng_states(state["rng"])
            self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
            self.earlier_seconds = state["seconds"]  # spent by the run's earlier processes
        self.n_parameters = sum(p.numel() for p in self.model.parameters())
        if procs.main:
            print(
                f"{config.model.kind} ({config.model.block}): {self.n_parameters / 1e6:.2f} M "
                f"parameters, {count_parameters(self.model) / 1e6:.2f} M trained; {len(train_set)} "
                f"train, {len(dev_set)} dev clips; {procs.world} process(es) on {device}, bf16 {config.bf16}"
            )

    @property
    def seconds(self) -> float:
        """Time spent on the run so far, in all its processes: setup and evaluation included."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def fit(self, workers: int) -> None:
        """Train the epochs left; the main process evaluates, logs and saves after each."""
        from torch.utils.tensorboard import SummaryWriter  # imported here: slow, training only

        writer = None
        if self.procs.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            writer = SummaryWriter(self.run_dir / TENSORBOARD, purge_step=self.epoch + 1)
        while self.epoch < self.config.epochs:
            epoch_start = time.perf_counter()
            self.epoch += 1
            losses = self.train_epoch(workers)
            if self.procs.main:
                self.end_epoch(losses, epoch_start, writer)
            self.procs.barrier()
        if writer is not None:
            writer.close()
            best = min(self.history, key=lambda row: selection_wer(row, self.main))
            print(f"{self.epoch} epochs in {self.seconds / 60:.1f} min; best dev wer_{self.main} "
                  f"{best[f'wer_{self.main}']:.4f} at epoch {best['epoch']} ({self.run_dir / BEST})")

    def train_epoch(self, workers: int) -> dict[str, float]:
        """One pass over this process's shard of the epoch; its losses (`optimizer_step`'s), each the
        mean batch loss over all processes."""
        config, device = self.config, self.device
        # Dropout's draws: the same for a resumed run, and different in each process.
        dropout_rng = condition_rng(config.seed, "torch", self.epoch, self.procs.rank)
        torch.manual_seed(int(dropout_rng.integers(2**63)))
        self.model.train()
        loader = DataLoader(
            range(len(self.train_batcher.examples)),
            batch_sampler=epoch_batches(len(self.train_batcher.examples), self.epoch, config, self.procs),
            collate_fn=partial(self.train_batcher, epoch=self.epoch),
            num_workers=workers,
        )
        names = [LOSS, *(LOSS_ + head for head in self.head_weights)]
        totals = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)  # summed losses, batches
        bar = tqdm(loader, desc=f"epoch {self.epoch}/{config.epochs}", unit="batch",
                   disable=not self.procs.main)
        for batch in bar:
            losses = optimizer_step(self.net, batch.to(device), self.optimizer, self.trainable,
                                    self.head_weights, config)
            self.schedule.step()
            if self.average is not None:
                self.average.update_parameters(self.model)
            self.step += 1
            totals += torch.stack([*(losses[name].double() for name in names), totals.new_ones(())])
            bar.set_postfix(loss=f"{losses[LOSS].item():.3f}", refresh=False)
        totals = self.procs.sum(totals)
        return {name: float(total / totals[-1]) for name, total in zip(names, totals[:-1], strict=True)}

    def end_epoch(
        self, losses: Mapping[str, float], epoch_start: float, writer: SummaryWriter | None
    ) -> None:
        """Evaluate on the dev split, log, and write best.pt (when the dev WER improves) and last.pt."""
        scored = self.model if self.average is None else self.average.module
        wers = evaluate(scored, self.dev_batcher, self.config, self.device)
        improved = not self.history or selection_wer(wers, self.main) < min(
            selection_wer(row, self.main) for row in self.history)
        row = {"epoch": self.epoch, "step": self.step, **losses,
               "lr": self.schedule.get_last_lr()[0], **wers, "seconds": time.perf_counter() - epoch_start}
        self.history.append(row)
        print("  ".join(f"{name} {value:.4g}" for name, value in row.items()))
        for name, value in row.items():
            if name not in ("epoch", "step"):
                group = "dev" if name.startswith("wer_") else "train"
                writer.add_scalar(f"{group}/{name}", value, self.epoch)
        writer.flush()
        write_log(self.run_dir, self.history)
        if improved:
            save_checkpoint(
                self.run_dir / BEST,
                scored,
                self.config.model,
                epochs=self.epoch,
                dev_wer=wers[f"wer_{self.main}"],
                dev_wers=wers,
                train_seconds=self.seconds,
                parameters=self.n_parameters,
                data=self.data_credit,
                train_config=self.config.to_dict(),
            )
        save_state(self.run_dir / LAST, {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "rng": rng_states(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "seconds": self.seconds,
        } | ({} if self.average is None else {"ema": self.average.state_dict()}))


def _resume_state(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """RUN_DIR/last.pt's content when resuming; refuses to start a run over an existing one."""
    path = run_dir / LAST
    if resume:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: nothing to resume")
        return torch.load(path, map_location="cpu", weights_only=True)
    if path.exists():
        raise FileExistsError(f"{path} exists: pass --resume to continue that run, or another --out")
    return None


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `avsr train`."""
    defaults = TrainConfig()
    parser.add_argument("manifest", type=Path, metavar="MANIFEST",
                        help="TSV with video and transcript columns")
    parser.add_argument("--cache", type=Path, default=default_cache_dir(), metavar="DIR",
                        help="cache built by `avsr preprocess` (default: $AVSR_CACHE or ~/.cache/avsr)")
    parser.add_argument("--kind", choices=KINDS, default="dmf", help="model to train (default: dmf)")
    parser.add_argument("--out", type=Path, required=True, metavar="RUN_DIR",
                        help="folder for checkpoints, logs and curves")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, metavar="N")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, metavar="B",
                        help=f"clips per step, over all processes (default: {defaults.batch_size})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, metavar="W",
                        help="AdamW's decoupled weight decay of the weight matrices (default: %(default)s)")
    parser.add_argument("--aux-weight", type=float, default=defaults.aux_weight, metavar="W",
                        help="DMF and late fusion: loss weight of the audio-only and video-only heads, "
                        "against 1 for the audiovisual one (default: %(default)s)")
    parser.add_argument("--inter-ctc", type=float, default=defaults.inter_weight, metavar="W",
                        help="DMF: loss weight of intermediate CTC, its audiovisual head also read on "
                        "the middle shared layer (default: %(default)s, off)")
    augment = defaults.augment
    parser.add_argument("--noise", default=",".join(augment.noise_kinds), metavar="LIST",
                        help=f"noises mixed into the training clips' audio, one drawn per noisy clip: "
                        f"{KINDS_HELP} (babble: of other training clips; one named twice is drawn twice "
                        "as often; default: %(default)s)")
    parser.add_argument("--snr-range", default="{:g},{:g}".format(*augment.snr_db), metavar="LO,HI",
                        help="dB: each noisy clip's SNR is drawn uniformly between LO and HI; write "
                        "--snr-range=-5,20 when LO is negative (default: %(default)s)")
    parser.add_argument("--clean-prob", type=float, default=augment.clean_prob, metavar="P",
                        help="share of training clips whose audio gets no noise, 0 to 1 "
                        "(default: %(default)s)")
    for stream in ("audio", "video"):
        parser.add_argument(f"--blank-{stream}-prob", type=float, metavar="P",
                            default=getattr(augment, f"blank_{stream}_prob"),
                            help=f"fusion models: share of training clips whose {stream} is blanked "
                            "(modality dropout; default: %(default)s)")
    parser.add_argument("--other-video-prob", type=float, default=augment.other_video_prob, metavar="P",
                        help="fusion models: share of training clips given another clip's lips and clean "
                        "audio, so mismatched lips cannot outvote clear speech (default: %(default)s)")
    parser.add_argument("--tempo", default="{:g},{:g}".format(*augment.tempo), metavar="LO,HI",
                        help="speaking-rate perturbation: each training clip's audio features and video "
                        "are resampled in time by a factor drawn log-uniformly between LO and HI, e.g. "
                        "0.9,1.1 (>1: faster; default: %(default)s, none)")
    parser.add_argument("--tempo-pieces", type=int, default=augment.tempo_pieces, metavar="N",
                        help="with --tempo: cut each clip into N pieces of equal length, each resampled "
                        "by a factor of its own, so the rate changes within a sentence too "
                        "(default: %(default)s)")
    parser.add_argument("--splice-prob", type=float, default=augment.splice_prob, metavar="P",
                        help="clips with a GRID word alignment (<speaker>/align/<clip>.align): share of "
                        "their words whose sound and lips are cut from another training clip's word in "
                        "the same place, so the network hears new sentences (default: %(default)s, none)")
    parser.add_argument("--crop-prob", type=float, default=augment.crop_prob, metavar="P",
                        help="clips with a GRID word alignment: share cut to a random run of their words "
                        "(sound, lips and transcript), so no word is read from the rest of a memorised "
                        "sentence (default: %(default)s, none)")
    parser.add_argument("--trim-prob", type=float, default=augment.trim_prob, metavar="P",
                        help="clips with a GRID word alignment: share whose silence before the first word "
                        "and after the last is each cut to a random length, so words are read where they "
                        "are said, not where the clip's edges put them (default: %(default)s, none)")
    parser.add_argument("--feature-dropout", type=float, default=augment.feature_dropout, metavar="P",
                        help="with --init-visual: share of the frozen trunk's feature channels zeroed in "
                        "all frames of a training clip, a new draw per clip and epoch, so the visual "
                        "stream memorises its clips' fixed features less (default: %(default)s)")
    parser.add_argument("--block", choices=BLOCKS, default=ModelConfig.block,
                        help="temporal block: bidirectional GRU or LSTM, depthwise convolution, or "
                        "convolution then self-attention (width divisible by 4) (default: %(default)s)")
    parser.add_argument("--audio-stem", choices=AUDIO_STEMS, default=ModelConfig.audio_stem,
                        help="audio front end: stride-2 convolutions over time with the mel bins as "
                        "channels, or over time and frequency (default: %(default)s)")
    parser.add_argument("--d-model", type=int, default=0, metavar="D", help="width (default: the kind's)")
    for stream in ("audio", "video"):
        parser.add_argument(f"--{stream}-width", type=int, default=0, metavar="D",
                            help=f"fusion models: width of the {stream} stream (default: --d-model)")
    parser.add_argument("--levels", type=int, default=ModelConfig.levels, metavar="L",
                        help="blocks per stream")
    parser.add_argument("--dropout", type=float, metavar="P",
                        help=f"dropout in every block (default: {ModelConfig.dropout}, or --init's)")
    parser.add_argument("--ema", type=float, default=defaults.ema, metavar="DECAY",
                        help="evaluate and keep as best.pt an exponential moving average of the weights, "
                        "updated every step with this decay, e.g. 0.995 (default: %(default)s, off)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--dev-size", type=int, default=defaults.dev_size, metavar="N",
                        help="dev clips: of speaker s1 if the manifest has a speaker column, else of all")
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN_DIR's run from last.pt, with its stored settings")
    parser.add_argument("--init", type=Path, metavar="CKPT",
                        help="start from this trained model's weights, all of them trained further unless "
                        "--init-visual freezes the trunk (its architecture is used: --kind must match; "
                        "--block, --d-model, --levels, the widths ignored)")
    parser.add_argument("--init-visual", type=Path, metavar="CKPT",
                        help="copy and freeze the visual stem and trunk of this trained model")
    for stream in STREAM_WEIGHTS:
        parser.add_argument(f"--init-{stream}", type=Path, metavar="CKPT",
                            help=f"start the {stream} stream (front end, blocks, head) from this trained "
                            "model's, e.g. a single-stream model of its width, and train it further")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                        help="bf16 autocast (default: on where faster: CUDA, CPU with conv or "
                        "attention blocks)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="data-loader processes per training process (default: 0, in-process)")


def snr_range(text: str) -> tuple[float, float]:
    """Parse `--snr-range`, e.g. `-10,20`: the lowest and highest training SNR in dB (`AugmentConfig`
    checks their order)."""
    snrs = parse_snr(text)
    if len(snrs) != 2 or None in snrs:
        raise ValueError(f"--snr-range {text!r}: expected LO,HI in dB, e.g. -10,20")
    return snrs[0], snrs[1]


def tempo_range(text: str) -> tuple[float, float]:
    """Parse `--tempo`, e.g. `0.9,1.1`: the lowest and highest speaking-rate factor."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--tempo {text!r}: expected LO,HI factors, e.g. 0.9,1.1") from None
    return low, high


def main_from_args(args: argparse.Namespace) -> int:
    """Run `avsr train` from its parsed options; the exit status."""
    if args.init_visual is not None and args.kind == "audio":
        args.parser.error("--init-visual needs a model that sees; --kind audio has no visual front end")
    for stream in STREAM_WEIGHTS:
        if getattr(args, f"init_{stream}") is not None and stream not in supported_modalities(args.kind):
            args.parser.error(f"--init-{stream} needs a model with a {stream} stream; "
                              f"--kind {args.kind} has none")
    if args.feature_dropout and args.init_visual is None:
        args.parser.error("--feature-dropout drops channels of a frozen trunk's features: add --init-visual")
    if args.splice_prob and args.init_visual is not None and args.workers and args.device == "cuda":
        args.parser.error("--splice-prob with --init-visual reruns the frozen trunk while batching, which "
                          "data-loader processes cannot do on CUDA: leave --workers at 0")
    if args.weight_decay < 0 or args.inter_ctc < 0:
        args.parser.error("--weight-decay and --inter-ctc must be 0 or more")
    if not 0 <= args.ema < 1:
        args.parser.error(f"--ema {args.ema:g}: the decay must be at least 0 (off) and below 1")
    if args.init is not None and (args.init_audio is not None or args.init_video is not None):
        args.parser.error("--init excludes --init-audio and --init-video (it starts every stream)")
    try:
        kinds = [kind if isinstance(kind, str) else str(kind.resolve()) for kind in parse_noise(args.noise)]
        augment = AugmentConfig(
            clean_prob=args.clean_prob, noise_kinds=tuple(kinds), snr_db=snr_range(args.snr_range),
            blank_audio_prob=args.blank_audio_prob, blank_video_prob=args.blank_video_prob,
            other_video_prob=args.other_video_prob, tempo=tempo_range(args.tempo),
            tempo_pieces=args.tempo_pieces,
            feature_dropout=args.feature_dropout, splice_prob=args.splice_prob, crop_prob=args.crop_prob,
            trim_prob=args.trim_prob,
        )
        model = ModelConfig(kind=args.kind, block=args.block, d_model=args.d_model, levels=args.levels,
                            audio_stem=args.audio_stem, audio_width=args.audio_width,
                            video_width=args.video_width)
    except ValueError as error:
        args.parser.error(str(error))
    if args.init is not None:
        model = load_checkpoint(args.init)[0].config
        if model.kind != args.kind:
            args.parser.error(f"--init {args.init} is a {model.kind} model, not --kind {args.kind}")
    if args.dropout is not None:
        model = replace(model, dropout=args.dropout)
    if args.inter_ctc and (model.kind != "dmf" or model.levels < 2):
        args.parser.error(f"--inter-ctc reads DMF's middle shared layer: it needs --kind dmf with 2 levels "
                          f"or more, not a {model.kind} model of {model.levels}")
    config = TrainConfig(
        model=model,
        augment=augment,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        aux_weight=args.aux_weight,
        inter_weight=args.inter_ctc,
        ema=args.ema,
        seed=args.seed,
        dev_size=args.dev_size,
        bf16=args.bf16,
        init=None if args.init is None else str(args.init),
        init_visual=None if args.init_visual is None else str(args.init_visual),
        init_audio=None if args.init_audio is None else str(args.init_audio),
        init_video=None if args.init_video is None else str(args.init_video),
    )
    train(config, args.manifest, args.cache, args.out, device=args.device, workers=args.workers,
          resume=args.resume)
    return 0
