"""`avsr benchmark`: tiny untrained models on a tiny synthetic cache, every output and the sharing of work."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch

from avsr import benchmark
from avsr.benchmark import BenchmarkConfig, load_clip_set, noisy_waveform, run_benchmark, select
from avsr.cli import build_parser, main
from avsr.train import Example, target_of
from avsr.transcribe import Recognizer
from avsr.windows import EDGE_QUIET_FRAMES, Window, edge_padding, edge_pads, pad_streams
from data.manifest import read_manifest
from data.noise import BABBLE, BABBLE_TALKERS, WHITE, NoiseSpec, power
from models.checkpoint import BUNDLED_MODELS, save_checkpoint
from models.decoding import Decoder
from models.dmf import AVSRModel, build_model
from models.frontends import VisualFrontEnd
from models.voting import vote
from preprocessing import cache
from preprocessing.audio import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME
from preprocessing.clip import Clip
from preprocessing.mouth import MOUTH_SIZE
from tests.media import write_video
from tests.models.helpers import save_member, tiny_config

FRAMES = 10  # per clip: 0.4 s
CLIPS = 8  # babble needs BABBLE_TALKERS others besides each clip
BATCH = 4  # clips per forward pass: two batches
TONE_STEP = 125.0  # Hz between the clips' tones: whole cycles in 0.4 s, so each is one FFT bin
SPEAKERS = ("s1",) * 6 + ("s4",) * 2
SNRS = (None, 0.0, -5.0)
NOISE_FILE_SECONDS = 0.1  # shorter than a clip: looped


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """A GRID-like manifest of synthetic clips, each with a tone of its own, and their cache."""
    folder = tmp_path_factory.mktemp("corpus")
    cache_dir = folder / "cache"
    rng = np.random.default_rng(0)
    t = np.arange(FRAMES * SAMPLES_PER_VIDEO_FRAME) / SAMPLE_RATE
    rows = ["speaker\tvideo\ttranscript"]
    for index, speaker in enumerate(SPEAKERS):
        video = folder / f"clip{index}.mp4"
        video.write_bytes(f"video {index}".encode())  # the cache knows a clip by its file's bytes
        clip = Clip(
            mouths=rng.integers(0, 256, (FRAMES, MOUTH_SIZE, MOUTH_SIZE), dtype=np.uint8),
            audio=(0.1 * np.sin(2 * np.pi * TONE_STEP * (index + 2) * t)).astype(np.float32),
            detected=np.ones(FRAMES, dtype=bool),
        )
        cache.store_clip(cache_dir, video, clip)
        rows.append(f"{speaker}\t{video.name}\t{('bin blue', 'set red now')[index % 2]}")
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, cache_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """A tiny untrained checkpoint of every kind, by kind."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for kind in BUNDLED_MODELS:
        torch.manual_seed(0)
        config = tiny_config(kind=kind)
        paths[kind] = str(folder / f"{kind}.pt")
        save_checkpoint(paths[kind], build_model(config), config, data="synthetic")
    return paths


@pytest.fixture(scope="module")
def noise_file(tmp_path_factory) -> Path:
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, round(NOISE_FILE_SECONDS * SAMPLE_RATE))
    return write_video(tmp_path_factory.mktemp("noise") / "hum.avi", None, audio=noise)


@pytest.fixture(scope="module")
def config(corpus, models, noise_file) -> BenchmarkConfig:
    return BenchmarkConfig(models=tuple(models.values()), noises=(BABBLE, noise_file), snrs=SNRS,
                           cache_dir=corpus[1], device="cpu", batch_size=BATCH, progress=False)


def _count_trunk_runs(patch: pytest.MonkeyPatch, calls: Counter) -> None:
    """Count the visual trunk's runs in `calls["visual trunk"]` while `patch` lasts."""
    pooled = VisualFrontEnd.pooled

    def counted_pooled(self, *args):
        calls["visual trunk"] += 1
        return pooled(self, *args)

    patch.setattr(VisualFrontEnd, "pooled", counted_pooled)


