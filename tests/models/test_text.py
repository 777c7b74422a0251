"""Characters in and out: the vocabulary, greedy CTC decoding and the CTC loss helper."""

from __future__ import annotations

import torch

from models.decoding import greedy_decode
from models.loss import ctc_loss
from models.tokenizer import BLANK, CHARACTERS, VOCAB_SIZE, decode, encode


def test_vocabulary_is_blank_space_apostrophe_letters() -> None:
    assert (BLANK, VOCAB_SIZE) == (0, 29)
    assert encode("a' z") == [3, 2, 1, 28]


def test_encode_normalises_and_decode_inverts() -> None:
    ids = encode("  Don't\tSTOP -- 42  now! ")
    assert decode(ids) == "don't stop now"
    assert decode([BLANK, *ids, BLANK]) == "don't stop now"
    assert encode("") == [] and decode([]) == ""


def test_greedy_decode_merges_repeats_and_drops_blanks() -> None:
    h, i, space = (CHARACTERS.index(c) + 1 for c in "hi ")
    paths = [[BLANK, h, h, BLANK, i, i, space, BLANK], [i, BLANK, i, BLANK, BLANK, BLANK, h, h]]
    log_probs = torch.nn.functional.one_hot(torch.tensor(paths), VOCAB_SIZE).float().log()
    assert greedy_decode(log_probs, torch.tensor([8, 5])) == ["hi", "ii"]


def test_ctc_loss_sums_heads_and_survives_impossible_targets() -> None:
    heads = {name: torch.randn(2, 4, VOCAB_SIZE).log_softmax(-1) for name in ("av", "audio")}
    lengths, target_lengths = torch.tensor([4, 2]), torch.tensor([2, 3])  # clip 2: too short
    targets = torch.tensor([[5, 6, 0], [7, 8, 9]])
    total = ctc_loss(heads, lengths, targets, target_lengths)
    parts = [ctc_loss(head, lengths, targets, target_lengths) for head in heads.values()]
    torch.testing.assert_close(total, sum(parts))
    assert torch.isfinite(total)
