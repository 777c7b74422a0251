"""Word voting among the transcripts of several models of one recording (ROVER; Fiscus, 1997).

Models trained apart put CTC's character spikes on different frames, so averaging their
frame posteriors drops and doubles letters; their words agree instead. Each member's words are
aligned to the others' by edit distance into slots, one word (or none) per member each, and
every slot takes the word most members put there, ties going to the surer word. A word absent
from a member is a vote for no word there. Members' words are aligned within stretches of the
recording no member speaks across for `GAP_FRAMES`, of at most `MAX_STRETCH_FRAMES`, which keeps
an hour's alignment as cheap as a clip's.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import takewhile

from torch import Tensor

from models.decoding import Decoder, Hypothesis, WordSpan

GAP_FRAMES = 3  # outputs (120 ms at 25 per second) free of every member's words that part two stretches
# Stretches longer than this (10 s) are cut, so an hour of unbroken speech aligns in bounded time.
MAX_STRETCH_FRAMES = 250
NULL_CONFIDENCE = 0.5  # how sure a member with no word in a slot counts as, to break a tie

Slot = dict[str | None, list[WordSpan | None]]  # each word put there (None: no word) -> its members' spans


def decoded(decoder: Decoder, log_probs: Tensor, breaks: Sequence[int] = ()) -> Hypothesis:
    """`decoder`'s hypothesis of one model's (T, VOCAB_SIZE) log-probabilities, or the words an
    ensemble's members' hypotheses vote for, from their (members, T, VOCAB_SIZE) ones."""
    if log_probs.dim() == 2:
        return decoder(log_probs, breaks)
    return vote([decoder(member, breaks) for member in log_probs])


def vote(hypotheses: Sequence[Hypothesis]) -> Hypothesis:
    """The words most of `hypotheses` agree on, each timed as its surest member has it."""
    if not hypotheses:
        raise ValueError("voting needs at least one hypothesis")
    words = []
    for stretch in stretches([hypothesis.words for hypothesis in hypotheses]):
        slots: list[Slot] = []
        for member, spans in enumerate(stretch):
            slots = align(slots, spans, member)
        words += [span for span in map(winner, slots) if span is not None]
    return Hypothesis(" ".join(span.word for span in words), words)


def stretches(members: Sequence[Sequence[WordSpan]]) -> list[list[list[WordSpan]]]:
    """Each member's words, in stretches of the recording parted by `GAP_FRAMES` without any, and
    those longer than `MAX_STRETCH_FRAMES` cut where the fewest words cross (see `_cut`)."""
    spans = sorted(((span, member) for member, words in enumerate(members) for span in words),
                   key=lambda item: (item[0].start, item[0].end, item[1]))
    groups: list[list[tuple[WordSpan, int]]] = []
    end = None
    for span, member in spans:
        if end is None or span.start >= end + GAP_FRAMES:
            groups.append([])
            end = span.end
        end = max(end, span.end)
        groups[-1].append((span, member))
    result = []
    for group in groups:
        for part in _cut(group):
            by_member: list[list[WordSpan]] = [[] for _ in members]
            for span, member in part:
                by_member[member].append(span)
            result.append(by_member)
    return result


def _cut(group: list[tuple[WordSpan, int]]) -> list[list[tuple[WordSpan, int]]]:
    """`group` (sorted by start) in parts of at most `MAX_STRETCH_FRAMES`, each cut at the frame
    of its second half the fewest words cover; a word goes to the side of its middle."""
    parts = []
    while max(span.end for span, _ in group) - (start := group[0][0].start) > MAX_STRETCH_FRAMES:
        near = list(takewhile(lambda item: item[0].start < start + MAX_STRETCH_FRAMES, group))
        frames = range(start + MAX_STRETCH_FRAMES // 2, start + MAX_STRETCH_FRAMES)
        cut = min(frames, key=lambda frame: sum(span.start <= frame < span.end for span, _ in near))
        before = [item for item in group if item[0].start + item[0].end < 2 * cut]
        if len(before) in (0, len(group)):
            break
        parts.append(before)
        group = [item for item in group if item[0].start + item[0].end >= 2 * cut]
    return [*parts, group]


def align(slots: list[Slot], spans: Sequence[WordSpan], member: int) -> list[Slot]:
    """`slots` with member number `member`'s `spans` added, in the alignment of fewest edits: a
    span joins a slot holding its word at no cost, or another slot, or a slot of its own, at one."""
    rows, columns = len(slots) + 1, len(spans) + 1
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(columns)] for i in range(rows)]
    for i in range(1, rows):
        for j in range(1, columns):
            cost[i][j] = min(cost[i - 1][j - 1] + _differs(slots[i - 1], spans[j - 1]),
                             cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    i, j, aligned = rows - 1, columns - 1, []
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + _differs(slots[i - 1], spans[j - 1]):
            aligned.append(_with(slots[i - 1], spans[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            aligned.append(_with(slots[i - 1], None))  # this member says nothing here
            i -= 1
        else:
            aligned.append(_new_slot(spans[j - 1], member))
            j -= 1
    return aligned[::-1]


def winner(slot: Slot) -> WordSpan | None:
    """The slot's word with the most members (ties: the higher mean confidence), as its surest
    member timed it; None where most members say nothing."""
    def support(item: tuple[str | None, list[WordSpan | None]]) -> tuple[int, float]:
        spans = item[1]
        sureness = [NULL_CONFIDENCE if span is None else span.confidence for span in spans]
        return len(spans), sum(sureness) / len(sureness)

    word, spans = max(slot.items(), key=support)
    if word is None:
        return None
    return max(spans, key=lambda span: span.confidence)


def _differs(slot: Slot, span: WordSpan) -> int:
    return 0 if span.word in slot else 1


def _new_slot(span: WordSpan, member: int) -> Slot:
    """A slot for `span` alone, which the `member` members aligned before left empty."""
    return ({None: [None] * member} if member else {}) | {span.word: [span]}


def _with(slot: Slot, span: WordSpan | None) -> Slot:
    key = None if span is None else span.word
    return slot | {key: [*slot.get(key, []), span]}
