"""Temporal blocks: residual layers over (batch, frames, width) sequences that ignore padding.

Every block maps `(x, lengths) -> y` of the same shape, where `lengths` counts each clip's
valid frames, and returns zeros at padded frames. A clip's outputs therefore do not depend
on how much padding its batch adds, as long as padded inputs are zero too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.config import ModelConfig

# Hidden width of a conv block's pointwise layers, per model width: 2 gives a conv block
# about 4 d^2 parameters, close to a bidirectional GRU block's 4.5 d^2, so the default
# widths in `models.config` balance the kinds for either block.
CONV_EXPANSION = 2
# Heads of an attention block's self-attention; the width must divide by it (192: 48 per head).
ATTENTION_HEADS = 4


def padding_mask(lengths: Tensor, frames: int) -> Tensor:
    """(batch, frames) bool, True at each clip's first `lengths` frames."""
    return torch.arange(frames, device=lengths.device) < lengths[:, None]


def zero_padding(x: Tensor, lengths: Tensor) -> Tensor:
    """`x` (batch, frames, ...) with every frame past its clip's length set to zero."""
    padded = ~padding_mask(lengths, x.shape[1])
    return x.masked_fill(padded.reshape(*padded.shape, *[1] * (x.dim() - 2)), 0)


class ConvBlock(nn.Module):
    """Residual depthwise-separable convolution over time (a 1-D ConvNeXt block): local context.

    y = x + Dropout(Linear(GELU(Linear(LayerNorm(DepthwiseConv(x)))))). The convolution
    reads `x` first, so zeroed padding looks to it exactly like its own zero padding.
    """

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding="same", groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pointwise = nn.Sequential(
            nn.Linear(d_model, CONV_EXPANSION * d_model),
            nn.GELU(),
            nn.Linear(CONV_EXPANSION * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        mixed = self.depthwise(x.transpose(1, 2)).transpose(1, 2)
        return zero_padding(x + self.pointwise(self.norm(mixed)), lengths)


# The recurrent cells a block may use. LSTM has a third more weights per unit than GRU (four
# gates against three), but on the CPU a DMF of them trains 1.7x as fast (0.28 vs 0.50 s per
# step): oneDNN runs each LSTM layer as one fused kernel, where GRU falls back to per-frame matrix
# products (`avsr.bench.train_speed`).
RECURRENT: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}
# Each cell's functional form, called once per direction on the module's own weights.
RECURRENT_OPS = {"gru": torch.gru, "lstm": torch.lstm}


def reverse_each(x: Tensor, lengths: Tensor) -> Tensor:
    """`x` (batch, frames, ...) with each clip's first `lengths` frames in reverse order, padding kept.

    Its own inverse. The backward direction runs on it as a forward pass, so each clip's padding
    comes after its frames in both directions and cannot reach them.
    """
    steps = torch.arange(x.shape[1], device=x.device)
    order = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, order.reshape(*order.shape, *[1] * (x.dim() - 2)).expand_as(x))


class RecurrentBlock(nn.Module):
    """Residual bidirectional GRU or LSTM, d/2 per direction: context from the whole clip.

    y = x + Dropout(BiRNN(LayerNorm(x))). Each direction runs over the padded batch with the
    backward one on time-reversed clips (`reverse_each`), so both read each clip's valid frames
    before its padding. Unlike packed sequences of unequal lengths (speaking-rate perturbation), a
    padded batch keeps oneDNN's fused LSTM kernel: 4x faster per LSTM block, 1.6x per GRU block.
    The recurrent layer is stored under its cell's name ("gru" or "lstm"), the names its
    checkpoints' weights carry.
    """

    def __init__(self, d_model: int, dropout: float, cell: str) -> None:
        super().__init__()
        self.cell = cell
        self.norm = nn.LayerNorm(d_model)
        self.add_module(cell, RECURRENT[cell](d_model, d_model // 2, batch_first=True, bidirectional=True))
        self.dropout = nn.Dropout(dropout)

    def direction(self, x: Tensor, suffix: str) -> Tensor:
        """One direction's outputs over `x` (batch, frames, d), from zero state: suffix "" or "_reverse"."""
        rnn = getattr(self, self.cell)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        weights = [getattr(rnn, f"{name}_l0{suffix}") for name in names]
        state = x.new_zeros(1, x.shape[0], rnn.hidden_size)
        state = (state, state) if self.cell == "lstm" else state
        return RECURRENT_OPS[self.cell](x, state, weights, True, 1, 0.0, self.training, False, True)[0]

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        normed = self.norm(x)
        backward = reverse_each(self.direction(reverse_each(normed, lengths), "_reverse"), lengths)
        output = torch.cat([self.direction(normed, ""), backward], dim=-1)
        return zero_padding(x + self.dropout(output), lengths)


class AttentionBlock(nn.Module):
    """A conv block, then residual multi-head self-attention over the clip: local, then global context.

    y = c + Dropout(SelfAttention(LayerNorm(c))) with c = ConvBlock(x). The convolution gives the
    attention each frame's position relative to its neighbours (no position encoding), and the
    attention reads only each clip's valid frames. About 8 d^2 weights, so width 192 matches a
    GRU block's at 256; unlike the GRU, every frame is computed at once.
    """

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        if d_model % ATTENTION_HEADS:
            raise ValueError(f"an attention block's width must divide by {ATTENTION_HEADS}, got {d_model}")
        self.conv = ConvBlock(d_model, kernel_size, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, ATTENTION_HEADS, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        local = self.conv(x, lengths)
        normed = self.norm(local)
        attended, _ = self.attention(normed, normed, normed, need_weights=False,
                                     key_padding_mask=~padding_mask(lengths, x.shape[1]))
        return zero_padding(local + self.dropout(attended), lengths)


def build_block(config: ModelConfig, width: int) -> nn.Module:
    """A new temporal block of `config.block` kind and `width` features per frame."""
    if config.block == "conv":
        return ConvBlock(width, config.kernel_size, config.dropout)
    if config.block == "attention":
        return AttentionBlock(width, config.kernel_size, config.dropout)
    return RecurrentBlock(width, config.dropout, config.block)


def build_stack(config: ModelConfig, width: int) -> nn.ModuleList:
    """`config.levels` new blocks of `width`: one stream, or the shared layers of DMF."""
    return nn.ModuleList(build_block(config, width) for _ in range(config.levels))
