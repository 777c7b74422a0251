"""Word voting among an ensemble's transcripts: majorities, ties, timing and long recordings."""

from __future__ import annotations

import pytest
import torch

from models.decoding import Decoder, Hypothesis, WordSpan
from models.voting import GAP_FRAMES, MAX_STRETCH_FRAMES, NULL_CONFIDENCE, decoded, stretches, vote
from tests.models.test_decoding import logits


def hypothesis(*words: tuple[str, int, float]) -> Hypothesis:
    """Words each starting at a frame and lasting 2, with a confidence."""
    spans = [WordSpan(word, start, start + 2, confidence) for word, start, confidence in words]
    return Hypothesis(" ".join(word for word, _, _ in words), spans)


def test_the_majority_word_wins_each_place() -> None:
    decoder = Decoder()
    texts = ("bin blue at f two now", "bin blue at e two now", "bin blue at f two", "bin blue in f two now")
    members = [decoder(logits(text)) for text in texts]
    assert vote(members).text == "bin blue at f two now"


def test_a_word_most_members_lack_is_dropped_and_one_few_lack_is_kept() -> None:
    decoder = Decoder()
    members = [decoder(logits(text)) for text in ("set red now", "set red now soon", "set now")]
    assert vote(members).text == "set red now"


def test_a_tie_goes_to_the_surer_word_and_its_timing() -> None:
    unsure = hypothesis(("bin", 0, 0.9), ("a", 10, 0.6))
    sure = hypothesis(("bin", 1, 0.95), ("e", 11, 0.8))
    voted = vote([unsure, sure])
    assert voted.text == "bin e"
    assert voted.words == [sure.words[0], sure.words[1]]  # each word timed as its surest member has it
    assert vote([sure, unsure]) == voted  # whatever the members' order
    # A word against no word: the word wins when it is surer than NULL_CONFIDENCE.
    assert vote([hypothesis(("bin", 0, 0.9)), hypothesis()]).text == "bin"
    assert vote([hypothesis(("bin", 0, NULL_CONFIDENCE / 2)), hypothesis()]).text == ""


def test_one_member_is_its_own_transcript() -> None:
    alone = Decoder()(logits("lay green by q one again"))
    assert vote([alone]) == alone
    with pytest.raises(ValueError, match="at least one"):
        vote([])


def test_words_apart_in_time_are_aligned_apart() -> None:
    """Two stretches parted by silence: a word one member put late cannot pair with an early one."""
    first = hypothesis(("bin", 0, 0.9), ("now", 50, 0.9))
    second = hypothesis(("bin", 1, 0.9))
    third = hypothesis(("now", 51, 0.9))
    assert len(stretches([first.words, second.words, third.words])) == 2
    assert vote([first, second, third]).text == "bin now"
    near = hypothesis(("bin", 2 + GAP_FRAMES - 1, 0.9))  # within GAP_FRAMES of "bin" ending at 2
    assert len(stretches([hypothesis(("bin", 0, 0.9)).words, near.words])) == 1


def test_an_hour_of_unbroken_speech_is_cut_into_short_stretches() -> None:
    """Words 2 frames apart (fewer than GAP_FRAMES) for 6 minutes: cut between words, every word kept."""
    spaced = [(word, 4 * index, 0.9) for index, word in enumerate(["bin", "blue"] * 2000)]
    members = [hypothesis(*spaced), hypothesis(*spaced[1:]), hypothesis(*spaced[:-1])]
    parts = stretches([member.words for member in members])
    assert len(parts) > 1
    for part in parts:
        spans = [span for words in part for span in words]
        assert max(span.end for span in spans) - min(span.start for span in spans) <= MAX_STRETCH_FRAMES
    assert vote(members).text == " ".join(word for word, _, _ in spaced)


def test_decoded_votes_across_a_members_axis() -> None:
    decoder = Decoder()
    texts = ("place white in l one soon", "place white in l nine soon", "place white at l one soon")
    frames = max(len(logits(text)) for text in texts)
    stacked = torch.stack([torch.cat([logits(text), logits("")[:1].expand(frames - len(logits(text)), -1)])
                           for text in texts])
    assert decoded(decoder, stacked).text == "place white in l one soon"
    assert decoded(decoder, stacked[1]) == decoder(stacked[1])
    with pytest.raises(ValueError, match="models.voting.decoded"):
        decoder(stacked)
