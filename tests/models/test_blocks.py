"""The recurrent block runs each direction over the padded batch: the same as packed sequences."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.blocks import RecurrentBlock, reverse_each, zero_padding


def test_reverse_each_reverses_a_clips_frames_and_keeps_its_padding() -> None:
    x = torch.arange(10.0).reshape(2, 5)[..., None].expand(2, 5, 3)
    lengths = torch.tensor([5, 3])
    reversed_ = reverse_each(x, lengths)
    assert reversed_[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert reversed_[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    torch.testing.assert_close(reverse_each(reversed_, lengths), x)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_block_matches_a_packed_bidirectional_rnn(cell: str) -> None:
    """The block's own weights, run by PyTorch on packed sequences, give the same outputs."""
    torch.manual_seed(0)
    block = RecurrentBlock(32, 0.0, cell).eval()
    x, lengths = torch.randn(3, 9, 32), torch.tensor([9, 4, 6])
    packed = pack_padded_sequence(block.norm(x), lengths, batch_first=True, enforce_sorted=False)
    rnn_out, _ = pad_packed_sequence(getattr(block, cell)(packed)[0], batch_first=True, total_length=9)
    with torch.no_grad():
        torch.testing.assert_close(block(x, lengths), zero_padding(x + rnn_out, lengths).detach())
