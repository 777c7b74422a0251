"""`avsr train` on a tiny synthetic corpus: outputs, exact resume, DDP, frozen visual features."""

from __future__ import annotations

import csv
import os
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from avsr import cli, train
from avsr.augment import AugmentConfig, noisy, stretch, word_cuts
from data.grid import AlignedWord
from data.manifest import Utterance, read_manifest
from data.noise import condition_rng
from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import ModelConfig
from models.dmf import INTERMEDIATE, build_model
from models.frontends import VisualFrontEnd
from models.tokenizer import decode
from preprocessing import cache
from preprocessing.audio import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME
from preprocessing.clip import Clip
from preprocessing.mouth import MOUTH_SIZE
from tests.media import tone, write_video

FRAMES = 10  # per clip: 0.4 s, room for CTC to spell the short words below
WORDS = ("bin", "lay", "set", "red", "blue")
N_CLIPS = 10  # 8 train (babble needs 6 talkers besides the clip), 2 dev
DEV_SIZE = 2
HUM_HZ = 440  # a noise file's tone, whole cycles in any 1 s segment of it


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """A GRID-like manifest of synthetic s1 clips, and a cache holding them."""
    folder = tmp_path_factory.mktemp("corpus")
    cache_dir = folder / "cache"
    rng = np.random.default_rng(0)
    rows = ["speaker\tclip\tvideo\ttranscript"]
    for index in range(N_CLIPS):
        video = folder / f"clip{index}.mp4"
        video.write_bytes(f"video {index}".encode())  # the cache knows a clip by its file's bytes
        clip = Clip(
            mouths=rng.integers(0, 256, (FRAMES, MOUTH_SIZE, MOUTH_SIZE), dtype=np.uint8),
            audio=(0.1 * rng.standard_normal(FRAMES * SAMPLES_PER_VIDEO_FRAME)).astype(np.float32),
            detected=np.ones(FRAMES, dtype=bool),
        )
        cache.store_clip(cache_dir, video, clip)
        rows.append(f"s1\tc{index}\t{video.name}\t{WORDS[index % len(WORDS)]}")
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, cache_dir


def tiny(kind: str = "dmf", **overrides) -> train.TrainConfig:
    model = ModelConfig(kind=kind, d_model=16, levels=1, visual_channels=(4, 8, 8))
    settings = dict(model=model, epochs=2, batch_size=4, lr=3e-3, warmup_epochs=0.5, dev_size=DEV_SIZE,
                    bf16=False)
    return train.TrainConfig(**settings | overrides)


def test_a_run_writes_checkpoints_logs_and_curves(corpus, tmp_path):
    manifest, cache_dir = corpus
    run = tmp_path / "run"
    argv = ["train", str(manifest), "--cache", str(cache_dir), "--kind", "dmf", "--out", str(run),
            "--epochs", "2", "--batch-size", "4", "--d-model", "16", "--levels", "1",
            "--dev-size", str(DEV_SIZE), "--lr", "1e-2", "--no-bf16", "--workers", "1"]
    assert cli.main(argv) == 0

    state = torch.load(run / train.LAST, weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 4)
    assert train.TrainConfig.from_dict(state["config"]).model.kind == "dmf"
    model, metadata = load_checkpoint(run / train.BEST)
    assert model.config.d_model == 16 and "GRID corpus" in metadata["data"]
    assert metadata["parameters"] == sum(p.numel() for p in model.parameters())
    with open(run / train.LOG) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert {"wer_av", "wer_audio", "wer_video", "wer_av_babble@0dB"} <= set(rows[0])
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    for row in rows:  # each head's own loss logged beside the weighted sum training minimises
        heads = {head: float(row[f"train_loss_{head}"]) for head in ("av", "audio", "video")}
        weighted = heads["av"] + 0.5 * (heads["audio"] + heads["video"])
        assert float(row["train_loss"]) == pytest.approx(weighted, rel=1e-6)
        assert all(loss > 0 for loss in heads.values())
    assert (run / train.CURVES).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert list((run / train.TENSORBOARD).glob("events.out.tfevents.*"))
    assert cli.main(argv) == 1  # refuses to start over the run without --resume


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_reproduces_an_uninterrupted_run(corpus, tmp_path, monkeypatch, ema):
    manifest, cache_dir = corpus
    model = ModelConfig(kind="late", d_model=16, levels=1, dropout=0.3, visual_channels=(4, 8, 8))
    config = tiny(model=model, ema=ema)
    train.train(config, manifest, cache_dir, tmp_path / "whole")

    save_state = train.save_state

    def save_then_die(path, state):
        save_state(path, state)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(train, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.train(config, manifest, cache_dir, tmp_path / "resumed")
    monkeypatch.setattr(train, "save_state", save_state)
    train.train(config, manifest, cache_dir, tmp_path / "resumed", resume=True)

    whole, resumed = (torch.load(tmp_path / run / train.LAST, weights_only=True)
                      for run in ("whole", "resumed"))
    assert resumed["epoch"] == whole["epoch"] == 2
    for name, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    assert resumed["history"][1]["train_loss"] == whole["history"][1]["train_loss"]
    assert ("ema" in whole) == bool(ema)
    for name, value in whole.get("ema", {}).items():
        assert torch.equal(value, resumed["ema"][name]), name


def test_ema_keeps_the_moving_average_of_the_weights_as_best(corpus, tmp_path, monkeypatch):
    manifest, cache_dir = corpus
    decay = 0.6
    after_steps = []
    optimizer_step = train.optimizer_step

    def record(net, *args, **kwargs):
        losses = optimizer_step(net, *args, **kwargs)
        after_steps.append({name: value.clone() for name, value in net.state_dict().items()})
        return losses

    monkeypatch.setattr(train, "optimizer_step", record)
    trained = train.train(tiny(epochs=1, ema=decay), manifest, cache_dir, tmp_path / "run")

    assert len(after_steps) == 2
    best, _ = load_checkpoint(tmp_path / "run" / train.BEST)
    first, second = after_steps
    for name, value in best.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, decay * first[name] + (1 - decay) * second[name])
    moved = [name for name, value in trained.state_dict().items()
             if value.is_floating_point() and not torch.equal(value, best.state_dict()[name])]
    assert moved  # the trained weights themselves are not what best.pt keeps


