"""Word n-gram language models for beam search: estimated from transcripts, written as ARPA.

The estimate is interpolated Kneser-Ney with one discount per order (Chen and Goodman, 1998),
the model KenLM's `lmplz` and SRILM's `-kndiscount -interpolate` build: every order mixes its
discounted counts with the next lower order, and the lowest with a uniform distribution, so
any word sequence, even one never seen, gets a probability. Lower orders count how many
different words precede an n-gram rather than how often it occurs (n-grams that start a
sentence keep their counts), which favours words that end many contexts over words frequent
in few. Because the interpolation weight of a context is exactly the ARPA back-off weight,
the model is written as a standard ARPA file that KenLM (in flashlight's decoder) reads.

A lexicon file goes with it: each word and its spelling in the acoustic model's characters,
with the word boundary (our space, flashlight's `|`) at its end; see `models.decoding`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data.manifest import atomic_write
from models.tokenizer import normalize

SENTENCE_START, SENTENCE_END, UNKNOWN = "<s>", "</s>", "<unk>"
DEFAULT_ORDER = 3  # trigrams: with GRID's six-slot grammar, two words of context name the slot
MIN_ORDER = 2  # KenLM reads bigram models and longer
FALLBACK_DISCOUNT = 0.5  # used when an order's counts cannot estimate n1 / (n1 + 2 n2)
NEVER_LOG10 = -99.0  # ARPA's log10 probability of <s>, which starts sentences but is never predicted
WORD_BOUNDARY = "|"  # the token that ends every spelling: our space class in flashlight's terms
LEXICON_SUFFIX = ".lexicon.txt"  # LM.arpa comes with LM.lexicon.txt

NGram = tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    """One ARPA line: an n-gram's log10 probability, and its log10 back-off weight as a context."""

    log10_prob: float
    log10_backoff: float | None  # None: not a context of any longer n-gram (or the top order)


def sentences_of(transcripts: Iterable[str]) -> list[list[str]]:
    """The words of each transcript, normalised as the acoustic models read text; empty ones dropped."""
    return [words for words in (normalize(text).split() for text in transcripts) if words]


def estimate(sentences: Sequence[Sequence[str]], order: int = DEFAULT_ORDER) -> list[dict[NGram, Entry]]:
    """An interpolated Kneser-Ney model of `sentences` (lists of words): the ARPA entries per order.

    Entry `k - 1` of the result maps each k-gram to its probability given its first k - 1
    words (interpolated with the lower orders) and its back-off weight. The vocabulary is the
    words seen, </s> and <unk>; <unk> gets only the share the uniform distribution gives it.
    """
    if order < MIN_ORDER:
        raise ValueError(f"KenLM needs an n-gram order of at least {MIN_ORDER}, got {order}")
    if not sentences:
        raise ValueError("no sentences to estimate a language model from")
    counts = _counts(sentences, order)
    vocabulary = {word for (word,) in counts[0]} | {UNKNOWN}  # </s> included, <s> never predicted
    probs: list[dict[NGram, float]] = []
    gammas: list[dict[NGram, float]] = []
    for k, level in enumerate(counts, start=1):
        predicted = {gram: count for gram, count in level.items() if gram != (SENTENCE_START,)}
        discount = _discount(predicted.values())
        totals: dict[NGram, float] = defaultdict(float)
        types: Counter[NGram] = Counter()
        for gram, count in predicted.items():
            totals[gram[:-1]] += count
            types[gram[:-1]] += 1
        gamma = {context: discount * types[context] / total for context, total in totals.items()}
        level_probs = {}
        for gram in sorted(predicted.keys() | ({(UNKNOWN,)} if k == 1 else set())):
            context = gram[:-1]
            lower = 1 / len(vocabulary) if k == 1 else probs[-1][gram[1:]]
            seen = max(predicted.get(gram, 0) - discount, 0) / totals[context]
            level_probs[gram] = seen + gamma[context] * lower
        probs.append(level_probs)
        gammas.append(gamma)

    model = []
    for k, level_probs in enumerate(probs):
        backoffs = gammas[k + 1] if k + 1 < order else {}
        level = {gram: Entry(math.log10(p), _log10(backoffs.get(gram))) for gram, p in level_probs.items()}
        if k == 0:
            level[(SENTENCE_START,)] = Entry(NEVER_LOG10, _log10(backoffs.get((SENTENCE_START,))))
        model.append(dict(sorted(level.items())))
    return model


