"""Word n-gram models: Kneser-Ney estimates, ARPA files KenLM reads, lexicons and `avsr lm build`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import create_word_dict, load_words

from avsr.cli import main
from data.manifest import Utterance, write_manifest
from models.lm import (
    NEVER_LOG10,
    SENTENCE_END,
    SENTENCE_START,
    UNKNOWN,
    build_lm,
    estimate,
    lexicon_path,
    read_lexicon,
    sentences_of,
)
from preprocessing.native import native_stderr_silenced

CORPUS = ["bin blue at f two now", "bin red at f two soon", "lay blue by g nine now",
          "Set GREEN with u, six please!", "bin blue at f two again", ""]


def kenlm(arpa: Path) -> tuple[KenLM, object]:
    """The model as flashlight's decoder loads it, and its word dictionary."""
    words = create_word_dict(load_words(str(lexicon_path(arpa))))
    with native_stderr_silenced():
        return KenLM(str(arpa), words), words


def test_sentences_are_normalised_and_empty_ones_dropped() -> None:
    assert sentences_of(CORPUS)[3] == ["set", "green", "with", "u", "six", "please"]
    assert len(sentences_of(CORPUS)) == 5


@pytest.mark.parametrize("order", [2, 3, 4])
def test_every_context_gives_a_distribution_that_kenlm_reads(tmp_path: Path, order: int) -> None:
    """From the start, after seen and unseen words: next-word probabilities sum to 1."""
    arpa = tmp_path / "lm.arpa"
    vocabulary = build_lm(CORPUS, arpa, order)
    model, words = kenlm(arpa)
    for history in ([], ["bin"], ["bin", "blue"], ["lay", "blue", "by"], ["now", "bin"], ["six", "f"]):
        state = model.start(False)
        for word in history:
            state, _ = model.score(state, words.get_index(word))
        total = sum(10 ** model.score(state, words.get_index(word))[1] for word in [*vocabulary, UNKNOWN])
        total += 10 ** model.finish(state)[1]
        assert total == pytest.approx(1, abs=1e-4), history


def test_kneser_ney_on_a_corpus_small_enough_to_check_by_hand() -> None:
    """Bigrams of "<s> a b </s>" and "<s> a c </s>", every number below worked out on paper."""
    unigrams, bigrams = estimate([["a", "b"], ["a", "c"]], order=2)
    # unigrams count the kinds of word before them: a 1 (<s>), b 1, c 1, </s> 2 (b, c); total 5,
    # discount n1 / (n1 + 2 n2) = 3 / 5, and the 4 kinds leave 3/5 * 4/5 to share over the 5
    # words a b c </s> <unk>
    d1, d2 = 3 / 5, 4 / 6  # bigram counts: <s> a 2, the four others 1
    uniform_share = d1 * 4 / 5 / 5
    assert 10 ** unigrams[("a",)].log10_prob == pytest.approx((1 - d1) / 5 + uniform_share)
    assert 10 ** unigrams[(SENTENCE_END,)].log10_prob == pytest.approx((2 - d1) / 5 + uniform_share)
    assert 10 ** unigrams[(UNKNOWN,)].log10_prob == pytest.approx(uniform_share)
    assert unigrams[(SENTENCE_START,)].log10_prob == NEVER_LOG10
    # p(b | a) = (1 - d2) / 2 + gamma(a) p(b), gamma(a) = d2 * 2 / 2: a's back-off weight
    p_b = 10 ** unigrams[("b",)].log10_prob
    assert 10 ** bigrams[("a", "b")].log10_prob == pytest.approx((1 - d2) / 2 + d2 * p_b)
    assert unigrams[("a",)].log10_backoff == pytest.approx(math.log10(d2))
    assert bigrams[("a", "b")].log10_backoff is None  # top order
    with pytest.raises(ValueError, match="at least 2"):
        estimate([["a"]], order=1)


def test_the_lexicon_spells_each_word_once_with_a_word_boundary(tmp_path: Path) -> None:
    arpa = tmp_path / "grid.arpa"
    words = build_lm(CORPUS * 2, arpa)
    assert lexicon_path(arpa) == tmp_path / "grid.lexicon.txt"
    assert read_lexicon(lexicon_path(arpa)) == words == sorted(set(words))
    assert "blue\tb l u e |" in lexicon_path(arpa).read_text().splitlines()


def test_cli_builds_from_the_training_split_only(tmp_path: Path, capsys) -> None:
    """A GRID-like manifest: s1's dev clips and every s4 clip stay out of the model."""
    rows = [Utterance(tmp_path / f"s1_{i}.mp4", f"bin blue at f {i} now", {"speaker": "s1"})
            for i in range(8)]
    rows += [Utterance(tmp_path / "s4.mp4", "lay green by zebra", {"speaker": "s4"})]
    write_manifest(tmp_path / "manifest.tsv", rows)
    arpa = tmp_path / "out" / "lm.arpa"
    # 8 s1 clips hold fewer than the 100 dev clips GRID's split draws: refused, not silently used
    assert main(["lm", "build", str(tmp_path / "manifest.tsv"), str(arpa), "--exclude-dev"]) == 1
    assert "asked for 100 dev clips" in capsys.readouterr().err

    assert main(["lm", "build", str(tmp_path / "manifest.tsv"), str(arpa), "--order", "2"]) == 0
    assert "2-gram model of 9 transcripts" in capsys.readouterr().out
    assert "zebra" in read_lexicon(lexicon_path(arpa))