def _ddp_process(rank: int, port: int, manifest: Path, cache_dir: Path, run: Path) -> None:
    os.environ |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    model = train.train(tiny(epochs=1), manifest, cache_dir, run)
    torch.save(model.state_dict(), run.parent / f"rank{rank}.pt")


def test_two_processes_train_one_model(corpus, tmp_path):
    manifest, cache_dir = corpus
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_process, args=(port, manifest, cache_dir, tmp_path / "run"), nprocs=2)

    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    model = build_model(tiny().model)
    for name, _ in model.named_parameters():  # buffers (batch-norm statistics) stay per process
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    state = torch.load(tmp_path / "run" / train.LAST, weights_only=True)
    assert state["step"] == 2  # 8 clips, 4 per step: 2 from each process
    assert all(torch.equal(value, ranks[0][name]) for name, value in state["model"].items())


def test_init_visual_copies_and_freezes_the_trunk(corpus, tmp_path):
    manifest, cache_dir = corpus
    source = build_model(ModelConfig(kind="video", d_model=24, levels=1, visual_channels=(4, 8, 8)))
    save_checkpoint(tmp_path / "video.pt", source, source.config)
    model = train.train(tiny(init_visual=str(tmp_path / "video.pt")), manifest, cache_dir, tmp_path / "run")

    best, _ = load_checkpoint(tmp_path / "run" / train.BEST)
    for trained in (model.video_frontend, best.video_frontend):
        for part, original in zip(train.frozen_visual(trained), train.frozen_visual(source.video_frontend),
                                  strict=True):
            for name, value in original.state_dict().items():
                assert torch.equal(value, part.state_dict()[name]), name
    assert not any(p.requires_grad for part in train.frozen_visual(model.video_frontend)
                   for p in part.parameters())
    projection = model.video_frontend.trunk[-1]
    assert projection.weight.requires_grad and projection.weight.shape == (16, 8)


def test_pooled_features_stand_for_the_crops():
    model = build_model(ModelConfig(kind="dmf", d_model=16, levels=1, crop_size=16,
                                    visual_channels=(4, 8, 8))).eval()
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 4])
    audio = torch.randn(2, 28, 80, generator=generator)
    video = torch.rand(2, 7, 16, 16, generator=generator)
    with torch.no_grad():
        from_crops = model(audio, video, lengths)
        from_pooled = model(audio, model.video_frontend.pooled(video, lengths), lengths)
    for head, log_probs in from_crops.items():
        torch.testing.assert_close(from_pooled[head], log_probs)


def test_a_manifest_without_speakers_is_split_as_one_pool(tmp_path):
    utterances = [Utterance(tmp_path / f"{index}.mp4", "bin") for index in range(5)]
    train_part, dev = train.split(utterances, 2)
    assert len(dev) == 2 and sorted(train_part + dev, key=str) == sorted(utterances, key=str)
    assert train.split(utterances[::-1], 2)[1] == dev[::-1]  # the draw ignores the order


def test_modality_dropout_blanks_one_stream_and_skips_its_loss(corpus):
    manifest, cache_dir = corpus
    examples = train.load_examples(read_manifest(manifest), cache_dir, progress=False)
    config = tiny(augment=AugmentConfig(blank_audio_prob=0.5, blank_video_prob=0.5))
    batcher = train.Batcher(examples, config, {example.key: example.audio for example in examples})
    clips = range(len(examples))

    batch = batcher(clips, epoch=1)
    no_audio = batch.audio.flatten(1).abs().sum(1) == 0
    no_video = batch.video.flatten(1).abs().sum(1) == 0
    assert torch.all(no_audio ^ no_video) and no_audio.any() and no_video.any()
    assert torch.equal(batch.weights["audio"], (~no_audio).float())
    assert torch.equal(batch.weights["video"], (~no_video).float())
    assert torch.equal(batch.weights["av"], torch.ones(len(examples)))
    assert torch.equal(batcher(clips, epoch=1).audio, batch.audio)  # the same draws every time

    clean = batcher(clips)  # evaluation: nothing blanked, centre crops
    assert all(torch.equal(weights, torch.ones(len(examples))) for weights in clean.weights.values())
    margin = (MOUTH_SIZE - config.model.crop_size) // 2
    centre = examples[0].mouths[:, margin:-margin, margin:-margin]
    assert torch.equal(clean.video[0], train.pixels(centre))


