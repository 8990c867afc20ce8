"""Learning byte-pair-encoding merges: the textbook loop and its fast, incremental twin.

Lecture 1 §tokens (subword units): start from the 256 byte values, then repeatedly merge
the most frequent adjacent pair into a new token ("t"+"h" -> "th", "th"+"e" -> "the").
`train_merges_naive` recounts every pair after every merge, exactly as the lecture says;
`train_merges` gives the same merges but counts pairs once and then only updates the
words a merge touches (an index from pair to words, and a max-heap with stale entries
skipped). Deliberately left out: parallel counting, merge-frequency thresholds, dropout.
"""
from __future__ import annotations

import heapq
import sys
from collections import Counter
from typing import Iterable

# GPT-2's pre-tokenization: contractions, letter runs, digit runs and punctuation runs
# (each may carry one leading space), then whitespace. Merges never cross these pieces.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def get_pair_counts(ids: list[int], counts: dict | None = None, weight: int = 1) -> dict:
    """Count adjacent pairs, adding `weight` per occurrence into `counts` if given.

    Example:
        >>> get_pair_counts([1, 2, 3, 1, 2])
        {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, scanning left to right, by `new_id`.

    Example:
        >>> merge_pair([1, 2, 3, 1, 2], (1, 2), 4)
        [4, 3, 4]
        >>> merge_pair([5, 5, 5], (5, 5), 6)  # occurrences do not overlap
        [6, 5]
    """
    out = []
    i, n = 0, len(ids)
    first, second = pair
    while i < n:
        if ids[i] == first and i + 1 < n and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_merges_naive(words: list[list[int]], freqs: list[int], n_merges: int) -> list[tuple[int, int]]:
    """The slow, obviously-correct BPE loop: recount all pairs, merge the best, repeat.

    Args:
        words: each unique pre-token as a list of byte values (0..255).
        freqs: how often each pre-token occurs in the text.
        n_merges: how many merges to learn; merge i creates token id 256 + i.

    Returns:
        The merges as (left id, right id). The best pair has the highest count; equal
        counts go to the greater (left bytes, right bytes); the ids break any rest.
    """
    token_bytes = [bytes([b]) for b in range(256)]
    merges: list[tuple[int, int]] = []
    for new_id in range(256, 256 + n_merges):
        counts: dict = {}
        for word, freq in zip(words, freqs):
            get_pair_counts(word, counts, freq)
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], token_bytes[p[0]], token_bytes[p[1]],
                                          -p[0], -p[1]))
        words = [merge_pair(word, best, new_id) for word in words]
        merges.append(best)
        token_bytes.append(token_bytes[best[0]] + token_bytes[best[1]])
    return merges


def train_merges(words: list[list[int]], freqs: list[int], n_merges: int,
                 verbose: bool = False) -> list[tuple[int, int]]:
    """Same result as `train_merges_naive`, but each merge only revisits the words it touches."""
    words = [list(word) for word in words]
    order_keys = [_descending(bytes([b])) for b in range(256)]
    pair_counts, where = _index_pairs(words, freqs)
    heap = [_heap_entry(pair, count, order_keys) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    token_bytes = [bytes([b]) for b in range(256)]
    while len(merges) < n_merges:
        pair = _pop_best(heap, pair_counts)
        if pair is None:
            break  # no pair left anywhere: the text allows no more merges
        new_id = 256 + len(merges)
        merges.append(pair)
        token_bytes.append(token_bytes[pair[0]] + token_bytes[pair[1]])
        order_keys.append(_descending(token_bytes[-1]))
        for changed in _apply_merge(pair, new_id, words, freqs, pair_counts, where):
            heapq.heappush(heap, _heap_entry(changed, pair_counts[changed], order_keys))
        if verbose and (len(merges) % 500 == 0 or len(merges) == n_merges):
            print(f"merge {len(merges)}/{n_merges}: {token_bytes[pair[0]]!r} + "
                  f"{token_bytes[pair[1]]!r}", file=sys.stderr)
    return merges


def count_words(pretokens: Iterable[str]) -> tuple[list[list[int]], list[int]]:
    """Unique pre-tokens as byte lists, with their counts.

    Example:
        >>> count_words(['hi', ' hi', 'hi'])
        ([[104, 105], [32, 104, 105]], [2, 1])
    """
    counts = Counter(pretokens)
    words = [list(text.encode("utf-8")) for text in counts]
    return words, list(counts.values())


# ----- the incremental machinery ---------------------------------------------------
def _descending(token: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in reverse order, so a min-heap pops the greatest.

    Negating each byte reverses the order where two strings differ; the final 1 sorts
    above every negated byte, so a prefix ('a') comes after its extensions ('ab').
    """
    return tuple(-b for b in token) + (1,)


def _heap_entry(pair: tuple[int, int], count: int, order_keys: list) -> tuple:
    # heapq is a min-heap: the smallest entry is the highest count, then the greatest bytes.
    return (-count, order_keys[pair[0]], order_keys[pair[1]], pair)


def _pop_best(heap: list, pair_counts: dict) -> tuple[int, int] | None:
    """Pop entries until one still matches the live count (older entries are stale)."""
    while heap:
        neg_count, _, _, pair = heapq.heappop(heap)
        if pair_counts.get(pair) == -neg_count:
            return pair
    return None


def _index_pairs(words: list[list[int]], freqs: list[int]) -> tuple[dict, dict]:
    """Weighted pair counts, and for each pair the set of word indices that contain it."""
    pair_counts: dict = {}
    where: dict = {}
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + freq
            where.setdefault(pair, set()).add(index)
    return pair_counts, where


def _apply_merge(pair, new_id, words, freqs, pair_counts, where) -> set:
    """Merge `pair` in every word that holds it; update counts and index; return changed pairs."""
    changed = set()
    for index in where.pop(pair):
        old = words[index]
        new = merge_pair(old, pair, new_id)
        words[index] = new
        old_pairs = Counter(zip(old, old[1:]))
        new_pairs = Counter(zip(new, new[1:]))
        freq = freqs[index]
        for p in old_pairs.keys() | new_pairs.keys():
            delta = new_pairs[p] - old_pairs[p]
            if delta == 0 or p == pair:
                continue
            pair_counts[p] = pair_counts.get(p, 0) + delta * freq
            changed.add(p)
            if new_pairs[p] == 0:
                where[p].discard(index)
            elif old_pairs[p] == 0:
                where.setdefault(p, set()).add(index)
    del pair_counts[pair]
    for p in [p for p in changed if pair_counts[p] == 0]:
        del pair_counts[p]
        changed.discard(p)
        where.pop(p, None)
    return changed