def _counts(sentences: Sequence[Sequence[str]], order: int) -> list[Counter[NGram]]:
    """Kneser-Ney's adjusted counts per order: raw counts for the top order and for n-grams
    that start with <s>; for the others, the number of distinct words seen before them."""
    raw: Counter[NGram] = Counter()
    for words in sentences:
        padded = (SENTENCE_START, *words, SENTENCE_END)
        for end in range(1, len(padded)):  # every n-gram that ends in a predicted word
            raw.update(padded[start : end + 1] for start in range(max(0, end - order + 1), end + 1))
    top = Counter({gram: count for gram, count in raw.items() if len(gram) == order})
    counts = [top]
    for k in range(order - 1, 0, -1):
        left: Counter[NGram] = Counter(gram[1:] for gram in counts[0])  # distinct left neighbours
        level = Counter({gram: count for gram, count in raw.items()
                         if len(gram) == k and gram[0] == SENTENCE_START})
        level.update({gram: n for gram, n in left.items() if gram[0] != SENTENCE_START})
        counts.insert(0, level)
    return counts


def _discount(counts: Iterable[int]) -> float:
    """The absolute discount D = n1 / (n1 + 2 n2) of one order, from its counts of counts."""
    of_counts = Counter(counts)
    n1, n2 = of_counts[1], of_counts[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else FALLBACK_DISCOUNT


def _log10(value: float | None) -> float | None:
    return None if value is None else math.log10(value)


def arpa_text(model: Sequence[dict[NGram, Entry]]) -> str:
    """`model` (as `estimate` returns it) in the ARPA format."""
    lines = ["\\data\\", *(f"ngram {k}={len(level)}" for k, level in enumerate(model, start=1)), ""]
    for k, level in enumerate(model, start=1):
        lines.append(f"\\{k}-grams:")
        for gram, entry in level.items():
            fields = [f"{entry.log10_prob:.6f}", " ".join(gram)]
            if entry.log10_backoff is not None:
                fields.append(f"{entry.log10_backoff:.6f}")
            lines.append("\t".join(fields))
        lines.append("")
    lines.append("\\end\\")
    return "\n".join(lines) + "\n"


def lexicon_path(arpa: str | Path) -> Path:
    """The lexicon that goes with the ARPA file `arpa`: LM.arpa -> LM.lexicon.txt beside it."""
    return Path(arpa).with_suffix(LEXICON_SUFFIX)


def spelling(word: str) -> str:
    """A lexicon line's spelling: the word's characters and the word boundary, space-separated."""
    return " ".join([*word, WORD_BOUNDARY])


def read_lexicon(path: str | Path) -> list[str]:
    """The words a lexicon file spells, in file order."""
    return [line.split()[0] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def build_lm(transcripts: Iterable[str], arpa: str | Path, order: int = DEFAULT_ORDER) -> list[str]:
    """Estimate a model of `transcripts`, write it to `arpa` and its lexicon beside it; the words.

    Both files are written atomically. The lexicon lists every word of the transcripts once.
    """
    sentences = sentences_of(transcripts)
    model = estimate(sentences, order)
    words = sorted({word for words in sentences for word in words})
    with atomic_write(arpa, "w") as handle:
        handle.write(arpa_text(model))
    with atomic_write(lexicon_path(arpa), "w") as handle:
        handle.write("".join(f"{word}\t{spelling(word)}\n" for word in words))
    return words