def test_other_lips_come_with_clean_audio_and_skip_the_video_loss(corpus):
    manifest, cache_dir = corpus
    examples = train.load_examples(read_manifest(manifest), cache_dir, progress=False)
    augment = AugmentConfig(clean_prob=0.0, blank_audio_prob=0.0, blank_video_prob=0.0, other_video_prob=1.0,
                            time_masks=0, freq_masks=0, flip_prob=0.0)
    config = tiny(augment=augment)
    batcher = train.Batcher(examples, config, {example.key: example.audio for example in examples})
    clips = range(len(examples))

    batch = batcher(clips, epoch=1)
    clean = batcher(clips)
    assert torch.equal(batch.audio, clean.audio)  # every clip's speech as it is, though clean_prob is 0
    for index in clips:
        sources = [other for other in clips if _same_crop_source(batch.video[index], examples[other])]
        assert sources and index not in sources  # a random crop of another clip's mouths
    assert torch.equal(batch.weights["video"], torch.zeros(len(examples)))
    assert torch.equal(batch.weights["audio"], torch.ones(len(examples)))
    assert torch.equal(batch.weights["av"], torch.ones(len(examples)))


def _same_crop_source(video: torch.Tensor, example: train.Example) -> bool:
    """Whether (T, size, size) `video` is a crop of `example`'s mouths at some offset."""
    size = video.shape[-1]
    for top in range(MOUTH_SIZE - size + 1):
        for left in range(MOUTH_SIZE - size + 1):
            crop = example.mouths[:, top : top + size, left : left + size]
            if torch.equal(video, train.pixels(crop)):
                return True
    return False


@pytest.mark.parametrize("pieces", [1, 3])
def test_tempo_resamples_both_streams_of_a_clip_alike(corpus, pieces):
    manifest, cache_dir = corpus
    examples = train.load_examples(read_manifest(manifest), cache_dir, progress=False)
    augment = AugmentConfig(clean_prob=1.0, blank_audio_prob=0.0, blank_video_prob=0.0, time_masks=0,
                            freq_masks=0, flip_prob=0.0, tempo=(0.5, 2.0), tempo_pieces=pieces)
    batcher = train.Batcher(examples, tiny(augment=augment), {})
    clips = range(len(examples))

    plain = batcher(clips)
    for epoch in (1, 2):
        batch = batcher(clips, epoch=epoch)
        assert not torch.equal(batch.lengths, plain.lengths)  # some clip made faster or slower
        assert batch.audio.shape[1] == 4 * batch.lengths.max() and batch.video.shape[1] == batch.lengths.max()
        for index, frames in enumerate(batch.lengths.tolist()):
            assert 0.5 <= plain.lengths[index] / frames <= 2.0
            assert batch.audio[index, 4 * frames :].abs().sum() == 0  # padding only after its length
            if pieces == 1:  # a uniform stretch keeps the clip's mean level: the same sound, at another rate
                original = plain.audio[index, : 4 * plain.lengths[index]]
                torch.testing.assert_close(batch.audio[index, : 4 * frames].mean(), original.mean(),
                                           atol=0.05, rtol=0.05)
    untouched = train.Batcher(examples, tiny(augment=replace(augment, tempo=(1.0, 1.0))), {})
    assert torch.equal(untouched(clips, epoch=1).lengths, plain.lengths)


def _frontend(channels: int) -> VisualFrontEnd:
    """A small frozen visual front end with `channels` pooled features."""
    torch.manual_seed(0)
    return VisualFrontEnd(16, ModelConfig.crop_size, (4, 8, channels)).requires_grad_(False)


def test_feature_dropout_zeroes_whole_channels_of_the_frozen_features(corpus):
    manifest, cache_dir = corpus
    examples = train.load_examples(read_manifest(manifest), cache_dir, progress=False)
    channels = 64
    rng = np.random.default_rng(0)
    for example in examples:  # stand-ins for a frozen trunk's features: positive, as after a ReLU
        example.pooled = rng.uniform(0.5, 1.5, (2, example.frames, channels)).astype(np.float32)
    augment = AugmentConfig(blank_audio_prob=0.0, blank_video_prob=0.0, flip_prob=0.0, feature_dropout=0.5)
    batcher = train.Batcher(examples, tiny(augment=augment), {e.key: e.audio for e in examples},
                            frontend=_frontend(channels))
    clips = range(len(examples))

    batch = batcher(clips, epoch=1)
    dropped = []
    for index, example in enumerate(examples):
        scale = batch.video[index] / torch.from_numpy(example.pooled[0])  # (frames, channels)
        assert torch.allclose(scale, scale[:1].expand_as(scale))  # one mask for all frames
        assert set(scale[0].tolist()) <= {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - 0.5)
        dropped.append(int((scale[0] == 0).sum()))
    assert 0.3 * channels < np.mean(dropped) < 0.7 * channels
    assert not torch.equal(batcher(clips, epoch=2).video, batch.video)  # a new draw every epoch
    assert torch.equal(batcher(clips, epoch=1).video, batch.video)  # the same draw in a resumed run
    clean = batcher(clips)  # evaluation: the features as they are
    for index, example in enumerate(examples):
        assert torch.equal(clean.video[index], torch.from_numpy(example.pooled[0]))

    with pytest.raises(SystemExit):  # no frozen trunk, no features to drop
        cli.main(["train", str(manifest), "--cache", str(cache_dir), "--out", "unused", "--feature-dropout",
                  "0.5"])
    with pytest.raises(ValueError, match="feature dropout"):
        AugmentConfig(feature_dropout=1.0)


