"""The networks: output shapes and lengths, padding independence, which heads run, gradients."""

from __future__ import annotations

import pytest
import torch

from models.config import AUDIO_STEMS, BLOCKS, FUSION_KINDS, KINDS, ModelConfig, supported_modalities
from models.dmf import INTERMEDIATE, build_model
from models.loss import ctc_loss
from models.tokenizer import VOCAB_SIZE
from tests.models.helpers import random_inputs, tiny_config

KIND_BLOCKS = [(kind, block) for kind in KINDS for block in BLOCKS]


@pytest.mark.parametrize(("kind", "block"), KIND_BLOCKS)
@pytest.mark.parametrize("lengths", [[7], [9, 5]])
def test_one_output_step_per_video_frame(kind: str, block: str, lengths: list[int]) -> None:
    model = build_model(tiny_config(kind=kind, block=block)).eval()
    audio, video, lengths_t = random_inputs(lengths)
    with torch.no_grad():
        out = model(audio, video, lengths_t)
    assert tuple(out) == supported_modalities(kind)
    for log_probs in out.values():
        assert log_probs.shape == (len(lengths), max(lengths), VOCAB_SIZE)
        assert torch.allclose(log_probs.exp().sum(-1), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize(("kind", "block"), KIND_BLOCKS)
def test_padding_does_not_change_a_clip(kind: str, block: str) -> None:
    """The short clip of a batch gives the same outputs alone, though its padding is noise."""
    model = build_model(tiny_config(kind=kind, block=block)).eval()
    audio, video, lengths = random_inputs([9, 5])
    with torch.no_grad():
        batch = model(audio, video, lengths)
        alone = model(audio[1:, : 5 * 4], video[1:, :5], lengths[1:])
    for name, log_probs in alone.items():
        torch.testing.assert_close(batch[name][1, :5], log_probs[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stem", AUDIO_STEMS)
def test_each_audio_stem_gives_a_step_per_frame_whatever_the_padding(stem: str) -> None:
    """Both audio front ends map 4 log-mel frames to one step, trained by the fused loss."""
    model = build_model(tiny_config(kind="dmf", audio_stem=stem))
    audio, video, lengths = random_inputs([9, 5])
    model.eval()
    with torch.no_grad():
        batch = model(audio, video, lengths)
        alone = model(audio[1:, : 5 * 4], video[1:, :5], lengths[1:])
    assert batch["audio"].shape == (2, 9, VOCAB_SIZE)
    torch.testing.assert_close(batch["audio"][1, :5], alone["audio"][0], atol=1e-5, rtol=1e-4)
    model.train()
    targets = torch.tensor([[3, 4, 5], [6, 7, 0]])
    ctc_loss(model(audio, video, lengths)["av"], lengths, targets, torch.tensor([3, 2])).backward()
    for name, parameter in model.audio_frontend.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_unknown_audio_stem_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown audio stem"):
        ModelConfig(audio_stem="conv3d")


def test_attention_width_must_split_into_its_heads() -> None:
    with pytest.raises(ValueError, match="divide by 4, got 34"):
        build_model(tiny_config(block="attention", d_model=34))


def test_missing_stream_leaves_out_the_heads_that_need_it() -> None:
    model = build_model(tiny_config()).eval()
    audio, video, lengths = random_inputs([6, 4])
    with torch.no_grad():
        audio_only = model(audio, None, lengths)
        video_only = model(None, video, lengths)
        both = model(audio, video, lengths)
    assert set(audio_only) == {"audio"} and set(video_only) == {"video"}
    # The streams do not depend on each other: only the shared layers mix them.
    torch.testing.assert_close(audio_only["audio"], both["audio"])
    torch.testing.assert_close(video_only["video"], both["video"])


def test_audio_sets_the_length_without_video() -> None:
    """Without video, T is the log-mel frames / 4 rounded up (the last step zero-padded)."""
    model = build_model(tiny_config(kind="audio")).eval()
    audio, _, _ = random_inputs([6])
    out = model(audio[:, :-2], None, torch.tensor([6]))
    assert out["audio"].shape == (1, 6, VOCAB_SIZE)


def test_fusion_needs_both_streams() -> None:
    model = build_model(tiny_config(kind="early"))
    audio, _, lengths = random_inputs([5])
    with pytest.raises(ValueError, match="needs audio and video"):
        model(audio, None, lengths)


def test_wrong_crop_size_is_refused() -> None:
    model = build_model(tiny_config(kind="video"))
    with pytest.raises(ValueError, match="16x16"):
        model(None, torch.rand(1, 5, 20, 20), torch.tensor([5]))


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("widths", [(0, 0), (24, 16)])
def test_fused_loss_reaches_every_level_and_both_streams(block: str, widths: tuple[int, int]) -> None:
    """The "av" loss alone trains front ends, streams, every fusion input and shared block,
    whether the streams have the shared stream's width or their own."""
    config = tiny_config(block=block, audio_width=widths[0], video_width=widths[1])
    model = build_model(config).train()
    audio, video, lengths = random_inputs([9, 5])
    targets = torch.tensor([[3, 4, 5], [6, 7, 0]])
    ctc_loss(model(audio, video, lengths)["av"], lengths, targets, torch.tensor([3, 2])).backward()
    for name, parameter in model.named_parameters():
        if name.startswith(("heads.audio.", "heads.video.")):
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # Wa_l, Wv_l and (above level 1) Ws_l are column blocks of one fusion matrix each.
    streams = [config.width("audio"), config.width("video")]
    for level, fusion in enumerate(model.fusions):
        inputs = streams if level == 0 else [*streams, config.d_model]
        blocks = fusion.proj.weight.grad.split(inputs, dim=1)
        assert fusion.proj.weight.shape == (config.d_model, sum(inputs))
        assert all(block_grad.abs().sum() > 0 for block_grad in blocks), level


@pytest.mark.parametrize("kind", FUSION_KINDS)
def test_streams_of_their_own_width_give_every_head_a_step_per_frame(kind: str) -> None:
    """A fusion model's audio and visual streams may be wider or narrower than the shared one."""
    model = build_model(tiny_config(kind=kind, audio_width=40, video_width=16)).eval()
    audio, video, lengths = random_inputs([9, 5])
    with torch.no_grad():
        batch = model(audio, video, lengths)
        alone = model(audio[1:, : 5 * 4], video[1:, :5], lengths[1:])
    assert tuple(batch) == supported_modalities(kind)
    for name, log_probs in alone.items():
        assert batch[name].shape == (2, 9, VOCAB_SIZE)
        torch.testing.assert_close(batch[name][1, :5], log_probs[0], atol=1e-5, rtol=1e-4)
    assert model.audio_frontend.convs[-1].out_channels == 40
    assert model.video_frontend.trunk[-1].out_features == 16
    assert {head.proj.in_features for head in model.heads.values()} <= {32, 40, 16}


def test_stream_widths_are_for_fusion_models_and_even() -> None:
    assert tiny_config().width("audio") == tiny_config().width("video") == 32  # 0: d_model
    with pytest.raises(ValueError, match="audio model has one stream"):
        tiny_config(kind="audio", audio_width=48)
    with pytest.raises(ValueError, match="video_width must be even"):
        tiny_config(video_width=17)
    with pytest.raises(ValueError, match="audio_width must be even .* got -16"):
        tiny_config(audio_width=-16)
    config = tiny_config(audio_width=48)
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_intermediate_ctc_reads_the_middle_shared_layer_with_the_fused_head() -> None:
    """INTERMEDIATE is the "av" head on s_{L/2}: its loss trains the levels up to it, not above."""
    model = build_model(tiny_config(levels=4)).train()
    audio, video, lengths = random_inputs([9, 5])
    out = model(audio, video, lengths, intermediate=True)
    assert set(out) == {"av", "audio", "video", INTERMEDIATE}
    assert out[INTERMEDIATE].shape == out["av"].shape
    assert not torch.allclose(out[INTERMEDIATE], out["av"])
    targets = torch.tensor([[3, 4, 5], [6, 7, 0]])
    ctc_loss(out[INTERMEDIATE], lengths, targets, torch.tensor([3, 2])).backward()
    trained = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert {"shared_blocks.1.norm.weight", "fusions.1.proj.weight", "heads.av.proj.weight"} <= trained
    assert not any(name.startswith(("shared_blocks.2.", "fusions.2.", "fusions.3.")) for name in trained)
    with torch.no_grad():
        assert INTERMEDIATE not in model(audio, video, lengths)  # off unless asked for
        assert INTERMEDIATE not in model(audio, None, lengths, intermediate=True)  # no fused stream


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_weights_are_named_after_their_cell(cell: str) -> None:
    """Checkpoints name a block's recurrent weights by its cell ("...gru.weight_ih_l0"), as bundled."""
    names = list(build_model(tiny_config(block=cell)).state_dict())
    other = {"gru": "lstm", "lstm": "gru"}[cell]
    assert any(name.endswith(f".{cell}.weight_ih_l0") for name in names)
    assert not any(f".{other}." in name for name in names)
