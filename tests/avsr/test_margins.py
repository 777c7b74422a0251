"""`avsr.bench.margins`: clips cut around their words, and every head scored on them."""

from __future__ import annotations

import numpy as np
import torch

from avsr.bench.margins import keep_margin, margin_wers
from avsr.benchmark import ClipSet
from avsr.train import Example, target_of
from avsr.transcribe import Recognizer
from models.checkpoint import save_checkpoint
from models.dmf import build_model
from preprocessing.audio import SAMPLES_PER_VIDEO_FRAME
from preprocessing.mouth import MOUTH_SIZE
from tests.models.helpers import tiny_config

FRAMES = 20  # per clip
SPEECH = [(5, 15), (2, 19), (0, 20)]  # each clip's words, video frames [start, stop)


def _clip_set() -> ClipSet:
    """Three clips of noise whose frames number themselves: mouth pixels and samples equal the frame."""
    examples = []
    for index, transcript in enumerate(("bin blue", "set red now", "lay")):
        frame = np.arange(FRAMES)
        mouths = np.broadcast_to(frame[:, None, None], (FRAMES, MOUTH_SIZE, MOUTH_SIZE)).astype(np.uint8)
        audio = np.repeat(frame, SAMPLES_PER_VIDEO_FRAME).astype(np.float32) / FRAMES
        examples.append(Example(f"clip{index}", transcript, target_of(transcript), mouths, audio))
    return ClipSet(examples, [example.key for example in examples], {})


def test_a_margin_keeps_that_many_frames_around_the_words():
    example = _clip_set().examples[0]
    for margin, (first, last) in ((0, (5, 15)), (2, (3, 17)), (10, (0, 20))):
        mouths, audio = keep_margin(example, SPEECH[0], margin)
        assert mouths[:, 0, 0].tolist() == list(range(first, last))
        assert np.array_equal(audio * FRAMES, np.repeat(np.arange(first, last), SAMPLES_PER_VIDEO_FRAME))


def test_every_head_is_scored_and_a_margin_past_the_edges_is_the_whole_clip(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(kind="dmf")
    save_checkpoint(tmp_path / "dmf.pt", build_model(config), config, data="synthetic")
    recognizer = Recognizer.load(tmp_path / "dmf.pt", "cpu")
    rows = margin_wers(recognizer, _clip_set(), SPEECH, [None, 0, FRAMES])
    assert [(row["margin_frames"], row["padded"]) for row in rows] == [
        (None, True), (None, False), (0, True), (0, False), (FRAMES, True), (FRAMES, False)]
    assert all(set(row["wer"]) == {"av", "audio", "video"} for row in rows)
    assert rows[4]["wer"] == rows[0]["wer"] and rows[5]["wer"] == rows[1]["wer"]  # nothing cut
    assert rows[2]["wer"] != rows[3]["wer"]  # the padding changes what is read
    assert all(wer >= 0 for row in rows for wer in row["wer"].values())
    assert recognizer.pad_edges