SENTENCES = (("bin", "blue", "at"), ("lay", "red", "by"), ("set", "green", "in"), ("place", "white", "with"))
N_ALIGNED = 8  # clips with a matching alignment; two more: one mismatched, one without
PAUSED = 8.5  # video frames: the third word starts after a pause, 7 to 8.5


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> tuple[Path, Path]:
    """GRID's layout, s1/video and s1/align: clip i's mouth pixels are all i, its audio samples all
    i / 100, its 12 + i frames hold three words at frames 1-4, 4-7, 8.5 to one before its end."""
    folder = tmp_path_factory.mktemp("aligned")
    videos, aligns = folder / "s1" / "video", folder / "s1" / "align"
    videos.mkdir(parents=True)
    aligns.mkdir()
    rows = ["speaker\tclip\tvideo\ttranscript"]
    for index in range(N_ALIGNED + 2):
        frames, words = 12 + index, SENTENCES[index % len(SENTENCES)]
        video = videos / f"c{index}.mp4"
        video.write_bytes(f"aligned {index}".encode())
        cache.store_clip(folder / "cache", video, Clip(
            mouths=np.full((frames, MOUTH_SIZE, MOUTH_SIZE), index, dtype=np.uint8),
            audio=np.full(frames * SAMPLES_PER_VIDEO_FRAME, index / 100, dtype=np.float32),
            detected=np.ones(frames, dtype=bool),
        ))
        spoken = ("red", *words[1:]) if index == N_ALIGNED else words  # not the transcript's words
        times = [0, 1000, 4000, 7000, int(1000 * PAUSED), 1000 * (frames - 1), 1000 * frames]
        labels = ["sil", *spoken[:2], "sp", spoken[2], "sil"]
        if index <= N_ALIGNED:
            spans = zip(times, times[1:], labels, strict=False)
            (aligns / f"c{index}.align").write_text("".join(f"{a} {b} {label}\n" for a, b, label in spans))
        rows.append(f"s1\tc{index}\t{video.relative_to(folder)}\t{' '.join(words)}")
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, folder / "cache"


def test_word_cuts_fall_between_words():
    words = [AlignedWord(0.04, 0.16, "bin"), AlignedWord(0.16, 0.28, "blue"), AlignedWord(0.32, 0.4, "at")]
    assert word_cuts(words, 12, 25).tolist() == [0, 4, 8, 12]  # the pause 7-8 cut in its middle
    assert word_cuts(words, 8, 25) is None  # the clip ends before its last word
    assert word_cuts([AlignedWord(0.0, 0.01, "a"), AlignedWord(0.01, 0.3, "b")], 10, 25) is None


def _word_batcher(aligned: tuple[Path, Path], **augment: float) -> train.Batcher:
    """A batcher of the aligned corpus on a frozen trunk, with only the word augmentation `augment`."""
    examples = train.load_examples(read_manifest(aligned[0]), aligned[1], progress=False)
    frontend = _frontend(8)
    train.precompute_pooled(frontend, examples, train.Processes())
    config = AugmentConfig(clean_prob=1.0, blank_audio_prob=0.0, blank_video_prob=0.0, time_masks=0,
                           freq_masks=0, flip_prob=0.0, **augment)
    return train.Batcher(examples, tiny(augment=config), {}, frontend)


