"""A tiny DMF learns 8 synthetic clips perfectly: the whole path from inputs to text works."""

from __future__ import annotations

import time

import jiwer
import torch

from models.decoding import greedy_decode
from models.dmf import build_model
from models.loss import ctc_loss
from models.tokenizer import BLANK, VOCAB_SIZE, encode
from preprocessing.audio import AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS
from tests.models.helpers import CROP, tiny_config

SENTENCES = [
    "bin blue at f two now",
    "place red by g nine again",
    "lay green with k one soon",
    "set white in u seven please",
    "bin red at a zero now",
    "place blue by e four again",
    "lay white with q eight soon",
    "set green in x six please",
]
MAX_STEPS = 300  # the run stops at the first evaluation with no errors, usually far sooner
EVAL_EVERY = 20  # training steps between greedy-decoding checks


def synthetic_clips(sentences: list[str]) -> tuple[torch.Tensor, ...]:
    """(audio, video, lengths, targets, target_lengths): one video frame per character.

    Each class (the blank standing for silence) has a fixed random log-mel pattern over its
    4 audio frames and a fixed random image, so both streams carry the text. A silent frame
    separates repeated characters, as CTC needs, and pads the clips' ends.
    """
    mel_patterns = torch.randn(VOCAB_SIZE, AUDIO_FRAMES_PER_VIDEO_FRAME, N_MELS)
    images = torch.rand(VOCAB_SIZE, CROP, CROP)
    targets = [encode(sentence) for sentence in sentences]
    frames = []
    for ids in targets:
        classes = [BLANK]
        for index in ids:
            classes += [BLANK, index] if index == classes[-1] else [index]
        frames.append(torch.tensor(classes + [BLANK]))
    lengths = torch.tensor([len(clip) for clip in frames])
    padded = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True, padding_value=BLANK)
    audio = mel_patterns[padded].flatten(1, 2)  # (clips, 4T, N_MELS)
    target_lengths = torch.tensor([len(ids) for ids in targets])
    target_tensor = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(ids) for ids in targets], batch_first=True
    )
    return audio, images[padded], lengths, target_tensor, target_lengths


def test_tiny_dmf_overfits_eight_clips() -> None:
    audio, video, lengths, targets, target_lengths = synthetic_clips(SENTENCES)
    model = build_model(tiny_config(d_model=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    wer = 1.0
    for step in range(1, MAX_STEPS + 1):
        model.train()
        loss = ctc_loss(model(audio, video, lengths), lengths, targets, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % EVAL_EVERY == 0:
            model.eval()
            with torch.no_grad():
                hypotheses = greedy_decode(model(audio, video, lengths)["av"], lengths)
            wer = jiwer.wer(SENTENCES, hypotheses)
            if wer == 0:
                break
    print(f"overfit: WER {wer:.3f} after {step} steps, {time.perf_counter() - start:.1f} s")
    assert wer == 0, hypotheses
