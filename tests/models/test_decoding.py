"""Greedy and beam-search CTC decoding, lexicon and language model, and word timings."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from models.decoding import (
    SEGMENT_FRAMES,
    SPACE,
    Decoder,
    DecodingOptions,
    greedy_decode,
    path_text,
    segments,
    word_spans,
)
from models.lm import build_lm, lexicon_path
from models.tokenizer import BLANK, VOCAB_SIZE, encode

CONFIDENT = 0.9  # posterior of the intended class at every frame of the synthetic logits
STRONG_LM = 2.0  # an LM weight that outweighs 10 % more acoustic probability, whatever the default
SENTENCES = ["bin blue at f two now", "lay red by g nine again", "place white in l one soon",
             "set green with u six please", "bin red at f nine soon"]


def logits(text: str, frames_per_character: int = 2, blanks_between: int = 1, lead: int = 3) -> torch.Tensor:
    """(T, VOCAB_SIZE) log-probabilities that spell `text`: each character for a few frames, blanks
    between them and `lead` blank frames at both ends, every frame CONFIDENT of its class."""
    path = [BLANK] * lead
    for label in encode(text):
        path += [label] * frames_per_character + [BLANK] * blanks_between
    path += [BLANK] * lead
    probs = torch.full((len(path), VOCAB_SIZE), (1 - CONFIDENT) / (VOCAB_SIZE - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = CONFIDENT
    return probs.log()


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> Path:
    """A trigram model of SENTENCES, with its lexicon beside it."""
    arpa = tmp_path_factory.mktemp("lm") / "grid.arpa"
    build_lm(SENTENCES, arpa)
    return arpa


@pytest.fixture(scope="module")
def decoders(lm: Path) -> dict[str, Decoder]:
    return {
        "greedy": Decoder(),
        "beam": Decoder(DecodingOptions(beam_size=8)),
        "lexicon": Decoder(DecodingOptions(beam_size=8, lexicon=lexicon_path(lm))),
        "lm": Decoder(DecodingOptions(beam_size=8, lexicon=lexicon_path(lm), lm=lm)),
    }


@pytest.mark.parametrize("text", ["bin blue at f two now", "set green with u six please", "f"])
def test_greedy_and_beam_search_agree_on_confident_logits(decoders, text: str) -> None:
    log_probs = logits(text)
    results = {name: decoder(log_probs) for name, decoder in decoders.items()}
    assert {name: result.text for name, result in results.items()} == dict.fromkeys(decoders, text)
    # the same alignment: the forced one of beam search is the argmax path here
    assert len({tuple(result.words) for result in results.values()}) == 1


def test_the_lexicon_keeps_out_of_vocabulary_words_out(decoders) -> None:
    log_probs = logits("bin blux at f two now")  # "blux" is no word of the lexicon
    assert "blux" in decoders["beam"](log_probs).text.split()
    for name in ("lexicon", "lm"):
        words = decoders[name](log_probs).text.split()
        assert "blux" not in words
        assert set(words) <= {word for sentence in SENTENCES for word in sentence.split()}


def test_the_language_model_overrules_weak_acoustic_evidence(decoders, lm: Path) -> None:
    """Frames a little surer of "lay blue by" than of "lay red by": only the latter is in the LM's data."""
    blue, red = logits("lay blue by"), logits("lay red by")
    red = torch.cat([red[:16], red[15:16].expand(len(blue) - len(red), -1), red[16:]])  # "red" lasts longer
    mixed = torch.logsumexp(torch.stack([blue + torch.tensor(0.55).log(), red + torch.tensor(0.45).log()]), 0)
    assert decoders["lexicon"](mixed).text == "lay blue by"
    heeded = Decoder(DecodingOptions(beam_size=8, lexicon=lexicon_path(lm), lm=lm, lm_weight=STRONG_LM))
    assert heeded(mixed).text == "lay red by"


def test_word_timings_are_monotone_inside_the_clip_and_spell_the_text(decoders) -> None:
    log_probs = logits("place white in l one soon", frames_per_character=3, blanks_between=2)
    for decoder in decoders.values():
        result = decoder(log_probs)
        assert " ".join(span.word for span in result.words) == result.text
        bounds = [bound for span in result.words for bound in (span.start, span.end)]
        assert bounds == sorted(bounds) and bounds[0] >= 0 and bounds[-1] <= len(log_probs)
        assert all(span.end > span.start for span in result.words)
        assert all(CONFIDENT - 1e-4 < span.confidence <= 1 for span in result.words)


def test_word_spans_frames_and_confidence() -> None:
    b, i, n, a = (encode(c)[0] for c in "bina")
    path = torch.tensor([BLANK, b, b, BLANK, i, n, n, BLANK, SPACE, SPACE, a, BLANK])
    probs = torch.full((len(path), VOCAB_SIZE), 0.01)
    probs[torch.arange(len(path)), path] = torch.linspace(0.5, 0.9, len(path))
    spans = word_spans(path, probs.log())
    assert [(span.word, span.start, span.end) for span in spans] == [("bin", 1, 7), ("a", 10, 11)]
    expected = probs[torch.arange(1, 7), path[1:7]].mean().item()
    assert spans[0].confidence == pytest.approx(expected)
    assert path_text(path) == "bin a"


def test_greedy_decode_is_the_greedy_decoder_per_clip(decoders) -> None:
    batch = torch.nn.utils.rnn.pad_sequence([logits("lay red"), logits("set")], batch_first=True)
    lengths = torch.tensor([len(logits("lay red")), len(logits("set"))])
    assert greedy_decode(batch, lengths) == ["lay red", "set"]


def test_empty_transcripts_have_no_words(decoders) -> None:
    silence = logits("")
    for decoder in decoders.values():
        result = decoder(silence)
        assert (result.text, result.words) == ("", [])


def test_options_that_cannot_work_are_refused(lm: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DecodingOptions(beam_size=0)
    with pytest.raises(ValueError, match="needs beam search"):
        DecodingOptions(beam_size=1, lexicon=lexicon_path(lm))
    with pytest.raises(ValueError, match="needs the lexicon"):
        DecodingOptions(beam_size=4, lm=lm)


def test_long_recordings_are_searched_in_segments_cut_in_pauses(decoders) -> None:
    text = " ".join(SENTENCES * 8)  # 40 sentences, ~3000 frames
    log_probs = logits(text)
    spans = segments(log_probs)
    assert spans[0][0] == 0 and spans[-1][1] == len(log_probs) and len(spans) > 3
    assert all(end == next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    assert all(end - start <= SEGMENT_FRAMES for start, end in spans)
    pauses = log_probs.argmax(dim=-1)
    assert all(pauses[end - 1] in (BLANK, SPACE) and pauses[end] in (BLANK, SPACE) for _, end in spans[:-1])
    for name in ("beam", "lm"):
        result = decoders[name](log_probs)
        assert result.text == text
        greedy = decoders["greedy"](log_probs)
        assert [span.start for span in result.words] == [span.start for span in greedy.words]


@pytest.mark.parametrize("name", ["greedy", "beam"])
def test_no_word_crosses_a_break(decoders, name: str) -> None:
    """Two words heard with no space between them (as at a cut between sentences) stay two
    words when a break falls between them, with their frames where they were."""
    first, second = logits("set"), logits("bin")
    joined = torch.cat([first[: len(first) - 1], second])  # no blank or space at the junction
    decoder = decoders[name]
    assert decoder(joined).text == "setbin"
    split = decoder(joined, [len(first) - 1])
    assert split.text == "set bin"
    assert split.words[0].end <= len(first) - 1 <= split.words[1].start