def test_splicing_takes_each_word_from_a_clip_of_as_many_words(aligned):
    batcher = _word_batcher(aligned, splice_prob=0.5)
    examples, frontend, augment = batcher.examples, batcher.frontend, batcher.config.augment
    assert [example.cuts is None for example in examples] == [False] * N_ALIGNED + [True, True]
    assert examples[0].cuts.tolist() == [0, 4, 8, 12]
    rng = np.random.default_rng(0)
    spliced = 0
    for _ in range(10):
        for index, example in enumerate(examples):
            out = batcher.splice(index, rng)
            if example.cuts is None:
                assert out is example
                continue
            sources = [int(out.mouths[start, 0, 0]) for start in out.cuts[:-1]]
            spliced += sum(source != index for source in sources)
            for slot, source in enumerate(sources):
                start, stop = out.cuts[slot : slot + 2]
                assert examples[source].cuts is not None  # only clips with cuts give words
                assert stop - start == np.diff(examples[source].cuts)[slot]  # the whole word's span
                assert np.all(out.mouths[start:stop] == source)
                samples = out.audio[start * SAMPLES_PER_VIDEO_FRAME : stop * SAMPLES_PER_VIDEO_FRAME]
                assert np.all(samples == examples[source].audio[0])
            said = (SENTENCES[source % len(SENTENCES)][slot] for slot, source in enumerate(sources))
            assert out.transcript == " ".join(said)
            assert decode(out.target.tolist()) == out.transcript and out.key == example.key
            assert len(out.audio) == out.frames * SAMPLES_PER_VIDEO_FRAME
            assert (out.pooled is None) == (out is not example)  # the trunk sees across cuts: no stale ones
            assert out.speech == (1, out.frames - 1)  # the first word's start and the last's end kept
    assert 0.3 < spliced / (10 * 3 * N_ALIGNED) < 0.7

    clips = range(len(examples))
    transcripts = [example.transcript for example in examples]
    batch = batcher(clips, epoch=1)
    assert _texts(batcher(clips)) == transcripts  # evaluation: the clips as they are
    assert _texts(batch) != transcripts and _texts(batch)[N_ALIGNED:] == transcripts[N_ALIGNED:]
    for index, example in enumerate(examples):  # each clip spliced again as in epoch 1
        out = batcher.splice(index, condition_rng(batcher.config.seed, "train", 1, example.key))
        assert batch.lengths[index] == out.frames and _texts(batch)[index] == out.transcript
        features = train.pooled_features(frontend, out.mouths, (False,))[0]  # of its own frames
        assert torch.equal(batch.video[index, : out.frames], torch.from_numpy(features))
    assert torch.equal(batcher(clips, epoch=1).targets, batch.targets)  # the same draws when resumed
    off = train.Batcher(examples, tiny(augment=replace(augment, splice_prob=0.0)), {}, frontend)
    assert _texts(off(clips, epoch=1)) == transcripts


def test_cropping_cuts_a_clip_to_a_run_of_its_words(aligned):
    batcher = _word_batcher(aligned, crop_prob=0.5)
    examples, frontend, augment = batcher.examples, batcher.frontend, batcher.config.augment
    rng = np.random.default_rng(0)
    runs = Counter()
    for _ in range(20):
        for example in examples:
            out = batcher.crop(example, rng)
            if example.cuts is None:  # no alignment: never cut
                assert out is example
                continue
            if out is example:  # not drawn, or the run of all its words
                runs["whole"] += 1
                continue
            words, kept = example.transcript.split(), out.transcript.split()
            first = next(first for first in range(len(words)) if words[first : first + len(kept)] == kept)
            stop = first + len(kept)
            runs[first, stop] += 1
            assert (first, stop) != (0, len(words))  # the whole clip comes back as it is
            span = slice(example.cuts[first], example.cuts[stop])
            assert np.array_equal(out.mouths, example.mouths[span])
            assert np.array_equal(out.audio, example.audio[span.start * SAMPLES_PER_VIDEO_FRAME :
                                                           span.stop * SAMPLES_PER_VIDEO_FRAME])
            assert np.array_equal(out.pooled, example.pooled[:, span])  # the trunk's own, not rerun
            assert out.cuts.tolist() == (example.cuts[first : stop + 1] - span.start).tolist()
            assert decode(out.target.tolist()) == out.transcript and out.key == example.key
    whole = runs.pop("whole")
    assert set(runs) == {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)}  # every run of 3 words but the whole
    assert 0.3 < sum(runs.values()) / (20 * N_ALIGNED) < 0.55  # half the clips, 5 of 6 runs cut
    assert 0.45 < whole / (20 * N_ALIGNED) < 0.7  # the other half, and the cut ones drawing all 3 words

    clips = range(len(examples))
    transcripts = [example.transcript for example in examples]
    batch = batcher(clips, epoch=1)
    assert _texts(batch) != transcripts and _texts(batch)[N_ALIGNED:] == transcripts[N_ALIGNED:]
    for index, example in enumerate(examples):  # each clip cut again as in epoch 1
        out = batcher.crop(example, condition_rng(batcher.config.seed, "train", 1, example.key))
        assert batch.lengths[index] == out.frames and _texts(batch)[index] == out.transcript
        assert torch.equal(batch.video[index, : out.frames], torch.from_numpy(out.pooled[0]))
    off = train.Batcher(examples, tiny(augment=replace(augment, crop_prob=0.0)), {}, frontend)
    assert _texts(off(clips, epoch=1)) == transcripts