@pytest.fixture(scope="module")
def run(corpus, config) -> tuple[benchmark.BenchmarkResult, Counter]:
    """The whole grid, counting the models' forward passes and visual trunk runs."""
    calls: Counter = Counter()
    forward = AVSRModel.forward

    def counted_forward(self, *args):
        calls[self.config.kind] += 1
        return forward(self, *args)

    threads = torch.get_num_threads()  # set before the tests' own one-thread fixture is
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AVSRModel, "forward", counted_forward)
        _count_trunk_runs(patch, calls)
        result = run_benchmark(corpus[0], config)
    torch.set_num_threads(threads)
    return result, calls


def test_every_head_under_every_condition_with_clean_once(run, models, noise_file):
    result, _ = run
    heads = Counter((row.model, row.modality) for row in result.rows)
    kinds = {path: kind for kind, path in models.items()}
    assert {(kinds[model], modality) for model, modality in heads} == {
        ("dmf", "av"), ("dmf", "audio"), ("dmf", "video"), ("early", "av"), ("late", "av"),
        ("late", "audio"), ("late", "video"), ("audio", "audio"), ("video", "video")}
    assert set(heads.values()) == {1 + 2 * 2}  # clean once, then two noises at two SNRs
    clean = Counter((row.model, row.modality) for row in result.rows if row.noise is None)
    assert set(clean.values()) == {1} and all(row.snr is None for row in result.rows if row.noise is None)
    assert {row.noise for row in result.rows} == {None, BABBLE, str(noise_file)}
    assert all(row.utterances == CLIPS and min(row.wer, row.cer) >= 0 for row in result.rows)


def test_work_is_shared_across_conditions_and_models(run):
    result, calls = run
    batches = CLIPS // BATCH
    conditions = 1 + 2 * 2
    assert calls["visual trunk"] == batches * 4  # once per clip for each model that sees
    assert calls["video"] == batches  # a video head: one condition, reported under all
    assert all(calls[kind] == batches * conditions for kind in ("dmf", "early", "late", "audio"))
    video_rows = [row for row in result.rows if row.modality == "video"]
    for row in video_rows:
        clean = next(r for r in video_rows if r.model == row.model and r.noise is None)
        assert (row.wer, row.cer) == (clean.wer, clean.cer)
        assert row.seconds == 0.0 if row.noise is not None else row.seconds > 0


def test_json_has_the_interface_schema(run, tmp_path):
    result, _ = run
    path = tmp_path / "out" / "bench.json"
    benchmark.write_json(result, path)
    data = json.loads(path.read_text())
    assert data["clips"] == CLIPS and data["wall_seconds"] > 0 and data["rtf"] > 0
    assert data["audio_seconds"] == pytest.approx(len(result.rows) * CLIPS * FRAMES / 25)
    assert data["settings"]["snrs"] == [None, 0.0, -5.0] and data["settings"]["seed"] == 0
    for row in data["results"]:
        assert {"model", "modality", "noise", "snr", "wer", "cer", "utterances", "seconds"} <= set(row)
        assert row["modality"] in ("av", "audio", "video")
        assert (row["noise"] is None) == (row["snr"] is None)


