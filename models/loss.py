"""The CTC training loss, for one head or the sum over a model's heads."""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor

from models.tokenizer import BLANK


def ctc_loss(
    log_probs: Tensor | dict[str, Tensor],
    lengths: Tensor,
    targets: Tensor,
    target_lengths: Tensor,
) -> Tensor:
    """CTC loss summed over each clip's characters, averaged over the batch.

    log_probs: (batch, T, VOCAB_SIZE), or a model's output dict, whose heads' losses are
    summed (the fused head and the auxiliary ones weigh the same). targets: padded
    (batch, S) or concatenated class indices, as `torch.nn.functional.ctc_loss` takes them.
    Impossible alignments (a transcript longer than its clip allows) count as zero.
    """
    if isinstance(log_probs, dict):
        return sum(ctc_loss(head, lengths, targets, target_lengths) for head in log_probs.values())
    total = F.ctc_loss(
        log_probs.transpose(0, 1),
        targets,
        lengths,
        target_lengths,
        blank=BLANK,
        reduction="sum",
        zero_infinity=True,
    )
    return total / log_probs.shape[0]