def test_trimming_cuts_the_silence_around_a_clips_words(aligned):
    batcher = _word_batcher(aligned, trim_prob=0.5)
    examples, frontend, augment = batcher.examples, batcher.frontend, batcher.config.augment
    assert examples[0].speech == (1, 11)  # words from frame 1 to one before the end of its 12
    rng = np.random.default_rng(0)
    starts, stops, whole = Counter(), Counter(), 0
    for _ in range(40):
        for example in examples:
            out = batcher.trim(example, rng)
            if example.speech is None or out is example:  # no alignment, or not drawn
                whole += example.speech is not None
                continue
            start, stop = example.speech[0] - out.speech[0], example.speech[0] - out.speech[0] + out.frames
            starts[start] += 1
            stops[example.frames - stop] += 1
            assert 0 <= start <= example.speech[0] and example.speech[1] <= stop <= example.frames
            assert out.transcript == example.transcript and np.array_equal(out.target, example.target)
            assert np.array_equal(out.mouths, example.mouths[start:stop])
            assert np.array_equal(out.audio, example.audio[start * SAMPLES_PER_VIDEO_FRAME :
                                                           stop * SAMPLES_PER_VIDEO_FRAME])
            assert np.array_equal(out.pooled, example.pooled[:, start:stop])
            assert out.cuts.tolist() == [0, *(example.cuts[1:-1] - start), out.frames]
    assert set(starts) == set(stops) == {0, 1}  # each edge's one frame of silence kept or cut
    assert 0.4 < whole / (40 * N_ALIGNED) < 0.7  # half not drawn, and a quarter of the rest kept whole

    cropped = _word_batcher(aligned, crop_prob=1.0)  # a cut in a pause leaves no silence to trim
    rng = np.random.default_rng(1)
    for example in examples[:N_ALIGNED]:
        out = cropped.crop(example, rng)
        words, kept = example.transcript.split(), out.transcript.split()
        first = next(first for first in range(len(words)) if words[first : first + len(kept)] == kept)
        stop = first + len(kept)
        assert out.speech == (1 if first == 0 else 0, out.frames - 1 if stop == len(words) else out.frames)
    clips = range(len(examples))
    batch = batcher(clips, epoch=1)
    for index, example in enumerate(examples):  # each clip trimmed again as in epoch 1
        out = batcher.trim(example, condition_rng(batcher.config.seed, "train", 1, example.key))
        assert batch.lengths[index] == out.frames
        assert torch.equal(batch.video[index, : out.frames], torch.from_numpy(out.pooled[0]))
    assert _texts(batch) == [example.transcript for example in examples]
    frames = [example.frames for example in examples]  # the draws follow the clips' paths: any of 5 epochs
    assert any(batcher(clips, epoch=epoch).lengths.tolist() != frames for epoch in range(1, 6))
    off = train.Batcher(examples, tiny(augment=replace(augment, trim_prob=0.0)), {}, frontend)
    assert off(clips, epoch=1).lengths.tolist() == frames


def _texts(batch: train.Batch) -> list[str]:
    """The transcripts a batch's CTC targets spell."""
    return [decode(target[:length].tolist())
            for target, length in zip(batch.targets, batch.target_lengths, strict=True)]


def test_stretch_resamples_in_time():
    ramp = torch.arange(8.0).repeat_interleave(2).reshape(8, 2, 1)  # (T, 2, 1): a line in time
    fast, slow = stretch(ramp, 4), stretch(ramp, 16)
    assert fast.shape == (4, 2, 1) and slow.shape == (16, 2, 1)
    assert torch.all(fast[1:] > fast[:-1]) and torch.all(slow[1:] >= slow[:-1])
    assert fast[0, 0, 0] > ramp[0, 0, 0] and fast[-1, 0, 0] < ramp[-1, 0, 0]  # each a mean of a span
    assert torch.equal(stretch(ramp, 8), ramp)
    clip = torch.randn(75, 3, 4)  # one factor: what interpolate gives, any length either way
    for length in (60, 83):
        expected = torch.nn.functional.interpolate(clip.reshape(75, 12).T[None], size=length, mode="linear")
        torch.testing.assert_close(stretch(clip, length), expected[0].T.reshape(length, 3, 4),
                                   atol=1e-4, rtol=0)


def test_stretch_plays_each_piece_at_its_own_rate():
    ramp = torch.arange(40.0)[:, None]  # frame t holds t
    # the first half twice as fast, the second half at half speed: 10 + 40 output frames
    warped = stretch(ramp, 50, (2.0, 0.5))
    steps = torch.diff(warped[:, 0])
    torch.testing.assert_close(steps[1:9], torch.full((8,), 2.0))  # two input frames per output frame
    torch.testing.assert_close(steps[11:-1], torch.full((37,), 0.5))
    assert 19 < warped[10, 0] < 21  # the pieces meet where the input's halves do
    assert torch.equal(stretch(ramp, 40, (1.0, 1.0, 1.0)), ramp)  # equal factors: uniform


def test_fit_length_cuts_or_repeats_the_last_frame():
    frames = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(train.fit_length(frames, 2), frames[:2])
    assert torch.equal(train.fit_length(frames, 5), torch.cat([frames, frames[2:].repeat(2, 1)]))