def test_csv_and_markdown_tables(run, tmp_path):
    result, _ = run
    benchmark.write_csv(result, tmp_path / "bench.csv")
    with open(tmp_path / "bench.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.rows)
    assert float(rows[0]["wer"]) == result.rows[0].wer and rows[0]["noise"] == rows[0]["snr"] == ""
    text = benchmark.markdown(result)
    assert text.count("### ") == 2 and "| model | modality | clean | 0 dB | -5 dB |" in text
    assert text.count("\n| ") == 2 * (2 + 9)  # each table: header, rule, a line per model head


def test_plot_is_a_png_with_a_panel_per_noise(run, tmp_path):
    result, _ = run
    figure = benchmark.write_plot(result, tmp_path / "wer.png")
    data = (tmp_path / "wer.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(figure.axes) == 2
    assert [axes.get_title() for axes in figure.axes] == result.noise_kinds
    assert all(len(axes.get_lines()) == 9 for axes in figure.axes)
    width, height = (int.from_bytes(data[offset : offset + 4], "big") for offset in (16, 20))
    panel_width, panel_height = benchmark.PANEL_SIZE
    assert (width, height) == (round((2 * panel_width + benchmark.LEGEND_WIDTH) * figure.dpi),
                               round(panel_height * figure.dpi))


def test_the_same_seed_gives_the_same_noise_and_wers(corpus, models, config):
    small = replace(config, models=(models["dmf"],), modalities=("av",), noises=(WHITE,), snrs=(0.0,))
    first, again = run_benchmark(corpus[0], small), run_benchmark(corpus[0], small)
    assert [(row.wer, row.cer) for row in first.rows] == [(row.wer, row.cer) for row in again.rows]
    clip_set = load_clip_set(select(read_manifest(corpus[0])), corpus[0].parent, corpus[1], progress=False)
    spec = NoiseSpec(WHITE, 0.0)
    seed0, same, seed1 = (np.concatenate(benchmark.heard(clip_set, spec, seed, False)[0])
                          for seed in (0, 0, 1))
    assert np.array_equal(seed0, same) and not np.allclose(seed0, seed1)


@pytest.mark.parametrize("kind", [BABBLE, WHITE, "file"])
def test_noise_is_mixed_at_the_snr_asked(corpus, noise_file, kind):
    clip_set = load_clip_set(select(read_manifest(corpus[0])), corpus[0].parent, corpus[1], progress=False)
    for snr in (10.0, 0.0, -10.0):
        spec = NoiseSpec(noise_file if kind == "file" else kind, snr)
        for index, example in enumerate(clip_set.examples):
            noisy = noisy_waveform(clip_set, index, spec, seed=0)
            assert len(noisy) == len(example.audio)
            measured = 10 * np.log10(power(example.audio) / power(noisy - example.audio))
            assert abs(measured - snr) < 0.1


@pytest.mark.parametrize("talkers", ["own clips", "babble manifest"])
def test_babble_never_holds_the_target(corpus, talkers):
    utterances = read_manifest(corpus[0])
    if talkers == "own clips":
        clip_set = load_clip_set(utterances, corpus[0].parent, corpus[1], progress=False)
    else:  # the s4 clips, with babble from every clip: theirs too
        clip_set = load_clip_set(select(utterances, speakers=("s4",)), corpus[0].parent, corpus[1],
                                 babble=utterances, progress=False)
    samples = FRAMES * SAMPLES_PER_VIDEO_FRAME
    bins = [round(TONE_STEP * (clip + 2) * samples / SAMPLE_RATE) for clip in range(CLIPS)]  # clip's tone
    for index, example in enumerate(clip_set.examples):
        babble = noisy_waveform(clip_set, index, NoiseSpec(BABBLE, 0.0), seed=0) - example.audio
        spectrum = np.abs(np.fft.rfft(babble))
        heard = [clip for clip in range(CLIPS) if spectrum[bins[clip]] > 0.1 * spectrum.max()]
        own = int(Path(example.key).stem.removeprefix("clip"))
        assert len(heard) == BABBLE_TALKERS and own not in heard


def test_clips_are_chosen_by_split_and_speaker(corpus):
    utterances = read_manifest(corpus[0])
    assert select(utterances) == utterances
    assert [u.video.name for u in select(utterances, speakers=("s4",))] == ["clip6.mp4", "clip7.mp4"]
    dev = select(utterances, "dev", dev_size=2)
    assert len(dev) == 2 and all(u.fields["speaker"] == "s1" for u in dev)
    with pytest.raises(ValueError, match="no clips"):
        select(utterances, "dev", ("s4",), dev_size=2)
    with pytest.raises(ValueError, match="speaker column"):
        select([replace(utterances[0], fields={})], speakers=("s1",))


def test_a_model_runs_the_heads_asked_or_else_its_own():
    assert benchmark.benchmarked_heads(("av", "audio", "video"), ("av", "video")) == ("av", "video")
    assert benchmark.benchmarked_heads(("audio",), ("av",)) == ("audio",)
    assert benchmark.benchmarked_heads(("av",), ("audio", "video")) == ("av",)


def test_clean_emissions_are_those_of_each_clip_alone(corpus, models):
    clip_set = load_clip_set(select(read_manifest(corpus[0])), corpus[0].parent, corpus[1], progress=False)
    recognizer = Recognizer.load(models["dmf"], "cpu")
    heads = ("av", "audio", "video")
    emitted = {emissions.modality: emissions.log_probs for emissions in benchmark.iter_emissions(
        {"dmf": recognizer}, {"dmf": heads}, clip_set, [NoiseSpec(None, None)], batch_size=BATCH)}
    example = clip_set.examples[5]
    for head in heads:
        single = recognizer.emissions(head, example.mouths if head != "audio" else None,
                                      example.audio if head != "video" else None)
        torch.testing.assert_close(emitted[head][5], single)


def test_an_ensemble_emits_its_members_outputs_and_scores_their_vote(corpus, models, config, tmp_path):
    members = [models["dmf"], str(save_member(Path(models["dmf"]), tmp_path / "second.pt"))]
    name = "+".join(members)
    clip_set = load_clip_set(select(read_manifest(corpus[0])), corpus[0].parent, corpus[1], progress=False)
    recognizers = {model: Recognizer.load(model, "cpu") for model in (name, *members)}
    emitted = {emissions.model: emissions.log_probs for emissions in benchmark.iter_emissions(
        recognizers, dict.fromkeys(recognizers, ("av",)), clip_set, [NoiseSpec(None, None)],
        batch_size=BATCH)}
    for clip in range(CLIPS):
        stacked = torch.stack([emitted[member][clip] for member in members])
        torch.testing.assert_close(emitted[name][clip], stacked)
    result = run_benchmark(corpus[0], replace(config, models=(name,), noises=(WHITE,), snrs=(None,),
                                              modalities=("av",)))
    decoder = Decoder()
    voted = [vote([decoder(emitted[member][clip]) for member in members]).text for clip in range(CLIPS)]
    assert [(row.model, row.modality) for row in result.rows] == [(name, "av")]
    assert result.rows[0].wer == pytest.approx(jiwer.wer(clip_set.references, voted))


QUIET_FRAMES = 10  # on each side of the tone of `_quiet_edged`'s clips


def _quiet_edged(clips: int, frames: int = 40) -> benchmark.ClipSet:
    """Clips of a tone with QUIET_FRAMES of near silence on each side, and random lips."""
    rng = np.random.default_rng(0)
    t = np.arange(frames * SAMPLES_PER_VIDEO_FRAME) / SAMPLE_RATE
    examples = []
    for index in range(clips):
        audio = np.sin(2 * np.pi * TONE_STEP * (index + 1) * t).astype(np.float32)
        audio[: QUIET_FRAMES * SAMPLES_PER_VIDEO_FRAME] *= 1e-3
        audio[-QUIET_FRAMES * SAMPLES_PER_VIDEO_FRAME :] *= 1e-3
        mouths = rng.integers(0, 256, (frames, MOUTH_SIZE, MOUTH_SIZE), dtype=np.uint8)
        examples.append(Example(f"clip{index}", "bin", target_of("bin"), mouths, audio))
    return benchmark.ClipSet(examples, [example.key for example in examples], {})


def test_padded_edges_follow_the_quiet_the_noise_leaves():
    """Clean, a clip's edges are padded up to GRID's silence less the quiet it has; at 0 dB white
    noise nothing is quiet, and they are padded in full. The noise is the unpadded clip's."""
    clip_set = _quiet_edged(1)
    frames, quiet = clip_set.examples[0].frames, QUIET_FRAMES
    before, after = EDGE_QUIET_FRAMES
    for spec, pads in ((NoiseSpec(None, None), (before - quiet, after - quiet)),
                       (NoiseSpec(WHITE, 0.0), (before, after))):
        waveforms, padded = benchmark.heard(clip_set, spec, 0, True)
        assert padded == [pads]
        noisy = noisy_waveform(clip_set, 0, spec, 0)
        start = pads[0] * SAMPLES_PER_VIDEO_FRAME
        assert len(waveforms[0]) == (frames + sum(pads)) * SAMPLES_PER_VIDEO_FRAME
        np.testing.assert_array_equal(waveforms[0][start : start + len(noisy)], noisy)
        expected = pad_streams(None, noisy, *pads, edge_padding(noisy).rms)[1]
        np.testing.assert_array_equal(waveforms[0], expected)
    assert benchmark.heard(clip_set, NoiseSpec(WHITE, 0.0), 0, False)[1] == [(0, 0)]


def test_padded_clips_read_as_transcribe_pads_them(corpus, models):
    """With `pad_edges` every head runs under every condition, on the clip padded after its noise, and
    the trunk runs once per batch and padding (the tones leave no quiet frames: padded in full)."""
    clip_set = load_clip_set(select(read_manifest(corpus[0])), corpus[0].parent, corpus[1], progress=False)
    recognizer = Recognizer.load(models["dmf"], "cpu")
    heads = ("av", "audio", "video")
    conditions = [NoiseSpec(None, None), NoiseSpec(WHITE, 0.0)]
    calls: Counter = Counter()
    with pytest.MonkeyPatch.context() as patch:
        _count_trunk_runs(patch, calls)
        emitted = {(emissions.modality, emissions.condition): emissions.log_probs
                   for emissions in benchmark.iter_emissions({"dmf": recognizer}, {"dmf": heads}, clip_set,
                                                             conditions, batch_size=BATCH, pad_edges=True)}
    assert set(emitted) == {(head, condition) for head in heads for condition in conditions}
    assert calls["visual trunk"] == CLIPS // BATCH
    example = clip_set.examples[5]
    for condition in conditions:
        waveform = noisy_waveform(clip_set, 5, condition, 0)
        padding = edge_padding(waveform)
        pads = edge_pads(Window(0, FRAMES, 0, FRAMES), padding)
        assert pads == EDGE_QUIET_FRAMES
        mouths, audio = pad_streams(example.mouths, waveform, *pads, padding.rms)
        for head in heads:
            single = recognizer.emissions(head, mouths if head != "audio" else None,
                                          audio if head != "video" else None)
            torch.testing.assert_close(emitted[head, condition][5], single)


def test_the_trunk_runs_again_only_for_a_new_padding(models):
    """Clean, the clips are padded less than in noise, where 0 and -5 dB pad alike: two trunk runs."""
    clip_set = _quiet_edged(2)
    recognizer = Recognizer.load(models["dmf"], "cpu")
    conditions = [NoiseSpec(None, None), NoiseSpec(WHITE, 0.0), NoiseSpec(WHITE, -5.0)]
    pads = [benchmark.heard(clip_set, condition, 0, True)[1] for condition in conditions]
    assert pads[0] != pads[1] == pads[2]
    calls: Counter = Counter()
    with pytest.MonkeyPatch.context() as patch:
        _count_trunk_runs(patch, calls)
        emitted = list(benchmark.iter_emissions({"dmf": recognizer}, {"dmf": ("video",)}, clip_set,
                                                conditions, batch_size=2, pad_edges=True))
    assert calls["visual trunk"] == 2 and len(emitted) == len(conditions)
    for emissions, padding in zip(emitted, pads, strict=True):
        assert [len(clip) for clip in emissions.log_probs] == [
            example.frames + sum(pad) for example, pad in zip(clip_set.examples, padding, strict=True)]


def test_cli_writes_every_output(corpus, models, tmp_path, capsys):
    argv = ["benchmark", str(corpus[0]), "--cache", str(corpus[1]), "--models",
            f"{models['dmf']},{models['audio']},{models['video']}", "--modality", "av", "--noise", "white",
            "--snr=-5,clean", "--device", "cpu", "--pad-edges", "--json", str(tmp_path / "b.json"),
            "--csv", str(tmp_path / "b.csv"), "--plot", str(tmp_path / "b.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "### white: WER (%)" in out and "real-time factor" in out
    data = json.loads((tmp_path / "b.json").read_text())
    rows = data["results"]
    assert data["settings"]["pad_edges"] is True
    assert {(row["model"], row["modality"]) for row in rows} == {
        (models["dmf"], "av"), (models["audio"], "audio"), (models["video"], "video")}
    assert (tmp_path / "b.csv").is_file() and (tmp_path / "b.png").is_file()


def test_cli_parses_lists_and_refuses_bad_ones(corpus, capsys):
    parser = build_parser()
    manifest = str(corpus[0])
    assert parser.parse_args(["benchmark", manifest, "--snr", "-5"]).snr == (-5.0,)
    assert parser.parse_args(["benchmark", manifest, "--snr=-5,-10"]).snr == (-5.0, -10.0)
    assert parser.parse_args(["benchmark", manifest, "--snr", "clean,0,-5"]).snr == (None, 0.0, -5.0)
    assert parser.parse_args(["benchmark", manifest]).models == (*BUNDLED_MODELS, "dmf-ensemble")
    for option, value, message in [("--snr", "5,loud", "bad SNR"), ("--noise", "hiss", "unknown noise"),
                                   ("--modality", "av,lips", "unknown modality")]:
        with pytest.raises(SystemExit):
            parser.parse_args(["benchmark", manifest, option, value])
        assert message in capsys.readouterr().err