def scrambled(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every weight redrawn from N(0, 1): unlike any seeded initialisation."""
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter.data)
    return model


def record_starting_weights(monkeypatch) -> dict[str, torch.Tensor]:
    """A dict that receives the model's weights as `Trainer.fit` starts."""
    started = {}
    original = train.Trainer.fit

    def fit_and_record(self, workers):
        started.update({name: value.clone() for name, value in self.model.state_dict().items()})
        original(self, workers)

    monkeypatch.setattr(train.Trainer, "fit", fit_and_record)
    return started


def test_init_starts_from_a_trained_model_and_trains_all_of_it(corpus, tmp_path, monkeypatch):
    manifest, cache_dir = corpus
    source = scrambled(build_model(tiny().model))
    save_checkpoint(tmp_path / "start.pt", source, source.config)
    started = record_starting_weights(monkeypatch)
    config = tiny(init=str(tmp_path / "start.pt"), epochs=1)
    model = train.train(config, manifest, cache_dir, tmp_path / "run")

    for name, value in source.state_dict().items():
        torch.testing.assert_close(started[name], value, msg=name)
    assert all(p.requires_grad for p in model.parameters())
    changed = [name for name, value in source.state_dict().items()
               if not torch.equal(model.state_dict()[name], value)]
    assert "video_frontend.stem.weight" in changed and "heads.av.proj.weight" in changed

    with pytest.raises(ValueError, match="differs"):
        train.initial_weights(tmp_path / "start.pt", tiny(kind="late").model)
    more_dropout = train.initial_weights(tmp_path / "start.pt", replace(tiny().model, dropout=0.3))
    for name, value in source.state_dict().items():
        assert torch.equal(more_dropout[name], value), name
    with pytest.raises(SystemExit):
        cli.main(["train", str(manifest), "--cache", str(cache_dir), "--kind", "late", "--out",
                  str(tmp_path / "wrong"), "--init", str(tmp_path / "start.pt")])


@pytest.mark.parametrize("stream", ["audio", "video"])
def test_init_stream_starts_a_stream_from_a_single_stream_model(corpus, tmp_path, monkeypatch, stream):
    manifest, cache_dir = corpus
    source = scrambled(build_model(replace(tiny().model, kind=stream)))
    save_checkpoint(tmp_path / "source.pt", source, source.config)
    started = record_starting_weights(monkeypatch)
    config = tiny(epochs=1, **{f"init_{stream}": str(tmp_path / "source.pt")})
    model = train.train(config, manifest, cache_dir, tmp_path / "run")

    torch.manual_seed(0)
    fresh = build_model(tiny().model).state_dict()  # the seeded weights the run had without it
    copied = set(source.state_dict())
    assert copied == {name for name in started if name.startswith(train.STREAM_WEIGHTS[stream])}
    for name, value in started.items():
        torch.testing.assert_close(value, source.state_dict()[name] if name in copied else fresh[name],
                                   msg=name)
    recurrent = f"{stream}_blocks.0.gru.weight_hh_l0"
    assert not torch.equal(model.state_dict()[recurrent], source.state_dict()[recurrent])  # trained on

    wide = build_model(replace(source.config, d_model=24))
    save_checkpoint(tmp_path / "wide.pt", wide, wide.config)
    with pytest.raises(ValueError, match="width 24 != 16"):
        train.copy_stream(build_model(tiny().model), tmp_path / "wide.pt", stream)
    with pytest.raises(ValueError, match=f"needs a {stream} stream"):
        train.copy_stream(build_model(tiny(kind="early").model), tmp_path / "source.pt", stream)
    other = "video" if stream == "audio" else "audio"
    with pytest.raises(SystemExit):
        cli.main(["train", str(manifest), "--cache", str(cache_dir), "--kind", other, "--out",
                  str(tmp_path / "wrong"), f"--init-{stream}", str(tmp_path / "source.pt")])


def test_init_with_init_visual_continues_a_frozen_trunk_run(corpus, tmp_path, monkeypatch):
    manifest, cache_dir = corpus
    trunk = build_model(replace(tiny().model, kind="video"))
    save_checkpoint(tmp_path / "trunk.pt", trunk, trunk.config)
    source = scrambled(build_model(tiny().model))
    save_checkpoint(tmp_path / "start.pt", source, source.config)
    started = record_starting_weights(monkeypatch)
    config = tiny(init=str(tmp_path / "start.pt"), init_visual=str(tmp_path / "trunk.pt"), epochs=1)
    model = train.train(config, manifest, cache_dir, tmp_path / "run")

    frozen = {f"video_frontend.{name}" for name in trunk.video_frontend.state_dict()
              if not name.startswith(f"trunk.{len(trunk.video_frontend.trunk) - 1}.")}
    for name, value in started.items():
        expected = trunk.state_dict()[name] if name in frozen else source.state_dict()[name]
        torch.testing.assert_close(value, expected, msg=name)
    for name in frozen:
        assert torch.equal(model.state_dict()[name], trunk.state_dict()[name]), name
    assert not any(p.requires_grad for part in train.frozen_visual(model.video_frontend)
                   for p in part.parameters())


def test_best_checkpoint_weighs_the_noisy_dev_wer_where_the_model_hears():
    steady = {"wer_av": 0.06, "wer_av_babble@0dB": 0.08, "wer_audio": 0.2, "wer_video": 0.1}
    brittle = {"wer_av": 0.03, "wer_av_babble@0dB": 0.15, "wer_audio": 0.1, "wer_video": 0.1}
    assert train.selection_wer(steady, "av") == pytest.approx(0.07)
    assert train.selection_wer(steady, "av") < train.selection_wer(brittle, "av")
    assert train.selection_wer({"wer_video": 0.12}, "video") == 0.12  # no noisy condition to read


def test_intermediate_ctc_adds_the_middle_shared_layers_loss(corpus, tmp_path):
    manifest, cache_dir = corpus
    model = ModelConfig(kind="dmf", d_model=16, levels=2, visual_channels=(4, 8, 8))
    train.train(tiny(epochs=1, inter_weight=0.3, model=model), manifest, cache_dir, tmp_path / "run")
    with open(tmp_path / "run" / train.LOG) as handle:
        row = next(csv.DictReader(handle))
    heads = {head: float(row[f"train_loss_{head}"]) for head in ("av", "audio", "video", INTERMEDIATE)}
    weighted = heads["av"] + 0.5 * (heads["audio"] + heads["video"]) + 0.3 * heads[INTERMEDIATE]
    assert heads[INTERMEDIATE] > 0 and float(row["train_loss"]) == pytest.approx(weighted, rel=1e-6)
    assert not any(name.startswith("wer_" + INTERMEDIATE) for name in row)  # dev reads the real heads


def test_noise_and_dropout_options_reach_the_run(corpus, tmp_path, monkeypatch):
    manifest, cache_dir = corpus
    hum = write_video(tmp_path / "hum.avi", None, audio=tone(1.0, 0.0, 1.0, HUM_HZ))
    configs = []
    monkeypatch.setattr(train, "train", lambda config, *args, **kwargs: configs.append(config))
    command = ["train", str(manifest), "--cache", str(cache_dir), "--out", str(tmp_path / "run")]
    assert cli.main([*command, "--noise", f"pink,{hum},pink", "--snr-range=-5,10", "--clean-prob", "0.5",
                     "--dropout", "0.3", "--aux-weight", "1", "--blank-video-prob", "0.4",
                     "--tempo", "0.9,1.1", "--ema", "0.995", "--splice-prob", "0.2",
                     "--crop-prob", "0.3", "--audio-stem", "conv2d", "--tempo-pieces", "3",
                     "--trim-prob", "0.5", "--inter-ctc", "0.3", "--levels", "2",
                     "--weight-decay", "0.1", "--audio-width", "320", "--video-width", "192"]) == 0
    assert configs[0].model.audio_stem == "conv2d"
    assert configs[0].model.width("audio") == 320 and configs[0].model.width("video") == 192
    assert configs[0].model.dropout == 0.3 and configs[0].aux_weight == 1.0 and configs[0].ema == 0.995
    assert configs[0].inter_weight == 0.3 and configs[0].weight_decay == 0.1
    kinds = ("pink", str(hum.resolve()), "pink")  # kept in order: pink, named twice, is drawn twice as often
    assert configs[0].augment == AugmentConfig(clean_prob=0.5, noise_kinds=kinds,
                                               snr_db=(-5.0, 10.0), blank_video_prob=0.4, tempo=(0.9, 1.1),
                                               tempo_pieces=3,
                                               splice_prob=0.2, crop_prob=0.3, trim_prob=0.5)
    for bad in (["--snr-range", "10,0"], ["--snr-range", "clean,5"], ["--clean-prob", "1.5"],
                ["--blank-audio-prob", "0.7", "--blank-video-prob", "0.7"], ["--tempo", "1.1,0.9"],
                ["--tempo", "fast"], ["--tempo-pieces", "0"], ["--audio-stem", "conv3d"], ["--ema", "1"],
                ["--ema", "-0.5"],
                ["--splice-prob", "1.5"], ["--crop-prob", "-0.1"], ["--trim-prob", "2"],
                ["--inter-ctc", "0.3", "--levels", "1"], ["--inter-ctc", "0.3", "--kind", "late"],
                ["--weight-decay", "-0.1"], ["--inter-ctc", "-0.3", "--levels", "2"],
                ["--audio-width", "321"], ["--kind", "video", "--video-width", "192"],
                ["--splice-prob", "0.2", "--init-visual", "v.pt", "--workers", "2", "--device", "cuda"],
                ["--noise", str(tmp_path / "missing.wav")]):
        with pytest.raises(SystemExit):
            cli.main([*command, *bad])

    speech = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    only_hum = replace(configs[0].augment, clean_prob=0.0, noise_kinds=(str(hum),), snr_db=(5.0, 5.0))
    noise = noisy(speech, np.random.default_rng(1), only_hum, {}, "clip") - speech
    assert np.argmax(np.abs(np.fft.rfft(noise))) == HUM_HZ  # 1 s of noise: bins are 1 Hz apart
    assert 10 * np.log10(np.mean(speech**2) / np.mean(noise**2)) == pytest.approx(5.0, abs=0.01)


def test_the_shares_of_perturbed_clips_cannot_exceed_one():
    with pytest.raises(ValueError, match="another clip's lips must be between 0 and 0.6"):
        AugmentConfig(other_video_prob=0.7)
    with pytest.raises(ValueError, match="at most 1"):
        AugmentConfig(blank_audio_prob=0.6, blank_video_prob=0.6)
